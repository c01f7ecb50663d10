//! `zenchef-edge doctor`: checks every link the agent depends on, one line
//! each — `ok`, `FAIL` (with a `hint:` line saying what to do) or `skip`
//! (not checkable because an earlier check failed, or not configured) —
//! and exits 1 when any check fails.
//!
//! Checks, in order: the configuration (valid — an invalid file never gets
//! here, it exits 78 — and mode 0600); the store opens; the daemon runs;
//! DNS and TLS towards the Zenchef (and Zenchef Pay) base URLs; the Zenchef
//! credentials (`GET /tables`, read-only); the POS found by mDNS with the
//! daemon's selection rules (`discovery::select`), its version; an MQTT
//! login with the Cashpad token (clean session and its own client id
//! `zenchef-edge-doctor-<iid>`, so the daemon's persistent session is not
//! disturbed); whether the POS broker lets in a client without a password
//! (`pos anonymous`: it must not, docs/pos-broker.md); the table names on
//! both sides.
//!
//! Then the state directory (every file belongs to its owner: a command
//! once run as root may have left one the agent cannot write) and the
//! updates (a usable signing key when they are enabled; the daemon's
//! checks not failing in a row), and the fleet broker when `[fleet]` is
//! configured (a login of its own).
//!
//! `--json` prints one object instead (docs/README-cli.md): `checks`, an
//! array of `{name, outcome, ok, detail, hint}` in the order above, and the
//! totals. The exit code is the same.
//!
//! Nothing is written anywhere; secrets are never printed.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Transport};
use serde::Serialize;

use crate::config::Config;
use crate::outbox::{migrations, store};
use crate::pos::discovery::{self, Announced, PosTarget};
use crate::pos::session::{self, MqttFailure, USERNAME};
use crate::status;
use crate::tables;
use crate::zenchef::client::{
    ErrorClass, TransportFailure, ZenchefClient, transport_kind, transport_message,
};

/// How long the POS is looked for on mDNS.
pub const BROWSE_FOR: Duration = Duration::from_secs(3);
/// Timeout of each network check.
pub const NET_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of one check (`ok`, `fail`, `skip` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed.
    Ok,
    /// Failed: exit code 1.
    Fail,
    /// Not checked (not configured, or an earlier check failed).
    Skip,
}

/// One printed check (an element of `checks` in `doctor --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name, e.g. `zenchef auth`.
    pub name: &'static str,
    /// Result.
    pub outcome: Outcome,
    /// `outcome` is not `fail` (a skipped check is not a failure).
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do (failures).
    pub hint: Option<String>,
}

/// What `doctor --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct JsonReport {
    /// This binary's version.
    pub version: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Checks passed.
    pub passed: usize,
    /// Checks failed (exit code 1 when any).
    pub failed: usize,
    /// Checks skipped.
    pub skipped: usize,
}

/// Prints checks as they complete (or, for `--json`, keeps them) and
/// counts failures.
struct Report {
    color: bool,
    json: bool,
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: &'static str, outcome: Outcome, detail: String, hint: Option<String>) {
        let (tag, code) = match outcome {
            Outcome::Ok => ("ok", "32"),
            Outcome::Fail => ("FAIL", "1;31"),
            Outcome::Skip => ("skip", "33"),
        };
        let tag_col = format!("{tag:<4}");
        let tag_col = if self.color {
            format!("\x1b[{code}m{tag_col}\x1b[0m")
        } else {
            tag_col
        };
        if !self.json {
            println!("{tag_col}  {name:<13} {detail}");
            if let Some(h) = &hint
                && outcome == Outcome::Fail
            {
                println!("{:<6}hint: {h}", "");
            }
        }
        self.checks.push(Check {
            name,
            outcome,
            ok: outcome != Outcome::Fail,
            detail,
            hint: hint.filter(|_| outcome == Outcome::Fail),
        });
    }
    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Outcome::Ok, detail.into(), None);
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>, hint: impl Into<String>) {
        self.add(name, Outcome::Fail, detail.into(), Some(hint.into()));
    }
    fn skip(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Outcome::Skip, detail.into(), None);
    }
}

