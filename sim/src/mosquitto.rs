//! A real mosquitto broker as a child process, for the tests that must stop
//! and restart the POS broker (the in-process rumqttd of [`crate::broker`]
//! cannot be stopped), and for the fleet broker (TLS with client
//! certificates, an ACL).
//!
//! Started with its own configuration file in a test directory: listeners
//! on `127.0.0.1` only, never the system service: the process is the test's
//! own and dies with the handle. [`Mosquitto::start`] is the POS broker of
//! the infrastructure tests: plain listeners (one or more ports), password
//! authentication, `allow_anonymous false` (unless asked), persistence on (so a restart
//! keeps the persistent sessions and their queued QoS 1 messages), no limit
//! on queued messages. [`Mosquitto::start_with`] takes [`MosquittoOptions`]:
//! TLS listeners as well (CA, server certificate, client certificates
//! required or not, the certificate's CN as the username), an ACL file, and
//! persistence off.
//!
//! One set of settings serves every listener (`per_listener_settings
//! false`): the password file is what plain listeners check, a TLS listener
//! with `use_identity_as_username` takes the username from the client
//! certificate instead (mosquitto then checks no password), and the ACL
//! applies to both kinds of usernames alike.
//!
//! Needs the `mosquitto` package (`.ci/run` installs it); [`available`]
//! tells whether it is there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{free_port, wait_for_tcp};

/// Where Debian installs the broker.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";
/// Where Debian installs the password tool.
pub const MOSQUITTO_PASSWD_BIN: &str = "/usr/bin/mosquitto_passwd";

/// Are the mosquitto binaries installed?
pub fn available() -> bool {
    Path::new(MOSQUITTO_BIN).exists() && Path::new(MOSQUITTO_PASSWD_BIN).exists()
}

/// A TLS listener of [`MosquittoOptions`].
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// PEM file of the CA(s) client certificates must chain to (`cafile`).
    pub cafile: PathBuf,
    /// The broker's certificate, PEM (`certfile`).
    pub certfile: PathBuf,
    /// Its key, PEM (`keyfile`).
    pub keyfile: PathBuf,
    /// Refuse clients without a certificate signed by `cafile`
    /// (`require_certificate`).
    pub require_certificate: bool,
    /// The client certificate's CN is the username (`use_identity_as_username`):
    /// no password is checked, the ACL sees the CN.
    pub use_identity_as_username: bool,
    /// `tls_version` (e.g. `tlsv1.2`); `None`: mosquitto's default (TLS 1.2
    /// and 1.3).
    pub tls_version: Option<String>,
}

impl TlsListener {
    /// A listener requiring a client certificate signed by `cafile`, whose
    /// CN is the username.
    pub fn mutual(cafile: &Path, certfile: &Path, keyfile: &Path) -> TlsListener {
        TlsListener {
            cafile: cafile.to_path_buf(),
            certfile: certfile.to_path_buf(),
            keyfile: keyfile.to_path_buf(),
            require_certificate: true,
            use_identity_as_username: true,
            tls_version: None,
        }
    }
}

/// How [`Mosquitto::start_with`] configures the broker.
#[derive(Debug, Clone)]
pub struct MosquittoOptions {
    /// Password users `(username, password)` of the plain listeners.
    pub users: Vec<(String, String)>,
    /// How many plain (password) listeners, on free ports: [`Mosquitto::ports`].
    pub plain_listeners: usize,
    /// TLS listeners, on free ports: [`Mosquitto::tls_ports`], in this order.
    pub tls_listeners: Vec<TlsListener>,
    /// The text of an ACL file (`acl_file`), e.g.
    /// `pattern write fleet/%u/status`; `None`: every authenticated client
    /// may read and write every topic.
    pub acl: Option<String>,
    /// Keep retained messages and sessions across a restart (`persistence`).
    /// Off, a restarted broker holds nothing: a retained message seen after
    /// it was published again.
    pub persistence: bool,
    /// Log every packet too (`log_type debug`), e.g. the `Denied PUBLISH`
    /// lines of the ACL.
    pub log_debug: bool,
    /// Let in clients without a username (`allow_anonymous true`): a POS
    /// broker set up wrong (docs/pos-broker.md).
    pub allow_anonymous: bool,
    /// More lines for the configuration file, e.g.
    /// `message_size_limit 1048576`.
    pub extra_conf: String,
}

impl Default for MosquittoOptions {
    /// One plain listener, no user, no TLS, no ACL, persistence on.
    fn default() -> Self {
        MosquittoOptions {
            users: Vec::new(),
            plain_listeners: 1,
            tls_listeners: Vec::new(),
            acl: None,
            persistence: true,
            log_debug: false,
            allow_anonymous: false,
            extra_conf: String::new(),
        }
    }
}

