//! The local status page: the facts of `status` as one small HTML page for
//! a restaurant manager on the Wi-Fi, in French or English (by the
//! browser's `Accept-Language`), refreshed by the browser every
//! [`REFRESH_S`] seconds (meta refresh, no script).
//!
//! Every value shown has an `id` (`queued`, `dead`, `pos-state`, …) so
//! tests and support scripts can read it from the DOM. Text is HTML-escaped;
//! no secret is ever part of [`Status`].

use chrono::{DateTime, Utc};

use super::{ApiState, ApiSummary, PosState, Problem, Status, human_age, money};
use crate::pos::anonymous::AnonymousClients;

/// Seconds between two automatic reloads.
pub const REFRESH_S: u32 = 10;

/// Page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Français.
    Fr,
    /// English.
    En,
}

/// The preferred language of an `Accept-Language` header: French when the
/// highest-weighted supported tag is `fr*`, else English.
pub fn lang_from(accept_language: Option<&str>) -> Lang {
    let Some(h) = accept_language else {
        return Lang::En;
    };
    let mut best: Option<(f32, Lang)> = None;
    for part in h.split(',') {
        let mut it = part.split(';');
        let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .find_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let lang = if tag == "fr" || tag.starts_with("fr-") {
            Lang::Fr
        } else if tag == "en" || tag.starts_with("en-") {
            Lang::En
        } else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l).unwrap_or(Lang::En)
}

/// Escapes text for HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The words of `lang`.
pub(crate) fn t(lang: Lang, fr: &'static str, en: &'static str) -> &'static str {
    match lang {
        Lang::Fr => fr,
        Lang::En => en,
    }
}

/// How many table names differ (near-misses and names on one side only).
fn table_differences(s: &Status) -> usize {
    s.tables.as_ref().map_or(0, |t| {
        t.diff.near_misses.len() + t.diff.only_pos.len() + t.diff.only_zenchef.len()
    })
}

/// One line per table name that differs, in the manager's words.
fn table_lines(s: &Status, lang: Lang) -> Vec<String> {
    let Some(tb) = &s.tables else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (p, z) in &tb.diff.near_misses {
        out.push(match lang {
            Lang::Fr => {
                format!("Caisse « {p} » ≠ Zenchef « {z} » (majuscules, espaces ou accents)")
            }
            Lang::En => format!("POS \"{p}\" ≠ Zenchef \"{z}\" (case, spaces or accents)"),
        });
    }
    for p in &tb.diff.only_pos {
        out.push(match lang {
            Lang::Fr => format!("« {p} » : seulement sur la caisse"),
            Lang::En => format!("\"{p}\": only on the POS"),
        });
    }
    for z in &tb.diff.only_zenchef {
        out.push(match lang {
            Lang::Fr => format!("« {z} » : seulement dans Zenchef"),
            Lang::En => format!("\"{z}\": only in Zenchef"),
        });
    }
    out
}

/// A manager's sentence for a problem.
pub fn problem_text(p: Problem, s: &Status, lang: Lang) -> String {
    match lang {
        Lang::Fr => problem_fr(p, s),
        Lang::En => problem_en(p, s),
    }
}

