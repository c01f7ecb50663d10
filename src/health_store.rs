//! Writes the daemon's [`Health`] record to the store (`kv`
//! [`KV_KEY`]) every few seconds, and the [`History`] of the last hours
//! beside it (`kv` [`HISTORY_KEY`]), for `status` in another process.
//! Apart from [`crate::health`] so that the record, which the POS,
//! Zenchef and Pay sides write into, depends on no store.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::health::{HISTORY_KEY, Health, History, KV_KEY, Sample};
use crate::outbox::{self, Store, StoreError};
use crate::time::now_utc;

/// Writes the record to the store every `every` until cancelled (and
/// once more at the end); in the same job, closes a [`Sample`] of the
/// [`History`] every `sample` (the queue and counters read from the
/// store, the outage flags seen at every write since the last sample)
/// and writes the history beside the record (`kv` key
/// [`HISTORY_KEY`]). The history left by a previous run is carried on
/// when it has the same sample length.
pub async fn persist_loop(
    health: Health,
    store: Store,
    every: Duration,
    sample: Duration,
    cancel: CancellationToken,
) {
    let sample = sample.max(Duration::from_secs(1));
    let sample_s = sample.as_secs();
    let (previous, delivered) = store
        .kv_value_and_counts(HISTORY_KEY)
        .await
        .map(|(h, counts)| (h, Some(delivered_total(&counts))))
        .unwrap_or_default();
    let mut history = previous
        .and_then(|h| serde_json::from_str::<History>(&h).ok())
        .filter(|h| h.sample_s == sample_s)
        .unwrap_or(History {
            sample_s,
            samples: Vec::new(),
        });
    history.trim(Utc::now());
    let mut sampler = Sampler {
        delivered,
        zenchef_outage: false,
        pay_outage: false,
    };
    let mut next_sample = tokio::time::Instant::now() + sample;
    loop {
        let wait = every.min(next_sample.saturating_duration_since(tokio::time::Instant::now()));
        let stopping = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        };
        health.update(|s| s.updated_at = now_utc());
        let json = serde_json::to_string(&health.snapshot()).unwrap_or_default();
        let now = tokio::time::Instant::now();
        let sampling = !stopping && now >= next_sample;
        let r = if sampling {
            let seen = health.take_outages_seen();
            sampler.zenchef_outage = seen.zenchef;
            sampler.pay_outage = seen.pay;
            // Behind by more than a sample (a suspended box): start
            // the next one from now rather than catching up.
            next_sample = if now >= next_sample + sample {
                now + sample
            } else {
                next_sample + sample
            };
            let mut h = history.clone();
            let mut taken = sampler.clone();
            let r = store
                .set_kv_then_from_counts(KV_KEY, json, HISTORY_KEY, move |counts| {
                    let s = taken.take(counts);
                    h.push(s, Utc::now());
                    (serde_json::to_string(&h).unwrap_or_default(), (h, taken))
                })
                .await;
            r.map(|(h, taken)| {
                history = h;
                sampler = taken;
            })
        } else {
            store.set_kv_value(KV_KEY, json).await
        };
        note_store_write(&health, r.map(drop), &store);
        if stopping {
            return;
        }
    }
}

/// Keeps the outcome of the record's last write to the store in
/// [`HealthState::store_write_error`]; a line when writes start
/// failing, one when they work again.
fn note_store_write(health: &Health, r: Result<(), StoreError>, store: &Store) {
    let was = health.snapshot().store_write_error;
    match r {
        Err(e) => {
            let why = e.to_string();
            // INFO: intake's ERROR already says that events cannot be
            // stored; this line says why the record goes stale.
            if was.is_none() {
                tracing::info!(
                    "cannot write to the store ({why}): is its disk full or read-only? df -h {}",
                    store
                        .path()
                        .parent()
                        .map_or_else(String::new, |d| d.display().to_string())
                );
            }
            health.update(|s| s.store_write_error = Some(why));
        }
        Ok(()) if was.is_some() => {
            tracing::info!("the store can be written again");
            health.update(|s| s.store_write_error = None);
        }
        Ok(()) => {}
    }
}

/// What the sampler carries from one sample to the next.
#[derive(Debug, Clone)]
struct Sampler {
    /// Deliveries counted at the last sample (`None`: unknown).
    delivered: Option<i64>,
    zenchef_outage: bool,
    pay_outage: bool,
}

impl Sampler {
    /// Closes the period: reads the queue and the counters, answers the
    /// sample and starts the next period.
    fn take(&mut self, counts: &outbox::Counts) -> Sample {
        let total = delivered_total(counts);
        let delivered = self.delivered.map(|d| (total - d).max(0)).unwrap_or(0);
        let s = Sample {
            at: now_utc(),
            queued: counts.queued + counts.pay_queued,
            delivered,
            zenchef_outage: self.zenchef_outage,
            pay_outage: self.pay_outage,
        };
        self.delivered = Some(total);
        self.zenchef_outage = false;
        self.pay_outage = false;
        s
    }
}

/// Deliveries of both lanes so far.
fn delivered_total(counts: &outbox::Counts) -> i64 {
    counts.delivered + counts.pay_checks_pushed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real loop on a real store: samples every second, an outage
    /// seen between two ticks is in the next sample, deliveries are the
    /// counters' growth.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_persist_loop_samples_the_queue_deliveries_and_outages() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        store
            .write(|c| outbox::bump(c, "delivered", 5))
            .await
            .unwrap();
        let health = Health::new("static");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(persist_loop(
            health.clone(),
            store.clone(),
            Duration::from_millis(200),
            Duration::from_secs(1),
            cancel.clone(),
        ));
        let read = |store: Store| async move {
            store
                .read(|c| outbox::kv_get(c, HISTORY_KEY))
                .await
                .unwrap()
                .and_then(|s| serde_json::from_str::<History>(&s).ok())
                .unwrap_or_default()
        };
        tokio::time::sleep(Duration::from_millis(1300)).await;
        // An outage of 30 ms, shorter than the loop's tick, and 7
        // deliveries.
        health.update(|s| s.zenchef.outage = true);
        store
            .write(|c| {
                outbox::bump(c, "delivered", 4)?;
                outbox::bump(c, "pay_checks_pushed", 3)
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        health.update(|s| s.zenchef.outage = false);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let h = read(store.clone()).await;
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(h.sample_s, 1);
        assert!(h.samples.len() >= 3, "{h:?}");
        assert_eq!(h.samples[0].delivered, 0, "counted from the start: {h:?}");
        assert!(!h.samples[0].zenchef_outage, "{h:?}");
        let out: Vec<&Sample> = h.samples.iter().filter(|s| s.zenchef_outage).collect();
        assert_eq!(out.len(), 1, "the outage is in one sample: {h:?}");
        assert_eq!(out[0].delivered, 7, "{h:?}");
        assert_eq!(h.samples.iter().map(|s| s.delivered).sum::<i64>(), 7);
        assert!(h.samples.iter().all(|s| !s.pay_outage && s.queued == 0));

        // A restart carries the history on.
        let before = h.samples.len();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(persist_loop(
            Health::new("static"),
            store.clone(),
            Duration::from_millis(200),
            Duration::from_secs(1),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let h2 = read(store.clone()).await;
        cancel.cancel();
        task.await.unwrap();
        assert!(h2.samples.len() > before, "{h2:?}");
        assert_eq!(h2.samples[..before], h.samples[..before]);
    }
}
