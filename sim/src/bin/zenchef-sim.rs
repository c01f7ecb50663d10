//! `zenchef-sim`: the Zenchef API fake as a standalone process, seeded with a
//! generated service, for playing with the agent by hand.
//!
//! It prints one line per call it answered, and for each ticket attached
//! (`PUT /bookings/{id}/pos_ticket`, docs/protocol/zenchef-api.md) a line
//! with the ticket's figures:
//!
//! ```text
//! zenchef-sim: ticket O-1012 on booking 42: total 6150 tip 300 cents, payments zenchef_pay 6450
//! ```

use chrono::{NaiveDate, Utc};
use clap::Parser;
use zenchef_sim::pos::paris_winter;
use zenchef_sim::scenario::Scenario;
use zenchef_sim::zenchef::ZenchefFake;

/// Runs the Zenchef API fake on 127.0.0.1.
#[derive(Parser, Debug)]
struct Args {
    /// TCP port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8781)]
    port: u16,
    /// The `auth-token` the fake accepts.
    #[arg(long, default_value = "zenchef-dev-token")]
    token: String,
    /// The `restaurantId` the fake accepts.
    #[arg(long, default_value = "654321")]
    restaurant_id: String,
    /// Scenario seed (bookings and tables).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Restaurant day `YYYY-MM-DD` (default: today at +01:00).
    #[arg(long)]
    day: Option<NaiveDate>,
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
    let scenario = Scenario::generate(args.seed, day);
    let mut config = scenario.zenchef_config(&args.token);
    config.restaurant_id = args.restaurant_id.clone();
    config.port = args.port;
    let fake = ZenchefFake::start(config).await?;
    println!("zenchef-sim listening: {}", fake.base_url());
    println!(
        "restaurantId {} / auth-token {} / {} bookings on {day} / {} tables",
        args.restaurant_id,
        args.token,
        fake.bookings().len(),
        scenario.tables.len()
    );
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let calls = fake.calls();
        for c in calls.iter().skip(seen) {
            // What the call was about, for a reader (or a script) counting
            // calls per order and booking: the ticket (the POS order) of a
            // pos_ticket, the status a changeStatus or a walk-in asks for.
            let about = match (c.body["ticket_id"].as_str(), c.body["status"].as_str()) {
                (Some(ticket), _) => format!(" [ticket {ticket}]"),
                (None, Some(status)) => format!(" [status {status}]"),
                (None, None) => String::new(),
            };
            println!(
                "#{} {} {}{}{} -> {}{}{}",
                c.n,
                c.method,
                c.path,
                if c.query.is_empty() { "" } else { "?" },
                c.query,
                c.status,
                if c.duplicate { " (duplicate)" } else { "" },
                about
            );
            if c.path.ends_with("/pos_ticket") && (200..300).contains(&c.status) {
                println!("{}", ticket_line(&c.path, &c.body));
            }
        }
        seen = calls.len();
    }
    Ok(())
}

/// The line for a ticket attached to a booking: its `ticket_id`, the
/// booking id of the path, its total and tip and its payments (method and
/// amount, cents).
fn ticket_line(path: &str, body: &serde_json::Value) -> String {
    let booking = path
        .trim_end_matches("/pos_ticket")
        .rsplit('/')
        .next()
        .unwrap_or("?");
    let payments: Vec<String> = body["payments"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        p["method"].as_str().unwrap_or("?"),
                        p["amount_cents"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "zenchef-sim: ticket {} on booking {booking}: total {} tip {} cents, payments {}",
        body["ticket_id"].as_str().unwrap_or("?"),
        body["total_cents"],
        body["tip_cents"],
        payments.join(", ")
    )
}
