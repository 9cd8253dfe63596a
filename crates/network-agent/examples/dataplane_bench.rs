//! The host data plane's benchmark (issue 18), run by
//! `scripts/bench-network-dataplane.sh` as root, entirely inside network
//! namespaces it creates and removes:
//!
//! 1. converge PORTS guest ports (taps already made, as QEMU makes them)
//!    with RULES security group rules each, a DHCP namespace and dnsmasq,
//!    from an empty host;
//! 2. one port's rules changed (a rule added);
//! 3. after drift: the security group tables deleted and a tenth of the
//!    taps taken off their bridge behind the driver's back;
//! 4. the prototype's way (`../shared/reference/dataplane/06`): one `nft -f`
//!    of the same rules, keyed by address, in a namespace of its own;
//! 5. a guest's tap appearing → the agent has it wired and tells the
//!    Networking service (`PortsUp` on `q-plugin`), which then records the
//!    port ACTIVE.
//!
//! Prints one `name: value` line per figure (`DUMP_RULESET=<file>` also
//! writes the ruleset ferrostack loads for the state).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_bus::{Bus, InProcBus};
use ferro_netdriver::{HostDriver, HostState, LinuxBridge, NetSpec, PortSpec};
use ferro_network_agent::NetworkAgent;
use ferro_rpc::network::{AgentMessage, NetworkRequest, PLUGIN_TOPIC};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the bench's namespaces and what the driver recorded, also on panic.
struct Cleanup {
    namespaces: Vec<String>,
    state: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        ferro_netdriver::remove_recorded(&self.state);
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn rules(i: usize, n: usize) -> Vec<Value> {
    (0..n)
        .map(|k| match k % 4 {
            0 => json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                        "port_range_min": 1000 + k, "port_range_max": 1000 + k,
                        "remote_ip_prefix": format!("192.168.{}.0/24", k)}),
            1 => json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "udp",
                        "port_range_min": 2000 + k, "port_range_max": 2100 + k}),
            2 => json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp",
                        "remote_ip_prefix": format!("10.{}.{}.0/24", 200 + (i % 50), k)}),
            _ => json!({"direction": "egress", "ethertype": "IPv4", "protocol": "tcp",
                        "port_range_min": 3000 + k, "port_range_max": 3000 + k}),
        })
        .collect()
}

fn port_id(i: usize) -> String {
    format!("{i:08x}-bench-port-0000")
}

fn ip(i: usize) -> String {
    format!("10.100.{}.{}", (i + 10) / 250, (i + 10) % 250 + 2)
}

fn mac(i: usize) -> String {
    format!("fa:16:3e:00:{:02x}:{:02x}", i / 256, i % 256)
}

fn state(net: &str, ports: usize, nrules: usize) -> HostState {
    let mut s = HostState::default();
    s.networks.insert(
        net.into(),
        NetSpec {
            id: net.into(),
            network_type: "flat".into(),
            mtu: 1500,
            dhcp_subnets: vec![ferro_netdriver::DhcpSubnet::new(
                "10.100.0.0/16",
                Some("10.100.0.1"),
            )],
            ..Default::default()
        },
    );
    s.ports.insert(
        "dhcp-bench-000000".into(),
        PortSpec {
            id: "dhcp-bench-000000".into(),
            network_id: net.into(),
            mac: "fa:16:3e:ff:ff:01".into(),
            ips: vec!["10.100.0.2".into()],
            device_owner: "network:dhcp".into(),
            admin_up: true,
            ..Default::default()
        },
    );
    for i in 0..ports {
        let id = port_id(i);
        s.ports.insert(
            id.clone(),
            PortSpec {
                id,
                network_id: net.into(),
                mac: mac(i),
                ips: vec![ip(i)],
                device_owner: "compute:nova".into(),
                device_id: format!("vm-{i}"),
                admin_up: true,
                port_security: true,
                rules: rules(i, nrules),
                allowed_address_pairs: vec![],
                ..Default::default()
            },
        );
    }
    s
}