/// `doctor` (`--json` or not) with an invalid configuration: the failed
/// `config` check alone (main exits 78).
pub fn print_config_error(e: &crate::config::ConfigError, json: bool) {
    let hint = "fix this key first; the other checks need a valid file";
    if json {
        let report = JsonReport {
            version: crate::update::running_version_str().into(),
            checks: vec![Check {
                name: "config",
                outcome: Outcome::Fail,
                ok: false,
                detail: e.to_string(),
                hint: Some(hint.into()),
            }],
            passed: 0,
            failed: 1,
            skipped: 0,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!("FAIL  config        {e}");
        println!("      hint: {hint}");
    }
}

/// Runs every check; answers the exit code (0 all passed, 1 any failed).
/// `config_stat` is the configuration file's metadata, read before a root
/// process gave up its privileges (the directory is root-only).
pub async fn run(
    config: &Config,
    json: bool,
    config_stat: std::io::Result<std::fs::Metadata>,
) -> anyhow::Result<i32> {
    crate::tls::install_crypto();
    let mut r = Report {
        color: !json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        json,
        checks: Vec::new(),
    };
    check_config(&mut r, config, config_stat);
    let store_ok = check_store(&mut r, config);
    check_state_dir(&mut r, config);
    check_updates(&mut r, config, store_ok);
    // Zenchef.
    let reachable = check_net(
        &mut r,
        "zenchef dns",
        "zenchef https",
        &config.zenchef.base_url,
    )
    .await;
    let zenchef_tables = if reachable {
        check_zenchef_auth(&mut r, config).await
    } else {
        r.skip("zenchef auth", "not checked: Zenchef is unreachable");
        None
    };
    // POS.
    let target = check_pos(&mut r, config).await;
    match &target {
        Some(t) => {
            check_mqtt(&mut r, config, t).await;
            check_anonymous(&mut r, t).await;
        }
        None => {
            r.skip("mqtt login", "not checked: no usable POS");
            r.skip("pos anonymous", "not checked: no usable POS");
        }
    }
    // Zenchef Pay.
    match &config.pay {
        None => r.skip(
            "pay",
            "Zenchef Pay is not enabled (zenchef_pay.enabled = false)",
        ),
        Some(pay) => {
            if check_net(&mut r, "pay dns", "pay https", &pay.base_url).await {
                let iid = target
                    .as_ref()
                    .map(|t| t.iid.clone())
                    .or(config.cashpad.installation_id.clone());
                check_pay_auth(&mut r, &pay.base_url, pay.token.expose(), iid.as_deref()).await;
            } else {
                r.skip("pay auth", "not checked: Zenchef Pay is unreachable");
            }
        }
    }
    // Tables.
    check_tables(&mut r, config, store_ok, zenchef_tables.as_deref());
    check_fleet(&mut r, config).await;
    let count = |o: Outcome| r.checks.iter().filter(|c| c.outcome == o).count();
    let (ok, failed, skipped) = (
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Skip),
    );
    let code = if failed == 0 { 0 } else { 1 };
    if json {
        let report = JsonReport {
            version: crate::update::running_version_str().into(),
            checks: r.checks,
            passed: ok,
            failed,
            skipped,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(code);
    }
    println!();
    if failed == 0 {
        println!("all checks passed ({ok} ok, {skipped} skipped)");
    } else {
        println!("{failed} check(s) FAILED ({ok} ok, {skipped} skipped)");
    }
    Ok(code)
}

fn check_config(r: &mut Report, config: &Config, stat: std::io::Result<std::fs::Metadata>) {
    let file = config.file.display();
    r.ok("config", format!("{file} is valid"));
    match stat {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                r.ok(
                    "config mode",
                    format!("{mode:o} (only its owner reads the tokens)"),
                );
            } else {
                r.fail(
                    "config mode",
                    format!("{file} is mode {mode:o}: group or others can read the tokens"),
                    format!("chmod 600 {file}"),
                );
            }
        }
        Err(e) => r.fail(
            "config mode",
            format!("cannot stat {file}: {e}"),
            "check the path",
        ),
    }
}

