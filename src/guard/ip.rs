//! CIDR allow and deny lists (the seeds' "IP blocking").

use std::net::IpAddr;

/// One CIDR block, e.g. `10.0.0.0/8`, `::1/128`, or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr =
            addr.parse().map_err(|_| format!("'{text}' is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': bad prefix length"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32)
                    == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128) == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, prefix: u8, width: u32) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let keep = u32::from(prefix).min(width);
    bits >> (width - keep)
}

/// Allow and deny lists: an address must be in the allow list (when it has
/// entries) and not in the deny list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl IpRules {
    /// Comma-separated CIDR lists; empty means no rule.
    pub fn parse(allow: &str, deny: &str) -> Result<IpRules, String> {
        let list = |text: &str| -> Result<Vec<Cidr>, String> {
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Cidr::parse).collect()
        };
        Ok(IpRules { allow: list(allow)?, deny: list(deny)? })
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
            && !self.deny.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_blocks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("192.168.1.0/24", "::ffff:192.168.1.7", true),
            ("::1/128", "::1", true),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "10.0.0.1", false),
        ];
        for (block, addr, want) in cases {
            assert_eq!(Cidr::parse(block).unwrap().contains(ip(addr)), *want, "{block} vs {addr}");
        }
        for bad in ["x", "10.0.0.0/33", "::/129", "1.2.3.4/-1"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        let rules = IpRules::parse("127.0.0.0/8", "127.0.0.2").unwrap();
        assert!(rules.admits(ip("127.0.0.1")));
        assert!(!rules.admits(ip("127.0.0.2")));
        assert!(!rules.admits(ip("10.0.0.1")));
        assert!(IpRules::parse("", "").unwrap().admits(ip("10.0.0.1")));
    }
}