/// [`problem_text`] in French.
fn problem_fr(p: Problem, s: &Status) -> String {
    let c = &s.counts.base;
    match p {
        Problem::AgentNotRunning => {
            "Le boîtier ne fonctionne pas normalement (l'agent est arrêté) : appelez le support."
                .into()
        }
        Problem::StoreNotWritable => "Le boîtier fonctionne mais ne peut plus écrire dans \
             sa mémoire (disque plein ou en lecture seule) : les événements de la caisse ne \
             sont plus enregistrés. Appelez le support."
            .into(),
        Problem::ZenchefCredentials => "Zenchef refuse les identifiants du boîtier : \
             rien n'est perdu, mais rien n'est envoyé. Appelez le support."
            .into(),
        Problem::ZenchefOutage => format!(
            "Zenchef est injoignable (connexion Internet ?) : les réservations ne se mettent plus \
             à jour sur la caisse. Rien n'est perdu : {} événement(s) de la caisse partiront dès \
             le retour de la connexion.",
            c.queued
        ),
        Problem::PosNotFound => "La caisse Cashpad n'est pas trouvée sur le réseau : \
             vérifiez que le serveur de caisse est allumé et branché."
            .into(),
        Problem::PosDisconnected => {
            "La caisse est trouvée mais la connexion avec elle est coupée.".into()
        }
        Problem::PosBrokerAnonymous => "La caisse accepte des connexions sans mot de \
             passe : n'importe quel appareil du réseau du restaurant peut lire les réservations \
             (noms, téléphones et e-mails des clients) et fausser des paiements. Appelez \
             l'installateur de la caisse."
            .into(),
        Problem::TableNamesDiffer => format!(
            "{} nom(s) de table diffèrent entre la caisse et Zenchef (voir ci-dessous) : les \
             réservations de ces tables ne sont pas reconnues quand la table est ouverte sur la \
             caisse. Renommez la table d'un côté (en général dans Zenchef) pour que les deux \
             noms soient identiques.",
            table_differences(s)
        ),
        Problem::DeadEvents => format!(
            "{} événement(s) n'ont pas pu être envoyés à Zenchef et attendent un technicien : \
             appelez le support.",
            c.dead
        ),
        Problem::OldQueue => format!(
            "Des événements attendent depuis {} d'être envoyés à Zenchef.",
            human_age(s.oldest_queued_age_s.unwrap_or(0))
        ),
        Problem::PaymentsNeedPerson => format!(
            "{} paiement(s) Zenchef Pay demandent une vérification par une personne (voir \
             ci-dessous : table et montant) : vérifiez l'addition sur la caisse.",
            s.payments_needing_person.len()
        ),
        Problem::OrdersNeedAttention => format!(
            "{} commande(s) à vérifier : un message de la caisse était illisible ; aucun \
             paiement par téléphone n'y est accepté tant que la caisse n'a pas renvoyé \
             l'addition.",
            s.orders_needing_attention.len()
        ),
        Problem::PayCredentials => "Zenchef Pay refuse les identifiants du \
             boîtier : le paiement par téléphone est suspendu. Appelez le support."
            .into(),
        Problem::PayOutage => "Zenchef Pay est injoignable : les additions ne se \
             mettent plus à jour sur les téléphones des clients. Rien n'est perdu."
            .into(),
        Problem::PayDead => format!(
            "{} mise(s) à jour d'addition refusée(s) par Zenchef Pay : appelez le support.",
            c.pay_dead
        ),
        Problem::StoreMissing | Problem::StoreUnreadable | Problem::StoreIncompatible => {
            "Le boîtier ne peut pas lire sa base de données : appelez le support.".into()
        }
        Problem::StoreReplaced => match &s.store_recovery {
            Some(r) if r.failed.is_none() => format!(
                "Le boîtier a dû remplacer sa base de données abîmée (l'ancienne est \
                 conservée) : {} événement(s), {} envoi(s) et {} paiement(s) ont été repris ; \
                 {} événement(s) n'ont pas pu être lus. Appelez le support.",
                r.events,
                r.deliveries,
                r.payments,
                r.events_not_read
                    .map_or_else(|| "?".into(), |n| n.to_string())
            ),
            _ => "Le boîtier a dû remplacer sa base de données illisible (l'ancienne est \
                 conservée ; rien n'a pu en être repris, des événements y sont peut-être \
                 restés) : appelez le support."
                .into(),
        },
        Problem::UpdatesRefused => "Le boîtier ne reçoit plus de mises à jour \
             (aucune clé de signature configurée) : appelez le support."
            .into(),
        Problem::UpdatesFailing => {
            "Les mises à jour du boîtier échouent depuis plusieurs essais : appelez le support."
                .into()
        }
        Problem::UpdatesPlaceholderKey => "Ce boîtier ne peut pas se mettre à jour : \
             il a été construit avec une clé de signature provisoire. Appelez le support."
            .into(),
    }
}

