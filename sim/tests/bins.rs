//! The standalone simulators (`pos-sim`, `zenchef-sim`, `pay-sim`) as the
//! image's boot test runs them, against the real agent on this machine: one
//! phone payment goes from the guest (Zenchef Pay) through the agent to the
//! POS, which closes the bill with it, and the ticket reaches Zenchef.
//!
//! The agent is the binary the workspace build left beside the test
//! (`target/<profile>/zenchef-edge`: `cargo test --workspace` builds it
//! first; alone, `cargo build --bin zenchef-edge`), or `ZENCHEF_EDGE_BIN`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zenchef_sim::util::free_port;

const IID: &str = "CP-4F2A91";

/// The agent binary to run.
fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ZENCHEF_EDGE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/bins-… → target/<profile>/zenchef-edge
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("zenchef-edge");
    assert!(
        bin.exists(),
        "no agent at {}: cargo build --bin zenchef-edge (or set ZENCHEF_EDGE_BIN)",
        bin.display()
    );
    bin
}

/// Child processes killed when the test ends, whatever happens.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(procs: &mut Procs, bin: &Path, args: &[String], log: &Path) {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    procs.0.push(child);
}

/// Waits until `log` has a line for which `find` answers something, then
/// answers it; fails after `timeout` with every log of `dir`.
fn wait_line<T>(
    dir: &Path,
    log: &str,
    timeout: Duration,
    mut find: impl FnMut(&str) -> Option<T>,
) -> T {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        if let Some(v) = text.lines().find_map(&mut find) {
            return v;
        }
        if t0.elapsed() > timeout {
            let mut all = String::new();
            for name in ["pay-sim.log", "pos-sim.log", "zenchef-sim.log", "agent.log"] {
                let t = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
                let tail: Vec<&str> = t.lines().rev().take(30).collect();
                all += &format!(
                    "--- {name} (last lines, newest first)\n{}\n",
                    tail.join("\n")
                );
            }
            panic!("no awaited line in {log} after {timeout:?}\n{all}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_phone_payment_is_settled_through_the_agent_and_closes_the_bill() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mqtt, mdns, zc, pay) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let day = chrono::Utc::now()
        .with_timezone(&zenchef_sim::pos::paris_winter())
        .date_naive()
        .to_string();
    let mut procs = Procs(Vec::new());
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    spawn(
        &mut procs,
        Path::new(env!("CARGO_BIN_EXE_zenchef-sim")),
        &s(&[
            "--port",
            &zc.to_string(),
            "--token",
            "zc-bins",
            "--restaurant-id",
            "654321",
            "--day",
            &day,
        ]),
        &d.join("zenchef-sim.log"),
    );
    spawn(
        &mut procs,
        Path::new(env!("CARGO_BIN_EXE_pay-sim")),
        &s(&[
            "--port",
            &pay.to_string(),
            "--token",
            "pay-bins",
            "--installation-id",
            IID,
            "--guest-pays-first",
            "1",
            "--tip-cents",
            "300",
            "--day",
            &day,
        ]),
        &d.join("pay-sim.log"),
    );
    spawn(
        &mut procs,
        Path::new(env!("CARGO_BIN_EXE_pos-sim")),
        &s(&[
            "--mqtt-port",
            &mqtt.to_string(),
            "--mdns-port",
            &mdns.to_string(),
            "--iid",
            IID,
            "--token",
            "cashpad-bins",
            "--speed",
            "600",
            "--zenchef-pay",
            "--day",
            &day,
        ]),
        &d.join("pos-sim.log"),
    );
    let pay_orders: Vec<String> = wait_line(d, "pos-sim.log", Duration::from_secs(20), |l| {
        l.strip_prefix("pos-sim: Zenchef Pay orders, left open for the guests: ")
            .map(|o| o.split(' ').map(String::from).collect())
    });
    assert_eq!(pay_orders.len(), 8, "{pay_orders:?}");
    wait_line(d, "pay-sim.log", Duration::from_secs(20), |l| {
        l.starts_with("pay-sim listening: ").then_some(())
    });
    wait_line(d, "zenchef-sim.log", Duration::from_secs(20), |l| {
        l.starts_with("zenchef-sim listening: ").then_some(())
    });
    // The agent as the boot test configures it: the POS at a static
    // loopback address, Zenchef and Zenchef Pay over http:// on loopback.
    let config = format!(
        r#"config_version = 3

[restaurant]
timezone = "Etc/GMT-1"
currency = "EUR"

[cashpad]
token = "cashpad-bins"
host = "127.0.0.1"
port = {mqtt}
installation_id = "{IID}"

[zenchef]
restaurant_id = "654321"
token = "zc-bins"
base_url = "http://127.0.0.1:{zc}/api/v1"

[zenchef_pay]
enabled = true
base_url = "http://127.0.0.1:{pay}/pos/v1"
token = "pay-bins"

[store]
path = "{store}"

[update]
enabled = false

[http]
listen = ""
"#,
        store = d.join("agent.db").display()
    );
    std::fs::write(d.join("agent.toml"), config).unwrap();
    let t0 = Instant::now();
    let agent_log = std::fs::File::create(d.join("agent.log")).unwrap();
    procs.0.push(
        Command::new(agent_bin())
            .args(["run", "--config"])
            .arg(d.join("agent.toml"))
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(agent_log.try_clone().unwrap())
            .stderr(agent_log)
            .spawn()
            .expect("starting the agent"),
    );

    // The guest pays one Zenchef Pay order in full, with a tip.
    let (payment, order, amount, tip) = wait_line(d, "pay-sim.log", Duration::from_secs(60), |l| {
        let rest = l.strip_prefix("pay-sim: payment ")?;
        let rest = rest.strip_suffix(" cents: paid by the guest")?;
        let mut w = rest.split(' ');
        let payment = w.next()?.to_string();
        let order = w.nth(1)?.to_string();
        let (amount, tip) = w.next()?.split_once('+')?;
        Some((
            payment,
            order,
            amount.parse::<i64>().ok()?,
            tip.parse::<i64>().ok()?,
        ))
    });
    assert!(pay_orders.contains(&order), "{order} not in {pay_orders:?}");
    assert!(payment.starts_with("pay_"), "{payment}");
    // The scenario's bill of that order, and the tip asked for.
    let sc = zenchef_sim::scenario::Scenario::generate_pay(1, day.parse().unwrap());
    assert_eq!(
        (amount, tip),
        (sc.expected.tickets[&order].total_cents, 300)
    );
    assert!(amount > 0);

    // The agent settles it at the POS, which closes the bill with it ...
    let settle =
        format!("pos-sim: settle {payment} order {order} {amount}+{tip} cents: bill.paid seq ");
    let closed = wait_line(d, "pos-sim.log", Duration::from_secs(60), |l| {
        l.starts_with(&settle).then(|| l.to_string())
    });
    assert!(
        closed.ends_with(&format!(", bill closed by zenchef_pay {payment}")),
        "{closed}"
    );
    // ... acks it at Zenchef Pay ...
    let line = format!("pay-sim: payment {payment} order {order} {amount}+{tip} cents: ");
    let fate = wait_line(d, "pay-sim.log", Duration::from_secs(60), |l| {
        l.strip_prefix(&line)
            .filter(|f| *f != "paid by the guest")
            .map(String::from)
    });
    assert_eq!(fate, "settled");
    // ... and the ticket reaches Zenchef with the phone payment.
    let want = format!(
        "total {amount} tip {tip} cents, payments zenchef_pay {}",
        amount + tip
    );
    let ticket_line = wait_line(d, "zenchef-sim.log", Duration::from_secs(60), |l| {
        l.starts_with(&format!("zenchef-sim: ticket {order} on booking "))
            .then(|| l.to_string())
    });
    assert!(ticket_line.ends_with(&want), "{ticket_line} (want …{want})");
    // Nothing was refused on the way.
    let pos_log = std::fs::read_to_string(d.join("pos-sim.log")).unwrap();
    assert!(!pos_log.contains(": refused ("), "{pos_log}");
    println!(
        "settled end to end in {:.1} s: {closed}",
        t0.elapsed().as_secs_f64()
    );
}
