//! The Block Storage service (Cinder v3) at `/volume/v3`: volumes,
//! snapshots, volume types with extra specs and access lists, QoS specs,
//! quotas and limits, availability zones, services and the attachments
//! API Nova drives. Backend work (create, clone, extend, snapshot, delete)
//! runs behind the `VolumeBackend` trait; the multi-step operations are
//! sagas that persist their progress and undo on failure.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod backend;
pub mod error;
pub mod flows;
pub mod http;
pub mod nova;
pub mod store;
pub mod views;

use error::{CResult, CinderError};
use ferro_auth::{RequestContext, TokenValidator};
use ferro_common::Error;
use ferro_config::Config;
use ferro_db::Db;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use store::{Kind, Obj, State, Store, s};

/// What Block Storage needs of the Image service itself: read an image
/// (create from image) and make or remove the record of a new one
/// (upload-to-image). The data moves between the volume agent's host and
/// the Image service directly.
#[async_trait::async_trait]
pub trait ImageApi: Send + Sync {
    async fn get(&self, token: &str, id: &str) -> Result<Option<Value>, Error>;
    async fn create(&self, token: &str, body: Value) -> Result<Value, Error>;
    async fn delete(&self, token: &str, id: &str) -> Result<(), Error>;
}

/// What Block Storage tells Compute: Nova's external events.
#[async_trait::async_trait]
pub trait ComputeApi: Send + Sync {
    /// The volume, attached to `server`, grew (`volume-extended`).
    async fn volume_extended(&self, server: &str, volume_id: &str) -> Result<(), Error>;
    /// Nova's `get_server_volume`: the Block Storage attachment by which
    /// `server` holds `volume_id` (empty if it keeps none), or None when
    /// the server, or the volume on it, is not found.
    async fn server_volume_attachment(
        &self,
        server: &str,
        volume_id: &str,
    ) -> Result<Option<String>, Error>;
    /// A point-in-time copy of the volume attached to `server`, made by
    /// its host's hypervisor into `new_file` (Nova's assisted volume
    /// snapshot, for file volumes the running guest holds open); waits
    /// for the copy.
    async fn snapshot_attached(
        &self,
        server: &str,
        volume_id: &str,
        snapshot_id: &str,
        new_file: &Path,
        format: &str,
    ) -> Result<(), Error>;
}

/// No Image service: creating from an image is refused.
pub struct NoImages;

