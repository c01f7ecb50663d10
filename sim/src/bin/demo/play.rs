//! The demo proper: the rig, the service played step by step, the progress
//! lines and the summary.
//!
//! Zenchef Pay steps (guest payments, a payment to refuse) are played and
//! followed by [`pay`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, FixedOffset, Timelike};
use serde_json::{Value, json};
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::pay::{PayConfig, PayFake};
use zenchef_sim::scenario::{Scenario, Step, ZenchefChange};
use zenchef_sim::util::random_hex;
use zenchef_sim::zenchef::Fault;

use crate::checks::{verify_pos, verify_zenchef};
use crate::pacer::Pacer;
use pay::{PAY_POLL, PAY_TOKEN, PayReport};

mod pay;

/// Zenchef API token the fake expects and the agent is given.
const ZENCHEF_TOKEN: &str = "zc-demo-token";
/// How many already sent events the POS re-sends on purpose.
const RESENT: usize = 2;
/// Service hours before this belong to lunch, after it to dinner.
pub const DINNER_FROM_HOUR: u32 = 16;
/// Seconds one sample of the status page's chart covers in the demo (the
/// agent's default is a minute; the demo's day lasts under a minute).
const HISTORY_SAMPLE_S: u64 = 1;
/// How often the outage is watched (`status --json`) and pending Zenchef Pay
/// rejections are looked for.
const OUTAGE_POLL: Duration = Duration::from_millis(200);

/// Lunch or dinner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Lunch,
    Dinner,
}

impl Service {
    fn of(at: DateTime<FixedOffset>) -> Service {
        if at.hour() < DINNER_FROM_HOUR {
            Service::Lunch
        } else {
            Service::Dinner
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Lunch => "lunch",
            Service::Dinner => "dinner",
        }
    }
}

/// What happened on the POS and in Zenchef during one service.
#[derive(Debug, Default)]
struct ServiceStats {
    opened: usize,
    walkins: usize,
    moves: usize,
    split_payments: usize,
    paid: usize,
    /// Bills closed by a guest through Zenchef Pay.
    paid_by_pay: usize,
    changes: usize,
    cancels: usize,
}

/// What the outage looked like.
#[derive(Debug, Default)]
struct OutageReport {
    /// Events the POS sent while Zenchef was unreachable.
    events: usize,
    /// Largest `counts.queued` seen while down.
    max_queued: i64,
    /// `counts.queued` when the internet came back.
    backlog: i64,
    /// How long the backlog took to reach Zenchef.
    drain: Duration,
}

/// The rig, the scenario and what was observed.
pub struct Demo {
    /// The service played.
    pub sc: Scenario,
    /// Simulators and agent.
    rig: Rig,
    /// The Zenchef Pay fake (`rig.pay`).
    pay: PayFake,
    pay_report: PayReport,
    /// Service time of the step played last.
    clock: Option<DateTime<FixedOffset>>,
    started: Instant,
    /// Every envelope published, re-sends included.
    published: Vec<Value>,
    /// `event_id`s published.
    unique: BTreeSet<String>,
    /// Events re-sent on purpose.
    resent: usize,
    walkin_orders: BTreeSet<String>,
    down: bool,
    outage: OutageReport,
    first_publish: Option<Instant>,
    all_delivered: Option<(Instant, Value)>,
    stats: BTreeMap<&'static str, ServiceStats>,
    playback: Duration,
    speed: f64,
    /// The agent's local status page.
    pub page_url: String,
}

