//! The Linux bridge driver and the fake through the same cases: the same
//! ports come up, in the same order of events. The Linux run builds real
//! bridges, veths, a `qdhcp-<net>` namespace and dnsmasq inside a host
//! namespace this test makes, and a guest namespace (standing in for a
//! guest, its `eth0` the other end of its "tap") gets its lease from
//! dnsmasq with busybox's udhcpc. Everything is removed afterwards, also
//! on failure. The Linux run needs root, dnsmasq and busybox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_netdriver::{
    DhcpOpt, DhcpSubnet, FakeHostDriver, HostDriver, HostState, LinuxBridge, NetSpec, PortSpec,
    tap_name,
};
use std::process::Command;

fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Where a guest's tap comes from: the fake driver is told; on Linux a
/// veth's host end is the tap and its other end the guest's eth0.
#[async_trait::async_trait]
trait Hypervisor: Send + Sync {
    async fn plug(&self, port: &PortSpec);
}

struct FakeHv<'a>(&'a FakeHostDriver);

#[async_trait::async_trait]
impl Hypervisor for FakeHv<'_> {
    async fn plug(&self, port: &PortSpec) {
        self.0.plug(&tap_name(&port.id));
    }
}

/// The test's namespaces; removed on drop with what the driver started.
struct Rig {
    host: String,
    guest: String,
    net_id: String,
    state: tempfile::TempDir,
}

impl Rig {
    /// `tag` keeps the namespaces of tests running at once apart.
    fn new(tag: &str) -> Rig {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let r = Rig {
            host: format!("fnh{tag}-{pid}"),
            guest: format!("fng{tag}-{pid}"),
            net_id: format!("cf{pid:08x}-{nanos:08x}-4e2d-9a1b-0c1d2e3f4a5b"),
            state: tempfile::tempdir().unwrap(),
        };
        for ns in [&r.host, &r.guest] {
            assert!(sh(&["ip", "netns", "add", ns]).0, "ip netns add {ns}");
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        r
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // dnsmasq first: a namespace with a live process stays alive.
        ferro_netdriver::remove_recorded(self.state.path());
        for ns in [&self.host, &self.guest] {
            if std::path::Path::new("/run/netns").join(ns).exists() {
                sh(&["ip", "netns", "del", ns]);
            }
        }
    }
}

struct LinuxHv<'a>(&'a Rig);

#[async_trait::async_trait]
impl Hypervisor for LinuxHv<'_> {
    async fn plug(&self, port: &PortSpec) {
        let tap = tap_name(&port.id);
        let (ok, out) = sh(&[
            "ip",
            "-n",
            &self.0.host,
            "link",
            "add",
            &tap,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &self.0.guest,
        ]);
        assert!(ok, "{out}");
        for a in [
            vec!["link", "set", "eth0", "address", port.mac.as_str()],
            vec!["link", "set", "eth0", "up"],
        ] {
            let mut args = vec!["ip", "-n", self.0.guest.as_str()];
            args.extend(a);
            assert!(sh(&args).0);
        }
    }
}

fn port(id: String, net: &str, mac: &str, ip: &str, owner: &str) -> PortSpec {
    PortSpec {
        id,
        network_id: net.into(),
        mac: mac.into(),
        ips: vec![ip.into()],
        device_owner: owner.into(),
        admin_up: true,
        port_security: true,
        ..Default::default()
    }
}

fn state(net: &NetSpec, ports: &[&PortSpec]) -> HostState {
    let mut s = HostState::default();
    s.networks.insert(net.id.clone(), net.clone());
    for p in ports {
        s.ports.insert(p.id.clone(), (*p).clone());
    }
    s
}

/// What happens on the real host after each step (nothing for the fake).
#[async_trait::async_trait]
trait Check: Send + Sync {
    async fn after(&self, step: &str, net: &NetSpec, ports: &[&PortSpec]);
}

struct NoCheck;

#[async_trait::async_trait]
impl Check for NoCheck {
    async fn after(&self, _: &str, _: &NetSpec, _: &[&PortSpec]) {}
}

