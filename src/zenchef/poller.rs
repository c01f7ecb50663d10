//! Zenchef → POS: the reservation poller and its mirror (docs/protocol/sync-rules.md
//! rules 1–3, docs/protocol/cashpad-local.md §6).
//!
//! Every `poll_interval_s` (and right after each forwarded event, and on a
//! webhook nudge: at most one nudged poll every [`NUDGE_SPACING`]) the
//! poller reads the bookings of the sync window (today
//! and the next `sync_days − 1` days, restaurant time zone), turns each into
//! the POS reservation of §6, and compares it with the mirror kept in
//! SQLite:
//! - new or changed → publish retained on `R/zenchef/reservations/<id>`;
//! - `canceled`, `refused`, `no_shown`, or gone from the window → publish a
//!   zero-length retained message (withdrawal);
//! - unchanged → nothing.
//!
//! The mirror is the *desired* state of the POS. After every (re)connect
//! what the POS must show is replayed (retained publishes are idempotent):
//! the bookings currently published, and the withdrawals not yet
//! confirmed, so a publish lost with a connection, a restart or a broker
//! restart is made good without bookkeeping of PUBACKs. The replay is
//! bounded by the sync window, not by the years of bookings the mirror
//! has seen:
//! - a withdrawal is **confirmed** once it was handed to a session that
//!   was still the same, connected, [`CONFIRM_AFTER`] later (QoS 1 on a
//!   session that lived through keep-alives: the broker has it; rumqttc
//!   re-sends unacknowledged publishes itself while the process lives).
//!   A confirmed withdrawal leaves the in-memory mirror and is never
//!   replayed again (column `reservations.confirmed_at`);
//! - a booking still published whose day left the window is withdrawn by
//!   the next successful poll (rule 2), then confirmed like any other;
//! - confirmed withdrawals whose day left the window are deleted from the
//!   store, [`PRUNE_BATCH`] at a time after each successful poll.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::client::{Booking, CallError, ErrorClass, ZenchefClient};
use crate::health::Health;
pub use crate::outbox::mirror::{MirrorRow, PRUNE_BATCH, prune_mirror};
use crate::outbox::mirror::{confirm_withdrawals, load_mirror, save_mirror};
use crate::outbox::{Store, StoreError};
use crate::pos::session::PosLink;
use crate::pos::wire::Reservation;
use crate::time::now_utc;

/// A withdrawal counts as confirmed when the session it was published on
/// is still the same and connected this long after (two keep-alives of
/// 30 s: a dead connection would have been noticed).
pub const CONFIRM_AFTER: Duration = Duration::from_secs(60);

/// Least time between the start of one poll and a poll a nudge asks for
/// (a webhook, a forwarded event): a flood of nudges costs one poll per
/// this span at most, never one poll per nudge. Nudges that come while a
/// poll runs or waits are one pending poll ([`Notify`] keeps one permit).
pub const NUDGE_SPACING: Duration = Duration::from_secs(2);
/// Least wait after a nudge, so that a burst (one nudge per forwarded
/// event of a bill) is one poll.
pub const NUDGE_COALESCE: Duration = Duration::from_millis(250);

/// Withdrawals published and waiting to be confirmed: booking → the
/// session generation it went out on, and when.
type Pending = HashMap<i64, (u64, tokio::time::Instant)>;