impl Demo {
    /// Starts the simulators and the agent.
    pub async fn start(
        sc: Scenario,
        agent: &Path,
        dir: &Path,
        started: Instant,
    ) -> anyhow::Result<Demo> {
        let mut opts = RigOptions {
            pay: Some(PayConfig {
                token: PAY_TOKEN.into(),
                ..Default::default()
            }),
            ..RigOptions::new(sc.zenchef_config(ZENCHEF_TOKEN))
        };
        // Other rigs on this machine (tests running meanwhile) advertise on
        // a random loopback mDNS port too, with the same default
        // installation id and token: on a port collision their agent could
        // take over our broker session (same MQTT client id) and ours could
        // follow their POS. An installation id and a token of our own keep
        // them apart (the agent only follows the configured installation).
        opts.iid = format!("CP-{}", random_hex(6).to_uppercase());
        opts.cashpad_token = format!("cashpad-{}", random_hex(16));
        // The agent's status page, on a free loopback port, with a chart
        // sample a second so the day fits in it.
        let page_port = zenchef_sim::util::free_port()?;
        opts.http_listen = format!("127.0.0.1:{page_port}");
        opts.history_sample_s = Some(HISTORY_SAMPLE_S);
        let rig = Rig::start(opts, agent, dir)
            .await
            .context("starting the simulators")?;
        rig.pos.publish_floorplan(&sc.floorplan()).await?;
        let pay = rig
            .pay
            .clone()
            .context("the rig started without its Zenchef Pay fake")?;
        let mut guests_total = BTreeMap::new();
        for st in &sc.steps {
            if let Step::GuestPays { order_id, .. } = st {
                *guests_total.entry(order_id.clone()).or_insert(0) += 1;
            }
        }
        let mut demo = Demo {
            pay,
            clock: None,
            pay_report: PayReport {
                guests_total,
                ..Default::default()
            },
            walkin_orders: sc
                .expected
                .walkins
                .iter()
                .map(|w| w.order_id.clone())
                .collect(),
            sc,
            rig,
            started,
            published: Vec::new(),
            unique: BTreeSet::new(),
            resent: 0,
            down: false,
            outage: OutageReport::default(),
            first_publish: None,
            all_delivered: None,
            stats: BTreeMap::new(),
            playback: Duration::ZERO,
            speed: 0.0,
            page_url: format!("http://127.0.0.1:{page_port}/"),
        };
        demo.say(
            None,
            &format!(
                "simulators up: MQTT broker 127.0.0.1:{}, mDNS on loopback port {}, Zenchef API {}, Zenchef Pay API {}",
                demo.rig.broker.port,
                demo.rig.mdns_port,
                demo.rig.zenchef.base_url(),
                demo.pay.base_url()
            ),
        );
        demo.rig.spawn_agent().context("starting the agent")?;
        demo.say(
            None,
            &format!(
                "agent started: {} run --config {}",
                demo.rig.agent_bin.display(),
                demo.rig.config_path().display()
            ),
        );
        demo.say(
            None,
            &format!(
                "status page: {} (French or English by the browser's language; --keep leaves it up)",
                demo.page_url
            ),
        );
        Ok(demo)
    }

