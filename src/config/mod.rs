//! The agent's configuration file (docs/protocol/agent-interface.md § "Configuration file").
//!
//! Two layers, as in rathole's `config.rs`:
//! - [`RawConfig`]: exactly what the TOML file says, every key optional,
//!   unknown keys refused (`deny_unknown_fields`: a typo must not silently
//!   disable something);
//! - [`Config`]: the validated result with every default filled in, built by
//!   [`RawConfig::validate`]. Every rejection names the key, the problem and
//!   the file, and maps to exit code [`EX_CONFIG`] (78).
//!
//! Secrets (the Zenchef token, the Cashpad token, the Pay token) are held in
//! [`Secret`], whose `Debug` and `Display` print `***`.
//!
//! # Readable across versions
//! The file may say which version of this format it is written for
//! (`config_version = N`, a top-level key; absent = 1). Keys added after
//! version 1 ([`INTRODUCED`]) need the file to say a version at least
//! theirs, so that a file using them always carries that number. A
//! binary reading a file of a **newer** version than it knows
//! ([`CONFIG_VERSION`]) — the previous binary after a rollback, an older
//! image provisioned with a newer file — ignores the keys it does not know,
//! each with a warning ([`Config::warnings`]), and validates the rest as
//! usual; a file of its own version or older has every unknown key refused
//! (a misspelt key must not silently turn something off).
//!
//! # The release channel
//! Without `[update] manifest_url` and keys, a box follows the channel
//! built into the binary ([`BUILT_IN_CHANNEL`], `packaging/channel.toml`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Exit code for any configuration error (sysexits `EX_CONFIG`); the systemd
/// unit lists it in `RestartPreventExitStatus=` so a bad file does not
/// restart-loop.
pub const EX_CONFIG: i32 = 78;
/// Default configuration path on the box.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/zenchef-edge/agent.toml";
/// Default minimum Cashpad app version (the seed: "2.0.16 or later").
pub const DEFAULT_MIN_VERSION: &str = "2.0.16";
/// Default mDNS port (RFC 6762).
pub const DEFAULT_MDNS_PORT: u16 = 5353;
/// Default MQTT port when `cashpad.host` is set without `cashpad.port`.
pub const DEFAULT_MQTT_PORT: u16 = 1883;
/// Default Zenchef API base URL (production).
pub const DEFAULT_ZENCHEF_BASE_URL: &str = "https://api.zenchef.com/api/v1";
/// Default `PublisherName` header value.
pub const DEFAULT_PUBLISHER_NAME: &str = "zenchef-edge";
/// Default reservation poll interval, seconds.
pub const DEFAULT_POLL_INTERVAL_S: u64 = 30;
/// Default sync window in days (today and tomorrow).
pub const DEFAULT_SYNC_DAYS: u32 = 2;
/// Default matching window before `opened_at`, minutes (sync-rules 4).
pub const DEFAULT_MATCH_BEFORE_MIN: i64 = 90;
/// Default matching window after `opened_at`, minutes (sync-rules 4).
pub const DEFAULT_MATCH_AFTER_MIN: i64 = 60;
/// Default Zenchef Pay base URL.
pub const DEFAULT_PAY_BASE_URL: &str = "https://pay.zenchef.com/pos/v1";
/// Default store path.
pub const DEFAULT_STORE_PATH: &str = "/var/lib/zenchef-edge/agent.db";
/// Default maintenance window for updates (restaurant local time).
pub const DEFAULT_UPDATE_WINDOW: &str = "03:00-05:00";
/// Default time between two update checks, seconds (6 h).
pub const DEFAULT_UPDATE_CHECK_INTERVAL_S: u64 = 6 * 3600;
/// Default delay before a new version confirms its health, seconds.
pub const DEFAULT_UPDATE_CONFIRM_AFTER_S: u64 = 30;
/// Default local HTTP listen address (status page, webhook nudge).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8780";
/// Default `http.history_sample_s`: one sample of the status page's chart
/// a minute (6 h kept).
pub const DEFAULT_HISTORY_SAMPLE_S: u64 = 60;
/// Default number of orders delivered concurrently.
pub const DEFAULT_DELIVERY_CONCURRENCY: usize = 16;
/// Default cap of the retry backoff, seconds.
pub const DEFAULT_RETRY_MAX_S: u64 = 60;
/// Default delay between two tries while credentials are refused, seconds.
pub const DEFAULT_CREDENTIALS_RETRY_S: u64 = 300;
/// Default HTTP timeout for one call to Zenchef, seconds.
pub const DEFAULT_HTTP_TIMEOUT_S: u64 = 15;
/// Default days a finished order (its events, outbox rows, payments) and a
/// handled problem are kept (`store.keep_days`).
pub const DEFAULT_KEEP_DAYS: u32 = 90;
/// Default time between two retention checks, seconds
/// (`store.retention_interval_s`).
pub const DEFAULT_RETENTION_INTERVAL_S: u64 = 600;
/// Default: the POS counts as quiet (retention may run outside the
/// maintenance window) after this many minutes without an event
/// (`store.quiet_min`).
pub const DEFAULT_QUIET_MIN: u64 = 30;
/// Default: an order open for longer than this no longer holds updates
/// back (`update.open_order_max_h`, hours: a service day).
pub const DEFAULT_OPEN_ORDER_MAX_H: u64 = 16;

/// The version of the configuration format this binary reads.
pub const CONFIG_VERSION: i64 = if cfg!(feature = "test-next") { 3 } else { 2 };

/// Keys added after `config_version` 1 and the version that introduced
/// each: a file using one must say `config_version` ≥ it.
pub const INTRODUCED: &[(&str, i64)] = &[
    ("store.keep_days", 2),
    ("store.retention_interval_s", 2),
    ("store.quiet_min", 2),
    ("update.public_keys", 2),
    ("update.open_order_max_h", 2),
    #[cfg(feature = "test-next")]
    ("store.test_next_key", 3),
];

/// The release channel built into the binary: `packaging/channel.toml`.
pub const BUILT_IN_CHANNEL: &str = include_str!("../packaging/channel.toml");

/// The built-in channel, parsed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Manifest of the channel.
    pub manifest_url: String,
    /// Release signing keys (base64 ed25519): any of them may sign.
    pub public_keys: Vec<String>,
}

/// [`BUILT_IN_CHANNEL`], parsed (a unit test keeps it parseable).
pub fn built_in_channel() -> Channel {
    toml::from_str(BUILT_IN_CHANNEL).unwrap_or(Channel {
        manifest_url: String::new(),
        public_keys: Vec::new(),
    })
}

/// A secret string (token, password). `Debug` and `Display` print `***`;
/// the value is reachable only through [`Secret::expose`], used where the
/// secret goes on the wire.
#[derive(Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself: only for headers and MQTT credentials.
    pub fn expose(&self) -> &str {
        &self.0
    }
    fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A configuration error: `config error: <key>: <problem> (in <file>)`.
#[derive(Debug, thiserror::Error)]
#[error("config error: {key}: {problem} (in {file})")]
pub struct ConfigError {
    /// Dotted key, e.g. `zenchef.restaurant_id`; `-` when the file itself is the problem.
    pub key: String,
    /// What is wrong with the value (never the value of a secret).
    pub problem: String,
    /// The file that was read.
    pub file: PathBuf,
}

/// The file as written (every key optional; unknown keys refused).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `config_version` (top level): the version of this format the file
    /// is written for; absent = 1.
    #[serde(default)]
    pub config_version: Option<i64>,
    /// `[restaurant]`
    #[serde(default)]
    pub restaurant: RawRestaurant,
    /// `[cashpad]`
    #[serde(default)]
    pub cashpad: RawCashpad,
    /// `[zenchef]`
    #[serde(default)]
    pub zenchef: RawZenchef,
    /// `[zenchef_pay]`
    #[serde(default)]
    pub zenchef_pay: RawPay,
    /// `[store]`
    #[serde(default)]
    pub store: RawStore,
    /// `[update]`
    #[serde(default)]
    pub update: RawUpdate,
    /// `[http]`
    #[serde(default)]
    pub http: RawHttp,
    /// `[delivery]` (project extension: outbox tuning, see docs/decisions.md)
    #[serde(default)]
    pub delivery: RawDelivery,
    /// `[log]` (project extension)
    #[serde(default)]
    pub log: RawLog,
}

