//! The version this binary reports, read at run time from a marked slot
//! in its own bytes (the update tests make "the next release" by
//! rewriting it in a copy). Depends on no other module of the agent, so
//! the health record and the status can say the version without reaching
//! the updater ([`crate::update`] re-exports it).

const SLOT_LEN: usize = 64;
const SLOT_MARK_LEN: usize = 24;

/// The version this binary reports, in a fixed-size marked slot
/// (`@@ZENCHEF-EDGE-VERSION@@` then the version, NUL-padded) rather than a
/// folded constant. The update tests build "the next release" from the very
/// binary under test by rewriting these bytes in a copy (see
/// docs/decisions.md, "Self-update": how the tests make a new version).
#[used]
static VERSION_SLOT: [u8; SLOT_LEN] = make_slot(env!("CARGO_PKG_VERSION"));

const fn make_slot(version: &str) -> [u8; SLOT_LEN] {
    let mark = b"@@ZENCHEF-EDGE-VERSION@@";
    let v = version.as_bytes();
    assert!(mark.len() == SLOT_MARK_LEN && v.len() < SLOT_LEN - SLOT_MARK_LEN);
    let mut out = [0u8; SLOT_LEN];
    let mut i = 0;
    while i < SLOT_MARK_LEN {
        out[i] = mark[i];
        i += 1;
    }
    let mut j = 0;
    while j < v.len() {
        out[SLOT_MARK_LEN + j] = v[j];
        j += 1;
    }
    out
}

/// The version of this binary as text (`MAJOR.MINOR.PATCH`), read from the
/// version slot at run time.
pub fn running_version_str() -> &'static str {
    // black_box: the slot is read from the binary's bytes, never folded.
    let slot: &'static [u8; SLOT_LEN] = std::hint::black_box(&VERSION_SLOT);
    let rest = &slot[SLOT_MARK_LEN..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).unwrap_or(env!("CARGO_PKG_VERSION"))
}
