//! Routers, as Neutron's L3 agent builds them on a Linux bridge host: a
//! namespace `qrouter-<router>` with a `qr-` veth on each internal
//! network's bridge and a `qg-` veth on the external network's, IPv4
//! forwarding on, a default route through the external subnet's gateway,
//! the router's extra routes, and one nftables table (`ip ferro_nat`):
//! floating IPs as 1:1 DNAT/SNAT on the `qg-` device (which holds them as
//! /32 addresses, so it answers ARP for them), and SNAT of everything else
//! leaving through the gateway to the gateway's address when `enable_snat`.
//! Traffic between internal networks is routed without NAT unless a
//! floating IP brought it in (hairpin). A router administratively down
//! keeps its ports wired (they are ACTIVE, as with OVN, and Tempest waits
//! for that on the routers it creates down) but routes nothing: forwarding
//! off, no routes of ours, no NAT.
use super::{LinuxBridge, NsPort, run, run_with};
use crate::{HostState, PortSpec, RouterSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// The NAT table inside a router's namespace.
pub const NAT_TABLE: &str = "ferro_nat";

/// The routers' ports in `state` (interfaces and gateways) by router,
/// found in one pass over the ports.
fn router_ports(state: &HostState) -> BTreeMap<&str, Vec<&PortSpec>> {
    let mut by_router: BTreeMap<&str, Vec<&PortSpec>> = BTreeMap::new();
    for p in state.ports.values().filter(|p| crate::is_router_port(p)) {
        if crate::safe_id(&p.id) && crate::valid_mac(&p.mac) {
            by_router.entry(p.device_id.as_str()).or_default().push(p);
        }
    }
    by_router
}

/// The addresses with prefix among `with_prefix` that `p` holds.
fn addresses_of(p: &PortSpec, with_prefix: &[String]) -> BTreeSet<String> {
    with_prefix
        .iter()
        .filter(|a| {
            let ip = a.split('/').next().unwrap_or_default();
            p.ips.iter().any(|x| x == ip)
        })
        .filter(|a| {
            a.split('/')
                .next()
                .is_some_and(|ip| ip.parse::<Ipv4Addr>().is_ok())
        })
        .cloned()
        .collect()
}

/// The router's NAT table, replacing what is there, or None when the
/// router has no gateway (then there is nothing to translate).
pub fn render_nat(r: &RouterSpec, qg: &str, gateway_ip: Option<Ipv4Addr>) -> Option<String> {
    let fips: Vec<(Ipv4Addr, Ipv4Addr)> = r
        .floating_ips
        .iter()
        .filter_map(|(f, x)| Some((f.parse().ok()?, x.parse().ok()?)))
        .collect();
    let mut s = format!("table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n");
    // The metadata service, for what the internal networks send to
    // 169.254.169.254:80 (the L3 agent's redirect to its proxy).
    let metadata = !r.interfaces.is_empty();
    if r.gateway.is_none() && !metadata {
        return Some(s);
    }
    let _ = writeln!(s, "table ip {NAT_TABLE} {{");
    for (chain, hook) in [
        ("prerouting", "prerouting priority dstnat"),
        ("output", "output priority -100"),
    ] {
        if r.gateway.is_none() && chain == "output" {
            continue;
        }
        let _ = writeln!(
            s,
            "  chain {chain} {{\n    type nat hook {hook}; policy accept;"
        );
        if metadata && chain == "prerouting" {
            let _ = writeln!(
                s,
                "    iifname \"qr-*\" ip daddr {} tcp dport 80 redirect to :{}",
                crate::METADATA_IP,
                crate::ROUTER_METADATA_PORT
            );
        }
        for (f, x) in fips.iter().filter(|_| r.gateway.is_some()) {
            let _ = writeln!(s, "    ip daddr {f} dnat to {x}");
        }
        let _ = writeln!(s, "  }}");
    }
    if r.gateway.is_none() {
        let _ = writeln!(s, "}}");
        return Some(s);
    }
    let _ = writeln!(
        s,
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
    );
    // Between internal networks: routed as is, unless a floating IP
    // brought the packet in.
    let _ = writeln!(s, "    oifname != \"{qg}\" ct status & dnat == 0 accept");
    for (f, x) in &fips {
        let _ = writeln!(s, "    ip saddr {x} snat to {f}");
    }
    if let Some(g) = gateway_ip.filter(|_| r.enable_snat) {
        let _ = writeln!(s, "    snat to {g}");
    }
    let _ = writeln!(s, "  }}\n}}");
    Some(s)
}

/// The floating IP translations a router's record holds (`fip fixed`
/// per line).
fn read_translations(file: &Path) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (f, x) = l.split_once(' ')?;
            Some((f.to_string(), x.to_string()))
        })
        .collect()
}

