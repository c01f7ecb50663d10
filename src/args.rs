//! The command line's clap definitions, shared by `main.rs` (which parses
//! with them) and `build.rs` (which renders the man page `zenchef-edge.1`
//! from them with clap_mangen, so the production binary carries no man
//! page generator). Both provide `long_version()` at their root.
//!
//! Only clap and std may be used here: `build.rs` cannot see the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::long_version;

/// `zenchef-edge [--config FILE] <command>`.
#[derive(Parser)]
#[command(name = "zenchef-edge", version = long_version(), about = "Cashpad ↔ Zenchef bridge agent")]
pub struct Cli {
    /// Configuration file [default: /etc/zenchef-edge/agent.toml].
    #[arg(long, global = true, env = "ZENCHEF_EDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
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
    /// Orders that need attention (an unreadable event); mark one as checked.
    Orders {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<OrdersCmd>,
    },
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
    /// List the boxes of a fleet from their reports on the group's broker
    /// (no configuration file needed; the password in ZENCHEF_FLEET_TOKEN).
    FleetView {
        /// The broker: mqtts://host[:port] (default port 8883).
        #[arg(long)]
        broker: String,
        /// The boxes' [fleet] topic_prefix.
        #[arg(long, default_value = "zenchef-edge")]
        prefix: String,
        /// PEM CA file the broker's certificate must chain to [default: the system's].
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Client certificate (PEM), with --key-file.
        #[arg(long)]
        cert_file: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// MQTT username (its password in the environment variable ZENCHEF_FLEET_TOKEN).
        #[arg(long)]
        username: Option<String>,
        /// Seconds to collect reports after subscribing.
        #[arg(long, default_value_t = 3)]
        wait_s: u64,
        /// Machine-readable output: a JSON array of {device_id, message}.
        #[arg(long)]
        json: bool,
    },
}

/// `update …`.
#[derive(Subcommand)]
pub enum UpdateCmd {
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

/// `orders …`.
#[derive(Subcommand)]
pub enum OrdersCmd {
    /// A person checked this order's bill in the POS.
    Handled {
        /// The POS order id.
        order_id: String,
    },
}

/// `payments …`.
#[derive(Subcommand)]
pub enum PaymentsCmd {
    /// A person dealt with this payment (in the POS or in Zenchef Pay).
    Handled {
        /// The Zenchef Pay payment id.
        payment_id: String,
    },
}

/// `outbox …`.
#[derive(Subcommand)]
pub enum OutboxCmd {
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
