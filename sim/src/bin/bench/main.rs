//! `bench`: benchmarks of the **real agent** against the real simulators
//! (MQTT broker, Zenchef HTTP fake, the SQLite file on disk).
//!
//! ```text
//! cargo run --release -p zenchef-sim --bin bench -- [--smoke] [--only intake,drain,latency,memory,size,longlife] [--agent PATH]
//! ```
//!
//! Without `--agent` it builds the agent with the cargo that runs it, in
//! its own profile (`--release` for a release bench), like the demo. Parts:
//! 1. `intake`: durable intake, events/s and publish → stored latency;
//! 2. `drain`: a 10,000-event backlog after an outage;
//! 3. `latency`: POS publish → Zenchef call, at 1 and 100 events/s;
//! 4. `memory`: peak RSS and CPU of an idle box (the peak while draining
//!    comes from part 2);
//! 5. `size`: stripped binary and production crate count;
//! 6. `longlife`: the agent on a store of three years of one busy
//!    restaurant against an empty store (start → READY, replay, intake,
//!    drain, one retention pass: what it deletes and keeps, file size, RSS).
//!
//! Each part prints a small table with the 1-minute load average before and
//! after; a summary follows. Targets are reported (`ok` / `MISS`), never
//! enforced: the exit code is 1 only when an assertion on what the agent
//! did fails (an event lost, an order's calls out of `seq` order, a part
//! that could not run). `--smoke` runs every part small (≈ 1 min plus the
//! build), for CI. Results and the machine are recorded in
//! `docs/benchmarks.md`.

mod common;
mod drain;
mod intake;
mod latency;
mod longlife;
mod memory;
mod size;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

use common::{Bench, sh, table, verdict};

/// The parts, in the order they run.
const PARTS: &[&str] = &["size", "intake", "drain", "latency", "memory", "longlife"];

/// Benchmarks of the real agent: intake, backlog drain, latency, memory, size.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Args {
    /// Small sizes and short idle periods (CI: checks that it runs and that
    /// ordering and loss assertions hold).
    #[arg(long)]
    smoke: bool,
    /// Only these parts (comma-separated): intake, drain, latency, memory, size, longlife.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Use this agent binary instead of building it.
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
    /// Keep the rigs' directories (configuration, store, agent log) in DIR.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    for p in &args.only {
        if !PARTS.contains(&p.as_str()) {
            eprintln!("unknown part {p:?}: expected some of {}", PARTS.join(","));
            return ExitCode::from(2);
        }
    }
    match run(args).await {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            println!("\nFAILED: {} problem(s):", problems.len());
            for p in &problems {
                println!("  - {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("\nbench error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<Vec<String>> {
    let agent = match &args.agent {
        Some(p) => p.clone(),
        None => zenchef_sim::util::build_agent("bench")?,
    };
    anyhow::ensure!(agent.is_file(), "no agent binary at {}", agent.display());
    let agent = agent.canonicalize()?;
    let (work, temporary) = match &args.keep {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "zenchef-bench-{}",
                zenchef_sim::util::random_hex(8)
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    machine(&agent, &work, args.smoke);

    let mut bench = Bench {
        agent,
        smoke: args.smoke,
        work: work.clone(),
        figures: Vec::new(),
        problems: Vec::new(),
    };
    let started = Instant::now();
    for part in PARTS {
        if !args.only.is_empty() && !args.only.iter().any(|p| p == part) {
            continue;
        }
        let r = match *part {
            "size" => size::run(&mut bench).await,
            "intake" => intake::run(&mut bench).await,
            "drain" => drain::run(&mut bench).await,
            "latency" => latency::run(&mut bench).await,
            "memory" => memory::run(&mut bench).await,
            "longlife" => longlife::run(&mut bench).await,
            _ => unreachable!("checked in main"),
        };
        if let Err(e) = r {
            bench.problem(format!("{part}: could not run: {e:#}"));
        }
    }

    println!(
        "\n== summary ({}; {:.0} s)",
        if args.smoke { "smoke" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    let rows: Vec<Vec<String>> = bench
        .figures
        .iter()
        .map(|f| {
            vec![
                f.part.to_string(),
                f.what.clone(),
                f.value.clone(),
                f.target.clone(),
                verdict(f.met),
                format!("{:.1}", f.load),
            ]
        })
        .collect();
    table(
        &["part", "measure", "value", "target", "", "load 1m"],
        &rows,
    );
    if temporary && bench.problems.is_empty() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!("\nrig directories kept in {}", work.display());
    }
    Ok(bench.problems)
}

/// Prints what the figures depend on: CPU, disk, build, date, load.
fn machine(agent: &Path, work: &Path, smoke: bool) {
    let lscpu = sh("lscpu", &[]);
    let model = lscpu
        .lines()
        .find_map(|l| l.strip_prefix("Model name:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    let work_s = work.to_string_lossy().to_string();
    let df = sh("df", &["-hT", &work_s]);
    println!(
        "zenchef-edge benchmarks ({})",
        if smoke { "smoke" } else { "full" }
    );
    println!(
        "  date       {}",
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!("  cpu        {} × {model}", sh("nproc", &[]));
    println!("  kernel     {}", sh("uname", &["-r"]));
    println!("  disk       {}", df.lines().last().unwrap_or("?"));
    println!("  agent      {}", agent.display());
    println!("  load avg   {}", common::load_avgs());
}