/// [`problem_text`] in English (the technician's words are in
/// [`super::text::problem_en`]).
fn problem_en(p: Problem, s: &Status) -> String {
    let c = &s.counts.base;
    match p {
        Problem::AgentNotRunning => {
            "The box is not working normally (the agent is stopped): call support.".into()
        }
        Problem::StoreNotWritable => "The box is running but cannot write to its memory \
             (disk full or read-only): POS events are no longer recorded. Call support."
            .into(),
        Problem::ZenchefCredentials => "Zenchef refuses the box's credentials: \
             nothing is lost, but nothing is sent. Call support."
            .into(),
        Problem::ZenchefOutage => format!(
            "Zenchef cannot be reached (internet connection?): reservations are not updated on \
             the POS. Nothing is lost: {} POS event(s) will be sent as soon as the connection is \
             back.",
            c.queued
        ),
        Problem::PosNotFound => "The Cashpad POS is not found on the network: check \
             that the POS server is on and plugged in."
            .into(),
        Problem::PosDisconnected => "The POS is found but the connection to it is down.".into(),
        Problem::PosBrokerAnonymous => "The POS accepts connections without a password: \
             any device on the restaurant's network can read the reservations (guests' names, \
             phones and e-mails) and forge payments. Call the POS installer."
            .into(),
        Problem::TableNamesDiffer => format!(
            "{} table name(s) differ between the POS and Zenchef (see below): reservations on \
             these tables are not matched when the table is opened on the POS. Rename the table \
             on one side (usually in Zenchef) so both names are exactly the same.",
            table_differences(s)
        ),
        Problem::DeadEvents => format!(
            "{} event(s) could not be sent to Zenchef and wait for a technician: call support.",
            c.dead
        ),
        Problem::OldQueue => format!(
            "Events have been waiting {} to be sent to Zenchef.",
            human_age(s.oldest_queued_age_s.unwrap_or(0))
        ),
        Problem::PaymentsNeedPerson => format!(
            "{} Zenchef Pay payment(s) need a person to check them (see below: table and \
             amount): check the bill on the POS.",
            s.payments_needing_person.len()
        ),
        Problem::OrdersNeedAttention => format!(
            "{} order(s) to check: a message from the POS could not be read; no phone payment \
             is accepted on them until the POS sends the bill again.",
            s.orders_needing_attention.len()
        ),
        Problem::PayCredentials => "Zenchef Pay refuses the box's credentials: \
             paying by phone is suspended. Call support."
            .into(),
        Problem::PayOutage => "Zenchef Pay cannot be reached: bills are not \
             updated on the guests' phones. Nothing is lost."
            .into(),
        Problem::PayDead => format!(
            "{} bill update(s) refused by Zenchef Pay: call support.",
            c.pay_dead
        ),
        Problem::StoreMissing | Problem::StoreUnreadable | Problem::StoreIncompatible => {
            "The box cannot read its database: call support.".into()
        }
        Problem::StoreReplaced => match &s.store_recovery {
            Some(r) if r.failed.is_none() => format!(
                "The box had to replace its damaged database (the old one is kept): {} \
                 event(s), {} delivery(ies) and {} payment(s) were taken over; {} event(s) could \
                 not be read. Call support.",
                r.events,
                r.deliveries,
                r.payments,
                r.events_not_read
                    .map_or_else(|| "?".into(), |n| n.to_string())
            ),
            _ => "The box had to replace its unreadable database (the old one is kept; nothing \
                 could be taken over, events may have stayed in it): call support."
                .into(),
        },
        Problem::UpdatesRefused => {
            "The box gets no updates (no signing key configured): call support.".into()
        }
        Problem::UpdatesFailing => {
            "The box's updates have failed several times in a row: call support.".into()
        }
        Problem::UpdatesPlaceholderKey => "This box cannot update: it was built with a \
             placeholder signing key. Call support."
            .into(),
    }
}

fn when(ts: Option<&str>, tz: chrono_tz::Tz, now: DateTime<Utc>, lang: Lang) -> String {
    let Some(p) = ts.and_then(|x| DateTime::parse_from_rfc3339(x).ok()) else {
        return "—".into();
    };
    let local = p.with_timezone(&tz);
    let ago = human_age((now - p.with_timezone(&Utc)).num_seconds());
    match lang {
        Lang::Fr => format!("{} (il y a {ago})", local.format("%d/%m %H:%M:%S")),
        Lang::En => format!("{} ({ago} ago)", local.format("%d/%m %H:%M:%S")),
    }
}

