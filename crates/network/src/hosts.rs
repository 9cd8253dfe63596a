//! Which host realises what, when a cloud has several: the hosts whose
//! network agents are alive; the host of each DHCP-served network and of
//! each router (Neutron's DHCP and L3 agent scheduling: a binding is kept
//! while its agent lives, and moved to the least loaded live agent when
//! it dies, as `allow_automatic_dhcp_failover` and
//! `allow_automatic_l3agent_failover` do); each host's share of the
//! desired state, with the tunnel endpoints of the other hosts on its
//! VXLAN networks (the Linux bridge agent's l2population); and one
//! convergence worker per host, so that a slow or dead agent delays only
//! its own host.
use crate::hostnet::{HostNet, HostState};
use crate::store::{Kind, Obj, State, b, s};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

/// A host's network agents as the Networking service last heard them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveHost {
    /// Its tunnel endpoint (`local_ip`), if it has one.
    pub tunnel_ip: Option<String>,
    /// Its DHCP agent takes networks, its L3 agent routers (alive and
    /// administratively up).
    pub dhcp: bool,
    pub l3: bool,
}

/// Whether an agent's last heartbeat is at most `down_time` seconds old.
pub fn alive(a: &Obj, down_time: u64, now: chrono::DateTime<chrono::Utc>) -> bool {
    chrono::DateTime::parse_from_rfc3339(s(a, "heartbeat_timestamp"))
        .is_ok_and(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds() <= down_time as i64)
}

