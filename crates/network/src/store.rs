//! Networking state: every resource is held in memory as its API document
//! (a JSON object), behind one writer, and written through to the document
//! store (docs/adr/0007). A write works on a copy of the state (persistent
//! maps: the copy shares everything it does not change), so a request that
//! fails half-way changes nothing; what it changed is persisted in one
//! transaction and only then published. IP allocation happens inside the
//! writer, so two requests can never be handed one address.
use crate::error::{NResult, NeutronError};
use crate::ipam;
use ferro_db::Db;
use ferro_db::docs::DocOp;
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};

pub type Obj = Map<String, Value>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Network,
    Subnet,
    Port,
    Router,
    FloatingIp,
    SecurityGroup,
    SecurityGroupRule,
    SubnetPool,
    AddressScope,
    Rbac,
    Quota,
    Agent,
    Segment,
    /// Where a network's DHCP (`dhcp:<network>`) or a router
    /// (`l3:<router>`) is hosted: `{"id", "host"}` (Neutron's DHCP and L3
    /// agent bindings).
    Binding,
}

pub const KINDS: [Kind; 14] = [
    Kind::Network,
    Kind::Subnet,
    Kind::Port,
    Kind::Router,
    Kind::FloatingIp,
    Kind::SecurityGroup,
    Kind::SecurityGroupRule,
    Kind::SubnetPool,
    Kind::AddressScope,
    Kind::Rbac,
    Kind::Quota,
    Kind::Agent,
    Kind::Segment,
    Kind::Binding,
];

impl Kind {
    pub fn doc_kind(self) -> &'static str {
        match self {
            Kind::Network => "neutron_network",
            Kind::Subnet => "neutron_subnet",
            Kind::Port => "neutron_port",
            Kind::Router => "neutron_router",
            Kind::FloatingIp => "neutron_floatingip",
            Kind::SecurityGroup => "neutron_security_group",
            Kind::SecurityGroupRule => "neutron_security_group_rule",
            Kind::SubnetPool => "neutron_subnetpool",
            Kind::AddressScope => "neutron_address_scope",
            Kind::Rbac => "neutron_rbac_policy",
            Kind::Quota => "neutron_quota",
            Kind::Agent => "neutron_agent",
            Kind::Segment => "neutron_segment",
            Kind::Binding => "neutron_binding",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
    /// The quota resource name counting this kind, if any.
    pub fn quota_name(self) -> Option<&'static str> {
        Some(match self {
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Port => "port",
            Kind::Router => "router",
            Kind::FloatingIp => "floatingip",
            Kind::SecurityGroup => "security_group",
            Kind::SecurityGroupRule => "security_group_rule",
            Kind::SubnetPool => "subnetpool",
            Kind::Rbac => "rbac_policy",
            _ => return None,
        })
    }
}

pub fn s<'a>(o: &'a Obj, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}
pub fn b(o: &Obj, k: &str) -> bool {
    o.get(k).and_then(Value::as_bool).unwrap_or(false)
}
pub fn arr<'a>(o: &'a Obj, k: &str) -> &'a [Value] {
    o.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Allocated addresses of one subnet, and where the next search starts.
#[derive(Clone, Default, Debug)]
pub struct SubnetIps {
    pub used: imbl::OrdSet<u128>,
    pub hint: u128,
}

#[derive(Clone, Default)]
pub struct State {
    tables: [imbl::OrdMap<String, Arc<Obj>>; 14],
    /// subnet id -> allocated addresses (derived from ports' fixed_ips)
    pub ips: imbl::HashMap<String, SubnetIps>,
    /// network id -> MAC addresses in use there
    pub macs: imbl::HashMap<String, imbl::HashSet<String>>,
    /// project id -> kind -> count (derived)
    pub counts: imbl::HashMap<(String, Kind), i64>,
}

impl State {
    pub fn table(&self, k: Kind) -> &imbl::OrdMap<String, Arc<Obj>> {
        &self.tables[k.idx()]
    }
    pub fn get(&self, k: Kind, id: &str) -> Option<&Arc<Obj>> {
        self.tables[k.idx()].get(id)
    }
    pub fn iter(&self, k: Kind) -> impl Iterator<Item = &Arc<Obj>> {
        self.tables[k.idx()].values()
    }
    pub fn count(&self, project: &str, k: Kind) -> i64 {
        self.counts
            .get(&(project.to_string(), k))
            .copied()
            .unwrap_or(0)
    }
    /// Ports of a network.
    pub fn ports_on<'a>(&'a self, net: &'a str) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        self.iter(Kind::Port)
            .filter(move |p| s(p, "network_id") == net)
    }
    pub fn subnets_of<'a>(&'a self, net: &'a str) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        self.iter(Kind::Subnet)
            .filter(move |p| s(p, "network_id") == net)
    }
    pub fn ip_used(&self, subnet: &str, ip: u128) -> bool {
        self.ips.get(subnet).is_some_and(|x| x.used.contains(&ip))
    }

    fn unindex(&mut self, k: Kind, o: &Obj) {
        let owner = s(o, "project_id").to_string();
        if k.quota_name().is_some() {
            let e = self.counts.entry((owner, k)).or_insert(0);
            *e -= 1;
        }
        if k == Kind::Port {
            for f in arr(o, "fixed_ips") {
                let (Some(sub), Some(ip)) = (f["subnet_id"].as_str(), f["ip_address"].as_str())
                else {
                    continue;
                };
                if let (Some(set), Some((_, n))) = (self.ips.get_mut(sub), ipam::parse_ip(ip)) {
                    set.used.remove(&n);
                }
            }
            if let Some(m) = self.macs.get_mut(s(o, "network_id")) {
                m.remove(s(o, "mac_address"));
            }
        }
    }
    fn index(&mut self, k: Kind, o: &Obj) {
        let owner = s(o, "project_id").to_string();
        if k.quota_name().is_some() {
            *self.counts.entry((owner, k)).or_insert(0) += 1;
        }
        if k == Kind::Port {
            for f in arr(o, "fixed_ips") {
                let (Some(sub), Some(ip)) = (f["subnet_id"].as_str(), f["ip_address"].as_str())
                else {
                    continue;
                };
                if let Some((_, n)) = ipam::parse_ip(ip) {
                    self.ips.entry(sub.to_string()).or_default().used.insert(n);
                }
            }
            self.macs
                .entry(s(o, "network_id").to_string())
                .or_default()
                .insert(s(o, "mac_address").to_string());
        }
    }
    pub(crate) fn set(&mut self, k: Kind, id: String, o: Option<Arc<Obj>>) {
        if let Some(old) = self.tables[k.idx()].remove(&id) {
            self.unindex(k, &old);
        }
        if let Some(o) = o {
            self.index(k, &o);
            self.tables[k.idx()].insert(id, o);
        }
    }
}