    /// One progress line: wall time since the start, service time, text.
    fn say(&self, at: Option<DateTime<FixedOffset>>, what: &str) {
        let clock = at
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_else(|| "     ".into());
        println!(
            "[{:5.1}s] {clock}  {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Agent counters (`status --json` `counts`), `Null` when unreadable.
    fn counts(&self) -> Value {
        self.rig
            .status()
            .map(|s| s["counts"].clone())
            .unwrap_or(Value::Null)
    }

    fn counts_line(c: &Value) -> String {
        format!(
            "stored {}, forwarded {}, queued {}",
            c["received"], c["delivered"], c["queued"]
        )
    }

    /// Waits for the agent to find the POS by mDNS and to publish the day's
    /// reservations on it.
    pub async fn wait_for_pos(&mut self) -> anyhow::Result<()> {
        let t = Instant::now();
        self.rig
            .pos
            .wait_until(Duration::from_secs(30), |s| {
                s.status
                    .as_ref()
                    .is_some_and(|v| v["online"] == json!(true))
            })
            .await
            .with_context(|| format!("the agent never came online\n{}", self.rig.log_tail(30)))?;
        let online = t.elapsed();
        // The daemon writes its record every 2 s; not fatal if it is late.
        let st = self
            .rig
            .wait_status("the daemon's record", Duration::from_secs(10), |s| {
                s["daemon"]["pos"]["mqtt_connected"] == json!(true)
            })
            .await
            .unwrap_or(Value::Null);
        let pos = &st["daemon"]["pos"];
        self.say(
            None,
            &format!(
                "POS discovered by mDNS: {} at {}, Cashpad {}, installation {}; agent online on the POS after {:.1} s",
                pos["instance"].as_str().unwrap_or("?"),
                pos["address"].as_str().unwrap_or("?"),
                pos["app_version"].as_str().unwrap_or("?"),
                pos["installation_id"].as_str().unwrap_or("?"),
                online.as_secs_f64(),
            ),
        );
        let want = self.sc.bookings.len();
        self.rig
            .pos
            .wait_until(Duration::from_secs(30), |s| s.reservations.len() >= want)
            .await
            .with_context(|| {
                format!(
                    "only {} of {want} reservations reached the POS\n{}",
                    self.rig.pos.reservations().len(),
                    self.rig.log_tail(30)
                )
            })?;
        let on_pos = self.rig.pos.reservations();
        let remarks = on_pos.values().filter(|r| !r["comment"].is_null()).count();
        let allergies = on_pos
            .values()
            .filter(|r| !r["allergies"].is_null())
            .count();
        self.say(
            None,
            &format!(
                "{} reservations of the day on the POS ({remarks} with a remark, {allergies} with allergies)",
                on_pos.len()
            ),
        );
        Ok(())
    }

    /// Plays every step of the scenario on the compressed timeline.
    pub async fn play_service(&mut self, mut pacer: Pacer) -> anyhow::Result<()> {
        let steps = self.sc.steps.clone();
        self.speed = pacer.speed;
        self.say(
            None,
            &format!(
                "playing {} → {} in {:.1} s: ×{:.0} (quiet afternoon fast-forwarded), the 5-minute outage in {:.1} s",
                steps[0].at().format("%H:%M"),
                steps[steps.len() - 1].at().format("%H:%M"),
                pacer.total().as_secs_f64(),
                pacer.speed,
                pacer.outage.as_secs_f64()
            ),
        );
        pacer.start();
        let mut service: Option<Service> = None;
        for (i, step) in steps.iter().enumerate() {
            self.wait_until(pacer.due(i)).await;
            // The POS's answers to settle commands and the guests' payments
            // carry the service time.
            self.clock = Some(step.at());
            self.rig.pos.set_clock(self.clock);
            self.pay.set_clock(self.clock);
            let now = Service::of(step.at());
            if service != Some(now) {
                if let Some(prev) = service {
                    pacer.pause(self.wait_pay_settled().await);
                    self.service_over(prev, steps[i - 1].at());
                }
                self.say(Some(step.at()), &format!("── {} service ──", now.name()));
                service = Some(now);
            }
            let paused = match step {
                Step::Pos { at, event } => {
                    self.on_pos_event(now, *at, event).await?;
                    Duration::ZERO
                }
                Step::Zenchef { at, change } => {
                    self.on_zenchef_change(now, *at, change);
                    Duration::ZERO
                }
                Step::OutageStart { at } => self.outage_start(*at).await?,
                Step::OutageEnd { at } => self.outage_end(*at).await?,
                Step::ZenchefDown { at } => self.zenchef_down(*at).await?,
                Step::ZenchefUp { at } => self.zenchef_up(*at).await?,
                Step::GuestPays {
                    at,
                    order_id,
                    amount_cents,
                    tip_cents,
                    method,
                } => {
                    self.guest_pays(now, *at, order_id, *amount_cents, *tip_cents, method)
                        .await
                }
                Step::InjectPayment {
                    at,
                    order_id,
                    amount_cents,
                    tip_cents,
                    method,
                } => {
                    self.inject_payment(now, *at, order_id, *amount_cents, *tip_cents, method)
                        .await
                }
            };
            pacer.pause(paused);
        }
        if let (Some(s), Some(last)) = (service, steps.last()) {
            self.wait_pay_settled().await;
            self.service_over(s, last.at());
        }
        self.playback = pacer.total();
        Ok(())
    }

    /// Sleeps until `deadline`; meanwhile watches the agent's queue while
    /// the internet is down, and reports Zenchef Pay rejections as the
    /// agent acks them.
    async fn wait_until(&mut self, deadline: tokio::time::Instant) {
        loop {
            self.report_pay();
            if !self.down && self.pay_report.pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            let poll = if self.down {
                self.watch_queue();
                OUTAGE_POLL
            } else {
                PAY_POLL
            };
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + poll)).await;
        }
        tokio::time::sleep_until(deadline).await;
    }

    /// Records the queue length seen during the outage.
    fn watch_queue(&mut self) -> i64 {
        let q = self.counts()["queued"].as_i64().unwrap_or(0);
        self.outage.max_queued = self.outage.max_queued.max(q);
        q
    }