fn api_state(a: &ApiSummary, lang: Lang) -> (&'static str, &'static str) {
    match a.state {
        ApiState::Ok => (t(lang, "joignable", "reachable"), "ok"),
        ApiState::Outage => (t(lang, "INJOIGNABLE", "UNREACHABLE"), "bad"),
        ApiState::CredentialsRefused => (
            t(lang, "IDENTIFIANTS REFUSÉS", "CREDENTIALS REFUSED"),
            "bad",
        ),
        ApiState::Disabled => (t(lang, "non activé", "not enabled"), "off"),
        ApiState::Unknown => (t(lang, "inconnu", "unknown"), "warn"),
    }
}

/// The whole page.
pub fn render(s: &Status, tz: chrono_tz::Tz, now: DateTime<Utc>, lang: Lang) -> String {
    let mut p = Page {
        s,
        tz,
        now,
        lang,
        rows: String::new(),
    };
    p.pos_rows();
    p.api_rows();
    p.queue_rows();
    p.bookings_rows();
    p.agent_rows();
    let (verdict_class, verdict_html) = verdict(s, lang);
    let chart = match &s.history {
        Some(h) => super::chart::render_chart(h, tz, now, lang, s.pay.state != ApiState::Disabled),
        None => format!(
            "<p id=\"history-empty\" class=\"muted\">{}</p>",
            t(
                lang,
                "Pas encore d'historique : l'agent n'a pas encore pris de mesure.",
                "No history yet: the agent has not taken a sample yet."
            )
        ),
    };
    document(&p, verdict_class, &verdict_html, &chart)
}

/// The page being built: the facts, how to show times and words, and the
/// rows of its table so far.
struct Page<'a> {
    s: &'a Status,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
    lang: Lang,
    rows: String,
}

