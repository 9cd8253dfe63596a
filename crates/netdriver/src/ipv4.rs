//! The IPv4 arithmetic DHCP needs (a subnet's network address, mask and
//! prefix, whether it holds an address). IPv6 subnets are not served by
//! this driver's DHCP yet.
use std::net::Ipv4Addr;

/// An IPv4 subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// `a.b.c.d/n` (host bits are cleared, as Neutron stores CIDRs).
    pub fn parse(cidr: &str) -> Option<Subnet> {
        let (a, p) = cidr.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let mask = Self::mask_bits(prefix);
        Some(Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    fn mask_bits(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_bits(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_bits(self.prefix) == u32::from(self.network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.77.0.5/24").unwrap();
        assert_eq!(s.network, Ipv4Addr::new(10, 77, 0, 0));
        assert_eq!(s.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(s.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!s.contains(Ipv4Addr::new(10, 77, 1, 1)));
        assert_eq!(
            Subnet::parse("0.0.0.0/0").unwrap().mask(),
            Ipv4Addr::UNSPECIFIED
        );
        assert!(Subnet::parse("fd00::/64").is_none());
        assert!(Subnet::parse("10.0.0.0/33").is_none());
    }
}
