//! Checks of single values that come from the file or from outside (the
//! LAN, a release manifest): versions, URLs, Installation IDs, the
//! maintenance window. Each answers a typed error whose `Display` is the
//! sentence of the configuration error (docs/protocol/agent-interface.md
//! § "Configuration file"); the caller adds the key and the file.

use std::fmt;

/// A `MAJOR.MINOR.PATCH` version (Cashpad `app` TXT key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

/// A string that is not `MAJOR.MINOR.PATCH` (three whole numbers); holds
/// the string as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not MAJOR.MINOR.PATCH")]
pub struct VersionError(pub String);

impl std::str::FromStr for Version {
    type Err = VersionError;
    /// Errors: [`VersionError`] (surrounding white space is allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError(s.to_string());
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
        Ok(Version(n(parts[0])?, n(parts[1])?, n(parts[2])?))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A URL [`check_url`] or [`check_base_url`] refuses. Each variant holds
/// the URL as shown in the message: as written for one that does not
/// parse, else as the parser serialises it with any user name and
/// password masked as `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Relative, or not a URL at all.
    #[error("`{0}` is not an http(s) URL")]
    NotAUrl(String),
    /// No host (`http://`, `https://:443/`).
    #[error("`{0}` has no host")]
    NoHost(String),
    /// Any other parse failure (a bad port, a bad IPv6 address…).
    #[error("`{url}` is not a valid URL: {source}")]
    Invalid {
        /// The URL as written.
        url: String,
        /// What the WHATWG parser says.
        #[source]
        source: url::ParseError,
    },
    /// A scheme other than `http` and `https`.
    #[error("`{url}`: scheme `{scheme}` is not http or https")]
    Scheme {
        /// The URL, masked.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A user name or password in the URL.
    #[error(
        "`{0}`: a user name or password in the URL is not accepted (credentials go in the token keys)"
    )]
    Credentials(String),
    /// A query in a base URL.
    #[error("`{0}`: a base URL cannot have a query (`?`): API paths are appended to it")]
    BaseQuery(String),
    /// A fragment in a base URL.
    #[error("`{0}`: a base URL cannot have a fragment (`#`): API paths are appended to it")]
    BaseFragment(String),
    /// `http://` towards a host that is not a loopback one.
    #[error("`{0}`: http:// is only accepted for a loopback host; use https://")]
    PlainHttp(String),
}

/// Accepts `https://…`, and `http://…` only towards a loopback host
/// (127.0.0.0/8, `::1`, `localhost`), for a URL that is fetched as is (the
/// update manifest, an archive): a query is allowed. Parsed with the `url`
/// crate, the WHATWG parser reqwest itself uses, so the host checked here is
/// the host connected to (`http://evil.example?@127.0.0.1/` is
/// `evil.example`; `http://0x7f.1/` is `127.0.0.1`).
///
/// Answers the URL as the parser serialises it (scheme and host in lower
/// case, IPv4 written out), without a trailing `/` when it has no query or
/// fragment.
///
/// Errors: [`UrlError`] (the URL quoted with any user name and password
/// masked as `***`): not a URL, no host, user name or password in it, a
/// scheme other than http(s), `http://` towards a non-loopback host.
pub fn check_url(url: String) -> Result<String, UrlError> {
    checked_url(&url, false)
}

/// [`check_url`] for a base URL, to which API paths are appended
/// (`zenchef.base_url`, `zenchef_pay.base_url`): a query (`?`) or a
/// fragment (`#`) is refused too, since a path appended after it would not
/// be a path.
///
/// Errors: as [`check_url`], plus [`UrlError::BaseQuery`] and
/// [`UrlError::BaseFragment`].
pub fn check_base_url(url: String) -> Result<String, UrlError> {
    checked_url(&url, true)
}

/// A URL the parser refused, as shown in a message: as written, but with
/// anything before an `@` of its authority masked (`http://***@host:0x50/`),
/// since that may be a user name or a password. The parser gave no parts,
/// so the authority is found by its delimiters (the only place a URL is
/// read by hand: to hide, never to connect).
fn unparsed_shown(raw: &str) -> String {
    let start = raw.find("://").map_or(0, |i| i + 3);
    let authority_end = raw[start..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |i| start + i);
    match raw[start..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &raw[..start], &raw[start + at..]),
        None => raw.to_string(),
    }
}

