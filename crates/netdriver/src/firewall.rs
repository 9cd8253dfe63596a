//! Security groups in the kernel, as nftables (what Neutron's iptables and
//! openvswitch firewall drivers enforce), in two tables loaded in one
//! atomic `nft -f` transaction:
//!
//! - `bridge ferro_sg`: each guest port is matched by its tap, never by
//!   its address. A frame from a port is marked with the port's index in
//!   the mark's upper half and checked statelessly against the port's MACs
//!   and addresses (its own and its allowed address pairs': ARP and IPv4
//!   source, Ethernet source); a frame to a port gets the port's index in
//!   the lower half. The bridge family has no conntrack on this kernel,
//!   so state is kept in the inet table.
//! - `inet ferro_sg`: bridged IPv4 and IPv6 reach the inet hooks through
//!   br_netfilter. Conntrack zones are per network (two projects may use
//!   the same addresses); the forward chain sends a packet through the
//!   egress chain of the port it came from and the ingress chain of the
//!   port it goes to, found by the mark. Egress: DHCP and neighbour
//!   discovery, never DHCP or router advertisements served by the guest,
//!   then the port's egress rules; ingress: replies (established), DHCP
//!   offers, neighbour discovery, then the port's ingress rules; anything
//!   else is dropped. A port with `port_security_enabled = false` has no
//!   chains at all.
//!
//! Only tokens this module writes reach nft: names are checked ids,
//! addresses and prefixes are parsed, protocols are from a fixed list or
//! numbers, ports are numbers.
use crate::{HostState, PortSpec};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

/// The tables' name in both families.
pub const TABLE: &str = "ferro_sg";

/// One address or prefix as nft takes it.
fn prefix(s: &str) -> Option<(bool, String)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let v6 = ip.is_ipv6();
    match len {
        Some(l) if l > if v6 { 128 } else { 32 } => None,
        Some(l) => {
            // nft refuses host bits in a prefix: keep the network.
            let net = match ip {
                IpAddr::V4(a) => {
                    let m = if l == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(l))
                    };
                    IpAddr::V4((u32::from(a) & m).into())
                }
                IpAddr::V6(a) => {
                    let m = if l == 0 {
                        0
                    } else {
                        u128::MAX << (128 - u32::from(l))
                    };
                    IpAddr::V6((u128::from(a) & m).into())
                }
            };
            Some((v6, format!("{net}/{l}")))
        }
        None => Some((v6, ip.to_string())),
    }
}

