//! Table names, the POS floor plan (cashpad §5, kept in the store's `kv`
//! key `floorplan`) against the tables Zenchef knows (`GET /tables`).
//!
//! The seed is strict: *table names must be identical in the POS and in
//! Zenchef* — a reservation on table "7A" is not matched when the POS opens
//! "7a" (sync rule 4). [`compare`] lists the names found on one side only
//! and the near-misses that differ only by case, spaces or accents, so a
//! technician knows which side to rename.
//!
//! The daemon keeps the comparison for `status` and the status page
//! without calling Zenchef on each request: its reservation poller reads
//! Zenchef's tables every [`REFRESH_EVERY`] ([`refresh_zenchef_tables`])
//! into the `kv` key [`ZENCHEF_TABLES_KEY`], and [`stored_check`] compares
//! them with the floor plan at each read. `zenchef-edge tables`
//! (`src/cli/tables.rs`) asks Zenchef afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::outbox::{self, Store};
use crate::zenchef::client::{CallError, ZenchefClient};

/// `kv` key where the daemon keeps the table names Zenchef answered last
/// (the JSON of [`ZenchefTables`]).
pub const ZENCHEF_TABLES_KEY: &str = "zenchef_tables";
/// How often the daemon reads Zenchef's tables again (after a successful
/// reservation poll).
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// Zenchef's table names as the daemon last read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ZenchefTables {
    /// When they were read (UTC, RFC 3339).
    pub fetched_at: String,
    /// The names, as Zenchef answered them.
    pub names: Vec<String>,
}

/// The comparison `status` and the status page show (`tables` of
/// `status --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TablesCheck {
    /// When Zenchef's tables were read (UTC).
    pub zenchef_fetched_at: String,
    /// Tables in the POS floor plan.
    pub pos_count: usize,
    /// Tables in Zenchef.
    pub zenchef_count: usize,
    /// Both sides agree.
    pub clean: bool,
    /// The differences (names identical on both sides included).
    #[serde(flatten)]
    pub diff: TableDiff,
}

/// The floor plan of the store against the Zenchef tables the daemon kept;
/// `None` until both are known (no floor plan yet, or Zenchef's tables not
/// read yet).
pub fn stored_check(conn: &rusqlite::Connection) -> Option<TablesCheck> {
    let pos = pos_tables(conn).ok().flatten()?;
    let zc: ZenchefTables = outbox::kv_get(conn, ZENCHEF_TABLES_KEY)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())?;
    let diff = compare(&pos, &zc.names);
    Some(TablesCheck {
        zenchef_fetched_at: zc.fetched_at,
        pos_count: pos.len(),
        zenchef_count: zc.names.len(),
        clean: diff.is_clean(),
        diff,
    })
}

/// Reads Zenchef's tables (`GET /tables`) and keeps their names in the
/// store for [`stored_check`]; answers how many there are.
///
/// Errors: the call failed (nothing is written: the last list stays), or
/// the store refused the write.
pub async fn refresh_zenchef_tables(
    client: &ZenchefClient,
    store: &Store,
) -> Result<usize, String> {
    let names: Vec<String> = client
        .tables()
        .await
        .map_err(|e: CallError| e.to_string())?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let n = names.len();
    let json = serde_json::to_string(&ZenchefTables {
        fetched_at: crate::time::now_utc(),
        names,
    })
    .unwrap_or_default();
    store
        .write(move |c| outbox::kv_set(c, ZENCHEF_TABLES_KEY, &json))
        .await
        .map_err(|e| e.to_string())?;
    Ok(n)
}

/// The rule, quoted from Zenchef's help centre (docs/protocol/README.md, set-up rules).
pub const RULE: &str = "Table names must be identical in Cashpad and in Zenchef \
(« il est très important que les noms des tables soient identiques dans Cashpad et Zenchef »).";

/// The comparison of both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableDiff {
    /// Names present on both sides, identical.
    pub identical: Vec<String>,
    /// Near-misses: `(POS name, Zenchef name)` equal once case, spaces and
    /// accents are ignored.
    pub near_misses: Vec<(String, String)>,
    /// Names only in the POS (no near-miss either).
    pub only_pos: Vec<String>,
    /// Names only in Zenchef (no near-miss either).
    pub only_zenchef: Vec<String>,
}