/// Why a reservation sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading the bookings from Zenchef failed.
    #[error(transparent)]
    Zenchef(#[from] CallError),
    /// The mirror could not be saved.
    #[error("cannot save the reservation mirror: {0}")]
    Store(#[from] StoreError),
}

/// The change to make for one booking, given the mirror (pure).
pub fn diff(mirror: &BTreeMap<i64, MirrorRow>, fetched: &[Booking]) -> Vec<(i64, MirrorRow)> {
    let mut changes = Vec::new();
    let mut seen = HashSet::new();
    for b in fetched {
        seen.insert(b.id);
        // Rule 2: a withdrawn reservation leaves the POS.
        let body = if b.status.is_withdrawn() {
            None
        } else {
            Some(Reservation::of(b).to_json())
        };
        let row = MirrorRow {
            day: b.day.clone(),
            status: b.status.to_string(),
            body,
        };
        match mirror.get(&b.id) {
            Some(old) if old.body == row.body => {}
            // Never published and not to be: nothing to withdraw.
            None if row.body.is_none() => {}
            _ => changes.push((b.id, row)),
        }
    }
    for (id, old) in mirror {
        if !seen.contains(id) && old.body.is_some() {
            // Left the window (day passed, moved to another day) or deleted.
            changes.push((
                *id,
                MirrorRow {
                    day: old.day.clone(),
                    status: old.status.clone(),
                    body: None,
                },
            ));
        }
    }
    changes
}

/// The reservation poller's context (spawned by `crate::daemon`).
pub struct Poller {
    /// The Zenchef API client.
    pub client: ZenchefClient,
    /// The reservation mirror and the order links.
    pub store: Store,
    /// The session reservations are published on.
    pub link: PosLink,
    /// The restaurant's time zone (the days polled are local days).
    pub tz: chrono_tz::Tz,
    /// `[zenchef] poll_interval_s`.
    pub every: Duration,
    /// `[zenchef] sync_days`: today and the next `sync_days − 1` days.
    pub sync_days: u32,
    /// The daemon's view of Zenchef.
    pub health: Health,
    /// Poll now (a webhook, a delivered change).
    pub nudge: Arc<Notify>,
    /// Replay the whole mirror (after a reconnect to the POS).
    pub replay: mpsc::UnboundedReceiver<()>,
}

impl Poller {
    /// Runs the poller until `cancel`: a sync every `every` (or when
    /// nudged), the whole mirror replayed after each connect to the POS,
    /// withdrawals confirmed once their session outlived them.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mirror = match self.store.read(load_mirror).await {
            Ok(m) => m,
            Err(e) => {
                warn!("cannot read the reservation mirror ({e}); starting from an empty one");
                BTreeMap::new()
            }
        };
        let mut st = PollState {
            mirror,
            failures: 0,
            tables_read: None,
            pending: Pending::new(),
        };
        loop {
            let started = tokio::time::Instant::now();
            let synced = sync_once(
                &self.client,
                &self.store,
                &self.link,
                self.tz,
                self.sync_days,
                &mut st.mirror,
                &mut st.pending,
            )
            .await;
            match synced {
                Ok(n) => self.synced(n, &mut st).await,
                Err(e) => self.failed(&e, &mut st),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.every) => {}
                _ = self.nudge.notified() => {
                    // Coalesce a burst of nudges, and space the polls they
                    // ask for: the nudges of the wait are one poll.
                    let at = (started + NUDGE_SPACING)
                        .max(tokio::time::Instant::now() + NUDGE_COALESCE);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                r = self.replay.recv() => {
                    if r.is_none() { return; }
                    let t = tokio::time::Instant::now();
                    let (published, withdrawn) =
                        replay_all(&self.link, &st.mirror, &mut st.pending).await;
                    info!(
                        "replayed {} reservation(s) to the POS after connecting ({published} \
                         published, {withdrawn} withdrawal(s) not yet confirmed) in {} ms",
                        published + withdrawn,
                        t.elapsed().as_millis()
                    );
                }
            }
            confirm(&self.store, &self.link, &mut st.mirror, &mut st.pending).await;
        }
    }

    /// A sync went through (`n` changes sent to the POS): health, then
    /// Zenchef's tables for the page's name check (at most every
    /// `REFRESH_EVERY`), then past days' confirmed withdrawals pruned.
    async fn synced(&self, n: usize, st: &mut PollState) {
        if st.failures > 0 {
            info!("reservation sync works again");
        }
        st.failures = 0;
        self.health.zenchef_ok();
        self.health
            .update(|s| s.last_reservation_sync = Some(now_utc()));
        if n > 0 {
            info!("{n} reservation change(s) sent to the POS");
        }
        // Zenchef's tables for the page's name check (src/tables.rs).
        if st
            .tables_read
            .is_none_or(|t| t.elapsed() >= crate::tables::REFRESH_EVERY)
        {
            match refresh_zenchef_tables(&self.client, &self.store).await {
                Ok(_) => st.tables_read = Some(tokio::time::Instant::now()),
                Err(e) => debug!("cannot read Zenchef's tables: {e}"),
            }
        }
        let start = window_start(self.tz).to_string();
        match self.store.write(move |c| prune_mirror(c, &start)).await {
            Ok(0) => {}
            Ok(n) => {
                debug!("{n} confirmed withdrawal(s) of past days dropped from the mirror")
            }
            Err(e) => debug!("cannot prune the reservation mirror: {e}"),
        }
    }

    /// A sync failed: health (a refused token, an outage), and a line the
    /// 1st time and every 10th.
    fn failed(&self, e: &SyncError, st: &mut PollState) {
        st.failures += 1;
        let failures = st.failures;
        let refused = matches!(e, SyncError::Zenchef(c) if c.class == ErrorClass::Credentials);
        if let SyncError::Zenchef(c) = e {
            let outage = matches!(c.class, ErrorClass::Retry { .. });
            self.health.zenchef_error(&c.to_string(), refused, outage);
        }
        if failures == 1 || failures.is_multiple_of(10) {
            if refused {
                let rid = self.client.restaurant_id();
                error!(
                    restaurant_id = rid,
                    "Zenchef refused the token for restaurant {rid} ({e}): check \
                     zenchef.token and zenchef.restaurant_id; reservations on the POS are \
                     not updated until then ({failures} refusal(s) in a row)"
                );
            } else {
                warn!("reservation sync failed ({failures} in a row): {e}");
            }
        }
    }
}

