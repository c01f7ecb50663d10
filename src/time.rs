//! The box's clock, in one place.
//!
//! The clock may be wrong at boot (no RTC on a Raspberry Pi until NTP
//! answers), so it is never used to order anything: POS events are ordered
//! by their `seq`, retries by the monotonic clock (`tokio::time::Instant`).
//! What it gives is informational timestamps for the journal, `status` and
//! the store's `*_at` columns; and the local time-of-day window
//! ([`in_window`]) updates and retention wait for.

/// The box's clock, UTC, RFC 3339 with milliseconds
/// (`2026-11-29T18:42:05.123Z`): informational timestamps only, never
/// ordering. Milliseconds let the benchmarks measure publish → stored
/// latency from `events.received_at`.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether `minute` (after midnight, local time) is inside `window`
/// (`(start, end)` in minutes after midnight, the end excluded); a window
/// whose end is before its start wraps midnight (`23:00-01:00`). The
/// maintenance window of updates and retention.
pub fn in_window(minute: u32, window: (u32, u32)) -> bool {
    let (start, end) = window;
    if start < end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_utc_with_milliseconds() {
        let s = now_utc();
        assert_eq!(s.len(), "2026-11-29T18:42:05.123Z".len(), "{s}");
        assert!(s.ends_with('Z'), "{s}");
        assert!(chrono::DateTime::parse_from_rfc3339(&s).is_ok(), "{s}");
    }
}