/// `[restaurant]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestaurant {
    pub timezone: Option<String>,
    pub currency: Option<String>,
}

/// `[cashpad]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCashpad {
    pub token: Option<Secret>,
    pub installation_id: Option<String>,
    pub min_version: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub mdns_port: Option<u16>,
    pub interfaces: Option<Vec<String>>,
}

/// `[zenchef]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZenchef {
    pub restaurant_id: Option<String>,
    pub token: Option<Secret>,
    pub base_url: Option<String>,
    pub publisher_name: Option<String>,
    pub poll_interval_s: Option<u64>,
    pub sync_days: Option<u32>,
    pub match_before_min: Option<i64>,
    pub match_after_min: Option<i64>,
}

/// `[zenchef_pay]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPay {
    pub enabled: Option<bool>,
    pub base_url: Option<String>,
    pub token: Option<Secret>,
    pub settle_resend_s: Option<u64>,
    pub settle_resends: Option<u32>,
}

/// `[store]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<PathBuf>,
    pub keep_days: Option<u32>,
    pub retention_interval_s: Option<u64>,
    pub quiet_min: Option<u64>,
    #[cfg(feature = "test-next")]
    pub test_next_key: Option<String>,
}

/// `[update]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    pub enabled: Option<bool>,
    pub manifest_url: Option<String>,
    pub public_key: Option<String>,
    pub public_keys: Option<Vec<String>>,
    pub window: Option<String>,
    pub rollout_percent: Option<u8>,
    pub check_interval_s: Option<u64>,
    pub confirm_after_s: Option<u64>,
    pub open_order_max_h: Option<u64>,
}

/// `[http]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub history_sample_s: Option<u64>,
}

/// `[delivery]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub concurrency: Option<usize>,
    pub retry_max_s: Option<u64>,
    pub credentials_retry_s: Option<u64>,
    pub http_timeout_s: Option<u64>,
}

/// `[log]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub filter: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub file: PathBuf,
    /// Restaurant time zone (IANA); sync window and day/time of walk-ins use it.
    pub timezone: chrono_tz::Tz,
    /// ISO 4217 currency of every `*_cents` amount, e.g. `EUR`.
    pub currency: String,
    /// Cashpad side.
    pub cashpad: CashpadConfig,
    /// Zenchef side.
    pub zenchef: ZenchefConfig,
    /// Zenchef Pay side (`None` when disabled).
    pub pay: Option<PayConfig>,
    /// The SQLite file.
    pub store_path: PathBuf,
    /// Retention of the store (`[store]` keys beside `path`).
    pub retention: RetentionConfig,
    /// Self-update settings.
    pub update: UpdateConfig,
    /// Local HTTP listen address (`None` when disabled with `""`).
    pub http_listen: Option<SocketAddr>,
    /// Period of one sample of the daemon's history (`http.history_sample_s`:
    /// the status page's chart and `status --json` `history`).
    pub history_sample: Duration,
    /// Outbox delivery tuning.
    pub delivery: DeliveryConfig,
    /// `RUST_LOG`-style filter (the `RUST_LOG` environment variable wins).
    pub log_filter: String,
    /// `config_version` of the file (1 when absent).
    pub config_version: i64,
    /// Keys of a newer format version this binary ignored (one sentence
    /// each, naming the key); logged at WARN when the daemon starts.
    pub warnings: Vec<String>,
}

/// `[store]` retention settings, validated (docs/decisions.md, "Years
/// under the counter").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Days a finished order, its events, outbox rows and payments are
    /// kept after its last event; days a handled problem (a quarantined
    /// payload no order depends on, a payment a person handled) is kept
    /// after it was handled (`keep_days`, 7–3650, default 90).
    pub keep_days: u32,
    /// Time between two checks whether retention may run
    /// (`retention_interval_s`, 1–86400, default 600 s).
    pub interval: Duration,
    /// The POS counts as quiet after this long without an event
    /// (`quiet_min`, 1–1440, default 30 min): retention then runs outside the
    /// maintenance window too.
    pub quiet: Duration,
}

/// `[cashpad]`, validated.
#[derive(Debug, Clone)]
pub struct CashpadConfig {
    /// MQTT password (username is always `zenchef-edge`).
    pub token: Secret,
    /// The POS to pick when several answer; `None`: exactly one must answer.
    pub installation_id: Option<String>,
    /// Minimum accepted Cashpad app version.
    pub min_version: Version,
    /// Static POS address: disables discovery.
    pub static_addr: Option<(String, u16)>,
    /// UDP port of mDNS (5353; tests use another).
    pub mdns_port: u16,
    /// Interfaces mDNS runs on; empty = every non-loopback interface.
    pub interfaces: Vec<String>,
}

/// `[zenchef]`, validated.
#[derive(Debug, Clone)]
pub struct ZenchefConfig {
    /// `restaurantId` header.
    pub restaurant_id: String,
    /// `auth-token` header.
    pub token: Secret,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// `PublisherName` header.
    pub publisher_name: String,
    /// Reservation poll interval.
    pub poll_interval: Duration,
    /// Days in the sync window, starting today (restaurant time).
    pub sync_days: u32,
    /// Matching window before `opened_at`, minutes.
    pub match_before_min: i64,
    /// Matching window after `opened_at`, minutes.
    pub match_after_min: i64,
}

/// `[zenchef_pay]`, validated (present only when enabled).
#[derive(Debug, Clone)]
pub struct PayConfig {
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Bearer token.
    pub token: Secret,
    /// Quiet period after which a settle command the POS has not answered
    /// is sent again with the same `command_id` (`settle_resend_s`,
    /// default [`DEFAULT_SETTLE_RESEND_S`] seconds; sync rule 7).
    pub settle_resend: Duration,
    /// How many times it is sent again before the payment is shown as
    /// needing a person (`settle_resends`, default
    /// [`DEFAULT_SETTLE_RESENDS`]).
    pub settle_resends: u32,
}

/// Default `[zenchef_pay] settle_resend_s`: a guest who paid from the phone
/// should see the POS take it within half a minute.
pub const DEFAULT_SETTLE_RESEND_S: u64 = 30;
/// Default `[zenchef_pay] settle_resends`: with the default quiet period, a
/// silent POS is shown as needing a person two minutes after the first
/// command.
pub const DEFAULT_SETTLE_RESENDS: u32 = 3;

/// `[update]`, validated.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// Unattended updates on/off.
    pub enabled: bool,
    /// Manifest URL (`None`: nothing to check): `manifest_url`, or the
    /// built-in channel's when the key is absent; `""` turns checks off.
    pub manifest_url: Option<String>,
    /// The release signing keys (ed25519, base64), any of which may sign:
    /// `public_key` and `public_keys` of the file when either is present
    /// (an empty list refuses every update), else the built-in channel's.
    pub public_keys: Vec<String>,
    /// Where [`UpdateConfig::public_keys`] come from: `update.public_key`,
    /// `update.public_keys` (the file), or `built-in channel`.
    pub keys_from: &'static str,
    /// Maintenance window, restaurant local time: (start, end) as minutes after midnight.
    pub window: (u32, u32),
    /// Staged rollout percentage, 0–100.
    pub rollout_percent: u8,
    /// Time between two update checks (± 10 % jitter); `check_interval_s`,
    /// a project extension, default 6 h (docs/decisions.md).
    pub check_interval: Duration,
    /// How long a newly installed version runs before it confirms its
    /// health; `confirm_after_s`, a project extension, default 30 s, below
    /// the 120 s rollback deadline.
    pub confirm_after: Duration,
    /// An order open for longer than this (since the agent stored its
    /// first event, box clock) no longer holds updates back
    /// (`open_order_max_h`, 1–720 h, default 16 h: a service day).
    pub open_order_max: Duration,
}