/// The floating IPs whose translation was in `before` and is not in
/// `now` (removed, or moved to another fixed address).
pub fn translations_gone(
    before: &BTreeSet<(String, String)>,
    now: &BTreeSet<(String, String)>,
) -> BTreeSet<String> {
    before
        .difference(now)
        .map(|(f, _)| f.clone())
        .filter(|f| f.parse::<Ipv4Addr>().is_ok())
        .collect()
}

/// Deletes the connection tracking state of the connections to and from
/// floating IP `fip` in namespace `ns` (`conntrack -D`, by original and
/// by reply destination). Without the `conntrack` tool, open connections
/// live on until they time out; that is logged.
async fn forget_flows(ns: &str, fip: &str) {
    for by in ["--orig-dst", "--reply-dst"] {
        // conntrack exits 1 when nothing matched.
        match tokio::process::Command::new("ip")
            .args(["netns", "exec", ns, "conntrack", "-D", by, fip])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
        {
            Ok(o) if o.status.success() || o.status.code() == Some(1) => {}
            Ok(o) => tracing::warn!(
                %ns, %fip,
                "forgetting the floating IP's connections: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => tracing::warn!(%ns, %fip, "forgetting the floating IP's connections: {e}"),
        }
    }
}

impl LinuxBridge {
    /// The routers this driver has built here (its records).
    pub(super) fn recorded_routers(&self) -> BTreeSet<String> {
        self.recorded_with("router")
    }

    /// Converges the routers of `desired` whose ports' networks are bridged
    /// here (`bridges`: network -> bridge); removes the others it built.
    /// Returns the router ports that are up, and what went wrong.
    pub(super) async fn routers(
        &self,
        desired: &HostState,
        bridges: &BTreeMap<String, (String, i64)>,
        links: &BTreeMap<String, super::Link>,
    ) -> (Vec<String>, Vec<String>) {
        let mut up = Vec::new();
        let mut errors = Vec::new();
        let mut wanted = BTreeSet::new();
        let by_router = router_ports(desired);
        for r in desired.routers.values() {
            if !crate::safe_id(&r.id) {
                continue;
            }
            let ports: Vec<&PortSpec> = by_router
                .get(r.id.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|p| bridges.contains_key(&p.network_id))
                .collect();
            if ports.is_empty() {
                continue;
            }
            wanted.insert(r.id.clone());
            match self.router(r, &ports, bridges, links).await {
                Ok(u) => up.extend(u),
                Err(e) => errors.push(format!("router {}: {e}", r.id)),
            }
        }
        for gone in self.recorded_routers().difference(&wanted) {
            self.remove_router(gone).await;
        }
        (up, errors)
    }

    async fn router(
        &self,
        r: &RouterSpec,
        ports: &[&PortSpec],
        bridges: &BTreeMap<String, (String, i64)>,
        links: &BTreeMap<String, super::Link>,
    ) -> Result<Vec<String>, String> {
        let d = self.net_dir(&r.id);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        std::fs::write(d.join("router"), &r.id).map_err(|e| format!("{}: {e}", d.display()))?;
        let ns = crate::router_namespace(&r.id);
        let fresh = !Path::new("/run/netns").join(&ns).exists();
        if fresh {
            run("ip", &["netns", "add", &ns]).await?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]).await?;
        }
        // Forwarding follows the router's admin state (kept in its record).
        let forward = if r.admin_up { "1" } else { "0" };
        let ffile = d.join("forward");
        if fresh || std::fs::read_to_string(&ffile).ok().as_deref() != Some(forward) {
            let _ = std::fs::remove_file(&ffile);
            let kv = format!("net.ipv4.ip_forward={forward}");
            run("ip", &["netns", "exec", &ns, "sysctl", "-qw", &kv]).await?;
            std::fs::write(&ffile, forward).map_err(|e| format!("{}: {e}", ffile.display()))?;
        }
        let gateway_addrs: Vec<String> = r
            .gateway
            .as_ref()
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let interface_addrs: Vec<String> = r.interfaces.iter().map(|(_, a)| a.clone()).collect();
        let mut up = Vec::new();
        let mut qg = None;
        for p in ports {
            let Some((br, mtu)) = bridges.get(&p.network_id) else {
                continue;
            };
            let gw = p.device_owner == "network:router_gateway";
            let dev = crate::router_device(p);
            let mut addrs = addresses_of(p, if gw { &gateway_addrs } else { &interface_addrs });
            if gw {
                qg = Some((dev.clone(), addrs.clone()));
                for (f, _) in r.floating_ips.iter().filter(|_| r.admin_up) {
                    if f.parse::<Ipv4Addr>().is_ok() {
                        addrs.insert(format!("{f}/32"));
                    }
                }
            }
            self.ns_port(
                NsPort {
                    ns: &ns,
                    dev: &dev,
                    port: p,
                    br,
                    mtu: *mtu,
                    addrs: &addrs,
                },
                links,
            )
            .await?;
            if p.admin_up {
                up.push(p.id.clone());
            } else {
                run("ip", &["-n", &ns, "link", "set", &dev, "down"]).await?;
            }
        }
        // Routes: the default through the external subnet's gateway, and
        // the router's extra routes; ours carry `proto static`.
        let mut want: BTreeMap<String, String> = BTreeMap::new();
        if r.admin_up
            && let Some((_, addrs)) = &qg
            && !addrs.is_empty()
            && let Some(nh) = r.gateway_nexthops.first()
        {
            want.insert("default".into(), nh.clone());
        }
        for (dest, nh) in r.routes.iter().filter(|_| r.admin_up) {
            if let (Some((false, dst)), Ok(_)) =
                (crate::firewall::prefix(dest), nh.parse::<Ipv4Addr>())
            {
                // As `ip -j route` shows them.
                let dst = match dst.as_str() {
                    "0.0.0.0/0" => "default".to_string(),
                    d => d.strip_suffix("/32").unwrap_or(d).to_string(),
                };
                want.entry(dst).or_insert_with(|| nh.clone());
            }
        }
        let shown = run("ip", &["-n", &ns, "-j", "route", "show", "proto", "static"]).await?;
        let v: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
        let have: BTreeMap<String, String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| {
                Some((
                    x["dst"].as_str()?.to_string(),
                    x["gateway"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        let mut route_errors = Vec::new();
        for (dst, nh) in &have {
            if want.get(dst) != Some(nh) {
                let _ = run("ip", &["-n", &ns, "route", "del", dst, "proto", "static"]).await;
            }
        }
        for (dst, nh) in &want {
            if have.get(dst) != Some(nh)
                && let Err(e) = run(
                    "ip",
                    &[
                        "-n", &ns, "route", "replace", dst, "via", nh, "proto", "static",
                    ],
                )
                .await
            {
                route_errors.push(format!("route {dst} via {nh}: {e}"));
            }
        }
        // NAT, replaced when it differs from what was loaded.
        let gateway_ip = qg
            .as_ref()
            .and_then(|(_, a)| a.iter().next())
            .and_then(|a| a.split('/').next()?.parse().ok());
        let qg_dev = qg.as_ref().map(|(d, _)| d.as_str()).unwrap_or("qg-none");
        let nat = if r.admin_up {
            render_nat(r, qg_dev, gateway_ip)
        } else {
            render_nat(&RouterSpec::default(), qg_dev, None)
        };
        if let Some(nat) = nat {
            let file = d.join("nat");
            let same = !fresh && std::fs::read_to_string(&file).is_ok_and(|c| c == nat);
            if !same {
                // A failed load leaves no record: tried again next time.
                let _ = std::fs::remove_file(&file);
                run_with("ip", &["netns", "exec", &ns, "nft", "-f", "-"], Some(&nat)).await?;
                std::fs::write(&file, &nat).map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
        // Connections translated for a floating IP that is gone (or leads
        // elsewhere now) are forgotten, as the L3 agent deletes their
        // conntrack state: an open session through it ends with it.
        let now: BTreeSet<(String, String)> = if r.admin_up && qg.is_some() {
            r.floating_ips.iter().cloned().collect()
        } else {
            BTreeSet::new()
        };
        let file = d.join("floating_ips");
        let before = read_translations(&file);
        if before != now {
            for fip in translations_gone(&before, &now) {
                forget_flows(&ns, &fip).await;
            }
            let text: String = now.iter().map(|(f, x)| format!("{f} {x}\n")).collect();
            std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        }
        if !route_errors.is_empty() {
            tracing::warn!(router = %r.id, "{}", route_errors.join("; "));
        }
        Ok(up)
    }

    /// Removes router `id`'s namespace (its veths go with it) and record.
    pub(super) async fn remove_router(&self, id: &str) {
        let ns = crate::router_namespace(id);
        if Path::new("/run/netns").join(&ns).exists()
            && let Err(e) = run("ip", &["netns", "del", &ns]).await
        {
            tracing::warn!(router = id, "removing {ns}: {e}");
        }
        let _ = std::fs::remove_dir_all(self.net_dir(id));
    }

    /// The host's own addresses on a network's bridge (`host_addresses`),
    /// exactly those.
    pub(super) async fn host_addresses(&self, br: &str, want: &[String]) -> Result<(), String> {
        let shown = self.ip(&["-j", "addr", "show", "dev", br]).await?;
        let v: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
        let have = super::ipv4_addresses(&v[0]);
        let want: BTreeSet<String> = want
            .iter()
            .filter(|a| matches!(crate::firewall::prefix(a), Some((false, _))))
            .cloned()
            .collect();
        for a in want.difference(&have) {
            self.ip(&["addr", "add", a, "dev", br]).await?;
        }
        for a in have.difference(&want) {
            self.ip(&["addr", "del", a, "dev", br]).await?;
        }
        Ok(())
    }

    /// Nothing is routed between the host's other interfaces and the
    /// bridges it holds an address on (external networks): guests' traffic
    /// never leaves the machine through its uplink, and nothing from
    /// outside reaches floating IPs through it. Bridged traffic (in and out
    /// through the same bridge) is not affected. With an uplink configured
    /// (`network.external_uplink`), those bridges reach the world through
    /// it, masqueraded, and the host forwards.
    pub(super) async fn external_guard(&self, bridges: &BTreeSet<String>) -> Result<(), String> {
        let s = render_external_guard(bridges, self.uplink.as_deref());
        let mut last = self.external.lock().await;
        if last.as_deref() == Some(s.as_str()) {
            return Ok(());
        }
        if self.uplink.is_some() && !bridges.is_empty() {
            self.in_host("sysctl", &["-qw", "net.ipv4.ip_forward=1"], None)
                .await?;
        }
        self.in_host("nft", &["-f", "-"], Some(&s)).await?;
        *last = Some(s);
        Ok(())
    }
}

/// The host's `ferro_ext` table for the external `bridges`: isolated, or
/// forwarded and masqueraded out of `uplink` when one is configured.
pub fn render_external_guard(bridges: &BTreeSet<String>, uplink: Option<&str>) -> String {
    let mut s = "table inet ferro_ext\ndelete table inet ferro_ext\n".to_string();
    if bridges.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "table inet ferro_ext {{\n  chain forward {{\n    type filter hook forward priority filter - 10; policy accept;"
    );
    for b in bridges {
        if let Some(u) = uplink {
            let _ = writeln!(
                s,
                "    iifname \"{b}\" oifname \"{u}\" accept\n    iifname \"{u}\" oifname \"{b}\" ct state established,related accept"
            );
        }
        let _ = writeln!(
            s,
            "    iifname \"{b}\" oifname != \"{b}\" drop\n    oifname \"{b}\" iifname != \"{b}\" drop"
        );
    }
    let _ = writeln!(s, "  }}");
    if let Some(u) = uplink {
        let _ = writeln!(
            s,
            "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
        );
        for b in bridges {
            let _ = writeln!(s, "    iifname \"{b}\" oifname \"{u}\" masquerade");
        }
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_bridges_reach_the_world_only_through_a_configured_uplink() {
        let br: BTreeSet<String> = ["brq-public".to_string()].into();
        let closed = render_external_guard(&br, None);
        assert!(closed.contains("iifname \"brq-public\" oifname != \"brq-public\" drop"));
        assert!(
            !closed.contains("masquerade") && !closed.contains("accept\n"),
            "{closed}"
        );
        let open = render_external_guard(&br, Some("eth0"));
        assert!(
            open.contains("iifname \"brq-public\" oifname \"eth0\" accept"),
            "{open}"
        );
        assert!(open.contains(
            "iifname \"eth0\" oifname \"brq-public\" ct state established,related accept"
        ));
        assert!(open.contains("iifname \"brq-public\" oifname \"eth0\" masquerade"));
        // The accepts come before the drops that would catch them.
        assert!(open.find("oifname \"eth0\" accept") < open.find("drop"));
        assert_eq!(
            render_external_guard(&BTreeSet::new(), Some("eth0")),
            "table inet ferro_ext\ndelete table inet ferro_ext\n"
        );
    }

    #[test]
    fn a_floating_ip_removed_or_moved_loses_its_connections() {
        let set = |v: &[(&str, &str)]| -> BTreeSet<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let before = set(&[
            ("172.24.4.10", "10.0.0.5"),
            ("172.24.4.11", "10.0.0.6"),
            ("172.24.4.12", "10.0.0.7"),
        ]);
        let now = set(&[("172.24.4.10", "10.0.0.5"), ("172.24.4.11", "10.0.0.9")]);
        let gone: Vec<String> = translations_gone(&before, &now).into_iter().collect();
        assert_eq!(
            gone,
            vec!["172.24.4.11".to_string(), "172.24.4.12".to_string()]
        );
        assert!(translations_gone(&now, &now).is_empty());
    }

    #[test]
    fn floating_ips_and_snat_as_the_l3_agent_translates() {
        let r = RouterSpec {
            id: "r".into(),
            gateway: Some(("ext".into(), vec!["172.24.4.10/24".into()])),
            floating_ips: vec![("172.24.4.100".into(), "10.0.0.5".into())],
            ..Default::default()
        };
        let nat = render_nat(&r, "qg-abc", Some("172.24.4.10".parse().unwrap())).unwrap();
        assert!(
            nat.contains("    ip daddr 172.24.4.100 dnat to 10.0.0.5\n"),
            "{nat}"
        );
        assert_eq!(
            nat.matches("dnat to").count(),
            2,
            "prerouting and output: {nat}"
        );
        assert!(nat.contains("oifname != \"qg-abc\" ct status & dnat == 0 accept\n    ip saddr 10.0.0.5 snat to 172.24.4.100\n    snat to 172.24.4.10\n"), "{nat}");
        let off = RouterSpec {
            enable_snat: false,
            ..r.clone()
        };
        let nat = render_nat(&off, "qg-abc", Some("172.24.4.10".parse().unwrap())).unwrap();
        assert!(!nat.contains("snat to 172.24.4.10\n"), "{nat}");
        assert!(
            nat.contains("snat to 172.24.4.100"),
            "floating IPs stay: {nat}"
        );
        let none = RouterSpec {
            gateway: None,
            ..r.clone()
        };
        assert_eq!(
            render_nat(&none, "qg-abc", None).unwrap(),
            "table ip ferro_nat\ndelete table ip ferro_nat\n"
        );
        // With internal networks: their requests to 169.254.169.254:80 go
        // to the metadata proxy, with or without a gateway.
        let redirect =
            "    iifname \"qr-*\" ip daddr 169.254.169.254 tcp dport 80 redirect to :9697\n";
        for gateway in [None, r.gateway.clone()] {
            let inside = RouterSpec {
                gateway: gateway.clone(),
                interfaces: vec![("n".into(), "10.0.0.1/24".into())],
                ..r.clone()
            };
            let nat = render_nat(&inside, "qg-abc", None).unwrap();
            assert_eq!(nat.matches(redirect).count(), 1, "{nat}");
            assert_eq!(
                nat.matches("dnat to").count(),
                if gateway.is_some() { 2 } else { 0 },
                "{nat}"
            );
        }
    }
}
