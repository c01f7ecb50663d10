//! `demo`: a whole day of a restaurant in under a minute, against the **real
//! agent**.
//!
//! `cargo run -p zenchef-sim --bin demo` builds the agent
//! (`$CARGO build -p zenchef-edge --bin zenchef-edge`, `--release` when the
//! demo itself is a release build), starts the simulators (MQTT broker, mDNS
//! advert on loopback and a test port, Zenchef fake, POS) and the agent as a
//! child process with a generated configuration ([`Rig`]), then plays a
//! generated lunch and dinner service ([`Scenario`]) with time compressed:
//! the service day takes `--duration-s` seconds of wall time, the quiet
//! afternoon is fast-forwarded, and the 5-minute internet outage
//! ([`Fault::Down`]) lasts `--outage-s` seconds.
//!
//! Along the way it re-sends two events the POS already sent, as a POS does
//! after a reconnect, so that duplicate suppression is shown and checked.
//!
//! Zenchef Pay is on ([`Scenario::generate_pay`]): a Zenchef Pay fake runs
//! too, 8 tables are paid by guests from their phone (2 split between
//! guests, at least 1 with a tip) and settled in the POS through the agent,
//! and one guest pays a table already paid in cash: the agent must refuse
//! that payment (Zenchef Pay refunds it).
//!
//! The agent serves its local status page on a free loopback port (its
//! URL is printed at the start and in the summary; `--keep` leaves it up),
//! with a chart sample every second so that the day fits in its chart.
//!
//! At the end it prints a summary and checks the Zenchef fake against the
//! scenario's expected outcome (status histories, walk-ins, tickets,
//! customersheets), the POS against Zenchef (reservations, withdrawals),
//! Zenchef Pay and the POS against the expected checks and payments
//! ([`Scenario::pay_problems`]), and the agent's counters (nothing lost,
//! nothing dead, nothing quarantined), and that the status page answers
//! in French with its chart shading each Zenchef outage the agent's
//! history saw. Exit code 0 when everything holds, 1 otherwise (each
//! problem on its own line), 2 on usage errors.

mod checks;
mod pacer;
mod play;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, FixedOffset, Utc};
use clap::Parser;
use zenchef_sim::pos::paris_winter;
use zenchef_sim::scenario::{Scenario, Step, ZenchefChange};

use pacer::Pacer;
use play::Demo;

