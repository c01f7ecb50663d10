//! [`RawConfig::validate`]: every default filled in, every bad value
//! refused with its key (docs/protocol/agent-interface.md § "Configuration
//! file"), one function per section of the file. The sections are checked
//! in the file's documented order, and so is each section's keys: the first
//! error found is the one reported, and warnings keep that order too.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::{
    Version, check_base_url, check_broker, check_iid, check_topic_level, check_topic_prefix,
    check_url, parse_window,
};
use super::*;

impl RawConfig {
    /// Fills defaults and rejects bad values (docs/protocol/agent-interface.md). `doctor`
    /// and provisioning reuse it.
    ///
    /// Errors: [`ConfigError`] naming the first bad key, in the order of
    /// the sections below and of the keys in each.
    pub fn validate(self, file: &Path) -> Result<Config, ConfigError> {
        let mut ck = Checker {
            file,
            warnings: Vec::new(),
        };
        let (timezone, currency) = restaurant(self.restaurant, &ck)?;
        let cashpad = cashpad(self.cashpad, &ck)?;
        let zenchef = zenchef(self.zenchef, &mut ck)?;
        let pay = zenchef_pay(self.zenchef_pay, &ck)?;
        let (store_path, retention) = store(self.store, &mut ck)?;
        let update = update(self.update, &mut ck)?;
        let (http_listen, history_sample) = http(self.http, &ck)?;
        let delivery = delivery(self.delivery, &mut ck)?;
        let fleet = fleet(self.fleet, &ck)?;
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
            history_sample,
            delivery,
            fleet,
            log_filter: self.log.filter.unwrap_or_else(|| "info".into()),
            config_version: self.config_version.unwrap_or(1),
            warnings: ck.warnings,
        })
    }
}

/// What checking one file's values needs besides them: the file (named in
/// every error) and the warnings said so far (values used other than
/// written, logged at start).
struct Checker<'a> {
    file: &'a Path,
    warnings: Vec<String>,
}

impl Checker<'_> {
    /// The error for `key` in this file.
    fn err(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::new(key, problem, self.file)
    }

    /// `value` (`default` when absent) if within `range`, else "`value` is
    /// outside lo..=hi".
    fn within<T: PartialOrd + Display>(
        &self,
        key: &str,
        value: Option<T>,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        let value = value.unwrap_or(default);
        if range.contains(&value) {
            return Ok(value);
        }
        Err(self.err(
            key,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ))
    }

    /// `value` (`default` when absent) if at most `hi`, else "`value` is
    /// above hi".
    fn at_most<T: PartialOrd + Display>(
        &self,
        key: &str,
        value: Option<T>,
        default: T,
        hi: T,
    ) -> Result<T, ConfigError> {
        let value = value.unwrap_or(default);
        if value > hi {
            return Err(self.err(key, format!("{value} is above {hi}")));
        }
        Ok(value)
    }

    /// A whole number of seconds or minutes (`default` when absent), at
    /// least 1, at most `hi`: the upper bound keeps every duration far from overflowing the clocks
    /// it is added to (`quiet_min * 60`, `Instant + interval`). A value above
    /// it is used as `hi`, with a warning, not refused: these keys only had a
    /// lower bound before, and a file a box already runs with must not stop
    /// the agent after an update (exit 78 is not restarted).
    ///
    /// Errors: "must be ≥ 1" for `key`.
    fn bounded(
        &mut self,
        key: &str,
        value: Option<u64>,
        default: u64,
        hi: u64,
    ) -> Result<u64, ConfigError> {
        let value = value.unwrap_or(default);
        if value < 1 {
            return Err(self.err(key, "must be ≥ 1"));
        }
        if value > hi {
            self.warnings
                .push(format!("{key}: {value} is above {hi}; {hi} is used"));
            return Ok(hi);
        }
        Ok(value)
    }

    /// A key that must be present and not blank (a token, an id).
    ///
    /// Errors: "missing" or "empty" for `key` (never the value).
    fn required<T>(
        &self,
        key: &str,
        value: Option<T>,
        blank: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError> {
        match value {
            None => Err(self.err(key, "missing")),
            Some(v) if blank(&v) => Err(self.err(key, "empty")),
            Some(v) => Ok(v),
        }
    }

    /// [`Checker::required`] for a [`Secret`], which must also be one
    /// word: no space, no control character (it goes in an HTTP header or
    /// an MQTT login, where a `\r\n` fails only at run time).
    ///
    /// Errors: "missing", "empty", or the flaw and its place (never the
    /// value).
    fn secret(&self, key: &str, value: Option<Secret>) -> Result<Secret, ConfigError> {
        let secret = self.required(key, value, Secret::is_blank)?;
        match secret.flaw() {
            Some(problem) => Err(self.err(key, problem)),
            None => Ok(secret),
        }
    }

    /// [`Checker::secret`] for a token sent in an HTTP header (Zenchef,
    /// Zenchef Pay): ASCII only as well.
    ///
    /// Errors: as [`Checker::secret`]; the first character outside ASCII
    /// and its place (never the value).
    fn http_secret(&self, key: &str, value: Option<Secret>) -> Result<Secret, ConfigError> {
        let secret = self.secret(key, value)?;
        match secret.non_ascii() {
            Some(problem) => Err(self.err(key, problem)),
            None => Ok(secret),
        }
    }
}