/// The cases; returns the ports up after each step.
async fn cases(
    d: &dyn HostDriver,
    hv: &dyn Hypervisor,
    check: &dyn Check,
    net_id: &str,
) -> Vec<Vec<String>> {
    let net = NetSpec {
        id: net_id.into(),
        network_type: "flat".into(),
        mtu: 1400,
        dhcp_subnets: vec![DhcpSubnet {
            cidr: "10.77.0.0/24".into(),
            gateway: Some("10.77.0.1".into()),
            dns_nameservers: vec!["10.77.0.53".into()],
            host_routes: vec![("192.168.77.0/24".into(), "10.77.0.254".into())],
        }],
        ..Default::default()
    };
    let sfx = &net_id[2..12];
    let dhcp = port(
        format!("d{sfx}-0000"),
        net_id,
        "fa:16:3e:00:00:02",
        "10.77.0.2",
        "network:dhcp",
    );
    let mut p = port(
        format!("p{sfx}-0000"),
        net_id,
        "fa:16:3e:00:00:10",
        "10.77.0.10",
        "compute:nova",
    );
    p.extra_dhcp_opts = vec![DhcpOpt {
        name: "ntp-server".into(),
        value: "10.77.0.123".into(),
        ip_version: 4,
    }];
    let q = port(
        format!("q{sfx}-0000"),
        net_id,
        "fa:16:3e:00:00:11",
        "10.77.0.11",
        "compute:nova",
    );
    let mut out = Vec::new();
    let mut step = async |name: &str, s: HostState, ports: &[&PortSpec]| {
        let mut up = d.apply(&s).await.unwrap();
        up.sort();
        check.after(name, &net, ports).await;
        out.push(up);
    };
    step("empty", HostState::default(), &[]).await;
    step("dhcp", state(&net, &[&dhcp, &p]), &[&dhcp, &p]).await;
    hv.plug(&p).await;
    step("plugged", state(&net, &[&dhcp, &p]), &[&dhcp, &p]).await;
    step("again", state(&net, &[&dhcp, &p]), &[&dhcp, &p]).await;
    step("added", state(&net, &[&dhcp, &p, &q]), &[&dhcp, &p, &q]).await;
    p.admin_up = false;
    step(
        "admin-down",
        state(&net, &[&dhcp, &p, &q]),
        &[&dhcp, &p, &q],
    )
    .await;
    step("gone", HostState::default(), &[]).await;
    out
}

#[tokio::test]
async fn the_fake_and_linux_bridge_bring_up_the_same_ports() {
    let net_id = format!("cf{:08x}-0000-4e2d-9a1b-0c1d2e3f4a5b", std::process::id());
    let fake = FakeHostDriver::default();
    let want = cases(&fake, &FakeHv(&fake), &NoCheck, &net_id).await;
    let d = |s: &str| format!("d{}-0000", &net_id[2..12]) == s;
    assert!(want[0].is_empty() && want[6].is_empty());
    assert!(want[1].len() == 1 && d(&want[1][0]), "{want:?}");
    assert_eq!(want[2].len(), 2, "{want:?}");
    assert_eq!(want[2], want[3]);
    assert_eq!(want[2], want[4]);
    assert_eq!(want[5], want[1]);

    let root = sh(&["id", "-u"]).1.trim() == "0";
    if !root {
        eprintln!("skipped (Linux bridge half): needs root");
        return;
    }
    for (cmd, pkg) in [("dnsmasq", "dnsmasq-base"), ("busybox", "busybox-static")] {
        if !sh(&["sh", "-c", &format!("command -v {cmd}")]).0 {
            ferro_common::skip_or_fail(&format!("{cmd} is not installed ({pkg})"));
            return;
        }
    }
    let rig = Rig::new("d");
    let linux = LinuxBridge::new(Some(rig.host.clone()), rig.state.path().to_path_buf());
    let real = Real {
        rig: &rig,
        pid: std::sync::Mutex::new(None),
    };
    let got = cases(&linux, &LinuxHv(&rig), &real, &rig.net_id).await;
    // The same ports (d: DHCP, p and q: guests) up after each step.
    let norm = |v: &Vec<Vec<String>>| -> Vec<Vec<String>> {
        v.iter()
            .map(|s| s.iter().map(|p| p[..1].to_string()).collect())
            .collect()
    };
    assert_eq!(norm(&got), norm(&want));
}

