//! Matching an opened table to a reservation (docs/protocol/sync-rules.md rule 4).
//!
//! Pure: bookings in, decision out. Candidates are the bookings whose
//! `tables` contain the opened table's name **exactly** (case- and
//! space-sensitive: the integration demands identical names, docs/protocol/README.md), whose status is
//! `confirmed`, `arrived` or `waiting`, whose time lies in
//! `[opened_at − before, opened_at + after]` (edges included), and that are
//! not already linked to an open order. Preference: `arrived` >
//! `confirmed` > `waiting`, then the closest time, then the lowest id.
//!
//! Times are compared as **real elapsed time**: a booking's day and time
//! (restaurant local) become an instant in the restaurant's time zone, and
//! the POS's `opened_at` carries its offset, so the window means the same
//! on the nights clocks change (Europe/Paris 2026-03-29 and 2026-10-25) as
//! on any other. A local time that does not exist (the spring gap) is read
//! one hour later; one that occurs twice (the autumn repeat) is read as
//! the occurrence closest to the opening.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

use crate::booking::BookingStatus;

/// What matching needs of a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Zenchef booking id.
    pub id: i64,
    /// Booking day, restaurant local.
    pub day: NaiveDate,
    /// Booking time, restaurant local.
    pub time: NaiveTime,
    /// Zenchef status.
    pub status: BookingStatus,
    /// Table names assigned in Zenchef.
    pub tables: Vec<String>,
}

/// The matching window, minutes around `opened_at` (config
/// `zenchef.match_before_min` / `match_after_min`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes before `opened_at` a booking may be.
    pub before_min: i64,
    /// Minutes after `opened_at` a booking may be.
    pub after_min: i64,
}

/// The decision, with what to log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MatchOutcome {
    /// The chosen booking, if any.
    pub chosen: Option<i64>,
    /// Other candidates that were not chosen (logged).
    pub others: Vec<i64>,
    /// Bookings in the window whose table name differs from the opened one
    /// only by case or surrounding spaces: not matched, logged as a likely
    /// naming mismatch.
    pub near_misses: Vec<(i64, String)>,
}

fn preference(status: &BookingStatus) -> Option<u8> {
    match status {
        BookingStatus::Arrived => Some(0),
        BookingStatus::Confirmed => Some(1),
        BookingStatus::Waiting => Some(2),
        _ => None,
    }
}

/// The instant of a local day and time in `tz`, the one closest to `near`
/// when the time occurs twice, one hour later when it does not exist.
pub fn local_instant(
    tz: chrono_tz::Tz,
    day: NaiveDate,
    time: NaiveTime,
    near: DateTime<FixedOffset>,
) -> Option<DateTime<FixedOffset>> {
    let ndt = NaiveDateTime::new(day, time);
    let pick = |r: chrono::LocalResult<DateTime<chrono_tz::Tz>>| match r {
        chrono::LocalResult::Single(t) => Some(t),
        chrono::LocalResult::Ambiguous(a, b) => {
            let da = (a.fixed_offset() - near).num_seconds().abs();
            let db = (b.fixed_offset() - near).num_seconds().abs();
            Some(if db < da { b } else { a })
        }
        chrono::LocalResult::None => None,
    };
    pick(tz.from_local_datetime(&ndt))
        .or_else(|| pick(tz.from_local_datetime(&(ndt + Duration::hours(1)))))
        .map(|t| t.fixed_offset())
}