/// A parsed URL as shown in a message: its user name and password, if
/// any, written `***`.
fn masked(u: &url::Url) -> String {
    let mut m = u.clone();
    if !m.username().is_empty() {
        let _ = m.set_username("***");
    }
    if m.password().is_some() {
        let _ = m.set_password(Some("***"));
    }
    m.to_string()
}

fn checked_url(raw: &str, base: bool) -> Result<String, UrlError> {
    let raw = raw.trim();
    let mut u = url::Url::parse(raw).map_err(|e| match e {
        url::ParseError::EmptyHost => UrlError::NoHost(unparsed_shown(raw)),
        url::ParseError::RelativeUrlWithoutBase => UrlError::NotAUrl(unparsed_shown(raw)),
        source => UrlError::Invalid {
            url: unparsed_shown(raw),
            source,
        },
    })?;
    // A user name may be a token too: neither is ever shown.
    let shown = || masked(&u);
    let scheme = u.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return Err(UrlError::Scheme {
            url: shown(),
            scheme,
        });
    }
    let Some(host) = u.host() else {
        return Err(UrlError::NoHost(shown()));
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(UrlError::Credentials(shown()));
    }
    if base && u.query().is_some() {
        return Err(UrlError::BaseQuery(shown()));
    }
    if base && u.fragment().is_some() {
        return Err(UrlError::BaseFragment(shown()));
    }
    let loopback = match host {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    if scheme == "http" && !loopback {
        return Err(UrlError::PlainHttp(shown()));
    }
    if u.query().is_none() && u.fragment().is_none() {
        // "https://h/api/v1/" and "https://h/api/v1" are the same base.
        let path = u.path().trim_end_matches('/').to_string();
        u.set_path(&path);
        return Ok(u.as_str().trim_end_matches('/').to_string());
    }
    Ok(u.to_string())
}

/// The characters an Installation ID may have: `[A-Za-z0-9._-]`, 1 to
/// [`IID_MAX_LEN`] of them. The iid comes from the LAN (mDNS TXT `iid`) or
/// from `cashpad.installation_id`, and is used in MQTT topics
/// (`cashpad/<iid>/…`), in the MQTT client id and in Zenchef Pay URL paths.
/// `.` and `..` alone are refused too.
pub const IID_CHARSET: &str = "[A-Za-z0-9._-]{1,64}";
/// Longest accepted Installation ID, in bytes.
pub const IID_MAX_LEN: usize = 64;

/// A string that is not an Installation ID ([`check_iid`]); holds it as
/// [`escaped`] shows it (quoted, escaped, cut after 80 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{shown} is not an Installation ID: it must match {} (and not be `.` or `..`)",
    IID_CHARSET
)]
pub struct IidError {
    /// The value, [`escaped`].
    pub shown: String,
}

/// Checks an Installation ID against [`IID_CHARSET`] (`.` and `..` are
/// refused too: a path segment of their own would change the URL's level).
///
/// Errors: [`IidError`], whose message names the value, escaped (control
/// characters, quotes and non-ASCII written as Rust escapes; cut after 80
/// characters), e.g. ``"CP/1#" is not an Installation ID: …``.
pub fn check_iid(iid: &str) -> Result<(), IidError> {
    let ok = !iid.is_empty()
        && iid != "."
        && iid != ".."
        && iid.len() <= IID_MAX_LEN
        && iid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(IidError {
            shown: escaped(iid),
        })
    }
}

/// A value from outside (the LAN, a file) for a log line or a message:
/// quoted, with control characters, quotes, backslashes and non-ASCII
/// escaped, and cut after 80 characters (`…` then).
pub fn escaped(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut out = String::with_capacity(cut.len() + 2);
    out.push('"');
    for c in cut.chars() {
        out.extend(c.escape_default());
    }
    out.push('"');
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// A maintenance window [`parse_window`] refuses; holds it as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Not two `HH:MM` times (00:00–23:59) joined by `-`.
    #[error("`{0}` is not HH:MM-HH:MM")]
    Shape(String),
    /// Start and end are the same minute.
    #[error("`{0}` is an empty window")]
    Empty(String),
}

/// Parses `HH:MM-HH:MM` into minutes after midnight (the window may wrap
/// midnight, e.g. `23:00-01:00`).
///
/// Errors: [`WindowError`].
pub fn parse_window(s: &str) -> Result<(u32, u32), WindowError> {
    let bad = || WindowError::Shape(s.to_string());
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let hm = |t: &str| -> Result<u32, WindowError> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let h: u32 = h.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (hm(a)?, hm(b)?);
    if start == end {
        return Err(WindowError::Empty(s.to_string()));
    }
    Ok((start, end))
}

