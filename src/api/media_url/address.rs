//! Address ranges: the refused ones, and the form an operator writes exemptions in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::MediaPolicyError;

/// An address range in CIDR form (`10.0.0.0/8`, `::1/128`); a bare address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

impl AddressRange {
    /// The range of `prefix` leading bits of `addr` (bits past the prefix are cleared).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, MediaPolicyError> {
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > bits {
            return Err(MediaPolicyError::AddressRange(format!("{addr}/{prefix}: prefix over {bits}")));
        }
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is inside; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => in_v4(ip, net, self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => in_v6(ip, net, self.prefix),
            // `::ffff:a.b.c.d/n` written as an IPv6 range still holds the mapped form.
            (IpAddr::V6(net), IpAddr::V4(v4)) => in_v6(v4.to_ipv6_mapped(), net, self.prefix),
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl FromStr for AddressRange {
    type Err = MediaPolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| MediaPolicyError::AddressRange(format!("{text:?}: {why}"));
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let prefix = match (prefix, addr) {
            (Some(prefix), _) => prefix.parse().map_err(|_| bad("prefix is not a number"))?,
            (None, IpAddr::V4(_)) => 32,
            (None, IpAddr::V6(_)) => 128,
        };
        Self::new(addr, prefix)
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    (u32::from(ip) ^ u32::from(net)) & mask_v4(prefix) == 0
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u8) -> bool {
    (u128::from(ip) ^ u128::from(net)) & mask_v6(prefix) == 0
}

/// Refused IPv4 ranges, the narrow ones first so that the message names the most telling one.
const REFUSED_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(169, 254, 169, 254), 32, "cloud metadata"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
    (Ipv4Addr::new(0, 0, 0, 0), 8, "unspecified (\"this network\")"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space (CGNAT)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "6to4 relay anycast"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
];

/// Refused IPv6 ranges checked before the global-unicast rule, narrow ones first.
const REFUSED_V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128, "cloud metadata"),
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified"),
    (Ipv6Addr::LOCALHOST, 128, "loopback"),
    (Ipv6Addr::UNSPECIFIED, 96, "IPv4-compatible (deprecated)"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "local-use NAT64"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "Teredo"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "IETF protocol assignments"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "documentation"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique local"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local (deprecated)"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

const NAT64: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);
const SIX_TO_FOUR: Ipv6Addr = Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0);
const GLOBAL_UNICAST: Ipv6Addr = Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0);

/// Why `ip` may not be fetched from, as (what the range is, the range), or `None` when it may.
pub(super) fn refused_range(ip: IpAddr) -> Option<(&'static str, AddressRange)> {
    let range = |net: IpAddr, prefix| AddressRange { network: net, prefix };
    match ip {
        IpAddr::V4(v4) => REFUSED_V4
            .iter()
            .find(|(net, prefix, _)| in_v4(v4, *net, *prefix))
            .map(|(net, prefix, what)| (*what, range(IpAddr::V4(*net), *prefix))),
        IpAddr::V6(v6) => {
            // These forms reach (or are routed to) an IPv4 address: that address decides.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_range(IpAddr::V4(v4));
            }
            let bits = u128::from(v6);
            if in_v6(v6, NAT64, 96) {
                return refused_range(IpAddr::V4(Ipv4Addr::from(bits as u32)));
            }
            if in_v6(v6, SIX_TO_FOUR, 16) {
                return refused_range(IpAddr::V4(Ipv4Addr::from((bits >> 80) as u32)));
            }
            if let Some((net, prefix, what)) =
                REFUSED_V6.iter().find(|(net, prefix, _)| in_v6(v6, *net, *prefix))
            {
                return Some((*what, range(IpAddr::V6(*net), *prefix)));
            }
            if in_v6(v6, GLOBAL_UNICAST, 3) {
                None
            } else {
                Some(("not global unicast", range(IpAddr::V6(GLOBAL_UNICAST), 3)))
            }
        }
    }
}