    fn stats(&mut self, s: Service) -> &mut ServiceStats {
        self.stats.entry(s.name()).or_default()
    }

    async fn publish(&mut self, event: &Value) -> anyhow::Result<()> {
        self.rig.pos.publish_event(event).await?;
        self.first_publish.get_or_insert_with(Instant::now);
        self.published.push(event.clone());
        self.unique
            .insert(event["event_id"].as_str().unwrap_or_default().to_string());
        Ok(())
    }

    async fn on_pos_event(
        &mut self,
        service: Service,
        at: DateTime<FixedOffset>,
        event: &Value,
    ) -> anyhow::Result<()> {
        self.publish(event).await?;
        if self.down {
            self.outage.events += 1;
        }
        let d = &event["data"];
        let order = d["order_id"].as_str().unwrap_or("?").to_string();
        match event["type"].as_str().unwrap_or("") {
            "table.opened" => {
                let walkin = self.walkin_orders.contains(&order);
                let st = self.stats(service);
                st.opened += 1;
                if walkin {
                    st.walkins += 1;
                }
            }
            "table.moved" => {
                self.stats(service).moves += 1;
                self.say(
                    Some(at),
                    &format!(
                        "POS      {order} moves from table {} to {}",
                        d["from_table"].as_str().unwrap_or("?"),
                        d["to_table"].as_str().unwrap_or("?")
                    ),
                );
            }
            "payment.recorded" => self.stats(service).split_payments += 1,
            "bill.paid" => self.stats(service).paid += 1,
            _ => {}
        }
        Ok(())
    }

    fn on_zenchef_change(
        &mut self,
        service: Service,
        at: DateTime<FixedOffset>,
        change: &ZenchefChange,
    ) {
        let id = change.booking_id();
        let before = self.rig.zenchef.booking(id).unwrap_or(Value::Null);
        change.apply(&self.rig.zenchef);
        let who = format!(
            "#{id} ({}, {} p. at {})",
            guest_name(&before),
            before["nb_guests"],
            before["time"].as_str().unwrap_or("?")
        );
        let what = match change {
            ZenchefChange::SetTime { time, .. } => format!("now at {time}"),
            ZenchefChange::SetGuests { nb_guests, .. } => {
                format!("now {}", plural(*nb_guests as usize, "guest"))
            }
            ZenchefChange::SetComment { comment, .. } => format!("remark now \"{comment}\""),
            ZenchefChange::Cancel { .. } => "cancelled".into(),
        };
        let st = self.stats(service);
        if matches!(change, ZenchefChange::Cancel { .. }) {
            st.cancels += 1;
        } else {
            st.changes += 1;
        }
        self.say(
            Some(at),
            &format!("Zenchef  staff edit booking {who}: {what}"),
        );
    }

    /// Distinct events the POS sent: the scenario's and the POS's own
    /// answers to settle commands.
    fn distinct_sent(&self) -> i64 {
        (self.unique.len() + self.rig.pos.answers().len()) as i64
    }

    /// Waits for the agent to have stored every event published so far
    /// (the POS's answers to settle commands included) and (when `drained`)
    /// to have forwarded all of them.
    async fn wait_caught_up(
        &self,
        what: &str,
        drained: bool,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.rig
            .wait_status(what, timeout, |s| {
                s["counts"]["received"].as_i64() == Some(self.distinct_sent())
                    && (!drained || s["counts"]["queued"] == json!(0))
            })
            .await
    }

    /// The internet goes down: lets the agent catch up first (so the
    /// outage's numbers are its own), then cuts Zenchef off. Answers the
    /// time spent waiting.
    async fn outage_start(&mut self, at: DateTime<FixedOffset>) -> anyhow::Result<Duration> {
        let t = Instant::now();
        self.wait_pay_settled().await;
        self.wait_caught_up("delivery before the outage", true, Duration::from_secs(60))
            .await?;
        let waited = t.elapsed();
        self.rig.zenchef.set_fault(Fault::Down).await?;
        self.down = true;
        self.say(
            Some(at),
            "INTERNET DOWN: Zenchef unreachable (connections refused); the POS keeps sending",
        );
        Ok(waited)
    }

