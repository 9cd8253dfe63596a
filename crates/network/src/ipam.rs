//! Address arithmetic for IPv4 and IPv6 (both as u128) and the allocator:
//! pools, gateway, first free address from a moving hint.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed CIDR: version, network address, prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub v: u8,
    pub net: u128,
    pub len: u8,
}

pub fn parse_ip(s: &str) -> Option<(u8, u128)> {
    match s.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some((4, u32::from(a) as u128)),
        IpAddr::V6(a) => Some((6, u128::from(a))),
    }
}

pub fn fmt_ip(v: u8, n: u128) -> String {
    if v == 4 {
        Ipv4Addr::from(n as u32).to_string()
    } else {
        Ipv6Addr::from(n).to_string()
    }
}

pub fn bits(v: u8) -> u8 {
    if v == 4 { 32 } else { 128 }
}

impl Cidr {
    /// Parses `a.b.c.d/n` (a bare address is a host route /32 or /128).
    pub fn parse_loose(s: &str) -> Option<Cidr> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let (v, n) = parse_ip(a)?;
        let len = match l {
            Some(l) => l.parse::<u8>().ok()?,
            None => bits(v),
        };
        if len > bits(v) {
            return None;
        }
        Some(Cidr { v, net: n, len })
    }
    /// Parses a subnet's CIDR as Neutron's API takes it: an address and a
    /// prefix length; host bits set are dropped (`10.20.30.0/16` is
    /// `10.20.0.0/16`, as Neutron's `create_subnet` "turns the CIDR into a
    /// proper subnet").
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let c = Cidr::parse_loose(s).ok_or_else(|| format!("'{s}' is not a valid IP subnet"))?;
        if !s.contains('/') {
            return Err(format!("'{s}' is not a valid IP subnet"));
        }
        Ok(c.masked())
    }
    pub fn masked(&self) -> Cidr {
        Cidr {
            v: self.v,
            net: self.net & self.mask(),
            len: self.len,
        }
    }
    fn host_bits(&self) -> u32 {
        (bits(self.v) - self.len) as u32
    }
    pub fn mask(&self) -> u128 {
        let hb = self.host_bits();
        let all: u128 = if self.v == 4 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        if hb >= 128 {
            0
        } else {
            all & !((1u128 << hb) - 1)
        }
    }
    pub fn first(&self) -> u128 {
        self.net & self.mask()
    }
    pub fn last(&self) -> u128 {
        let hb = self.host_bits();
        if hb >= 128 {
            u128::MAX
        } else {
            self.first() | ((1u128 << hb) - 1)
        }
    }
    /// Number of addresses (saturating for huge IPv6 prefixes).
    pub fn size(&self) -> u128 {
        let hb = self.host_bits();
        if hb >= 128 { u128::MAX } else { 1u128 << hb }
    }
    pub fn contains(&self, v: u8, ip: u128) -> bool {
        v == self.v && ip >= self.first() && ip <= self.last()
    }
    pub fn overlaps(&self, o: &Cidr) -> bool {
        self.v == o.v && self.first() <= o.last() && o.first() <= self.last()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", fmt_ip(self.v, self.net), self.len)
    }
}

/// An inclusive address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u128,
    pub end: u128,
}

impl Range {
    pub fn size(&self) -> u128 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }
}

/// Neutron's default pools: every usable address but the gateway (v4 also
/// leaves out network and broadcast; v6 only the subnet-router anycast).
pub fn default_pools(c: &Cidr, gateway: Option<u128>) -> Vec<Range> {
    let (first, last) = if c.v == 4 {
        if c.len >= 31 {
            (c.first(), c.last())
        } else {
            (c.first() + 1, c.last() - 1)
        }
    } else if c.len >= 127 {
        (c.first(), c.last())
    } else {
        (c.first() + 1, c.last())
    };
    let mut out = vec![Range {
        start: first,
        end: last,
    }];
    if let Some(g) = gateway {
        out = exclude(&out, g);
    }
    out
}

/// `ranges` without `ip`.
pub fn exclude(ranges: &[Range], ip: u128) -> Vec<Range> {
    let mut out = Vec::new();
    for r in ranges {
        if ip < r.start || ip > r.end {
            out.push(*r);
            continue;
        }
        if ip > r.start {
            out.push(Range {
                start: r.start,
                end: ip - 1,
            });
        }
        if ip < r.end {
            out.push(Range {
                start: ip + 1,
                end: r.end,
            });
        }
    }
    out
}

