//! A generated lunch and dinner service, deterministic from a seed.
//!
//! [`Scenario::generate`] produces:
//! 1. the restaurant ([`TableDef`]s: `"1"`..`"30"` plus `T31`–`T33`,
//!    `Terrasse 1`–`3`, `Bar 1`, `Bar 2`; names identical in the POS floor
//!    plan and in Zenchef);
//! 2. the Zenchef bookings of the day as they stand before service
//!    (lunch 12:00–13:30, dinner 19:00–21:30), one table each;
//! 3. a [`Step`] timeline: POS event envelopes, Zenchef-side staff changes
//!    and a 5-minute internet outage;
//! 4. the [`Expected`] outcome in Zenchef once the agent has delivered
//!    everything.
//!
//! [`Scenario::generate_pay`] is the same service with Zenchef Pay: some
//! orders are paid by guests from their phone ([`Step::GuestPays`]) instead
//! of the POS publishing the payment, one guest pays a table already paid in
//! cash ([`Step::InjectPayment`]), and the expected outcome also covers the
//! checks and the fate of every guest payment ([`Scenario::pay_problems`]).
//!
//! # Why matching is unambiguous
//! Each table carries at most one booking per service, lunch and dinner are
//! more than 5 hours apart, and a table is opened for its booking between
//! 10 minutes before and 20 minutes after the booking time, so exactly one
//! booking lies in `[opened_at − 90 min, opened_at + 60 min]`. Walk-ins are
//! opened on tables that have no booking in that service. Cancelled and
//! no-show bookings are never opened; moves go to a table that is free for
//! the whole service.
//!
//! All times are in the restaurant day with offset `+01:00`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use serde_json::{Value, json};

use crate::pay::{PayFake, PaymentState};
use crate::pos::{BillStatus, EventBuilder, Line, Payment, Pos, paris_winter, rfc3339};
use crate::zenchef::{ZenchefConfig, ZenchefFake};

/// A table of the restaurant, same name on the POS and in Zenchef.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Zenchef table id.
    pub id: i64,
    /// Name, identical on both sides.
    pub name: String,
    /// Room, e.g. `Salle`.
    pub room: String,
    /// Seats.
    pub seats: u32,
}

/// A change restaurant staff make in Zenchef during service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZenchefChange {
    /// The booking's time becomes `time` (`HH:MM`).
    SetTime {
        /// Booking id.
        booking_id: i64,
        /// New time.
        time: String,
    },
    /// The party size becomes `nb_guests`.
    SetGuests {
        /// Booking id.
        booking_id: i64,
        /// New party size.
        nb_guests: u32,
    },
    /// The guest's remark becomes `comment`.
    SetComment {
        /// Booking id.
        booking_id: i64,
        /// New comment.
        comment: String,
    },
    /// The booking is cancelled (`status = canceled`).
    Cancel {
        /// Booking id.
        booking_id: i64,
    },
}

impl ZenchefChange {
    /// The booking concerned.
    pub fn booking_id(&self) -> i64 {
        match self {
            ZenchefChange::SetTime { booking_id, .. }
            | ZenchefChange::SetGuests { booking_id, .. }
            | ZenchefChange::SetComment { booking_id, .. }
            | ZenchefChange::Cancel { booking_id } => *booking_id,
        }
    }

    /// Applies the change to a booking JSON object.
    pub fn apply_to(&self, b: &mut Value) {
        match self {
            ZenchefChange::SetTime { time, .. } => b["time"] = json!(time),
            ZenchefChange::SetGuests { nb_guests, .. } => b["nb_guests"] = json!(nb_guests),
            ZenchefChange::SetComment { comment, .. } => b["comment"] = json!(comment),
            ZenchefChange::Cancel { .. } => b["status"] = json!("canceled"),
        }
    }

    /// Applies the change to the fake, as staff would (bumps `updated_at`).
    pub fn apply(&self, fake: &ZenchefFake) -> bool {
        fake.update_booking(self.booking_id(), |b| self.apply_to(b))
    }
}

/// One step of the service, in time order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The POS publishes this event envelope on `R/events`.
    Pos {
        /// When (restaurant time); equals the envelope's `occurred_at`.
        at: DateTime<FixedOffset>,
        /// The full envelope (§3).
        event: Value,
    },
    /// Staff change a booking in Zenchef.
    Zenchef {
        /// When.
        at: DateTime<FixedOffset>,
        /// What.
        change: ZenchefChange,
    },
    /// The internet goes down (the Zenchef API becomes unreachable).
    OutageStart {
        /// When.
        at: DateTime<FixedOffset>,
    },
    /// The internet comes back.
    OutageEnd {
        /// When.
        at: DateTime<FixedOffset>,
    },
    /// Zenchef (reservations) alone goes down: its API answers 503 while
    /// Zenchef Pay and the POS work; guests keep paying from their phone.
    ZenchefDown {
        /// When.
        at: DateTime<FixedOffset>,
    },
    /// Zenchef answers again.
    ZenchefUp {
        /// When.
        at: DateTime<FixedOffset>,
    },
    /// A guest pays from the Zenchef Pay app
    /// ([`PayFake::guest_pays`]); the POS does not publish this payment
    /// itself: the agent turns it into a settle command and the POS answers
    /// `payment.recorded` or `bill.paid`. Play it once the order's check is
    /// `open` in the fake with the bill's final total
    /// ([`Expected::checks`]); the n-th `GuestPays`/`InjectPayment` step is
    /// [`Expected::payments`]`[n]`.
    GuestPays {
        /// When.
        at: DateTime<FixedOffset>,
        /// The POS order.
        order_id: String,
        /// The guest's share of the bill in cents (tip excluded).
        amount_cents: i64,
        /// Tip in cents.
        tip_cents: i64,
        /// Payment method in the app, e.g. `card`.
        method: String,
    },
    /// A payment appears in Zenchef Pay although the check cannot be paid
    /// ([`PayFake::inject_payment`]): the agent must reject it (rule 6).
    /// Play it once the order's check is `closed` in the fake.
    InjectPayment {
        /// When.
        at: DateTime<FixedOffset>,
        /// The POS order.
        order_id: String,
        /// Amount in cents (tip excluded).
        amount_cents: i64,
        /// Tip in cents.
        tip_cents: i64,
        /// Payment method, e.g. `card`.
        method: String,
    },
}