    /// Zenchef alone goes down (its API answers 503; Zenchef Pay and the
    /// POS work): guests keep paying from their phone. Answers no wait.
    async fn zenchef_down(&mut self, at: DateTime<FixedOffset>) -> anyhow::Result<Duration> {
        self.rig.zenchef.set_fault(Fault::Status(503)).await?;
        let accepted = self.checks_accepted();
        let z = &mut self.pay_report.zenchef_only;
        z.since = Some(Instant::now());
        z.window = Some((at, at));
        z.checks_while_down = accepted;
        self.say(
            Some(at),
            "ZENCHEF DOWN: the reservations API answers 503; Zenchef Pay and the POS work, guests keep paying from their phone",
        );
        Ok(Duration::ZERO)
    }

    /// Zenchef answers again — once every guest payment made meanwhile is
    /// settled in the POS (so that they were settled while Zenchef was
    /// down); then the Zenchef backlog drains. Answers the time spent
    /// waiting.
    async fn zenchef_up(&mut self, at: DateTime<FixedOffset>) -> anyhow::Result<Duration> {
        let t = Instant::now();
        self.wait_pay_settled().await;
        let settled = {
            let z = &self.pay_report.zenchef_only;
            z.payments
                .iter()
                .filter(|id| self.pay.payment_state(id) == zenchef_sim::pay::PaymentState::Settled)
                .count()
        };
        let checks = self.checks_accepted();
        let backlog = self.watch_queue();
        let z = &mut self.pay_report.zenchef_only;
        z.settled_while_down = settled;
        z.checks_while_down = checks - z.checks_while_down;
        z.backlog = backlog;
        z.since = None;
        if let Some(w) = &mut z.window {
            w.1 = at;
        }
        let n = z.payments.len();
        self.rig.zenchef.set_fault(Fault::None).await?;
        self.say(
            Some(at),
            &format!(
                "Zenchef back: {n} guest payment(s) made while it was down, {settled} settled in the POS meanwhile; {backlog} event(s) waited for Zenchef"
            ),
        );
        let s = self
            .wait_caught_up("the Zenchef backlog drained", true, Duration::from_secs(60))
            .await?;
        self.say(
            Some(at),
            &format!(
                "Zenchef backlog drained; agent {}",
                Self::counts_line(&s["counts"])
            ),
        );
        Ok(t.elapsed())
    }

    /// Check versions Zenchef Pay accepted so far, all orders.
    fn checks_accepted(&self) -> usize {
        self.pay
            .checks()
            .keys()
            .map(|o| self.pay.check_history(o).len())
            .sum()
    }

    /// The internet comes back: checks every event was stored while down,
    /// restores Zenchef, times the drain, then re-sends events as a POS does
    /// after a reconnect. Answers the time spent waiting.
    async fn outage_end(&mut self, at: DateTime<FixedOffset>) -> anyhow::Result<Duration> {
        let t = Instant::now();
        self.wait_caught_up(
            "events stored during the outage",
            false,
            Duration::from_secs(30),
        )
        .await?;
        self.outage.backlog = self.watch_queue();
        self.say(
            Some(at),
            &format!(
                "internet back: the POS sent {} events during the outage, all stored and acknowledged; {} wait for Zenchef (max seen {}; the others needed no call)",
                self.outage.events, self.outage.backlog, self.outage.max_queued
            ),
        );
        self.down = false;
        let drain = Instant::now();
        self.rig.zenchef.set_fault(Fault::None).await?;
        let s = self
            .wait_caught_up("the backlog drained", true, Duration::from_secs(60))
            .await?;
        self.outage.drain = drain.elapsed();
        self.say(
            Some(at),
            &format!(
                "backlog of {} drained in {:.2} s; agent {}",
                self.outage.backlog,
                self.outage.drain.as_secs_f64(),
                Self::counts_line(&s["counts"])
            ),
        );
        self.resend(at).await?;
        Ok(t.elapsed())
    }

    /// Re-publishes the last [`RESENT`] events already sent (same envelope,
    /// same `event_id`): the agent must store them once.
    async fn resend(&mut self, at: DateTime<FixedOffset>) -> anyhow::Result<()> {
        let from = self.published.len().saturating_sub(RESENT);
        let again: Vec<Value> = self.published[from..].to_vec();
        for e in &again {
            self.publish(e).await?;
            self.resent += 1;
        }
        let ids: Vec<String> = again
            .iter()
            .map(|e| {
                format!(
                    "{} {} seq {}",
                    e["type"].as_str().unwrap_or("?"),
                    e["data"]["order_id"].as_str().unwrap_or("?"),
                    e["seq"]
                )
            })
            .collect();
        self.say(
            Some(at),
            &format!(
                "POS      re-sends {} events after its reconnect: {}",
                again.len(),
                ids.join(", ")
            ),
        );
        Ok(())
    }

