//! The network agent of this host: reports as DHCP, L3, Linux bridge and
//! metadata agents (`/v2.0/agents`) with heartbeats, and converges the
//! host's data plane to the API's desired state after every change, then
//! marks the ports it wired ACTIVE (DOWN when administratively down).
use crate::NetworkService;
use crate::hostnet::{DhcpOpt, DhcpSubnet, HostState, NetSpec, PortSpec, RouterSpec};
use crate::ipam::Cidr;
use crate::store::{Kind, Obj, State, arr, b, now, s};
use ferro_common::Error;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const AGENT_TYPES: [(&str, &str, &str); 4] = [
    ("DHCP agent", "neutron-dhcp-agent", "dhcp_agent"),
    ("L3 agent", "neutron-l3-agent", "l3_agent"),
    ("Linux bridge agent", "neutron-linuxbridge-agent", "N/A"),
    ("Metadata agent", "neutron-metadata-agent", "N/A"),
];

/// Agent ids are stable per (host, type) so restarts keep them.
pub fn agent_id(host: &str, binary: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{host}/{binary}").as_bytes(),
    )
    .to_string()
}

/// Listens to the hosts' network agents (`q-plugin`): an agent that saw a
/// guest's tap appear or go asks for a convergence, which records the
/// ports' new status and tells Compute.
pub async fn listen(svc: Arc<NetworkService>, bus: Arc<dyn ferro_bus::Bus>) -> Result<(), Error> {
    use ferro_rpc::network::{AgentMessage, PLUGIN_TOPIC};
    let mut sub = bus
        .serve(PLUGIN_TOPIC, &svc.host)
        .await
        .map_err(|e| Error::internal(format!("subscribing to {PLUGIN_TOPIC}: {e}")))?;
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            match AgentMessage::from_envelope(&msg.envelope) {
                Ok(AgentMessage::PortsUp { host, up }) => {
                    tracing::debug!(%host, up = up.len(), "a network agent's ports changed");
                    if !svc.hostnet.per_host() || svc.workers.reported(&host, up) {
                        svc.notify();
                    }
                }
                Ok(AgentMessage::Report {
                    host,
                    tunnel_ip,
                    driver,
                }) => match reported(&svc, &host, tunnel_ip, &driver).await {
                    Ok(true) => svc.notify(),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%host, "recording a network agent's report: {}", e.message)
                    }
                },
                Err(e) => tracing::error!("message from a network agent refused: {e}"),
            }
            msg.reply(Ok(Value::Null)).await;
        }
    });
    Ok(())
}

/// Starts the convergence loop: after every change, and at least every
/// `report_interval` (then even unchanged states are sent again, which
/// repairs what was changed behind the agents' backs, and agents that
/// stopped reporting are found dead). With the fake data plane this
/// process is the one host and beats for its agents itself.
pub async fn start(svc: Arc<NetworkService>) -> Result<(), Error> {
    let own = !svc.hostnet.per_host();
    if own {
        let (host, az) = (
            svc.host.clone(),
            svc.cfg.network.default_availability_zone.clone(),
        );
        heartbeat(&svc, &host, &az, json!({}), true)
            .await
            .map_err(|e| Error::internal(e.message))?;
    }
    let s2 = svc.clone();
    tokio::spawn(async move {
        let every = Duration::from_secs(s2.cfg.network.report_interval.max(1));
        let mut last_beat = tokio::time::Instant::now();
        let mut force = true;
        loop {
            if let Err(e) = converge(&s2, force).await {
                tracing::warn!("network agent: {e}");
            }
            if own && last_beat.elapsed() >= every {
                let (host, az) = (
                    s2.host.clone(),
                    s2.cfg.network.default_availability_zone.clone(),
                );
                if let Err(e) = heartbeat(&s2, &host, &az, json!({}), false).await {
                    tracing::warn!("network agent heartbeat: {}", e.message);
                }
                last_beat = tokio::time::Instant::now();
            }
            force = tokio::time::timeout(every, s2.changed.notified())
                .await
                .is_err();
        }
    });
    Ok(())
}

/// Records a host's network agent report (its agents' heartbeat, its
/// tunnel endpoint); whether that changes where things run (the host was
/// not alive, or its endpoint moved).
async fn reported(
    svc: &NetworkService,
    host: &str,
    tunnel_ip: Option<String>,
    driver: &str,
) -> crate::error::NResult<bool> {
    let before = crate::hosts::live_hosts(
        &svc.store.read(),
        svc.cfg.network.agent_down_time,
        chrono::Utc::now(),
    )
    .remove(host);
    let mut conf = json!({"interface_mappings": {}, "devices": 0, "driver": driver,
                          "l2_population": true, "tunnel_types": []});
    if let Some(ip) = &tunnel_ip {
        conf["tunneling_ip"] = json!(ip);
        conf["tunnel_types"] = json!(["vxlan"]);
    }
    let az = svc.cfg.network.default_availability_zone.clone();
    heartbeat(svc, host, &az, conf, before.is_none()).await?;
    Ok(before.is_none_or(|b| b.tunnel_ip != tunnel_ip))
}