impl Page<'_> {
    /// One row of the table: `label`, then `value` in a cell with `id`
    /// and `class`.
    fn row(&mut self, id: &str, label: &str, value: &str, class: &str) {
        self.rows.push_str(&format!(
            "<tr><th>{}</th><td id=\"{id}\" class=\"{class}\">{}</td></tr>\n",
            esc(label),
            esc(value)
        ));
    }

    fn t(&self, fr: &'static str, en: &'static str) -> &'static str {
        t(self.lang, fr, en)
    }

    fn when(&self, ts: Option<&str>) -> String {
        when(ts, self.tz, self.now, self.lang)
    }

    /// The POS: state, address, versions, connected since.
    fn pos_rows(&mut self) {
        let s = self.s;
        let (pos_state, pos_class) = match s.pos.state {
            PosState::Connected => (self.t("connectée", "connected"), "ok"),
            PosState::Found => (
                self.t("trouvée, connexion COUPÉE", "found, connection DOWN"),
                "bad",
            ),
            PosState::NotFound => (self.t("NON TROUVÉE", "NOT FOUND"), "bad"),
            PosState::Unknown => (self.t("inconnue", "unknown"), "warn"),
        };
        self.row(
            "pos-state",
            self.t("Caisse Cashpad", "Cashpad POS"),
            pos_state,
            pos_class,
        );
        let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "—".into());
        self.row(
            "pos-address",
            self.t("Adresse", "Address"),
            &dash(&s.pos.address),
            "",
        );
        self.row(
            "pos-version",
            self.t("Version Cashpad", "Cashpad version"),
            &dash(&s.pos.app_version),
            "",
        );
        self.row(
            "pos-iid",
            "Installation ID",
            &dash(&s.pos.installation_id),
            "",
        );
        self.row("pos-server", "Server", &dash(&s.pos.server), "");
        self.row(
            "pos-since",
            self.t("Connectée depuis", "Connected since"),
            &self.when(s.pos.connected_since.as_deref()),
            "",
        );
        let (anon, anon_class) = match s.pos.anonymous_clients {
            Some(AnonymousClients::Accepted) => (
                self.t(
                    "ACCEPTÉES : la caisse n'est pas protégée",
                    "ACCEPTED: the POS is not protected",
                ),
                "bad",
            ),
            Some(AnonymousClients::Refused) => (self.t("refusées", "refused"), "ok"),
            Some(AnonymousClients::Unknown) | None => (self.t("inconnu", "unknown"), "warn"),
        };
        self.row(
            "pos-anonymous",
            self.t(
                "Connexions sans mot de passe à la caisse",
                "Connections without a password to the POS",
            ),
            anon,
            anon_class,
        );
    }

    /// Zenchef and Zenchef Pay: state, last success, last error.
    fn api_rows(&mut self) {
        let s = self.s;
        for (prefix, label, api) in [
            ("zenchef", "Zenchef", &s.zenchef),
            ("pay", "Zenchef Pay", &s.pay),
        ] {
            let (state, class) = api_state(api, self.lang);
            self.row(&format!("{prefix}-state"), label, state, class);
            if api.state == ApiState::Disabled {
                continue;
            }
            self.row(
                &format!("{prefix}-last-success"),
                self.t("Dernier succès", "Last success"),
                &self.when(api.last_success.as_deref()),
                "",
            );
            if let Some(e) = &api.last_error {
                self.row(
                    &format!("{prefix}-last-error"),
                    self.t("Dernière erreur", "Last error"),
                    &format!("{} — {e}", self.when(api.last_error_at.as_deref())),
                    "",
                );
            }
        }
    }

    /// The outbox: waiting, being sent, stuck, unreadable, oldest wait.
    fn queue_rows(&mut self) {
        let c = &self.s.counts;
        self.row(
            "queued",
            self.t("En attente d'envoi", "Waiting to be sent"),
            &c.base.queued.to_string(),
            "",
        );
        self.row(
            "inflight",
            self.t("En cours d'envoi", "Being sent"),
            &c.inflight.to_string(),
            "",
        );
        self.row(
            "dead",
            self.t("Bloqués (technicien)", "Stuck (technician)"),
            &c.base.dead.to_string(),
            if c.base.dead > 0 { "bad" } else { "" },
        );
        self.row(
            "rejected",
            self.t("Messages illisibles", "Unreadable messages"),
            &c.base.rejected.to_string(),
            "",
        );
        self.row(
            "oldest-queued",
            self.t("Plus ancienne attente", "Oldest waiting"),
            &self
                .s
                .oldest_queued_age_s
                .map(human_age)
                .unwrap_or_else(|| "—".into()),
            "",
        );
    }

    /// Open tables, reservations on the POS, their last sync, and whether
    /// the table names agree.
    fn bookings_rows(&mut self) {
        let s = self.s;
        self.row(
            "orders-open",
            self.t("Tables ouvertes", "Open tables"),
            &s.counts.base.orders_open.to_string(),
            "",
        );
        self.row(
            "reservations",
            self.t("Réservations sur la caisse", "Reservations on the POS"),
            &s.counts.base.reservations_published.to_string(),
            "",
        );
        self.row(
            "last-sync",
            self.t("Dernière synchro des réservations", "Last reservation sync"),
            &self.when(s.last_reservation_sync.as_deref()),
            "",
        );
        let (names, names_class) = match &s.tables {
            None => (
                self.t("pas encore vérifiés", "not checked yet").to_string(),
                "warn",
            ),
            Some(tb) if tb.clean => (
                match self.lang {
                    Lang::Fr => format!("identiques ({} tables)", tb.pos_count),
                    Lang::En => format!("identical ({} tables)", tb.pos_count),
                },
                "ok",
            ),
            Some(_) => (
                match self.lang {
                    Lang::Fr => format!("{} DIFFÉRENT(S)", table_differences(s)),
                    Lang::En => format!("{} DIFFER", table_differences(s)),
                },
                "bad",
            ),
        };
        self.row(
            "table-names",
            self.t(
                "Noms des tables caisse / Zenchef",
                "Table names POS / Zenchef",
            ),
            &names,
            names_class,
        );
    }

    /// The agent's version, its updates, and the store when unreadable.
    fn agent_rows(&mut self) {
        let s = self.s;
        let update = match &s.update_state {
            serde_json::Value::String(x) => x.clone(),
            v => v
                .get("state")
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .unwrap_or(v.to_string()),
        };
        let update = if update == "unknown" {
            self.t("inconnu", "unknown").to_string()
        } else {
            update
        };
        self.row(
            "version",
            self.t("Version de l'agent", "Agent version"),
            &s.version,
            "",
        );
        self.row("update-state", self.t("Mise à jour", "Update"), &update, "");
        if let Some(p) = &s.update_problem {
            self.row(
                "update-problem",
                self.t("Mises à jour bloquées", "Updates blocked"),
                p,
                "bad",
            );
        }
        if let Some(e) = &s.store_error {
            self.row(
                "store-state",
                self.t("Base de données", "Database"),
                &format!("{}: {e}", s.store_state),
                "bad",
            );
        }
    }
}