    fn service_over(&mut self, s: Service, at: DateTime<FixedOffset>) {
        let c = self.counts();
        let st = self.stats(s);
        let line = format!(
            "{} over: {} opened ({}), {}, {} paid ({} split, {} through Zenchef Pay); in Zenchef {} changed, {} cancelled; agent {}",
            s.name(),
            plural(st.opened, "table"),
            plural(st.walkins, "walk-in"),
            plural(st.moves, "move"),
            plural(st.paid, "bill"),
            st.split_payments,
            st.paid_by_pay,
            plural(st.changes, "booking"),
            st.cancels,
            Self::counts_line(&c)
        );
        self.say(Some(at), &line);
    }

    /// Waits until the agent acked every Zenchef Pay payment, then stored
    /// and forwarded everything.
    pub async fn wait_all_delivered(&mut self) -> anyhow::Result<()> {
        self.wait_pay_acked().await;
        let s = self
            .wait_caught_up("every event delivered", true, Duration::from_secs(90))
            .await?;
        self.all_delivered = Some((Instant::now(), s["counts"].clone()));
        self.say(
            None,
            &format!(
                "all events forwarded: agent {}",
                Self::counts_line(&s["counts"])
            ),
        );
        Ok(())
    }

    /// Compares Zenchef, the POS and the agent's counters with the
    /// scenario's expected outcome; answers the problems found.
    pub async fn verify(&self) -> Vec<String> {
        let mut problems = verify_zenchef(&self.sc, &self.rig);
        problems.extend(self.verify_counts());
        problems.extend(verify_pos(&self.sc, &self.rig).await);
        problems.extend(self.pay_report.problems.iter().cloned());
        problems.extend(
            self.sc
                .pay_problems(&self.pay, &self.rig.pos)
                .into_iter()
                .map(|p| format!("Zenchef Pay: {p}")),
        );
        let (refused, twice) = self.guests_refused_or_charged_twice();
        problems.extend(
            refused
                .iter()
                .map(|id| format!("guest payment {id} refused")),
        );
        problems.extend(
            twice
                .iter()
                .map(|id| format!("a guest charged twice: {id}")),
        );
        let z = &self.pay_report.zenchef_only;
        if z.window.is_some() && (z.payments.is_empty() || z.settled_while_down < z.payments.len())
        {
            problems.push(format!(
                "Zenchef-only outage: {} guest payment(s) made, {} settled while Zenchef was down",
                z.payments.len(),
                z.settled_while_down
            ));
        }
        problems.extend(self.verify_page().await);
        problems
    }

    /// The agent's status page answers, in French, with its chart of the
    /// day: Zenchef's outages shaded where the agent's history saw them.
    async fn verify_page(&self) -> Vec<String> {
        let page = match get_page(&self.page_url, "fr-FR,fr;q=0.9").await {
            Ok(p) => p,
            Err(e) => return vec![format!("status page {}: {e:#}", self.page_url)],
        };
        let mut p = Vec::new();
        if !page.starts_with("HTTP/1.1 200") {
            p.push(format!(
                "status page: {}",
                page.lines().next().unwrap_or("no answer")
            ));
        }
        if !page.contains("<html lang=\"fr\">") || !page.contains("<svg id=\"history-chart\"") {
            p.push("status page: no French page with its chart".into());
        }
        let history = self
            .rig
            .status()
            .map(|s| s["history"].clone())
            .unwrap_or_default();
        let samples = history["samples"].as_array().cloned().unwrap_or_default();
        let outage_runs = samples
            .iter()
            .enumerate()
            .filter(|(i, x)| {
                x["zenchef_outage"] == json!(true)
                    && (*i == 0 || samples[i - 1]["zenchef_outage"] != json!(true))
            })
            .count();
        let bands = page.matches("class=\"outage-zenchef\"").count();
        if outage_runs == 0 {
            p.push("the agent's history shows no Zenchef outage".into());
        }
        if bands != outage_runs {
            p.push(format!(
                "status page chart: {bands} Zenchef outage band(s) for {outage_runs} outage(s) in the history"
            ));
        }
        p
    }