/// A write in progress: a private copy of the state and what changed.
pub struct Tx {
    pub st: State,
    changed: Vec<(Kind, String)>,
}

impl Tx {
    pub fn get(&self, k: Kind, id: &str) -> Option<Arc<Obj>> {
        self.st.get(k, id).cloned()
    }
    /// Inserts or replaces the document (its `id` names it).
    pub fn put(&mut self, k: Kind, o: Obj) {
        let id = s(&o, "id").to_string();
        self.st.set(k, id.clone(), Some(Arc::new(o)));
        self.changed.push((k, id));
    }
    pub fn put_id(&mut self, k: Kind, id: &str, o: Obj) {
        self.st.set(k, id.to_string(), Some(Arc::new(o)));
        self.changed.push((k, id.to_string()));
    }
    pub fn del(&mut self, k: Kind, id: &str) {
        self.st.set(k, id.to_string(), None);
        self.changed.push((k, id.to_string()));
    }
    pub fn hint(&mut self, subnet: &str, next: u128) {
        self.st.ips.entry(subnet.to_string()).or_default().hint = next;
    }
}

pub struct Store {
    db: Db,
    state: RwLock<Arc<State>>,
    writer: tokio::sync::Mutex<()>,
}

impl Store {
    pub async fn load(db: &Db) -> Result<Store, ferro_common::Error> {
        let mut st = State::default();
        for k in KINDS {
            for (id, v) in db.docs_load(k.doc_kind()).await? {
                if let Value::Object(o) = v {
                    st.set(k, id, Some(Arc::new(o)));
                }
            }
        }
        Ok(Store {
            db: db.clone(),
            state: RwLock::new(Arc::new(st)),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// A consistent snapshot for reading.
    pub fn read(&self) -> Arc<State> {
        match self.state.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Runs `f` on a copy of the state; persists what it changed in one
    /// transaction, then publishes the copy. On error nothing changes.
    pub async fn write<R>(&self, f: impl FnOnce(&mut Tx) -> NResult<R>) -> NResult<R> {
        let _w = self.writer.lock().await;
        let cur = self.read();
        let mut tx = Tx {
            st: (*cur).clone(),
            changed: Vec::new(),
        };
        let r = f(&mut tx)?;
        if tx.changed.is_empty() {
            return Ok(r);
        }
        let mut seen = std::collections::HashSet::new();
        let mut ops = Vec::new();
        for (k, id) in tx.changed.iter().rev() {
            if !seen.insert((*k, id.clone())) {
                continue;
            }
            ops.push(match tx.st.get(*k, id) {
                Some(o) => DocOp::put(k.doc_kind(), id.clone(), Value::Object((**o).clone())),
                None => DocOp::delete(k.doc_kind(), id.clone()),
            });
        }
        ops.reverse();
        self.db
            .docs_apply(ops)
            .await
            .map_err(|e| NeutronError::internal(e.log_message()))?;
        match self.state.write() {
            Ok(mut g) => *g = Arc::new(tx.st),
            Err(p) => *p.into_inner() = Arc::new(tx.st),
        }
        Ok(r)
    }
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Standard attributes of a new resource.
pub fn standard(o: &mut Obj, project: &str) {
    let t = now();
    o.insert("project_id".into(), Value::from(project));
    o.insert("tenant_id".into(), Value::from(project));
    o.insert("created_at".into(), Value::from(t.clone()));
    o.insert("updated_at".into(), Value::from(t));
    o.insert("revision_number".into(), Value::from(0));
    o.entry("tags").or_insert_with(|| Value::Array(vec![]));
    o.entry("description").or_insert_with(|| Value::from(""));
}

/// Bumps `revision_number` and `updated_at` after a change.
pub fn touch(o: &mut Obj) {
    let r = o
        .get("revision_number")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    o.insert("revision_number".into(), Value::from(r + 1));
    o.insert("updated_at".into(), Value::from(now()));
}
