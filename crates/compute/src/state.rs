//! Compute's in-memory state and its write-through persistence: readers
//! take a short read lock and never wait for I/O; writers are serialised,
//! compute their changes as records from the current state, persist them in
//! one transaction, and only then apply them (so a failed write changes nothing).
use crate::model::*;
use ferro_common::Error;
use ferro_db::Db;
use ferro_db::docs::DocOp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

/// Nova's timestamp style without microseconds (`2026-11-23T10:00:00Z`).
pub fn iso_z(ts: &str) -> String {
    let base = ts.split('.').next().unwrap_or(ts);
    format!("{base}Z")
}

#[derive(Default, Clone)]
pub struct State {
    pub flavors: BTreeMap<String, Flavor>,
    /// (user_id, name) -> keypair
    pub keypairs: BTreeMap<(String, String), Keypair>,
    /// Persistent maps: cloning the state for a write shares every
    /// unchanged instance instead of copying it.
    pub instances: imbl::HashMap<String, Instance>,
    pub groups: BTreeMap<String, ServerGroup>,
    pub aggregates: BTreeMap<u64, Aggregate>,
    pub services: BTreeMap<u64, ServiceRec>,
    /// instance uuid -> its actions, oldest first
    pub actions: imbl::HashMap<String, Vec<InstanceAction>>,
    pub migrations: BTreeMap<u64, Migration>,
    pub quotas: BTreeMap<String, ProjectQuota>,
    pub flavors_seeded: bool,
    pub seq: u64,
}