/// The first free address in `pools` at or after `hint` (wrapping), or None.
pub fn next_free(pools: &[Range], used: &imbl::OrdSet<u128>, hint: u128) -> Option<u128> {
    scan(pools, used, hint, u128::MAX).or_else(|| {
        if hint > 0 {
            scan(pools, used, 0, hint - 1)
        } else {
            None
        }
    })
}

/// The first address of `pools` within `lo..=hi` that is not in `used`.
fn scan(pools: &[Range], used: &imbl::OrdSet<u128>, lo: u128, hi: u128) -> Option<u128> {
    for r in pools {
        let (start, end) = (r.start.max(lo), r.end.min(hi));
        if start > end {
            continue;
        }
        // Walk the used addresses from `start` in order; the first gap wins.
        let mut ip = start;
        let mut full = false;
        for u in used.range(start..=end) {
            if *u > ip {
                return Some(ip);
            }
            if ip == end {
                full = true;
                break;
            }
            ip += 1;
        }
        if !full {
            return Some(ip);
        }
    }
    None
}

/// The modified EUI-64 address of `mac` in the /64 `prefix` (SLAAC).
pub fn eui64(prefix: &Cidr, mac: &str) -> Option<u128> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    if bytes.len() != 6 {
        return None;
    }
    let iid: [u8; 8] = [
        bytes[0] ^ 0x02,
        bytes[1],
        bytes[2],
        0xff,
        0xfe,
        bytes[3],
        bytes[4],
        bytes[5],
    ];
    let mut low: u128 = 0;
    for x in iid {
        low = (low << 8) | x as u128;
    }
    Some(prefix.first() | low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert_eq!(c.size(), 256);
        assert_eq!(fmt_ip(4, c.last()), "10.0.0.255");
        assert_eq!(
            Cidr::parse("10.20.30.0/16").unwrap().to_string(),
            "10.20.0.0/16"
        );
        assert_eq!(
            Cidr::parse("2001:db8::1/64").unwrap().to_string(),
            "2001:db8::/64"
        );
        assert!(Cidr::parse("10.0.0.5").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        let p = default_pools(&c, Some(c.first() + 1));
        assert_eq!(p.len(), 1);
        assert_eq!(fmt_ip(4, p[0].start), "10.0.0.2");
        assert_eq!(fmt_ip(4, p[0].end), "10.0.0.254");
        let v6 = Cidr::parse("2001:db8::/64").unwrap();
        let p = default_pools(&v6, Some(v6.first() + 1));
        assert_eq!(fmt_ip(6, p[0].start), "2001:db8::2");
        assert_eq!(fmt_ip(6, p[0].end), "2001:db8::ffff:ffff:ffff:ffff");
        assert_eq!(
            fmt_ip(6, eui64(&v6, "fa:16:3e:00:00:01").unwrap()),
            "2001:db8::f816:3eff:fe00:1"
        );
    }

    #[test]
    fn next_free_wraps_and_skips() {
        let pools = vec![Range { start: 10, end: 12 }, Range { start: 20, end: 21 }];
        let mut used = imbl::OrdSet::new();
        assert_eq!(next_free(&pools, &used, 0), Some(10));
        used.insert(10);
        used.insert(11);
        assert_eq!(next_free(&pools, &used, 0), Some(12));
        used.insert(12);
        assert_eq!(next_free(&pools, &used, 11), Some(20));
        assert_eq!(next_free(&pools, &used, 22), Some(20));
        used.insert(20);
        used.insert(21);
        assert_eq!(next_free(&pools, &used, 0), None);
        used.remove(&11);
        assert_eq!(next_free(&pools, &used, 21), Some(11));
    }

    /// Property: allocating until exhaustion from any hints hands out every
    /// pool address exactly once.
    #[test]
    fn exhaustion_gives_each_address_once() {
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..50 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let a = (seed % 50) as u128;
            let b = a + (seed >> 8) as u128 % 40;
            let c = b + 2 + (seed >> 16) as u128 % 10;
            let pools = vec![
                Range { start: a, end: b },
                Range {
                    start: c,
                    end: c + (seed >> 24) as u128 % 30,
                },
            ];
            let total: u128 = pools.iter().map(Range::size).sum();
            let mut used = imbl::OrdSet::new();
            let mut hint = (seed >> 32) as u128 % 100;
            let mut n = 0;
            while let Some(ip) = next_free(&pools, &used, hint) {
                assert!(pools.iter().any(|r| ip >= r.start && ip <= r.end));
                assert!(used.insert(ip).is_none(), "duplicate {ip}");
                hint = ip + 1 + (seed as u128 % 3);
                n += 1;
            }
            assert_eq!(n, total);
        }
    }
}
