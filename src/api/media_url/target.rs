//! Reading URLs and hosts, matching hosts against the allow-list, and showing URLs in errors.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use http::Uri;

use super::{MAX_SHOWN_URL, MAX_URL_LEN, MediaPolicyError, MediaUrlError};

/// A URL's host: a lowercase DNS name without trailing dot, or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Self::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
        }
    }
}

impl Host {
    /// Reads a URL's host the way the URL standard does for http(s): lowercase, a trailing dot
    /// dropped, and a name ending in a number read as an IPv4 address (`2130706433`, `0x7f.1`).
    pub(super) fn parse(text: &str) -> Result<Self, &'static str> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or("unclosed [ in host")?;
            return inner.parse().map(|v6| Self::Ip(IpAddr::V6(v6))).map_err(|_| "malformed IPv6 address");
        }
        let lower = text.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name.is_empty() {
            return Err("empty host");
        }
        let last = name.rsplit('.').next().unwrap_or(name);
        // Ends in a number (the URL standard's test): an address, or nothing.
        if !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || parse_ipv4_number(last).is_some())
        {
            return parse_ipv4(name).map(|v4| Self::Ip(IpAddr::V4(v4))).ok_or("malformed IPv4 address");
        }
        if name.len() > 253 {
            return Err("host name longer than 253 characters");
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err("host name has an empty or over-long label");
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err("host name has characters other than letters, digits, '-' and '_'");
            }
        }
        Ok(Self::Name(name.to_owned()))
    }
}

/// An IPv4 address in the URL standard's forms: one to four dot-separated decimal, octal
/// (leading `0`) or hex (`0x`) numbers, the last filling the remaining bytes.
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u64> = text.split('.').map(parse_ipv4_number).collect::<Option<_>>()?;
    let (last, init) = parts.split_last()?;
    if init.len() > 3 || init.iter().any(|&n| n > 255) || *last >= 1u64 << (8 * (4 - init.len())) {
        return None;
    }
    let high = init.iter().enumerate().fold(0u64, |acc, (i, &n)| acc | (n << (8 * (3 - i))));
    u32::try_from(high | last).ok().map(Ipv4Addr::from)
}

fn parse_ipv4_number(text: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        (hex, 16)
    } else if let Some(octal) = text.strip_prefix('0').filter(|rest| !rest.is_empty()) {
        (octal, 8)
    } else {
        (text, 10)
    };
    if text.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, radix).ok()
}

/// An entry of the host allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostPattern {
    Exact(String),
    /// Subdomains of a name, kept with a leading dot (`.example.com`).
    Subdomains(String),
    Ip(IpAddr),
}

impl HostPattern {
    pub(super) fn parse(pattern: &str) -> Result<Self, MediaPolicyError> {
        let bad = |reason| MediaPolicyError::HostPattern { pattern: pattern.to_owned(), reason };
        let text = pattern.trim();
        if let Some(domain) = text.strip_prefix("*.").or_else(|| text.strip_prefix('.')) {
            return match Host::parse(domain).map_err(bad)? {
                Host::Name(name) => Ok(Self::Subdomains(format!(".{name}"))),
                Host::Ip(_) => Err(bad("an address has no subdomains")),
            };
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Ip(ip.to_canonical()));
        }
        match Host::parse(text).map_err(bad)? {
            Host::Name(name) => Ok(Self::Exact(name)),
            Host::Ip(ip) => Ok(Self::Ip(ip.to_canonical())),
        }
    }

    pub(super) fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (Self::Exact(pattern), Host::Name(name)) => pattern == name,
            (Self::Subdomains(suffix), Host::Name(name)) => name.ends_with(suffix.as_str()),
            (Self::Ip(pattern), Host::Ip(ip)) => *pattern == ip.to_canonical(),
            _ => false,
        }
    }
}

/// A parsed http(s) URL, one hop of a fetch.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) https: bool,
    pub(super) host: Host,
    pub(super) port: u16,
    /// Whether the URL carried `user:password@` (refused once the host is known to be allowed).
    pub(super) userinfo: bool,
    /// Origin form, `/` at least; the fragment is dropped.
    pub(super) path_and_query: String,
}