/// `[delivery]`, validated.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Orders delivered concurrently.
    pub concurrency: usize,
    /// Cap of the exponential retry backoff.
    pub retry_max: Duration,
    /// Delay between tries while Zenchef refuses the credentials.
    pub credentials_retry: Duration,
    /// Timeout of one HTTP call.
    pub http_timeout: Duration,
}

/// A `MAJOR.MINOR.PATCH` version (Cashpad `app` TXT key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.len() != 3 {
            return Err(format!("`{s}` is not MAJOR.MINOR.PATCH"));
        }
        let n = |p: &str| {
            p.parse::<u32>()
                .map_err(|_| format!("`{s}` is not MAJOR.MINOR.PATCH"))
        };
        Ok(Version(n(parts[0])?, n(parts[1])?, n(parts[2])?))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Where the configuration file is: `--config`, else `ZENCHEF_EDGE_CONFIG`,
/// else [`DEFAULT_CONFIG_PATH`] (clap resolves the first two).
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Reads, parses and validates the file.
///
/// Errors: [`ConfigError`] naming the key (for a TOML syntax or type error,
/// the key of the line the error is on, else `(syntax)`; `(file)` for an
/// unreadable file), with the line number.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        key: "(file)".into(),
        problem: format!("cannot read the file: {e}"),
        file: path.to_path_buf(),
    })?;
    parse(&text, path)
}

/// The dotted name (`store.quiet_min`) of the key on the line of byte
/// `at` of `text`: the name left of that line's `=`, under the last
/// `[table]` header above it; the header itself for an error on a header
/// line. `None` when the line names no key (a syntax error elsewhere).
fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let header = |l: &str| {
        // `[store]  # comment` is a header too.
        let l = l.split('#').next().unwrap_or("").trim();
        (l.starts_with('[') && l.ends_with(']'))
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    if let Some(h) = header(line) {
        return Some(h).filter(|h| !h.is_empty());
    }
    let name = line.split_once('=')?.0.trim().trim_matches('"').trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let section = text[..start].lines().rev().find_map(header);
    Some(match section {
        Some(s) if !s.is_empty() => format!("{s}.{name}"),
        _ => name.to_string(),
    })
}

/// Parses and validates TOML text; `path` is only used in messages.
///
/// Errors: [`ConfigError`]; see [`load`].
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let syntax = |e: toml::de::Error| {
        let msg = e.message().to_string();
        // serde's unknown-field message names the key; keep it first.
        let key = unknown_key(&msg)
            .or_else(|| e.span().and_then(|s| key_at(text, s.start)))
            .unwrap_or_else(|| "(syntax)".into());
        let place = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" at line {line}")
            })
            .unwrap_or_default();
        ConfigError {
            key,
            problem: format!("{msg}{place}"),
            file: path.to_path_buf(),
        }
    };
    let err = |key: &str, problem: String| ConfigError {
        key: key.to_string(),
        problem,
        file: path.to_path_buf(),
    };
    let mut table: toml::Table = toml::from_str(text).map_err(syntax)?;
    let version = match table.get("config_version") {
        None => 1,
        Some(toml::Value::Integer(n)) if *n >= 1 => *n,
        Some(_) => {
            return Err(err(
                "config_version",
                "must be a whole number ≥ 1 (the version of this file's format)".into(),
            ));
        }
    };
    let mut warnings = Vec::new();
    let raw: RawConfig = if version > CONFIG_VERSION {
        // A newer release's file: what this binary does not know is
        // ignored, with a warning; what it knows is validated as usual.
        for key in prune_unknown(&mut table) {
            warnings.push(format!(
                "{key}: not known to this release, ignored (the file is written for \
                 config_version {version}; this release reads config_version {CONFIG_VERSION}: \
                 a newer release wrote it, or the file was prepared for one)"
            ));
        }
        table.try_into().map_err(|e: toml::de::Error| {
            err(
                &unknown_key(e.message()).unwrap_or_else(|| "(syntax)".into()),
                e.message().to_string(),
            )
        })?
    } else {
        for (key, since) in INTRODUCED {
            if *since > version && lookup(&table, key) {
                return Err(err(
                    key,
                    format!(
                        "introduced in config_version {since}: add `config_version = {since}` as \
                         the first line of the file (this file says {version}); an older \
                         release then ignores the key after a rollback instead of refusing \
                         the whole file"
                    ),
                ));
            }
        }
        // From the text, so that an unknown key's error names its line.
        toml::from_str(text).map_err(syntax)?
    };
    let mut config = raw.validate(path)?;
    config.config_version = version;
    // The file's warnings first, then those of its values.
    warnings.append(&mut config.warnings);
    config.warnings = warnings;
    Ok(config)
}

/// Is `section.key` (or a top-level `key`) present in the table?
fn lookup(table: &toml::Table, dotted: &str) -> bool {
    match dotted.split_once('.') {
        Some((section, key)) => table
            .get(section)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key(key)),
        None => table.contains_key(dotted),
    }
}

/// Removes from `table` every section and key this binary does not know;
/// answers their dotted names, sorted.
fn prune_unknown(table: &mut toml::Table) -> Vec<String> {
    let mut gone: Vec<String> = Vec::new();
    let sections = fields_of::<RawConfig>();
    table.retain(|name, value| {
        if !sections.contains(&name) {
            gone.push(name.to_string());
            return false;
        }
        if let (Some(known), Some(t)) = (section_fields(name), value.as_table_mut()) {
            t.retain(|k, _| {
                let keep = known.contains(&k);
                if !keep {
                    gone.push(format!("{name}.{k}"));
                }
                keep
            });
        }
        true
    });
    gone.sort();
    gone
}

/// The keys a section of the file may hold (from its `Raw*` type).
fn section_fields(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "restaurant" => fields_of::<RawRestaurant>(),
        "cashpad" => fields_of::<RawCashpad>(),
        "zenchef" => fields_of::<RawZenchef>(),
        "zenchef_pay" => fields_of::<RawPay>(),
        "store" => fields_of::<RawStore>(),
        "update" => fields_of::<RawUpdate>(),
        "http" => fields_of::<RawHttp>(),
        "delivery" => fields_of::<RawDelivery>(),
        "log" => fields_of::<RawLog>(),
        _ => return None,
    })
}

/// The field names serde's derive gives a struct (what
/// `deny_unknown_fields` accepts), read by a deserializer that only
/// records them.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("fields only"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields only"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut out));
    out
}