    fn verify_counts(&self) -> Vec<String> {
        let mut p = Vec::new();
        let c = self.counts();
        let n = self.distinct_sent();
        let answers = self.rig.pos.answers().len();
        let get = |k: &str| c[k].as_i64().unwrap_or(-1);
        if get("received") != n {
            p.push(format!(
                "the POS sent {n} distinct events ({} scripted + {answers} answers to settle commands), the agent stored {}",
                self.unique.len(),
                get("received")
            ));
        }
        if self.unique.len() != self.sc.pos_events().len() {
            p.push(format!(
                "{} distinct scripted events sent, the scenario has {}",
                self.unique.len(),
                self.sc.pos_events().len()
            ));
        }
        let (settle, reject) = self.expected_fates();
        if answers != settle {
            p.push(format!(
                "the POS answered {answers} settle commands, expected {settle} (one per guest payment)"
            ));
        }
        for (k, want) in [("pay_settled", settle), ("pay_rejected", reject)] {
            if get(k) != want as i64 {
                p.push(format!("agent counts.{k} = {}, expected {want}", get(k)));
            }
        }
        if get("duplicates") != self.resent as i64 {
            p.push(format!(
                "{} events re-sent, the agent counted {} duplicates",
                self.resent,
                get("duplicates")
            ));
        }
        for k in ["dead", "rejected", "queued", "unknown_type"] {
            if get(k) != 0 {
                p.push(format!("agent counts.{k} = {} (expected 0)", get(k)));
            }
        }
        if get("walkins_created") != self.sc.expected.walkins.len() as i64 {
            p.push(format!(
                "agent counts.walkins_created = {}, expected {}",
                get("walkins_created"),
                self.sc.expected.walkins.len()
            ));
        }
        p
    }

