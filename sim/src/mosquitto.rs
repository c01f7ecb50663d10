//! A real mosquitto broker as a child process, for the tests that must stop
//! and restart the POS broker (the in-process rumqttd of [`crate::broker`]
//! cannot be stopped).
//!
//! Started with its own configuration file in a test directory: listeners
//! on `127.0.0.1` only (one or more ports), password authentication
//! (`mosquitto_passwd -b`), `allow_anonymous false`, persistence on (so a
//! restart keeps the persistent sessions and their queued QoS 1 messages),
//! no limit on queued messages. Never the system service: the process is
//! the test's own and dies with the handle.
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

/// A mosquitto process the test owns.
#[derive(Debug)]
pub struct Mosquitto {
    /// Its listener ports on `127.0.0.1`, first one first.
    pub ports: Vec<u16>,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl Mosquitto {
    /// Writes the password file and the configuration into `dir` and starts
    /// the broker with `listeners` listeners on free ports; returns once the
    /// first port accepts TCP connections.
    pub fn start(
        dir: &Path,
        users: &[(String, String)],
        listeners: usize,
    ) -> anyhow::Result<Mosquitto> {
        anyhow::ensure!(available(), "mosquitto is not installed");
        std::fs::create_dir_all(dir)?;
        let passwd = dir.join("passwd");
        let _ = std::fs::remove_file(&passwd);
        std::fs::write(&passwd, b"")?;
        for (user, pass) in users {
            let st = Command::new(MOSQUITTO_PASSWD_BIN)
                .arg("-b")
                .arg(&passwd)
                .arg(user)
                .arg(pass)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            anyhow::ensure!(st.success(), "mosquitto_passwd failed for {user}");
        }
        let ports = (0..listeners.max(1))
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let mut conf = format!(
            "per_listener_settings false\n\
             allow_anonymous false\n\
             password_file {passwd}\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 0\n\
             max_inflight_messages 20\n\
             user root\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            passwd = passwd.display(),
            dir = dir.display(),
        );
        for p in &ports {
            conf.push_str(&format!("listener {p} 127.0.0.1\n"));
        }
        std::fs::write(dir.join("mosquitto.conf"), conf)?;
        let mut m = Mosquitto {
            ports,
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
        };
        m.spawn()?;
        Ok(m)
    }

    /// The first listener's port.
    pub fn port(&self) -> u16 {
        self.ports[0]
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
        for p in &self.ports {
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
