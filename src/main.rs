//! `zenchef-edge`: builds the runtime, sets up logging, handles signals and
//! dispatches the command line (docs/protocol/agent-interface.md § Command line).
//! Exit codes: [`zenchef_edge::exit`] (0 success, 1 a check failed or a request was
//! refused, 64 usage, 66 no store, 74 I/O, 75 temporary, 77 permission, 78
//! configuration; docs/README-cli.md).
//!
//! Run as root, every command but `provision` and `self-test` reads the
//! configuration, then becomes the owner of the state directory before it
//! touches anything ([`zenchef_edge::privileges`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use zenchef_edge::config::{self, EX_CONFIG};
use zenchef_edge::exit;
use zenchef_edge::privileges;
use zenchef_edge::{cli, logging, long_version, update};

mod args;
use args::{Cli, Command, OrdersCmd, OutboxCmd, PaymentsCmd, UpdateCmd};

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
    // A support command: no configuration file, any machine.
    if let Command::FleetView {
        broker,
        prefix,
        ca_file,
        cert_file,
        key_file,
        username,
        wait_s,
        json,
    } = cli.command
    {
        return ExitCode::from(cli::fleet_view::run(cli::fleet_view::ViewArgs {
            broker,
            prefix,
            ca_file,
            cert_file,
            key_file,
            username,
            wait: std::time::Duration::from_secs(wait_s.min(3600)),
            json,
        }) as u8);
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
        return provision(zenchef_edge::provision::Provision {
            boot_dirs,
            config_path: path,
            state_dir,
            service_user,
            ssh_user,
            ssh_home,
        });
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
    if let Some(code) = become_owner(&cfg, &cli.command) {
        return ExitCode::from(code as u8);
    }
    ExitCode::from(exit_code(dispatch(cli.command, &cfg, config_stat)) as u8)
}

/// `provision`: installs a configuration dropped on the boot partition
/// (exit 1 when one was found and refused).
fn provision(p: zenchef_edge::provision::Provision) -> ExitCode {
    logging::init("info");
    match p.run() {
        Ok(r) if r.refused.is_some() => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Run as root, becomes the owner of the state directory before anything
/// is touched (`update apply` does it in a child, then restarts the
/// service as root). `Some(code)`: the command ended here.
fn become_owner(cfg: &config::Config, command: &Command) -> Option<i32> {
    let state_dir = update::Paths::new(PathBuf::new(), &cfg.store_path).state_dir;
    let owner = privileges::owner_to_become(&state_dir)?;
    if let Command::Update {
        action: UpdateCmd::Apply { force, no_restart },
    } = command
    {
        return Some(apply_as(owner, cfg, *force, *no_restart));
    }
    if let Err(e) = privileges::drop_to(owner) {
        eprintln!(
            "error: cannot become {} (uid {}), the owner of {}: {e}; refusing to run as root, \
             which would leave root-owned files there",
            owner.user_name(),
            owner.uid,
            state_dir.display()
        );
        return Some(exit::NOPERM);
    }
    None
}

/// Runs a command that needs the configuration.
fn dispatch(
    command: Command,
    cfg: &config::Config,
    config_stat: std::io::Result<std::fs::Metadata>,
) -> anyhow::Result<i32> {
    match command {
        Command::Provision { .. } | Command::FleetView { .. } => unreachable!("handled in main"),
        Command::Run => run_daemon(cfg.clone()),
        Command::Status { json } => cli::status::run(cfg, json),
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
        Command::Doctor { json } => block_on(cli::doctor::run(cfg, json, config_stat)),
        Command::Link {
            order_id,
            booking_id,
        } => cli::link::run(cfg, &order_id, Some(booking_id)),
        Command::Unlink { order_id } => cli::link::run(cfg, &order_id, None),
        Command::Tables { json } => block_on(cli::tables::run(cfg, json)),
        Command::PaySettings => cli::pay_settings::run(cfg),
        Command::Orders { json, action: None } => cli::orders::run_list(cfg, json),
        Command::Orders {
            action: Some(OrdersCmd::Handled { order_id }),
            ..
        } => cli::orders::run_handled(&cfg.store_path, &order_id),
        Command::Payments { json, action: None } => cli::payments::run_list(cfg, json),
        Command::Payments {
            action: Some(PaymentsCmd::Handled { payment_id }),
            ..
        } => cli::payments::run_handled(&cfg.store_path, &payment_id),
        Command::Update {
            action: UpdateCmd::Check,
        } => cli::update::check(cfg),
        Command::Update {
            action: UpdateCmd::Apply { force, no_restart },
        } => cli::update::apply(
            cfg,
            force,
            if no_restart {
                cli::update::Restart::No
            } else {
                cli::update::Restart::Now
            },
        ),
        Command::Update {
            action: UpdateCmd::BootCheck,
        } => cli::update::boot_check(cfg),
        // Handled above, before the configuration is read.
        Command::SelfTest { store } => cli::self_test::run(store.as_deref()).map_err(Into::into),
    }
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
    let code = privileges::run_as(owner, exit::NOPERM, || {
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
        match zenchef_edge::daemon::Daemon::new(cfg, shutdown).run().await {
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
