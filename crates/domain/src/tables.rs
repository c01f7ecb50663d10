//! Table names (docs/protocol/sync-rules.md, rule 4): matching demands
//! *identical* names in the POS and in Zenchef, so the agent compares the
//! two lists and names what differs — names on one side only, and the
//! near-misses that differ only by case, spaces or accents — for a
//! technician to rename one side. Pure: the agent reads the lists (the POS
//! floor plan, Zenchef's `GET /tables`) and shows the result.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

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