impl TableDiff {
    /// Both sides agree.
    pub fn is_clean(&self) -> bool {
        self.near_misses.is_empty() && self.only_pos.is_empty() && self.only_zenchef.is_empty()
    }
}

/// A name with case, every space and accents removed: what a person reads
/// as "the same table".
pub fn loose(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_whitespace() || ('\u{300}'..='\u{36f}').contains(&c) {
            continue; // spaces, combining accents (decomposed form)
        }
        let base = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => {
                "a"
            }
            'ç' | 'Ç' => "c",
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
            'ñ' | 'Ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => "o",
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
            'ý' | 'ÿ' | 'Ý' => "y",
            'œ' | 'Œ' => "oe",
            'æ' | 'Æ' => "ae",
            _ => {
                out.extend(c.to_lowercase());
                continue;
            }
        };
        out.push_str(base);
    }
    out
}

/// Compares the two lists of names (pure).
pub fn compare(pos: &[String], zenchef: &[String]) -> TableDiff {
    let pos: BTreeSet<&str> = pos.iter().map(String::as_str).collect();
    let zc: BTreeSet<&str> = zenchef.iter().map(String::as_str).collect();
    let mut d = TableDiff {
        identical: pos.intersection(&zc).map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let lonely_zc: Vec<&str> = zc.difference(&pos).copied().collect();
    let mut by_loose: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for z in &lonely_zc {
        by_loose.entry(loose(z)).or_default().push(z);
    }
    let mut paired: BTreeSet<&str> = BTreeSet::new();
    for p in pos.difference(&zc) {
        match by_loose.get(&loose(p)) {
            Some(zs) => {
                for z in zs {
                    d.near_misses.push((p.to_string(), z.to_string()));
                    paired.insert(z);
                }
            }
            None => d.only_pos.push(p.to_string()),
        }
    }
    d.only_zenchef = lonely_zc
        .into_iter()
        .filter(|z| !paired.contains(z))
        .map(str::to_string)
        .collect();
    d
}

/// Table names of the floor plan the POS published, from the store;
/// `None` when no floor plan was received yet.
pub fn pos_tables(conn: &rusqlite::Connection) -> anyhow::Result<Option<Vec<String>>> {
    let Some(text) = outbox::kv_get(conn, "floorplan")? else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(Some(
        v["tables"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

/// Human lines describing a diff (one per finding; no header).
pub fn describe(d: &TableDiff) -> Vec<String> {
    let mut out = Vec::new();
    for (p, z) in &d.near_misses {
        out.push(format!(
            "near-miss: POS \"{p}\" vs Zenchef \"{z}\" (differ only by case, spaces or accents)"
        ));
    }
    for p in &d.only_pos {
        out.push(format!("only in the POS: \"{p}\""));
    }
    for z in &d.only_zenchef {
        out.push(format!("only in Zenchef: \"{z}\""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_side_only_near_misses_and_identical() {
        let d = compare(
            &v(&["1", "2", "7a", "Terrasse 1", "Bar", "Salon privé"]),
            &v(&["1", "2", "7A", "terrasse1", "Salon prive", "99"]),
        );
        assert_eq!(d.identical, v(&["1", "2"]));
        assert_eq!(
            d.near_misses,
            vec![
                ("7a".into(), "7A".into()),
                ("Salon privé".into(), "Salon prive".into()),
                ("Terrasse 1".into(), "terrasse1".into()),
            ]
        );
        assert_eq!(d.only_pos, v(&["Bar"]));
        assert_eq!(d.only_zenchef, v(&["99"]));
        assert!(!d.is_clean());
        assert!(compare(&v(&["12"]), &v(&["12"])).is_clean());
    }

    #[test]
    fn loose_ignores_case_spaces_and_accents_only() {
        for (a, b) in [
            ("7a", "7A"),
            (" 12 ", "12"),
            ("Été 3", "ete3"),
            ("Cœur", "coeur"),
            ("e\u{301}", "é"),
        ] {
            assert_eq!(loose(a), loose(b), "{a} vs {b}");
        }
        assert_ne!(loose("12"), loose("21"));
        assert_ne!(loose("7a"), loose("7b"));
    }
}