fn check_store(r: &mut Report, config: &Config) -> bool {
    let path = config.store_path.display();
    match crate::exit::store_access(&config.store_path) {
        crate::exit::StoreAccess::Missing => {
            r.fail(
                "store",
                format!("{path} does not exist"),
                "the agent creates the store at its first start: systemctl status zenchef-edge",
            );
            r.skip("agent", "not checked: no store");
            return false;
        }
        crate::exit::StoreAccess::PermissionDenied(e) => {
            r.fail(
                "store",
                format!("cannot open {path}: {e}"),
                "run doctor as root (sudo) or as the agent's user",
            );
            r.skip("agent", "not checked: no store");
            return false;
        }
        _ => {}
    }
    let conn = match store::open_read_only(&config.store_path) {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "store",
                e.to_string(),
                "the agent creates the store at its first start: systemctl status zenchef-edge",
            );
            r.skip("agent", "not checked: no store");
            return false;
        }
    };
    let known = migrations::KNOWN;
    match migrations::schema_of(&conn) {
        Ok(s) if s.applied > known && s.min_version > known => r.fail(
            "store",
            format!(
                "{path} has schema {} (usable from schema {}), newer than this binary knows \
                 ({known})",
                s.applied, s.min_version
            ),
            "a newer release migrated it: run a release that knows that schema; never \
             downgrade the binary by hand",
        ),
        Ok(s) if s.applied > known => r.ok(
            "store",
            format!(
                "{path} opens (schema {}, written by a newer release; usable from schema {}: this \
                 binary knows {known})",
                s.applied, s.min_version
            ),
        ),
        Ok(s) if s.applied < known => r.ok(
            "store",
            format!(
                "{path} opens (schema {}; the agent upgrades it to {known} at its next start)",
                s.applied
            ),
        ),
        Ok(s) => r.ok("store", format!("{path} opens (schema {})", s.applied)),
        Err(e) => {
            r.fail(
                "store",
                format!("{path} cannot be read: {e}"),
                "the agent moves a corrupt store aside at start: systemctl restart zenchef-edge",
            );
            return false;
        }
    }
    let (daemon, running) = status::daemon_record(&conn, chrono::Utc::now());
    match (daemon, running) {
        (Some(d), true) => r.ok(
            "agent",
            format!("running (pid {}, version {})", d.pid, d.version),
        ),
        (Some(d), false) => r.fail(
            "agent",
            format!("NOT running (its state was last written {})", d.updated_at),
            "systemctl status zenchef-edge; journalctl -u zenchef-edge -e",
        ),
        (None, _) => r.fail(
            "agent",
            "has never run with this store",
            "systemctl enable --now zenchef-edge",
        ),
    }
    true
}

/// DNS then TLS (any HTTP answer proves both). Answers "reachable".
async fn check_net(r: &mut Report, dns: &'static str, tls: &'static str, base: &str) -> bool {
    let url = match reqwest::Url::parse(base) {
        Ok(u) => u,
        Err(e) => {
            r.fail(
                dns,
                format!("{base} is not a URL: {e}"),
                "fix the base_url in the configuration",
            );
            return false;
        }
    };
    let host = url.host_str().unwrap_or("").to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        r.ok(dns, format!("{host} is an address (no DNS needed)"));
    } else {
        match tokio::time::timeout(NET_TIMEOUT, tokio::net::lookup_host((bare, port))).await {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(a) => r.ok(dns, format!("{host} resolves to {}", a.ip())),
                None => {
                    r.fail(dns, format!("{host} resolves to nothing"), dns_hint());
                    return false;
                }
            },
            Ok(Err(e)) => {
                r.fail(dns, format!("{host} does not resolve: {e}"), dns_hint());
                return false;
            }
            Err(_) => {
                r.fail(
                    dns,
                    format!("{host}: no DNS answer within {NET_TIMEOUT:?}"),
                    dns_hint(),
                );
                return false;
            }
        }
    }
    let client = match reqwest::Client::builder()
        .timeout(NET_TIMEOUT)
        .connect_timeout(NET_TIMEOUT)
        .user_agent(concat!("zenchef-edge-doctor/", env!("CARGO_PKG_VERSION")))
        .redirect(crate::zenchef::client::no_redirects())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                tls,
                format!("cannot build an HTTP client: {e}"),
                "report this bug",
            );
            return false;
        }
    };
    match client.get(url.clone()).send().await {
        Ok(resp) => {
            let what = if url.scheme() == "https" {
                "TLS handshake ok"
            } else {
                "plain http:// to a loopback address (test set-up), no TLS"
            };
            r.ok(
                tls,
                format!("{host}:{port}: {what} (HTTP {})", resp.status().as_u16()),
            );
            true
        }
        Err(e) => {
            let msg = transport_message(&e);
            let hint = tls_hint(transport_kind(&e), &host, port);
            r.fail(tls, format!("{host}:{port}: {msg}"), hint);
            false
        }
    }
}