/// The hosts whose Linux bridge agent is alive.
pub fn live_hosts(
    st: &State,
    down_time: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<String, LiveHost> {
    let mut bridge = BTreeSet::new();
    let mut hosts: BTreeMap<String, LiveHost> = BTreeMap::new();
    for a in st.iter(Kind::Agent).filter(|a| alive(a, down_time, now)) {
        let h = hosts.entry(s(a, "host").to_string()).or_default();
        match s(a, "agent_type") {
            "Linux bridge agent" => {
                bridge.insert(s(a, "host").to_string());
                h.tunnel_ip = a
                    .get("configurations")
                    .and_then(|c| c.get("tunneling_ip"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            "DHCP agent" => h.dhcp = b(a, "admin_state_up"),
            "L3 agent" => h.l3 = b(a, "admin_state_up"),
            _ => {}
        }
    }
    hosts.retain(|h, _| bridge.contains(h));
    hosts
}

pub fn dhcp_binding(network: &str) -> String {
    format!("dhcp:{network}")
}

pub fn l3_binding(router: &str) -> String {
    format!("l3:{router}")
}

/// The host a binding names.
pub fn bound_host<'a>(st: &'a State, binding: &str) -> Option<&'a str> {
    st.get(Kind::Binding, binding)
        .map(|o| s(o, "host"))
        .filter(|h| !h.is_empty())
}

/// Whether an admin took the binding off its agent (Neutron's
/// `remove_router_from_l3_agent` and `remove_network_from_dhcp_agent`):
/// the router or network stays unhosted, on no host, until an admin adds
/// it to an agent again (or, for a router, an update reschedules it).
pub fn unscheduled(st: &State, binding: &str) -> bool {
    st.get(Kind::Binding, binding)
        .is_some_and(|o| s(o, "host").is_empty())
}

/// The host whose agent hosts a binding, as the scheduler API shows it:
/// the recorded host; with no record, `own` (the one host of a data plane
/// that is not per host, which realises everything not unscheduled).
pub fn hosting<'a>(st: &'a State, binding: &str, own: Option<&'a str>) -> Option<&'a str> {
    match st.get(Kind::Binding, binding) {
        Some(o) => Some(s(o, "host")).filter(|h| !h.is_empty()),
        None => own,
    }
}

/// A network whose DHCP is served here (it has a DHCP port).
pub fn dhcp_served(st: &State, network: &str) -> bool {
    st.iter(Kind::Port)
        .any(|p| s(p, "device_owner") == "network:dhcp" && s(p, "network_id") == network)
}

/// The bindings whose network or router is gone, to remove.
pub fn stale_bindings(st: &State) -> Vec<(String, Option<String>)> {
    st.iter(Kind::Binding)
        .map(|o| s(o, "id"))
        .filter(|id| match id.split_once(':') {
            Some(("dhcp", n)) => st.get(Kind::Network, n).is_none(),
            Some(("l3", r)) => st.get(Kind::Router, r).is_none(),
            _ => true,
        })
        .map(|id| (id.to_string(), None))
        .collect()
}

/// Leaves out of a one-host desired state the routers and DHCP servers an
/// admin unscheduled, with their ports.
pub fn drop_unscheduled(want: &mut HostState, st: &State) {
    want.routers
        .retain(|id, _| !unscheduled(st, &l3_binding(id)));
    want.ports.retain(|_, p| match p.device_owner.as_str() {
        "network:dhcp" => !unscheduled(st, &dhcp_binding(&p.network_id)),
        "network:router_interface" | "network:router_gateway" => {
            !unscheduled(st, &l3_binding(&p.device_id))
        }
        _ => true,
    });
}

/// A router update reschedules a router an admin left unhosted (Neutron's
/// L3 notifier schedules unhosted routers on every router update).
pub fn reschedule_unhosted(tx: &mut crate::store::Tx, router: &str) {
    let b = l3_binding(router);
    if unscheduled(&tx.st, &b) {
        tx.del(Kind::Binding, &b);
    }
}

/// The bindings to write so that every network served by DHCP and every
/// router has a live host: `(binding, Some(host))` to set, `(binding,
/// None)` to remove (its network or router is gone). A binding whose host
/// is alive stays; one whose host died moves to the live host with the
/// fewest bindings of its kind; with no live host it stays as it is. An
/// unscheduled one stays unhosted.
pub fn reschedule(st: &State, hosts: &BTreeMap<String, LiveHost>) -> Vec<(String, Option<String>)> {
    let dhcp: BTreeSet<String> = st
        .iter(Kind::Port)
        .filter(|p| s(p, "device_owner") == "network:dhcp")
        .map(|p| dhcp_binding(s(p, "network_id")))
        .filter(|b| !unscheduled(st, b))
        .collect();
    let l3: BTreeSet<String> = st
        .iter(Kind::Router)
        .map(|r| l3_binding(s(r, "id")))
        .filter(|b| !unscheduled(st, b))
        .collect();
    let mut out = stale_bindings(st);
    for (wanted, can) in [
        (&dhcp, (|h: &LiveHost| h.dhcp) as fn(&LiveHost) -> bool),
        (&l3, |h: &LiveHost| h.l3),
    ] {
        let mut load: BTreeMap<&str, usize> = hosts
            .iter()
            .filter(|(_, h)| can(h))
            .map(|(n, _)| (n.as_str(), 0))
            .collect();
        for id in wanted {
            if let Some(n) = bound_host(st, id).and_then(|h| load.get_mut(h)) {
                *n += 1;
            }
        }
        for id in wanted {
            if bound_host(st, id).is_some_and(|h| load.contains_key(h)) {
                continue;
            }
            let Some((host, n)) = load.iter_mut().min_by_key(|(h, n)| (**n, **h)) else {
                continue;
            };
            *n += 1;
            out.push((id.clone(), Some(host.to_string())));
        }
    }
    out
}

/// Writes what `reschedule` decided.
pub fn record_moves(tx: &mut crate::store::Tx, moves: &[(String, Option<String>)]) {
    for (id, host) in moves {
        match host {
            Some(h) => {
                tracing::info!(binding = %id, host = %h, "scheduled");
                let mut o = Obj::new();
                o.insert("id".into(), Value::from(id.as_str()));
                o.insert("host".into(), Value::from(h.as_str()));
                tx.put(Kind::Binding, o);
            }
            None => tx.del(Kind::Binding, id),
        }
    }
}

/// Where a port is realised: a guest's port on the host it is bound to,
/// a DHCP port on its network's DHCP host, a router's port on the
/// router's host.
fn port_host<'a>(st: &'a State, p: &'a Obj) -> Option<&'a str> {
    match s(p, "device_owner") {
        "network:dhcp" => bound_host(st, &dhcp_binding(s(p, "network_id"))),
        "network:router_interface" | "network:router_gateway" => {
            bound_host(st, &l3_binding(s(p, "device_id")))
        }
        _ => Some(s(p, "binding:host_id")).filter(|h| !h.is_empty()),
    }
}

/// Each live host's share of `full`: its ports, their networks (a vxlan
/// network with the tunnel endpoints of the other hosts that have it),
/// and its routers.
pub fn split(
    full: &HostState,
    st: &State,
    hosts: &BTreeMap<String, LiveHost>,
) -> BTreeMap<String, HostState> {
    let mut shares: BTreeMap<String, HostState> = hosts
        .keys()
        .map(|h| (h.clone(), HostState::default()))
        .collect();
    for (id, spec) in &full.ports {
        let Some(host) = st.get(Kind::Port, id).and_then(|p| port_host(st, p)) else {
            continue;
        };
        if let Some(share) = shares.get_mut(host) {
            share.ports.insert(id.clone(), spec.clone());
        }
    }
    for (id, spec) in &full.routers {
        if let Some(share) = bound_host(st, &l3_binding(id)).and_then(|h| shares.get_mut(h)) {
            share.routers.insert(id.clone(), spec.clone());
        }
    }
    // Which hosts have each network.
    let mut on: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (host, share) in &shares {
        for p in share.ports.values() {
            on.entry(p.network_id.clone())
                .or_default()
                .insert(host.clone());
        }
    }
    // A network's DHCP host, and the hosts of the routers on it, know its
    // guests on the other hosts, for their leases and their metadata (as
    // Neutron's DHCP agent is given every port of its networks, and its
    // metadata agent answers the L3 agent's proxy for any of them).
    let mut routers_on: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in full.routers.values() {
        if let Some(h) = bound_host(st, &l3_binding(&r.id)) {
            for (net, _) in &r.interfaces {
                routers_on.entry(net.as_str()).or_default().insert(h);
            }
        }
    }
    for (id, spec) in full
        .ports
        .iter()
        .filter(|(_, p)| p.device_owner.starts_with("compute:"))
    {
        let here = st.get(Kind::Port, id).and_then(|p| port_host(st, p));
        let knowers = bound_host(st, &dhcp_binding(&spec.network_id))
            .into_iter()
            .chain(
                routers_on
                    .get(spec.network_id.as_str())
                    .into_iter()
                    .flatten()
                    .copied(),
            );
        for host in knowers.filter(|h| here != Some(*h)) {
            if let Some(share) = shares.get_mut(host) {
                let mut known = spec.clone();
                known.elsewhere = true;
                share.ports.insert(id.clone(), known);
            }
        }
    }
    for (host, share) in shares.iter_mut() {
        for (net, there) in &on {
            if !there.contains(host) {
                continue;
            }
            let Some(mut spec) = full.networks.get(net).cloned() else {
                continue;
            };
            if spec.network_type == "vxlan" {
                spec.tunnel_peers = there
                    .iter()
                    .filter(|h| *h != host)
                    .filter_map(|h| hosts.get(h).and_then(|l| l.tunnel_ip.clone()))
                    .collect();
                spec.tunnel_peers.sort();
                spec.tunnel_peers.dedup();
            }
            share.networks.insert(net.clone(), spec);
        }
    }
    shares
}

/// One host's convergence worker: applies the latest state offered to
/// it, one at a time, and keeps the ports its agent last reported up.
struct Worker {
    offered: tokio::sync::watch::Sender<Option<HostState>>,
    up: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The hosts' workers.
#[derive(Default)]
pub struct Workers {
    by_host: Mutex<BTreeMap<String, Worker>>,
}

impl Workers {
    /// Offers each host its share (`force`: even if unchanged, to repair
    /// drift), stops the workers of hosts that have none, and returns the
    /// ports that the hosts last reported up. `changed` is called when a
    /// host's ports up change (the service converges again then).
    pub fn offer(
        &self,
        hostnet: &Arc<dyn HostNet>,
        shares: BTreeMap<String, HostState>,
        force: bool,
        changed: Arc<tokio::sync::Notify>,
    ) -> HashSet<String> {
        let mut by_host = match self.by_host.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        by_host.retain(|h, _| shares.contains_key(h));
        let mut up = HashSet::new();
        for (host, share) in shares {
            let w = by_host
                .entry(host.clone())
                .or_insert_with(|| spawn(hostnet.clone(), host, changed.clone()));
            w.offered.send_if_modified(|cur| {
                if force || cur.as_ref() != Some(&share) {
                    *cur = Some(share);
                    true
                } else {
                    false
                }
            });
            if let Ok(u) = w.up.lock() {
                up.extend(u.iter().cloned());
            }
        }
        up
    }
}

impl Workers {
    /// What `host`'s agent says is up now (it saw a guest's tap come or
    /// go between convergences); whether that changed anything.
    pub fn reported(&self, host: &str, up: Vec<String>) -> bool {
        let by_host = match self.by_host.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let Some(w) = by_host.get(host) else {
            return false;
        };
        let up: HashSet<String> = up.into_iter().collect();
        match w.up.lock() {
            Ok(mut u) if *u != up => {
                *u = up;
                true
            }
            _ => false,
        }
    }
}

fn spawn(hostnet: Arc<dyn HostNet>, host: String, changed: Arc<tokio::sync::Notify>) -> Worker {
    let (offered, mut rx) = tokio::sync::watch::channel(None::<HostState>);
    let up = Arc::new(Mutex::new(HashSet::new()));
    let up2 = up.clone();
    let task = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let Some(state) = rx.borrow_and_update().clone() else {
                continue;
            };
            match hostnet.apply(&host, &state).await {
                Ok(now) => {
                    let now: HashSet<String> = now.into_iter().collect();
                    let differs = match up2.lock() {
                        Ok(mut u) if *u != now => {
                            *u = now;
                            true
                        }
                        _ => false,
                    };
                    if differs {
                        changed.notify_one();
                    }
                }
                Err(e) => tracing::warn!(%host, "host networking: {e}"),
            }
        }
    });
    Worker { offered, up, task }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::Obj;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    fn state(objs: Vec<(Kind, Value)>) -> State {
        let mut st = State::default();
        for (k, v) in objs {
            let o = obj(v);
            let id = s(&o, "id").to_string();
            st.set(k, id, Some(Arc::new(o)));
        }
        st
    }

    fn agents(host: &str, ip: &str, beat: &str) -> Vec<(Kind, Value)> {
        [
            ("Linux bridge agent", json!({"tunneling_ip": ip})),
            ("DHCP agent", json!({})),
            ("L3 agent", json!({})),
        ]
        .into_iter()
        .map(|(t, c)| {
            (
                Kind::Agent,
                json!({"id": format!("{host}-{t}"), "host": host, "agent_type": t,
                       "admin_state_up": true, "heartbeat_timestamp": beat,
                       "configurations": c}),
            )
        })
        .collect()
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn dead_hosts_lose_their_networks_and_routers_to_the_least_loaded_live_host() {
        let mut objs = agents("a", "10.0.0.1", "2026-12-07T09:59:58Z");
        objs.extend(agents("b", "10.0.0.2", "2026-12-07T09:58:00Z")); // dead
        objs.extend(agents("c", "10.0.0.3", "2026-12-07T09:59:59Z"));
        for n in ["n1", "n2", "n3", "n4"] {
            objs.push((Kind::Network, json!({"id": n})));
            objs.push((
                Kind::Port,
                json!({"id": format!("dhcp-{n}"), "network_id": n, "device_owner": "network:dhcp"}),
            ));
        }
        // An admin took n4 and r2 off their agents: they stay unhosted.
        objs.push((Kind::Binding, json!({"id": "dhcp:n4", "host": ""})));
        objs.push((Kind::Router, json!({"id": "r2"})));
        objs.push((Kind::Binding, json!({"id": "l3:r2", "host": ""})));
        objs.push((Kind::Router, json!({"id": "r1"})));
        objs.push((Kind::Binding, json!({"id": "dhcp:n1", "host": "a"})));
        objs.push((Kind::Binding, json!({"id": "dhcp:n2", "host": "b"})));
        objs.push((Kind::Binding, json!({"id": "dhcp:gone", "host": "a"})));
        objs.push((Kind::Binding, json!({"id": "l3:r1", "host": "b"})));
        let st = state(objs);
        let hosts = live_hosts(&st, 75, now());
        assert_eq!(hosts.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(hosts["a"].tunnel_ip.as_deref(), Some("10.0.0.1"));
        let mut moves = reschedule(&st, &hosts);
        moves.sort();
        assert_eq!(
            moves,
            vec![
                ("dhcp:gone".to_string(), None),
                // n1 stays on a; n2's host died: c has none; then n3 goes
                // to a or c, whichever has fewer (a and c have one each: a).
                ("dhcp:n2".to_string(), Some("c".to_string())),
                ("dhcp:n3".to_string(), Some("a".to_string())),
                ("l3:r1".to_string(), Some("a".to_string())),
            ]
        );
        // No live host: nothing moves.
        assert!(
            reschedule(&st, &BTreeMap::new())
                .iter()
                .all(|(_, h)| h.is_none())
        );
    }

    #[test]
    fn each_host_gets_its_ports_and_the_tunnel_endpoints_of_the_others_on_its_networks() {
        use crate::hostnet::{NetSpec, PortSpec, RouterSpec};
        let mut objs = agents("a", "10.0.0.1", "2026-12-07T09:59:58Z");
        objs.extend(agents("b", "10.0.0.2", "2026-12-07T09:59:58Z"));
        objs.extend(agents("c", "10.0.0.3", "2026-12-07T09:59:58Z"));
        let ports = [
            ("pa", "vx", "compute:nova", "a", ""),
            ("pb", "vx", "compute:nova", "b", ""),
            ("pd", "vx", "network:dhcp", "", ""),
            ("pc", "other", "compute:nova", "c", ""),
            ("pr", "vx", "network:router_interface", "", "r1"),
            ("pnowhere", "vx", "compute:nova", "dead-host", ""),
        ];
        let mut full = HostState::default();
        for (id, net, owner, host, dev) in ports {
            objs.push((
                Kind::Port,
                json!({"id": id, "network_id": net, "device_owner": owner,
                       "binding:host_id": host, "device_id": dev}),
            ));
            full.ports.insert(
                id.into(),
                PortSpec {
                    id: id.into(),
                    network_id: net.into(),
                    device_owner: owner.into(),
                    ..Default::default()
                },
            );
        }
        for (n, t) in [("vx", "vxlan"), ("other", "vxlan")] {
            full.networks.insert(
                n.into(),
                NetSpec {
                    id: n.into(),
                    network_type: t.into(),
                    ..Default::default()
                },
            );
        }
        full.routers.insert(
            "r1".into(),
            RouterSpec {
                id: "r1".into(),
                interfaces: vec![("vx".into(), "10.9.0.1/24".into())],
                ..Default::default()
            },
        );
        objs.push((Kind::Binding, json!({"id": "dhcp:vx", "host": "c"})));
        objs.push((Kind::Binding, json!({"id": "l3:r1", "host": "a"})));
        let st = state(objs);
        let shares = split(&full, &st, &live_hosts(&st, 75, now()));
        let keys = |h: &str| shares[h].ports.keys().cloned().collect::<Vec<_>>();
        // a hosts r1, on vx: it knows vx's guests elsewhere too (for the
        // metadata its router proxies).
        assert_eq!(keys("a"), ["pa", "pb", "pnowhere", "pr"]);
        assert_eq!(keys("b"), ["pb"]);
        // c hosts vx's DHCP: it knows vx's guests elsewhere (and the one
        // whose host is dead), without wiring them.
        assert_eq!(keys("c"), ["pa", "pb", "pc", "pd", "pnowhere"]);
        let elsewhere = |h: &str| {
            shares[h]
                .ports
                .values()
                .filter(|p| p.elsewhere)
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(elsewhere("c"), ["pa", "pb", "pnowhere"]);
        assert_eq!(elsewhere("a"), ["pb", "pnowhere"]);
        assert!(elsewhere("b").is_empty());
        assert_eq!(shares["a"].routers.keys().collect::<Vec<_>>(), ["r1"]);
        assert!(shares["b"].routers.is_empty());
        assert_eq!(
            shares["a"].networks["vx"].tunnel_peers,
            ["10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(
            shares["b"].networks["vx"].tunnel_peers,
            ["10.0.0.1", "10.0.0.3"]
        );
        // `other` has ports on c only: no peers, and a and b do not have it.
        assert!(shares["c"].networks["other"].tunnel_peers.is_empty());
        assert!(!shares["a"].networks.contains_key("other"));
    }
}