/// Plays a generated lunch and dinner service through the real agent and
/// checks what reached Zenchef and the POS.
#[derive(Parser, Debug)]
#[command(name = "demo")]
struct Args {
    /// Scenario seed (same seed, same service).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Wall time of the service playback in seconds, outage included (waits
    /// for the agent are added).
    #[arg(long, default_value_t = 24.0, conflicts_with = "speed")]
    duration_s: f64,
    /// Instead of --duration-s: service seconds played per wall second
    /// (outside the outage).
    #[arg(long)]
    speed: Option<f64>,
    /// Wall time of the 5-minute outage, in seconds.
    #[arg(long, default_value_t = 4.0)]
    outage_s: f64,
    /// Keep the agent's configuration, store and log in DIR (default: a
    /// temporary directory, removed after a successful run).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Leave the simulators and the agent running at the end, until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Use this agent binary instead of building it.
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok((problems, wall)) if problems.is_empty() => {
            println!(
                "\nOK: everything expected reached Zenchef and the POS (demo wall time {:.1} s)",
                wall.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Ok((problems, wall)) => {
            println!(
                "\nFAILED: {} problem(s) (demo wall time {:.1} s):",
                problems.len(),
                wall.as_secs_f64()
            );
            for p in &problems {
                println!("  - {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("\ndemo error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The whole demo; answers the problems found (empty = success) and the
/// wall time of the demo, the agent's build excluded.
async fn run(args: Args) -> anyhow::Result<(Vec<String>, Duration)> {
    anyhow::ensure!(
        args.duration_s > args.outage_s && args.outage_s > 0.0,
        "--duration-s must be larger than --outage-s, which must be positive"
    );
    let agent = match &args.agent {
        Some(p) => p.clone(),
        None => zenchef_sim::util::build_agent("demo")?,
    };
    anyhow::ensure!(agent.is_file(), "no agent binary at {}", agent.display());
    let started = Instant::now();
    let work = WorkDir::new(args.out.clone())?;
    let result = play_day(&args, &agent, &work.path, started).await;
    work.finish(matches!(&result, Ok(problems) if problems.is_empty()));
    Ok((result?, started.elapsed()))
}

/// Starts everything, plays the day, checks, stops; answers the problems
/// found.
async fn play_day(
    args: &Args,
    agent: &Path,
    dir: &Path,
    started: Instant,
) -> anyhow::Result<Vec<String>> {
    let day = Utc::now().with_timezone(&paris_winter()).date_naive();
    let sc = Scenario::generate_pay(args.seed, day);
    describe(&sc);

    let mut demo = Demo::start(sc, agent, dir, started).await?;
    demo.wait_for_pos().await?;
    let pacer = Pacer::new(&demo.sc.steps, args.duration_s, args.speed, args.outage_s);
    demo.play_service(pacer).await?;
    demo.wait_all_delivered().await?;
    let mut problems = demo.verify().await;
    demo.print_summary();
    if args.keep {
        demo.keep_running().await;
    }
    problems.extend(demo.stop());
    Ok(problems)
}

// ---- setup ---------------------------------------------------------------

/// Where the agent's configuration, store and log live.
struct WorkDir {
    path: PathBuf,
    /// Created by the demo in the temp dir (removed after a successful run).
    temporary: bool,
}

impl WorkDir {
    fn new(out: Option<PathBuf>) -> anyhow::Result<WorkDir> {
        let (path, temporary) = match out {
            Some(p) => (p, false),
            None => (
                std::env::temp_dir()
                    .join(format!("zenchef-demo-{}", zenchef_sim::util::random_hex(8))),
                true,
            ),
        };
        if path.join("agent.db").exists() {
            anyhow::bail!(
                "{} already holds an agent store: use an empty directory",
                path.display()
            );
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path, temporary })
    }

    /// Removes a temporary directory after a success; otherwise says where
    /// the agent's files are (names from [`zenchef_sim::harness::Rig`]).
    fn finish(self, success: bool) {
        if self.temporary && success {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            println!(
                "\nagent files kept in {}: agent.toml (configuration), agent.db (store), agent.log (log)",
                self.path.display(),
            );
        }
    }
}

/// Prints what the generated service holds.
fn describe(sc: &Scenario) {
    let lunch = sc
        .bookings
        .iter()
        .filter(|b| {
            let hour = b["time"]
                .as_str()
                .and_then(|t| t.get(..2)?.parse::<u32>().ok());
            hour.is_some_and(|h| h < play::DINNER_FROM_HOUR)
        })
        .count();
    let with = |k: &str| sc.bookings.iter().filter(|b| !b[k].is_null()).count();
    let changed = sc
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Zenchef { change, .. } if !matches!(change, ZenchefChange::Cancel { .. })))
        .count();
    let events = sc.pos_events();
    let moves = events.iter().filter(|e| e["type"] == "table.moved").count();
    let (out_start, out_end) = outage_window(sc);
    println!(
        "\nservice of {} (seed {}), restaurant time UTC+1:",
        sc.day, sc.seed
    );
    println!(
        "  {} tables; {} reservations ({} lunch, {} dinner), {} with a remark, {} with allergies",
        sc.tables.len(),
        sc.bookings.len(),
        lunch,
        sc.bookings.len() - lunch,
        with("comment"),
        with("allergies")
    );
    println!(
        "  in Zenchef during service: {} changed, {} cancelled; {} no-shows",
        changed,
        sc.expected.cancelled.len(),
        sc.expected.not_opened.len()
    );
    println!(
        "  on the POS: {} walk-ins, {} table moves, {} bills paid, {} events",
        sc.expected.walkins.len(),
        moves,
        sc.expected.tickets.len(),
        events.len()
    );
    describe_pay(sc);
    println!(
        "  internet outage {}–{}",
        out_start.format("%H:%M"),
        out_end.format("%H:%M")
    );
    if let Some((from, to)) = sc
        .steps
        .iter()
        .find_map(|s| match s {
            Step::ZenchefDown { at } => Some(*at),
            _ => None,
        })
        .zip(sc.steps.iter().find_map(|s| match s {
            Step::ZenchefUp { at } => Some(*at),
            _ => None,
        }))
    {
        println!(
            "  Zenchef-only outage {}–{} (Zenchef Pay up: guests keep paying by phone)",
            from.format("%H:%M"),
            to.format("%H:%M")
        );
    }
}

/// Prints what Zenchef Pay sees of the service.
fn describe_pay(sc: &Scenario) {
    let mut guests: std::collections::BTreeMap<&str, (usize, bool)> = Default::default();
    let mut refused = 0;
    for st in &sc.steps {
        match st {
            Step::GuestPays {
                order_id,
                tip_cents,
                ..
            } => {
                let g = guests.entry(order_id).or_default();
                g.0 += 1;
                g.1 |= *tip_cents > 0;
            }
            Step::InjectPayment { .. } => refused += 1,
            _ => {}
        }
    }
    let splits: Vec<String> = guests
        .values()
        .filter(|g| g.0 > 1)
        .map(|g| g.0.to_string())
        .collect();
    println!(
        "  Zenchef Pay: {} tables paid by the guests from their phone ({} split between {} guests, {} with a tip), {} guest paying a table already paid in cash",
        guests.len(),
        splits.len(),
        splits.join(" and "),
        guests.values().filter(|g| g.1).count(),
        refused
    );
}

/// The outage's start and end.
fn outage_window(sc: &Scenario) -> (DateTime<FixedOffset>, DateTime<FixedOffset>) {
    let find = |want_start: bool| {
        sc.steps.iter().find_map(|s| match s {
            Step::OutageStart { at } if want_start => Some(*at),
            Step::OutageEnd { at } if !want_start => Some(*at),
            _ => None,
        })
    };
    let start = find(true).expect("the scenario has an outage");
    (start, find(false).unwrap_or(start))
}
