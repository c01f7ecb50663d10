//! `zenchef-edge link <order_id> <booking_id>` and `unlink <order_id>`
//! (sync-rules 4b, manual link wins).
//!
//! The CLI never changes an order itself: it inserts a row in
//! `link_requests` and the daemon applies it (`links.rs`), so the change is
//! serialised with deliveries. When the daemon runs, the command waits up
//! to [`WAIT`] for the outcome and prints it; otherwise it says the request
//! is queued (the daemon applies it when it starts).
//!
//! Exit codes: 0 applied or queued, 1 refused (or unknown order).

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::outbox::links::LinkState;
use crate::outbox::{events, links, store};
use crate::status;

/// How long the command waits for the daemon's answer.
pub const WAIT: Duration = Duration::from_secs(10);

/// Queues a link (`booking = Some`) or an unlink and reports the outcome.
pub fn run(config: &Config, order_id: &str, booking: Option<i64>) -> anyhow::Result<i32> {
    let order_id = order_id.trim();
    anyhow::ensure!(!order_id.is_empty(), "the order id is empty");
    let conn = store::open_for_cli(&config.store_path)?;
    if !links::has_table(&conn)? {
        eprintln!(
            "the store was written by an older agent: restart the agent \
             (systemctl restart zenchef-edge) so that it upgrades the store, then retry"
        );
        return Ok(1);
    }
    if !events::order_known(&conn, order_id)? {
        eprintln!(
            "order {order_id} is unknown: no event of this order was received from the POS \
             (order ids appear in `zenchef-edge outbox list` and in the journal)"
        );
        return Ok(1);
    }
    let id = links::request(&conn, order_id, booking)?;
    let what = if booking.is_some() { "link" } else { "unlink" };
    let (_, running) = status::daemon_record(&conn, chrono::Utc::now());
    if !running {
        println!(
            "request #{id} queued: the agent is not running; it applies the {what} when it \
             starts (see `zenchef-edge status`)"
        );
        return Ok(0);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let Some(request) = links::get(&conn, id)? else {
            anyhow::bail!("request #{id} disappeared from the store");
        };
        let (state, cancel) = (request.state, request.cancel_booking);
        let result = request.result.unwrap_or_default();
        match state {
            LinkState::Done => {
                println!("{result}");
                return Ok(0);
            }
            LinkState::Refused => {
                eprintln!("{what} refused: {result}");
                return Ok(1);
            }
            _ if Instant::now() >= deadline => {
                match (state, cancel) {
                    (LinkState::Cancelling, Some(w)) => println!(
                        "{result}; the walk-in {w} is still being cancelled in Zenchef (retried \
                         automatically)"
                    ),
                    _ if result.is_empty() => println!(
                        "request #{id} queued: the agent has not taken it yet; it will (see the \
                         journal: journalctl -u zenchef-edge ORDER_ID={order_id})"
                    ),
                    _ => println!("request #{id} queued: {result}"),
                }
                return Ok(0);
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