fn unknown_key(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

impl RawConfig {
    /// Fills defaults and rejects bad values (docs/protocol/agent-interface.md). `doctor`
    /// and provisioning reuse it.
    pub fn validate(self, file: &Path) -> Result<Config, ConfigError> {
        let err = |key: &str, problem: String| ConfigError {
            key: key.to_string(),
            problem,
            file: file.to_path_buf(),
        };
        // Values used other than written (above a bound), said at start.
        let mut warnings = Vec::new();
        let tz_name = self
            .restaurant
            .timezone
            .unwrap_or_else(|| "Europe/Paris".into());
        let timezone: chrono_tz::Tz = tz_name.parse().map_err(|_| {
            err(
                "restaurant.timezone",
                format!("`{tz_name}` is not an IANA time zone name"),
            )
        })?;
        let currency = self.restaurant.currency.unwrap_or_else(|| "EUR".into());
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(err(
                "restaurant.currency",
                format!("`{currency}` is not an ISO 4217 code such as EUR"),
            ));
        }

        // [cashpad]
        let c = self.cashpad;
        let token = required_secret(c.token, "cashpad.token", &err)?;
        let installation_id = match c.installation_id {
            Some(s) if s.trim().is_empty() => {
                return Err(err(
                    "cashpad.installation_id",
                    "empty (remove the key to accept the only POS on the LAN)".into(),
                ));
            }
            Some(s) => {
                check_iid(&s).map_err(|m| err("cashpad.installation_id", m))?;
                Some(s)
            }
            None => None,
        };
        let min_version_s = c
            .min_version
            .unwrap_or_else(|| DEFAULT_MIN_VERSION.to_string());
        let min_version: Version = min_version_s
            .parse()
            .map_err(|m| err("cashpad.min_version", m))?;
        let static_addr = match (c.host, c.port) {
            (Some(h), p) if !h.trim().is_empty() => Some((h, p.unwrap_or(DEFAULT_MQTT_PORT))),
            (Some(_), _) => return Err(err("cashpad.host", "empty".into())),
            (None, Some(_)) => {
                return Err(err(
                    "cashpad.port",
                    "set without cashpad.host (the port alone cannot replace discovery)".into(),
                ));
            }
            (None, None) => None,
        };
        if c.port == Some(0) {
            return Err(err("cashpad.port", "0 is not a valid port".into()));
        }
        let mdns_port = c.mdns_port.unwrap_or(DEFAULT_MDNS_PORT);
        if mdns_port == 0 {
            return Err(err("cashpad.mdns_port", "0 is not a valid port".into()));
        }
        let cashpad = CashpadConfig {
            token,
            installation_id,
            min_version,
            static_addr,
            mdns_port,
            interfaces: c.interfaces.unwrap_or_default(),
        };

        // [zenchef]
        let z = self.zenchef;
        let restaurant_id = match z.restaurant_id {
            None => return Err(err("zenchef.restaurant_id", "missing".into())),
            Some(s) if s.trim().is_empty() => {
                return Err(err("zenchef.restaurant_id", "empty".into()));
            }
            Some(s) => s,
        };
        let ztoken = required_secret(z.token, "zenchef.token", &err)?;
        let base_url = check_base_url(
            z.base_url
                .unwrap_or_else(|| DEFAULT_ZENCHEF_BASE_URL.to_string()),
        )
        .map_err(|m| err("zenchef.base_url", m))?;
        let poll = z.poll_interval_s.unwrap_or(DEFAULT_POLL_INTERVAL_S);
        let poll = bounded(
            &err,
            &mut warnings,
            "zenchef.poll_interval_s",
            poll,
            1,
            3600,
        )?;
        let sync_days = z.sync_days.unwrap_or(DEFAULT_SYNC_DAYS);
        if !(1..=14).contains(&sync_days) {
            return Err(err(
                "zenchef.sync_days",
                format!("{sync_days} is outside 1..=14"),
            ));
        }
        let before = z.match_before_min.unwrap_or(DEFAULT_MATCH_BEFORE_MIN);
        let after = z.match_after_min.unwrap_or(DEFAULT_MATCH_AFTER_MIN);
        if !(0..=720).contains(&before) {
            return Err(err(
                "zenchef.match_before_min",
                format!("{before} is outside 0..=720"),
            ));
        }
        if !(0..=720).contains(&after) {
            return Err(err(
                "zenchef.match_after_min",
                format!("{after} is outside 0..=720"),
            ));
        }
        let publisher_name = z
            .publisher_name
            .unwrap_or_else(|| DEFAULT_PUBLISHER_NAME.to_string());
        if publisher_name.trim().is_empty() {
            return Err(err("zenchef.publisher_name", "empty".into()));
        }
        let zenchef = ZenchefConfig {
            restaurant_id,
            token: ztoken,
            base_url,
            publisher_name,
            poll_interval: Duration::from_secs(poll),
            sync_days,
            match_before_min: before,
            match_after_min: after,
        };

        // [zenchef_pay]
        let p = self.zenchef_pay;
        let pay_url = check_base_url(p.base_url.unwrap_or_else(|| DEFAULT_PAY_BASE_URL.into()))
            .map_err(|m| err("zenchef_pay.base_url", m))?;
        let pay = if p.enabled.unwrap_or(false) {
            let resend_s = p.settle_resend_s.unwrap_or(DEFAULT_SETTLE_RESEND_S);
            if !(1..=3600).contains(&resend_s) {
                return Err(err(
                    "zenchef_pay.settle_resend_s",
                    format!("{resend_s} is outside 1..=3600"),
                ));
            }
            let resends = p.settle_resends.unwrap_or(DEFAULT_SETTLE_RESENDS);
            if resends > 100 {
                return Err(err(
                    "zenchef_pay.settle_resends",
                    format!("{resends} is above 100"),
                ));
            }
            Some(PayConfig {
                base_url: pay_url,
                token: required_secret(p.token, "zenchef_pay.token", &err)?,
                settle_resend: Duration::from_secs(resend_s),
                settle_resends: resends,
            })
        } else {
            None
        };

        // [store]
        let store_path = self
            .store
            .path
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
        if store_path.as_os_str().is_empty() {
            return Err(err("store.path", "empty".into()));
        }
        let keep_days = self.store.keep_days.unwrap_or(DEFAULT_KEEP_DAYS);
        if !(7..=3650).contains(&keep_days) {
            return Err(err(
                "store.keep_days",
                format!("{keep_days} is outside 7..=3650"),
            ));
        }
        let interval_s = self
            .store
            .retention_interval_s
            .unwrap_or(DEFAULT_RETENTION_INTERVAL_S);
        let interval_s = bounded(
            &err,
            &mut warnings,
            "store.retention_interval_s",
            interval_s,
            1,
            86_400,
        )?;
        let quiet_min = self.store.quiet_min.unwrap_or(DEFAULT_QUIET_MIN);
        let quiet_min = bounded(&err, &mut warnings, "store.quiet_min", quiet_min, 1, 1440)?;
        let retention = RetentionConfig {
            keep_days,
            interval: Duration::from_secs(interval_s),
            quiet: Duration::from_secs(quiet_min * 60),
        };

        // [update]
        let u = self.update;
        let window_s = u.window.unwrap_or_else(|| DEFAULT_UPDATE_WINDOW.into());
        let window = parse_window(&window_s).map_err(|m| err("update.window", m))?;
        let rollout_percent = u.rollout_percent.unwrap_or(100);
        if rollout_percent > 100 {
            return Err(err(
                "update.rollout_percent",
                format!("{rollout_percent} is above 100"),
            ));
        }
        let channel = built_in_channel();
        let manifest_url = match u.manifest_url {
            Some(m) if !m.trim().is_empty() => {
                Some(check_url(m).map_err(|e| err("update.manifest_url", e))?)
            }
            // Present and empty: no checks at all.
            Some(_) => None,
            None => Some(channel.manifest_url.clone()).filter(|m| !m.is_empty()),
        };
        let (public_keys, keys_from) = match (u.public_key, u.public_keys) {
            (None, None) => (channel.public_keys.clone(), "built-in channel"),
            (one, list) => {
                let from = if list.is_some() && one.is_none() {
                    "update.public_keys"
                } else {
                    "update.public_key"
                };
                let keys: Vec<String> = one
                    .into_iter()
                    .chain(list.unwrap_or_default())
                    .filter(|k| !k.trim().is_empty())
                    .collect();
                (keys, from)
            }
        };
        let open_order_max_h = u.open_order_max_h.unwrap_or(DEFAULT_OPEN_ORDER_MAX_H);
        if !(1..=720).contains(&open_order_max_h) {
            return Err(err(
                "update.open_order_max_h",
                format!("{open_order_max_h} is outside 1..=720"),
            ));
        }
        let check_interval_s = u
            .check_interval_s
            .unwrap_or(DEFAULT_UPDATE_CHECK_INTERVAL_S);
        let check_interval_s = bounded(
            &err,
            &mut warnings,
            "update.check_interval_s",
            check_interval_s,
            1,
            604_800,
        )?;
        let confirm_after_s = u.confirm_after_s.unwrap_or(DEFAULT_UPDATE_CONFIRM_AFTER_S);
        if !(1..=100).contains(&confirm_after_s) {
            return Err(err(
                "update.confirm_after_s",
                format!("{confirm_after_s} is outside 1..=100 (the rollback deadline is 120 s)"),
            ));
        }
        let update = UpdateConfig {
            enabled: u.enabled.unwrap_or(true),
            manifest_url,
            public_keys,
            keys_from,
            window,
            rollout_percent,
            check_interval: Duration::from_secs(check_interval_s),
            confirm_after: Duration::from_secs(confirm_after_s),
            open_order_max: Duration::from_secs(open_order_max_h * 3600),
        };

        // [http]
        let listen = self
            .http
            .listen
            .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.into());
        let history_sample_s = self
            .http
            .history_sample_s
            .unwrap_or(DEFAULT_HISTORY_SAMPLE_S);
        if !(1..=3600).contains(&history_sample_s) {
            return Err(err(
                "http.history_sample_s",
                format!("{history_sample_s} is outside 1..=3600"),
            ));
        }
        let http_listen = if listen.trim().is_empty() {
            None
        } else {
            Some(listen.parse::<SocketAddr>().map_err(|_| {
                err(
                    "http.listen",
                    format!("`{listen}` is not an address:port such as 127.0.0.1:8780"),
                )
            })?)
        };

        // [delivery]
        let d = self.delivery;
        let concurrency = d.concurrency.unwrap_or(DEFAULT_DELIVERY_CONCURRENCY);
        if !(1..=256).contains(&concurrency) {
            return Err(err(
                "delivery.concurrency",
                format!("{concurrency} is outside 1..=256"),
            ));
        }
        let retry_max_s = d.retry_max_s.unwrap_or(DEFAULT_RETRY_MAX_S);
        let retry_max_s = bounded(
            &err,
            &mut warnings,
            "delivery.retry_max_s",
            retry_max_s,
            1,
            3600,
        )?;
        let cred_s = d.credentials_retry_s.unwrap_or(DEFAULT_CREDENTIALS_RETRY_S);
        let cred_s = bounded(
            &err,
            &mut warnings,
            "delivery.credentials_retry_s",
            cred_s,
            1,
            86_400,
        )?;
        let timeout_s = d.http_timeout_s.unwrap_or(DEFAULT_HTTP_TIMEOUT_S);
        let timeout_s = bounded(
            &err,
            &mut warnings,
            "delivery.http_timeout_s",
            timeout_s,
            1,
            600,
        )?;
        let delivery = DeliveryConfig {
            concurrency,
            retry_max: Duration::from_secs(retry_max_s),
            credentials_retry: Duration::from_secs(cred_s),
            http_timeout: Duration::from_secs(timeout_s),
        };

        Ok(Config {
            file: file.to_path_buf(),
            timezone,
            currency,
            cashpad,
            zenchef,
            pay,
            store_path,
            retention,
            update,
            http_listen,
            history_sample: Duration::from_secs(history_sample_s),
            delivery,
            log_filter: self.log.filter.unwrap_or_else(|| "info".into()),
            config_version: self.config_version.unwrap_or(1),
            warnings,
        })
    }
}

