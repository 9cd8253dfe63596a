//! The Linux bridge driver: what Neutron's Linux bridge agent and DHCP agent
//! build, on this kernel (bridges, veth, network namespaces, dnsmasq).
//!
//! For each network with ports here: a bridge `brq<net>` with the
//! network's MTU and no address; each guest's tap (made by the hypervisor)
//! joins it, up, at that MTU, or is set down when its port is admin-down.
//! A network with a DHCP subnet and a DHCP port gets `qdhcp-<net>`: a veth
//! `tap<port>` (on the bridge) / `ns-<port>` (inside, with the port's MAC
//! and address) and dnsmasq with Neutron's arguments and files (a host
//! entry `mac,host-<ip>.openstacklocal.,ip` per port, untagged: dnsmasq
//! 2.90 crashes on SIGHUP with tagged entries of leased hosts, so a change
//! restarts it, which takes milliseconds and keeps the leases file).
//!
//! What it creates is recorded under `state_dir/<network>/`; networks that
//! are no longer wanted are torn down from that record only, so another
//! host's (or test's) devices and namespaces are never touched. Devices may
//! live in a host namespace of their own (`host_ns`), as each host under
//! test does.
use crate::dhcp::{DhcpFiles, dhcp_files, dhcp_subnets};
use crate::ipv4::Subnet;
use crate::{DhcpSubnet, HostDriver, HostState, NetSpec, PortSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod l3;

pub struct LinuxBridge {
    /// The namespace holding this host's bridges and taps (None: the root one).
    host_ns: Option<String>,
    /// Per-network records and dnsmasq's files.
    state_dir: PathBuf,
    dnsmasq: String,
    /// Whether the kernel has 802.1q (VLAN segments).
    vlan: bool,
    /// One convergence at a time.
    lock: tokio::sync::Mutex<()>,
    /// The security group rules loaded in the kernel (a change touches the
    /// ports that changed; the tables are replaced whole when they are
    /// gone).
    loaded: std::sync::Mutex<crate::firewall::Loaded>,
    /// The guard table on external networks' bridges, as last loaded.
    external: tokio::sync::Mutex<Option<String>>,
    /// Physical network -> the host's interface carrying it.
    interfaces: BTreeMap<String, String>,
    /// This host's tunnel endpoint: vxlan networks get a VXLAN device.
    local_ip: Option<Ipv4Addr>,
    /// The interface external networks may reach the world through
    /// (`network.external_uplink`); None: they reach only this host.
    uplink: Option<String>,
}

/// The UDP port of VXLAN (IANA; the Linux bridge agent's default).
pub const VXLAN_PORT: u16 = 4789;

/// The VXLAN device of a VNI (the Linux bridge agent's name).
pub fn vxlan_device(vni: i64) -> String {
    format!("vxlan-{vni}")
}

/// The IPv4 addresses with prefixes of a link as `ip -j addr show` shows it.
fn ipv4_addresses(link: &serde_json::Value) -> BTreeSet<String> {
    link["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == "inet")
        .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
        .collect()
}

/// What `ns_port` builds.
struct NsPort<'a> {
    ns: &'a str,
    dev: &'a str,
    port: &'a PortSpec,
    br: &'a str,
    mtu: i64,
    addrs: &'a BTreeSet<String>,
}

/// A link as `ip -j link show` reports it.
#[derive(Clone, Debug, Default)]
struct Link {
    master: Option<String>,
    mtu: u64,
    up: bool,
    /// A VXLAN device's (VNI, local address).
    vxlan: Option<(u64, String)>,
}

async fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    run_with(prog, args, None).await
}

