//! `zenchef-sim`: the Zenchef API fake as a standalone process, seeded with a
//! generated service, for playing with the agent by hand.

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
        }
        seen = calls.len();
    }
    Ok(())
}
