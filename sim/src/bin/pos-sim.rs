//! `pos-sim`: a simulated Cashpad server as a standalone process: MQTT broker,
//! mDNS advert on loopback, and the POS client publishing the floor plan
//! (and optionally replaying a generated service).
//!
//! With `--zenchef-pay` the service replayed is the one with Zenchef Pay
//! ([`Scenario::generate_pay`]): the POS leaves the bills of the Zenchef Pay
//! orders open for the guests' phone payments (`pay-sim --guest-pays-first`,
//! same `--seed` and `--day`) and answers the agent's settle commands
//! (docs/protocol/cashpad-local.md §7) with `payment.recorded` or
//! `bill.paid`; each answer and each refused command is one line:
//!
//! ```text
//! pos-sim: settle pay_3f… order O-1012 6150+300 cents: bill.paid seq 5701, bill closed by zenchef_pay pay_3f…
//! ```

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use clap::Parser;
use zenchef_sim::broker::{BrokerOptions, start_broker};
use zenchef_sim::mdns::{PosAdvert, advertise};
use zenchef_sim::pos::{Pos, paris_winter};
use zenchef_sim::scenario::{Scenario, Step};

/// Runs a simulated Cashpad server on 127.0.0.1.
#[derive(Parser, Debug)]
struct Args {
    /// MQTT port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 18830)]
    mqtt_port: u16,
    /// mDNS UDP port (never 5353 by default: loopback-only tests).
    #[arg(long, default_value_t = 15353)]
    mdns_port: u16,
    /// Cashpad Installation ID.
    #[arg(long, default_value = "CP-4F2A91")]
    iid: String,
    /// Cashpad app version announced in TXT `app`.
    #[arg(long, default_value = "2.0.18")]
    app: String,
    /// The MQTT password of user `zenchef-edge` (the agent's Cashpad token).
    #[arg(long, default_value = "cashpad-dev-token")]
    token: String,
    /// Scenario seed (floor plan and replayed events).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Restaurant day `YYYY-MM-DD` (default: today at +01:00).
    #[arg(long)]
    day: Option<NaiveDate>,
    /// Replay the scenario's POS events this many times faster than real
    /// time (0 = do not replay).
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
    /// Replay the service with Zenchef Pay: the Zenchef Pay orders' bills
    /// are left open for the guests' phone payments.
    #[arg(long)]
    zenchef_pay: bool,
    /// Start the replay only once the agent has published its first
    /// `R/zenchef/status` (its session then exists at the broker, which
    /// queues every later event for it while it is away), plus 2 s.
    #[arg(long)]
    wait_for_agent: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let pos_password = zenchef_sim::util::random_hex(16);
    let broker = start_broker(BrokerOptions {
        port: args.mqtt_port,
        users: vec![
            ("zenchef-edge".into(), args.token.clone()),
            ("cashpad-pos".into(), pos_password.clone()),
        ],
    })?;
    let mut advert = PosAdvert::new(args.mdns_port, &args.iid, broker.port);
    advert.app = args.app.clone();
    let _advertiser = advertise(advert)?;
    let pos = Pos::connect(broker.port, &args.iid, "cashpad-pos", &pos_password).await?;
    let day = args
        .day
        .unwrap_or_else(|| Utc::now().with_timezone(&paris_winter()).date_naive());
    let scenario = if args.zenchef_pay {
        Scenario::generate_pay(args.seed, day)
    } else {
        Scenario::generate(args.seed, day)
    };
    pos.publish_floorplan(&scenario.floorplan()).await?;
    println!(
        "pos-sim: MQTT 127.0.0.1:{} (user zenchef-edge, password {})",
        broker.port, args.token
    );
    println!(
        "pos-sim: mDNS _cashpad._tcp on loopback port {}, iid {}, app {}",
        args.mdns_port, args.iid, args.app
    );
    if args.speed > 0.0 {
        let pos = pos.clone();
        let speed = args.speed;
        let wait_for_agent = args.wait_for_agent;
        tokio::spawn(async move {
            if wait_for_agent {
                while pos.status().is_none() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                println!("pos-sim: the agent is online; replay starts");
            }
            let mut last: Option<chrono::DateTime<chrono::FixedOffset>> = None;
            for step in &scenario.steps {
                if let Some(prev) = last {
                    let gap = (step.at() - prev).to_std().unwrap_or_default();
                    tokio::time::sleep(gap.div_f64(speed)).await;
                }
                last = Some(step.at());
                if let Step::Pos { event, .. } = step {
                    match pos.publish_event(event).await {
                        Ok(()) => println!(
                            "sent {} {} {}",
                            event["seq"], event["type"], event["data"]["order_id"]
                        ),
                        Err(e) => eprintln!("publish failed: {e:#}"),
                    }
                }
            }
            println!("pos-sim: replay done");
        });
    }
    if args.zenchef_pay {
        println!(
            "pos-sim: Zenchef Pay orders, left open for the guests: {}",
            scenario.pay_orders.join(" ")
        );
    }
    let mut known = 0usize;
    let (mut answered, mut refused) = (0usize, 0usize);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let s = pos.state();
        for answer in s.answers.iter().skip(answered) {
            println!("{}", settle_line(&s.settled_commands, answer));
        }
        answered = s.answers.len();
        for (cmd, why) in s.refused_commands.iter().skip(refused) {
            println!(
                "pos-sim: settle {} order {}: refused ({why})",
                cmd["payment_id"], cmd["order_id"]
            );
        }
        refused = s.refused_commands.len();
        if s.reservations.len() != known {
            known = s.reservations.len();
            println!(
                "pos-sim: {known} reservations retained; status {:?}",
                s.status
            );
        }
    }
    Ok(())
}

/// The line for a settle answer (`payment.recorded` or `bill.paid`) the POS
/// published: the settle command it answers (its `reference`, or the last
/// Zenchef Pay payment of the bill, is the command's `payment_id`).
fn settle_line(settled: &[serde_json::Value], answer: &serde_json::Value) -> String {
    let d = &answer["data"];
    let payment_id = match answer["type"].as_str() {
        Some("bill.paid") => d["payments"]
            .as_array()
            .and_then(|ps| ps.iter().rev().find(|p| p["method"] == "zenchef_pay"))
            .and_then(|p| p["reference"].as_str()),
        _ => d["reference"].as_str(),
    }
    .unwrap_or("?");
    let cmd = settled
        .iter()
        .rev()
        .find(|c| c["payment_id"] == payment_id)
        .cloned()
        .unwrap_or_default();
    let outcome = if answer["type"] == "bill.paid" {
        format!("bill closed by zenchef_pay {payment_id}")
    } else {
        "bill still open".to_string()
    };
    format!(
        "pos-sim: settle {payment_id} order {} {}+{} cents: {} seq {}, {outcome}",
        d["order_id"].as_str().unwrap_or("?"),
        cmd["amount_cents"],
        cmd["tip_cents"],
        answer["type"].as_str().unwrap_or("?"),
        answer["seq"],
    )
}