fn dns_hint() -> &'static str {
    "check the box's internet connection and its DNS server (resolvectl status)"
}

/// What to do about a transport error towards `host`.
pub fn tls_hint(kind: TransportFailure, host: &str, port: u16) -> String {
    match kind {
        TransportFailure::CertNotYetValid | TransportFailure::CertExpired => {
            "the system clock is wrong (certificates look not yet valid): check `timedatectl` and \
             that NTP can reach its servers"
                .into()
        }
        TransportFailure::CertRefused => format!(
            "{host} presents a certificate the box does not trust: a proxy may intercept HTTPS"
        ),
        TransportFailure::Timeout => {
            format!(
                "no answer from {host}:{port} within {NET_TIMEOUT:?}: internet down or very slow"
            )
        }
        TransportFailure::Connect | TransportFailure::Other => {
            format!(
                "cannot reach {host}:{port}: internet down, or a firewall blocks outgoing HTTPS"
            )
        }
    }
}

/// `GET /tables` with the configured credentials; answers the table names.
async fn check_zenchef_auth(r: &mut Report, config: &Config) -> Option<Vec<String>> {
    let rid = &config.zenchef.restaurant_id;
    let client = match ZenchefClient::new(&config.zenchef, NET_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "zenchef auth",
                format!("cannot build an HTTP client: {e}"),
                "report this bug",
            );
            return None;
        }
    };
    match client.tables().await {
        Ok(ts) => {
            r.ok(
                "zenchef auth",
                format!("token accepted for restaurant {rid} ({} tables)", ts.len()),
            );
            Some(ts.into_iter().map(|t| t.name).collect())
        }
        Err(e) if e.class == ErrorClass::Credentials => {
            r.fail(
                "zenchef auth",
                format!(
                    "Zenchef refused the token for restaurant {rid} (HTTP {}: {})",
                    e.status.unwrap_or(0),
                    e.message
                ),
                format!(
                    "check zenchef.token and zenchef.restaurant_id in {}",
                    config.file.display()
                ),
            );
            None
        }
        Err(e) if e.status.is_some_and(|s| (300..400).contains(&s)) => {
            r.fail(
                "zenchef auth",
                format!("GET /tables failed: {e}"),
                "check zenchef.base_url: the box follows no redirect (the token would go along)",
            );
            None
        }
        Err(e) => {
            r.fail(
                "zenchef auth",
                format!("GET /tables failed: {e}"),
                "Zenchef answered but not as expected: retry later; if it persists, send this line to support",
            );
            None
        }
    }
}

/// Finds the POS like the daemon does; answers the target to log in to.
async fn check_pos(r: &mut Report, config: &Config) -> Option<PosTarget> {
    let c = &config.cashpad;
    if let Some((host, port)) = &c.static_addr {
        r.ok(
            "pos found",
            format!("static address {host}:{port} (discovery disabled)"),
        );
        r.skip("pos version", "not announced with a static cashpad.host");
        return Some(PosTarget {
            instance: "static".into(),
            host: host.clone(),
            port: *port,
            iid: c.installation_id.clone().unwrap_or_default(),
            server: None,
            app: None,
            tls: false,
        });
    }
    let seen = match browse(config).await {
        Ok(s) => s,
        Err(e) => {
            return no_pos(
                r,
                format!("cannot start mDNS on port {}: {e}", c.mdns_port),
                "another program may hold the mDNS port; check cashpad.interfaces",
                "not checked: no POS",
            );
        }
    };
    if seen.is_empty() {
        return no_pos(
            r,
            format!(
                "no Cashpad POS answered on mDNS ({} on port {}) within {} s",
                discovery::SERVICE_TYPE,
                c.mdns_port,
                BROWSE_FOR.as_secs()
            ),
            "is the Cashpad server on and on this network? If multicast is blocked, set \
             cashpad.host (and cashpad.port) to its address",
            "not checked: no POS",
        );
    }
    choose_pos(r, config, &seen)
}

/// `pos found` failed (`detail`, `hint`), `pos version` skipped (`skip`):
/// no target.
fn no_pos(
    r: &mut Report,
    detail: impl Into<String>,
    hint: impl Into<String>,
    skip: &str,
) -> Option<PosTarget> {
    r.fail("pos found", detail, hint);
    r.skip("pos version", skip.to_string());
    None
}

