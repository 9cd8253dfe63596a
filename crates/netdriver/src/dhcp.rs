//! What dnsmasq is told about a network, as Neutron's DHCP agent writes
//! it (`neutron/agent/linux/dhcp.py`): a host entry per port (MAC →
//! `host-<address>` and its address, tagged `port-<id>` when the port has
//! `extra_dhcp_opts`), and per subnet its router, DNS servers and
//! classless static routes (option 121, and 249 for older Windows
//! clients): the subnet's host routes, the other subnets of the network
//! as on-link, the metadata address through the DHCP port (isolated
//! metadata; routers do not serve metadata yet), and the default route
//! beside them, since a client that takes option 121 ignores option 3.
use crate::ipv4::Subnet;
use crate::{DhcpSubnet, NetSpec, PortSpec};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The dnsmasq `--dhcp-hostsfile` and `--dhcp-optsfile` bodies.
#[derive(Debug, Default, PartialEq)]
pub struct DhcpFiles {
    pub hosts: String,
    pub opts: String,
}

/// The network's IPv4 DHCP subnets, in order (dnsmasq's `subnet<i>` tags).
pub fn dhcp_subnets(net: &NetSpec) -> Vec<(Subnet, &DhcpSubnet)> {
    net.dhcp_subnets
        .iter()
        .filter_map(|d| Some((Subnet::parse(&d.cidr)?, d)))
        .collect()
}

/// dnsmasq reads both files line by line: a value that could start a new
/// line, or that is empty, is never written.
fn writable(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}

/// Options dnsmasq sets itself from the host entry (Neutron skips them too).
const SKIPPED_PORT_OPTS: [&str; 2] = ["client-id", "61"];

/// `tag:<tag>,option:<name>` or `tag:<tag>,<number>` (a name may carry its
/// own `tag:x,` prefix), as Neutron's `_format_option`.
fn option(tag: &str, name: &str) -> String {
    let (extra, name) = match name.strip_prefix("tag:").and_then(|r| r.split_once(',')) {
        Some((t, n)) => (Some(t), n),
        None => (None, name),
    };
    let name = if name.chars().all(|c| c.is_ascii_digit()) {
        name.to_string()
    } else {
        format!("option:{name}")
    };
    match extra {
        Some(t) => format!("tag:{tag},tag:{t},{name}"),
        None => format!("tag:{tag},{name}"),
    }
}

