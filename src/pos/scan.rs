//! A tolerant look at the first bytes of a payload that cannot be parsed
//! whole (the frame guard keeps only the beginning of a message over the
//! size limit): its `event_id`, `data.order_id` and `seq`, when they are
//! there, so the rejected row names them and a known order is marked as
//! needing attention (sync rule 9).
//!
//! Not a JSON parser: it looks for `"key"`, a colon and a value, outside
//! any escape, and accepts only what the envelope allows (an `event_id`
//! of 1–64 characters, an `order_id` of 1–200, a `seq` that fits 64 bits;
//! no control character). `order_id` is looked for after `"data"` when
//! the payload has one.

use super::event::{MAX_EVENT_ID_CHARS, MAX_NAME_CHARS};

/// What could be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// `event_id`.
    pub event_id: Option<String>,
    /// `data.order_id`.
    pub order_id: Option<String>,
    /// `seq`.
    pub seq: Option<u64>,
}

impl Scan {
    /// Looks at `head` (the beginning of a payload, possibly cut anywhere).
    pub fn of(head: &[u8]) -> Scan {
        let text = match std::str::from_utf8(head) {
            Ok(t) => t,
            // Cut in the middle of a character: what is before it.
            Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
        };
        let data = find_key(text, "data").map_or(0, |(_, end)| end);
        Scan {
            event_id: string_at(text, "event_id", 0, MAX_EVENT_ID_CHARS),
            order_id: string_at(text, "order_id", data, MAX_NAME_CHARS),
            seq: find_key(text, "seq").and_then(|(_, end)| {
                let digits: String = text[end..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .take(21)
                    .collect();
                digits.parse().ok()
            }),
        }
    }
}

/// The first `"key"` followed by a colon, at or after `from`: (where the
/// key starts, where its value starts).
fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    find_key_from(text, key, 0)
}

fn find_key_from(text: &str, key: &str, from: usize) -> Option<(usize, usize)> {
    let needle = format!("\"{key}\"");
    let mut at = from;
    while let Some(i) = text.get(at..)?.find(&needle) {
        let start = at + i;
        let after = start + needle.len();
        let rest = &text[after..];
        let trimmed = rest.trim_start();
        // A quoted key not inside a string: not preceded by a backslash.
        let escaped = start > 0 && text.as_bytes()[start - 1] == b'\\';
        if !escaped && let Some(v) = trimmed.strip_prefix(':') {
            let value = v.trim_start();
            return Some((start, text.len() - value.len()));
        }
        at = after;
    }
    None
}

/// The string value of `"key"` found at or after `from`, when it is a
/// complete JSON string of 1..=`max` characters without control
/// characters (escapes are decoded: `\"`, `\\`, `\/`, `\uXXXX`).
fn string_at(text: &str, key: &str, from: usize, max: usize) -> Option<String> {
    let (_, start) = find_key_from(text, key, from)?;
    let mut chars = text[start..].strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        let c = chars.next()?;
        let c = match c {
            '"' => break,
            '\\' => match chars.next()? {
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                e @ ('"' | '\\' | '/') => e,
                _ => return None,
            },
            c => c,
        };
        if c.is_control() || out.chars().count() >= max {
            return None;
        }
        out.push(c);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head, and the `event_id`, `order_id` and `seq` read from it.
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<u64>);

    /// Heads as the guard keeps them, and what must be read of each.
    #[test]
    fn what_a_cut_payload_tells() {
        let cases: &[Case] = &[
            (
                r#"{"event_id":"e-1","seq":42,"type":"bill.paid","data":{"order_id":"O-7","lines":[{"na"#,
                Some("e-1"),
                Some("O-7"),
                Some(42),
            ),
            (
                r#"{ "data" : { "table": "12", "order_id" : "O\u002d8" }, "event_id" : "e\"2" "#,
                Some("e\"2"),
                Some("O-8"),
                None,
            ),
            // The value is cut: nothing is guessed.
            (
                r#"{"event_id":"e-3","data":{"order_id":"O-"#,
                Some("e-3"),
                None,
                None,
            ),
            // A key quoted inside another string is not a key.
            (
                r#"{"note":"\"order_id\":\"X\"","data":{"order_id":"O-9"}}"#,
                None,
                Some("O-9"),
                None,
            ),
            // Too long for the envelope's rules.
            (
                &format!(
                    r#"{{"event_id":"{}","data":{{"order_id":""}}}}"#,
                    "e".repeat(65)
                ),
                None,
                None,
                None,
            ),
            ("xxxxxxxx", None, None, None),
            ("", None, None, None),
        ];
        for (head, id, order, seq) in cases {
            let s = Scan::of(head.as_bytes());
            assert_eq!(s.event_id.as_deref(), *id, "{head}");
            assert_eq!(s.order_id.as_deref(), *order, "{head}");
            assert_eq!(s.seq, *seq, "{head}");
        }
        // Cut inside a character.
        let mut bytes = br#"{"event_id":"caf"#.to_vec();
        bytes.push(0xc3);
        assert_eq!(Scan::of(&bytes), Scan::default());
    }
}
