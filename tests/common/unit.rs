//! The systemd unit, played by a thread (tests/update.rs,
//! tests/rollback.rs): before each start it runs
//! `zenchef-edge.previous update boot-check` when that file exists
//! (`ExecStartPre=-…`), gives both the same fresh `INVOCATION_ID`, and
//! restarts the agent whatever its exit code except 78 (`Restart=always`,
//! `RestartPreventExitStatus=78`, `RestartSec=` 200 ms), at most 20 starts.
//!
//! The box is a folder laid out as the package lays the box out:
//! `bin/zenchef-edge`, `bin/zenchef-edge.previous`, `agent.toml`; the
//! agent's output and the unit's own `[supervisor] …` lines go to
//! `agent.log`.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zenchef_sim::util::random_hex;

/// Starts at most this many times (a unit that never settles ends the test).
const MAX_STARTS: usize = 20;

/// The unit running a box's agent; dropping it stops the agent (SIGTERM)
/// and the unit.
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    exits: Arc<Mutex<Vec<i32>>>,
    pid: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the unit of the box in `dir` (layout in the module docs).
    pub fn start(dir: &Path) -> Supervisor {
        let bin = dir.join("bin/zenchef-edge");
        let previous = dir.join("bin/zenchef-edge.previous");
        let config = dir.join("agent.toml");
        let log = dir.join("agent.log");
        let stop = Arc::new(AtomicBool::new(false));
        let exits: Arc<Mutex<Vec<i32>>> = Arc::default();
        let pid = Arc::new(AtomicU32::new(0));
        let (s2, e2, p2) = (stop.clone(), exits.clone(), pid.clone());
        let thread = std::thread::spawn(move || {
            for _ in 0..MAX_STARTS {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let invocation = random_hex(32);
                let logf = || {
                    fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .unwrap()
                };
                // ExecStartPre=-/…/zenchef-edge.previous update boot-check
                if previous.exists() {
                    let out = Command::new(&previous)
                        .args(["update", "boot-check", "--config"])
                        .arg(&config)
                        .env("INVOCATION_ID", &invocation)
                        .stdout(logf())
                        .stderr(logf())
                        .status();
                    let _ = writeln!(
                        logf(),
                        "[supervisor] boot-check exited {:?}",
                        out.ok().and_then(|s| s.code())
                    );
                }
                // ExecStart=/usr/bin/zenchef-edge run
                let mut child = Command::new(&bin)
                    .args(["run", "--config"])
                    .arg(&config)
                    .env("INVOCATION_ID", &invocation)
                    .env("RUST_LOG", "info")
                    .env_remove("JOURNAL_STREAM")
                    .stdin(Stdio::null())
                    .stdout(logf())
                    .stderr(logf())
                    .spawn()
                    .unwrap();
                p2.store(child.id(), Ordering::SeqCst);
                let code = loop {
                    if let Some(st) = child.try_wait().unwrap() {
                        break st.code().unwrap_or(-1);
                    }
                    if s2.load(Ordering::SeqCst) {
                        let _ = Command::new("kill")
                            .arg("-TERM")
                            .arg(child.id().to_string())
                            .status();
                        let _ = child.wait();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                p2.store(0, Ordering::SeqCst);
                let _ = writeln!(logf(), "[supervisor] run exited {code}");
                e2.lock().unwrap().push(code);
                if code == 78 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200)); // RestartSec=
            }
        });
        Supervisor {
            stop,
            exits,
            pid,
            thread: Some(thread),
        }
    }

    /// The exit codes of the agent's runs so far (-1: killed by a signal).
    pub fn exits(&self) -> Vec<i32> {
        self.exits.lock().unwrap().clone()
    }

    /// SIGKILL of the running agent (a hang the watchdog ends, a power
    /// cut): it gets no chance to roll itself back. Panics when no agent
    /// runs.
    pub fn kill(&self) {
        let pid = self.pid.load(Ordering::SeqCst);
        assert_ne!(pid, 0, "no agent running");
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