/// The heartbeat of `host`'s agents (DHCP, L3, Linux bridge, metadata);
/// `bridge_conf` is the Linux bridge agent's `configurations`.
async fn heartbeat(
    svc: &NetworkService,
    host: &str,
    az: &str,
    bridge_conf: Value,
    starting: bool,
) -> crate::error::NResult<()> {
    svc.store
        .write(|tx| {
            for (atype, binary, topic) in AGENT_TYPES {
                let id = agent_id(host, binary);
                let t = now();
                let mut a: Obj = match tx.get(Kind::Agent, &id) {
                    Some(a) => (*a).clone(),
                    None => {
                        let mut a = Obj::new();
                        a.insert("id".into(), json!(id));
                        a.insert("agent_type".into(), json!(atype));
                        a.insert("binary".into(), json!(binary));
                        a.insert("topic".into(), json!(topic));
                        a.insert("host".into(), json!(host));
                        a.insert("admin_state_up".into(), json!(true));
                        a.insert("created_at".into(), json!(t));
                        a.insert("description".into(), Value::Null);
                        a.insert("configurations".into(), json!({}));
                        a.insert("resources_synced".into(), Value::Null);
                        let zone = matches!(atype, "DHCP agent" | "L3 agent");
                        a.insert(
                            "availability_zone".into(),
                            if zone { json!(az) } else { Value::Null },
                        );
                        a
                    }
                };
                if starting {
                    a.insert("started_at".into(), json!(t));
                }
                if atype == "Linux bridge agent" {
                    a.insert("configurations".into(), bridge_conf.clone());
                }
                a.insert("heartbeat_timestamp".into(), json!(t));
                tx.put(Kind::Agent, a);
            }
            Ok(())
        })
        .await
}