/// A whole number of seconds or minutes, at least `lo`, at most `hi`: the
/// upper bound keeps every duration far from overflowing the clocks it is
/// added to (`quiet_min * 60`, `Instant + interval`). A value above it is
/// used as `hi`, with a warning in `warnings`, not refused: these keys only
/// had a lower bound before, and a file a box already runs with must not
/// stop the agent after an update (exit 78 is not restarted).
///
/// Errors: "must be ≥ lo" for `key`.
fn bounded(
    err: &dyn Fn(&str, String) -> ConfigError,
    warnings: &mut Vec<String>,
    key: &str,
    value: u64,
    lo: u64,
    hi: u64,
) -> Result<u64, ConfigError> {
    if value < lo {
        return Err(err(key, format!("must be ≥ {lo}")));
    }
    if value > hi {
        warnings.push(format!("{key}: {value} is above {hi}; {hi} is used"));
        return Ok(hi);
    }
    Ok(value)
}

fn required_secret(
    value: Option<Secret>,
    key: &str,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Secret, ConfigError> {
    match value {
        None => Err(err(key, "missing".into())),
        Some(s) if s.is_blank() => Err(err(key, "empty".into())),
        Some(s) => Ok(s),
    }
}

/// Accepts `https://…`, and `http://…` only towards a loopback host
/// (127.0.0.0/8, `::1`, `localhost`), for a URL that is fetched as is (the
/// update manifest, an archive): a query is allowed. Parsed with the `url`
/// crate, the WHATWG parser reqwest itself uses, so the host checked here is
/// the host connected to (`http://evil.example?@127.0.0.1/` is
/// `evil.example`; `http://0x7f.1/` is `127.0.0.1`).
///
/// Answers the URL as the parser serialises it (scheme and host in lower
/// case, IPv4 written out), without a trailing `/` when it has no query or
/// fragment.
///
/// Errors: the sentence for the configuration error (the URL quoted with
/// any user name and password masked as `***`): not a URL, no host, user name or password in it,
/// a scheme other than http(s), `http://` towards a non-loopback host.
pub fn check_url(url: String) -> Result<String, String> {
    checked_url(&url, false)
}

/// [`check_url`] for a base URL, to which API paths are appended
/// (`zenchef.base_url`, `zenchef_pay.base_url`): a query (`?`) or a
/// fragment (`#`) is refused too, since a path appended after it would not
/// be a path.
///
/// Errors: as [`check_url`], plus a query or a fragment.
pub fn check_base_url(url: String) -> Result<String, String> {
    checked_url(&url, true)
}

fn checked_url(raw: &str, base: bool) -> Result<String, String> {
    let raw = raw.trim();
    let mut u = url::Url::parse(raw).map_err(|e| match e {
        url::ParseError::EmptyHost => format!("`{raw}` has no host"),
        url::ParseError::RelativeUrlWithoutBase => format!("`{raw}` is not an http(s) URL"),
        e => format!("`{raw}` is not a valid URL: {e}"),
    })?;
    // A user name may be a token too: neither is ever shown.
    let shown = || {
        let mut m = u.clone();
        if !m.username().is_empty() {
            let _ = m.set_username("***");
        }
        if m.password().is_some() {
            let _ = m.set_password(Some("***"));
        }
        m.to_string()
    };
    let scheme = u.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "`{}`: scheme `{scheme}` is not http or https",
            shown()
        ));
    }
    let Some(host) = u.host() else {
        return Err(format!("`{}` has no host", shown()));
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "`{}`: a user name or password in the URL is not accepted (credentials go in the token keys)",
            shown()
        ));
    }
    if base && u.query().is_some() {
        return Err(format!(
            "`{}`: a base URL cannot have a query (`?`): API paths are appended to it",
            shown()
        ));
    }
    if base && u.fragment().is_some() {
        return Err(format!(
            "`{}`: a base URL cannot have a fragment (`#`): API paths are appended to it",
            shown()
        ));
    }
    let loopback = match host {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    if scheme == "http" && !loopback {
        return Err(format!(
            "`{}`: http:// is only accepted for a loopback host; use https://",
            shown()
        ));
    }
    if u.query().is_none() && u.fragment().is_none() {
        // "https://h/api/v1/" and "https://h/api/v1" are the same base.
        let path = u.path().trim_end_matches('/').to_string();
        u.set_path(&path);
        return Ok(u.as_str().trim_end_matches('/').to_string());
    }
    Ok(u.to_string())
}

