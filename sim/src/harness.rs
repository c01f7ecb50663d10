//! A rig that runs the **real agent binary** against the simulators: the
//! broker, the mDNS advert, the Zenchef fake and the POS, plus the agent as
//! a child process with a generated configuration file. Used by the demo and
//! by the agent's end-to-end tests.
//!
//! The agent is only known here by its command line and the documented
//! configuration keys (docs/protocol/agent-interface.md); nothing of its code is used.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::broker::{Broker, BrokerOptions, start_broker};
use crate::mdns::{Advertiser, PosAdvert, advertise};
use crate::pay::{PayConfig, PayFake};
use crate::pos::Pos;
use crate::util::free_port;
use crate::zenchef::{ZenchefConfig, ZenchefFake};

/// MQTT user the POS simulator logs in with.
pub const POS_USER: &str = "cashpad-pos";
/// Its password.
pub const POS_PASSWORD: &str = "pos-secret";
/// Username the agent must use (cashpad §2).
pub const AGENT_USER: &str = "zenchef-edge";

/// How to build a rig.
#[derive(Clone)]
pub struct RigOptions {
    /// Cashpad Installation ID.
    pub iid: String,
    /// The Cashpad token (the agent's MQTT password).
    pub cashpad_token: String,
    /// Zenchef fake configuration (restaurant id and token included).
    pub zenchef: ZenchefConfig,
    /// `[restaurant] timezone` given to the agent. The scenario uses a fixed
    /// +01:00 offset, so the default is `Etc/GMT-1` (UTC+1 all year).
    pub timezone: String,
    /// Cashpad app version announced (TXT `app`).
    pub app_version: String,
    /// Write `installation_id` in the agent's configuration.
    pub configure_iid: bool,
    /// Extra TOML appended to the agent's configuration (after the
    /// `[delivery]` table: start a new table for other keys).
    pub extra_config: String,
    /// TOML put before every table (e.g. `config_version = 2`).
    pub config_head: String,
    /// Lines added inside `[store]` (after `path`), e.g. `keep_days = 90`.
    pub store_config: String,
    /// Lines added inside `[update]` (after `enabled = false`, or after
    /// `update_table`), e.g. `window = "03:00-05:00"`.
    pub update_config: String,
    /// Start a Zenchef Pay fake and enable `[zenchef_pay]` in the agent.
    pub pay: Option<PayConfig>,
    /// `[http] listen` (`""` = off, the default; e.g. `127.0.0.1:<port>`).
    pub http_listen: String,
    /// `[http] history_sample_s` (the agent's default, 60, when `None`):
    /// a few seconds give a chart within a short run.
    pub history_sample_s: Option<u64>,
    /// The keys of the `[update]` table, in place of `enabled = false`
    /// (`update_config` is still appended).
    pub update_table: Option<String>,
    /// `[zenchef] poll_interval_s` (default 1).
    pub poll_interval_s: u64,
    /// Use a broker that is already running on `127.0.0.1:<port>` (e.g. a
    /// mosquitto the test manages) instead of starting the in-process one.
    /// It must accept [`AGENT_USER`] with `cashpad_token` and [`POS_USER`]
    /// with [`POS_PASSWORD`].
    pub broker_port: Option<u16>,
    /// Where the agent's store lives (default `<dir>/agent.db`), e.g. on a
    /// small filesystem the test mounted.
    pub store_path: Option<PathBuf>,
    /// Give the agent this Zenchef base URL instead of the fake's (e.g. a
    /// TLS server the test runs).
    pub zenchef_base_url: Option<String>,
    /// Extra environment variables for the agent process (e.g. `LD_PRELOAD`
    /// and `FAKETIME` to run it with a wrong clock).
    pub agent_env: Vec<(String, String)>,
    /// `delivery.retry_max_s`: cap of the retry backoff and of the outage
    /// probe interval (tests: 1; the agent's default is 60).
    pub retry_max_s: u64,
    /// `delivery.credentials_retry_s` (tests: 2; the agent's default is 300).
    pub credentials_retry_s: u64,
    /// `delivery.http_timeout_s` (tests: 2; the agent's default is 15).
    pub http_timeout_s: u64,
}