/// One change to persist and apply.
#[derive(Clone, Debug)]
pub enum Rec {
    Flavor(Flavor),
    DelFlavor(String),
    Keypair(Keypair),
    DelKeypair(String, String),
    Instance(Box<Instance>),
    /// Purges a (deleted) instance record and its actions.
    DelInstance(String),
    Group(ServerGroup),
    DelGroup(String),
    Aggregate(Aggregate),
    DelAggregate(u64),
    Service(ServiceRec),
    DelService(u64),
    Action(InstanceAction),
    Migration(Migration),
    Quota(ProjectQuota),
    DelQuota(String),
    Marker(String),
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl Rec {
    fn op(&self) -> DocOp {
        match self {
            Rec::Flavor(f) => DocOp::put("nova_flavor", &f.id, to_json(f)),
            Rec::DelFlavor(id) => DocOp::delete("nova_flavor", id),
            Rec::Keypair(k) => DocOp::put(
                "nova_keypair",
                format!("{}/{}", k.user_id, k.name),
                to_json(k),
            ),
            Rec::DelKeypair(u, n) => DocOp::delete("nova_keypair", format!("{u}/{n}")),
            Rec::Instance(i) => DocOp::put("nova_instance", &i.uuid, to_json(i.as_ref())),
            Rec::DelInstance(id) => DocOp::delete("nova_instance", id),
            Rec::Group(g) => DocOp::put("nova_group", &g.id, to_json(g)),
            Rec::DelGroup(id) => DocOp::delete("nova_group", id),
            Rec::Aggregate(a) => DocOp::put("nova_aggregate", a.id.to_string(), to_json(a)),
            Rec::DelAggregate(id) => DocOp::delete("nova_aggregate", id.to_string()),
            Rec::Service(s) => DocOp::put("nova_service", s.id.to_string(), to_json(s)),
            Rec::DelService(id) => DocOp::delete("nova_service", id.to_string()),
            Rec::Action(a) => DocOp::put(
                "nova_action",
                format!("{}/{}", a.instance_uuid, a.request_id),
                to_json(a),
            ),
            Rec::Migration(m) => DocOp::put("nova_migration", m.id.to_string(), to_json(m)),
            Rec::Quota(q) => DocOp::put("nova_quota", &q.project_id, to_json(q)),
            Rec::DelQuota(p) => DocOp::delete("nova_quota", p),
            Rec::Marker(m) => DocOp::put("nova_marker", m, serde_json::json!(true)),
        }
    }

    fn apply(self, st: &mut State) {
        match self {
            Rec::Flavor(f) => {
                st.flavors.insert(f.id.clone(), f);
            }
            Rec::DelFlavor(id) => {
                st.flavors.remove(&id);
            }
            Rec::Keypair(k) => {
                st.keypairs.insert((k.user_id.clone(), k.name.clone()), k);
            }
            Rec::DelKeypair(u, n) => {
                st.keypairs.remove(&(u, n));
            }
            Rec::Instance(i) => {
                st.seq = st.seq.max(i.seq);
                st.instances.insert(i.uuid.clone(), *i);
            }
            Rec::DelInstance(id) => {
                st.instances.remove(&id);
                st.actions.remove(&id);
            }
            Rec::Group(g) => {
                st.groups.insert(g.id.clone(), g);
            }
            Rec::DelGroup(id) => {
                st.groups.remove(&id);
            }
            Rec::Aggregate(a) => {
                st.aggregates.insert(a.id, a);
            }
            Rec::DelAggregate(id) => {
                st.aggregates.remove(&id);
            }
            Rec::Service(s) => {
                st.services.insert(s.id, s);
            }
            Rec::DelService(id) => {
                st.services.remove(&id);
            }
            Rec::Action(a) => {
                st.seq = st.seq.max(a.seq);
                let list = st.actions.entry(a.instance_uuid.clone()).or_default();
                match list.iter_mut().find(|x| x.request_id == a.request_id) {
                    Some(x) => *x = a,
                    None => list.push(a),
                }
            }
            Rec::Migration(m) => {
                st.migrations.insert(m.id, m);
            }
            Rec::Quota(q) => {
                st.quotas.insert(q.project_id.clone(), q);
            }
            Rec::DelQuota(p) => {
                st.quotas.remove(&p);
            }
            Rec::Marker(m) => {
                if m == "flavors_seeded" {
                    st.flavors_seeded = true;
                }
            }
        }
    }
}

impl State {
    /// A fresh sequence number (creation order), counting records not yet applied.
    pub fn next_seq(&self, pending: &[Rec]) -> u64 {
        self.seq + 1 + pending.len() as u64
    }
    pub fn next_service_id(&self, pending: &[Rec]) -> u64 {
        let pend = pending
            .iter()
            .filter_map(|r| match r {
                Rec::Service(s) => Some(s.id),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        self.services.keys().max().copied().unwrap_or(0).max(pend) + 1
    }
    /// Live (not deleted) instances.
    pub fn live(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values().filter(|i| !i.deleted)
    }
}

pub struct Store {
    db: Db,
    state: RwLock<Arc<State>>,
    writer: tokio::sync::Mutex<()>,
    /// host -> last heartbeat (not persisted: liveness is about this process's view)
    pub heartbeats: std::sync::Mutex<HashMap<String, Instant>>,
    /// Instances whose build saga runs in this process.
    pub active_builds: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Serialises scheduling decisions (select + claim).
    pub sched_lock: tokio::sync::Mutex<()>,
}

async fn load_kind<T: DeserializeOwned>(db: &Db, kind: &str) -> Result<Vec<T>, Error> {
    let mut out = Vec::new();
    for (id, v) in db.docs_load(kind).await? {
        out.push(
            serde_json::from_value(v).map_err(|e| ferro_db::docs::undecodable(kind, &id, &e))?,
        );
    }
    Ok(out)
}

impl Store {
    pub async fn load(db: &Db) -> Result<Store, Error> {
        let mut st = State::default();
        for f in load_kind::<Flavor>(db, "nova_flavor").await? {
            st.flavors.insert(f.id.clone(), f);
        }
        for k in load_kind::<Keypair>(db, "nova_keypair").await? {
            st.keypairs.insert((k.user_id.clone(), k.name.clone()), k);
        }
        for i in load_kind::<Instance>(db, "nova_instance").await? {
            st.seq = st.seq.max(i.seq);
            st.instances.insert(i.uuid.clone(), i);
        }
        for g in load_kind::<ServerGroup>(db, "nova_group").await? {
            st.groups.insert(g.id.clone(), g);
        }
        for a in load_kind::<Aggregate>(db, "nova_aggregate").await? {
            st.aggregates.insert(a.id, a);
        }
        for s in load_kind::<ServiceRec>(db, "nova_service").await? {
            st.services.insert(s.id, s);
        }
        for a in load_kind::<InstanceAction>(db, "nova_action").await? {
            st.seq = st.seq.max(a.seq);
            st.actions
                .entry(a.instance_uuid.clone())
                .or_default()
                .push(a);
        }
        for (_, list) in st.actions.iter_mut() {
            list.sort_by_key(|a| a.seq);
        }
        for m in load_kind::<Migration>(db, "nova_migration").await? {
            st.migrations.insert(m.id, m);
        }
        for q in load_kind::<ProjectQuota>(db, "nova_quota").await? {
            st.quotas.insert(q.project_id.clone(), q);
        }
        st.flavors_seeded = !db.docs_load("nova_marker").await?.is_empty();
        st.seq = st
            .seq
            .max(st.flavors.values().map(|f| f.seq).max().unwrap_or(0));
        Ok(Store {
            db: db.clone(),
            state: RwLock::new(Arc::new(st)),
            writer: tokio::sync::Mutex::new(()),
            heartbeats: std::sync::Mutex::new(HashMap::new()),
            active_builds: std::sync::Mutex::new(Default::default()),
            sched_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// A consistent snapshot for reading.
    pub fn read(&self) -> Arc<State> {
        match self.state.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Runs `f` on the current state; persists and applies the records it returns.
    pub async fn write<R>(
        &self,
        f: impl FnOnce(&State) -> Result<(R, Vec<Rec>), Error>,
    ) -> Result<R, Error> {
        let _w = self.writer.lock().await;
        let cur = self.read();
        let (r, recs) = f(&cur)?;
        if recs.is_empty() {
            return Ok(r);
        }
        self.db
            .docs_apply(recs.iter().map(Rec::op).collect())
            .await?;
        let mut next = (*cur).clone();
        for rec in recs {
            rec.apply(&mut next);
        }
        match self.state.write() {
            Ok(mut g) => *g = Arc::new(next),
            Err(p) => *p.into_inner() = Arc::new(next),
        }
        Ok(r)
    }

    /// Updates one instance with `f` (404 when gone).
    pub async fn update_instance(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut Instance) -> Result<(), Error>,
    ) -> Result<Instance, Error> {
        self.write(|st| {
            let mut i = st.instances.get(uuid).cloned().ok_or_else(|| {
                Error::not_found_msg(format!("Instance {uuid} could not be found."))
            })?;
            f(&mut i)?;
            i.updated_at = now();
            Ok((i.clone(), vec![Rec::Instance(Box::new(i))]))
        })
        .await
    }
}