#[async_trait::async_trait]
impl ImageApi for NoImages {
    async fn get(&self, _: &str, _: &str) -> Result<Option<Value>, Error> {
        Ok(None)
    }
    async fn create(&self, _: &str, _: Value) -> Result<Value, Error> {
        Err(Error::validation("no Image service"))
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Where a project's default volume type (3.62) is kept.
pub fn project_default_key(project: &str) -> String {
    format!("default_type:{project}")
}

pub struct VolumeService {
    pub db: Db,
    pub cfg: Config,
    pub validator: Arc<dyn TokenValidator>,
    pub store: Store,
    pub backend: Arc<dyn backend::VolumeBackend>,
    pub images: Arc<dyn ImageApi>,
    /// `<public_url>/volume`
    pub base_url: String,
    /// `host@backend` as `os-vol-host-attr:host` shows it (before `#pool`).
    pub host: String,
    pub(crate) sagas: OnceLock<ferro_saga::Executor<flows::Ctx>>,
    /// Compute, once it runs (it starts after Block Storage).
    compute: OnceLock<Arc<dyn ComputeApi>>,
    started: std::time::Instant,
}

impl VolumeService {
    pub async fn start(
        db: Db,
        cfg: Config,
        validator: Arc<dyn TokenValidator>,
        backend: Arc<dyn backend::VolumeBackend>,
        images: Arc<dyn ImageApi>,
    ) -> Result<Arc<Self>, Error> {
        let store = Store::load(&db).await?;
        let host = format!("{}@{}", cfg.compute.host_name(), backend.name());
        let svc = Arc::new(VolumeService {
            base_url: format!("{}/volume", cfg.public_url()),
            db,
            cfg,
            validator,
            store,
            backend,
            images,
            host,
            sagas: OnceLock::new(),
            compute: OnceLock::new(),
            started: std::time::Instant::now(),
        });
        let _ = svc.sagas.set(flows::executor(svc.clone()));
        svc.ensure_default_type().await?;
        http::groups::ensure_default_group_type(&svc).await?;
        Ok(svc)
    }

    /// Resumes or unwinds the sagas a crash interrupted, then settles
    /// records left in a transitional status with no saga behind them.
    pub async fn recover(self: &Arc<Self>) -> Result<(), Error> {
        flows::recover(self).await?;
        http::groups::recover(self);
        Ok(())
    }

    /// The backend-qualified host of a volume: `host@backend#pool`.
    pub fn pool_host(&self) -> String {
        format!("{}#{}", self.host, self.backend.name())
    }

    /// Capacity for the pool stats: the backend's total, and as free what
    /// is left of it after every volume and snapshot this service records
    /// (thin files promise their full size), never more than the backend
    /// physically has.
    pub async fn capacity(&self) -> backend::Capacity {
        let (total, free) = self.headroom().await;
        backend::Capacity {
            total_gb: total,
            free_gb: free.max(0.0).floor(),
        }
    }

    /// (total, free) GiB as `capacity` computes them, free not clamped: it
    /// is negative once the records promise more than the backend has.
    pub async fn headroom(&self) -> (f64, f64) {
        let cap = self.backend.capacity().await;
        let st = self.store.read();
        let provisioned: i64 = st
            .iter(Kind::Volume)
            .map(|v| store::i(v, "size"))
            .chain(st.iter(Kind::Snapshot).map(|x| store::i(x, "size")))
            .sum();
        (
            cap.total_gb,
            (cap.total_gb - provisioned as f64).min(cap.free_gb),
        )
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    async fn ensure_default_type(&self) -> Result<(), Error> {
        let name = self.cfg.volume.default_volume_type.clone();
        if self.store.read().volume_type(&name).is_some() {
            return Ok(());
        }
        let backend = self.backend.name().to_string();
        self.store
            .write(|tx| {
                let mut t = Obj::new();
                t.insert("id".into(), json!(store::new_id()));
                t.insert("name".into(), json!(name));
                t.insert("description".into(), json!("Default Volume Type"));
                t.insert("is_public".into(), json!(true));
                t.insert(
                    "extra_specs".into(),
                    json!({"volume_backend_name": backend}),
                );
                t.insert("qos_specs_id".into(), Value::Null);
                t.insert("projects".into(), json!([]));
                t.insert("created_at".into(), json!(store::now()));
                tx.put(Kind::VolumeType, t);
                Ok(())
            })
            .await
            .map_err(|e| Error::internal(e.message))
    }

    /// The default volume type's document.
    /// Connects Compute, for the events attached volumes cause.
    pub fn set_compute(&self, c: Arc<dyn ComputeApi>) {
        let _ = self.compute.set(c);
    }

    pub(crate) fn compute(&self) -> Option<&Arc<dyn ComputeApi>> {
        self.compute.get()
    }

    /// The project's default type (3.62 `default-types`), else the configured one.
    pub fn default_type(&self, st: &State, project: &str) -> Option<Arc<Obj>> {
        st.get(Kind::Quota, &project_default_key(project))
            .and_then(|d| st.get(Kind::VolumeType, store::s(d, "volume_type_id")))
            .or_else(|| st.volume_type(&self.cfg.volume.default_volume_type))
            .cloned()
    }

    /// The configured default quota of `resource` (`volumes`, `gigabytes_<type>`...).
    pub fn default_quota(&self, resource: &str) -> i64 {
        let v = &self.cfg.volume;
        match resource {
            "volumes" => v.quota_volumes,
            "snapshots" => v.quota_snapshots,
            "gigabytes" => v.quota_gigabytes,
            "backups" => v.quota_backups,
            "backup_gigabytes" => v.quota_backup_gigabytes,
            "groups" => v.quota_groups,
            "per_volume_gigabytes" => v.per_volume_size_limit,
            _ => -1,
        }
    }

    pub fn quota_limit(&self, st: &State, project: &str, resource: &str) -> i64 {
        st.get(Kind::Quota, project)
            .and_then(|q| q.get(resource))
            .and_then(Value::as_i64)
            .or_else(|| {
                st.get(Kind::Quota, "class:default")
                    .and_then(|q| q.get(resource))
                    .and_then(Value::as_i64)
            })
            .unwrap_or_else(|| self.default_quota(resource))
    }

    /// Usage of `project`: volumes, gigabytes (volumes and snapshots),
    /// snapshots, and the same per volume type (`volumes_<type>`...).
    pub fn usage(&self, st: &State, project: &str) -> std::collections::BTreeMap<String, i64> {
        let mut u = std::collections::BTreeMap::new();
        for k in [
            "volumes",
            "gigabytes",
            "snapshots",
            "backups",
            "backup_gigabytes",
            "groups",
        ] {
            u.insert(k.to_string(), 0);
        }
        let mut add = |k: String, n: i64| *u.entry(k).or_insert(0) += n;
        for v in st
            .iter(Kind::Volume)
            .filter(|v| s(v, "project_id") == project)
        {
            let t = s(v, "volume_type");
            let size = store::i(v, "size");
            add("volumes".into(), 1);
            add("gigabytes".into(), size);
            add(format!("volumes_{t}"), 1);
            add(format!("gigabytes_{t}"), size);
        }
        for sn in st
            .iter(Kind::Snapshot)
            .filter(|x| s(x, "project_id") == project)
        {
            let t = st
                .get(Kind::Volume, s(sn, "volume_id"))
                .map(|v| s(v, "volume_type").to_string())
                .unwrap_or_default();
            let size = store::i(sn, "size");
            add("snapshots".into(), 1);
            add("gigabytes".into(), size);
            add(format!("snapshots_{t}"), 1);
            add(format!("gigabytes_{t}"), size);
        }
        u
    }

    /// 413 when `project` may not add `volumes`/`snapshots` and `gigabytes`
    /// of type `vtype`. Called inside the write that creates the record.
    pub fn check_quota(
        &self,
        st: &State,
        project: &str,
        vtype: &str,
        volumes: i64,
        snapshots: i64,
        gigabytes: i64,
    ) -> CResult<()> {
        let per = self.quota_limit(st, project, "per_volume_gigabytes");
        if volumes > 0 && per >= 0 && gigabytes > per {
            return Err(CinderError::over_quota(format!(
                "Requested volume size {gigabytes}G is larger than maximum allowed limit {per}G."
            )));
        }
        let u = self.usage(st, project);
        let used = |k: &str| u.get(k).copied().unwrap_or(0);
        let checks = [
            ("volumes".to_string(), volumes),
            ("snapshots".to_string(), snapshots),
            ("gigabytes".to_string(), gigabytes),
            (format!("volumes_{vtype}"), volumes),
            (format!("snapshots_{vtype}"), snapshots),
            (format!("gigabytes_{vtype}"), gigabytes),
        ];
        for (k, n) in checks {
            if n <= 0 {
                continue;
            }
            let limit = self.quota_limit(st, project, &k);
            if limit >= 0 && used(&k) + n > limit {
                let msg = if k.starts_with("gigabytes") {
                    format!(
                        "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed {k} quota. Requested {n}G, quota is {limit}G and {}G has been consumed.",
                        used(&k)
                    )
                } else {
                    format!(
                        "Maximum number of {} allowed ({limit}) exceeded for quota '{k}'.",
                        k.split('_').next().unwrap_or(&k)
                    )
                };
                return Err(CinderError::over_quota(msg));
            }
        }
        Ok(())
    }
}

/// The authenticated caller.
#[derive(Clone)]
pub struct Caller {
    pub ctx: RequestContext,
    pub admin: bool,
    pub project: String,
}

impl Caller {
    pub fn token(&self) -> &str {
        &self.ctx.auth_token
    }
    /// Whom a workflow started by this request acts for (kept in its
    /// saga state instead of the token).
    pub fn acting(&self) -> serde_json::Value {
        serde_json::to_value(ferro_auth::Acting::of(&self.ctx.token)).unwrap_or_default()
    }
    pub fn user(&self) -> &str {
        self.ctx.user_id()
    }
    /// Owner or admin.
    pub fn owns(&self, o: &Obj) -> bool {
        self.admin || s(o, "project_id") == self.project
    }
    pub fn require_admin(&self, action: &str) -> CResult<()> {
        if self.admin {
            Ok(())
        } else {
            Err(CinderError::forbidden(action))
        }
    }
    /// Whether the caller holds a role that may change things (not just `reader`).
    pub fn writer(&self) -> bool {
        self.admin || self.ctx.token.has_role("member")
    }
    pub fn require_writer(&self, action: &str) -> CResult<()> {
        if self.writer() {
            Ok(())
        } else {
            Err(CinderError::forbidden(action))
        }
    }
}
