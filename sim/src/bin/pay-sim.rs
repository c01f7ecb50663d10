//! `pay-sim`: the Zenchef Pay fake as a standalone process, for playing with
//! the agent by hand and for the image's boot test (docs/protocol/zenchef-pay.md).
//!
//! It prints one line per call it answered and, with `--guest-pays-first N`,
//! plays the guests of the Zenchef Pay service of `pos-sim --zenchef-pay`
//! (same `--seed` and `--day`, [`Scenario::generate_pay`]): the POS leaves
//! the bills of that scenario's Zenchef Pay orders open, and once the agent
//! has pushed such an order's check `open` with the bill's final total (and
//! has read the payment list once: a fresh store adopts the payments it
//! finds at its first reading, docs/decisions.md "A replaced box"), a
//! guest pays all that is due on it from the phone, plus the bill's tip or
//! `--tip-cents` ([`PayFake::guest_pays`], method `card`), for the first N
//! orders whose
//! check gets there. Every payment state change is one line:
//!
//! ```text
//! pay-sim: payment pay_3f… order O-1012 6150+300 cents: paid by the guest
//! pay-sim: payment pay_3f… order O-1012 6150+300 cents: settled
//! ```
//!
//! (`rejected (<reason>)` when the agent refuses it: Zenchef Pay then
//! refunds the guest.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use clap::Parser;
use zenchef_sim::pay::{PayConfig, PayFake, PaymentState};
use zenchef_sim::pos::paris_winter;
use zenchef_sim::scenario::{Scenario, Step};

/// How often the fake's state is looked at (calls, checks, acks).
const WATCH: Duration = Duration::from_millis(200);

/// Runs the Zenchef Pay fake on 127.0.0.1.
#[derive(Parser, Debug)]
struct Args {
    /// TCP port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8782)]
    port: u16,
    /// The bearer token the fake accepts (the agent's `zenchef_pay.token`).
    #[arg(long, default_value = "pay-dev-token")]
    token: String,
    /// The Cashpad Installation ID served (`/installations/{iid}`; the
    /// agent's `cashpad.installation_id` or the discovered `iid`).
    #[arg(long, default_value = "CP-4F2A91")]
    installation_id: String,
    /// Guests pay from their phone the first N Zenchef Pay orders of the
    /// scenario whose check the agent pushes open with the final total
    /// (0 = no guests: the fake only answers).
    #[arg(long, default_value_t = 0)]
    guest_pays_first: usize,
    /// The tip every guest leaves, in cents, instead of the bill's tip of
    /// the scenario (which may be 0).
    #[arg(long)]
    tip_cents: Option<i64>,
    /// Scenario seed (as given to `pos-sim`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Restaurant day `YYYY-MM-DD` (as given to `pos-sim`; default: today
    /// at +01:00).
    #[arg(long)]
    day: Option<NaiveDate>,
}

/// What a guest of the scenario pays for one order: the bill's total and
/// tip, in cents.
#[derive(Debug, Clone, Copy)]
struct Bill {
    total_cents: i64,
    tip_cents: i64,
}

/// The scenario's Zenchef Pay orders and their bills.
fn pay_bills(sc: &Scenario) -> BTreeMap<String, Bill> {
    let mut bills = BTreeMap::new();
    for order in &sc.pay_orders {
        let Some(check) = sc.expected.checks.get(order) else {
            continue;
        };
        let tip_cents = sc
            .steps
            .iter()
            .filter_map(|st| match st {
                Step::GuestPays {
                    order_id,
                    tip_cents,
                    ..
                } if order_id == order => Some(*tip_cents),
                _ => None,
            })
            .sum();
        bills.insert(
            order.clone(),
            Bill {
                total_cents: check.total_cents,
                tip_cents,
            },
        );
    }
    bills
}

/// A payment made by a guest here, and the last state printed for it.
struct Paid {
    payment_id: String,
    order_id: String,
    amount_cents: i64,
    tip_cents: i64,
    printed: PaymentState,
}

impl Paid {
    fn line(&self, what: &str) -> String {
        format!(
            "pay-sim: payment {} order {} {}+{} cents: {what}",
            self.payment_id, self.order_id, self.amount_cents, self.tip_cents
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let day = args
        .day
        .unwrap_or_else(|| Utc::now().with_timezone(&paris_winter()).date_naive());
    let bills = if args.guest_pays_first > 0 {
        pay_bills(&Scenario::generate_pay(args.seed, day))
    } else {
        BTreeMap::new()
    };
    let fake = PayFake::start(PayConfig {
        installation_id: args.installation_id.clone(),
        token: args.token.clone(),
        port: args.port,
        ..PayConfig::default()
    })
    .await?;
    println!("pay-sim listening: {}", fake.base_url());
    println!(
        "installation {} / bearer {} / guests pay {} of the {} Zenchef Pay orders of seed {} on {day} ({})",
        args.installation_id,
        args.token,
        args.guest_pays_first.min(bills.len()),
        bills.len(),
        args.seed,
        bills.keys().cloned().collect::<Vec<_>>().join(" "),
    );
    let mut printed_calls = 0;
    let mut caught_up = false;
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let mut paid: Vec<Paid> = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(WATCH) => {}
        }
        // Calls, once answered, in arrival order.
        let calls = fake.calls();
        for c in calls.iter().skip(printed_calls) {
            if c.status == 0 {
                break;
            }
            println!(
                "#{} {} {}{}{} -> {}",
                c.n,
                c.method,
                c.path,
                if c.query.is_empty() { "" } else { "?" },
                c.query,
                c.status,
            );
            printed_calls += 1;
        }
        // A fresh store adopts (neither settles nor refuses) the payments
        // listed when it first reads the list to its end (docs/decisions.md,
        // "A replaced box"): guests pay only once the agent has read it.
        if !caught_up
            && calls
                .iter()
                .any(|c| c.method == "GET" && c.path.ends_with("/payments") && c.status == 200)
        {
            caught_up = true;
            println!("pay-sim: the agent has read the payment list: guests may pay");
        }
        // Guests pay checks that reached their final total.
        if caught_up && tried.len() < args.guest_pays_first {
            for (order_id, check) in fake.checks() {
                if tried.len() >= args.guest_pays_first || tried.contains(&order_id) {
                    continue;
                }
                let Some(bill) = bills.get(&order_id) else {
                    continue;
                };
                let total = check["total_cents"].as_i64().unwrap_or(-1);
                if check["status"] != "open" || total != bill.total_cents {
                    continue;
                }
                tried.insert(order_id.clone());
                let due = total - check["paid_cents"].as_i64().unwrap_or(0);
                let tip_cents = args.tip_cents.unwrap_or(bill.tip_cents);
                match fake.guest_pays(&order_id, due, tip_cents, "card") {
                    Ok(payment_id) => {
                        let p = Paid {
                            payment_id,
                            order_id,
                            amount_cents: due,
                            tip_cents,
                            printed: PaymentState::Unacked,
                        };
                        println!("{}", p.line("paid by the guest"));
                        paid.push(p);
                    }
                    Err(why) => println!("pay-sim: order {order_id}: the guest cannot pay: {why}"),
                }
            }
        }
        // What the agent made of them.
        for p in &mut paid {
            let now = fake.payment_state(&p.payment_id);
            if now == p.printed {
                continue;
            }
            let what = match &now {
                PaymentState::Unacked => "unacked".to_string(),
                PaymentState::Settled => "settled".to_string(),
                PaymentState::Rejected { reason } => format!("rejected ({reason})"),
            };
            println!("{}", p.line(&what));
            p.printed = now;
        }
    }
    Ok(())
}