impl RigOptions {
    /// Defaults for a given Zenchef fake configuration.
    pub fn new(zenchef: ZenchefConfig) -> Self {
        // A fresh Installation ID and token per rig: rigs running at the
        // same time on this machine (parallel tests) must never take each
        // other's POS, even if their mDNS ports collide.
        RigOptions {
            iid: format!("CP-{}", crate::util::random_hex(6).to_uppercase()),
            cashpad_token: format!("cashpad-token-{}", crate::util::random_hex(12)),
            zenchef,
            timezone: "Etc/GMT-1".into(),
            app_version: "2.0.18".into(),
            configure_iid: true,
            extra_config: String::new(),
            config_head: String::new(),
            store_config: String::new(),
            update_config: String::new(),
            pay: None,
            http_listen: String::new(),
            history_sample_s: None,
            update_table: None,
            poll_interval_s: 1,
            broker_port: None,
            store_path: None,
            zenchef_base_url: None,
            agent_env: Vec::new(),
            retry_max_s: 1,
            credentials_retry_s: 2,
            http_timeout_s: 2,
        }
    }

    /// The agent's production timings (docs/protocol/agent-interface.md defaults): poll
    /// every 30 s, retry backoff capped at 60 s, credentials retried every
    /// 300 s, HTTP timeout 15 s. For measurements of an idle or online box.
    pub fn production_timing(mut self) -> Self {
        self.poll_interval_s = 30;
        self.retry_max_s = 60;
        self.credentials_retry_s = 300;
        self.http_timeout_s = 15;
        self
    }
}

/// The running simulators and (optionally) the agent.
pub struct Rig {
    /// Options used.
    pub opts: RigOptions,
    /// Directory holding the configuration, the store and the agent's log.
    pub dir: PathBuf,
    /// The broker.
    pub broker: Broker,
    /// mDNS port used by the advert and the agent.
    pub mdns_port: u16,
    /// The POS advert.
    pub advert: Option<Advertiser>,
    /// The Zenchef fake.
    pub zenchef: ZenchefFake,
    /// The Zenchef Pay fake (when `opts.pay` was set).
    pub pay: Option<PayFake>,
    /// The POS simulator.
    pub pos: Pos,
    /// The agent binary.
    pub agent_bin: PathBuf,
    /// The agent process, when running.
    pub agent: Option<Child>,
    /// How many times the agent was started.
    pub starts: u32,
}

impl Rig {
    /// Starts broker, advert, Zenchef fake and POS (not the agent).
    pub async fn start(opts: RigOptions, agent_bin: &Path, dir: &Path) -> anyhow::Result<Rig> {
        std::fs::create_dir_all(dir)?;
        let broker = match opts.broker_port {
            Some(port) => Broker { port },
            None => start_broker(BrokerOptions {
                port: 0,
                users: vec![
                    (AGENT_USER.into(), opts.cashpad_token.clone()),
                    (POS_USER.into(), POS_PASSWORD.into()),
                ],
            })?,
        };
        let mdns_port = free_port()?;
        let mut advert = PosAdvert::new(mdns_port, &opts.iid, broker.port);
        advert.app = opts.app_version.clone();
        advert.instance = "Cashpad Server (Le Bistrot)".into();
        let advert = advertise(advert)?;
        let zenchef = ZenchefFake::start(opts.zenchef.clone()).await?;
        let pay = match &opts.pay {
            Some(p) => {
                let mut p = p.clone();
                p.installation_id = opts.iid.clone();
                Some(PayFake::start(p).await?)
            }
            None => None,
        };
        let pos = Pos::connect(broker.port, &opts.iid, POS_USER, POS_PASSWORD).await?;
        Ok(Rig {
            opts,
            dir: dir.to_path_buf(),
            broker,
            mdns_port,
            advert: Some(advert),
            zenchef,
            pay,
            pos,
            agent_bin: agent_bin.to_path_buf(),
            agent: None,
            starts: 0,
        })
    }

    /// Path of the agent's configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    /// Path of the agent's store.
    pub fn store_path(&self) -> PathBuf {
        self.opts
            .store_path
            .clone()
            .unwrap_or_else(|| self.dir.join("agent.db"))
    }

