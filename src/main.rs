//! `zenchef-edge`: builds the runtime, sets up logging, handles signals and
//! dispatches the command line (agent-interface.md § Command line).
//! Exit codes: [`cli::exit`] (0 success, 1 a check failed or a request was
//! refused, 64 usage, 66 no store, 74 I/O, 75 temporary, 77 permission, 78
//! configuration; docs/README-cli.md).
//!
//! Run as root, every command but `provision` and `self-test` reads the
//! configuration, then becomes the owner of the state directory before it
//! touches anything ([`cli::privileges`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use zenchef_edge::cli::{exit, privileges};
use zenchef_edge::config::{self, EX_CONFIG};
use zenchef_edge::{cli, logging, long_version, update};

#[derive(Parser)]
#[command(name = "zenchef-edge", version = long_version(), about = "Cashpad ↔ Zenchef bridge agent")]
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
    /// Install a configuration (and SSH keys) dropped on the boot partition
    /// (run as root by zenchef-edge-provision.service, before the agent).
    Provision {
        /// Boot directories to search, in order.
        #[arg(long = "boot-dir", default_values = ["/boot/firmware", "/boot"])]
        boot_dirs: Vec<PathBuf>,
        /// State directory (a marker for the first start is left there).
        #[arg(long, default_value = "/var/lib/zenchef-edge")]
        state_dir: PathBuf,
        /// System user the configuration file is given to.
        #[arg(long)]
        service_user: Option<String>,
        /// Technician account that receives authorized_keys.
        #[arg(long)]
        ssh_user: Option<String>,
        /// Home directory of that account (default: from /etc/passwd).
        #[arg(long)]
        ssh_home: Option<PathBuf>,
    },
    /// Check config, store, Zenchef, POS, MQTT and tables; exit 1 on any FAIL.
    Doctor {
        /// Machine-readable output: one JSON object with every check.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or retry the outbox.
    Outbox {
        #[command(subcommand)]
        action: OutboxCmd,
    },
    /// Link a POS order to a Zenchef booking by hand (sync-rules 4b).
    Link {
        /// The POS order id (see `outbox list` or the journal).
        order_id: String,
        /// The Zenchef booking id.
        booking_id: i64,
    },
    /// Remove the link of a POS order to its booking.
    Unlink {
        /// The POS order id.
        order_id: String,
    },
    /// Compare the POS floor plan with the Zenchef tables.
    Tables {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the Cashpad Server and Installation ID for Zenchef Pay's settings.
    PaySettings,
    /// Zenchef Pay payments that need a person; mark one as handled.
    Payments {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<PaymentsCmd>,
    },
    /// Store self-test: open, migrate, write, read back (CI, image build).
    /// Needs no configuration file.
    #[command(hide = true)]
    SelfTest {
        /// Store to test [default: a fresh file in a temporary directory].
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Self-update: check what is available, or install it now.
    Update {
        #[command(subcommand)]
        action: UpdateCmd,
    },
}

#[derive(Subcommand)]
enum UpdateCmd {
    /// Show the running and available versions and whether the policy allows installing now.
    Check,
    /// Install the available release now (ignores the window and the rollout, never the signature).
    Apply {
        /// Also ignore open orders, a busy outbox and versions rolled back before.
        #[arg(long)]
        force: bool,
        /// Do not restart the service afterwards.
        #[arg(long)]
        no_restart: bool,
    },
    /// Start bookkeeping, run by the previous binary from the unit's ExecStartPre=.
    #[command(hide = true)]
    BootCheck,
}

#[derive(Subcommand)]
enum PaymentsCmd {
    /// A person dealt with this payment (in the POS or in Zenchef Pay).
    Handled {
        /// The Zenchef Pay payment id.
        payment_id: String,
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

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and succeed; anything
            // else is a usage error: EX_USAGE, not clap's 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 } as u8);
        }
    };
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
    // Provisioning runs before a configuration exists.
    if let Command::Provision {
        boot_dirs,
        state_dir,
        service_user,
        ssh_user,
        ssh_home,
    } = cli.command
    {
        logging::init("info");
        let p = zenchef_edge::provision::Provision {
            boot_dirs,
            config_path: path,
            state_dir,
            service_user,
            ssh_user,
            ssh_home,
        };
        return match p.run() {
            Ok(r) if r.refused.is_some() => ExitCode::from(1),
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(1)
            }
        };
    }
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            match cli.command {
                Command::Doctor { json } => cli::doctor::print_config_error(&e, json),
                Command::Status { json: true } => cli::status::print_config_error(&e),
                _ => {}
            }
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG as u8);
        }
    };
    // What doctor reports about the file, read while still root (the
    // configuration directory is root-only).
    let config_stat = std::fs::metadata(&cfg.file);
    let state_dir = update::Paths::new(PathBuf::new(), &cfg.store_path).state_dir;
    if let Some(owner) = privileges::owner_to_become(&state_dir) {
        if let Command::Update {
            action: UpdateCmd::Apply { force, no_restart },
        } = cli.command
        {
            return ExitCode::from(apply_as(owner, &cfg, force, no_restart) as u8);
        }
        if let Err(e) = privileges::drop_to(owner) {
            eprintln!(
                "error: cannot become {} (uid {}), the owner of {}: {e}; refusing to run as root, \
                 which would leave root-owned files there",
                owner.user_name(),
                owner.uid,
                state_dir.display()
            );
            return ExitCode::from(exit::NOPERM as u8);
        }
    }
    let code = match cli.command {
        Command::Provision { .. } => unreachable!("handled above"),
        Command::Run => run_daemon(cfg),
        Command::Status { json } => cli::status::run(&cfg, json),
        Command::Outbox {
            action: OutboxCmd::List { dead },
        } => cli::outbox::run_list(&cfg.store_path, dead),
        Command::Outbox {
            action:
                OutboxCmd::Retry {
                    event_id,
                    all_dead: _,
                },
        } => cli::outbox::run_retry(&cfg.store_path, event_id.as_deref()),
        Command::Doctor { json } => block_on(cli::doctor::run(&cfg, json, config_stat)),
        Command::Link {
            order_id,
            booking_id,
        } => cli::link::run(&cfg, &order_id, Some(booking_id)),
        Command::Unlink { order_id } => cli::link::run(&cfg, &order_id, None),
        Command::Tables { json } => block_on(cli::tables::run(&cfg, json)),
        Command::PaySettings => cli::pay_settings::run(&cfg),
        Command::Payments { json, action: None } => cli::payments::run_list(&cfg, json),
        Command::Payments {
            action: Some(PaymentsCmd::Handled { payment_id }),
            ..
        } => cli::payments::run_handled(&cfg.store_path, &payment_id),
        Command::Update {
            action: UpdateCmd::Check,
        } => cli::update::check(&cfg),
        Command::Update {
            action: UpdateCmd::Apply { force, no_restart },
        } => cli::update::apply(
            &cfg,
            force,
            if no_restart {
                cli::update::Restart::No
            } else {
                cli::update::Restart::Now
            },
        ),
        Command::Update {
            action: UpdateCmd::BootCheck,
        } => cli::update::boot_check(&cfg),
        // Handled above, before the configuration is read.
        Command::SelfTest { store } => cli::self_test::run(store.as_deref()).map_err(Into::into),
    };
    ExitCode::from(exit_code(code) as u8)
}