/// `[restaurant]`: the time zone (default Europe/Paris) and the currency
/// (default EUR).
fn restaurant(r: RawRestaurant, ck: &Checker) -> Result<(chrono_tz::Tz, String), ConfigError> {
    let tz_name = r.timezone.unwrap_or_else(|| "Europe/Paris".into());
    let timezone: chrono_tz::Tz = tz_name.parse().map_err(|_| {
        ck.err(
            "restaurant.timezone",
            format!("`{tz_name}` is not an IANA time zone name"),
        )
    })?;
    let currency = r.currency.unwrap_or_else(|| "EUR".into());
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(ck.err(
            "restaurant.currency",
            format!("`{currency}` is not an ISO 4217 code such as EUR"),
        ));
    }
    Ok((timezone, currency))
}

/// `[cashpad]`: the MQTT token, the POS to pick, the minimum app version,
/// a static address or discovery.
fn cashpad(c: RawCashpad, ck: &Checker) -> Result<CashpadConfig, ConfigError> {
    let token = ck.secret("cashpad.token", c.token)?;
    let installation_id = match c.installation_id {
        Some(s) if s.trim().is_empty() => {
            return Err(ck.err(
                "cashpad.installation_id",
                "empty (remove the key to accept the only POS on the LAN)",
            ));
        }
        Some(s) => {
            check_iid(&s).map_err(|e| ck.err("cashpad.installation_id", e.to_string()))?;
            Some(s)
        }
        None => None,
    };
    let min_version_s = c
        .min_version
        .unwrap_or_else(|| DEFAULT_MIN_VERSION.to_string());
    let min_version: Version = min_version_s
        .parse()
        .map_err(|e: values::VersionError| ck.err("cashpad.min_version", e.to_string()))?;
    let static_addr = match (c.host, c.port) {
        (Some(h), p) if !h.trim().is_empty() => Some((h, p.unwrap_or(DEFAULT_MQTT_PORT))),
        (Some(_), _) => return Err(ck.err("cashpad.host", "empty")),
        (None, Some(_)) => {
            return Err(ck.err(
                "cashpad.port",
                "set without cashpad.host (the port alone cannot replace discovery)",
            ));
        }
        (None, None) => None,
    };
    let port_ok = |key: &str, port: u16| match port {
        0 => Err(ck.err(key, "0 is not a valid port")),
        p => Ok(p),
    };
    if let Some(p) = c.port {
        port_ok("cashpad.port", p)?;
    }
    let mdns_port = port_ok(
        "cashpad.mdns_port",
        c.mdns_port.unwrap_or(DEFAULT_MDNS_PORT),
    )?;
    Ok(CashpadConfig {
        token,
        installation_id,
        min_version,
        static_addr,
        mdns_port,
        interfaces: c.interfaces.unwrap_or_default(),
    })
}

/// `[zenchef]`: the restaurant, its token, the API and the sync window.
fn zenchef(z: RawZenchef, ck: &mut Checker) -> Result<ZenchefConfig, ConfigError> {
    let restaurant_id = ck.required("zenchef.restaurant_id", z.restaurant_id, |s| {
        s.trim().is_empty()
    })?;
    let token = ck.http_secret("zenchef.token", z.token)?;
    let base_url = check_base_url(
        z.base_url
            .unwrap_or_else(|| DEFAULT_ZENCHEF_BASE_URL.to_string()),
    )
    .map_err(|e| ck.err("zenchef.base_url", e.to_string()))?;
    let poll = ck.bounded(
        "zenchef.poll_interval_s",
        z.poll_interval_s,
        DEFAULT_POLL_INTERVAL_S,
        3600,
    )?;
    let sync_days = ck.within("zenchef.sync_days", z.sync_days, DEFAULT_SYNC_DAYS, 1..=14)?;
    let before = ck.within(
        "zenchef.match_before_min",
        z.match_before_min,
        DEFAULT_MATCH_BEFORE_MIN,
        0..=720,
    )?;
    let after = ck.within(
        "zenchef.match_after_min",
        z.match_after_min,
        DEFAULT_MATCH_AFTER_MIN,
        0..=720,
    )?;
    let publisher_name = z
        .publisher_name
        .unwrap_or_else(|| DEFAULT_PUBLISHER_NAME.to_string());
    if publisher_name.trim().is_empty() {
        return Err(ck.err("zenchef.publisher_name", "empty"));
    }
    Ok(ZenchefConfig {
        restaurant_id,
        token,
        base_url,
        publisher_name,
        poll_interval: Duration::from_secs(poll),
        sync_days,
        match_before_min: before,
        match_after_min: after,
    })
}

