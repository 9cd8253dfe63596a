//! Security groups in the kernel, as nftables (what Neutron's iptables and
//! openvswitch firewall drivers enforce), in two tables loaded in one
//! atomic `nft -f` transaction:
//!
//! - `bridge ferro_sg`: each guest port is matched by its tap, never by
//!   its address. A frame from a port is marked with the port's index in
//!   the mark's upper half and checked statelessly against the port's MACs
//!   and addresses (its own and its allowed address pairs': ARP and IPv4
//!   source, Ethernet source); a frame to a port gets the port's index in
//!   the lower half. A frame from a port that the bridge would deliver to
//!   the host itself is dropped: guests reach DHCP and metadata (in
//!   `qdhcp-<net>`, across the bridge), nothing listening on the host.
//!   The bridge family has no conntrack on this kernel, so state is kept
//!   in the inet table.
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
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

/// The tables' name in both families.
pub const TABLE: &str = "ferro_sg";

/// One address or prefix as nft takes it.
pub(crate) fn prefix(s: &str) -> Option<(bool, String)> {
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

/// The guest ports whose traffic is filtered.
fn filtered(state: &HostState) -> Vec<&PortSpec> {
    state
        .ports
        .values()
        .filter(|p| crate::is_local_guest_port(p) && p.port_security)
        .filter(|p| crate::safe_id(&p.id) && crate::valid_mac(&p.mac))
        .collect()
}

/// The most ports one host filters (an index is 16 bits of the mark, 0
/// meaning none).
pub const MAX_PORTS: u32 = 0xfffe;

/// One filtered port's part of the ruleset: its tap, the name its chains
/// share, and the bodies of its chains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRules {
    pub tap: String,
    pub name: String,
    /// Its index (1..=MAX_PORTS): the low half of the mark of frames to it,
    /// the high half of frames from it.
    pub index: u32,
    /// `bridge`: frames from it (mark, anti-spoofing).
    pub from: String,
    /// `bridge`: frames to it (mark).
    pub to: String,
    /// `inet`: its egress and ingress rules.
    pub egress: String,
    pub ingress: String,
}

/// The chains of port `p` with index `index`.
pub fn port_rules(p: &PortSpec, index: u32) -> PortRules {
    let mut from = String::new();
    let mut egress = String::new();
    let mut ingress = String::new();
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
    let _ = writeln!(from, "    meta mark set meta mark | 0x{:08x}", index << 16);
    let _ = writeln!(from, "    ether saddr != {} drop", set(&macs));
    if v4_noany.is_empty() {
        let _ = writeln!(from, "    ether type arp drop");
    } else {
        let _ = writeln!(
            from,
            "    ether type arp arp saddr ip != {} drop",
            set(&v4_noany)
        );
    }
    let _ = writeln!(from, "    ether type ip ip saddr != {} drop", set(&v4));
    let _ = writeln!(from, "    ether type ip6 ip6 saddr != {} drop", set(&v6));
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
        let _ = writeln!(egress, "    {l}");
    }
    for r in p.rules.iter().filter(|r| r["direction"] == "egress") {
        if let Some(m) = rule(r, false) {
            let _ = writeln!(egress, "    {m} return");
        }
    }
    let _ = writeln!(egress, "    drop");
    for l in [
        "ct state invalid drop",
        "ct state established,related accept",
        "meta nfproto ipv4 udp sport 67 udp dport 68 accept",
        "meta nfproto ipv6 udp sport 547 udp dport 546 accept",
        "meta l4proto ipv6-icmp icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query } accept",
    ] {
        let _ = writeln!(ingress, "    {l}");
    }
    for r in p.rules.iter().filter(|r| r["direction"] == "ingress") {
        if let Some(m) = rule(r, true) {
            let _ = writeln!(ingress, "    {m} accept");
        }
    }
    let _ = writeln!(ingress, "    drop");
    PortRules {
        tap: crate::tap_name(&p.id),
        name: crate::short(&p.id).replace('-', "_"),
        index,
        from,
        to: format!("    meta mark set meta mark | 0x{index:08x}\n"),
        egress,
        ingress,
    }
}