/// The code of a command's result; an error is printed first.
fn exit_code(r: anyhow::Result<i32>) -> i32 {
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code_for(&e)
        }
    }
}

/// `update apply` run as root: installs as the owner of the state
/// directory in a child process, then restarts the service as root.
fn apply_as(owner: privileges::Owner, cfg: &config::Config, force: bool, no_restart: bool) -> i32 {
    let code = privileges::run_as(owner, || {
        exit_code(cli::update::apply(
            cfg,
            force,
            cli::update::Restart::ByParent,
        ))
    });
    match code {
        Ok(0) if !no_restart && cli::update::installed_pending(cfg) => {
            cli::update::restart_service();
            0
        }
        Ok(0) if cli::update::installed_pending(cfg) => {
            println!("restart the agent to run it: systemctl restart zenchef-edge");
            0
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: cannot run as {}, the owner of the state directory: {e}",
                owner.user_name()
            );
            exit::NOPERM
        }
    }
}

/// Runs a command that talks to the network on a small runtime.
fn block_on(f: impl std::future::Future<Output = anyhow::Result<i32>>) -> anyhow::Result<i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
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
            Ok(()) if update::restart_requested() => Ok(update::EX_RESTART),
            Ok(()) => Ok(0),
            // A newer release's store this binary may not use: 78, which
            // the unit does not restart (a restart cannot fix it).
            Err(e)
                if e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<zenchef_edge::outbox::StoreError>(),
                        Some(zenchef_edge::outbox::StoreError::Incompatible { .. })
                    )
                }) =>
            {
                Ok(EX_CONFIG)
            }
            Err(e) => {
                tracing::error!("{e:#}");
                Ok(1)
            }
        }
    })
}