impl Target {
    pub(super) fn parse(raw: &str) -> Result<Self, MediaUrlError> {
        let invalid =
            |reason: &str| MediaUrlError::InvalidUrl { url: redact_raw(raw), reason: reason.to_owned() };
        if raw.len() > MAX_URL_LEN {
            return Err(invalid("longer than 8192 bytes"));
        }
        let text = raw.trim();
        let scheme = scheme_of(text).ok_or_else(|| invalid("not an absolute URL"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(MediaUrlError::SchemeRefused { url: redact_raw(raw), scheme: scheme.to_owned() });
            }
        };
        let text = text.split_once('#').map_or(text, |(before, _)| before);
        let uri: Uri = text.parse().map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        let host = Host::parse(authority.host()).map_err(invalid)?;
        let host_port = authority.as_str().rsplit_once('@').map_or(authority.as_str(), |(_, after)| after);
        let port = match host_port.rsplit_once(':') {
            // A colon inside `[...]` is part of an IPv6 host, not a port.
            Some((_, port)) if !port.contains(']') => match port {
                "" => None,
                port => {
                    Some(port.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| invalid("bad port"))?)
                }
            },
            _ => None,
        };
        Ok(Self {
            https,
            host,
            port: port.unwrap_or(if https { 443 } else { 80 }),
            userinfo: authority.as_str().contains('@'),
            path_and_query: match uri.path_and_query().map_or("", |pq| pq.as_str()) {
                // `http://host?q` asks for `/?q`.
                pq if pq.starts_with('/') => pq.to_owned(),
                pq => format!("/{pq}"),
            },
        })
    }

    fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// `host[:port]`, the port only when it is not the scheme's default.
    pub(super) fn authority(&self) -> String {
        if self.port == if self.https { 443 } else { 80 } {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn path(&self) -> &str {
        self.path_and_query.split_once('?').map_or(&self.path_and_query, |(path, _)| path)
    }

    /// The URL for error messages: no userinfo, query or fragment.
    pub(super) fn shown(&self) -> String {
        cut(format!("{}://{}{}", self.scheme(), self.authority(), self.path()))
    }

    /// The URL as fetched, without userinfo.
    pub(super) fn full(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.authority(), self.path_and_query)
    }

    /// A redirect's `Location` made absolute against this URL.
    pub(super) fn join(&self, location: &str) -> String {
        let location = location.trim();
        let origin = format!("{}://{}", self.scheme(), self.authority());
        if scheme_of(location).is_some() {
            location.to_owned()
        } else if location.starts_with("//") {
            format!("{}:{location}", self.scheme())
        } else if location.starts_with('/') {
            format!("{origin}{location}")
        } else if location.starts_with('?') {
            format!("{origin}{}{location}", self.path())
        } else if location.is_empty() || location.starts_with('#') {
            self.full()
        } else {
            let path = self.path();
            let directory = path.rfind('/').map_or("/", |slash| &path[..=slash]);
            format!("{origin}{directory}{location}")
        }
    }
}

/// The scheme of an absolute URL (`ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")` before a colon).
fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .then_some(scheme)
}

/// A URL as the client sent it, for error messages: cut before query or fragment, userinfo
/// removed, control characters dropped, length bounded.
pub(super) fn redact_raw(raw: &str) -> String {
    let text = raw.trim();
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let after_scheme = scheme_of(text).map(|scheme| &text[scheme.len() + 1..]);
    let text = match after_scheme.and_then(|rest| rest.strip_prefix("//")) {
        Some(rest) => {
            let authority_end = rest.find(['/', '\\']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{}{}", &text[..text.len() - rest.len()], &rest[at + 1..]),
                None => text.to_owned(),
            }
        }
        // No authority: an opaque URL (`data:...`) can carry anything, so only its scheme shows.
        None => match scheme_of(text) {
            Some(scheme) => format!("{scheme}:..."),
            None => text.to_owned(),
        },
    };
    cut(text.chars().filter(|c| !c.is_control()).collect())
}

fn cut(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_SHOWN_URL) {
        text.truncate(at);
        text.push('…');
    }
    text
}