    /// The summary table.
    pub fn print_summary(&self) {
        let c = self.counts();
        let fake = &self.rig.zenchef;
        let exp = &self.sc.expected;
        let served: Vec<i64> = exp
            .status_history
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(id, _)| *id)
            .collect();
        let seated_over = served
            .iter()
            .filter(|id| fake.status_history(**id) == ["seated", "over"])
            .count();
        let untouched = exp
            .cancelled
            .iter()
            .chain(&exp.not_opened)
            .filter(|id| fake.status_history(**id).is_empty())
            .count();
        let row = |label: &str, value: String| println!("  {label:<38} {value}");
        println!("\n── summary ─────────────────────────────────────────────────────────");
        let answers = self.rig.pos.answers().len();
        row(
            "events sent by the POS",
            format!(
                "{} ({} distinct scripted + {answers} answers to settle commands + {} re-sent on purpose)",
                self.published.len() + answers,
                self.unique.len(),
                self.resent
            ),
        );
        row("stored by the agent", c["received"].to_string());
        row("forwarded to Zenchef", c["delivered"].to_string());
        row(
            "buffered during the outage",
            format!(
                "{} events sent while down, max {} queued",
                self.outage.events, self.outage.max_queued
            ),
        );
        row(
            "drained after the outage",
            format!(
                "{} in {:.2} s",
                self.outage.backlog,
                self.outage.drain.as_secs_f64()
            ),
        );
        row("dead letters", c["dead"].to_string());
        row(
            "duplicates suppressed",
            format!(
                "agent {}, Zenchef idempotency {}",
                c["duplicates"],
                fake.duplicates_suppressed()
            ),
        );
        row("quarantined", c["rejected"].to_string());
        row(
            "reservations seated → over",
            format!(
                "{seated_over}/{} (cancelled/no-show untouched {untouched}/{})",
                served.len(),
                exp.cancelled.len() + exp.not_opened.len()
            ),
        );
        row(
            "walk-ins created",
            format!("{}/{}", fake.walkins().len(), exp.walkins.len()),
        );
        row(
            "tickets attached",
            format!("{}/{}", fake.tickets().len(), exp.tickets.len()),
        );
        let on_pos = self.rig.pos.reservations();
        let booked = self
            .sc
            .bookings
            .iter()
            .filter(|b| b["id"].as_i64().is_some_and(|id| on_pos.contains_key(&id)))
            .count();
        row(
            "reservations on the POS",
            format!(
                "{} bookings ({} cancelled ones withdrawn) + {} walk-ins",
                booked,
                exp.cancelled.len(),
                on_pos.len() - booked
            ),
        );
        self.print_pay_summary(&c);
        row("status page", self.page_url.clone());
        println!("  average spends (visits, average before → after):");
        for line in self.average_spends(4) {
            println!("    {line}");
        }
        self.print_timing();
    }

    /// Up to `n` guests whose customersheet moved, the most visits first.
    fn average_spends(&self, n: usize) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut rows: Vec<(i64, String)> = Vec::new();
        for b in &self.sc.bookings {
            let sheet = &b["customersheet"];
            let Some(sid) = sheet["id"].as_i64() else {
                continue;
            };
            if !seen.insert(sid) {
                continue;
            }
            let after = self
                .rig
                .zenchef
                .booking(b["id"].as_i64().unwrap_or(0))
                .map(|x| x["customersheet"].clone())
                .unwrap_or(Value::Null);
            let v0 = sheet["visits"].as_i64().unwrap_or(0);
            let v1 = after["visits"].as_i64().unwrap_or(0);
            if v1 == v0 {
                continue;
            }
            rows.push((
                v1 - v0,
                format!(
                    "{:<22} {v0:>2} → {v1:>2} visits, {:>8} → {:>8}",
                    guest_name(b),
                    euros(sheet["average_spend_cents"].as_i64().unwrap_or(0)),
                    euros(after["average_spend_cents"].as_i64().unwrap_or(0))
                ),
            ));
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        rows.into_iter().take(n).map(|r| r.1).collect()
    }

    fn print_timing(&self) {
        println!(
            "  service playback                       {:.1} s of wall time for the day (×{:.0})",
            self.playback.as_secs_f64(),
            self.speed
        );
        if let (Some(first), Some((done, c))) = (self.first_publish, &self.all_delivered) {
            let secs = done.duration_since(first).as_secs_f64();
            let n = c["delivered"].as_i64().unwrap_or(0);
            println!(
                "  throughput                             {n} events forwarded in {secs:.1} s = {:.1} events/s (paced by the POS)",
                n as f64 / secs.max(0.001)
            );
        }
    }

    /// `--keep`: leaves everything running until Ctrl-C.
    pub async fn keep_running(&self) {
        println!(
            "\nsimulators and agent keep running; try:\n  {} status --config {}\n  the status page: {}\nCtrl-C to stop.",
            self.rig.agent_bin.display(),
            self.rig.config_path().display(),
            self.page_url
        );
        let _ = tokio::signal::ctrl_c().await;
    }

    /// Stops the agent with SIGTERM; a clean stop exits 0.
    pub fn stop(&mut self) -> Vec<String> {
        match self.rig.stop_agent(Duration::from_secs(20)) {
            Ok(code) => {
                self.say(
                    None,
                    &format!(
                        "agent stopped (SIGTERM), exit code {}",
                        code.map(|c| c.to_string())
                            .unwrap_or_else(|| "none (signal)".into())
                    ),
                );
                if code == Some(0) {
                    vec![]
                } else {
                    vec![format!("the agent exited with {code:?} on SIGTERM")]
                }
            }
            Err(e) => vec![format!("stopping the agent: {e:#}")],
        }
    }
}

/// `GET url` over a plain TCP connection (the demo has no HTTP client of
/// its own): the whole answer, status line and headers included.
async fn get_page(url: &str, accept_language: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .context("not an http:// URL")?;
    let mut conn =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(host))
            .await??;
    conn.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nAccept-Language: {accept_language}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut body)).await??;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `"Camille Martin"`: the booking's names, else its customersheet's.
fn guest_name(booking: &Value) -> String {
    let name = |k: &str| {
        booking[k]
            .as_str()
            .or(booking["customersheet"][k].as_str())
            .unwrap_or("")
    };
    format!("{} {}", name("firstname"), name("lastname"))
        .trim()
        .to_string()
}

/// `1 move`, `2 moves`.
fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `4210` → `42.10 €`.
fn euros(cents: i64) -> String {
    format!("{}.{:02} €", cents / 100, (cents % 100).abs())
}