/// Chooses the booking for a table opened at `opened_at` (POS clock, with
/// its offset); bookings' local day and time are read in `tz`. `linked`
/// holds booking ids already linked to open orders.
pub fn choose(
    bookings: &[Candidate],
    table: &str,
    opened_at: DateTime<FixedOffset>,
    tz: chrono_tz::Tz,
    window: Window,
    linked: &[i64],
) -> MatchOutcome {
    let mut ranked: Vec<(u8, i64, i64)> = Vec::new(); // (pref, |Δ| minutes, id)
    let mut near_misses = Vec::new();
    for b in bookings {
        let Some(pref) = preference(&b.status) else {
            continue;
        };
        if linked.contains(&b.id) {
            continue;
        }
        let Some(at) = local_instant(tz, b.day, b.time, opened_at) else {
            continue;
        };
        let delta = (at - opened_at).num_seconds();
        if delta < -window.before_min * 60 || delta > window.after_min * 60 {
            continue;
        }
        if b.tables.iter().any(|t| t == table) {
            ranked.push((pref, delta.abs(), b.id));
        } else if let Some(t) = b
            .tables
            .iter()
            .find(|t| t.trim().to_lowercase() == table.trim().to_lowercase())
        {
            near_misses.push((b.id, t.clone()));
        }
    }
    ranked.sort();
    let mut ids = ranked.into_iter().map(|(_, _, id)| id);
    MatchOutcome {
        chosen: ids.next(),
        others: ids.collect(),
        near_misses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: i64, time: &str, status: &str, table: &str) -> Candidate {
        Candidate {
            id,
            day: NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
            time: NaiveTime::parse_from_str(time, "%H:%M").unwrap(),
            status: status.into(),
            tables: vec![table.into()],
        }
    }

    const PARIS: chrono_tz::Tz = chrono_tz::Europe::Paris;

    /// 2026-11-29 at `hm`, Paris time (UTC+1 in November).
    fn at(hm: &str) -> DateTime<FixedOffset> {
        let ndt = NaiveDateTime::new(
            NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
            NaiveTime::parse_from_str(hm, "%H:%M").unwrap(),
        );
        PARIS.from_local_datetime(&ndt).unwrap().fixed_offset()
    }

    const W: Window = Window {
        before_min: 90,
        after_min: 60,
    };

    /// (bookings, table, opened at, linked, expected chosen, expected others)
    // Long by design: one table, a case a row group.
    #[test]
    #[allow(clippy::type_complexity)]
    fn matching_table() {
        let cases: Vec<(Vec<Candidate>, &str, &str, Vec<i64>, Option<i64>, Vec<i64>)> = vec![
            // exact table, in window
            (
                vec![b(1, "20:00", "confirmed", "12")],
                "12",
                "20:10",
                vec![],
                Some(1),
                vec![],
            ),
            // window edges included: booking 90 min before / 60 min after opening
            (
                vec![b(1, "18:40", "confirmed", "12")],
                "12",
                "20:10",
                vec![],
                Some(1),
                vec![],
            ),
            (
                vec![b(1, "21:10", "confirmed", "12")],
                "12",
                "20:10",
                vec![],
                Some(1),
                vec![],
            ),
            // one minute outside either edge
            (
                vec![b(1, "18:39", "confirmed", "12")],
                "12",
                "20:10",
                vec![],
                None,
                vec![],
            ),
            (
                vec![b(1, "21:11", "confirmed", "12")],
                "12",
                "20:10",
                vec![],
                None,
                vec![],
            ),
            // other table
            (
                vec![b(1, "20:00", "confirmed", "13")],
                "12",
                "20:00",
                vec![],
                None,
                vec![],
            ),
            // statuses that are not candidates
            (
                vec![
                    b(1, "20:00", "seated", "12"),
                    b(2, "20:00", "canceled", "12"),
                    b(3, "20:00", "over", "12"),
                    b(4, "20:00", "waiting_customer", "12"),
                ],
                "12",
                "20:00",
                vec![],
                None,
                vec![],
            ),
            // arrived beats confirmed beats waiting, whatever the times
            (
                vec![
                    b(1, "20:00", "waiting", "12"),
                    b(2, "20:30", "confirmed", "12"),
                    b(3, "19:00", "arrived", "12"),
                ],
                "12",
                "20:00",
                vec![],
                Some(3),
                vec![2, 1],
            ),
            // same status: closest time wins (before or after)
            (
                vec![
                    b(1, "19:00", "confirmed", "12"),
                    b(2, "20:20", "confirmed", "12"),
                ],
                "12",
                "20:00",
                vec![],
                Some(2),
                vec![1],
            ),
            // tie on status and distance: lowest id
            (
                vec![
                    b(9, "19:40", "confirmed", "12"),
                    b(4, "20:20", "confirmed", "12"),
                ],
                "12",
                "20:00",
                vec![],
                Some(4),
                vec![9],
            ),
            // already linked to an open order: not a candidate
            (
                vec![
                    b(1, "20:00", "confirmed", "12"),
                    b(2, "20:30", "confirmed", "12"),
                ],
                "12",
                "20:00",
                vec![1],
                Some(2),
                vec![],
            ),
        ];
        for (i, (bookings, table, opened, linked, chosen, others)) in cases.into_iter().enumerate()
        {
            let m = choose(&bookings, table, at(opened), PARIS, W, &linked);
            assert_eq!(m.chosen, chosen, "case {i}");
            assert_eq!(m.others, others, "case {i}");
        }
    }

    #[test]
    fn case_or_space_differences_are_near_misses_not_matches() {
        let bookings = vec![
            b(1, "20:00", "confirmed", "7A"),
            b(2, "20:00", "confirmed", " 7a "),
        ];
        let m = choose(&bookings, "7a", at("20:00"), PARIS, W, &[]);
        assert_eq!(m.chosen, None);
        assert_eq!(
            m.near_misses,
            vec![(1, "7A".to_string()), (2, " 7a ".to_string())]
        );
    }

    #[test]
    fn window_crosses_midnight() {
        let mut late = b(1, "00:30", "confirmed", "5");
        late.day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let m = choose(&[late], "5", at("23:45"), PARIS, W, &[]);
        assert_eq!(m.chosen, Some(1));
    }

    fn on(day: &str, hm: &str, id: i64) -> Candidate {
        Candidate {
            id,
            day: NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap(),
            time: NaiveTime::parse_from_str(hm, "%H:%M").unwrap(),
            status: "confirmed".into(),
            tables: vec!["12".into()],
        }
    }

    fn pos(t: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(t).unwrap()
    }

    /// The windows are real elapsed time on the nights the clocks change
    /// (Europe/Paris: 2026-03-29 02:00 → 03:00, 2026-10-25 03:00 → 02:00).
    #[test]
    fn the_window_is_real_elapsed_time_across_dst_changes() {
        // (booking day, local time, table opened at (POS, with offset), matched?)
        let cases = [
            // Spring: 01:30 CET is 00:30Z, 03:10 CEST is 01:10Z: the booking
            // is 40 real minutes before the opening (wall clocks: 100).
            ("2026-03-29", "01:30", "2026-03-29T03:10:00+02:00", true),
            // 00:20 CET (23:20Z) is 110 real minutes before: outside 90.
            ("2026-03-29", "00:20", "2026-03-29T03:10:00+02:00", false),
            // 02:30 does not exist that night: read as 03:30 CEST (01:30Z),
            // 20 minutes after a table opened at 03:10 CEST.
            ("2026-03-29", "02:30", "2026-03-29T03:10:00+02:00", true),
            // 03:40 CEST (01:40Z) is 50 real minutes after a table opened at
            // 01:50 CET (00:50Z), although the wall clocks differ by 110.
            ("2026-03-29", "03:40", "2026-03-29T01:50:00+01:00", true),
            // 04:05 CEST (02:05Z): 75 real minutes after, outside 60.
            ("2026-03-29", "04:05", "2026-03-29T01:50:00+01:00", false),
            // Autumn: 01:30 CEST is 23:30Z the day before; a table opened at
            // 02:40 CET (01:40Z) is 130 real minutes later, although the
            // wall clocks differ by 70.
            ("2026-10-25", "01:30", "2026-10-25T02:40:00+01:00", false),
            // 02:30 occurs twice; the occurrence closest to an opening at
            // 02:50 CET (01:50Z) is 02:30 CET (01:30Z): 20 minutes before.
            ("2026-10-25", "02:30", "2026-10-25T02:50:00+01:00", true),
            // 03:20 CET (02:20Z) is 90 real minutes after a table opened at
            // 02:50 CEST (00:50Z), outside 60, although the wall clocks
            // differ by 30.
            ("2026-10-25", "03:20", "2026-10-25T02:50:00+02:00", false),
        ];
        for (i, (day, hm, opened, want)) in cases.into_iter().enumerate() {
            let m = choose(&[on(day, hm, 7)], "12", pos(opened), PARIS, W, &[]);
            assert_eq!(m.chosen.is_some(), want, "case {i}: {day} {hm} vs {opened}");
        }
    }
}