    /// Path of the agent's log (stderr of every run, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// The configuration file the rig writes (docs/protocol/agent-interface.md keys).
    pub fn config_text(&self) -> String {
        let o = &self.opts;
        let iid = if o.configure_iid {
            format!("installation_id = \"{}\"\n", o.iid)
        } else {
            String::new()
        };
        let pay = match (&self.pay, &o.pay) {
            (Some(fake), Some(cfg)) => format!(
                "\n[zenchef_pay]\nenabled = true\nbase_url = \"{}\"\ntoken = \"{}\"\n",
                fake.base_url(),
                cfg.token
            ),
            _ => String::new(),
        };
        format!(
            r#"{head}[restaurant]
timezone = "{tz}"
currency = "EUR"

[cashpad]
token = "{ctoken}"
{iid}mdns_port = {mdns}
interfaces = ["lo"]

[zenchef]
restaurant_id = "{rid}"
token = "{ztoken}"
base_url = "{base}"
poll_interval_s = {poll}

[store]
path = "{store}"
{store_extra}
[update]
{update_body}
{update_extra}

[http]
listen = "{http}"
{history}
[delivery]
retry_max_s = {retry_max}
credentials_retry_s = {cred_retry}
http_timeout_s = {http_timeout}
{pay}{extra}"#,
            tz = o.timezone,
            ctoken = o.cashpad_token,
            mdns = self.mdns_port,
            rid = o.zenchef.restaurant_id,
            ztoken = o.zenchef.token,
            base = o
                .zenchef_base_url
                .clone()
                .unwrap_or_else(|| self.zenchef.base_url()),
            store = self.store_path().display(),
            extra = o.extra_config,
            head = o.config_head,
            store_extra = o.store_config,
            update_extra = o.update_config,
            poll = o.poll_interval_s,
            http = o.http_listen,
            update_body = o.update_table.as_deref().unwrap_or("enabled = false"),
            history = o
                .history_sample_s
                .map(|s| format!("history_sample_s = {s}\n"))
                .unwrap_or_default(),
            retry_max = o.retry_max_s,
            cred_retry = o.credentials_retry_s,
            http_timeout = o.http_timeout_s,
        )
    }

    /// Writes the configuration (mode 0600) and starts the agent
    /// (`zenchef-edge run --config …`), stderr appended to the log.
    pub fn spawn_agent(&mut self) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let cfg = self.config_path();
        {
            use std::io::Write;
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&cfg)?;
            f.write_all(self.config_text().as_bytes())?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.agent_bin)
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .env(
                "RUST_LOG",
                std::env::var("AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("JOURNAL_STREAM")
            .envs(self.opts.agent_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.agent = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// The agent's process id, when running.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    /// `Some(exit code)` when the agent process has exited (`-1` when killed
    /// by a signal), `None` while it runs or when none was started.
    pub fn agent_exited(&mut self) -> Option<i32> {
        let c = self.agent.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => Some(st.code().unwrap_or(-1)),
            _ => None,
        }
    }

    /// SIGKILL: the agent dies at once, no cleanup.
    pub fn kill_agent(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.agent.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; answers the
    /// exit code.
    pub fn stop_agent(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let Some(mut c) = self.agent.take() else {
            return Ok(None);
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st.code());
            }
            if std::time::Instant::now() >= deadline {
                c.kill()?;
                c.wait()?;
                anyhow::bail!("the agent did not stop within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `zenchef-edge <args…> --config <rig config>` and answers (exit
    /// code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
        let out = Command::new(&self.agent_bin)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// `zenchef-edge status --json`, parsed.
    pub fn status(&self) -> anyhow::Result<Value> {
        let (code, out, err) = self.cli(&["status", "--json"])?;
        anyhow::ensure!(code == 0, "status exited {code}: {err}");
        Ok(serde_json::from_str(&out)?)
    }

    /// A counter of `status --json` (`counts.<name>`), 0 when unreadable.
    pub fn count(&self, name: &str) -> i64 {
        self.status()
            .ok()
            .and_then(|s| s["counts"][name].as_i64())
            .unwrap_or(0)
    }

    /// Waits until `condition(status)` holds, polling `status --json`.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            if let Ok(s) = self.status() {
                if condition(&s) {
                    return Ok(s);
                }
                last = s;
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for {what}; last status: {last}\n--- agent log tail ---\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `n` lines of the agent's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole agent log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