/// Picks the POS among those `seen` answering on mDNS like the daemon
/// does, and says which and why not.
fn choose_pos(r: &mut Report, config: &Config, seen: &[Announced]) -> Option<PosTarget> {
    let c = &config.cashpad;
    let relevant: Vec<&Announced> = match &c.installation_id {
        Some(iid) => seen
            .iter()
            .filter(|a| a.iid.as_deref() == Some(iid))
            .collect(),
        None => seen.iter().collect(),
    };
    match discovery::select(seen, c.installation_id.as_deref(), c.min_version) {
        Ok(Some(t)) => {
            let a = seen
                .iter()
                .find(|a| a.iid.as_deref() == Some(&t.iid))
                .map(describe_announced)
                .unwrap_or_default();
            r.ok("pos found", a);
            r.ok(
                "pos version",
                format!(
                    "Cashpad {} (the minimum is {})",
                    t.app.as_deref().unwrap_or("?"),
                    c.min_version
                ),
            );
            Some(t)
        }
        // Seen, but the relevant ones are unusable: say why (too old…).
        _ if !relevant.is_empty()
            && relevant
                .iter()
                .all(|a| discovery::incompatibility(a, c.min_version).is_some()) =>
        {
            pos_unusable(r, config, relevant[0]);
            None
        }
        Ok(None) => no_pos(
            r,
            "no usable POS among those answering",
            "see `zenchef-edge status`",
            "not checked: no POS",
        ),
        Err(msg) => no_pos(
            r,
            msg,
            "set cashpad.installation_id to the Installation ID of this restaurant's POS",
            "not checked: no POS chosen",
        ),
    }
}

/// A POS `a` that answers but cannot be used: found, and why its version
/// (or its Installation ID) fails, with what to do.
fn pos_unusable(r: &mut Report, config: &Config, a: &Announced) {
    let c = &config.cashpad;
    r.ok("pos found", describe_announced(a));
    let why = discovery::incompatibility(a, c.min_version).unwrap_or_default();
    let bad_iid = a
        .iid
        .as_deref()
        .is_some_and(|i| crate::config::check_iid(i).is_err());
    let hint = if bad_iid {
        format!(
            "the Installation ID goes into MQTT topics and Zenchef Pay URLs and must match \
             {}: have Cashpad support check the POS's announcement",
            crate::config::IID_CHARSET
        )
    } else {
        format!(
            "update Cashpad on the POS to {} or later (the integration requires it); the \
             agent connects by itself once it is",
            c.min_version
        )
    };
    r.fail("pos version", why, hint);
}

/// An announced POS in one line: name, address, Installation ID (escaped
/// when it is not one), Server.
fn describe_announced(a: &Announced) -> String {
    format!(
        "\"{}\" at {}:{}, Installation ID {}, Server {}",
        a.instance,
        a.host,
        a.port,
        a.iid
            .as_deref()
            .map(|i| match crate::config::check_iid(i) {
                Ok(()) => i.to_string(),
                Err(_) => crate::config::escaped(i),
            })
            .unwrap_or_else(|| "?".into()),
        a.server.as_deref().unwrap_or("?")
    )
}