/// The kernel's side after each step of the Linux run.
struct Real<'a> {
    rig: &'a Rig,
    /// dnsmasq's pid once the guest had its lease.
    pid: std::sync::Mutex<Option<String>>,
}

impl Real<'_> {
    fn leases(&self) -> String {
        let f = self.rig.state.path().join(&self.rig.net_id).join("leases");
        std::fs::read_to_string(f).unwrap_or_default()
    }

    fn dnsmasq_pid(&self) -> Option<String> {
        let f = self.rig.state.path().join(&self.rig.net_id).join("pid");
        let pid = std::fs::read_to_string(f).ok()?.trim().to_string();
        std::path::Path::new(&format!("/proc/{pid}"))
            .exists()
            .then_some(pid)
    }
}

#[async_trait::async_trait]
impl Check for Real<'_> {
    async fn after(&self, step: &str, net: &NetSpec, ports: &[&PortSpec]) {
        let r = self.rig;
        let br = ferro_netdriver::bridge_name(&net.id);
        let qdhcp = ferro_netdriver::dhcp_namespace(&net.id);
        let (has_br, _) = sh(&["ip", "-n", &r.host, "link", "show", &br]);
        match step {
            "empty" | "gone" => {
                assert!(!has_br, "{step}: {br} left");
                assert!(
                    !std::path::Path::new("/run/netns").join(&qdhcp).exists(),
                    "{step}: {qdhcp} left"
                );
                assert!(self.dnsmasq_pid().is_none(), "{step}: dnsmasq left");
            }
            "dhcp" => {
                assert!(has_br, "no {br}");
                let (_, mtu) = sh(&["ip", "-n", &r.host, "-o", "link", "show", &br]);
                assert!(mtu.contains("mtu 1400"), "{mtu}");
                assert!(self.dnsmasq_pid().is_some(), "dnsmasq is not running");
            }
            "plugged" => {
                // The guest's DHCP request gets its port's address, the
                // gateway, the network's MTU, the subnet's DNS server and
                // host routes (with the metadata service's through the
                // DHCP port), and the port's own extra option.
                let script = r.state.path().join("udhcpc.sh");
                std::fs::write(
                    &script,
                    "#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE $ip $subnet $router $mtu dns=$dns routes=$staticroutes ntp=$ntpsrv\"\nexit 0\n",
                )
                .unwrap();
                sh(&["chmod", "755", &script.display().to_string()]);
                let (_, out) = sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &r.guest,
                    "busybox",
                    "udhcpc",
                    "-i",
                    "eth0",
                    "-n",
                    "-q",
                    "-t",
                    "5",
                    "-T",
                    "1",
                    "-O",
                    "mtu",
                    "-O",
                    "staticroutes",
                    "-O",
                    "ntpsrv",
                    "-s",
                    &script.display().to_string(),
                ]);
                assert!(
                    out.contains(
                        "LEASE 10.77.0.10 255.255.255.0 10.77.0.1 1400 dns=10.77.0.53 \
                         routes=192.168.77.0/24 10.77.0.254 169.254.169.254/32 10.77.0.2 \
                         0.0.0.0/0 10.77.0.1 ntp=10.77.0.123"
                    ),
                    "udhcpc: {out}"
                );
                eprintln!("# the guest's DHCP client: {}", out.trim());
                let tap = tap_name(&ports[1].id);
                let (_, l) = sh(&["ip", "-n", &r.host, "-o", "link", "show", &tap]);
                assert!(l.contains(&format!("master {br}")), "{l}");
                *self.pid.lock().unwrap() = self.dnsmasq_pid();
            }
            "again" => {
                // Nothing changed: dnsmasq was left alone.
                let hosts =
                    std::fs::read_to_string(r.state.path().join(&net.id).join("host")).unwrap();
                assert_eq!(
                    hosts,
                    "fa:16:3e:00:00:10,host-10-77-0-10.openstacklocal.,10.77.0.10,set:port-"
                        .to_string()
                        + &ports[1].id
                        + "\n"
                );
                assert_eq!(self.dnsmasq_pid(), *self.pid.lock().unwrap());
                // The agent restarts (a new driver on the same state
                // directory): nothing to change, so dnsmasq and the
                // guest's lease are kept.
                let again = LinuxBridge::new(Some(r.host.clone()), r.state.path().to_path_buf());
                let mut up = again.apply(&state(net, ports)).await.unwrap();
                up.sort();
                assert_eq!(up.len(), 2, "{up:?}");
                assert_eq!(self.dnsmasq_pid(), *self.pid.lock().unwrap());
                assert!(self.leases().contains("fa:16:3e:00:00:10 10.77.0.10"));
            }
            "added" => {
                // A new host entry: dnsmasq was restarted with it (never
                // sent SIGHUP), and it runs.
                let hosts =
                    std::fs::read_to_string(r.state.path().join(&net.id).join("host")).unwrap();
                assert!(
                    hosts.contains("fa:16:3e:00:00:11,host-10-77-0-11"),
                    "{hosts}"
                );
                let now = self.dnsmasq_pid();
                assert!(now.is_some());
                assert_ne!(now, *self.pid.lock().unwrap());
                // The new dnsmasq kept the first guest's lease.
                let leases = self.leases();
                assert!(leases.contains("fa:16:3e:00:00:10 10.77.0.10"), "{leases}");
            }
            "admin-down" => {
                let tap = tap_name(&ports[1].id);
                let (_, l) = sh(&["ip", "-n", &r.host, "-o", "link", "show", &tap]);
                assert!(!l.contains(",UP"), "{l}");
            }
            _ => {}
        }
    }
}