/// The characters an Installation ID may have: `[A-Za-z0-9._-]`, 1 to
/// [`IID_MAX_LEN`] of them. The iid comes from the LAN (mDNS TXT `iid`) or
/// from `cashpad.installation_id`, and is used in MQTT topics
/// (`cashpad/<iid>/…`), in the MQTT client id and in Zenchef Pay URL paths.
/// `.` and `..` alone are refused too.
pub const IID_CHARSET: &str = "[A-Za-z0-9._-]{1,64}";
/// Longest accepted Installation ID, in bytes.
pub const IID_MAX_LEN: usize = 64;

/// Checks an Installation ID against [`IID_CHARSET`] (`.` and `..` are
/// refused too: a path segment of their own would change the URL's level).
///
/// Errors: the sentence naming the value, escaped (control characters,
/// quotes and non-ASCII written as Rust escapes; cut after 80 characters),
/// e.g. ``"CP/1#" is not an Installation ID: …``.
pub fn check_iid(iid: &str) -> Result<(), String> {
    let ok = !iid.is_empty()
        && iid != "."
        && iid != ".."
        && iid.len() <= IID_MAX_LEN
        && iid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not an Installation ID: it must match {IID_CHARSET} (and not be `.` or `..`)",
            escaped(iid)
        ))
    }
}

