//! Block Storage state: every record (volume, snapshot, type, QoS spec,
//! attachment, quota override) is kept in memory as its JSON document and
//! written through to the document store. A write works on a copy of the
//! state (persistent maps share what does not change), so a request that
//! fails half-way changes nothing; its changes are persisted in one
//! transaction before they are published.
use crate::error::{CResult, CinderError};
use ferro_db::Db;
use ferro_db::docs::DocOp;
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};

pub type Obj = Map<String, Value>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Volume,
    Snapshot,
    VolumeType,
    Qos,
    Attachment,
    Quota,
    Transfer,
    Message,
    GroupType,
    Group,
    GroupSnapshot,
}

const KINDS: [Kind; 11] = [
    Kind::Volume,
    Kind::Snapshot,
    Kind::VolumeType,
    Kind::Qos,
    Kind::Attachment,
    Kind::Quota,
    Kind::Transfer,
    Kind::Message,
    Kind::GroupType,
    Kind::Group,
    Kind::GroupSnapshot,
];

impl Kind {
    fn doc_kind(self) -> &'static str {
        match self {
            Kind::Volume => "cinder_volume",
            Kind::Snapshot => "cinder_snapshot",
            Kind::VolumeType => "cinder_volume_type",
            Kind::Qos => "cinder_qos_specs",
            Kind::Attachment => "cinder_attachment",
            Kind::Quota => "cinder_quota",
            Kind::Transfer => "cinder_transfer",
            Kind::Message => "cinder_message",
            Kind::GroupType => "cinder_group_type",
            Kind::Group => "cinder_group",
            Kind::GroupSnapshot => "cinder_group_snapshot",
        }
    }
}

pub fn s<'a>(o: &'a Obj, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}
pub fn i(o: &Obj, k: &str) -> i64 {
    o.get(k).and_then(Value::as_i64).unwrap_or(0)
}
pub fn b(o: &Obj, k: &str) -> bool {
    o.get(k).and_then(Value::as_bool).unwrap_or(false)
}

type Table = imbl::OrdMap<String, Arc<Obj>>;

#[derive(Clone, Default)]
pub struct State {
    tables: [Table; 11],
}

impl State {
    pub fn get(&self, k: Kind, id: &str) -> Option<&Arc<Obj>> {
        self.tables[k as usize].get(id)
    }
    pub fn iter(&self, k: Kind) -> impl Iterator<Item = &Arc<Obj>> {
        self.tables[k as usize].values()
    }
    /// Snapshots of a volume.
    pub fn snapshots_of<'a>(&'a self, vol: &'a str) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        self.iter(Kind::Snapshot)
            .filter(move |x| s(x, "volume_id") == vol)
    }
    /// Attachments of a volume (any status).
    pub fn attachments_of<'a>(&'a self, vol: &'a str) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        self.iter(Kind::Attachment)
            .filter(move |x| s(x, "volume_id") == vol)
    }
    /// The type named or identified by `name_or_id`.
    pub fn volume_type(&self, name_or_id: &str) -> Option<&Arc<Obj>> {
        self.get(Kind::VolumeType, name_or_id).or_else(|| {
            self.iter(Kind::VolumeType)
                .find(|t| s(t, "name") == name_or_id)
        })
    }
}

/// A write in progress: a private copy of the state and what changed.
pub struct Tx {
    pub st: State,
    changed: Vec<(Kind, String)>,
}

impl Tx {
    pub fn get(&self, k: Kind, id: &str) -> Option<Obj> {
        self.st.get(k, id).map(|o| (**o).clone())
    }
    /// Inserts or replaces the document its `id` names.
    pub fn put(&mut self, k: Kind, o: Obj) {
        let id = s(&o, "id").to_string();
        self.put_id(k, &id, o);
    }
    pub fn put_id(&mut self, k: Kind, id: &str, o: Obj) {
        self.st.tables[k as usize].insert(id.to_string(), Arc::new(o));
        self.changed.push((k, id.to_string()));
    }
    pub fn del(&mut self, k: Kind, id: &str) {
        self.st.tables[k as usize].remove(id);
        self.changed.push((k, id.to_string()));
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
                    st.tables[k as usize].insert(id, Arc::new(o));
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

    /// Runs `f` on a copy of the state, persists what it changed in one
    /// transaction, then publishes the copy. On error nothing changes.
    pub async fn write<R>(&self, f: impl FnOnce(&mut Tx) -> CResult<R>) -> CResult<R> {
        let _w = self.writer.lock().await;
        let mut tx = Tx {
            st: (*self.read()).clone(),
            changed: Vec::new(),
        };
        let r = f(&mut tx)?;
        if tx.changed.is_empty() {
            return Ok(r);
        }
        let mut seen = std::collections::HashSet::new();
        let mut ops = Vec::new();
        for (k, id) in tx.changed.iter().rev() {
            if seen.insert((*k, id.as_str())) {
                ops.push(match tx.st.get(*k, id) {
                    Some(o) => DocOp::put(k.doc_kind(), id.clone(), Value::Object((**o).clone())),
                    None => DocOp::delete(k.doc_kind(), id.clone()),
                });
            }
        }
        self.db
            .docs_apply(ops)
            .await
            .map_err(|e| CinderError::internal(e.log_message()))?;
        match self.state.write() {
            Ok(mut g) => *g = Arc::new(tx.st),
            Err(p) => *p.into_inner() = Arc::new(tx.st),
        }
        Ok(r)
    }

    /// Changes one document if it exists (a status transition, say).
    pub async fn update(
        &self,
        k: Kind,
        id: &str,
        f: impl FnOnce(&mut Obj) -> CResult<()>,
    ) -> CResult<Obj> {
        self.write(|tx| {
            let mut o = tx
                .get(k, id)
                .ok_or_else(|| CinderError::not_found(format!("{id} could not be found.")))?;
            f(&mut o)?;
            o.insert("updated_at".into(), Value::from(now()));
            tx.put_id(k, id, o.clone());
            Ok(o)
        })
        .await
    }
}

/// Cinder's timestamp format (microseconds, no zone).
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