/// A router on both drivers: its interface and gateway ports come up; on
/// Linux, in `qrouter-<id>` inside the test's host namespace, a guest (a
/// namespace on its port's tap) reaches the host's address on the external
/// network through SNAT to the router's gateway address, then, once it has
/// a floating IP, the host reaches it at that address and it reaches the
/// host from it, and so does a host on the external network's physical
/// interface; nothing is forwarded through the host's other interfaces;
/// an admin-down router keeps its ports but routes nothing; the floating
/// IP removed, the host no longer reaches it; the router deleted, its
/// namespace is gone.
#[tokio::test]
async fn the_fake_and_linux_bridge_route_alike() {
    let pid = std::process::id();
    let tenant = format!("ct{pid:08x}-0000-4e2d-9a1b-0c1d2e3f4a5b");
    let ext = format!("ce{pid:08x}-0000-4e2d-9a1b-0c1d2e3f4a5b");
    let router = format!("cr{pid:08x}-0000-4e2d-9a1b-0c1d2e3f4a5b");
    let net = |id: &str, host: Vec<String>| NetSpec {
        id: id.into(),
        network_type: "flat".into(),
        physical_network: Some(if host.is_empty() { "tenant" } else { "public" }.into()),
        mtu: 1500,
        host_addresses: host,
        ..Default::default()
    };
    let mut vm = port(
        format!("v{}-0000", &tenant[2..12]),
        &tenant,
        "fa:16:3e:00:01:10",
        "10.88.0.10",
        "compute:nova",
    );
    vm.rules = vec![
        serde_json::json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}),
        serde_json::json!({"direction": "egress", "ethertype": "IPv4"}),
    ];
    let mut qr = port(
        format!("i{}-0000", &tenant[2..12]),
        &tenant,
        "fa:16:3e:00:01:01",
        "10.88.0.1",
        "network:router_interface",
    );
    qr.device_id = router.clone();
    let mut qg = port(
        format!("g{}-0000", &ext[2..12]),
        &ext,
        "fa:16:3e:00:02:0a",
        "172.24.88.10",
        "network:router_gateway",
    );
    qg.device_id = router.clone();
    let spec = |fips: Vec<(String, String)>| ferro_netdriver::RouterSpec {
        id: router.clone(),
        gateway: Some((ext.clone(), vec!["172.24.88.10/24".into()])),
        interfaces: vec![(tenant.clone(), "10.88.0.1/24".into())],
        floating_ips: fips,
        gateway_nexthops: vec!["172.24.88.1".into()],
        ..Default::default()
    };
    let state = |fips: Vec<(String, String)>| {
        let mut s = HostState::default();
        s.networks.insert(tenant.clone(), net(&tenant, vec![]));
        s.networks
            .insert(ext.clone(), net(&ext, vec!["172.24.88.1/24".into()]));
        for p in [&vm, &qr, &qg] {
            s.ports.insert(p.id.clone(), p.clone());
        }
        s.routers.insert(router.clone(), spec(fips));
        s
    };
    let fip = vec![("172.24.88.100".to_string(), "10.88.0.10".to_string())];
    let fake = FakeHostDriver::default();
    fake.plug(&tap_name(&vm.id));
    let mut want = Vec::new();
    let down = || {
        let mut s = state(fip.clone());
        if let Some(r) = s.routers.get_mut(&router) {
            r.admin_up = false;
        }
        s
    };
    for s in [state(vec![]), state(fip.clone()), down(), state(vec![])] {
        let mut up = fake.apply(&s).await.unwrap();
        up.sort();
        want.push(up);
    }
    want.push(fake.apply(&HostState::default()).await.unwrap());
    assert_eq!(want[0].len(), 3, "{want:?}");
    assert_eq!(want[2], want[0], "an admin-down router's ports stay wired");
    assert!(want[4].is_empty());

    if sh(&["id", "-u"]).1.trim() != "0" {
        eprintln!("skipped (Linux bridge half): needs root");
        return;
    }
    for (cmd, pkg) in [("nft", "nftables"), ("busybox", "busybox-static")] {
        if !sh(&["sh", "-c", &format!("command -v {cmd}")]).0 {
            ferro_common::skip_or_fail(&format!("{cmd} is not installed ({pkg})"));
            return;
        }
    }
    let rig = Rig::new("r");
    // The external network is also on a "physical" interface of the host,
    // whose other end is a provider host (a namespace).
    let mappings = ["public:phys0".to_string()];
    let linux = LinuxBridge::new(Some(rig.host.clone()), rig.state.path().to_path_buf())
        .with_interface_mappings(&mappings)
        .unwrap();
    let _routers = RouterCleanup(
        router.clone(),
        vec![format!("fno-{pid}"), format!("fnp-{pid}")],
    );
    let provider = &_routers.1[1];
    assert!(sh(&["ip", "netns", "add", provider]).0);
    for args in [
        vec![
            "-n", &rig.host, "link", "add", "phys0", "type", "veth", "peer", "name", "eth0",
            "netns", provider,
        ],
        vec![
            "-n",
            provider,
            "addr",
            "add",
            "172.24.88.50/24",
            "dev",
            "eth0",
        ],
        vec!["-n", provider, "link", "set", "eth0", "up"],
    ] {
        let mut a = vec!["ip"];
        a.extend(args);
        assert!(sh(&a).0, "{a:?}");
    }
    let in_guest = |args: &[&str]| {
        let mut a = vec!["ip", "netns", "exec", rig.guest.as_str()];
        a.extend_from_slice(args);
        sh(&a)
    };
    let in_host = |args: &[&str]| {
        let mut a = vec!["ip", "netns", "exec", rig.host.as_str()];
        a.extend_from_slice(args);
        sh(&a)
    };
    LinuxHv(&rig).plug(&vm).await;
    sh(&[
        "ip",
        "-n",
        &rig.guest,
        "addr",
        "add",
        "10.88.0.10/24",
        "dev",
        "eth0",
    ]);
    sh(&[
        "ip",
        "-n",
        &rig.guest,
        "route",
        "add",
        "default",
        "via",
        "10.88.0.1",
    ]);
    // The source address the host sees: a listener that prints its peer.
    let seen = || {
        let script = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('172.24.88.1',8088))\ns.listen(1)\ns.settimeout(5)\nc,a=s.accept()\nprint(a[0])\n";
        let host = rig.host.clone();
        let listener = std::thread::spawn(move || {
            sh(&["ip", "netns", "exec", &host, "python3", "-c", script])
                .1
                .trim()
                .to_string()
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        in_guest(&["busybox", "nc", "-w", "3", "172.24.88.1", "8088"]);
        listener.join().unwrap()
    };
    let mut got = Vec::new();
    let mut up = linux.apply(&state(vec![])).await.unwrap();
    up.sort();
    got.push(up);
    let ns = format!("qrouter-{router}");
    assert!(std::path::Path::new("/run/netns").join(&ns).exists());
    let (_, routes) = sh(&["ip", "-n", &ns, "route"]);
    assert!(routes.contains("default via 172.24.88.1"), "{routes}");
    assert!(in_guest(&["busybox", "ping", "-c", "1", "-W", "2", "172.24.88.1"]).0);
    assert_eq!(seen(), "172.24.88.10", "SNAT to the gateway's address");
    // The metadata service through the router: what the guest sends to
    // 169.254.169.254:80 by its default route reaches the router's
    // metadata socket, at the address of the interface it came in by.
    let l = linux.router_metadata_socket(&router).await.unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        // Non-blocking: a request that never comes fails the test.
        let t0 = std::time::Instant::now();
        let (mut c, peer) = loop {
            match l.accept() {
                Ok(x) => break x,
                Err(_) if t0.elapsed() < std::time::Duration::from_secs(8) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => return format!("no request came: {e}"),
            }
        };
        let _ = c.set_nonblocking(false);
        let mut buf = [0u8; 512];
        let _ = c.read(&mut buf);
        let local = c
            .local_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let _ = write!(c, "HTTP/1.0 200 OK\r\n\r\n{local} {}", peer.ip());
        String::new()
    });
    let (_, got_md) = in_guest(&[
        "sh",
        "-c",
        "printf 'GET /latest/meta-data/ HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 169.254.169.254 80",
    ]);
    let err = server.join().unwrap();
    assert!(err.is_empty(), "{err}");
    assert!(
        got_md.trim_end().ends_with("10.88.0.1 10.88.0.10"),
        "the interface's address, the guest's: {got_md}"
    );
    // Nothing leaves through the host's other interfaces, even where the
    // host forwards: an "uplink" to a namespace standing for the outside.
    let outside = &_routers.1[0];
    assert!(sh(&["ip", "netns", "add", outside]).0);
    for args in [
        vec![
            "-n", &rig.host, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns",
            outside,
        ],
        vec!["-n", &rig.host, "addr", "add", "10.99.0.1/24", "dev", "up0"],
        vec!["-n", &rig.host, "link", "set", "up0", "up"],
        vec!["-n", outside, "addr", "add", "10.99.0.2/24", "dev", "eth0"],
        vec!["-n", outside, "link", "set", "eth0", "up"],
        vec!["-n", outside, "route", "add", "default", "via", "10.99.0.1"],
    ] {
        let mut a = vec!["ip"];
        a.extend(args);
        assert!(sh(&a).0, "{a:?}");
    }
    assert!(in_host(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).0);
    let out = || in_guest(&["busybox", "ping", "-c", "1", "-W", "1", "10.99.0.2"]).0;
    assert!(!out(), "a guest reached the outside through the host");
    assert!(in_host(&["nft", "delete", "table", "inet", "ferro_ext"]).0);
    assert!(
        out(),
        "without the guard the host would forward (the check can fail)"
    );
    let again = LinuxBridge::new(Some(rig.host.clone()), rig.state.path().to_path_buf());
    again.apply(&state(vec![])).await.unwrap();
    assert!(!out(), "the guard is back");
    assert!(
        !in_host(&["busybox", "ping", "-c", "1", "-W", "1", "172.24.88.100"]).0,
        "no floating IP yet"
    );
    let mut up = linux.apply(&state(fip.clone())).await.unwrap();
    up.sort();
    got.push(up);
    let (ok, out) = in_host(&["busybox", "ping", "-c", "1", "-W", "2", "172.24.88.100"]);
    assert!(ok, "the host pings the floating IP: {out}");
    let (ok, out) = sh(&[
        "ip",
        "netns",
        "exec",
        provider,
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "172.24.88.100",
    ]);
    assert!(
        ok,
        "a host on the provider network pings the floating IP: {out}"
    );
    assert_eq!(seen(), "172.24.88.100", "SNAT to the floating IP");
    // Administratively down: wired, routing nothing.
    let mut up = linux.apply(&down()).await.unwrap();
    up.sort();
    got.push(up);
    assert!(
        !in_host(&["busybox", "ping", "-c", "1", "-W", "1", "172.24.88.100"]).0,
        "an admin-down router still routes"
    );
    let mut up = linux.apply(&state(vec![])).await.unwrap();
    up.sort();
    got.push(up);
    assert!(
        !in_host(&["busybox", "ping", "-c", "1", "-W", "1", "172.24.88.100"]).0,
        "the floating IP is gone"
    );
    got.push(linux.apply(&HostState::default()).await.unwrap());
    assert!(!std::path::Path::new("/run/netns").join(&ns).exists());
    assert_eq!(got, want);
}