/// The port's addresses and its allowed address pairs' (prefixes kept).
fn sources(p: &PortSpec) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = p.ips.iter().filter_map(|i| prefix(i)).collect();
    for pair in &p.allowed_address_pairs {
        if let Some(a) = pair["ip_address"].as_str().and_then(prefix) {
            out.push(a);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The port's MAC and its allowed address pairs' MACs.
fn macs(p: &PortSpec) -> BTreeSet<String> {
    let mut out = BTreeSet::from([p.mac.to_ascii_lowercase()]);
    for pair in &p.allowed_address_pairs {
        if let Some(m) = pair["mac_address"].as_str().filter(|m| crate::valid_mac(m)) {
            out.insert(m.to_ascii_lowercase());
        }
    }
    out
}

/// The IPv6 link-local address a guest makes from its MAC (EUI-64).
fn link_local(mac: &str) -> Option<String> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    if b.len() != 6 {
        return None;
    }
    let a = std::net::Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([b[0] ^ 0x02, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    );
    Some(a.to_string())
}

fn set(items: &[String]) -> String {
    format!("{{ {} }}", items.join(", "))
}

fn num(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// One security group rule as nft match expressions for a port's chain
/// (`ingress`: matched on the source; egress: on the destination), or
/// None when it can match nothing (a remote group without members, a
/// protocol this writer does not know).
fn rule(r: &Value, ingress: bool) -> Option<String> {
    let mut m = String::new();
    let v6 = match r["ethertype"].as_str().unwrap_or("IPv4") {
        "IPv4" => false,
        "IPv6" => true,
        _ => return None,
    };
    let family = if v6 { "ip6" } else { "ip" };
    m.push_str(if v6 {
        "meta nfproto ipv6"
    } else {
        "meta nfproto ipv4"
    });
    let dir = if ingress { "saddr" } else { "daddr" };
    if let Some(p) = r["remote_ip_prefix"].as_str() {
        let (pv6, p) = prefix(p)?;
        if pv6 != v6 {
            return None;
        }
        if !p.ends_with("/0") {
            let _ = write!(m, " {family} {dir} {p}");
        }
    } else if r["remote_group_id"].is_string() || r["remote_address_group_id"].is_string() {
        let members: Vec<String> = r["remote_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(prefix)
            .filter(|(pv6, _)| *pv6 == v6)
            .map(|(_, p)| p)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if members.is_empty() {
            return None;
        }
        let _ = write!(m, " {family} {dir} {}", set(&members));
    }
    let (lo, hi) = (num(&r["port_range_min"]), num(&r["port_range_max"]));
    let proto = match &r["protocol"] {
        Value::Null => None,
        Value::String(s) if s.is_empty() || s == "any" => None,
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Number(n) => Some(n.to_string()),
        _ => return None,
    };
    match proto.as_deref() {
        None => {}
        Some("tcp" | "6") => m.push_str(&l4("tcp", lo, hi)?),
        Some("udp" | "17") => m.push_str(&l4("udp", lo, hi)?),
        Some("sctp" | "132") => m.push_str(&l4("sctp", lo, hi)?),
        Some("icmp" | "1") if !v6 => {
            m.push_str(" meta l4proto icmp");
            if let Some(t) = lo.filter(|t| *t <= 255) {
                let _ = write!(m, " icmp type {t}");
                if let Some(c) = hi.filter(|c| *c <= 255) {
                    let _ = write!(m, " icmp code {c}");
                }
            }
        }
        Some("icmp" | "icmpv6" | "ipv6-icmp" | "58") if v6 => {
            m.push_str(" meta l4proto ipv6-icmp");
            if let Some(t) = lo.filter(|t| *t <= 255) {
                let _ = write!(m, " icmpv6 type {t}");
                if let Some(c) = hi.filter(|c| *c <= 255) {
                    let _ = write!(m, " icmpv6 code {c}");
                }
            }
        }
        Some(other) => {
            let n: u8 = other.parse().ok().or(match other {
                "gre" => Some(47),
                "esp" => Some(50),
                "ah" => Some(51),
                "igmp" => Some(2),
                "ospf" => Some(89),
                "vrrp" => Some(112),
                "pgm" => Some(113),
                "dccp" => Some(33),
                "udplite" => Some(136),
                "ipip" => Some(4),
                _ => None,
            })?;
            let _ = write!(m, " meta l4proto {n}");
        }
    }
    Some(m)
}

fn l4(p: &str, lo: Option<u64>, hi: Option<u64>) -> Option<String> {
    Some(match (lo, hi) {
        (Some(a), Some(b)) if a > 65535 || b > 65535 => return None,
        (Some(a), Some(b)) if a == b => format!(" meta l4proto {p} {p} dport {a}"),
        (Some(a), Some(b)) => format!(" meta l4proto {p} {p} dport {a}-{b}"),
        (Some(a), None) if a <= 65535 => format!(" meta l4proto {p} {p} dport {a}"),
        _ => format!(" meta l4proto {p}"),
    })
}

/// The guest ports whose traffic is filtered, by index (1-based: 0 in a
/// half of the mark means "no port").
fn filtered(state: &HostState) -> Vec<&PortSpec> {
    state
        .ports
        .values()
        .filter(|p| crate::is_guest_port(p) && p.port_security)
        .filter(|p| crate::safe_id(&p.id) && crate::valid_mac(&p.mac))
        .take(0xfffe)
        .collect()
}

/// The whole ruleset for `state`: both tables, replaced in one transaction.
pub fn render(state: &HostState) -> String {
    let ports = filtered(state);
    let mut br = String::new();
    let mut br_chains = String::new();
    let mut inet_chains = String::new();
    let mut out_map = Vec::new();
    let mut in_map = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = (i + 1) as u32;
        let tap = crate::tap_name(&p.id);
        let c = crate::short(&p.id).replace('-', "_");
        let _ = writeln!(br, "    iifname \"{tap}\" jump from_{c}");
        let _ = writeln!(
            br,
            "    oifname \"{tap}\" meta mark set meta mark | 0x{idx:08x}"
        );
        let srcs = sources(p);
        let v4: Vec<String> = srcs
            .iter()
            .filter(|(v6, _)| !v6)
            .map(|(_, a)| a.clone())
            .chain(["0.0.0.0".to_string()])
            .collect();
        let mut v6: Vec<String> = srcs
            .iter()
            .filter(|(v6, _)| *v6)
            .map(|(_, a)| a.clone())
            .collect();
        v6.push("::".into());
        if let Some(ll) = link_local(&p.mac) {
            v6.push(ll);
        }
        let macs: Vec<String> = macs(p).into_iter().collect();
        let v4_noany: Vec<String> = v4.iter().filter(|a| *a != "0.0.0.0").cloned().collect();
        let _ = writeln!(br_chains, "  chain from_{c} {{");
        let _ = writeln!(
            br_chains,
            "    meta mark set meta mark | 0x{:08x}",
            idx << 16
        );
        let _ = writeln!(br_chains, "    ether saddr != {} drop", set(&macs));
        if v4_noany.is_empty() {
            let _ = writeln!(br_chains, "    ether type arp drop");
        } else {
            let _ = writeln!(
                br_chains,
                "    ether type arp arp saddr ip != {} drop",
                set(&v4_noany)
            );
        }
        let _ = writeln!(br_chains, "    ether type ip ip saddr != {} drop", set(&v4));
        let _ = writeln!(
            br_chains,
            "    ether type ip6 ip6 saddr != {} drop",
            set(&v6)
        );
        let _ = writeln!(br_chains, "  }}");
        out_map.push(format!("0x{:08x} : jump out_{c}", idx << 16));
        in_map.push(format!("0x{idx:08x} : jump in_{c}"));
        // Egress.
        let _ = writeln!(inet_chains, "  chain out_{c} {{");
        for l in [
            "ct state invalid drop",
            // DHCP and neighbour discovery of the guest itself.
            "meta nfproto ipv4 udp sport 68 udp dport 67 return",
            "meta nfproto ipv6 udp sport 546 udp dport 547 return",
            "meta l4proto ipv6-icmp icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report } return",
            // Never a DHCP server or a router.
            "meta nfproto ipv4 udp sport 67 udp dport 68 drop",
            "meta nfproto ipv6 udp sport 547 udp dport 546 drop",
            "meta l4proto ipv6-icmp icmpv6 type { nd-router-advert, nd-redirect } drop",
            "ct state established,related return",
        ] {
            let _ = writeln!(inet_chains, "    {l}");
        }
        for r in p.rules.iter().filter(|r| r["direction"] == "egress") {
            if let Some(m) = rule(r, false) {
                let _ = writeln!(inet_chains, "    {m} return");
            }
        }
        let _ = writeln!(inet_chains, "    drop\n  }}");
        // Ingress.
        let _ = writeln!(inet_chains, "  chain in_{c} {{");
        for l in [
            "ct state invalid drop",
            "ct state established,related accept",
            "meta nfproto ipv4 udp sport 67 udp dport 68 accept",
            "meta nfproto ipv6 udp sport 547 udp dport 546 accept",
            "meta l4proto ipv6-icmp icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query } accept",
        ] {
            let _ = writeln!(inet_chains, "    {l}");
        }
        for r in p.rules.iter().filter(|r| r["direction"] == "ingress") {
            if let Some(m) = rule(r, true) {
                let _ = writeln!(inet_chains, "    {m} accept");
            }
        }
        let _ = writeln!(inet_chains, "    drop\n  }}");
    }
    // Conntrack zones: one per network, by the network's bridge.
    let nets: BTreeSet<&str> = state.networks.keys().map(String::as_str).collect();
    let mut zones = String::new();
    for (z, n) in nets.iter().filter(|n| crate::safe_id(n)).enumerate() {
        let _ = writeln!(
            zones,
            "    iifname \"{}\" ct zone set {}",
            crate::bridge_name(n),
            (z + 1).min(65535)
        );
    }
    let mut s = String::new();
    let _ = writeln!(s, "table bridge {TABLE}\ndelete table bridge {TABLE}");
    let _ = writeln!(s, "table bridge {TABLE} {{");
    let _ = writeln!(
        s,
        "  chain forward {{\n    type filter hook forward priority -200; policy accept;"
    );
    s.push_str(&br);
    let _ = writeln!(s, "  }}");
    s.push_str(&br_chains);
    let _ = writeln!(s, "}}");
    let _ = writeln!(s, "table inet {TABLE}\ndelete table inet {TABLE}");
    let _ = writeln!(s, "table inet {TABLE} {{");
    let _ = writeln!(
        s,
        "  chain zone {{\n    type filter hook prerouting priority raw; policy accept;"
    );
    s.push_str(&zones);
    let _ = writeln!(s, "  }}");
    let _ = writeln!(
        s,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;"
    );
    if !out_map.is_empty() {
        let _ = writeln!(s, "    meta mark & 0xffff0000 vmap {}", set(&out_map));
        let _ = writeln!(s, "    meta mark & 0x0000ffff vmap {}", set(&in_map));
    }
    let _ = writeln!(s, "  }}");
    s.push_str(&inet_chains);
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NetSpec;
    use serde_json::json;

    fn port(id: &str, ip: &str, mac: &str, rules: Vec<Value>) -> PortSpec {
        PortSpec {
            id: id.into(),
            network_id: "net-0000000001".into(),
            mac: mac.into(),
            ips: vec![ip.into()],
            device_owner: "compute:nova".into(),
            device_id: "vm".into(),
            admin_up: true,
            port_security: true,
            rules,
            allowed_address_pairs: vec![
                json!({"ip_address": "10.0.0.128/25", "mac_address": "fa:16:3e:aa:bb:cc"}),
            ],
        }
    }

    #[test]
    fn rules_become_per_port_chains() {
        let mut s = HostState::default();
        s.networks.insert(
            "net-0000000001".into(),
            NetSpec {
                id: "net-0000000001".into(),
                ..Default::default()
            },
        );
        let rules = vec![
            json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "192.168.1.7/24"}),
            json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp", "remote_group_id": "sg", "remote_ips": ["10.0.0.6", "fd00::6"]}),
            json!({"direction": "ingress", "ethertype": "IPv4", "protocol": null, "remote_group_id": "empty", "remote_ips": []}),
            json!({"direction": "egress", "ethertype": "IPv6", "protocol": null}),
            json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "bogus\"; flush ruleset"}),
        ];
        s.ports.insert(
            "p1".into(),
            port("port-aaaaaaa1", "10.0.0.5", "fa:16:3e:00:00:01", rules),
        );
        let mut off = port("port-bbbbbbb2", "10.0.0.6", "fa:16:3e:00:00:02", vec![]);
        off.port_security = false;
        s.ports.insert("p2".into(), off);
        let r = render(&s);
        assert!(
            r.contains("iifname \"tapport-aaaaaa\" jump from_port_aaaaaa"),
            "{r}"
        );
        assert!(
            r.contains("oifname \"tapport-aaaaaa\" meta mark set meta mark | 0x00000001"),
            "{r}"
        );
        assert!(
            r.contains("ether saddr != { fa:16:3e:00:00:01, fa:16:3e:aa:bb:cc } drop"),
            "{r}"
        );
        assert!(
            r.contains("ip saddr != { 10.0.0.128/25, 10.0.0.5, 0.0.0.0 } drop"),
            "{r}"
        );
        assert!(r.contains("fe80::f816:3eff:fe00:1"), "{r}");
        assert!(
            r.contains(
                "meta nfproto ipv4 ip saddr 192.168.1.0/24 meta l4proto tcp tcp dport 22 accept"
            ),
            "{r}"
        );
        assert!(
            r.contains("meta nfproto ipv4 ip saddr { 10.0.0.6 } meta l4proto icmp accept"),
            "{r}"
        );
        assert!(r.contains("meta nfproto ipv6 return"), "{r}");
        assert!(!r.contains("bogus") && !r.contains("flush ruleset"), "{r}");
        assert_eq!(r.matches("accept\n").count(), 2 + 4, "{r}");
        // No chains for a port without port security.
        assert!(!r.contains("tapport-bbbbbb"), "{r}");
        assert!(
            r.contains("iifname \"brqnet-0000000\" ct zone set 1"),
            "{r}"
        );
    }
}