impl Step {
    /// When the step happens.
    pub fn at(&self) -> DateTime<FixedOffset> {
        match self {
            Step::Pos { at, .. }
            | Step::Zenchef { at, .. }
            | Step::OutageStart { at }
            | Step::OutageEnd { at }
            | Step::ZenchefDown { at }
            | Step::ZenchefUp { at }
            | Step::GuestPays { at, .. }
            | Step::InjectPayment { at, .. } => *at,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Step::OutageStart { .. } | Step::OutageEnd { .. } | Step::ZenchefDown { .. } => 0,
            Step::Zenchef { .. } => 1,
            Step::Pos { .. } => 2,
            Step::GuestPays { .. } | Step::InjectPayment { .. } => 3,
            // After what happens at the same minute: the window is closed.
            Step::ZenchefUp { .. } => 4,
        }
    }
}

/// Totals of a paid bill as the POS reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTicket {
    /// `ticket_id` = the POS `order_id`.
    pub ticket_id: String,
    /// The booking it must be attached to (`None` for a walk-in: the id is
    /// given by the fake at creation; see [`ExpectedWalkin`]).
    pub booking_id: Option<i64>,
    /// Covers on the bill.
    pub covers: u32,
    /// Bill total in cents (tip excluded).
    pub total_cents: i64,
    /// Tip in cents.
    pub tip_cents: i64,
    /// Number of bill lines.
    pub lines: usize,
    /// Sum of the payments in cents (= total + tip).
    pub paid_cents: i64,
}

/// A walk-in the agent must create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedWalkin {
    /// POS order id (also the ticket id).
    pub order_id: String,
    /// Table where it was opened (moves are not reflected in Zenchef).
    pub table: String,
    /// `nb_guests` = covers of `table.opened`.
    pub covers: u32,
    /// `day` of `opened_at`.
    pub day: String,
    /// `time` (`HH:MM`) of `opened_at`.
    pub time: String,
}

/// A check as Zenchef Pay must show it at the end (docs/protocol/zenchef-pay.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedCheck {
    /// The POS order.
    pub order_id: String,
    /// Final table (after moves).
    pub table: String,
    /// Covers.
    pub covers: u32,
    /// Final status: `closed` (paid) or `voided`.
    pub status: String,
    /// The POS's bill total in cents.
    pub total_cents: i64,
    /// Number of bill lines.
    pub lines: usize,
}

/// What must become of a Zenchef Pay payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentFate {
    /// Settled exactly once: one settle command applied by the POS, acked
    /// `settled`.
    Settled,
    /// Acked `rejected` (refunded), never a settle command.
    Rejected {
        /// A word the reason must contain (case-insensitive): `already
        /// paid`, `unknown` or `exceeds`.
        reason_contains: String,
    },
}

/// A Zenchef Pay payment of the scenario and its expected fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPayment {
    /// The POS order it pays.
    pub order_id: String,
    /// Amount in cents (tip excluded).
    pub amount_cents: i64,
    /// Tip in cents.
    pub tip_cents: i64,
    /// Method in the app.
    pub method: String,
    /// What must become of it.
    pub fate: PaymentFate,
}

/// What Zenchef must look like once every event was delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Per booking id, the statuses the agent must set, in order
    /// (`["seated","over"]` for served bookings, `[]` for the others).
    pub status_history: BTreeMap<i64, Vec<String>>,
    /// Walk-ins the agent must create, by opening order.
    pub walkins: Vec<ExpectedWalkin>,
    /// Tickets by `ticket_id` (= `order_id`).
    pub tickets: BTreeMap<String, ExpectedTicket>,
    /// Bookings cancelled by staff: no agent call may touch them.
    pub cancelled: Vec<i64>,
    /// Bookings never opened on the POS (no-shows): no status change.
    pub not_opened: Vec<i64>,
    /// Per customersheet id: `(visits, average_spend_cents)` after all
    /// tickets are attached.
    pub customersheets: BTreeMap<i64, (i64, i64)>,
    /// Zenchef Pay checks by `order_id` (every order with items sent);
    /// empty for a scenario without Zenchef Pay. The accepted versions of a
    /// check must increase and never leave `closed`/`voided` once reached.
    pub checks: BTreeMap<String, ExpectedCheck>,
    /// Zenchef Pay payments, in the order of the `GuestPays` and
    /// `InjectPayment` steps of the timeline.
    pub payments: Vec<ExpectedPayment>,
}

/// A whole generated service.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed it was generated from.
    pub seed: u64,
    /// The restaurant day.
    pub day: NaiveDate,
    /// The tables.
    pub tables: Vec<TableDef>,
    /// Zenchef bookings as they stand before service (spec booking objects).
    pub bookings: Vec<Value>,
    /// The timeline, sorted by time.
    pub steps: Vec<Step>,
    /// The expected outcome.
    pub expected: Expected,
    /// Orders paid through Zenchef Pay (empty without Zenchef Pay), by
    /// order id.
    pub pay_orders: Vec<String>,
}

/// SplitMix64: a tiny deterministic generator, independent of `rand`'s
/// algorithm choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
    fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

const FIRST_NAMES: &[&str] = &[
    "Camille", "Léa", "Hugo", "Louis", "Chloé", "Manon", "Jules", "Inès", "Arthur", "Zoé",
    "Gabriel", "Emma", "Raphaël", "Jade", "Nathan", "Sarah", "Lucas", "Alice", "Paul", "Anaïs",
];
const LAST_NAMES: &[&str] = &[
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier",
];
const COMMENTS: &[&str] = &[
    "Anniversaire",
    "Table au calme svp",
    "Poussette",
    "Première visite",
    "Client habitué, aime la table près de la fenêtre",
];
const ALLERGIES: &[&str] = &["fruits à coque", "gluten", "lactose", "crustacés"];
const STARTERS: &[(&str, i64)] = &[("Velouté de potimarron", 900), ("Terrine maison", 1100)];
const MAINS: &[(&str, i64)] = &[
    ("Entrecôte", 2450),
    ("Pavé de saumon", 2200),
    ("Risotto aux cèpes", 1900),
];
const DESSERTS: &[(&str, i64)] = &[("Tarte Tatin", 850), ("Mousse au chocolat", 800)];
const DRINKS: &[(&str, i64)] = &[("Verre de Bordeaux", 700), ("Eau minérale", 450)];