/// The verdict at the top, as `(class, inner HTML)`: all good, or one
/// paragraph per problem; then what a manager must act on, one line each
/// (table, amount, why).
fn verdict(s: &Status, lang: Lang) -> (&'static str, String) {
    let (class, mut html) = if s.problems.is_empty() {
        let ok = t(
            lang,
            "Tout fonctionne : la caisse et Zenchef sont synchronisés.",
            "All good: the POS and Zenchef are in sync.",
        );
        ("ok", format!("<p>{}</p>", esc(ok)))
    } else {
        let problems = s
            .problems
            .iter()
            .map(|p| format!("<p>{}</p>", esc(&problem_text(*p, s, lang))))
            .collect();
        ("bad", problems)
    };
    html.push_str(&list(
        "payments-needing-person",
        s.payments_needing_person.iter().map(|n| {
            format!(
                "{} {} — {} (+{} {}) — {} <code>{}</code> — {}",
                t(lang, "Table", "Table"),
                esc(n.table.as_deref().unwrap_or("?")),
                esc(&money(n.amount_cents, &s.currency)),
                esc(&money(n.tip_cents, &s.currency)),
                t(lang, "pourboire", "tip"),
                t(lang, "paiement", "payment"),
                esc(&n.payment_id),
                esc(&n.what)
            )
        }),
    ));
    html.push_str(&list(
        "orders-needing-attention",
        s.orders_needing_attention.iter().map(|a| {
            format!(
                "{} {} — {} <code>{}</code> — {}",
                t(lang, "Table", "Table"),
                esc(a.table.as_deref().unwrap_or("?")),
                t(lang, "commande", "order"),
                esc(&a.order_id),
                esc(&a.reason)
            )
        }),
    ));
    html.push_str(&list(
        "table-names-differ",
        table_lines(s, lang).iter().map(|l| esc(l)),
    ));
    (class, html)
}

/// `<ul id="…">` of `items` (HTML already), nothing when there is none.
fn list(id: &str, items: impl Iterator<Item = String>) -> String {
    let items: String = items.map(|i| format!("<li>{i}</li>")).collect();
    if items.is_empty() {
        return String::new();
    }
    format!("<ul id=\"{id}\">{items}</ul>")
}