/// The conntrack zone rules: one zone per network, by its bridge.
fn zones(state: &HostState) -> String {
    let mut z = String::new();
    for (i, n) in state
        .networks
        .keys()
        .filter(|n| crate::safe_id(n))
        .enumerate()
    {
        let _ = writeln!(
            z,
            "    iifname \"{}\" ct zone set {}",
            crate::bridge_name(n),
            (i + 1).min(65535)
        );
    }
    z
}

/// A port's chains, as a table body adds them.
fn chains(family: &str, r: &PortRules) -> String {
    let n = &r.name;
    if family == "bridge" {
        format!(
            "  chain from_{n} {{\n{}  }}\n  chain to_{n} {{\n{}  }}\n",
            r.from, r.to
        )
    } else {
        format!(
            "  chain out_{n} {{\n{}  }}\n  chain in_{n} {{\n{}  }}\n",
            r.egress, r.ingress
        )
    }
}

/// The dispatch map elements of a port, per family and map.
fn elements(r: &PortRules) -> [(&'static str, &'static str, String); 4] {
    let n = &r.name;
    [
        (
            "bridge",
            "from_port",
            format!("\"{}\" : jump from_{n}", r.tap),
        ),
        ("bridge", "to_port", format!("\"{}\" : jump to_{n}", r.tap)),
        (
            "inet",
            "egress",
            format!("0x{:08x} : jump out_{n}", r.index << 16),
        ),
        (
            "inet",
            "ingress",
            format!("0x{:08x} : jump in_{n}", r.index),
        ),
    ]
}

/// Both tables whole, replacing what is there, in one transaction.
fn full(ports: &[&PortRules], zones: &str) -> String {
    let mut s = String::new();
    let els = |family: &str, map: &str| -> String {
        let e: Vec<String> = ports
            .iter()
            .flat_map(|r| elements(r))
            .filter(|(f, m, _)| *f == family && *m == map)
            .map(|(_, _, e)| e)
            .collect();
        if e.is_empty() {
            String::new()
        } else {
            format!(" elements = {};", set(&e))
        }
    };
    let _ = writeln!(s, "table bridge {TABLE}\ndelete table bridge {TABLE}");
    let _ = writeln!(s, "table bridge {TABLE} {{");
    let _ = writeln!(
        s,
        "  map from_port {{ type ifname : verdict;{} }}",
        els("bridge", "from_port")
    );
    let _ = writeln!(
        s,
        "  map to_port {{ type ifname : verdict;{} }}",
        els("bridge", "to_port")
    );
    for r in ports {
        s.push_str(&chains("bridge", r));
    }
    let _ = writeln!(
        s,
        "  chain forward {{\n    type filter hook forward priority -200; policy accept;\n    iifname vmap @from_port\n    oifname vmap @to_port\n  }}"
    );
    // The host is no guest's destination: a frame from a port that the
    // bridge would deliver to the host itself (its MAC, or a broadcast's
    // local copy) goes no further, whatever address it names; the
    // forwarded copies are the forward chain's.
    let _ = writeln!(
        s,
        "  chain input {{\n    type filter hook input priority -200; policy accept;\n    iifname vmap @from_port\n    meta mark & 0xffff0000 != 0 drop\n  }}"
    );
    let _ = writeln!(s, "}}");
    let _ = writeln!(s, "table inet {TABLE}\ndelete table inet {TABLE}");
    let _ = writeln!(s, "table inet {TABLE} {{");
    let _ = writeln!(
        s,
        "  map egress {{ type mark : verdict;{} }}",
        els("inet", "egress")
    );
    let _ = writeln!(
        s,
        "  map ingress {{ type mark : verdict;{} }}",
        els("inet", "ingress")
    );
    for r in ports {
        s.push_str(&chains("inet", r));
    }
    let _ = writeln!(
        s,
        "  chain zone {{\n    type filter hook prerouting priority raw; policy accept;\n{zones}  }}"
    );
    let _ = writeln!(
        s,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    meta mark & 0xffff0000 vmap @egress\n    meta mark & 0x0000ffff vmap @ingress\n  }}"
    );
    let _ = writeln!(s, "}}");
    s
}

