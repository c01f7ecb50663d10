//! From TOML text to [`RawConfig`], by the rules of the file's
//! `config_version` (module docs of [`crate::config`], "Readable across
//! versions"), and TOML errors named by their key.

use std::path::Path;

use serde::Deserialize;

use super::{
    CONFIG_VERSION, ConfigError, INTRODUCED, RawCashpad, RawConfig, RawDelivery, RawFleet, RawHttp,
    RawLog, RawPay, RawRestaurant, RawStore, RawUpdate, RawZenchef,
};

/// The file as read, before its values are checked.
pub(super) struct Read {
    /// The keys it holds.
    pub raw: RawConfig,
    /// Its `config_version` (1 when absent).
    pub version: i64,
    /// One sentence per key of a newer format version that was ignored.
    pub warnings: Vec<String>,
}

/// Parses `text` into [`RawConfig`]: a file of a newer format version
/// than [`CONFIG_VERSION`] has its unknown sections and keys removed, with
/// a warning each; an older or same one has a key of [`INTRODUCED`] later
/// than its version refused, and every unknown key refused with its line.
///
/// Errors: [`ConfigError`] for a TOML syntax or type error (the key of its
/// line, else `(syntax)`), a `config_version` that is not a whole number
/// ≥ 1, a key newer than the file's version, an unknown key.
pub(super) fn read(text: &str, path: &Path) -> Result<Read, ConfigError> {
    let syntax = |e: toml::de::Error| {
        let msg = e.message().to_string();
        // serde's unknown-field message names the key; keep it first.
        let key = unknown_key(&msg)
            .or_else(|| e.span().and_then(|s| key_at(text, s.start)))
            .unwrap_or_else(|| "(syntax)".into());
        let place = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" at line {line}")
            })
            .unwrap_or_default();
        let msg = match e.span() {
            Some(s) if is_secret_key(&key) => redact_line_value(text, s.start, &msg),
            _ => msg,
        };
        ConfigError::new(key, format!("{msg}{place}"), path)
    };
    let mut table: toml::Table = toml::from_str(text).map_err(syntax)?;
    let version = match table.get("config_version") {
        None => 1,
        Some(toml::Value::Integer(n)) if *n >= 1 => *n,
        Some(_) => {
            return Err(ConfigError::new(
                "config_version",
                "must be a whole number ≥ 1 (the version of this file's format)",
                path,
            ));
        }
    };
    let mut warnings = Vec::new();
    let raw: RawConfig = if version > CONFIG_VERSION {
        // A newer release's file: what this binary does not know is
        // ignored, with a warning; what it knows is validated as usual.
        for key in prune_unknown(&mut table) {
            warnings.push(format!(
                "{key}: not known to this release, ignored (the file is written for \
                 config_version {version}; this release reads config_version {CONFIG_VERSION}: \
                 a newer release wrote it, or the file was prepared for one)"
            ));
        }
        table.try_into().map_err(|e: toml::de::Error| {
            ConfigError::new(
                unknown_key(e.message()).unwrap_or_else(|| "(syntax)".into()),
                e.message(),
                path,
            )
        })?
    } else {
        for (key, since) in INTRODUCED {
            if *since > version && lookup(&table, key) {
                return Err(ConfigError::new(
                    *key,
                    format!(
                        "introduced in config_version {since}: add `config_version = {since}` as \
                         the first line of the file (this file says {version}); an older \
                         release then ignores the key after a rollback instead of refusing \
                         the whole file"
                    ),
                    path,
                ));
            }
        }
        // From the text, so that an unknown key's error names its line.
        toml::from_str(text).map_err(syntax)?
    };
    Ok(Read {
        raw,
        version,
        warnings,
    })
}

/// Whether the dotted key names a secret (`cashpad.token`,
/// `zenchef.token`, `zenchef_pay.token`, `fleet.token`).
fn is_secret_key(key: &str) -> bool {
    key.rsplit('.').next() == Some("token")
}

/// `msg` with the value written on the line of byte `at` of `text` (the
/// text right of its `=`, with and without its quotes) replaced by `***`:
/// a parser's message may quote the value it read, and a secret's value
/// is never shown.
pub(super) fn redact_line_value(text: &str, at: usize, msg: &str) -> String {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let Some((_, value)) = text[start..end].split_once('=') else {
        return msg.to_string();
    };
    let value = value.trim();
    let bare = value.trim_matches(|c| c == '"' || c == '\'');
    let mut out = msg.to_string();
    for v in [value, bare] {
        if !v.trim().is_empty() {
            out = out.replace(v, "***");
        }
    }
    out
}

/// The dotted name (`store.quiet_min`) of the key on the line of byte
/// `at` of `text`: the name left of that line's `=`, under the last
/// `[table]` header above it; the header itself for an error on a header
/// line. `None` when the line names no key (a syntax error elsewhere).
pub(super) fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let header = |l: &str| {
        // `[store]  # comment` is a header too.
        let l = l.split('#').next().unwrap_or("").trim();
        (l.starts_with('[') && l.ends_with(']'))
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    if let Some(h) = header(line) {
        return Some(h).filter(|h| !h.is_empty());
    }
    let name = line.split_once('=')?.0.trim().trim_matches('"').trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let section = text[..start].lines().rev().find_map(header);
    Some(match section {
        Some(s) if !s.is_empty() => format!("{s}.{name}"),
        _ => name.to_string(),
    })
}

/// Is `section.key` (or a top-level `key`) present in the table?
fn lookup(table: &toml::Table, dotted: &str) -> bool {
    match dotted.split_once('.') {
        Some((section, key)) => table
            .get(section)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key(key)),
        None => table.contains_key(dotted),
    }
}

/// Removes from `table` every section and key this binary does not know;
/// answers their dotted names, sorted.
fn prune_unknown(table: &mut toml::Table) -> Vec<String> {
    let mut gone: Vec<String> = Vec::new();
    let sections = fields_of::<RawConfig>();
    table.retain(|name, value| {
        if !sections.contains(&name) {
            gone.push(name.to_string());
            return false;
        }
        if let (Some(known), Some(t)) = (section_fields(name), value.as_table_mut()) {
            t.retain(|k, _| {
                let keep = known.contains(&k);
                if !keep {
                    gone.push(format!("{name}.{k}"));
                }
                keep
            });
        }
        true
    });
    gone.sort();
    gone
}

/// The keys a section of the file may hold (from its `Raw*` type).
pub(super) fn section_fields(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "restaurant" => fields_of::<RawRestaurant>(),
        "cashpad" => fields_of::<RawCashpad>(),
        "zenchef" => fields_of::<RawZenchef>(),
        "zenchef_pay" => fields_of::<RawPay>(),
        "store" => fields_of::<RawStore>(),
        "update" => fields_of::<RawUpdate>(),
        "http" => fields_of::<RawHttp>(),
        "delivery" => fields_of::<RawDelivery>(),
        "log" => fields_of::<RawLog>(),
        "fleet" => fields_of::<RawFleet>(),
        _ => return None,
    })
}

/// The field names serde's derive gives a struct (what
/// `deny_unknown_fields` accepts), read by a deserializer that only
/// records them.
pub(super) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("fields only"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields only"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut out));
    out
}

/// The key serde's "unknown field `k`, expected …" message names.
fn unknown_key(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}