/// A mosquitto process the test owns.
#[derive(Debug)]
pub struct Mosquitto {
    /// Its plain listener ports on `127.0.0.1`, first one first.
    pub ports: Vec<u16>,
    /// Its TLS listener ports on `127.0.0.1`, in the order of
    /// [`MosquittoOptions::tls_listeners`].
    pub tls_ports: Vec<u16>,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl Mosquitto {
    /// Writes the password file and the configuration into `dir` and starts
    /// the broker with `listeners` plain listeners on free ports, password
    /// users `users`, persistence on; returns once every port accepts TCP
    /// connections.
    pub fn start(
        dir: &Path,
        users: &[(String, String)],
        listeners: usize,
    ) -> anyhow::Result<Mosquitto> {
        Mosquitto::start_with(
            dir,
            &MosquittoOptions {
                users: users.to_vec(),
                plain_listeners: listeners.max(1),
                ..MosquittoOptions::default()
            },
        )
    }

    /// Writes the password file, the ACL and the configuration of `opts`
    /// into `dir` and starts the broker; returns once every port accepts
    /// TCP connections.
    pub fn start_with(dir: &Path, opts: &MosquittoOptions) -> anyhow::Result<Mosquitto> {
        anyhow::ensure!(available(), "mosquitto is not installed");
        anyhow::ensure!(
            opts.plain_listeners + opts.tls_listeners.len() > 0,
            "mosquitto needs at least one listener"
        );
        std::fs::create_dir_all(dir)?;
        let passwd = dir.join("passwd");
        // Plain text first, then hashed in place in one run (`-U`).
        let mut plain = String::new();
        for (user, pass) in &opts.users {
            anyhow::ensure!(
                !user.contains(':') && !user.contains('\n') && !pass.contains('\n'),
                "mosquitto password file: bad user {user:?}"
            );
            plain.push_str(&format!("{user}:{pass}\n"));
        }
        std::fs::write(&passwd, plain)?;
        if !opts.users.is_empty() {
            let st = Command::new(MOSQUITTO_PASSWD_BIN)
                .arg("-U")
                .arg(&passwd)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            anyhow::ensure!(st.success(), "mosquitto_passwd -U failed");
        }
        let ports = (0..opts.plain_listeners)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let tls_ports = (0..opts.tls_listeners.len())
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let mut conf = format!(
            "per_listener_settings false\n\
             allow_anonymous {anonymous}\n\
             password_file {passwd}\n\
             persistence {persistence}\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 0\n\
             max_inflight_messages 20\n\
             user root\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            passwd = passwd.display(),
            dir = dir.display(),
            persistence = opts.persistence,
            anonymous = opts.allow_anonymous,
        );
        conf.push_str(&opts.extra_conf);
        if !conf.ends_with('\n') {
            conf.push('\n');
        }
        if opts.log_debug {
            conf.push_str("log_type debug\n");
        }
        if let Some(acl) = &opts.acl {
            let path = dir.join("acl");
            std::fs::write(&path, acl)?;
            conf.push_str(&format!("acl_file {}\n", path.display()));
        }
        // A broker without persistence must not find the file of an earlier
        // run with it.
        if !opts.persistence {
            let _ = std::fs::remove_file(dir.join("mosquitto.db"));
        }
        for p in &ports {
            conf.push_str(&format!("listener {p} 127.0.0.1\n"));
        }
        for (p, t) in tls_ports.iter().zip(&opts.tls_listeners) {
            conf.push_str(&format!(
                "listener {p} 127.0.0.1\n\
                 cafile {}\n\
                 certfile {}\n\
                 keyfile {}\n\
                 require_certificate {}\n\
                 use_identity_as_username {}\n",
                t.cafile.display(),
                t.certfile.display(),
                t.keyfile.display(),
                t.require_certificate,
                t.use_identity_as_username,
            ));
            if let Some(v) = &t.tls_version {
                conf.push_str(&format!("tls_version {v}\n"));
            }
        }
        std::fs::write(dir.join("mosquitto.conf"), conf)?;
        let mut m = Mosquitto {
            ports,
            tls_ports,
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
        };
        m.spawn()?;
        Ok(m)
    }

    /// The first plain listener's port (panics without one).
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// The first TLS listener's port (panics without one).
    pub fn tls_port(&self) -> u16 {
        self.tls_ports[0]
    }

    /// Is the broker process running (started and not exited)?
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(MOSQUITTO_BIN)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        self.starts += 1;
        for p in self.ports.iter().chain(&self.tls_ports) {
            wait_for_tcp(*p, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// SIGTERM (mosquitto saves its persistence file), then waits for the
    /// exit: a broker service restart.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status()?;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if c.try_wait()?.is_some() {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    c.kill()?;
                    c.wait()?;
                    anyhow::bail!("mosquitto did not stop within 10 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// SIGKILL: the broker dies at once (only what its last autosave holds
    /// survives).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts it again with the same configuration and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "mosquitto is still running");
        // The old process may leave the ports in TIME_WAIT briefly; mosquitto
        // sets SO_REUSEADDR, so a plain retry is enough.
        let mut tries = 0;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::debug!("mosquitto restart: {e}");
                    let _ = self.kill();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The broker's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