/// The whole ruleset for `state` (ports indexed in order): both tables,
/// replaced in one transaction.
pub fn render(state: &HostState) -> String {
    let rules: Vec<PortRules> = filtered(state)
        .into_iter()
        .take(MAX_PORTS as usize)
        .enumerate()
        .map(|(i, p)| port_rules(p, i as u32 + 1))
        .collect();
    full(&rules.iter().collect::<Vec<_>>(), &zones(state))
}

/// What is loaded in the kernel, so that a change touches only the ports
/// that changed: their chains are flushed and refilled, a new port's
/// chains and map elements are added, a gone port's removed, all in one
/// transaction. Indexes stay with their ports while they are loaded.
#[derive(Default)]
pub struct Loaded {
    ports: BTreeMap<String, PortRules>,
    zones: Option<String>,
}

impl Loaded {
    /// The transaction that takes the kernel from what is loaded to
    /// `state`, and what is loaded after it; None when nothing changes.
    /// `whole`: the tables must be replaced whole (first load, or they are
    /// not as loaded).
    pub fn plan(&self, state: &HostState, whole: bool) -> Option<(String, Loaded)> {
        let want = filtered(state);
        let wanted: BTreeSet<&str> = want.iter().map(|p| p.id.as_str()).collect();
        // Indexes: kept for loaded ports, the lowest free for new ones.
        let mut used: BTreeSet<u32> = self
            .ports
            .iter()
            .filter(|(id, _)| wanted.contains(id.as_str()) && !whole)
            .map(|(_, r)| r.index)
            .collect();
        let mut next = 1u32;
        let mut ports = BTreeMap::new();
        for p in want {
            let index = match self.ports.get(&p.id).filter(|_| !whole) {
                Some(r) => r.index,
                None => {
                    while used.contains(&next) {
                        next += 1;
                    }
                    if next > MAX_PORTS {
                        tracing::warn!(port = %p.id, "more than {MAX_PORTS} filtered ports on one host");
                        continue;
                    }
                    used.insert(next);
                    next
                }
            };
            ports.insert(p.id.clone(), port_rules(p, index));
        }
        let z = zones(state);
        let after = Loaded {
            ports,
            zones: Some(z.clone()),
        };
        if whole || self.zones.as_deref() != Some(z.as_str()) {
            let all: Vec<&PortRules> = after.ports.values().collect();
            return Some((full(&all, &z), after));
        }
        let mut tx = String::new();
        // Gone: their elements, then their chains.
        for (id, r) in &self.ports {
            if after.ports.contains_key(id) {
                continue;
            }
            for (family, map, e) in elements(r) {
                let key = e.split(" : ").next().unwrap_or_default().to_string();
                let _ = writeln!(tx, "delete element {family} {TABLE} {map} {{ {key} }}");
            }
            let n = &r.name;
            for (family, c) in [
                ("bridge", "from"),
                ("bridge", "to"),
                ("inet", "out"),
                ("inet", "in"),
            ] {
                let _ = writeln!(tx, "delete chain {family} {TABLE} {c}_{n}");
            }
        }
        for (id, r) in &after.ports {
            match self.ports.get(id) {
                // New: its chains, then its elements.
                None => {
                    for family in ["bridge", "inet"] {
                        let _ = writeln!(tx, "table {family} {TABLE} {{\n{}}}", chains(family, r));
                    }
                    for (family, map, e) in elements(r) {
                        let _ = writeln!(tx, "add element {family} {TABLE} {map} {{ {e} }}");
                    }
                }
                // Changed: only the chains whose rules differ.
                Some(old) => {
                    let n = &r.name;
                    for (family, c, was, now) in [
                        ("bridge", "from", &old.from, &r.from),
                        ("bridge", "to", &old.to, &r.to),
                        ("inet", "out", &old.egress, &r.egress),
                        ("inet", "in", &old.ingress, &r.ingress),
                    ] {
                        if was != now {
                            let _ = writeln!(
                                tx,
                                "flush chain {family} {TABLE} {c}_{n}\ntable {family} {TABLE} {{\n  chain {c}_{n} {{\n{now}  }}\n}}"
                            );
                        }
                    }
                }
            }
        }
        if tx.is_empty() {
            None
        } else {
            Some((tx, after))
        }
    }

