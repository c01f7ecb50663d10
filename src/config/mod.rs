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
//! # Where things are
//! - here: the constants, the `Raw*` and validated types, [`Secret`],
//!   [`ConfigError`], [`load`] and [`parse`];
//! - `read`: TOML text to [`RawConfig`] across format versions, TOML
//!   errors named by their key;
//! - `validate`: [`RawConfig::validate`], one function per section;
//! - `values`: checks of single values also used outside the file (URLs,
//!   Installation IDs, versions, the maintenance window), each with its
//!   typed error.
//!
//! The fixtures under `tests/config/` (valid files, and invalid ones with
//! the error each must produce) go through [`load`] in
//! `tests/config_fixtures.rs`.
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

mod read;
#[cfg(test)]
mod tests;
mod validate;
mod values;

pub use values::{
    BrokerError, IID_CHARSET, IID_MAX_LEN, IidError, UrlError, Version, VersionError, WindowError,
    check_base_url, check_broker, check_iid, check_topic_level, check_topic_prefix, check_url,
    escaped, parse_window,
};

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
pub const CONFIG_VERSION: i64 = if cfg!(feature = "test-next") { 4 } else { 3 };

/// Keys added after `config_version` 1 and the version that introduced
/// each: a file using one must say `config_version` ≥ it.
pub const INTRODUCED: &[(&str, i64)] = &[
    ("store.keep_days", 2),
    ("store.retention_interval_s", 2),
    ("store.quiet_min", 2),
    ("update.public_keys", 2),
    ("update.open_order_max_h", 2),
    ("fleet", 3),
    #[cfg(feature = "test-next")]
    ("store.test_next_key", 4),
];

/// The release channel built into the binary: `packaging/channel.toml`.
pub const BUILT_IN_CHANNEL: &str = include_str!("../../packaging/channel.toml");

/// The built-in channel, parsed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Manifest of the channel.
    pub manifest_url: String,
    /// Release signing keys (base64 ed25519): any of them may sign.
    pub public_keys: Vec<String>,
    /// `placeholder = true`: [`Channel::public_keys`] are the repository's
    /// placeholder, whose private half nobody has; a box trusting only
    /// them can never update (`update::signing_key_problem`).
    #[serde(default)]
    pub placeholder: bool,
}

/// [`BUILT_IN_CHANNEL`], parsed (a unit test keeps it parseable).
pub fn built_in_channel() -> Channel {
    toml::from_str(BUILT_IN_CHANNEL).unwrap_or(Channel {
        manifest_url: String::new(),
        public_keys: Vec::new(),
        placeholder: false,
    })
}

/// A secret string (token, password). `Debug` and `Display` print `***`;
/// the value is reachable only through [`Secret::expose`], used where the
/// secret goes on the wire. Read from a string only: a value of another
/// type is refused with [`SECRET_NOT_A_STRING`], which never shows it
/// (serde's own message would: "invalid type: integer `123…`").
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

/// The problem given for a secret written as something other than a
/// string (the value is never shown).
pub const SECRET_NOT_A_STRING: &str =
    "must be a string in quotes (the value of a secret is not shown)";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

/// Takes a string; every other kind of value is refused without being
/// shown (the default `visit_*` methods would name it).
struct SecretVisitor;

macro_rules! refuse_secret {
    ($($name:ident($t:ty)),* $(,)?) => {
        $(fn $name<E: serde::de::Error>(self, _: $t) -> Result<Secret, E> {
            Err(E::custom(SECRET_NOT_A_STRING))
        })*
    };
}

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }
    refuse_secret!(
        visit_bool(bool),
        visit_i64(i64),
        visit_i128(i128),
        visit_u64(u64),
        visit_u128(u128),
        visit_f64(f64),
        visit_char(char),
        visit_bytes(&[u8]),
    );
    fn visit_none<E: serde::de::Error>(self) -> Result<Secret, E> {
        Err(E::custom(SECRET_NOT_A_STRING))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Secret, E> {
        Err(E::custom(SECRET_NOT_A_STRING))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(serde::de::Error::custom(SECRET_NOT_A_STRING))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(serde::de::Error::custom(SECRET_NOT_A_STRING))
    }
}

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
    /// The first character of this secret outside ASCII and its place
    /// (counted from 1), without the value: an HTTP header takes visible
    /// ASCII only.
    fn non_ascii(&self) -> Option<String> {
        let (at, c) = self.0.chars().enumerate().find(|(_, c)| !c.is_ascii())?;
        Some(format!(
            "holds a character outside ASCII (U+{:04X}) at character {}: it goes in an HTTP \
             header (the value is not shown)",
            c as u32,
            at + 1
        ))
    }
    /// What makes this secret unusable in an HTTP header or an MQTT
    /// login, without the value: the first space or control character
    /// (a pasted `\r\n`, a tab) and its place, counted in characters
    /// from 1.
    fn flaw(&self) -> Option<String> {
        let (at, c) = self
            .0
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_whitespace() || c.is_control())?;
        let what = match c {
            ' ' => "a space".to_string(),
            '\t' => "a tab".to_string(),
            '\r' | '\n' => "a line break".to_string(),
            c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
            c => format!("a blank character (U+{:04X})", c as u32),
        };
        Some(format!(
            "holds {what} at character {}: a token is one word (the value is not shown)",
            at + 1
        ))
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