/// The HTML document around the verdict, the chart and the rows of `p`.
fn document(p: &Page, verdict_class: &str, verdict_html: &str, chart: &str) -> String {
    let (html_lang, title, checked) = match p.lang {
        Lang::Fr => ("fr", "État du boîtier Zenchef", "Vérifié le"),
        Lang::En => ("en", "Zenchef box status", "Checked at"),
    };
    let rows = &p.rows;
    format!(
        r#"<!DOCTYPE html>
<html lang="{html_lang}">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em auto; max-width: 40em; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.3em; }}
#verdict {{ padding: .6em 1em; border-radius: .4em; font-size: 1.1em; }}
#verdict.ok {{ background: #e3f6e3; border: 1px solid #3a3; }}
#verdict.bad {{ background: #fde8e8; border: 1px solid #c33; }}
table {{ border-collapse: collapse; width: 100%; margin-top: 1em; }}
th {{ text-align: left; font-weight: normal; color: #555; padding: .25em .5em .25em 0; width: 45%; }}
td {{ padding: .25em 0; word-break: break-word; }}
td.ok {{ color: #2a2; font-weight: bold; }}
td.bad {{ color: #c22; font-weight: bold; }}
td.warn {{ color: #a70; }}
td.off {{ color: #888; }}
footer {{ margin-top: 1em; color: #888; font-size: .85em; }}
#history {{ margin-top: 1em; }}
#history svg {{ display: block; }}
.muted {{ color: #888; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div id="verdict" class="{verdict_class}">{verdict_html}</div>
<div id="history">{chart}</div>
<table>
{rows}</table>
<footer>{checked} <span id="checked-at">{checked_at}</span> · zenchef-edge {version}</footer>
</body>
</html>
"#,
        checked_at = esc(&p.when(Some(&p.s.checked_at))),
        version = esc(&p.s.version),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_supported_language() {
        for (h, want) in [
            (None, Lang::En),
            (Some("fr-FR,fr;q=0.9,en;q=0.8"), Lang::Fr),
            (Some("en-GB,en;q=0.9,fr;q=0.8"), Lang::En),
            (Some("de-DE,de;q=0.9,fr;q=0.5"), Lang::Fr),
            (Some("de"), Lang::En),
            (Some("en;q=0.4, fr;q=0.6"), Lang::Fr),
            (Some("fr;q=0"), Lang::En),
            (Some("FR"), Lang::Fr),
        ] {
            assert_eq!(lang_from(h), want, "{h:?}");
        }
    }

    #[test]
    fn the_page_shows_the_chart_and_the_table_names_to_fix_in_both_languages() {
        use crate::health::{History, Sample};
        use crate::tables::{TablesCheck, compare};
        let now = Utc::now();
        let mut s = crate::status::tests::sample(now);
        let names = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let diff = compare(
            &names(&["1", "7a", "Bar <b>"]),
            &names(&["1", "7A", "Terrasse"]),
        );
        s.tables = Some(TablesCheck {
            zenchef_fetched_at: s.checked_at.clone(),
            pos_count: 3,
            zenchef_count: 3,
            clean: false,
            diff,
        });
        s.problems.insert(2, Problem::TableNamesDiffer);
        s.history = Some(History {
            sample_s: 60,
            samples: (0..30)
                .map(|i| Sample {
                    at: (now - chrono::Duration::seconds((29 - i) * 60))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    queued: i,
                    delivered: 2,
                    zenchef_outage: (10..15).contains(&i),
                    pay_outage: false,
                })
                .collect(),
        });
        let fr = render(&s, chrono_tz::Europe::Paris, now, Lang::Fr);
        for want in [
            "<ul id=\"table-names-differ\"><li>Caisse « 7a » ≠ Zenchef « 7A » (majuscules, \
             espaces ou accents)</li><li>« Bar &lt;b&gt; » : seulement sur la caisse</li>\
             <li>« Terrasse » : seulement dans Zenchef</li></ul>",
            "3 nom(s) de table diffèrent entre la caisse et Zenchef",
            "<td id=\"table-names\" class=\"bad\">3 DIFFÉRENT(S)</td>",
            "<svg id=\"history-chart\"",
            "Historique sur 30 min : file d&#39;attente, envois et coupures",
            "class=\"outage-zenchef\"",
            "Zenchef Pay injoignable",
            "<ul id=\"payments-needing-person\">",
            "<ul id=\"orders-needing-attention\">",
        ] {
            assert!(fr.contains(want), "{want} not in\n{fr}");
        }
        assert!(!fr.contains("Bar <b>"), "escaped");
        let en = render(&s, chrono_tz::Europe::Paris, now, Lang::En);
        for want in [
            "POS &quot;7a&quot; ≠ Zenchef &quot;7A&quot; (case, spaces or accents)",
            "3 table name(s) differ between the POS and Zenchef",
            "The last 30 min: queue, deliveries and outages",
            "Zenchef unreachable",
        ] {
            assert!(en.contains(want), "{want} not in\n{en}");
        }
        // Names that agree, and a box without history yet.
        s.tables = Some(TablesCheck {
            clean: true,
            diff: compare(&names(&["1"]), &names(&["1"])),
            pos_count: 1,
            zenchef_count: 1,
            zenchef_fetched_at: s.checked_at.clone(),
        });
        s.history = None;
        let fr = render(&s, chrono_tz::Europe::Paris, now, Lang::Fr);
        assert!(fr.contains("<td id=\"table-names\" class=\"ok\">identiques (1 tables)</td>"));
        assert!(!fr.contains("table-names-differ") && !fr.contains("<svg"));
        assert!(fr.contains("id=\"history-empty\""), "{fr}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"<b a="1">&'"#), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    }
}