    /// Whether anything is loaded.
    pub fn is_empty(&self) -> bool {
        self.zones.is_none()
    }
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
            ..Default::default()
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
            r.contains("\"tapport-aaaaaa\" : jump from_port_aaaaaa"),
            "{r}"
        );
        assert!(
            r.contains("\"tapport-aaaaaa\" : jump to_port_aaaaaa"),
            "{r}"
        );
        assert!(r.contains("0x00010000 : jump out_port_aaaaaa"), "{r}");
        assert!(r.contains("0x00000001 : jump in_port_aaaaaa"), "{r}");
        assert!(r.contains("meta mark set meta mark | 0x00000001\n"), "{r}");
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

    /// A change touches only the ports that changed: their chains, or their
    /// chains and map elements when they come or go; indexes stay put.
    #[test]
    fn a_change_is_planned_per_port() {
        let mut s = HostState::default();
        s.networks.insert(
            "net-0000000001".into(),
            NetSpec {
                id: "net-0000000001".into(),
                ..Default::default()
            },
        );
        for (id, ip, mac) in [
            ("port-aaaaaaa1", "10.0.0.5", "fa:16:3e:00:00:01"),
            ("port-bbbbbbb2", "10.0.0.6", "fa:16:3e:00:00:02"),
        ] {
            s.ports.insert(id.into(), port(id, ip, mac, vec![]));
        }
        let empty = Loaded::default();
        assert!(empty.is_empty());
        let (first, loaded) = empty.plan(&s, false).unwrap();
        assert!(first.contains("delete table inet ferro_sg"), "{first}");
        assert!(loaded.plan(&s, false).is_none(), "nothing changed");
        // One rule added to one port: only its ingress chain.
        s.ports
            .get_mut("port-bbbbbbb2")
            .unwrap()
            .rules
            .push(json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}));
        let (tx, loaded) = loaded.plan(&s, false).unwrap();
        assert_eq!(
            tx.lines()
                .filter(|l| l.starts_with("flush chain"))
                .collect::<Vec<_>>(),
            vec!["flush chain inet ferro_sg in_port_bbbbbb"],
            "{tx}"
        );
        assert!(
            !tx.contains("delete table") && !tx.contains("port_aaaaaa"),
            "{tx}"
        );
        // The first port goes, a third comes and takes the free index 1.
        s.ports.remove("port-aaaaaaa1");
        s.ports.insert(
            "port-ccccccc3".into(),
            port("port-ccccccc3", "10.0.0.7", "fa:16:3e:00:00:03", vec![]),
        );
        let (tx, loaded) = loaded.plan(&s, false).unwrap();
        assert!(
            tx.contains("delete element inet ferro_sg egress { 0x00010000 }"),
            "{tx}"
        );
        assert!(
            tx.contains("delete chain bridge ferro_sg from_port_aaaaaa"),
            "{tx}"
        );
        assert!(
            tx.contains("add element inet ferro_sg ingress { 0x00000001 : jump in_port_cccccc }"),
            "{tx}"
        );
        assert!(!tx.contains("port_bbbbbb"), "{tx}");
        assert_eq!(loaded.ports["port-bbbbbbb2"].index, 2);
        // Tables found changed: replaced whole.
        let (tx, _) = loaded.plan(&s, true).unwrap();
        assert!(tx.contains("delete table bridge ferro_sg"), "{tx}");
    }
}
