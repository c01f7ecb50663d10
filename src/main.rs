//! `zenchef-edge`: builds the runtime, sets up logging, handles signals and
//! dispatches the command line (agent-interface.md § Command line).
//! Exit codes: 0 success, 1 failure, 2 usage, 78 configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use zenchef_edge::config::{self, EX_CONFIG};
use zenchef_edge::{LONG_VERSION, cli, logging};

#[derive(Parser)]
#[command(name = "zenchef-edge", version = LONG_VERSION, about = "Cashpad ↔ Zenchef bridge agent")]
struct Cli {
    /// Configuration file [default: /etc/zenchef-edge/agent.toml].
    #[arg(long, global = true, env = "ZENCHEF_EDGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (what systemd starts).
    Run,
    /// Show what the box is doing.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or retry the outbox.
    Outbox {
        #[command(subcommand)]
        action: OutboxCmd,
    },
    /// Store self-test: open, migrate, write, read back (CI, image build).
    /// Needs no configuration file.
    #[command(hide = true)]
    SelfTest {
        /// Store to test [default: a fresh file in a temporary directory].
        #[arg(long)]
        store: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OutboxCmd {
    /// List queued (or dead) events.
    List {
        /// Dead letters instead of queued events.
        #[arg(long)]
        dead: bool,
    },
    /// Put dead events back in the queue.
    Retry {
        /// The event to retry.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        event_id: Option<String>,
        /// Every dead event.
        #[arg(long)]
        all_dead: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::SelfTest { store } = &cli.command {
        return match cli::self_test::run(store.as_deref()) {
            Ok(c) => ExitCode::from(c as u8),
            Err(e) => {
                eprintln!("self-test FAILED: {e}");
                ExitCode::from(1)
            }
        };
    }
    let path = config::resolve_path(cli.config.as_deref());
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG as u8);
        }
    };
    let code = match cli.command {
        Command::Run => run_daemon(cfg),
        Command::Status { json } => cli::status::run(&cfg, json),
        Command::Outbox { action: OutboxCmd::List { dead } } => cli::outbox::run_list(&cfg.store_path, dead),
        Command::Outbox { action: OutboxCmd::Retry { event_id, all_dead: _ } } => {
            cli::outbox::retry(&cfg.store_path, event_id.as_deref())
                .map(|n| {
                    println!("{n} event(s) put back in the queue; the running agent picks them up within seconds");
                    if n == 0 { 1 } else { 0 }
                })
                .map_err(Into::into)
        }
        // Handled above, before the configuration is read.
        Command::SelfTest { store } => cli::self_test::run(store.as_deref()).map_err(Into::into),
    };
    match code {
        Ok(c) => ExitCode::from(c as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_daemon(cfg: config::Config) -> anyhow::Result<i32> {
    logging::init(&cfg.log_filter);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stop requested");
            trigger.cancel();
        });
        match zenchef_edge::run(cfg, shutdown).await {
            Ok(()) => Ok(0),
            Err(e) => {
                tracing::error!("{e:#}");
                Ok(1)
            }
        }
    })
}