/// A `[fleet] broker` value that cannot be used ([`check_broker`]); URLs
/// are shown with anything before an `@` masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// Not a URL the parser reads.
    #[error("`{0}` is not an mqtts:// URL such as mqtts://fleet.example.net:8883")]
    NotAUrl(String),
    /// A scheme other than `mqtts` (and `mqtt` to a loopback host).
    #[error("`{url}`: scheme `{scheme}` is not mqtts (the fleet broker is reached over TLS)")]
    Scheme {
        /// The URL, masked.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// `mqtt://` (no TLS) towards a host that is not a loopback one.
    #[error("`{0}`: mqtt:// is only accepted for a loopback host; use mqtts://")]
    Plain(String),
    /// No host.
    #[error("`{0}` has no host")]
    NoHost(String),
    /// A user name or password in the URL.
    #[error(
        "`{0}`: a user name or password in the URL is not accepted (use fleet.username and \
         fleet.token)"
    )]
    Credentials(String),
    /// Port 0.
    #[error("`{0}`: port 0 is not a port to connect to")]
    PortZero(String),
    /// A path, query or fragment: an MQTT broker is a host and a port.
    #[error("`{0}`: the broker is a host and a port; remove the path, query or fragment")]
    Extra(String),
}

/// Checks a fleet broker URL: `mqtts://host[:port]` (default port 8883),
/// or `mqtt://` towards a loopback host (`127.0.0.0/8`, `::1`,
/// `localhost`; default port 1883) for tests. Parsed by the `url` crate.
///
/// Errors: [`BrokerError`].
pub fn check_broker(raw: &str) -> Result<crate::config::FleetBroker, BrokerError> {
    let raw = raw.trim();
    let u = url::Url::parse(raw).map_err(|_| BrokerError::NotAUrl(unparsed_shown(raw)))?;
    let shown = || masked(&u);
    let tls = match u.scheme() {
        "mqtts" => true,
        "mqtt" => false,
        other => {
            return Err(BrokerError::Scheme {
                url: shown(),
                scheme: other.to_string(),
            });
        }
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(BrokerError::Credentials(shown()));
    }
    // mqtt(s) is not a "special" scheme to the URL standard: an IPv4 host
    // is an opaque name here, an IPv6 one is parsed.
    let (host, loopback) = match u.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => {
            let loopback = d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            (d.to_string(), loopback)
        }
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), ip.is_loopback()),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), ip.is_loopback()),
        _ => return Err(BrokerError::NoHost(shown())),
    };
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return Err(BrokerError::Extra(shown()));
    }
    if !tls && !loopback {
        return Err(BrokerError::Plain(shown()));
    }
    if u.port() == Some(0) {
        return Err(BrokerError::PortZero(shown()));
    }
    Ok(crate::config::FleetBroker {
        host,
        port: u.port().unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
    })
}

/// Checks a topic level the agent writes in (`[fleet] device_id`): the
/// characters of [`IID_CHARSET`], not `.` or `..`.
///
/// Errors: the message, naming the value escaped.
pub fn check_topic_level(value: &str) -> Result<(), String> {
    check_iid(value).map_err(|_| {
        format!(
            "{} cannot be a topic level: it must match {IID_CHARSET} (and not be `.` or `..`)",
            escaped(value)
        )
    })
}

/// Checks `[fleet] topic_prefix`: one or more topic levels separated by
/// `/`, none empty, without the wildcards `+` and `#`, NUL or control
/// characters, at most 128 bytes.
///
/// Errors: the message, naming the value escaped.
pub fn check_topic_prefix(value: &str) -> Result<(), String> {
    let bad = value.is_empty()
        || value.len() > 128
        || value.split('/').any(str::is_empty)
        || value.starts_with('$')
        || value
            .chars()
            .any(|c| matches!(c, '+' | '#') || c.is_control());
    if bad {
        Err(format!(
            "{} is not a topic prefix: one or more `/`-separated levels, none empty, without \
             `+`, `#` or control characters, not starting with `$` (the broker's own topics), \
             at most 128 bytes (e.g. zenchef-edge or groups/bistrot-paris)",
            escaped(value)
        ))
    } else {
        Ok(())
    }
}