/// What the poller keeps between two syncs.
struct PollState {
    /// What the POS holds (published, or withdrawn and not yet confirmed).
    mirror: BTreeMap<i64, MirrorRow>,
    /// Failed syncs in a row.
    failures: u32,
    /// When Zenchef's tables were last read.
    tables_read: Option<tokio::time::Instant>,
    /// Withdrawals published in this session, waiting for confirmation.
    pending: Pending,
}

/// The first day of the sync window (today, restaurant time).
fn window_start(tz: chrono_tz::Tz) -> NaiveDate {
    Utc::now().with_timezone(&tz).date_naive()
}

/// Records the withdrawals whose session outlived [`CONFIRM_AFTER`] as
/// confirmed, and forgets them (they are no longer replayed).
async fn confirm(
    store: &Store,
    link: &PosLink,
    mirror: &mut BTreeMap<i64, MirrorRow>,
    pending: &mut Pending,
) {
    let now = tokio::time::Instant::now();
    let generation = link.generation();
    let up = link.connected();
    // Published on another session: the replay at the next connect sends
    // them again.
    pending.retain(|_, (g, _)| *g == generation);
    if !up {
        return;
    }
    let due: Vec<i64> = pending
        .iter()
        .filter(|(_, (_, at))| now.duration_since(*at) >= CONFIRM_AFTER)
        .map(|(id, _)| *id)
        .collect();
    if due.is_empty() {
        return;
    }
    let ids = due.clone();
    match store.write(move |c| confirm_withdrawals(c, &ids)).await {
        Ok(()) => {
            for id in due {
                pending.remove(&id);
                if mirror.get(&id).is_some_and(|r| r.body.is_none()) {
                    mirror.remove(&id);
                }
            }
        }
        Err(e) => debug!("cannot record confirmed withdrawals: {e}"),
    }
}