/// What the hosts must realise together (`hosts::split` gives each its
/// share).
/// `host_address`: the host holds external networks' gateway addresses
/// (`network.external_host_address`).
pub fn desired(st: &State, host_address: bool) -> HostState {
    let mut h = HostState::default();
    for n in st.iter(Kind::Network) {
        let dhcp = st
            .subnets_of(s(n, "id"))
            .filter(|x| b(x, "enable_dhcp"))
            .map(|x| DhcpSubnet {
                cidr: s(x, "cidr").to_string(),
                gateway: x
                    .get("gateway_ip")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                dns_nameservers: arr(x, "dns_nameservers")
                    .iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect(),
                host_routes: arr(x, "host_routes")
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r["destination"].as_str()?.to_string(),
                            r["nexthop"].as_str()?.to_string(),
                        ))
                    })
                    .collect(),
            })
            .collect();
        h.networks.insert(
            s(n, "id").to_string(),
            NetSpec {
                id: s(n, "id").to_string(),
                network_type: s(n, "provider:network_type").to_string(),
                physical_network: n
                    .get("provider:physical_network")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                segmentation_id: n.get("provider:segmentation_id").and_then(Value::as_i64),
                mtu: n.get("mtu").and_then(Value::as_i64).unwrap_or(1500),
                dhcp_subnets: dhcp,
                host_addresses: if host_address && b(n, "router:external") {
                    st.subnets_of(s(n, "id"))
                        .filter(|x| x["ip_version"].as_i64() == Some(4))
                        .filter_map(|x| {
                            let c = Cidr::parse_loose(s(x, "cidr"))?;
                            Some(format!("{}/{}", x["gateway_ip"].as_str()?, c.len))
                        })
                        .collect()
                } else {
                    Vec::new()
                },
                tunnel_peers: Vec::new(),
            },
        );
    }
    // Each group's rules, and its members' addresses (fixed and allowed
    // pairs'), for rules naming it as their remote group.
    let mut group_rules: std::collections::HashMap<&str, Vec<&Obj>> = Default::default();
    for r in st.iter(Kind::SecurityGroupRule) {
        group_rules
            .entry(s(r, "security_group_id"))
            .or_default()
            .push(r);
    }
    let mut members: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in st.iter(Kind::Port) {
        for sg in arr(p, "security_groups").iter().filter_map(Value::as_str) {
            let m = members.entry(sg.to_string()).or_default();
            m.extend(
                arr(p, "fixed_ips")
                    .iter()
                    .filter_map(|f| f["ip_address"].as_str().map(str::to_string)),
            );
            m.extend(
                arr(p, "allowed_address_pairs")
                    .iter()
                    .filter_map(|a| a["ip_address"].as_str().map(str::to_string)),
            );
        }
    }
    for p in st.iter(Kind::Port) {
        let owner = s(p, "device_owner");
        let bound = !s(p, "binding:host_id").is_empty() || owner.starts_with("network:");
        if !bound || owner == "network:floatingip" {
            continue;
        }
        let mut rules = Vec::new();
        for sg in arr(p, "security_groups").iter().filter_map(Value::as_str) {
            for r in group_rules.get(sg).into_iter().flatten() {
                rules.push(Value::Object((*r).clone()));
            }
        }
        expand_remote_groups(&mut rules, &members);
        h.ports.insert(
            s(p, "id").to_string(),
            PortSpec {
                id: s(p, "id").to_string(),
                network_id: s(p, "network_id").to_string(),
                mac: s(p, "mac_address").to_string(),
                ips: arr(p, "fixed_ips")
                    .iter()
                    .filter_map(|f| f["ip_address"].as_str().map(str::to_string))
                    .collect(),
                device_owner: owner.to_string(),
                device_id: s(p, "device_id").to_string(),
                admin_up: b(p, "admin_state_up"),
                port_security: b(p, "port_security_enabled"),
                rules,
                allowed_address_pairs: arr(p, "allowed_address_pairs").to_vec(),
                extra_dhcp_opts: arr(p, "extra_dhcp_opts")
                    .iter()
                    .filter_map(|o| {
                        Some(DhcpOpt {
                            name: o["opt_name"].as_str()?.to_string(),
                            value: o["opt_value"].as_str()?.to_string(),
                            ip_version: o["ip_version"].as_u64().unwrap_or(4) as u8,
                        })
                    })
                    .collect(),
                elsewhere: false,
            },
        );
    }
    let with_prefix = |st: &State, f: &Value| -> Option<String> {
        let sub = st.get(Kind::Subnet, f["subnet_id"].as_str()?)?;
        let c = Cidr::parse_loose(s(sub, "cidr"))?;
        Some(format!("{}/{}", f["ip_address"].as_str()?, c.len))
    };
    for r in st.iter(Kind::Router) {
        let rid = s(r, "id");
        let mut spec = RouterSpec {
            id: rid.to_string(),
            admin_up: b(r, "admin_state_up"),
            ..Default::default()
        };
        if let Some(g) = r.get("external_gateway_info").and_then(Value::as_object) {
            let ips = g
                .get("external_fixed_ips")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|f| with_prefix(st, f)).collect())
                .unwrap_or_default();
            spec.gateway = Some((s(g, "network_id").to_string(), ips));
            spec.enable_snat = g
                .get("enable_snat")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            spec.gateway_nexthops = st
                .subnets_of(s(g, "network_id"))
                .filter(|x| x["ip_version"].as_i64() == Some(4))
                .filter_map(|x| x["gateway_ip"].as_str().map(str::to_string))
                .collect();
        }
        for p in st.iter(Kind::Port) {
            if s(p, "device_id") == rid && s(p, "device_owner") == "network:router_interface" {
                for f in arr(p, "fixed_ips") {
                    if let Some(a) = with_prefix(st, f) {
                        spec.interfaces.push((s(p, "network_id").to_string(), a));
                    }
                }
            }
        }
        for rt in arr(r, "routes") {
            spec.routes.push((
                rt["destination"].as_str().unwrap_or("").to_string(),
                rt["nexthop"].as_str().unwrap_or("").to_string(),
            ));
        }
        for f in st.iter(Kind::FloatingIp) {
            if s(f, "router_id") == rid && !s(f, "port_id").is_empty() {
                spec.floating_ips.push((
                    s(f, "floating_ip_address").to_string(),
                    s(f, "fixed_ip_address").to_string(),
                ));
            }
        }
        h.routers.insert(rid.to_string(), spec);
    }
    h
}