/// `[zenchef_pay]`: `None` unless enabled. The base URL is checked even
/// when Pay is off (a file that turns it on later must not fail then).
fn zenchef_pay(p: RawPay, ck: &Checker) -> Result<Option<PayConfig>, ConfigError> {
    let base_url = check_base_url(p.base_url.unwrap_or_else(|| DEFAULT_PAY_BASE_URL.into()))
        .map_err(|e| ck.err("zenchef_pay.base_url", e.to_string()))?;
    if !p.enabled.unwrap_or(false) {
        return Ok(None);
    }
    let resend_s = ck.within(
        "zenchef_pay.settle_resend_s",
        p.settle_resend_s,
        DEFAULT_SETTLE_RESEND_S,
        1..=3600,
    )?;
    let resends = ck.at_most(
        "zenchef_pay.settle_resends",
        p.settle_resends,
        DEFAULT_SETTLE_RESENDS,
        100,
    )?;
    Ok(Some(PayConfig {
        base_url,
        token: ck.http_secret("zenchef_pay.token", p.token)?,
        settle_resend: Duration::from_secs(resend_s),
        settle_resends: resends,
    }))
}

/// `[store]`: the SQLite file and its retention.
fn store(s: RawStore, ck: &mut Checker) -> Result<(PathBuf, RetentionConfig), ConfigError> {
    let path = s.path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
    if path.as_os_str().is_empty() {
        return Err(ck.err("store.path", "empty"));
    }
    let keep_days = ck.within("store.keep_days", s.keep_days, DEFAULT_KEEP_DAYS, 7..=3650)?;
    let interval_s = ck.bounded(
        "store.retention_interval_s",
        s.retention_interval_s,
        DEFAULT_RETENTION_INTERVAL_S,
        86_400,
    )?;
    let quiet_min = ck.bounded("store.quiet_min", s.quiet_min, DEFAULT_QUIET_MIN, 1440)?;
    let retention = RetentionConfig {
        keep_days,
        interval: Duration::from_secs(interval_s),
        quiet: Duration::from_secs(quiet_min * 60),
    };
    Ok((path, retention))
}