async fn sync_once(
    client: &ZenchefClient,
    store: &Store,
    link: &PosLink,
    tz: chrono_tz::Tz,
    sync_days: u32,
    mirror: &mut BTreeMap<i64, MirrorRow>,
    pending: &mut Pending,
) -> Result<usize, SyncError> {
    let today = Utc::now().with_timezone(&tz).date_naive();
    let window: Vec<NaiveDate> = today.iter_days().take(sync_days as usize).collect();
    let mut fetched = Vec::new();
    for day in &window {
        fetched.extend(client.bookings_of_day(*day).await?);
    }
    let changes = diff(mirror, &fetched);
    if changes.is_empty() {
        return Ok(0);
    }
    for (id, row) in &changes {
        let payload = row.body.clone().unwrap_or_default().into_bytes();
        let what = if row.body.is_some() {
            "published"
        } else {
            "withdrawn"
        };
        let sent = link
            .publish(&format!("zenchef/reservations/{id}"), payload, true)
            .await;
        if row.body.is_none() {
            if sent {
                pending.insert(*id, (link.generation(), tokio::time::Instant::now()));
            } else {
                pending.remove(id);
            }
        } else {
            pending.remove(id);
        }
        info!(
            booking_id = id,
            "reservation {id} ({}) {what} to the POS", row.status
        );
    }
    let persisted = changes.clone();
    store.write(move |c| save_mirror(c, &persisted)).await?;
    let n = changes.len();
    for (id, row) in changes {
        mirror.insert(id, row);
    }
    Ok(n)
}

/// Replays what the POS must show: every booking published, every
/// withdrawal not yet confirmed (the in-memory mirror holds nothing else).
/// Answers how many of each were handed to the session.
async fn replay_all(
    link: &PosLink,
    mirror: &BTreeMap<i64, MirrorRow>,
    pending: &mut Pending,
) -> (usize, usize) {
    let (mut published, mut withdrawn) = (0, 0);
    for (id, row) in mirror {
        let payload = row.body.clone().unwrap_or_default().into_bytes();
        if link
            .publish(&format!("zenchef/reservations/{id}"), payload, true)
            .await
        {
            if row.body.is_some() {
                published += 1;
            } else {
                withdrawn += 1;
                pending.insert(*id, (link.generation(), tokio::time::Instant::now()));
            }
        }
    }
    (published, withdrawn)
}