/// The prototype's ruleset for the same ports: one inet table, chains per
/// port keyed by its address (06-security-groups.sh, P2).
fn prototype_ruleset(s: &HostState) -> String {
    let mut out = String::from(
        "table inet proto {\n  chain sg_fwd {\n    type filter hook forward priority 0; policy accept;\n",
    );
    let mut chains = String::new();
    for (n, p) in s.ports.values().filter(|p| p.port_security).enumerate() {
        let a = &p.ips[0];
        out.push_str(&format!(
            "    ip daddr {a} jump in_{n}\n    ip saddr {a} jump out_{n}\n"
        ));
        let mut inr = String::new();
        let mut outr = String::new();
        for r in &p.rules {
            let mut m = String::new();
            if let Some(pfx) = r["remote_ip_prefix"].as_str() {
                m.push_str(&format!("ip saddr {pfx} "));
            }
            match r["protocol"].as_str() {
                Some("icmp") => m.push_str("ip protocol icmp "),
                Some(pr) => m.push_str(&format!(
                    "{pr} dport {}-{} ",
                    r["port_range_min"], r["port_range_max"]
                )),
                None => {}
            }
            if r["direction"] == "ingress" {
                inr.push_str(&format!("    {m}accept\n"));
            } else {
                outr.push_str(&format!("    {}accept\n", m.replace("saddr", "daddr")));
            }
        }
        chains.push_str(&format!(
            "  chain in_{n} {{\n    ct state established,related accept\n{inr}    drop\n  }}\n  chain out_{n} {{\n    ct state established,related accept\n{outr}    drop\n  }}\n"
        ));
    }
    out.push_str("  }\n");
    out.push_str(&chains);
    out.push_str("}\n");
    out
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ports: usize = std::env::var("PORTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let nrules: usize = std::env::var("RULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let pid = std::process::id();
    let host = format!("fdb-{pid}");
    let proto = format!("fdbp-{pid}");
    let dir = tempfile::tempdir().unwrap();
    let net = format!("{pid:08x}-bench-net-0000");
    let _cleanup = Cleanup {
        namespaces: vec![host.clone(), proto.clone()],
        state: dir.path().join("network"),
    };
    for ns in [&host, &proto] {
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    // The guests' taps, as QEMU's would be.
    let t = Instant::now();
    let mut batch = String::new();
    for i in 0..ports {
        batch.push_str(&format!(
            "tuntap add dev {} mode tap\n",
            ferro_netdriver::tap_name(&port_id(i))
        ));
    }
    let f = dir.path().join("taps.batch");
    std::fs::write(&f, batch).unwrap();
    sh(&["ip", "-n", &host, "-batch", &f.display().to_string()]);
    println!("taps made ({ports}): {} ms", ms(t.elapsed()));

    let driver = Arc::new(LinuxBridge::new(
        Some(host.clone()),
        dir.path().join("network"),
    ));
    let mut s = state(&net, ports, nrules);

    // 1. From an empty host.
    let t = Instant::now();
    let up = driver.apply(&s).await.unwrap();
    let first = t.elapsed();
    assert_eq!(up.len(), ports + 1, "every port is up");
    println!(
        "converge {ports} ports x {nrules} rules from an empty host: {} ms",
        ms(first)
    );

    // 2. One port's rules change.
    let one = port_id(ports / 2);
    if let Some(p) = s.ports.get_mut(&one) {
        p.rules.push(
            json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                            "port_range_min": 22, "port_range_max": 22}),
        );
    }
    let t = Instant::now();
    driver.apply(&s).await.unwrap();
    println!("one port's rule added: {} ms", ms(t.elapsed()));
    let t = Instant::now();
    driver.apply(&s).await.unwrap();
    println!("nothing changed: {} ms", ms(t.elapsed()));

    // 3. Drift behind the driver's back.
    sh(&[
        "ip", "netns", "exec", &host, "nft", "delete", "table", "inet", "ferro_sg",
    ]);
    for i in (0..ports).step_by(10) {
        sh(&[
            "ip",
            "-n",
            &host,
            "link",
            "set",
            &ferro_netdriver::tap_name(&port_id(i)),
            "nomaster",
        ]);
    }
    let t = Instant::now();
    let up = driver.apply(&s).await.unwrap();
    println!(
        "after drift (security group table and {} taps' bridge removed): {} ms",
        ports.div_ceil(10),
        ms(t.elapsed())
    );
    assert_eq!(up.len(), ports + 1);
    let listed = Command::new("ip")
        .args([
            "netns", "exec", &host, "nft", "list", "table", "inet", "ferro_sg",
        ])
        .output()
        .unwrap();
    assert!(listed.status.success(), "the table is back");

    // 4. The prototype's one nft -f of the same rules.
    let text = prototype_ruleset(&s);
    let f = dir.path().join("proto.nft");
    std::fs::write(&f, &text).unwrap();
    let t = Instant::now();
    sh(&[
        "ip",
        "netns",
        "exec",
        &proto,
        "nft",
        "-f",
        &f.display().to_string(),
    ]);
    println!(
        "prototype: one nft -f of the same rules keyed by address ({} lines): {} ms",
        text.lines().count(),
        ms(t.elapsed())
    );
    let ours = ferro_netdriver::firewall::render(&s);
    println!("ferrostack ruleset: {} lines", ours.lines().count());
    if let Ok(path) = std::env::var("DUMP_RULESET") {
        std::fs::write(path, &ours).unwrap();
    }

    // 5. A guest's tap appears: how soon the agent has it wired and says so.
    let bus: Arc<dyn Bus> = Arc::new(InProcBus::new());
    let mut plugin = bus.serve(PLUGIN_TOPIC, "controller").await.unwrap();
    let agent = NetworkAgent::new(bus.clone(), "bench".into(), driver.clone());
    agent.clone().start().await.unwrap();
    let mut samples = Vec::new();
    for k in 0..5 {
        let i = ports + k;
        s.ports.insert(
            port_id(i),
            PortSpec {
                id: port_id(i),
                network_id: net.clone(),
                mac: mac(i),
                ips: vec![ip(i)],
                device_owner: "compute:nova".into(),
                device_id: format!("vm-{i}"),
                admin_up: true,
                port_security: true,
                rules: rules(i, nrules),
                allowed_address_pairs: vec![],
                ..Default::default()
            },
        );
        agent
            .dispatch(NetworkRequest::SyncHost { state: s.clone() })
            .await
            .unwrap();
        let tap = ferro_netdriver::tap_name(&port_id(i));
        let t = Instant::now();
        sh(&[
            "ip", "-n", &host, "tuntap", "add", "dev", &tap, "mode", "tap",
        ]);
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), plugin.next())
                .await
                .expect("PortsUp within 10 s")
                .unwrap();
            if let Ok(AgentMessage::PortsUp { up, .. }) = AgentMessage::from_envelope(&msg.envelope)
                && up.contains(&port_id(i))
            {
                break;
            }
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "guest tap appears -> agent wired it and told Networking (5 ports, {} rules each): min {} ms, median {} ms, max {} ms (agent polls every {} ms)",
        nrules,
        ms(samples[0]),
        ms(samples[2]),
        ms(samples[4]),
        ferro_network_agent::POLLING_INTERVAL.as_millis()
    );
}