/// Browses `_cashpad._tcp` for [`BROWSE_FOR`] with the daemon's settings.
async fn browse(config: &Config) -> Result<Vec<Announced>, mdns_sd::Error> {
    let daemon = discovery::mdns_daemon(&config.cashpad)?;
    let events = daemon.browse(discovery::SERVICE_TYPE)?;
    let mut seen: std::collections::BTreeMap<String, Announced> = Default::default();
    let deadline = tokio::time::Instant::now() + BROWSE_FOR;
    loop {
        match tokio::time::timeout_at(deadline, events.recv_async()).await {
            Ok(Ok(mdns_sd::ServiceEvent::ServiceResolved(s))) => {
                if let Some(a) = discovery::announced(&s) {
                    seen.insert(s.get_fullname().to_string(), a);
                }
            }
            Ok(Ok(mdns_sd::ServiceEvent::ServiceRemoved(_, name))) => {
                seen.remove(&name);
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    Ok(seen.into_values().collect())
}

/// Logs in to the POS broker with a clean session and its own client id.
async fn check_mqtt(r: &mut Report, config: &Config, t: &PosTarget) {
    let client_id = format!("zenchef-edge-doctor-{}", t.iid);
    let mut opts = MqttOptions::new(client_id.clone(), t.host.clone(), t.port);
    opts.set_keep_alive(Duration::from_secs(10))
        .set_clean_session(true)
        .set_credentials(USERNAME, config.cashpad.token.expose());
    if t.tls {
        opts.set_transport(Transport::tls_with_default_config());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let outcome = tokio::time::timeout(NET_TIMEOUT, connack(&mut eventloop)).await;
    let addr = format!("{}:{}", t.host, t.port);
    match outcome {
        Ok(Ok(())) => {
            r.ok(
                "mqtt login",
                format!(
                    "accepted by the POS broker at {addr} (user {USERNAME}, client {client_id})"
                ),
            );
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Ok(ev) = eventloop.poll().await {
                    if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        Ok(Err(e)) => {
            let kind = session::classify(&e, false);
            let (detail, hint) = session::explain(&e, kind, &addr);
            let detail = if kind == MqttFailure::ClosedDuringLogin {
                // One clean-session login, closed at once: the broker's way
                // of refusing it (rumqttd does so on a bad password).
                format!("{detail}: it most likely refused the token")
            } else {
                detail
            };
            let hint = if kind == MqttFailure::ClosedDuringLogin {
                "check cashpad.token: it must be the token Cashpad provided for the Zenchef \
                 interface"
            } else {
                hint
            };
            r.fail("mqtt login", detail, hint)
        }
        Err(_) => r.fail(
            "mqtt login",
            format!("no answer from the POS broker at {addr} within {NET_TIMEOUT:?}"),
            "is the Cashpad server running? Is its MQTT port reachable from the box?",
        ),
    }
}

/// Whether the POS broker lets in a client without a password
/// (`pos::anonymous`, docs/pos-broker.md): `fail` when it does, `skip`
/// when no answer tells.
async fn check_anonymous(r: &mut Report, t: &PosTarget) {
    use crate::pos::anonymous::{AnonymousClients, probe};
    let p = probe(t).await;
    match p.found {
        AnonymousClients::Refused => r.ok("pos anonymous", p.detail),
        AnonymousClients::Accepted => r.fail(
            "pos anonymous",
            p.detail,
            "the POS broker is the trust boundary: have the POS installer set \
             `allow_anonymous false`, a password for each account and the access rules of \
             docs/pos-broker.md",
        ),
        AnonymousClients::Unknown => r.skip("pos anonymous", format!("not known: {}", p.detail)),
    }
}

/// Polls `eventloop` until the broker accepts the connection (CONNACK)
/// or the first error.
async fn connack(eventloop: &mut rumqttc::EventLoop) -> Result<(), rumqttc::ConnectionError> {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The fleet report (`[fleet]`, docs/fleet.md): one connection of its own
/// (client id `zenchef-edge-<device>-doctor`, so the daemon's session is
/// not kicked out; no will, nothing published). The daemon's own session
/// is in `status` (the Fleet line).
async fn check_fleet(r: &mut Report, config: &Config) {
    use crate::fleet::connect::{self, FailureKind};
    // No line at all without `[fleet]`: most boxes report to no fleet.
    let Some(fleet) = &config.fleet else {
        return;
    };
    let state_dir = config
        .store_path
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let device = fleet.device_id.clone().or_else(|| {
        std::fs::read_to_string(state_dir.join(crate::identity::DEVICE_ID_FILE))
            .ok()
            .map(|d| d.trim().to_string())
    });
    let device = device.unwrap_or_else(|| "unknown".into());
    let broker = fleet.broker.to_string();
    let opts = match connect::options(fleet, &format!("zenchef-edge-{device}-doctor")) {
        Ok(o) => o,
        Err(e) => {
            return r.fail(
                "fleet",
                e.to_string(),
                "fix the [fleet] file keys: the files must be readable by the agent's user",
            );
        }
    };
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let outcome = tokio::time::timeout(NET_TIMEOUT, connack(&mut eventloop)).await;
    let topic = format!("{}/{device}/status", fleet.topic_prefix);
    match outcome {
        Ok(Ok(())) => {
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
            r.ok(
                "fleet",
                format!("{broker} accepts the box; it reports on {topic}"),
            );
        }
        Ok(Err(e)) => {
            let kind = connect::classify(&e);
            let hint = match kind {
                FailureKind::Refused => {
                    "the broker refuses the box: check fleet.username and fleet.token, or that \
                     fleet.cert_file is signed by the CA the broker trusts"
                }
                FailureKind::TlsError => {
                    "the box does not trust the broker's certificate: check fleet.ca_file (the \
                     group CA) and the broker's host name, and the box's clock"
                }
                FailureKind::Unreachable => {
                    "is the broker's host and port right, and reachable from the box \
                     (firewall, DNS)?"
                }
            };
            r.fail(
                "fleet",
                format!("{broker} ({}): {}", kind.state(), connect::describe(&e)),
                hint,
            );
        }
        Err(_) => r.fail(
            "fleet",
            format!("no answer from {broker} within {NET_TIMEOUT:?}"),
            "is the broker's host and port right, and reachable from the box (firewall, DNS)?",
        ),
    }
}

/// A read-only Zenchef Pay call with the Pay token (docs/protocol/zenchef-pay.md).
async fn check_pay_auth(r: &mut Report, base: &str, token: &str, iid: Option<&str>) {
    let Some(iid) = iid else {
        r.skip(
            "pay auth",
            "not checked: the Installation ID is not known (no POS found)",
        );
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(NET_TIMEOUT)
        .redirect(crate::zenchef::client::no_redirects())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "pay auth",
                format!("cannot build an HTTP client: {e}"),
                "report this bug",
            );
            return;
        }
    };
    let url = match crate::pay::client::segment_url(
        base,
        &["installations", iid, "payments"],
        &[("limit", "1")],
    ) {
        Ok(u) => u,
        Err(e) => {
            r.fail(
                "pay auth",
                format!("cannot build the Zenchef Pay URL: {e}"),
                "check zenchef_pay.base_url and cashpad.installation_id",
            );
            return;
        }
    };
    match client.get(url).bearer_auth(token).send().await {
        Ok(resp) if resp.status().is_success() => {
            r.ok("pay auth", format!("token accepted for installation {iid}"))
        }
        Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) => r.fail(
            "pay auth",
            format!(
                "Zenchef Pay refused the token (HTTP {})",
                resp.status().as_u16()
            ),
            "check zenchef_pay.token",
        ),
        Ok(resp) if resp.status().as_u16() == 404 => r.fail(
            "pay auth",
            format!("Zenchef Pay does not know installation {iid} (HTTP 404)"),
            "enter the Server and Installation ID in Zenchef: see `zenchef-edge pay-settings`",
        ),
        Ok(resp) if resp.status().is_redirection() => r.fail(
            "pay auth",
            format!(
                "Zenchef Pay answered HTTP {}: {}",
                resp.status().as_u16(),
                crate::zenchef::client::redirect_message(resp.status(), resp.headers(), resp.url())
                    .unwrap_or_default()
            ),
            "check zenchef_pay.base_url: the box follows no redirect (the token would go along)",
        ),
        Ok(resp) => r.fail(
            "pay auth",
            format!("Zenchef Pay answered HTTP {}", resp.status().as_u16()),
            "retry later; if it persists, send this line to support",
        ),
        Err(e) => r.fail(
            "pay auth",
            transport_message(&e),
            "Zenchef Pay answered the TLS check but not this call: retry later",
        ),
    }
}

/// Every file of the state directory (one level, and `update-download/`)
/// belongs to the directory's owner: a command once run as root may have
/// left one the agent cannot replace (`update.lock`: every update check
/// then fails).
fn check_state_dir(r: &mut Report, config: &Config) {
    use std::os::unix::fs::MetadataExt;
    let dir = crate::update::Paths::new(std::path::PathBuf::new(), &config.store_path).state_dir;
    let shown = dir.display();
    let owner = match std::fs::metadata(&dir) {
        Ok(m) => m.uid(),
        Err(e) => {
            r.skip("state files", format!("{shown}: {e}"));
            return;
        }
    };
    let mut foreign: Vec<String> = Vec::new();
    let mut look = |d: &std::path::Path| {
        if let Ok(entries) = std::fs::read_dir(d) {
            for e in entries.flatten() {
                if let Ok(m) = e.path().symlink_metadata()
                    && m.uid() != owner
                {
                    let who = crate::privileges::user_name(m.uid())
                        .unwrap_or_else(|| m.uid().to_string());
                    foreign.push(format!("{} ({who})", e.file_name().to_string_lossy()));
                }
            }
        }
    };
    look(&dir);
    look(&dir.join("update-download"));
    let name = crate::privileges::user_name(owner).unwrap_or_else(|| owner.to_string());
    if foreign.is_empty() {
        r.ok(
            "state files",
            format!("every file in {shown} belongs to {name}"),
        );
    } else {
        foreign.sort();
        r.fail(
            "state files",
            format!(
                "{} in {shown} not owned by {name}: {}",
                if foreign.len() == 1 {
                    "a file"
                } else {
                    "files"
                },
                foreign.join(", ")
            ),
            format!(
                "the agent cannot replace them (a command run as root left them): sudo chown -R \
                 {name}: {shown}"
            ),
        );
    }
}

/// Updates: a usable signing key when they are enabled, and the daemon's
/// checks not failing in a row.
fn check_updates(r: &mut Report, config: &Config, store_ok: bool) {
    let u = &config.update;
    if !u.enabled || u.manifest_url.is_none() {
        r.skip(
            "updates",
            "automatic updates are off (update.enabled = false or no update.manifest_url)",
        );
        return;
    }
    if let Some(p) = crate::update::signing_key_problem(u).filter(|_| u.placeholder_key) {
        r.fail(
            "updates",
            p,
            "the binary carries the placeholder key of packaging/channel.toml: install a package \
             built with the release channel's real key (or, for a private channel, set \
             update.public_key), then systemctl restart zenchef-edge",
        );
        return;
    }
    if let Some(p) = crate::update::signing_key_problem(u) {
        r.fail(
            "updates",
            p,
            format!(
                "set update.public_key in {} to the release signing key (base64), then \
                 systemctl restart zenchef-edge",
                config.file.display()
            ),
        );
        return;
    }
    let failing = store_ok
        .then(|| store::open_read_only(&config.store_path).ok())
        .flatten()
        .and_then(|c| {
            crate::update::daemon::CheckFailures::parse(crate::outbox::kv_get(
                &c,
                crate::update::daemon::FAILURES_KV_KEY,
            ))
        })
        .and_then(|f| f.problem());
    match failing {
        Some(p) => r.fail(
            "updates",
            p,
            "see journalctl -u zenchef-edge -g update; `zenchef-edge update check` shows what \
             the manifest offers",
        ),
        None => r.ok(
            "updates",
            format!(
                "enabled ({}, keys from {}), the signing key is valid, no failing checks",
                u.manifest_url.as_deref().unwrap_or("?"),
                u.keys_from
            ),
        ),
    }
}

fn check_tables(r: &mut Report, config: &Config, store_ok: bool, zenchef: Option<&[String]>) {
    let Some(zenchef) = zenchef else {
        r.skip(
            "tables",
            "not checked: the Zenchef tables could not be read",
        );
        return;
    };
    if !store_ok {
        r.skip("tables", "not checked: no store");
        return;
    }
    let pos = store::open_read_only(&config.store_path)
        .map_err(anyhow::Error::from)
        .and_then(|c| tables::pos_tables(&c));
    let pos = match pos {
        Ok(Some(p)) => p,
        Ok(None) => {
            r.fail(
                "tables",
                "no floor plan received from the POS yet",
                "the agent stores it once connected to the POS (see `zenchef-edge status`); the \
                 POS publishes it on cashpad/<iid>/floorplan",
            );
            return;
        }
        Err(e) => {
            r.fail(
                "tables",
                format!("cannot read the floor plan: {e}"),
                "see `zenchef-edge status`",
            );
            return;
        }
    };
    let d = tables::compare(&pos, zenchef);
    if d.is_clean() {
        r.ok(
            "tables",
            format!(
                "{} tables, the same names in the POS and in Zenchef",
                d.identical.len()
            ),
        );
    } else {
        let found = tables::describe(&d).join("; ");
        r.fail(
            "tables",
            found,
            "names must be identical in the POS and in Zenchef (the integration's first set-up rule): rename them, \
             see `zenchef-edge tables`",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_yet_valid_certificate_names_the_clock() {
        assert!(
            tls_hint(TransportFailure::CertNotYetValid, "api.zenchef.com", 443)
                .contains("the system clock is wrong")
        );
        assert!(tls_hint(TransportFailure::Connect, "h", 1).contains("cannot reach h:1"));
        assert!(tls_hint(TransportFailure::Timeout, "h", 1).starts_with("no answer from h:1"));
        assert!(tls_hint(TransportFailure::CertRefused, "h", 1).contains("a proxy may intercept"));
    }
}