/// Reads Zenchef's tables (`GET /tables`) and keeps their names in the
/// store for `tables::stored_check`; answers how many there are.
///
/// Errors: the call failed (nothing is written: the last list stays), or
/// the store refused the write.
async fn refresh_zenchef_tables(client: &ZenchefClient, store: &Store) -> Result<usize, String> {
    let names: Vec<String> = client
        .tables()
        .await
        .map_err(|e: CallError| e.to_string())?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let n = names.len();
    let json = serde_json::to_string(&crate::tables::ZenchefTables {
        fetched_at: now_utc(),
        names,
    })
    .unwrap_or_default();
    store
        .write(move |c| crate::outbox::kv_set(c, crate::tables::ZENCHEF_TABLES_KEY, &json))
        .await
        .map_err(|e| e.to_string())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn booking(id: i64, status: &str, comment: Option<&str>) -> Booking {
        serde_json::from_value(json!({
            "id": id, "day": "2026-11-29", "time": "20:00", "nb_guests": 4,
            "firstname": null, "lastname": "Martin", "phone_number": null, "email": "c@example.com",
            "comment": comment, "allergies": "fruits à coque", "status": status,
            "tables": [{"id": 17, "name": "12"}],
            "customersheet": {"id": 998, "firstname": "Camille", "lastname": "X",
                              "phone": "+33600000000", "email": "other@example.com"},
            "updated_at": "2026-11-29T15:02:11+01:00", "unknown_field": 1
        }))
        .unwrap()
    }

    #[test]
    fn customer_fields_fall_back_to_the_customersheet() {
        let r = serde_json::to_value(Reservation::of(&booking(
            1,
            "confirmed",
            Some("Anniversaire"),
        )))
        .unwrap();
        assert_eq!(
            r["customer"],
            json!({"firstname":"Camille","lastname":"Martin","phone":"+33600000000","email":"c@example.com"})
        );
        assert_eq!(r["tables"], json!(["12"]));
        assert_eq!(r["allergies"], "fruits à coque");
        assert_eq!(r["comment"], "Anniversaire");
    }

    /// The mirror loaded at start holds what a replay must send: published
    /// bookings and withdrawals not yet confirmed; confirmed withdrawals
    /// of past days are pruned, in batches.
    #[test]
    fn the_mirror_keeps_what_a_replay_needs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        drop(crate::outbox::Store::open(&path).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        let row = |day: &str, body: Option<&str>| MirrorRow {
            day: day.into(),
            status: if body.is_some() {
                "confirmed"
            } else {
                "canceled"
            }
            .into(),
            body: body.map(String::from),
        };
        let mut changes: Vec<(i64, MirrorRow)> =
            (0..1200).map(|i| (i, row("2026-01-01", None))).collect();
        changes.push((5000, row("2026-11-29", Some("{}"))));
        changes.push((5001, row("2026-11-29", None)));
        changes.push((5002, row("2026-11-20", None)));
        c.execute_batch("PRAGMA synchronous = OFF").unwrap();
        save_mirror(&c, &changes).unwrap();
        assert_eq!(
            load_mirror(&c).unwrap().len(),
            1203,
            "nothing confirmed yet"
        );
        let old: Vec<i64> = (0..1200).collect();
        confirm_withdrawals(&c, &old).unwrap();
        confirm_withdrawals(&c, &[5000]).unwrap(); // published: not a withdrawal
        let m = load_mirror(&c).unwrap();
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [5000, 5001, 5002]);
        assert_eq!(prune_mirror(&c, "2026-11-29").unwrap(), PRUNE_BATCH);
        assert_eq!(prune_mirror(&c, "2026-11-29").unwrap(), PRUNE_BATCH);
        assert_eq!(prune_mirror(&c, "2026-11-29").unwrap(), 200);
        assert_eq!(prune_mirror(&c, "2026-11-29").unwrap(), 0);
        // 5002 (past day) is not confirmed: kept for the next replay.
        let left: i64 = c
            .query_row("SELECT COUNT(*) FROM reservations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 3);
        // A booking withdrawn again after a change is not confirmed any more.
        save_mirror(&c, &[(0, row("2026-01-01", Some("{}")))]).unwrap();
        save_mirror(&c, &[(0, row("2026-01-01", None))]).unwrap();
        assert!(load_mirror(&c).unwrap().contains_key(&0));
    }

    #[test]
    fn new_changed_cancelled_and_gone() {
        let mut mirror = BTreeMap::new();
        // new → published
        let c = diff(&mirror, &[booking(1, "confirmed", None)]);
        assert_eq!(c.len(), 1);
        assert!(c[0].1.body.is_some());
        mirror.extend(c);
        // unchanged → nothing
        assert!(diff(&mirror, &[booking(1, "confirmed", None)]).is_empty());
        // changed → republished
        let c = diff(&mirror, &[booking(1, "confirmed", Some("Window seat"))]);
        assert_eq!(c.len(), 1);
        mirror.extend(c);
        // cancelled → withdrawn, and only once
        let c = diff(&mirror, &[booking(1, "canceled", Some("Window seat"))]);
        assert_eq!(c[0].1.body, None);
        mirror.extend(c);
        assert!(diff(&mirror, &[booking(1, "canceled", Some("Window seat"))]).is_empty());
        // a cancelled booking never published is not withdrawn
        assert!(diff(&mirror, &[booking(2, "refused", None)]).is_empty());
        // gone from the window → withdrawn
        let c = diff(&mirror, &[booking(3, "confirmed", None)]);
        mirror.extend(c);
        let c = diff(&mirror, &[]);
        assert_eq!(
            c,
            vec![(
                3,
                MirrorRow {
                    day: "2026-11-29".into(),
                    status: "confirmed".into(),
                    body: None
                }
            )]
        );
    }
}