pub fn dhcp_files(
    subnets: &[(Subnet, &DhcpSubnet)],
    dhcp_port: &PortSpec,
    ports: &[&PortSpec],
) -> DhcpFiles {
    let mut f = DhcpFiles::default();
    let in_dhcp = |ip: &str| -> Option<Ipv4Addr> {
        let a: Ipv4Addr = ip.parse().ok()?;
        subnets.iter().any(|(s, _)| s.contains(a)).then_some(a)
    };
    for p in ports.iter().filter(|p| p.id != dhcp_port.id) {
        let opts: Vec<_> = p
            .extra_dhcp_opts
            .iter()
            .filter(|o| o.ip_version == 4 && !SKIPPED_PORT_OPTS.contains(&o.name.as_str()))
            .filter(|o| {
                let ok = writable(&o.name) && writable(&o.value);
                if !ok {
                    tracing::warn!(port = %p.id, "extra_dhcp_opts {:?} not written", o.name);
                }
                ok
            })
            .collect();
        let tag = format!("port-{}", p.id);
        let mut has_address = false;
        for a in p.ips.iter().filter_map(|ip| in_dhcp(ip)) {
            has_address = true;
            let name = format!("host-{}", a.to_string().replace('.', "-"));
            let mac = p.mac.to_ascii_lowercase();
            let _ = if opts.is_empty() {
                writeln!(f.hosts, "{mac},{name}.openstacklocal.,{a}")
            } else {
                writeln!(f.hosts, "{mac},{name}.openstacklocal.,{a},set:{tag}")
            };
        }
        if has_address {
            for o in opts {
                let _ = writeln!(f.opts, "{},{}", option(&tag, &o.name), o.value);
            }
        }
    }
    for (i, (s, d)) in subnets.iter().enumerate() {
        let tag = format!("subnet{i}");
        let mut gateway = d
            .gateway
            .as_deref()
            .and_then(|g| g.parse::<Ipv4Addr>().ok());
        if d.dns_nameservers == ["0.0.0.0"] {
            // Neutron's way to announce no DNS server at all.
            let _ = writeln!(f.opts, "{}", option(&tag, "dns-server"));
        } else if !d.dns_nameservers.is_empty() {
            let dns: Vec<&str> = d
                .dns_nameservers
                .iter()
                .map(String::as_str)
                .filter(|a| a.parse::<Ipv4Addr>().is_ok())
                .collect();
            if !dns.is_empty() {
                let _ = writeln!(f.opts, "{},{}", option(&tag, "dns-server"), dns.join(","));
            }
        }
        let mut routes: Vec<String> = Vec::new();
        for (dest, hop) in &d.host_routes {
            let Ok(h) = hop.parse::<Ipv4Addr>() else {
                continue;
            };
            match Subnet::parse(dest) {
                Some(r) if r.prefix == 0 => {
                    gateway.get_or_insert(h);
                }
                Some(r) => routes.push(format!("{}/{},{h}", r.network, r.prefix)),
                None => {}
            }
        }
        let dhcp_ip = dhcp_port
            .ips
            .iter()
            .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
            .find(|a| s.contains(*a));
        if let Some(m) = dhcp_ip {
            routes.push(format!("{}/32,{m}", crate::METADATA_IP));
        }
        for (other, _) in subnets.iter().filter(|(o, _)| o != s) {
            routes.insert(0, format!("{}/{},0.0.0.0", other.network, other.prefix));
        }
        if !routes.is_empty() {
            if let Some(g) = gateway {
                routes.push(format!("0.0.0.0/0,{g}"));
            }
            let r = routes.join(",");
            let _ = writeln!(f.opts, "{},{r}", option(&tag, "classless-static-route"));
            let _ = writeln!(f.opts, "{},{r}", option(&tag, "249"));
        }
        let _ = match gateway {
            Some(g) => writeln!(f.opts, "{},{g}", option(&tag, "router")),
            // No gateway: no default route (Neutron sends an empty router option).
            None => writeln!(f.opts, "{}", option(&tag, "router")),
        };
    }
    f
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::DhcpOpt;

    fn port(id: &str, owner: &str, ip: &str) -> PortSpec {
        PortSpec {
            id: id.into(),
            network_id: "n".into(),
            mac: "FA:16:3E:00:00:0A".into(),
            ips: vec![ip.into()],
            device_owner: owner.into(),
            ..Default::default()
        }
    }

    /// The files for a subnet with DNS servers and host routes, a second
    /// subnet, and a port with extra options, line for line as Neutron's
    /// DHCP agent writes them.
    #[test]
    fn hosts_and_options_as_neutron_writes_them() {
        let net = NetSpec {
            id: "n".into(),
            dhcp_subnets: vec![
                DhcpSubnet {
                    cidr: "10.0.0.0/24".into(),
                    gateway: Some("10.0.0.1".into()),
                    dns_nameservers: vec!["10.0.0.53".into(), "10.0.1.53".into()],
                    host_routes: vec![("192.168.7.0/24".into(), "10.0.0.254".into())],
                },
                DhcpSubnet {
                    cidr: "10.0.1.0/24".into(),
                    gateway: None,
                    dns_nameservers: vec!["0.0.0.0".into()],
                    host_routes: vec![("0.0.0.0/0".into(), "10.0.1.9".into())],
                },
                DhcpSubnet::new("fd00::/64", None),
            ],
            ..Default::default()
        };
        let subnets = dhcp_subnets(&net);
        assert_eq!(subnets.len(), 2, "IPv4 only");
        let dhcp = PortSpec {
            ips: vec!["10.0.0.2".into(), "10.0.1.2".into()],
            ..port("d", "network:dhcp", "")
        };
        let mut vm = port("vm", "compute:nova", "10.0.0.10");
        vm.extra_dhcp_opts = vec![
            DhcpOpt {
                name: "ntp-server".into(),
                value: "10.0.0.123".into(),
                ip_version: 4,
            },
            DhcpOpt {
                name: "150".into(),
                value: "10.0.0.5".into(),
                ip_version: 4,
            },
            DhcpOpt {
                name: "bootfile-name".into(),
                value: "x\ndhcp-range=evil".into(),
                ip_version: 4,
            },
            DhcpOpt {
                name: "dns-server".into(),
                value: "fd00::53".into(),
                ip_version: 6,
            },
        ];
        let other = port("other", "compute:nova", "10.0.1.11");
        let f = dhcp_files(&subnets, &dhcp, &[&dhcp, &vm, &other]);
        assert_eq!(
            f.hosts,
            "fa:16:3e:00:00:0a,host-10-0-0-10.openstacklocal.,10.0.0.10,set:port-vm\n\
             fa:16:3e:00:00:0a,host-10-0-1-11.openstacklocal.,10.0.1.11\n"
        );
        assert_eq!(
            f.opts,
            "tag:port-vm,option:ntp-server,10.0.0.123\n\
             tag:port-vm,150,10.0.0.5\n\
             tag:subnet0,option:dns-server,10.0.0.53,10.0.1.53\n\
             tag:subnet0,option:classless-static-route,10.0.1.0/24,0.0.0.0,192.168.7.0/24,10.0.0.254,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1\n\
             tag:subnet0,249,10.0.1.0/24,0.0.0.0,192.168.7.0/24,10.0.0.254,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1\n\
             tag:subnet0,option:router,10.0.0.1\n\
             tag:subnet1,option:dns-server\n\
             tag:subnet1,option:classless-static-route,10.0.0.0/24,0.0.0.0,169.254.169.254/32,10.0.1.2,0.0.0.0/0,10.0.1.9\n\
             tag:subnet1,249,10.0.0.0/24,0.0.0.0,169.254.169.254/32,10.0.1.2,0.0.0.0/0,10.0.1.9\n\
             tag:subnet1,option:router,10.0.1.9\n"
        );
    }

    #[test]
    fn an_option_name_may_carry_its_own_tag() {
        assert_eq!(
            option("port-p", "tag:ipxe,bootfile-name"),
            "tag:port-p,tag:ipxe,option:bootfile-name"
        );
        assert_eq!(option("subnet0", "249"), "tag:subnet0,249");
    }
}