/// A value from outside (the LAN, a file) for a log line or a message:
/// quoted, with control characters, quotes, backslashes and non-ASCII
/// escaped, and cut after 80 characters (`…` then).
pub fn escaped(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut out = String::with_capacity(cut.len() + 2);
    out.push('"');
    for c in cut.chars() {
        out.extend(c.escape_default());
    }
    out.push('"');
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// Parses `HH:MM-HH:MM` into minutes after midnight (the window may wrap
/// midnight, e.g. `23:00-01:00`).
pub fn parse_window(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not HH:MM-HH:MM");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let hm = |t: &str| -> Result<u32, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let h: u32 = h.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (hm(a)?, hm(b)?);
    if start == end {
        return Err(format!("`{s}` is an empty window"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[cashpad]
token = "cp-secret"
[zenchef]
restaurant_id = "654321"
token = "zc-secret"
"#;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/zenchef-edge/agent.toml"))
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let c = p(MINIMAL).unwrap();
        assert_eq!(c.timezone, chrono_tz::Europe::Paris);
        assert_eq!(c.currency, "EUR");
        assert_eq!(c.cashpad.min_version, Version(2, 0, 16));
        assert_eq!(c.cashpad.mdns_port, 5353);
        assert_eq!(c.zenchef.base_url, "https://api.zenchef.com/api/v1");
        assert_eq!(c.zenchef.poll_interval, Duration::from_secs(30));
        assert_eq!(c.zenchef.sync_days, 2);
        assert_eq!(
            (c.zenchef.match_before_min, c.zenchef.match_after_min),
            (90, 60)
        );
        assert!(c.pay.is_none());
        assert_eq!(
            c.store_path,
            PathBuf::from("/var/lib/zenchef-edge/agent.db")
        );
        assert_eq!(c.update.window, (180, 300));
        assert_eq!(c.http_listen, Some("127.0.0.1:8780".parse().unwrap()));
    }

    /// Each bad fixture and the exact line it must produce.
    #[test]
    fn bad_values_name_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[zenchef]\ntoken = \"t\"\n[cashpad]\ntoken=\"x\"\n",
                "config error: zenchef.restaurant_id: missing (in /etc/zenchef-edge/agent.toml)",
            ),
            (
                "[zenchef]\nrestaurant_id = \"1\"\n[cashpad]\ntoken=\"x\"\n",
                "config error: zenchef.token: missing (in /etc/zenchef-edge/agent.toml)",
            ),
            (
                "[zenchef]\nrestaurant_id = \"1\"\ntoken=\"t\"\n[cashpad]\n",
                "config error: cashpad.token: missing (in /etc/zenchef-edge/agent.toml)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(p(text).unwrap_err().to_string(), *want, "for {text}");
        }
    }

    #[test]
    fn the_history_sample_is_a_minute_unless_set_within_an_hour() {
        assert_eq!(p(MINIMAL).unwrap().history_sample, Duration::from_secs(60));
        let c = p(&format!("{MINIMAL}[http]\nhistory_sample_s = 2\n")).unwrap();
        assert_eq!(c.history_sample, Duration::from_secs(2));
        for bad in [0, 3601] {
            let e = p(&format!("{MINIMAL}[http]\nhistory_sample_s = {bad}\n")).unwrap_err();
            assert_eq!(e.key, "http.history_sample_s", "{e}");
        }
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let e = p(&format!("{MINIMAL}poll_intervall_s = 5\n")).unwrap_err();
        assert_eq!(e.key, "poll_intervall_s");
        assert!(e.to_string().contains("unknown field"), "{e}");
        assert!(e.to_string().contains("line 7"), "{e}");
    }

    /// Tricky URLs and what the check makes of them: `Ok(normalised)` or
    /// `Err(part of the message)`.
    #[test]
    fn urls_are_parsed_like_reqwest_parses_them() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "http://127.0.0.1:9000/api/v1",
                Ok("http://127.0.0.1:9000/api/v1"),
            ),
            (
                "http://127.0.0.1:9000/api/v1/",
                Ok("http://127.0.0.1:9000/api/v1"),
            ),
            ("http://localhost/api", Ok("http://localhost/api")),
            ("http://LOCALHOST:8080/", Ok("http://localhost:8080")),
            ("http://[::1]:80/x", Ok("http://[::1]/x")),
            ("http://127.8.9.10/x", Ok("http://127.8.9.10/x")),
            ("HTTP://127.0.0.1/api", Ok("http://127.0.0.1/api")),
            // WHATWG: 0x7f.1 is 127.0.0.1, for reqwest too.
            ("http://0x7f.1/", Ok("http://127.0.0.1")),
            (
                "https://api.zenchef.com/api/v1/",
                Ok("https://api.zenchef.com/api/v1"),
            ),
            ("https://evil.example/x", Ok("https://evil.example/x")),
            ("https://192.168.1.2:8443", Ok("https://192.168.1.2:8443")),
            ("  https://api.zenchef.com  ", Ok("https://api.zenchef.com")),
            // The query holds "@127.0.0.1": the host is evil.example.
            (
                "http://evil.example?@127.0.0.1/api/v1",
                Err("`http://evil.example/?@127.0.0.1/api/v1`: a base URL cannot have a query"),
            ),
            (
                "http://evil.example#@127.0.0.1/api/v1",
                Err("a base URL cannot have a fragment"),
            ),
            (
                "http://127.0.0.1/api?x=1",
                Err("a base URL cannot have a query (`?`)"),
            ),
            (
                "https://api.zenchef.com/api/v1#frag",
                Err("a base URL cannot have a fragment (`#`)"),
            ),
            (
                "http://127.0.0.1@evil.example/api",
                Err("a user name or password in the URL is not accepted"),
            ),
            (
                "http://u:s3cret@127.0.0.1/api",
                Err("`http://***:***@127.0.0.1/api`: a user name or password"),
            ),
            (
                "https://s3cret@api.zenchef.com/api/v1",
                Err("`https://***@api.zenchef.com/api/v1`: a user name or password"),
            ),
            (
                "http://localhost.evil.example/api",
                Err("http:// is only accepted for a loopback host"),
            ),
            (
                "http://127.0.0.1.evil.example/api",
                Err("http:// is only accepted for a loopback host"),
            ),
            (
                "http://[::2]/api",
                Err("http:// is only accepted for a loopback host"),
            ),
            (
                "http://192.168.1.2/api",
                Err(
                    "`http://192.168.1.2/api`: http:// is only accepted for a loopback host; use https://",
                ),
            ),
            (
                "http://api.zenchef.com/api/v1",
                Err("http:// is only accepted for a loopback host"),
            ),
            (
                "http://127.0.0.1:0x50/api",
                Err("`http://127.0.0.1:0x50/api` is not a valid URL: invalid port number"),
            ),
            ("http://", Err("`http://` has no host")),
            ("https://:443/api", Err("`https://:443/api` has no host")),
            (
                "ftp://127.0.0.1/x",
                Err("`ftp://127.0.0.1/x`: scheme `ftp` is not http or https"),
            ),
            (
                "file:///etc/passwd",
                Err("scheme `file` is not http or https"),
            ),
            (
                "api.zenchef.com",
                Err("`api.zenchef.com` is not an http(s) URL"),
            ),
            ("", Err("is not an http(s) URL")),
        ];
        for (url, want) in cases {
            let got = check_base_url(url.to_string());
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{url}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{url}: {g:?} should contain {w:?}"),
                _ => panic!("{url}: got {got:?}, want {want:?}"),
            }
            assert!(!format!("{got:?}").contains("s3cret"), "{url}: {got:?}");
        }
        // A URL fetched as is (manifest, archive) may have a query.
        assert_eq!(
            check_url("https://cdn.example/r/a.tar.gz?sig=abc".into()).unwrap(),
            "https://cdn.example/r/a.tar.gz?sig=abc"
        );
        assert!(check_url("http://evil.example?@127.0.0.1/m.json".into()).is_err());
        // Through the file: the key, the problem and the file.
        let text = MINIMAL.replace(
            "token = \"zc-secret\"",
            "token = \"zc-secret\"\nbase_url = \"http://evil.example?@127.0.0.1/api/v1\"",
        );
        let e = p(&text).unwrap_err();
        assert_eq!(e.key, "zenchef.base_url");
        assert_eq!(
            e.to_string(),
            "config error: zenchef.base_url: `http://evil.example/?@127.0.0.1/api/v1`: a base URL \
             cannot have a query (`?`): API paths are appended to it (in /etc/zenchef-edge/agent.toml)"
        );
        let e = p(&format!(
            "{MINIMAL}[zenchef_pay]\nbase_url = \"http://localhost.evil.example/pos/v1\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "zenchef_pay.base_url");
        let e = p(&format!(
            "{MINIMAL}[update]\nmanifest_url = \"ftp://x/m.json\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "update.manifest_url");
    }

    #[test]
    fn installation_ids_outside_the_character_set_are_refused() {
        for ok in ["CP-4F2A91", "a", "x.y_z-1", &"A".repeat(64)] {
            assert_eq!(check_iid(ok), Ok(()), "{ok}");
        }
        for (bad, shown) in [
            ("CP/1", "\"CP/1\""),
            ("CP 1", "\"CP 1\""),
            ("CP#1", "\"CP#1\""),
            ("CP+", "\"CP+\""),
            ("../x", "\"../x\""),
            ("CP\n1", "\"CP\\n1\""),
            ("café", "\"caf\\u{e9}\""),
            ("a\"b", "\"a\\\"b\""),
            ("..", "\"..\""),
            ("", "\"\""),
        ] {
            let e = check_iid(bad).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "{shown} is not an Installation ID: it must match [A-Za-z0-9._-]{{1,64}} (and \
                     not be `.` or `..`)"
                ),
                "{bad:?}"
            );
        }
        let long = "A".repeat(65);
        assert!(check_iid(&long).is_err());
        let e = check_iid(&"B".repeat(200)).unwrap_err();
        assert!(e.starts_with(&format!("\"{}\"…", "B".repeat(80))), "{e}");
        let e = p(&MINIMAL.replace(
            "token = \"cp-secret\"",
            "token = \"cp-secret\"\ninstallation_id = \"CP/../4F2A91\"",
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config error: cashpad.installation_id: \"CP/../4F2A91\" is not an Installation ID: it \
             must match [A-Za-z0-9._-]{1,64} (and not be `.` or `..`) (in /etc/zenchef-edge/agent.toml)"
        );
        let c = p(&MINIMAL.replace(
            "token = \"cp-secret\"",
            "token = \"cp-secret\"\ninstallation_id = \"CP-4F2A91\"",
        ))
        .unwrap();
        assert_eq!(c.cashpad.installation_id.as_deref(), Some("CP-4F2A91"));
    }

    #[test]
    fn secrets_never_print() {
        let c = p(MINIMAL).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("cp-secret") && !dbg.contains("zc-secret"),
            "{dbg}"
        );
        assert_eq!(c.zenchef.token.to_string(), "***");
        assert_eq!(c.zenchef.token.expose(), "zc-secret");
    }

    #[test]
    fn pay_token_required_when_enabled() {
        let e = p(&format!("{MINIMAL}[zenchef_pay]\nenabled = true\n")).unwrap_err();
        assert_eq!(e.key, "zenchef_pay.token");
    }

    #[test]
    fn update_extensions_are_validated() {
        let c = p(MINIMAL).unwrap();
        assert_eq!(c.update.check_interval, Duration::from_secs(6 * 3600));
        assert_eq!(c.update.confirm_after, Duration::from_secs(30));
        let e = p(&format!("{MINIMAL}[update]\ncheck_interval_s = 0\n")).unwrap_err();
        assert_eq!(e.key, "update.check_interval_s");
        let e = p(&format!("{MINIMAL}[update]\nconfirm_after_s = 120\n")).unwrap_err();
        assert_eq!(e.key, "update.confirm_after_s");
        assert!(e.problem.contains("rollback deadline"), "{e}");
    }

    #[test]
    fn the_built_in_channel_is_usable() {
        let ch = built_in_channel();
        assert!(
            ch.manifest_url.starts_with("https://"),
            "{}",
            ch.manifest_url
        );
        assert_eq!(check_url(ch.manifest_url.clone()).unwrap(), ch.manifest_url);
        assert!(!ch.public_keys.is_empty());
        crate::update::verify::PublicKey::from_list(&ch.public_keys, "built-in channel").unwrap();
        // A box provisioned with its restaurant's settings only follows it.
        let c = p(MINIMAL).unwrap();
        assert!(c.update.enabled);
        assert_eq!(
            c.update.manifest_url.as_deref(),
            Some(ch.manifest_url.as_str())
        );
        assert_eq!(c.update.public_keys, ch.public_keys);
        assert_eq!(c.update.keys_from, "built-in channel");
        assert_eq!(crate::update::signing_key_problem(&c.update), None);
    }

    #[test]
    fn a_private_channel_and_several_keys_override_the_built_in_one() {
        let k1 = "s6JAKxkHvDqoI4PLHwu0Za2R1kTwhifMmYyCOcYREo0=";
        let k2 = "F+ooljIrKlmjQEgbOtXEO0cuPTtz7VRol1S2CCWdajQ=";
        let c = p(&format!(
            "config_version = 2\n{MINIMAL}[update]\nmanifest_url = \"https://r.example/m.json\"\n\
             public_keys = [\"{k1}\", \"{k2}\"]\n"
        ))
        .unwrap();
        assert_eq!(
            c.update.manifest_url.as_deref(),
            Some("https://r.example/m.json")
        );
        assert_eq!(c.update.public_keys, vec![k1.to_string(), k2.to_string()]);
        assert_eq!(c.update.keys_from, "update.public_keys");
        assert_eq!(
            crate::update::verify::PublicKey::from_config(&c.update)
                .unwrap()
                .len(),
            2
        );
        // One mistyped key of the list is said, with its place.
        let c = p(&format!(
            "config_version = 2\n{MINIMAL}[update]\npublic_keys = [\"{k1}\", \"nope!\"]\n"
        ))
        .unwrap();
        let e = crate::update::verify::PublicKey::from_config(&c.update).unwrap_err();
        assert_eq!(
            e.to_string(),
            "update.public_key: key 2 of update.public_keys: not base64; refusing to install \
             anything unverified"
        );
        // Empty values are explicit: no checks, or every release refused.
        let c = p(&format!(
            "{MINIMAL}[update]\nmanifest_url = \"\"\npublic_key = \"\"\n"
        ))
        .unwrap();
        assert_eq!(c.update.manifest_url, None);
        assert!(c.update.public_keys.is_empty());
        let c = p(&format!("{MINIMAL}[update]\npublic_key = \"\"\n")).unwrap();
        assert_eq!(
            crate::update::signing_key_problem(&c.update).as_deref(),
            Some("updates refused: no signing key (update.public_key: missing or empty)")
        );
    }

    #[test]
    fn keys_of_a_later_format_version_need_that_version() {
        let e = p(&format!("{MINIMAL}[store]\nkeep_days = 30\n")).unwrap_err();
        assert_eq!(e.key, "store.keep_days");
        assert!(
            e.problem
                .starts_with("introduced in config_version 2: add `config_version = 2`"),
            "{e}"
        );
        let c = p(&format!(
            "config_version = 2\n{MINIMAL}[store]\nkeep_days = 30\n"
        ))
        .unwrap();
        assert_eq!(c.retention.keep_days, 30);
        assert_eq!(c.config_version, 2);
        assert!(c.warnings.is_empty());
        // Defaults.
        let c = p(MINIMAL).unwrap();
        assert_eq!(
            c.retention,
            RetentionConfig {
                keep_days: 90,
                interval: Duration::from_secs(600),
                quiet: Duration::from_secs(1800),
            }
        );
        assert_eq!(c.update.open_order_max, Duration::from_secs(16 * 3600));
        let e = p(&format!(
            "config_version = 2\n{MINIMAL}[store]\nkeep_days = 3\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "store.keep_days");
        let e = p(&format!("config_version = \"2\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "config_version");
    }

    /// A TOML type or duplicate-key error names the key of its line, under
    /// its table; an unreadable place falls back to `(syntax)`.
    #[test]
    fn type_and_duplicate_errors_name_their_key() {
        let e = p(&format!("{MINIMAL}[store]\npath = [1, 2]\n")).unwrap_err();
        assert_eq!(e.key, "store.path", "{e}");
        assert!(e.to_string().contains("at line 8"), "{e}");
        let e = p(&format!(
            "{MINIMAL}poll_interval_s = 5\npoll_interval_s = 6\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "zenchef.poll_interval_s", "{e}");
        let e = p("[cashpad\ntoken = 1\n").unwrap_err();
        assert!(e.key == "(syntax)" || e.key == "cashpad", "{e}");
        assert_eq!(key_at("a = 1\n[x.y]\n b = 2\n", 16), Some("x.y.b".into()));
        assert_eq!(key_at("[t]\n", 1), Some("t".into()));
        assert_eq!(
            key_at("[a]\n[store]  # retention\nquiet_min = \"x\"\n", 30),
            Some("store.quiet_min".into())
        );
        assert_eq!(key_at("not a key line\n", 3), None);
    }

    /// Every duration key has an upper bound: a huge value is used as the
    /// bound, with a warning naming the key, never an overflow (a panic in
    /// a debug build, a wrapped few seconds in a release build) and never a
    /// refusal of a file that an earlier release accepted.
    #[test]
    fn huge_durations_are_bounded_with_a_warning() {
        let huge = i64::MAX;
        for (section, key, full, hi) in [
            ("store", "quiet_min", "store.quiet_min", 1440u64),
            (
                "store",
                "retention_interval_s",
                "store.retention_interval_s",
                86_400,
            ),
            (
                "update",
                "check_interval_s",
                "update.check_interval_s",
                604_800,
            ),
            ("delivery", "retry_max_s", "delivery.retry_max_s", 3600),
            (
                "delivery",
                "credentials_retry_s",
                "delivery.credentials_retry_s",
                86_400,
            ),
            ("delivery", "http_timeout_s", "delivery.http_timeout_s", 600),
        ] {
            let text = format!("config_version = 2\n{MINIMAL}[{section}]\n{key} = {huge}\n");
            let c = p(&text).unwrap();
            assert_eq!(
                c.warnings,
                vec![format!("{full}: {huge} is above {hi}; {hi} is used")]
            );
            let ok = format!("config_version = 2\n{MINIMAL}[{section}]\n{key} = {hi}\n");
            assert!(p(&ok).unwrap().warnings.is_empty(), "{key} = {hi}");
            let zero = format!("config_version = 2\n{MINIMAL}[{section}]\n{key} = 0\n");
            assert_eq!(p(&zero).unwrap_err().key, full);
        }
        let c = p(&format!(
            "config_version = 2\n{MINIMAL}[store]\nquiet_min = {huge}\n"
        ))
        .unwrap();
        assert_eq!(c.retention.quiet, Duration::from_secs(1440 * 60));
        let c = p(&format!("{MINIMAL}poll_interval_s = {huge}\n")).unwrap();
        assert_eq!(c.zenchef.poll_interval, Duration::from_secs(3600));
    }

    /// The previous release after a rollback reads the next release's
    /// file: the keys it does not know are ignored with a warning each;
    /// at its own version, a misspelt key is still refused.
    #[test]
    fn a_newer_file_is_read_and_a_misspelt_key_is_not() {
        let next = CONFIG_VERSION + 1;
        let text = format!(
            "config_version = {next}\n{MINIMAL}poll_interval_s = 5\nlater_option = true\n\
             [store]\nkeep_days = 40\nlater_store_key = \"x\"\n[later_section]\na = 1\n"
        );
        let c = p(&text).unwrap();
        assert_eq!(c.zenchef.poll_interval, Duration::from_secs(5));
        assert_eq!(c.retention.keep_days, 40, "known keys are read");
        assert_eq!(c.config_version, next);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        for (w, key) in c.warnings.iter().zip([
            "later_section",
            "store.later_store_key",
            "zenchef.later_option",
        ]) {
            assert!(
                w.starts_with(&format!("{key}: not known to this release, ignored")),
                "{w}"
            );
            assert!(w.contains(&format!("config_version {next}")), "{w}");
        }
        // Known keys keep their checks.
        let e = p(&text.replace("keep_days = 40", "keep_days = 1")).unwrap_err();
        assert_eq!(e.key, "store.keep_days");
        // The same file at this release's version: the typo is refused.
        let e = p(&text
            .replace(
                &format!("config_version = {next}"),
                &format!("config_version = {CONFIG_VERSION}"),
            )
            .replace("[later_section]\na = 1\n", ""))
        .unwrap_err();
        assert!(
            ["later_option", "later_store_key"].contains(&e.key.as_str()),
            "{e}"
        );
        assert!(e.problem.contains("unknown field"), "{e}");
        assert!(e.problem.contains(" at line "), "{e}");
    }

    #[test]
    fn the_known_keys_are_the_structs_fields() {
        assert_eq!(
            fields_of::<RawUpdate>(),
            [
                "enabled",
                "manifest_url",
                "public_key",
                "public_keys",
                "window",
                "rollout_percent",
                "check_interval_s",
                "confirm_after_s",
                "open_order_max_h"
            ]
        );
        assert!(fields_of::<RawConfig>().contains(&"config_version"));
        for (key, _) in INTRODUCED {
            let (section, k) = key.split_once('.').unwrap();
            assert!(
                section_fields(section).unwrap().contains(&k),
                "{key} is not a field"
            );
        }
    }

    #[test]
    fn versions_and_windows() {
        assert!("2.0.15".parse::<Version>().unwrap() < Version(2, 0, 16));
        assert!("2.1.0".parse::<Version>().unwrap() > Version(2, 0, 16));
        assert!("2.0".parse::<Version>().is_err());
        assert_eq!(parse_window("23:00-01:00").unwrap(), (1380, 60));
        assert!(parse_window("25:00-01:00").is_err());
    }
}