/// Offers each host its share of the desired state (DHCP and routers of
/// hosts found dead moved first), then records port (and floating IP)
/// status from what the hosts last reported up. `force`: hosts get their
/// share even if it did not change.
pub async fn converge(svc: &NetworkService, force: bool) -> Result<(), String> {
    let mut st = svc.store.read();
    let shares = if svc.hostnet.per_host() {
        let hosts =
            crate::hosts::live_hosts(&st, svc.cfg.network.agent_down_time, chrono::Utc::now());
        let moves = crate::hosts::reschedule(&st, &hosts);
        if !moves.is_empty() {
            svc.store
                .write(|tx| {
                    crate::hosts::record_moves(tx, &moves);
                    Ok(())
                })
                .await
                .map_err(|e| e.message)?;
            st = svc.store.read();
        }
        let want = desired(&st, svc.cfg.network.external_host_address);
        let shares = crate::hosts::split(&want, &st, &hosts);
        (want, shares)
    } else {
        let stale = crate::hosts::stale_bindings(&st);
        if !stale.is_empty() {
            svc.store
                .write(|tx| {
                    crate::hosts::record_moves(tx, &stale);
                    Ok(())
                })
                .await
                .map_err(|e| e.message)?;
            st = svc.store.read();
        }
        let mut want = desired(&st, svc.cfg.network.external_host_address);
        crate::hosts::drop_unscheduled(&mut want, &st);
        let shares = std::collections::BTreeMap::from([(svc.host.clone(), want.clone())]);
        (want, shares)
    };
    let (want, shares) = shares;
    let up = svc
        .workers
        .offer(&svc.hostnet, shares, force, svc.changed.clone());
    let needs = |st: &State| -> bool {
        let routers = routers_up(st, &want, &up);
        st.iter(Kind::Port)
            .any(|p| port_status(p, &want, &up) != s(p, "status"))
            || st
                .iter(Kind::FloatingIp)
                .any(|f| fip_status(f, &routers) != s(f, "status"))
    };
    if !needs(&st) {
        return Ok(());
    }
    drop(st);
    let mut events = Vec::new();
    svc.store
        .write(|tx| {
            events.clear();
            let ports: Vec<Arc<Obj>> = tx.st.iter(Kind::Port).cloned().collect();
            for p in ports {
                let want_s = port_status(&p, &want, &up);
                let was = s(&p, "status");
                if want_s != was {
                    if let Some(e) = vif_event(&p, was, want_s) {
                        events.push(e);
                    }
                    let mut o = (*p).clone();
                    o.insert("status".into(), json!(want_s));
                    tx.put(Kind::Port, o);
                }
            }
            let routers = routers_up(&tx.st, &want, &up);
            let fips: Vec<Arc<Obj>> = tx.st.iter(Kind::FloatingIp).cloned().collect();
            for f in fips {
                let want_s = fip_status(&f, &routers);
                if want_s != s(&f, "status") {
                    let mut o = (*f).clone();
                    o.insert("status".into(), json!(want_s));
                    tx.put(Kind::FloatingIp, o);
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| e.message)?;
    if !events.is_empty()
        && let Some(c) = svc.compute()
    {
        c.vif_events(events).await;
    }
    Ok(())
}

/// Neutron's Nova notifier: a server's port that became ACTIVE is
/// `network-vif-plugged`; one that was ACTIVE and is DOWN now,
/// `network-vif-unplugged`.
fn vif_event(p: &Obj, was: &str, now: &str) -> Option<crate::VifEvent> {
    let server = s(p, "device_id");
    if server.is_empty() || !s(p, "device_owner").starts_with("compute:") {
        return None;
    }
    let name = match (was, now) {
        (_, "ACTIVE") => "network-vif-plugged",
        ("ACTIVE", "DOWN") => "network-vif-unplugged",
        _ => return None,
    };
    Some(crate::VifEvent {
        name,
        server: server.to_string(),
        port: s(p, "id").to_string(),
    })
}

/// `remote_ips` of each rule with a remote group: its members' addresses
/// (what the host's firewall matches; the group itself is not its concern).
fn expand_remote_groups(
    rules: &mut [Value],
    members: &std::collections::BTreeMap<String, Vec<String>>,
) {
    for r in rules {
        if let Some(g) = r["remote_group_id"].as_str() {
            let ips = members.get(g).cloned().unwrap_or_default();
            r["remote_ips"] = Value::from(ips);
        }
    }
}

fn port_status(p: &Obj, want: &HostState, up: &std::collections::HashSet<String>) -> &'static str {
    if s(p, "device_owner") == "network:floatingip" {
        return "N/A";
    }
    let id = s(p, "id");
    if want.ports.contains_key(id) && up.contains(id) && b(p, "admin_state_up") {
        "ACTIVE"
    } else {
        "DOWN"
    }
}

/// The routers whose floating IPs are in place: administratively up, with
/// a gateway port its host reports wired (the NAT is loaded with it).
fn routers_up(
    st: &State,
    want: &HostState,
    up: &std::collections::HashSet<String>,
) -> std::collections::HashSet<String> {
    st.iter(Kind::Port)
        .filter(|p| s(p, "device_owner") == "network:router_gateway")
        .filter(|p| port_status(p, want, up) == "ACTIVE")
        .map(|p| s(p, "device_id").to_string())
        .filter(|r| {
            st.get(Kind::Router, r)
                .is_some_and(|r| b(r, "admin_state_up"))
        })
        .collect()
}

/// As the L3 agent reports it: ACTIVE once associated and in place on its
/// router's host, DOWN otherwise (disassociated, router down or without
/// its gateway wired).
fn fip_status(f: &Obj, routers_up: &std::collections::HashSet<String>) -> &'static str {
    if !s(f, "port_id").is_empty() && routers_up.contains(s(f, "router_id")) {
        "ACTIVE"
    } else {
        "DOWN"
    }
}