/// `[update]`: the window, the rollout, the channel (the file's, else the
/// built-in one) and the timings.
fn update(u: RawUpdate, ck: &mut Checker) -> Result<UpdateConfig, ConfigError> {
    let window_s = u.window.unwrap_or_else(|| DEFAULT_UPDATE_WINDOW.into());
    let window = parse_window(&window_s).map_err(|e| ck.err("update.window", e.to_string()))?;
    let rollout_percent = ck.at_most("update.rollout_percent", u.rollout_percent, 100, 100)?;
    let channel = built_in_channel();
    let manifest_url = match u.manifest_url {
        Some(m) if !m.trim().is_empty() => {
            Some(check_url(m).map_err(|e| ck.err("update.manifest_url", e.to_string()))?)
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
    let placeholder_key = channel.placeholder
        && !public_keys.is_empty()
        && public_keys
            .iter()
            .all(|k| channel.public_keys.iter().any(|p| p.trim() == k.trim()));
    let open_order_max_h = ck.within(
        "update.open_order_max_h",
        u.open_order_max_h,
        DEFAULT_OPEN_ORDER_MAX_H,
        1..=720,
    )?;
    let check_interval_s = ck.bounded(
        "update.check_interval_s",
        u.check_interval_s,
        DEFAULT_UPDATE_CHECK_INTERVAL_S,
        604_800,
    )?;
    let confirm_after_s = ck
        .within(
            "update.confirm_after_s",
            u.confirm_after_s,
            DEFAULT_UPDATE_CONFIRM_AFTER_S,
            1..=100,
        )
        .map_err(|mut e| {
            e.problem.push_str(" (the rollback deadline is 120 s)");
            e
        })?;
    Ok(UpdateConfig {
        enabled: u.enabled.unwrap_or(true),
        manifest_url,
        public_keys,
        keys_from,
        placeholder_key,
        window,
        rollout_percent,
        check_interval: Duration::from_secs(check_interval_s),
        confirm_after: Duration::from_secs(confirm_after_s),
        open_order_max: Duration::from_secs(open_order_max_h * 3600),
    })
}

/// `[http]`: the listen address (`""`: off) and the history sample period.
fn http(h: RawHttp, ck: &Checker) -> Result<(Option<SocketAddr>, Duration), ConfigError> {
    let listen = h.listen.unwrap_or_else(|| DEFAULT_HTTP_LISTEN.into());
    let sample_s = ck.within(
        "http.history_sample_s",
        h.history_sample_s,
        DEFAULT_HISTORY_SAMPLE_S,
        1..=3600,
    )?;
    let http_listen = if listen.trim().is_empty() {
        None
    } else {
        Some(listen.parse::<SocketAddr>().map_err(|_| {
            ck.err(
                "http.listen",
                format!("`{listen}` is not an address:port such as 127.0.0.1:8780"),
            )
        })?)
    };
    Ok((http_listen, Duration::from_secs(sample_s)))
}

/// `[delivery]`: outbox concurrency, retry backoff cap, credentials retry,
/// HTTP timeout.
fn delivery(d: RawDelivery, ck: &mut Checker) -> Result<DeliveryConfig, ConfigError> {
    let concurrency = ck.within(
        "delivery.concurrency",
        d.concurrency,
        DEFAULT_DELIVERY_CONCURRENCY,
        1..=256,
    )?;
    let retry_max_s = ck.bounded(
        "delivery.retry_max_s",
        d.retry_max_s,
        DEFAULT_RETRY_MAX_S,
        3600,
    )?;
    let cred_s = ck.bounded(
        "delivery.credentials_retry_s",
        d.credentials_retry_s,
        DEFAULT_CREDENTIALS_RETRY_S,
        86_400,
    )?;
    let timeout_s = ck.bounded(
        "delivery.http_timeout_s",
        d.http_timeout_s,
        DEFAULT_HTTP_TIMEOUT_S,
        600,
    )?;
    Ok(DeliveryConfig {
        concurrency,
        retry_max: Duration::from_secs(retry_max_s),
        credentials_retry: Duration::from_secs(cred_s),
        http_timeout: Duration::from_secs(timeout_s),
    })
}

/// `[fleet]`: `None` unless `broker` is set and `enabled` is not false.
/// Either a client certificate (`cert_file` and `key_file`) or a login
/// (`username` and `token`) is needed, or both; the files are not read
/// here (see [`FleetConfig`]).
///
/// Errors: the first bad key, in the order of the file's documentation.
fn fleet(f: RawFleet, ck: &Checker) -> Result<Option<FleetConfig>, ConfigError> {
    let Some(broker) = f.broker.filter(|b| !b.trim().is_empty()) else {
        return Ok(None);
    };
    if f.enabled == Some(false) {
        return Ok(None);
    }
    let broker = check_broker(&broker).map_err(|e| ck.err("fleet.broker", e.to_string()))?;
    let path = |key: &str, p: Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
        match p {
            Some(p) if p.as_os_str().is_empty() => Err(ck.err(key, "empty")),
            Some(p) if p.is_relative() => Err(ck.err(
                key,
                format!("{} is relative: give the file's absolute path", p.display()),
            )),
            p => Ok(p),
        }
    };
    let ca_file = path("fleet.ca_file", f.ca_file)?;
    let cert = path("fleet.cert_file", f.cert_file)?;
    let key = path("fleet.key_file", f.key_file)?;
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => return Err(ck.err("fleet.key_file", "missing (cert_file is set)")),
        (None, Some(_)) => return Err(ck.err("fleet.cert_file", "missing (key_file is set)")),
    };
    let login = match (f.username, f.token) {
        (Some(u), Some(t)) => {
            let u = ck.required("fleet.username", Some(u), |u| u.trim().is_empty())?;
            Some((u, ck.secret("fleet.token", Some(t))?))
        }
        (None, None) => None,
        (Some(_), None) => return Err(ck.err("fleet.token", "missing (username is set)")),
        (None, Some(_)) => return Err(ck.err("fleet.username", "missing (token is set)")),
    };
    if client_cert.is_none() && login.is_none() {
        return Err(ck.err(
            "fleet.cert_file",
            "missing: the broker needs a client certificate (cert_file and key_file) or a \
             username and token",
        ));
    }
    let topic_prefix = f
        .topic_prefix
        .unwrap_or_else(|| DEFAULT_FLEET_PREFIX.into());
    check_topic_prefix(&topic_prefix).map_err(|e| ck.err("fleet.topic_prefix", e))?;
    if let Some(d) = &f.device_id {
        check_topic_level(d).map_err(|e| ck.err("fleet.device_id", e))?;
    }
    let interval_s = ck.within(
        "fleet.interval_s",
        f.interval_s,
        DEFAULT_FLEET_INTERVAL_S,
        30..=86_400,
    )?;
    Ok(Some(FleetConfig {
        broker,
        ca_file,
        client_cert,
        login,
        topic_prefix,
        device_id: f.device_id,
        interval: Duration::from_secs(interval_s),
    }))
}