/// Runs `prog` with `args`, `input` on its stdin (nothing when None); its
/// stdout, or an error naming the command with its stderr.
async fn run_with(prog: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{prog}: {e}"))?;
    if let (Some(text), Some(mut w)) = (input, child.stdin.take()) {
        w.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("{prog}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl LinuxBridge {
    pub fn new(host_ns: Option<String>, state_dir: PathBuf) -> LinuxBridge {
        LinuxBridge {
            host_ns,
            state_dir,
            dnsmasq: "dnsmasq".into(),
            vlan: Path::new("/proc/net/vlan/config").exists(),
            lock: tokio::sync::Mutex::new(()),
            loaded: std::sync::Mutex::new(crate::firewall::Loaded::default()),
            external: tokio::sync::Mutex::new(None),
            interfaces: BTreeMap::new(),
            local_ip: None,
            uplink: None,
        }
    }

    /// With this host's tunnel endpoint (the Linux bridge agent's
    /// `local_ip`): a vxlan network's bridge carries `vxlan-<vni>` from
    /// it. Refused unless it is an IPv4 address.
    pub fn with_local_ip(mut self, local_ip: Option<&str>) -> Result<LinuxBridge, String> {
        self.local_ip = match local_ip {
            None | Some("") => None,
            Some(a) => Some(
                a.parse::<Ipv4Addr>()
                    .map_err(|_| format!("network.local_ip: {a:?} is not an IPv4 address"))?,
            ),
        };
        Ok(self)
    }

    /// Forwarding (and masquerading) external networks out of `uplink`
    /// (`network.external_uplink`); off unless asked. Refused unless it is
    /// an interface name.
    pub fn with_external_uplink(mut self, uplink: Option<&str>) -> Result<LinuxBridge, String> {
        self.uplink = match uplink {
            None | Some("") => None,
            Some(i) if crate::valid_ifname(i) => Some(i.to_string()),
            Some(i) => {
                return Err(format!(
                    "network.external_uplink: {i:?} is not an interface name"
                ));
            }
        };
        Ok(self)
    }

    /// With `physnet:interface` mappings (Neutron's
    /// `physical_interface_mappings`): a flat network on a mapped physical
    /// network has that interface on its bridge. Malformed entries are
    /// refused.
    pub fn with_interface_mappings(mut self, mappings: &[String]) -> Result<LinuxBridge, String> {
        for m in mappings {
            match m.split_once(':') {
                Some((p, i))
                    if !p.is_empty()
                        && !i.is_empty()
                        && i.len() <= 15
                        && i.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    self.interfaces.insert(p.to_string(), i.to_string());
                }
                _ => {
                    return Err(format!(
                        "network.physical_interface_mappings: {m:?} is not physnet:interface"
                    ));
                }
            }
        }
        Ok(self)
    }

    /// A command in the host's namespace.
    async fn in_host(
        &self,
        prog: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, String> {
        let mut full: Vec<&str> = Vec::new();
        let cmd = match &self.host_ns {
            Some(ns) => {
                full.extend(["netns", "exec", ns.as_str(), prog]);
                "ip"
            }
            None => prog,
        };
        full.extend_from_slice(args);
        run_with(cmd, &full, stdin).await
    }

    /// Security groups: the rules of `desired`, in one `nft -f`
    /// transaction that touches only the ports that changed, or replaces
    /// both tables when they are not there (first load, or removed behind
    /// the driver's back). Bridged traffic is sent through the inet hooks
    /// (br_netfilter) first.
    async fn firewall(&self, desired: &HostState) -> Result<(), String> {
        // Both tables there? (`list chains` is cheap; `list tables` makes
        // nft 1.0 fetch every rule.)
        let t = crate::firewall::TABLE;
        let chains = self.in_host("nft", &["list", "chains"], None).await?;
        let present = chains.contains(&format!("table bridge {t} {{"))
            && chains.contains(&format!("table inet {t} {{"));
        let plan = match self.loaded.lock() {
            Ok(l) => {
                let whole = !present || l.is_empty();
                l.plan(desired, whole).map(|(tx, after)| (tx, after, whole))
            }
            Err(_) => return Err("the security group state is poisoned".into()),
        };
        let Some((tx, after, whole)) = plan else {
            return Ok(());
        };
        if whole {
            self.in_host(
                "sh",
                &[
                    "-c",
                    "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables && echo 1 > /proc/sys/net/bridge/bridge-nf-call-ip6tables",
                ],
                None,
            )
            .await?;
        }
        let r = self.in_host("nft", &["-f", "-"], Some(&tx)).await;
        if let Ok(mut l) = self.loaded.lock() {
            // Failed: replaced whole next time.
            *l = if r.is_ok() {
                after
            } else {
                crate::firewall::Loaded::default()
            };
        }
        r.map(|_| ())
    }

    /// `ip` in the host's namespace.
    async fn ip(&self, args: &[&str]) -> Result<String, String> {
        match &self.host_ns {
            Some(ns) => {
                let mut a = vec!["-n", ns.as_str()];
                a.extend_from_slice(args);
                run("ip", &a).await
            }
            None => run("ip", args).await,
        }
    }

    /// The host namespace's links.
    async fn links(&self) -> Result<BTreeMap<String, Link>, String> {
        let out = self.ip(&["-d", "-j", "link", "show"]).await?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("ip -j link show: {e}"))?;
        let mut links = BTreeMap::new();
        for l in v.as_array().into_iter().flatten() {
            let Some(name) = l["ifname"].as_str() else {
                continue;
            };
            let up = l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"));
            links.insert(
                name.to_string(),
                Link {
                    master: l["master"].as_str().map(str::to_string),
                    mtu: l["mtu"].as_u64().unwrap_or(0),
                    up,
                    vxlan: (l["linkinfo"]["info_kind"] == "vxlan").then(|| {
                        let d = &l["linkinfo"]["info_data"];
                        (
                            d["id"].as_u64().unwrap_or(0),
                            d["local"].as_str().unwrap_or("").to_string(),
                        )
                    }),
                },
            );
        }
        Ok(links)
    }

    /// A port of a namespace (`qdhcp-`, `qrouter-`): the namespace, a veth
    /// from the port's `tap` on bridge `br` to `dev` inside, with the port's
    /// MAC, exactly the addresses `addrs` (IPv4, with prefixes), the MTU,
    /// up. Only what differs is changed.
    async fn ns_port(&self, p: NsPort<'_>, links: &BTreeMap<String, Link>) -> Result<(), String> {
        let NsPort {
            ns,
            dev,
            port,
            br,
            mtu,
            addrs: want,
        } = p;
        if !Path::new("/run/netns").join(ns).exists() {
            run("ip", &["netns", "add", ns]).await?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"]).await?;
        }
        let tap = crate::tap_name(&port.id);
        let mtu_n = mtu.max(68);
        let mtu = mtu_n.to_string();
        if !links.contains_key(&tap) {
            self.ip(&[
                "link", "add", &tap, "mtu", &mtu, "type", "veth", "peer", "name", dev, "mtu", &mtu,
                "netns", ns,
            ])
            .await?;
        }
        let l = links.get(&tap).cloned().unwrap_or_default();
        if l.master.as_deref() != Some(br) || !l.up || l.mtu != mtu_n as u64 {
            self.ip(&["link", "set", &tap, "master", br, "mtu", &mtu, "up"])
                .await?;
        }
        let shown = run("ip", &["-n", ns, "-j", "addr", "show", "dev", dev]).await?;
        let v: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
        let have_mac = v[0]["address"].as_str().unwrap_or_default().to_string();
        let have = ipv4_addresses(&v[0]);
        if !have_mac.eq_ignore_ascii_case(&port.mac) {
            run("ip", &["-n", ns, "link", "set", dev, "address", &port.mac]).await?;
        }
        for a in want.difference(&have) {
            run("ip", &["-n", ns, "addr", "add", a, "dev", dev]).await?;
        }
        for a in have.difference(want) {
            run("ip", &["-n", ns, "addr", "del", a, "dev", dev]).await?;
        }
        let dev_up = v[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"));
        if !dev_up || v[0]["mtu"].as_i64() != Some(mtu_n) {
            run("ip", &["-n", ns, "link", "set", dev, "mtu", &mtu, "up"]).await?;
        }
        Ok(())
    }

    /// The state directory of a network or router (ids never collide).
    fn net_dir(&self, net: &str) -> PathBuf {
        self.state_dir.join(net)
    }

    /// The networks this driver has built here (its records).
    fn recorded(&self) -> BTreeSet<String> {
        self.recorded_with("network")
    }

    /// The ids of the records (state directories) holding file `marker`
    /// (`network`, `router`).
    fn recorded_with(&self, marker: &str) -> BTreeSet<String> {
        std::fs::read_dir(&self.state_dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().join(marker).is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| crate::safe_id(n))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record(&self, net: &str) -> Result<(), String> {
        let d = self.net_dir(net);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        std::fs::write(d.join("network"), net).map_err(|e| format!("{}: {e}", d.display()))
    }

    /// The bridge of `net`, up, at its MTU.
    async fn bridge(
        &self,
        net: &NetSpec,
        links: &BTreeMap<String, Link>,
    ) -> Result<String, String> {
        let br = crate::bridge_name(&net.id);
        let mtu = net.mtu.max(68).to_string();
        match links.get(&br) {
            None => {
                self.ip(&["link", "add", &br, "mtu", &mtu, "type", "bridge"])
                    .await?;
                self.ip(&["link", "set", &br, "up"]).await?;
            }
            Some(l) => {
                if l.mtu != net.mtu.max(68) as u64 {
                    self.ip(&["link", "set", &br, "mtu", &mtu]).await?;
                }
                if !l.up {
                    self.ip(&["link", "set", &br, "up"]).await?;
                }
            }
        }
        // A flat network on a mapped physical network: the host's
        // interface on the bridge.
        if net.network_type == "flat"
            && let Some(iface) = net
                .physical_network
                .as_ref()
                .and_then(|p| self.interfaces.get(p))
        {
            match links.get(iface) {
                None => {
                    return Err(format!(
                        "interface {iface} of physical network {} is not on this host",
                        net.physical_network.as_deref().unwrap_or_default()
                    ));
                }
                Some(l) if l.master.as_deref() != Some(br.as_str()) || !l.up => {
                    self.ip(&["link", "set", iface, "master", &br, "up"])
                        .await?;
                }
                Some(_) => {}
            }
        }
        self.vxlan(net, &br, links).await?;
        Ok(br)
    }

    /// A vxlan network's tunnel: `vxlan-<vni>` from this host's endpoint
    /// on the bridge, at the network's MTU, flooding broadcasts and unknown
    /// unicast to exactly the network's other hosts (all-zeros FDB
    /// entries, as the Linux bridge agent's l2population; the rest is
    /// learnt). Without an endpoint, or for another type, no tunnel: a
    /// VXLAN device left on the bridge is removed.
    async fn vxlan(
        &self,
        net: &NetSpec,
        br: &str,
        links: &BTreeMap<String, Link>,
    ) -> Result<(), String> {
        let want = match (
            net.network_type.as_str(),
            self.local_ip,
            net.segmentation_id,
        ) {
            ("vxlan", Some(local), Some(vni)) if (1..1 << 24).contains(&vni) => {
                Some((vxlan_device(vni), vni, local.to_string()))
            }
            _ => None,
        };
        for (name, l) in links {
            let stale = l.vxlan.is_some()
                && l.master.as_deref() == Some(br)
                && want.as_ref().is_none_or(|(d, _, _)| d != name);
            if stale {
                self.ip(&["link", "del", name]).await?;
            }
        }
        let Some((dev, vni, local)) = want else {
            return Ok(());
        };
        let mtu = net.mtu.max(68) as u64;
        let made = match links.get(&dev) {
            Some(l) if l.vxlan.as_ref() == Some(&(vni as u64, local.clone())) => Some(l),
            Some(_) => {
                // Another VNI's or endpoint's device under this name.
                self.ip(&["link", "del", &dev]).await?;
                None
            }
            None => None,
        };
        if made.is_none() {
            let (id, port) = (vni.to_string(), VXLAN_PORT.to_string());
            self.ip(&[
                "link", "add", &dev, "type", "vxlan", "id", &id, "local", &local, "dstport", &port,
            ])
            .await?;
        }
        if made.is_none_or(|l| l.master.as_deref() != Some(br) || l.mtu != mtu || !l.up) {
            let m = mtu.to_string();
            self.ip(&["link", "set", &dev, "master", br, "mtu", &m, "up"])
                .await?;
        }
        // Flooding entries: exactly the peers.
        let out = self
            .in_host("bridge", &["-j", "fdb", "show", "dev", &dev], None)
            .await?;
        let have: BTreeSet<String> = serde_json::from_str::<serde_json::Value>(&out)
            .map_err(|e| format!("bridge -j fdb show dev {dev}: {e}"))?
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["mac"] == "00:00:00:00:00:00")
            .filter_map(|e| e["dst"].as_str().map(str::to_string))
            .collect();
        let want: BTreeSet<String> = net
            .tunnel_peers
            .iter()
            .filter(|p| p.parse::<Ipv4Addr>().is_ok() && **p != local)
            .cloned()
            .collect();
        for gone in have.difference(&want) {
            self.in_host(
                "bridge",
                &["fdb", "del", "00:00:00:00:00:00", "dev", &dev, "dst", gone],
                None,
            )
            .await?;
        }
        for new in want.difference(&have) {
            self.in_host(
                "bridge",
                &[
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    &dev,
                    "dst",
                    new,
                ],
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// A guest's tap on its bridge (if the hypervisor made it); whether the
    /// port is up.
    async fn guest_port(
        &self,
        p: &PortSpec,
        net: &NetSpec,
        br: &str,
        links: &BTreeMap<String, Link>,
    ) -> Result<bool, String> {
        let tap = crate::tap_name(&p.id);
        let Some(l) = links.get(&tap) else {
            return Ok(false);
        };
        let mtu = net.mtu.max(68) as u64;
        if !p.admin_up {
            if l.up {
                self.ip(&["link", "set", &tap, "down"]).await?;
            }
            return Ok(false);
        }
        if l.master.as_deref() != Some(br) || l.mtu != mtu || !l.up {
            let m = mtu.to_string();
            self.ip(&["link", "set", &tap, "master", br, "mtu", &m, "up"])
                .await?;
        }
        Ok(true)
    }

    /// The DHCP namespace, its veth and dnsmasq for `net`; whether the DHCP
    /// port is up.
    async fn dhcp(
        &self,
        net: &NetSpec,
        port: &PortSpec,
        ports: &[&PortSpec],
        br: &str,
        links: &BTreeMap<String, Link>,
    ) -> Result<bool, String> {
        let subnets = dhcp_subnets(net);
        if subnets.is_empty() || !port.admin_up {
            self.stop_dhcp(&net.id).await;
            return Ok(false);
        }
        let ns = crate::dhcp_namespace(&net.id);
        let dev = crate::ns_device(&port.id);
        // Inside: the port's addresses with their prefixes, and the
        // metadata service's.
        let mut want: BTreeSet<String> = port
            .ips
            .iter()
            .filter_map(|ip| {
                let a: Ipv4Addr = ip.parse().ok()?;
                let s = subnets.iter().find(|(s, _)| s.contains(a))?;
                Some(format!("{a}/{}", s.0.prefix))
            })
            .collect();
        want.insert(format!("{}/32", crate::METADATA_IP));
        self.ns_port(
            NsPort {
                ns: &ns,
                dev: &dev,
                port,
                br,
                mtu: net.mtu,
                addrs: &want,
            },
            links,
        )
        .await?;
        self.dnsmasq(net, port, ports, &subnets, &ns, &dev).await?;
        Ok(true)
    }

    /// dnsmasq for the network, (re)started when its files or arguments
    /// change or it is not running.
    async fn dnsmasq(
        &self,
        net: &NetSpec,
        port: &PortSpec,
        ports: &[&PortSpec],
        subnets: &[(Subnet, &DhcpSubnet)],
        ns: &str,
        dev: &str,
    ) -> Result<(), String> {
        let d = self.net_dir(&net.id);
        let path = |f: &str| d.join(f).display().to_string();
        let DhcpFiles { hosts, opts } = dhcp_files(subnets, port, ports);
        let mut args: Vec<String> = vec![
            "--no-hosts".into(),
            "--no-resolv".into(),
            format!("--pid-file={}", path("pid")),
            format!("--dhcp-hostsfile={}", path("host")),
            format!("--addn-hosts={}", path("addn_hosts")),
            format!("--dhcp-optsfile={}", path("opts")),
            format!("--dhcp-leasefile={}", path("leases")),
            format!("--interface={dev}"),
            "--bind-dynamic".into(),
            "--except-interface=lo".into(),
        ];
        for (i, (s, _)) in subnets.iter().enumerate() {
            args.push(format!(
                "--dhcp-range=set:subnet{i},{},static,{},86400s",
                s.network,
                s.mask()
            ));
        }
        args.extend([
            format!("--dhcp-option-force=option:mtu,{}", net.mtu.max(68)),
            "--dhcp-lease-max=256".into(),
            "--conf-file=/dev/null".into(),
            "--domain=openstacklocal".into(),
            "--port=0".into(),
            format!("--log-facility={}", path("dnsmasq.log")),
            "--log-dhcp".into(),
        ]);
        let config = format!("{}\n{hosts}{opts}", args.join(" "));
        let same = std::fs::read_to_string(d.join("config")).is_ok_and(|c| c == config);
        let running = self.dnsmasq_pid(&net.id);
        if same && running.is_some() {
            return Ok(());
        }
        if let Some(pid) = running {
            kill_and_wait(pid).await;
        }
        for (f, body) in [
            ("host", hosts.as_str()),
            ("opts", opts.as_str()),
            ("addn_hosts", ""),
        ] {
            write_atomic(&d.join(f), body)?;
        }
        if !d.join("leases").exists() {
            write_atomic(&d.join("leases"), "")?;
        }
        let mut full = vec!["netns", "exec", ns, self.dnsmasq.as_str()];
        full.extend(args.iter().map(String::as_str));
        // dnsmasq forks into the background once it is listening.
        run("ip", &full).await?;
        std::fs::write(d.join("config"), config).map_err(|e| format!("{}: {e}", d.display()))?;
        if self.dnsmasq_pid(&net.id).is_none() {
            return Err(format!(
                "dnsmasq for network {} did not start (see {})",
                net.id,
                path("dnsmasq.log")
            ));
        }
        Ok(())
    }

    /// The pid of the network's dnsmasq, if it runs: the pid file's, and
    /// only when that process's command line names this pid file.
    fn dnsmasq_pid(&self, net: &str) -> Option<u32> {
        let pidfile = self.net_dir(net).join("pid");
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let want = format!("--pid-file={}", pidfile.display());
        cmdline
            .split(|b| *b == 0)
            .any(|a| a == want.as_bytes())
            .then_some(pid)
    }

    async fn stop_dhcp(&self, net: &str) {
        if let Some(pid) = self.dnsmasq_pid(net) {
            kill_and_wait(pid).await;
        }
        let ns = crate::dhcp_namespace(net);
        if Path::new("/run/netns").join(&ns).exists()
            && let Err(e) = run("ip", &["netns", "del", &ns]).await
        {
            tracing::warn!(network = net, "removing {ns}: {e}");
        }
        let _ = std::fs::remove_file(self.net_dir(net).join("config"));
    }

    /// Removes what this driver built for `net` (from its record).
    async fn teardown(&self, net: &str, links: &BTreeMap<String, Link>) {
        self.stop_dhcp(net).await;
        let br = crate::bridge_name(net);
        for (name, l) in links {
            if l.vxlan.is_some()
                && l.master.as_deref() == Some(br.as_str())
                && let Err(e) = self.ip(&["link", "del", name]).await
            {
                tracing::warn!(network = net, "removing {name}: {e}");
            }
        }
        if links.contains_key(&br)
            && let Err(e) = self.ip(&["link", "del", &br]).await
        {
            tracing::warn!(network = net, "removing {br}: {e}");
        }
        let _ = std::fs::remove_dir_all(self.net_dir(net));
    }

    async fn converge(&self, desired: &HostState) -> Result<Vec<String>, String> {
        let links = self.links().await?;
        let mut by_net: BTreeMap<&str, Vec<&PortSpec>> = BTreeMap::new();
        for p in desired.ports.values() {
            if crate::safe_id(&p.id) && crate::valid_mac(&p.mac) {
                by_net.entry(p.network_id.as_str()).or_default().push(p);
            }
        }
        let mut up = Vec::new();
        let mut wanted = BTreeSet::new();
        let mut errors = Vec::new();
        // Bridged networks (bridge, MTU) for routers; bridges the host
        // holds an address on.
        let mut bridges: BTreeMap<String, (String, i64)> = BTreeMap::new();
        let mut external = BTreeSet::new();
        for (net_id, ports) in &by_net {
            let Some(net) = desired.networks.get(*net_id) else {
                continue;
            };
            if !crate::safe_id(&net.id) {
                continue;
            }
            if let Some(why) = crate::unsupported(net, self.vlan) {
                errors.push(why);
                continue;
            }
            wanted.insert(net.id.clone());
            let r = async {
                self.record(&net.id)?;
                let br = self.bridge(net, &links).await?;
                if !net.host_addresses.is_empty() {
                    self.host_addresses(&br, &net.host_addresses).await?;
                }
                let mut net_up = Vec::new();
                for p in ports {
                    let ok = if crate::is_local_guest_port(p) {
                        self.guest_port(p, net, &br, &links).await?
                    } else if crate::is_dhcp_port(p) {
                        self.dhcp(net, p, ports, &br, &links).await?
                    } else {
                        false
                    };
                    if ok {
                        net_up.push(p.id.clone());
                    }
                }
                if !ports.iter().any(|p| crate::is_dhcp_port(p)) {
                    self.stop_dhcp(&net.id).await;
                }
                Ok::<_, String>((net_up, br))
            }
            .await;
            match r {
                Ok((u, br)) => {
                    up.extend(u);
                    if !net.host_addresses.is_empty() {
                        external.insert(br.clone());
                    }
                    bridges.insert(net.id.clone(), (br, net.mtu.max(68)));
                }
                Err(e) => errors.push(format!("network {}: {e}", net.id)),
            }
        }
        let (router_up, router_errors) = self.routers(desired, &bridges, &links).await;
        up.extend(router_up);
        errors.extend(router_errors);
        if let Err(e) = self.external_guard(&external).await {
            errors.push(format!("external networks' guard: {e}"));
        }
        for gone in self.recorded().difference(&wanted) {
            self.teardown(gone, &links).await;
        }
        if let Err(e) = self.firewall(desired).await {
            // No guest port is up without its rules.
            errors.push(format!("security groups: {e}"));
            up.retain(|id| {
                desired
                    .ports
                    .get(id)
                    .is_some_and(|p| !crate::is_guest_port(p))
            });
        }
        for e in &errors {
            tracing::warn!("{e}");
        }
        up.sort();
        Ok(up)
    }
}

#[async_trait::async_trait]
impl HostDriver for LinuxBridge {
    fn name(&self) -> &'static str {
        "linuxbridge"
    }

    async fn apply(&self, desired: &HostState) -> Result<Vec<String>, String> {
        let _one = self.lock.lock().await;
        std::fs::create_dir_all(&self.state_dir)
            .map_err(|e| format!("{}: {e}", self.state_dir.display()))?;
        self.converge(desired).await
    }

    async fn metadata_socket(&self, network_id: &str) -> Result<std::net::TcpListener, String> {
        if !crate::safe_id(network_id) {
            return Err(format!("network id {network_id:?}"));
        }
        let ns = crate::dhcp_namespace(network_id);
        let addr = std::net::SocketAddr::from((crate::METADATA_IP, 80));
        tokio::task::spawn_blocking(move || bind_in_namespace(&ns, addr))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn router_metadata_socket(
        &self,
        router_id: &str,
    ) -> Result<std::net::TcpListener, String> {
        if !crate::safe_id(router_id) {
            return Err(format!("router id {router_id:?}"));
        }
        let ns = crate::router_namespace(router_id);
        let addr = std::net::SocketAddr::from((
            std::net::Ipv4Addr::UNSPECIFIED,
            crate::ROUTER_METADATA_PORT,
        ));
        tokio::task::spawn_blocking(move || bind_in_namespace(&ns, addr))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn devices(&self) -> Result<crate::Devices, String> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .map(|(name, l)| (name, l.master))
            .collect())
    }
}

async fn kill_and_wait(pid: u32) {
    let _ = run("kill", &["-TERM", &pid.to_string()]).await;
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("Z")
        });
        if zombie {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = run("kill", &["-KILL", &pid.to_string()]).await;
}

/// A TCP socket listening on `addr` inside the network namespace `ns`: a
/// thread of its own enters the namespace, binds, and ends; the socket
/// stays in the namespace and may be served from anywhere (FINDINGS.md:
/// one metadata service for every namespace, no proxy per namespace).
pub fn bind_in_namespace(
    ns: &str,
    addr: std::net::SocketAddr,
) -> Result<std::net::TcpListener, String> {
    let path = Path::new("/run/netns").join(ns);
    std::thread::spawn(move || {
        use std::os::fd::AsFd;
        let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("entering {}: {e}", path.display()))?;
        let l = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("binding {addr} in {}: {e}", path.display()))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(l)
    })
    .join()
    .map_err(|_| "the thread binding in a namespace panicked".to_string())?
}

fn write_atomic(path: &Path, body: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Removes, without a runtime, what the Linux bridge driver recorded under
/// `state_dir`: each network's dnsmasq (only the process whose command line
/// names that network's pid file) and its `qdhcp-<network>` namespace. For
/// an operator after a crash, and for tests' clean-up (also on failure);
/// bridges in a host namespace go with that namespace.
pub fn remove_recorded(state_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(state_dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let Some(net) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !crate::safe_id(&net) {
            continue;
        }
        let pidfile = e.path().join("pid");
        let want = format!("--pid-file={}", pidfile.display());
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == want.as_bytes()))
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for ns in [crate::dhcp_namespace(&net), crate::router_namespace(&net)] {
            if Path::new("/run/netns").join(&ns).exists() {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &ns])
                    .status();
            }
        }
    }
}