/// A router namespace left by a failed run, and the test's other ones.
struct RouterCleanup(String, Vec<String>);

impl Drop for RouterCleanup {
    fn drop(&mut self) {
        for ns in std::iter::once(format!("qrouter-{}", self.0)).chain(self.1.clone()) {
            if std::path::Path::new("/run/netns").join(&ns).exists() {
                sh(&["ip", "netns", "del", &ns]);
            }
        }
    }
}

/// A vxlan network on two hosts: each converges its share (its guest's
/// port, the other host's tunnel endpoint), on the fake and on Linux,
/// where the two host namespaces are joined by an underlay veth and the
/// guests ping each other through `vxlan-<vni>`: not without the flooding
/// entry, again with it; the device goes with the network.
#[tokio::test]
async fn the_fake_and_linux_bridge_tunnel_alike() {
    let pid = std::process::id();
    let net_id = format!("cv{pid:08x}-0000-4e2d-9a1b-0c1d2e3f4a5b");
    let vni = 4000 + i64::from(pid % 1000);
    let (ula, ulb) = ("10.254.0.1", "10.254.0.2");
    let guest = |tag: &str, mac: &str, ip: &str| {
        let mut p = port(
            format!("{tag}{}-0000", &net_id[2..11]),
            &net_id,
            mac,
            ip,
            "compute:nova",
        );
        p.rules = vec![
            serde_json::json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}),
            serde_json::json!({"direction": "egress", "ethertype": "IPv4"}),
        ];
        p
    };
    let pa = guest("a", "fa:16:3e:00:03:0a", "10.89.0.10");
    let pb = guest("b", "fa:16:3e:00:03:0b", "10.89.0.11");
    let share = |p: &PortSpec, peers: Vec<&str>| {
        let net = NetSpec {
            id: net_id.clone(),
            network_type: "vxlan".into(),
            segmentation_id: Some(vni),
            mtu: 1450,
            tunnel_peers: peers.into_iter().map(str::to_string).collect(),
            ..Default::default()
        };
        state(&net, &[p])
    };
    // The fake: each host's guest port is up once plugged.
    let (fa, fb) = (FakeHostDriver::default(), FakeHostDriver::default());
    let mut want = Vec::new();
    for (d, p, peer) in [(&fa, &pa, ulb), (&fb, &pb, ula)] {
        d.plug(&tap_name(&p.id));
        want.push(d.apply(&share(p, vec![peer])).await.unwrap());
    }
    // a hosting the network's DHCP knows b's guest, and wires nothing for it.
    let known = |s: HostState| {
        let mut s = s;
        let mut e = pb.clone();
        e.elsewhere = true;
        s.ports.insert(e.id.clone(), e);
        s
    };
    want.push(fa.apply(&known(share(&pa, vec![ulb]))).await.unwrap());
    want.push(fa.apply(&share(&pa, vec![])).await.unwrap());
    want.push(fa.apply(&HostState::default()).await.unwrap());
    let one = |p: &PortSpec| vec![p.id.clone()];
    assert_eq!(want, [one(&pa), one(&pb), one(&pa), one(&pa), vec![]]);

    if sh(&["id", "-u"]).1.trim() != "0" {
        eprintln!("skipped (Linux bridge half): needs root");
        return;
    }
    if !sh(&["sh", "-c", "command -v busybox"]).0 {
        ferro_common::skip_or_fail("busybox is not installed (busybox-static)");
        return;
    }
    let (a, b) = (Rig::new("va"), Rig::new("vb"));
    let (ok, out) = sh(&[
        "ip", "-n", &a.host, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns",
        &b.host,
    ]);
    assert!(ok, "{out}");
    for (r, ip) in [(&a, ula), (&b, ulb)] {
        let cidr = format!("{ip}/24");
        assert!(sh(&["ip", "-n", &r.host, "addr", "add", &cidr, "dev", "ul0"]).0);
        assert!(sh(&["ip", "-n", &r.host, "link", "set", "ul0", "up"]).0);
    }
    let driver = |r: &Rig, ip: &str| {
        LinuxBridge::new(Some(r.host.clone()), r.state.path().to_path_buf())
            .with_local_ip(Some(ip))
            .unwrap()
    };
    let (la, lb) = (driver(&a, ula), driver(&b, ulb));
    let mut got = Vec::new();
    for (d, r, p, peer) in [(&la, &a, &pa, ulb), (&lb, &b, &pb, ula)] {
        LinuxHv(r).plug(p).await;
        let cidr = format!("{}/24", p.ips[0]);
        assert!(sh(&["ip", "-n", &r.guest, "addr", "add", &cidr, "dev", "eth0"]).0);
        got.push(d.apply(&share(p, vec![peer])).await.unwrap());
    }
    let dev = format!("vxlan-{vni}");
    let (_, link) = sh(&["ip", "-n", &a.host, "-d", "link", "show", &dev]);
    assert!(
        link.contains(&format!("vxlan id {vni} local {ula}"))
            && link.contains("mtu 1450")
            && link.contains(&format!("master {}", ferro_netdriver::bridge_name(&net_id))),
        "{link}"
    );
    let (_, fdb) = sh(&["bridge", "-n", &a.host, "fdb", "show", "dev", &dev]);
    assert!(
        fdb.contains(&format!("00:00:00:00:00:00 dst {ulb}")),
        "{fdb}"
    );
    let ping = |from: &Rig, to: &str| {
        sh(&[
            "ip",
            "netns",
            "exec",
            &from.guest,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            to,
        ])
        .0
    };
    assert!(
        ping(&a, "10.89.0.11"),
        "a's guest reaches b's over the tunnel"
    );
    assert!(
        ping(&b, "10.89.0.10"),
        "b's guest reaches a's over the tunnel"
    );
    got.push(la.apply(&known(share(&pa, vec![ulb]))).await.unwrap());
    let (_, rules) = sh(&[
        "ip", "netns", "exec", &a.host, "nft", "list", "table", "bridge", "ferro_sg",
    ]);
    assert!(
        rules.contains(&tap_name(&pa.id)) && !rules.contains(&tap_name(&pb.id)),
        "rules on a for a's guest only: {rules}"
    );
    assert!(ping(&b, "10.89.0.10"), "still reachable");
    // Without its flooding entry, a's guest cannot find b's (its ARP
    // broadcast stays on a); forgotten neighbours first.
    got.push(la.apply(&share(&pa, vec![])).await.unwrap());
    let (_, fdb) = sh(&["bridge", "-n", &a.host, "fdb", "show", "dev", &dev]);
    assert!(!fdb.contains("00:00:00:00:00:00"), "{fdb}");
    for r in [&a, &b] {
        sh(&["ip", "-n", &r.guest, "neigh", "flush", "all"]);
        sh(&[
            "bridge", "-n", &r.host, "fdb", "flush", "dev", &dev, "dynamic",
        ]);
    }
    assert!(!ping(&a, "10.89.0.11"), "no flooding entry, no neighbour");
    la.apply(&share(&pa, vec![ulb])).await.unwrap();
    assert!(ping(&a, "10.89.0.11"), "the entry is back");
    got.push(la.apply(&HostState::default()).await.unwrap());
    assert!(
        !sh(&["ip", "-n", &a.host, "link", "show", &dev]).0,
        "{dev} is gone"
    );
    lb.apply(&HostState::default()).await.unwrap();
    assert_eq!(got, want);
}
