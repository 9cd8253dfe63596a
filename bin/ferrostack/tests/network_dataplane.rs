//! The real data plane behind the Networking API, on the real server
//! in-process: with `host_net_driver = linuxbridge` the Networking service
//! sends its desired state to this host's network agent over the bus; the
//! agent builds the network's bridge, the DHCP namespace and dnsmasq, and
//! wires a guest's tap. A guest namespace (its `eth0` the other end of the
//! port's "tap") asks for an address with busybox's udhcpc and gets the
//! port's; the port turns ACTIVE. All of it inside a host namespace the
//! test makes; everything is removed afterwards, also on failure. Needs
//! root, dnsmasq and busybox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_test_utils::{Backend, TestCloud};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The test's namespaces, and the DHCP namespaces and dnsmasq the agent
/// made for it (found from its records in the data directory).
struct Namespaces {
    host: String,
    guest: String,
    network_state: std::path::PathBuf,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        ferro_netdriver::remove_recorded(&self.network_state);
        for ns in [&self.host, &self.guest] {
            sh(&["ip", "netns", "del", ns]);
        }
    }
}

async fn neutron(c: &TestCloud, m: Method, path: &str, tok: &str, body: Value) -> Value {
    let r = c
        .request(m, &format!("/networking/v2.0{path}"), Some(tok), body)
        .await;
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
    r.body
}

async fn wait_active(c: &TestCloud, tok: &str, port: &str) {
    let t = Instant::now();
    loop {
        let p = neutron(c, Method::GET, &format!("/ports/{port}"), tok, Value::Null).await;
        if p["port"]["status"] == "ACTIVE" {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "port {port} is {}",
            p["port"]["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_guest_port_gets_its_lease_from_the_networks_dhcp() {
    if sh(&["id", "-u"]).1.trim() != "0" {
        eprintln!("skipped: the Linux bridge data plane needs root");
        return;
    }
    for (cmd, pkg) in [("dnsmasq", "dnsmasq-base"), ("busybox", "busybox-static")] {
        if !sh(&["sh", "-c", &format!("command -v {cmd}")]).0 {
            ferro_common::skip_or_fail(&format!("{cmd} is not installed ({pkg})"));
            return;
        }
    }
    let pid = std::process::id();
    let host = format!("fdh-{pid}");
    let guest = format!("fdg-{pid}");
    for ns in [&host, &guest] {
        assert!(sh(&["ip", "netns", "add", ns]).0);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let h2 = host.clone();
    let c = TestCloud::start_with(Backend::Sqlite, move |cfg| {
        cfg.network.host_net_driver = "linuxbridge".into();
        cfg.network.host_namespace = Some(h2);
        // The default interval (30 s): a port turns ACTIVE because the
        // agent said so when its tap came (within the 20 s allowed), not
        // because of the periodic resynchronisation.
    })
    .await
    .unwrap()
    .unwrap();
    let _cleanup = Namespaces {
        host: host.clone(),
        guest: guest.clone(),
        network_state: c.data_dir().join("network"),
    };
    let tok = c.admin_token().await;
    let net = neutron(
        &c,
        Method::POST,
        "/networks",
        &tok,
        json!({"network": {"name": "lan"}}),
    )
    .await;
    let net_id = net["network"]["id"].as_str().unwrap().to_string();
    let mtu = net["network"]["mtu"].as_i64().unwrap();
    neutron(
        &c,
        Method::POST,
        "/subnets",
        &tok,
        json!({"subnet": {"network_id": net_id, "cidr": "10.78.0.0/24", "ip_version": 4}}),
    )
    .await;
    // SLAAC and DHCPv6 are not served by this data plane: refused, with the
    // reason, and nothing recorded.
    let r = c
        .request(
            Method::POST,
            "/networking/v2.0/subnets",
            Some(&tok),
            json!({"subnet": {"network_id": net_id, "cidr": "fd00:78::/64", "ip_version": 6,
                   "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("not served"),
        "{}",
        r.body
    );
    let subnets = neutron(
        &c,
        Method::GET,
        &format!("/subnets?network_id={net_id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(subnets["subnets"].as_array().unwrap().len(), 1);
    let host_name = neutron(
        &c,
        Method::GET,
        "/agents?agent_type=DHCP%20agent",
        &tok,
        Value::Null,
    )
    .await["agents"][0]["host"]
        .as_str()
        .unwrap()
        .to_string();
    let port = neutron(
        &c,
        Method::POST,
        "/ports",
        &tok,
        json!({"port": {
        "network_id": net_id, "device_owner": "compute:nova", "device_id": "vm-1",
        "binding:host_id": host_name}}),
    )
    .await;
    let port_id = port["port"]["id"].as_str().unwrap().to_string();
    let mac = port["port"]["mac_address"].as_str().unwrap().to_string();
    let ip = port["port"]["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    // The DHCP port is up once its namespace and dnsmasq run; the guest's
    // is DOWN while it has no tap.
    let dhcp = neutron(
        &c,
        Method::GET,
        &format!("/ports?network_id={net_id}&device_owner=network:dhcp"),
        &tok,
        Value::Null,
    )
    .await;
    let dhcp_id = dhcp["ports"][0]["id"].as_str().unwrap().to_string();
    wait_active(&c, &tok, &dhcp_id).await;
    let p = neutron(
        &c,
        Method::GET,
        &format!("/ports/{port_id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(p["port"]["status"], "DOWN");
    // The "hypervisor" plugs the guest: its tap in the host, eth0 inside.
    let tap = ferro_netdriver::tap_name(&port_id);
    assert!(
        sh(&[
            "ip", "-n", &host, "link", "add", &tap, "type", "veth", "peer", "name", "eth0",
            "netns", &guest
        ])
        .0
    );
    assert!(
        sh(&[
            "ip", "-n", &guest, "link", "set", "eth0", "address", &mac, "up"
        ])
        .0
    );
    wait_active(&c, &tok, &port_id).await;
    let (_, link) = sh(&["ip", "-n", &host, "-o", "link", "show", &tap]);
    assert!(
        link.contains(&format!("master {}", ferro_netdriver::bridge_name(&net_id))),
        "{link}"
    );
    let script = c.data_dir().join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE $ip $subnet $mtu\"\nexit 0\n",
    )
    .unwrap();
    sh(&["chmod", "755", &script.display().to_string()]);
    let (_, out) = sh(&[
        "ip",
        "netns",
        "exec",
        &guest,
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
        "-s",
        &script.display().to_string(),
    ]);
    assert!(
        out.contains(&format!("LEASE {ip} 255.255.255.0 {mtu}")),
        "udhcpc: {out}"
    );
    eprintln!("# the guest's DHCP client: {}", out.trim());
    // Deleting the network's ports and the network removes what the
    // agent built.
    neutron(
        &c,
        Method::DELETE,
        &format!("/ports/{port_id}"),
        &tok,
        Value::Null,
    )
    .await;
    c.request(
        Method::DELETE,
        &format!("/networking/v2.0/networks/{net_id}"),
        Some(&tok),
        Value::Null,
    )
    .await;
    let qdhcp = format!("qdhcp-{net_id}");
    let t = Instant::now();
    while std::path::Path::new("/run/netns").join(&qdhcp).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{qdhcp} is still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.stop().await;
}
