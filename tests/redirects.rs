//! No client of the agent follows a redirect (docs/decisions.md, "No
//! redirect is followed"): a Zenchef, Zenchef Pay or update server that
//! answers 307 towards another server never gets its secret header carried
//! there, and the agent says where it was sent (scheme, host and port only:
//! never the path or the query, which may hold a secret).
//!
//! Real parts: the agent binary (`doctor`, `update check`, the daemon's
//! `status`), two HTTP servers on 127.0.0.1 written here from HTTP/1.1
//! itself — one answers every request with a 307 to the other, which
//! records every request head it receives.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");
const ZENCHEF_TOKEN: &str = "zc-token-must-stay-home";
const PAY_TOKEN: &str = "pay-token-must-stay-home";

/// A server on 127.0.0.1 answering every request with `answer(port)`,
/// keeping each request head it read.
struct Server {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(answer: impl Fn() -> String + Send + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = heads.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut head = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                kept.lock().unwrap().push(head);
                let _ = s.write_all(answer().as_bytes());
            }
        });
        Server { port, heads }
    }

    /// Records requests and answers `200 {"data":[]}`.
    fn recorder() -> Server {
        Server::start(|| {
            let body = r#"{"data":[]}"#;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        })
    }

    /// Answers every request with a 307 to `to`'s port, with a path and a
    /// query that must never be shown.
    fn redirecting_to(to: u16) -> Server {
        Server::start(move || {
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: \
                 http://127.0.0.1:{to}/moved/here?sig=query-secret\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
        })
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Every base URL points at `redirector`; the POS is on a closed port.
fn config(dir: &Path, redirector: u16) -> PathBuf {
    let closed = zenchef_sim::util::free_port().unwrap();
    let text = format!(
        r#"[restaurant]
timezone = "UTC"
[cashpad]
token = "cp-token"
host = "127.0.0.1"
port = {closed}
installation_id = "CP-REDIR1"
[zenchef]
restaurant_id = "1"
token = "{ZENCHEF_TOKEN}"
base_url = "http://127.0.0.1:{redirector}/api/v1"
[zenchef_pay]
enabled = true
token = "{PAY_TOKEN}"
base_url = "http://127.0.0.1:{redirector}/pos/v1"
[store]
path = "{store}"
[update]
enabled = true
manifest_url = "http://127.0.0.1:{redirector}/edge/manifest.json"
[http]
listen = ""
"#,
        store = dir.join("agent.db").display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn no_secret_in(text: &str) {
    for s in [ZENCHEF_TOKEN, PAY_TOKEN, "query-secret", "/moved/here"] {
        assert!(!text.contains(s), "{s} in\n{text}");
    }
}

fn check<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {d}"))
}

#[test]
fn doctor_and_update_check_follow_no_redirect_and_say_where_it_pointed() {
    let dir = tempfile::tempdir().unwrap();
    let other = Server::recorder();
    let redirector = Server::redirecting_to(other.port);
    let cfg = config(dir.path(), redirector.port);
    let moved = format!(
        "redirected to http://127.0.0.1:{} (not followed)",
        other.port
    );

    let out = Command::new(AGENT)
        .args(["doctor", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let d: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let z = check(&d, "zenchef auth");
    assert_eq!(z["outcome"], "fail", "{z}");
    assert!(
        z["detail"].as_str().unwrap().contains(&moved),
        "{z}\n{text}"
    );
    assert!(
        z["hint"].as_str().unwrap().contains("zenchef.base_url"),
        "{z}"
    );
    let p = check(&d, "pay auth");
    assert_eq!(p["outcome"], "fail", "{p}");
    assert!(p["detail"].as_str().unwrap().contains(&moved), "{p}");
    no_secret_in(&text);

    let out = Command::new(AGENT)
        .args(["update", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&moved), "{text}");
    no_secret_in(&text);

    // The redirector was asked (with the tokens: it is the configured
    // server); the other server never was.
    let asked = redirector.heads().join("\n");
    assert!(
        asked.contains(ZENCHEF_TOKEN) && asked.contains(PAY_TOKEN),
        "{asked}"
    );
    assert!(asked.contains("GET /edge/manifest.json"), "{asked}");
    assert_eq!(other.heads(), Vec::<String>::new(), "followed a redirect");
}

#[test]
fn the_daemon_reports_a_redirect_in_status_without_following_it() {
    let dir = tempfile::tempdir().unwrap();
    let other = Server::recorder();
    let redirector = Server::redirecting_to(other.port);
    let cfg = config(dir.path(), redirector.port);
    let log = dir.path().join("agent.log");
    let mut child = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let moved = format!(
        "redirected to http://127.0.0.1:{} (not followed)",
        other.port
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let out = Command::new(AGENT)
            .args(["status", "--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let s: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if s["zenchef"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&moved))
        {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "no redirect in status: {s}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = child.kill();
    let _ = child.wait();
    // Retried like an outage: nothing goes dead for an address problem.
    assert_eq!(status["zenchef"]["state"], "outage", "{status}");
    let journal = std::fs::read_to_string(&log).unwrap_or_default();
    no_secret_in(&status.to_string());
    no_secret_in(&journal);
    assert_eq!(other.heads(), Vec::<String>::new(), "followed a redirect");
}