struct Order {
    order_id: String,
    table: String,
    moved_to: Option<String>,
    covers: u32,
    opened_at: DateTime<FixedOffset>,
    booking_id: Option<i64>,
}

impl Scenario {
    /// Generates the service of `day` from `seed` (same inputs, same
    /// scenario, event ids included).
    pub fn generate(seed: u64, day: NaiveDate) -> Scenario {
        let mut rng = Rng(seed ^ 0x5eed_2e4c_4ef0_0001);
        let tz = paris_winter();
        let at = |h: u32, m: u32| -> DateTime<FixedOffset> {
            tz.from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(h, m, 0).expect("time")))
                .single()
                .expect("fixed offset")
        };
        let day_s = day.format("%Y-%m-%d").to_string();

        // 1. tables
        let mut tables = Vec::new();
        for i in 1..=30u32 {
            let room = if i <= 20 { "Salle" } else { "Mezzanine" };
            let seats = [2, 4, 4, 6][(i % 4) as usize];
            tables.push((i.to_string(), room, seats));
        }
        for (n, room, seats) in [
            ("T31", "Terrasse", 4),
            ("T32", "Terrasse", 4),
            ("T33", "Terrasse", 6),
            ("Terrasse 1", "Terrasse", 2),
            ("Terrasse 2", "Terrasse", 4),
            ("Terrasse 3", "Terrasse", 2),
            ("Bar 1", "Bar", 2),
            ("Bar 2", "Bar", 2),
        ] {
            tables.push((n.to_string(), room, seats));
        }
        let tables: Vec<TableDef> = tables
            .into_iter()
            .enumerate()
            .map(|(i, (name, room, seats))| TableDef {
                id: 100 + i as i64,
                name,
                room: room.to_string(),
                seats,
            })
            .collect();

        // 2. bookings: 29 tables at lunch, 31 at dinner.
        let mut lunch_tables: Vec<usize> = (0..tables.len()).collect();
        rng.shuffle(&mut lunch_tables);
        let (lunch_booked, lunch_free) = lunch_tables.split_at(29);
        let mut dinner_tables: Vec<usize> = (0..tables.len()).collect();
        rng.shuffle(&mut dinner_tables);
        let (dinner_booked, dinner_free) = dinner_tables.split_at(31);

        let mut bookings: Vec<Value> = Vec::new();
        let created = rfc3339(at(10, 0) - Duration::days(3));
        let mut next_id = 120_001i64;
        for (service, booked) in [(0, lunch_booked), (1, dinner_booked)] {
            for &ti in booked {
                let t = &tables[ti];
                // Lunch 12:00–13:30, dinner 19:00–21:30, quarter hours.
                let (base, slots) = if service == 0 {
                    (12 * 60, 6)
                } else {
                    (19 * 60, 10)
                };
                let minutes = base + rng.range(0, slots) as u32 * 15;
                let time = format!("{:02}:{:02}", minutes / 60, minutes % 60);
                let nb_guests = rng.range(1, t.seats as i64) as u32;
                let first = *rng.pick(FIRST_NAMES);
                let last = *rng.pick(LAST_NAMES);
                let email = format!("{}.{}@example.com", ascii_lower(first), ascii_lower(last));
                let phone = format!("+336{:08}", rng.range(0, 99_999_999));
                let sheet = if rng.chance(92) {
                    let visits = rng.range(0, 12);
                    let avg = if visits == 0 {
                        0
                    } else {
                        rng.range(25, 90) * 100 + rng.range(0, 99)
                    };
                    let sid = 5000 + next_id - 120_000;
                    json!({"id": sid, "firstname": first, "lastname": last,
                           "email": email, "phone": phone, "country": "fr",
                           "visits": visits, "average_spend_cents": avg})
                } else {
                    Value::Null
                };
                // Some bookings carry contact details only in the sheet.
                let on_booking = sheet.is_null() || rng.chance(80);
                let status = match rng.range(0, 19) {
                    0 | 1 => "waiting",
                    2 | 3 => "arrived",
                    _ => "confirmed",
                };
                bookings.push(json!({
                    "id": next_id,
                    "restaurant_id": 654321,
                    "reservation_type": "reservation",
                    "day": day_s,
                    "time": time,
                    "nb_guests": nb_guests,
                    "firstname": if on_booking { json!(first) } else { Value::Null },
                    "lastname": last,
                    "phone_number": if on_booking { json!(phone) } else { Value::Null },
                    "email": if on_booking { json!(email) } else { Value::Null },
                    "comment": if rng.chance(25) { json!(rng.pick(COMMENTS)) } else { Value::Null },
                    "private_comment": null,
                    "allergies": if rng.chance(15) { json!(rng.pick(ALLERGIES)) } else { Value::Null },
                    "status": status,
                    "tables": [{"id": t.id, "name": t.name}],
                    "customersheet": sheet,
                    "created_at": created,
                    "updated_at": created,
                }));
                next_id += 1;
            }
        }
        // A regular who comes for lunch and dinner: the dinner booking shares
        // the lunch booking's customersheet (visits counted twice).
        if let Some(lunch) = bookings[..29]
            .iter()
            .find(|b| !b["customersheet"].is_null())
            .cloned()
        {
            let dinner = &mut bookings[29];
            dinner["customersheet"] = lunch["customersheet"].clone();
            for k in ["firstname", "lastname", "phone_number", "email"] {
                dinner[k] = lunch[k].clone();
            }
        }

        // Which bookings are cancelled / no-shows / changed (bookings[0..29]
        // lunch, [29..60] dinner).
        let mut idx: Vec<usize> = (0..bookings.len()).collect();
        rng.shuffle(&mut idx);
        let cancelled: Vec<usize> = idx[0..3].to_vec();
        let no_show: Vec<usize> = idx[3..5].to_vec();
        let changed: Vec<usize> = idx[5..10].to_vec();

        let mut steps = Vec::new();
        let mut final_bookings = bookings.clone();
        for (k, &bi) in changed.iter().enumerate() {
            let b = &bookings[bi];
            let id = b["id"].as_i64().expect("id");
            let time = NaiveTime::parse_from_str(b["time"].as_str().expect("time"), "%H:%M")
                .expect("HH:MM");
            let booked_at = at(0, 0) + (time - NaiveTime::MIN);
            let change = match k {
                0 | 1 => {
                    let new = time + Duration::minutes(if k == 0 { 15 } else { -15 });
                    ZenchefChange::SetTime {
                        booking_id: id,
                        time: new.format("%H:%M").to_string(),
                    }
                }
                2 => {
                    let seats = table_seats(&tables, b);
                    let n = b["nb_guests"].as_u64().expect("n") as u32;
                    ZenchefChange::SetGuests {
                        booking_id: id,
                        nb_guests: if n < seats { n + 1 } else { n - 1 }.max(1),
                    }
                }
                _ => ZenchefChange::SetComment {
                    booking_id: id,
                    comment: format!("{} (modifié)", rng.pick(COMMENTS)),
                },
            };
            change.apply_to(&mut final_bookings[bi]);
            steps.push(Step::Zenchef {
                at: booked_at - Duration::minutes(60),
                change,
            });
        }
        for &bi in &cancelled {
            let b = &bookings[bi];
            let time = NaiveTime::parse_from_str(b["time"].as_str().expect("time"), "%H:%M")
                .expect("HH:MM");
            let change = ZenchefChange::Cancel {
                booking_id: b["id"].as_i64().expect("id"),
            };
            change.apply_to(&mut final_bookings[bi]);
            steps.push(Step::Zenchef {
                at: at(0, 0) + (time - NaiveTime::MIN) - Duration::minutes(90),
                change,
            });
        }

        // 3. orders: opened bookings and walk-ins.
        let mut orders: Vec<Order> = Vec::new();
        for (bi, b) in final_bookings.iter().enumerate() {
            if cancelled.contains(&bi) || no_show.contains(&bi) {
                continue;
            }
            let time = NaiveTime::parse_from_str(b["time"].as_str().expect("time"), "%H:%M")
                .expect("HH:MM");
            let opened_at = at(0, 0)
                + (time - NaiveTime::MIN)
                + Duration::minutes(rng.range(-10, 20))
                + Duration::seconds(rng.range(0, 59));
            let nb = b["nb_guests"].as_u64().expect("n") as u32;
            let seats = table_seats(&tables, b);
            let covers = match rng.range(0, 9) {
                0 if nb > 1 => nb - 1,
                1 if nb < seats => nb + 1,
                _ => nb,
            };
            orders.push(Order {
                order_id: String::new(),
                table: b["tables"][0]["name"].as_str().expect("name").to_string(),
                moved_to: None,
                covers,
                opened_at,
                booking_id: b["id"].as_i64(),
            });
        }
        let walkin_slots: Vec<(usize, DateTime<FixedOffset>)> = lunch_free[..6]
            .iter()
            .map(|&ti| (ti, at(12, 0)))
            .chain(dinner_free[..5].iter().map(|&ti| (ti, at(19, 15))))
            .collect();
        for (ti, base) in walkin_slots {
            let opened_at =
                base + Duration::minutes(rng.range(0, 100)) + Duration::seconds(rng.range(0, 59));
            orders.push(Order {
                order_id: String::new(),
                table: tables[ti].name.clone(),
                moved_to: None,
                covers: rng.range(1, tables[ti].seats as i64) as u32,
                opened_at,
                booking_id: None,
            });
        }
        orders.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then(a.table.cmp(&b.table)));
        for (i, o) in orders.iter_mut().enumerate() {
            o.order_id = format!("O-{}", 1001 + i);
        }
        // Two moves, one per service, to the spare free table of that service
        // (free tables beyond the walk-ins), of orders served on a booking.
        let lunch_mover = orders
            .iter()
            .position(|o| o.booking_id.is_some() && o.opened_at < at(15, 0))
            .expect("a lunch order");
        orders[lunch_mover].moved_to = Some(tables[lunch_free[6]].name.clone());
        let dinner_mover = orders
            .iter()
            .position(|o| o.booking_id.is_some() && o.opened_at > at(17, 0))
            .expect("a dinner order");
        orders[dinner_mover].moved_to = Some(tables[dinner_free[5]].name.clone());

        // 4. POS events per order.
        let mut expected = Expected::default();
        let mut pos_events: Vec<(DateTime<FixedOffset>, String, Value)> = Vec::new();
        for o in &orders {
            let t0 = o.opened_at;
            let mut lines: Vec<Line> = Vec::new();
            let add = |lines: &mut Vec<Line>, (name, price): (&str, i64), q: i64| {
                if q == 0 {
                    return;
                }
                if let Some(l) = lines.iter_mut().find(|l| l.name == name) {
                    l.quantity += q;
                    l.total_cents = l.quantity * l.unit_price_cents;
                } else {
                    let id = format!("L{}", lines.len() + 1);
                    lines.push(Line::new(&id, name, q, price));
                }
            };
            for _ in 0..o.covers {
                if rng.chance(50) {
                    add(&mut lines, *rng.pick(STARTERS), 1);
                }
                add(&mut lines, *rng.pick(MAINS), 1);
                add(&mut lines, *rng.pick(DRINKS), 1);
            }
            let total = |lines: &[Line]| lines.iter().map(|l| l.total_cents).sum::<i64>();
            pos_events.push((t0, "opened".into(), json!({"order": o.order_id})));
            let sent1 = t0 + Duration::minutes(rng.range(5, 15));
            pos_events.push((
                sent1,
                "items".into(),
                json!({"lines": lines.clone(), "total": total(&lines)}),
            ));
            let mut table_now = o.table.clone();
            if let Some(to) = &o.moved_to {
                pos_events.push((
                    sent1 + Duration::minutes(5),
                    "moved".into(),
                    json!({"from": o.table, "to": to}),
                ));
                table_now = to.clone();
            }
            for _ in 0..o.covers {
                if rng.chance(60) {
                    add(&mut lines, *rng.pick(DESSERTS), 1);
                }
            }
            add(&mut lines, ("Café", 300), rng.range(0, o.covers as i64));
            let sent2 = sent1 + Duration::minutes(rng.range(35, 50));
            pos_events.push((
                sent2,
                "items".into(),
                json!({"lines": lines.clone(), "total": total(&lines), "table": table_now}),
            ));
            let total_cents = total(&lines);
            let tip_cents = if rng.chance(40) {
                rng.range(1, 10) * 100
            } else {
                0
            };
            let paid_at = sent2 + Duration::minutes(rng.range(15, 30));
            let mut payments = Vec::new();
            if o.covers >= 2 && rng.chance(30) {
                // Split bill: one guest pays first (payment.recorded).
                let first = total_cents / o.covers as i64;
                let p1 = Payment::new("card", first, &format!("CB-{:06}", rng.range(0, 999_999)));
                pos_events.push((
                    paid_at - Duration::minutes(3),
                    "payment".into(),
                    json!({"p": p1}),
                ));
                payments.push(p1);
                payments.push(Payment::new(
                    "cash",
                    total_cents - first + tip_cents,
                    &format!("CASH-{:04}", rng.range(0, 9999)),
                ));
            } else {
                payments.push(Payment::new(
                    if rng.chance(80) { "card" } else { "cash" },
                    total_cents + tip_cents,
                    &format!("CB-{:06}", rng.range(0, 999_999)),
                ));
            }
            let paid_cents: i64 = payments.iter().map(|p| p.amount_cents).sum();
            pos_events.push((
                paid_at,
                "paid".into(),
                json!({"table": table_now, "lines": lines, "total": total_cents,
                       "tip": tip_cents, "payments": payments}),
            ));
            expected.tickets.insert(
                o.order_id.clone(),
                ExpectedTicket {
                    ticket_id: o.order_id.clone(),
                    booking_id: o.booking_id,
                    covers: o.covers,
                    total_cents,
                    tip_cents,
                    lines: lines.len(),
                    paid_cents,
                },
            );
            match o.booking_id {
                Some(id) => {
                    expected
                        .status_history
                        .insert(id, vec!["seated".into(), "over".into()]);
                }
                None => expected.walkins.push(ExpectedWalkin {
                    order_id: o.order_id.clone(),
                    table: o.table.clone(),
                    covers: o.covers,
                    day: day_s.clone(),
                    time: o.opened_at.format("%H:%M").to_string(),
                }),
            }
            // Tag every event of this order with the order, to build below.
            for e in pos_events
                .iter_mut()
                .rev()
                .take_while(|e| e.2.get("order_id").is_none())
            {
                e.2["order_id"] = json!(o.order_id);
                e.2["covers"] = json!(o.covers);
                e.2["opened_table"] = json!(o.table);
                e.2["opened_at"] = json!(rfc3339(o.opened_at));
            }
        }
        pos_events.sort_by_key(|a| a.0);
        let mut builder = EventBuilder::new(1);
        for (t, kind, d) in pos_events {
            let order_id = d["order_id"].as_str().expect("tagged").to_string();
            let covers = d["covers"].as_u64().expect("tagged") as u32;
            let lines_of =
                |v: &Value| -> Vec<Line> { serde_json::from_value(v.clone()).expect("lines") };
            builder.set_clock(Some(t));
            let mut event = match kind.as_str() {
                "opened" => builder.table_opened(
                    &order_id,
                    d["opened_table"].as_str().expect("t"),
                    covers,
                    t,
                ),
                "items" => builder.items_sent(
                    &order_id,
                    d.get("table")
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| d["opened_table"].as_str().expect("t")),
                    &lines_of(&d["lines"]),
                    d["total"].as_i64().expect("total"),
                ),
                "moved" => builder.table_moved(
                    &order_id,
                    d["from"].as_str().expect("from"),
                    d["to"].as_str().expect("to"),
                ),
                "payment" => {
                    let p: Payment = serde_json::from_value(d["p"].clone()).expect("payment");
                    builder.payment_recorded(&order_id, p.amount_cents, 0, &p.method, &p.reference)
                }
                "paid" => {
                    let payments: Vec<Payment> =
                        serde_json::from_value(d["payments"].clone()).expect("payments");
                    builder.bill_paid(
                        &order_id,
                        d["table"].as_str().expect("table"),
                        covers,
                        &lines_of(&d["lines"]),
                        d["total"].as_i64().expect("total"),
                        d["tip"].as_i64().expect("tip"),
                        &payments,
                        t,
                    )
                }
                other => unreachable!("unknown kind {other}"),
            };
            event["event_id"] = json!(rng.uuid());
            steps.push(Step::Pos { at: t, event });
        }
        steps.push(Step::OutageStart { at: at(20, 15) });
        steps.push(Step::OutageEnd { at: at(20, 20) });
        steps.sort_by(|a, b| a.at().cmp(&b.at()).then(a.rank().cmp(&b.rank())));

        // 5. the rest of the expected outcome.
        for (bi, b) in final_bookings.iter().enumerate() {
            let id = b["id"].as_i64().expect("id");
            expected.status_history.entry(id).or_default();
            if cancelled.contains(&bi) {
                expected.cancelled.push(id);
            }
            if no_show.contains(&bi) {
                expected.not_opened.push(id);
            }
        }
        for b in &bookings {
            let Some(sid) = b["customersheet"]["id"].as_i64() else {
                continue;
            };
            if expected.customersheets.contains_key(&sid) {
                continue;
            }
            let v0 = b["customersheet"]["visits"].as_i64().expect("visits");
            let a0 = b["customersheet"]["average_spend_cents"]
                .as_i64()
                .expect("avg");
            let totals: Vec<i64> = expected
                .tickets
                .values()
                .filter(|t| {
                    t.booking_id.is_some_and(|bid| {
                        bookings.iter().any(|x| {
                            x["id"].as_i64() == Some(bid)
                                && x["customersheet"]["id"].as_i64() == Some(sid)
                        })
                    })
                })
                .map(|t| t.total_cents)
                .collect();
            let visits = v0 + totals.len() as i64;
            let avg = if visits == 0 {
                a0
            } else {
                let num = a0 * v0 + totals.iter().sum::<i64>();
                (2 * num + visits).div_euclid(2 * visits)
            };
            expected.customersheets.insert(sid, (visits, avg));
        }

        Scenario {
            seed,
            day,
            tables,
            bookings,
            steps,
            expected,
            pay_orders: Vec::new(),
        }
    }

    /// The service of [`Scenario::generate`] with Zenchef Pay (same seed,
    /// same bookings, orders and bills; deterministic):
    /// - 8 orders are paid by guests from the app ([`Step::GuestPays`])
    ///   instead of the POS publishing `payment.recorded`/`bill.paid`: 2 of
    ///   them split between 2–3 guests (the first guest leaves the tip, if
    ///   any), the others by one guest; the bills' tips are kept, and at
    ///   least one payment carries a tip. A moved order is among them when
    ///   its payment falls outside the outage.
    /// - 1 other order is paid in cash on the POS, and 5 minutes after its
    ///   `bill.paid` a guest payment of its whole total appears in Zenchef
    ///   Pay ([`Step::InjectPayment`]): it must end `rejected` (`already
    ///   paid`).
    /// - No Zenchef Pay payment happens within 15 minutes of the outage.
    /// - A 3-minute Zenchef-only outage ([`Step::ZenchefDown`] →
    ///   [`Step::ZenchefUp`]: the reservations API answers 503, Zenchef Pay
    ///   works) covers as many guest payments as a 3-minute window can.
    /// - Every POS `seq` is multiplied by 100, so that the POS's own answers
    ///   to settle commands (1 + the largest `seq` published) fit between
    ///   scripted events and the sequence stays increasing.
    ///
    /// The Zenchef expectations are those of [`Scenario::generate`] (same
    /// tickets: totals, tips and `paid_cents` are unchanged); the
    /// additions are [`Expected::checks`] (every order, `closed`),
    /// [`Expected::payments`] and [`Scenario::pay_orders`].
    pub fn generate_pay(seed: u64, day: NaiveDate) -> Scenario {
        let mut sc = Scenario::generate(seed, day);
        let mut rng = Rng(seed ^ 0x9a75_c0de_2e4c_0002);
        let outage = (
            sc.steps
                .iter()
                .find_map(|s| matches!(s, Step::OutageStart { .. }).then(|| s.at()))
                .expect("outage start"),
            sc.steps
                .iter()
                .find_map(|s| matches!(s, Step::OutageEnd { .. }).then(|| s.at()))
                .expect("outage end"),
        );
        let margin = Duration::minutes(15);
        let near_outage = |t: DateTime<FixedOffset>| t > outage.0 - margin && t < outage.1 + margin;

        // Each order's last state, from its events.
        struct Bill {
            order_id: String,
            table: String,
            covers: u32,
            total: i64,
            tip: i64,
            lines: usize,
            paid_at: DateTime<FixedOffset>,
            first_payment_at: DateTime<FixedOffset>,
            single_payment: bool,
            moved: bool,
        }
        let mut bills: BTreeMap<String, Bill> = BTreeMap::new();
        let mut moved: Vec<String> = Vec::new();
        let mut partial: BTreeMap<String, DateTime<FixedOffset>> = BTreeMap::new();
        for st in &sc.steps {
            let Step::Pos { at, event } = st else {
                continue;
            };
            let d = &event["data"];
            let order = d["order_id"].as_str().expect("order").to_string();
            match event["type"].as_str().expect("type") {
                "table.moved" => moved.push(order),
                "payment.recorded" => {
                    partial.insert(order, *at);
                }
                "bill.paid" => {
                    let first_payment_at = partial.get(&order).copied().unwrap_or(*at);
                    bills.insert(
                        order.clone(),
                        Bill {
                            single_payment: !partial.contains_key(&order),
                            moved: moved.contains(&order),
                            order_id: order,
                            table: d["table"].as_str().expect("table").into(),
                            covers: d["covers"].as_u64().expect("covers") as u32,
                            total: d["total_cents"].as_i64().expect("total"),
                            tip: d["tip_cents"].as_i64().expect("tip"),
                            lines: d["lines"].as_array().expect("lines").len(),
                            paid_at: *at,
                            first_payment_at,
                        },
                    );
                }
                _ => {}
            }
        }
        for b in bills.values() {
            sc.expected.checks.insert(
                b.order_id.clone(),
                ExpectedCheck {
                    order_id: b.order_id.clone(),
                    table: b.table.clone(),
                    covers: b.covers,
                    status: "closed".into(),
                    total_cents: b.total,
                    lines: b.lines,
                },
            );
        }

        // Choose: guest payments happen up to 6 minutes before paid_at.
        let mut candidates: Vec<&Bill> = bills
            .values()
            .filter(|b| {
                !near_outage(b.first_payment_at - Duration::minutes(6)) && !near_outage(b.paid_at)
            })
            .collect();
        rng.shuffle(&mut candidates);
        // A moved order first (its check must follow the move).
        candidates.sort_by_key(|b| !b.moved);
        let mut splits: Vec<(&Bill, usize)> = Vec::new();
        let mut singles: Vec<&Bill> = Vec::new();
        let mut rest: Vec<&Bill> = Vec::new();
        for b in candidates {
            if splits.len() < 2 && b.covers >= 2 && !b.moved {
                let guests = if b.covers >= 3 && rng.chance(50) {
                    3
                } else {
                    2
                };
                splits.push((b, guests));
            } else if singles.len() < 6 {
                singles.push(b);
            } else {
                rest.push(b);
            }
        }
        assert!(
            splits.len() == 2 && singles.len() == 6,
            "seed {seed}: not enough orders away from the outage"
        );
        let cash = rest
            .iter()
            .find(|b| b.single_payment)
            .copied()
            .expect("an order paid at once for the cash case");

        // Guest payments: (at, order, amount, tip).
        let mut guest: Vec<(DateTime<FixedOffset>, String, i64, i64)> = Vec::new();
        let mut tipped = false;
        for (b, k) in &splits {
            let share = b.total / *k as i64;
            for g in 0..*k {
                let amount = if g + 1 == *k {
                    b.total - share * (*k as i64 - 1)
                } else {
                    share
                };
                let tip = if g == 0 { b.tip } else { 0 };
                tipped |= tip > 0;
                let at = b.paid_at - Duration::minutes(3 * (*k - 1 - g) as i64);
                guest.push((at, b.order_id.clone(), amount, tip));
            }
        }
        for b in &singles {
            tipped |= b.tip > 0;
            guest.push((b.paid_at, b.order_id.clone(), b.total, b.tip));
        }
        if !tipped {
            // Keep the bill's figures consistent: the tip goes on the ticket.
            let b = singles[0];
            let tip = 300;
            guest
                .iter_mut()
                .find(|g| g.1 == b.order_id)
                .expect("single")
                .3 = tip;
            let t = sc.expected.tickets.get_mut(&b.order_id).expect("ticket");
            t.tip_cents = tip;
            t.paid_cents = t.total_cents + tip;
        }
        let pay_orders: Vec<String> = splits
            .iter()
            .map(|(b, _)| b.order_id.clone())
            .chain(singles.iter().map(|b| b.order_id.clone()))
            .collect();

        // The timeline: drop the POS's own payments of pay orders, pay the
        // cash order in cash, space the seq, add the guests.
        let cash_order = cash.order_id.clone();
        let cash_paid_at = cash.paid_at;
        let cash_total = cash.total;
        sc.steps.retain(|st| match st {
            Step::Pos { event, .. } => {
                let order = event["data"]["order_id"].as_str().unwrap_or("");
                let ty = event["type"].as_str().unwrap_or("");
                !(pay_orders.iter().any(|o| o == order)
                    && (ty == "payment.recorded" || ty == "bill.paid"))
            }
            _ => true,
        });
        for st in &mut sc.steps {
            if let Step::Pos { event, .. } = st {
                let seq = event["seq"].as_u64().expect("seq");
                event["seq"] = json!(seq * 100);
                if event["type"] == "bill.paid" && event["data"]["order_id"] == cash_order.as_str()
                {
                    for p in event["data"]["payments"].as_array_mut().expect("payments") {
                        p["method"] = json!("cash");
                        p["reference"] = json!(format!("CASH-{:04}", rng.range(0, 9999)));
                    }
                }
            }
        }
        // The Zenchef-only outage: the 3-minute window (from a guest
        // payment to 3 minutes later, both ends included) that holds the
        // most guest payments.
        let mut times: Vec<DateTime<FixedOffset>> = guest.iter().map(|g| g.0).collect();
        times.sort();
        let window = Duration::minutes(3);
        let start = times
            .iter()
            .copied()
            .max_by_key(|s| {
                let n = times
                    .iter()
                    .filter(|t| **t >= *s && **t <= *s + window)
                    .count();
                (n, std::cmp::Reverse(*s))
            })
            .expect("guest payments");
        sc.steps.push(Step::ZenchefDown { at: start });
        sc.steps.push(Step::ZenchefUp { at: start + window });
        for (at, order_id, amount_cents, tip_cents) in guest {
            sc.steps.push(Step::GuestPays {
                at,
                order_id,
                amount_cents,
                tip_cents,
                method: "card".into(),
            });
        }
        sc.steps.push(Step::InjectPayment {
            at: cash_paid_at + Duration::minutes(5),
            order_id: cash_order,
            amount_cents: cash_total,
            tip_cents: 0,
            method: "card".into(),
        });
        sc.steps
            .sort_by(|a, b| a.at().cmp(&b.at()).then(a.rank().cmp(&b.rank())));
        for st in &sc.steps {
            if let Step::GuestPays {
                order_id,
                amount_cents,
                tip_cents,
                method,
                ..
            }
            | Step::InjectPayment {
                order_id,
                amount_cents,
                tip_cents,
                method,
                ..
            } = st
            {
                // Guests pay open checks; an injected payment is for a table
                // already paid in cash.
                let fate = match st {
                    Step::GuestPays { .. } => PaymentFate::Settled,
                    _ => PaymentFate::Rejected {
                        reason_contains: "already paid".into(),
                    },
                };
                sc.expected.payments.push(ExpectedPayment {
                    order_id: order_id.clone(),
                    amount_cents: *amount_cents,
                    tip_cents: *tip_cents,
                    method: method.clone(),
                    fate,
                });
            }
        }
        sc.pay_orders = pay_orders;
        sc
    }

    /// Compares Zenchef Pay and the POS with the expected Zenchef Pay
    /// outcome; answers every difference (empty = as expected):
    /// - every expected check exists with its final status, table, covers,
    ///   total and number of lines; its accepted versions increase; once
    ///   `closed`/`voided` it stays so; no check for other orders;
    /// - the payments in the fake are those of [`Expected::payments`] (by
    ///   order, amount and tip, in order), each acked as expected, without a
    ///   contradicting ack;
    /// - a payment to settle was applied exactly once by the POS (one
    ///   settle command for its `payment_id`, none refused) and appears with
    ///   `method zenchef_pay` and its `payment_id` as reference on the POS
    ///   bill; a payment to reject never reached the POS.
    pub fn pay_problems(&self, fake: &PayFake, pos: &Pos) -> Vec<String> {
        let mut problems = Vec::new();
        let checks = fake.checks();
        for (order, want) in &self.expected.checks {
            let Some(got) = checks.get(order) else {
                problems.push(format!("{order}: no check in Zenchef Pay"));
                continue;
            };
            let fields = [
                ("status", json!(want.status)),
                ("table", json!(want.table)),
                ("covers", json!(want.covers)),
                ("total_cents", json!(want.total_cents)),
            ];
            for (k, v) in fields {
                if got[k] != v {
                    problems.push(format!("{order}: check {k} is {}, expected {v}", got[k]));
                }
            }
            let lines = got["lines"].as_array().map_or(0, Vec::len);
            if lines != want.lines {
                problems.push(format!(
                    "{order}: check has {lines} lines, expected {}",
                    want.lines
                ));
            }
            let history = fake.check_history(order);
            let versions: Vec<u64> = history
                .iter()
                .map(|c| c["version"].as_u64().unwrap_or(0))
                .collect();
            if versions.windows(2).any(|w| w[0] >= w[1]) {
                problems.push(format!("{order}: versions not increasing: {versions:?}"));
            }
            let statuses: Vec<&str> = history
                .iter()
                .map(|c| c["status"].as_str().unwrap_or(""))
                .collect();
            if let Some(i) = statuses.iter().position(|s| *s != "open")
                && statuses[i..].iter().any(|s| *s != statuses[i])
            {
                problems.push(format!(
                    "{order}: check left {} : {statuses:?}",
                    statuses[i]
                ));
            }
        }
        for order in checks.keys() {
            if !self.expected.checks.contains_key(order) {
                problems.push(format!("{order}: unexpected check"));
            }
        }
        let payments = fake.payments();
        if payments.len() != self.expected.payments.len() {
            problems.push(format!(
                "{} payments in Zenchef Pay, expected {}",
                payments.len(),
                self.expected.payments.len()
            ));
        }
        let settled = pos.settled_commands();
        let refused = pos.refused_commands();
        for (i, (got, want)) in payments.iter().zip(&self.expected.payments).enumerate() {
            let id = got["payment_id"].as_str().unwrap_or("");
            if got["order_id"] != want.order_id.as_str()
                || got["amount_cents"] != want.amount_cents
                || got["tip_cents"] != want.tip_cents
            {
                problems.push(format!("payment #{i} {id} is {got}, expected {want:?}"));
                continue;
            }
            let acks = fake.acks(id);
            if acks.iter().any(|a| a["conflict"] == true) {
                problems.push(format!("payment {id}: contradicting ack {acks:?}"));
            }
            let applied = settled.iter().filter(|c| c["payment_id"] == id).count();
            let refused_n = refused.iter().filter(|c| c.0["payment_id"] == id).count();
            match (&want.fate, fake.payment_state(id)) {
                (PaymentFate::Settled, PaymentState::Settled) => {
                    if applied != 1 || refused_n != 0 {
                        problems.push(format!(
                            "payment {id}: {applied} settle commands applied and {refused_n} refused by the POS, expected exactly 1 applied"
                        ));
                    }
                    let on_bill = pos.bill(&want.order_id).is_some_and(|b| {
                        b.payments
                            .iter()
                            .any(|p| p.reference == id && p.method == "zenchef_pay")
                    });
                    if !on_bill {
                        problems.push(format!(
                            "payment {id}: not on the POS bill of {}",
                            want.order_id
                        ));
                    }
                }
                (PaymentFate::Rejected { reason_contains }, PaymentState::Rejected { reason }) => {
                    if !reason
                        .to_lowercase()
                        .contains(&reason_contains.to_lowercase())
                    {
                        problems.push(format!(
                            "payment {id}: rejected with {reason:?}, expected a reason containing {reason_contains:?}"
                        ));
                    }
                    if applied + refused_n != 0 {
                        problems.push(format!(
                            "payment {id}: rejected but {} settle commands reached the POS",
                            applied + refused_n
                        ));
                    }
                }
                (fate, state) => {
                    problems.push(format!("payment {id}: {state:?}, expected {fate:?}"));
                }
            }
        }
        for order in &self.pay_orders {
            match pos.bill(order) {
                Some(b) if b.status == BillStatus::Paid => {}
                other => problems.push(format!(
                    "{order}: POS bill not paid: {:?}",
                    other.map(|b| b.status)
                )),
            }
        }
        problems
    }

    /// The POS floor plan (§5), `updated_at` at 09:00 of the restaurant day.
    pub fn floorplan(&self) -> Value {
        let at = paris_winter()
            .from_local_datetime(
                &self
                    .day
                    .and_time(NaiveTime::from_hms_opt(9, 0, 0).expect("t")),
            )
            .single()
            .expect("fixed offset");
        json!({
            "tables": self.tables.iter()
                .map(|t| json!({"name": t.name, "room": t.room, "seats": t.seats}))
                .collect::<Vec<_>>(),
            "updated_at": rfc3339(at),
        })
    }

    /// Zenchef tables `(id, name, room)`.
    pub fn zenchef_tables(&self) -> Vec<(i64, String, String)> {
        self.tables
            .iter()
            .map(|t| (t.id, t.name.clone(), t.room.clone()))
            .collect()
    }

    /// A fake configuration seeded with this scenario's tables and bookings
    /// (restaurant `654321`; pass your own token).
    pub fn zenchef_config(&self, token: &str) -> ZenchefConfig {
        ZenchefConfig {
            restaurant_id: "654321".into(),
            token: token.into(),
            tables: self.zenchef_tables(),
            bookings: self.bookings.clone(),
            ..Default::default()
        }
    }

    /// The POS event envelopes of the timeline, in order.
    pub fn pos_events(&self) -> Vec<Value> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Pos { event, .. } => Some(event.clone()),
                _ => None,
            })
            .collect()
    }
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'ï' | 'î' => 'i',
            'ç' => 'c',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn table_seats(tables: &[TableDef], booking: &Value) -> u32 {
    let name = booking["tables"][0]["name"].as_str().unwrap_or("");
    tables
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.seats)
        .unwrap_or(2)
}
