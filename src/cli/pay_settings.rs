//! `zenchef-edge pay-settings`: the Cashpad **Server** and **Installation
//! ID** Zenchef Pay needs (docs/protocol/zenchef-pay.md; docs/protocol/README.md: today a restaurant
//! has to e-mail Cashpad support for them). The agent knows both from the
//! POS's mDNS announcement (TXT `server` and `iid`), kept in the daemon's
//! state record.
//!
//! Exit code 1 when they are not known yet.

use crate::config::Config;
use crate::outbox::store;
use crate::status;

/// Where to enter them, in English and as the French interface reads.
pub const WHERE_EN: &str = "In Zenchef: Settings → Pay at table → POS software: choose Cashpad, \
enter the Installation ID and the Server in their fields, then click Connect.";
/// The same, for the French interface.
pub const WHERE_FR: &str = "Dans Zenchef : Paramètres → Payer à table → Logiciel de caisse : \
choisir Cashpad, saisir l'Installation ID et le Server, puis cliquer sur Connecter.";

/// Prints the two values and where to enter them.
pub fn run(config: &Config) -> anyhow::Result<i32> {
    let conn = store::open_read_only(&config.store_path)?;
    let (daemon, running) = status::daemon_record(&conn, chrono::Utc::now());
    let pos = daemon.as_ref().map(|d| d.pos.clone()).unwrap_or_default();
    let iid = pos
        .installation_id
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| config.cashpad.installation_id.clone());
    let server = pos.server.clone().filter(|s| !s.is_empty());
    println!(
        "Cashpad Server:   {}",
        server.as_deref().unwrap_or("(unknown)")
    );
    println!(
        "Installation ID:  {}",
        iid.as_deref().unwrap_or("(unknown)")
    );
    if let (Some(_), Some(_)) = (&server, &iid) {
        if !running && let Some(d) = &daemon {
            println!(
                "(as announced by the POS when the agent last ran, {})",
                d.updated_at
            );
        }
        println!();
        println!("{WHERE_EN}");
        println!("{WHERE_FR}");
        return Ok(0);
    }
    eprintln!();
    if config.cashpad.static_addr.is_some() {
        eprintln!(
            "cashpad.host is set, so the POS is not discovered and its Server is not announced \
             to the agent: ask Cashpad support (support@cashpad.fr) for it, or remove \
             cashpad.host where multicast works"
        );
    } else if daemon.is_none() {
        eprintln!("the agent has never run with this store: start it and retry");
    } else {
        eprintln!(
            "the agent has not found the POS yet (or the POS announces no `server`): see \
             `zenchef-edge status` and `zenchef-edge doctor`"
        );
    }
    Ok(1)
}