impl ConfigError {
    /// The error for `key` of `file`.
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>, file: &Path) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
            file: file.to_path_buf(),
        }
    }
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
    /// `[fleet]` (project extension, config_version 3: docs/fleet.md)
    #[serde(default)]
    pub fleet: RawFleet,
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

/// `[fleet]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    pub enabled: Option<bool>,
    pub broker: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub token: Option<Secret>,
    pub topic_prefix: Option<String>,
    pub device_id: Option<String>,
    pub interval_s: Option<u64>,
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
    /// Fleet reporting (`None` when `[fleet]` has no `broker`, or
    /// `enabled = false`).
    pub fleet: Option<FleetConfig>,
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
    /// Every key of [`UpdateConfig::public_keys`] is a placeholder (a key
    /// of a built-in channel marked `placeholder = true`, whether it came
    /// from there or was copied into the file): no real release can
    /// verify, the box cannot update.
    pub placeholder_key: bool,
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

/// Default `[fleet] topic_prefix`.
pub const DEFAULT_FLEET_PREFIX: &str = "zenchef-edge";
/// Default `[fleet] interval_s`: a report at least every 5 minutes.
pub const DEFAULT_FLEET_INTERVAL_S: u64 = 300;

/// `[fleet]`, validated (docs/fleet.md): where and how the box reports its
/// state to the group's MQTT broker. The files are only named here: the
/// fleet session reads them when it connects, so that a certificate that
/// cannot be read stops the fleet report (said in `status` and `doctor`),
/// never the agent.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The broker: `mqtts://host[:port]` (port 8883 by default), or
    /// `mqtt://` to a loopback host (1883 by default).
    pub broker: FleetBroker,
    /// PEM certificates the broker's must chain to (`ca_file`); `None`: the
    /// box's CA store.
    pub ca_file: Option<PathBuf>,
    /// The client certificate and its key, PEM (`cert_file`, `key_file`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The MQTT login (`username`, `token`; the token is a [`Secret`]).
    pub login: Option<(String, Secret)>,
    /// Topic prefix (`topic_prefix`, default [`DEFAULT_FLEET_PREFIX`]).
    pub topic_prefix: String,
    /// `device_id`; `None`: the box's own device id (`device-id` beside the
    /// store).
    pub device_id: Option<String>,
    /// A report is sent at least this often (`interval_s`, 30 s to 24 h,
    /// default [`DEFAULT_FLEET_INTERVAL_S`]).
    pub interval: Duration,
}

/// The fleet broker's address, checked (`[fleet] broker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetBroker {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://` (TLS); `false` only for a loopback host.
    pub tls: bool,
}

impl fmt::Display for FleetBroker {
    /// `mqtts://host:port` (never a credential: none is accepted in it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
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
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("(file)", format!("cannot read the file: {e}"), path))?;
    parse(&text, path)
}

/// Parses and validates TOML text; `path` is only used in messages.
///
/// Errors: [`ConfigError`]; see [`load`].
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let read::Read {
        raw,
        version,
        mut warnings,
    } = read::read(text, path)?;
    let mut config = raw.validate(path)?;
    config.config_version = version;
    // The file's warnings first, then those of its values.
    warnings.append(&mut config.warnings);
    config.warnings = warnings;
    Ok(config)
}
