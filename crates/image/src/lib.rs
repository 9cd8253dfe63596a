//! The Image service (Glance v2): image records, streamed data with format
//! inspection and hashing, members, tags, interoperable import, schemas.
//! Layering as in identity: `http` parses and renders, `ImageService`
//! decides, the sea-orm entities persist, an `ImageStore` holds the bytes.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod http;
pub mod import;
pub mod inspect;
pub mod metadefs;
pub mod model;
pub mod s3;
pub mod schemas;
pub mod store;

use ferro_auth::{Policy, TokenValidator};
use ferro_common::Error;
use ferro_config::Config;
use ferro_db::Db;
use std::sync::Arc;
use store::ImageStore;

/// Glance's default rules (secure RBAC) for the checks expressed as policy.
pub fn default_policy() -> Result<Policy, ferro_auth::policy::ParseError> {
    Policy::from_defaults([
        ("context_is_admin", "role:admin"),
        ("default", "role:admin"),
        (
            "admin_or_owner_member",
            "rule:context_is_admin or (role:member and project_id:%(owner)s)",
        ),
        ("get_image", "rule:context_is_admin or role:reader"),
        ("get_images", "rule:context_is_admin or role:reader"),
        (
            "add_image",
            "rule:context_is_admin or (role:member and project_id:%(owner)s)",
        ),
        ("modify_image", "rule:admin_or_owner_member"),
        ("delete_image", "rule:admin_or_owner_member"),
        ("upload_image", "rule:admin_or_owner_member"),
        ("download_image", "rule:context_is_admin or role:member"),
        ("publicize_image", "rule:context_is_admin"),
        ("communitize_image", "rule:admin_or_owner_member"),
        ("deactivate", "rule:admin_or_owner_member"),
        ("reactivate", "rule:admin_or_owner_member"),
        ("add_member", "rule:admin_or_owner_member"),
        ("delete_member", "rule:admin_or_owner_member"),
        ("get_members", "rule:context_is_admin or role:reader"),
        (
            "modify_member",
            "rule:context_is_admin or (role:member and project_id:%(member_id)s)",
        ),
        ("set_image_owner", "rule:context_is_admin"),
        ("tasks_api_access", "rule:context_is_admin"),
        ("copy_image", "rule:context_is_admin"),
        ("delete_image_location", "rule:context_is_admin"),
        ("stores_info_detail", "rule:context_is_admin"),
        ("manage_metadefs", "rule:context_is_admin"),
        ("get_metadefs", "role:reader"),
    ])
}

/// Every listed image and membership, read once per image-write generation
/// (and at least every `SNAPSHOT_TTL`, for writes by other processes).
pub struct Snapshot {
    pub images: Vec<ferro_db::entity::image::image::Model>,
    pub members: Vec<ferro_db::entity::image::member::Model>,
}

pub const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// One configured store: Glance's backend id, its settings and the store.
pub struct Backend {
    pub id: String,
    pub cfg: ferro_config::ImageBackend,
    pub store: Arc<dyn ImageStore>,
}

pub struct ImageService {
    pub db: Db,
    generation: std::sync::atomic::AtomicU64,
    snapshot: std::sync::RwLock<Option<(u64, std::time::Instant, Arc<Snapshot>)>>,
    pub cfg: Config,
    pub policy: Policy,
    /// Every store, in id order (at least one).
    pub backends: Vec<Backend>,
    /// The default backend's id and store: where requests that name no store
    /// go, and where glance-direct data is staged.
    pub default_backend: String,
    pub store: Arc<dyn ImageStore>,
    pub validator: Arc<dyn TokenValidator>,
    /// `<public_url>/image`
    pub base_url: String,
}

impl ImageService {
    pub fn new(
        db: Db,
        cfg: Config,
        backends: Vec<Backend>,
        validator: Arc<dyn TokenValidator>,
    ) -> Result<Arc<Self>, Error> {
        let wanted = &cfg.image.default_backend;
        let default = backends
            .iter()
            .find(|b| wanted.is_empty() || &b.id == wanted)
            .ok_or_else(|| {
                Error::internal(format!(
                    "[image] default_backend {wanted:?} is not a configured store"
                ))
            })?;
        let (default_backend, store) = (default.id.clone(), default.store.clone());
        let mut policy = default_policy().map_err(Error::internal)?;
        if let Some(f) = &cfg.policy.file {
            // The same policy file may hold every service's rules; unknown names are ignored.
            let _ = policy.load_overrides(f);
        }
        let base_url = format!("{}/image", cfg.public_url());
        Ok(Arc::new(ImageService {
            db,
            generation: std::sync::atomic::AtomicU64::new(1),
            snapshot: std::sync::RwLock::new(None),
            cfg,
            policy,
            backends,
            default_backend,
            store,
            validator,
            base_url,
        }))
    }

    /// Call after every image or member write.
    pub fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The listing snapshot, re-read when stale.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        use ferro_db::entity::image::{image, member};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        if let Ok(s) = self.snapshot.read()
            && let Some((g, at, snap)) = s.as_ref()
            && *g == generation
            && at.elapsed() < SNAPSHOT_TTL
        {
            return Ok(snap.clone());
        }
        let images = image::Entity::find()
            .filter(image::Column::Status.is_not_in(["deleted", "killed"]))
            .order_by_desc(image::Column::CreatedAt)
            .all(&self.db.conn)
            .await
            .map_err(ferro_db::db_err)?;
        let members = member::Entity::find()
            .all(&self.db.conn)
            .await
            .map_err(ferro_db::db_err)?;
        let snap = Arc::new(Snapshot { images, members });
        if let Ok(mut s) = self.snapshot.write() {
            *s = Some((generation, std::time::Instant::now(), snap.clone()));
        }
        Ok(snap)
    }

    /// Copies in Glance's order: highest store weight first, then by id.
    pub fn ordered(&self, mut locs: Vec<model::Location>) -> Vec<model::Location> {
        let weight = |l: &model::Location| self.backend(&l.store).map_or(0, |b| b.cfg.weight);
        locs.sort_by(|a, b| {
            weight(b)
                .cmp(&weight(a))
                .then_with(|| a.store.cmp(&b.store))
        });
        locs
    }

    /// The backend with this id.
    pub fn backend(&self, id: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.id == id)
    }

    /// The stores `[image]` configures: `backends`, else the one store of
    /// `store` (`file` under the data dir by default).
    pub fn backends_from_config(cfg: &Config) -> Result<Vec<Backend>, Error> {
        cfg.image
            .stores(&cfg.data_dir())
            .into_iter()
            .map(|(id, b)| {
                let store = store_for(&id, &b)?;
                Ok(Backend { id, cfg: b, store })
            })
            .collect()
    }
}

fn store_for(id: &str, b: &ferro_config::ImageBackend) -> Result<Arc<dyn ImageStore>, Error> {
    match b.store.as_str() {
        "memory" => Ok(Arc::new(store::MemStore::default())),
        "file" => {
            let dir = b
                .filesystem_store_datadir
                .clone()
                .ok_or_else(|| Error::internal(format!("image store {id}: no directory")))?;
            Ok(Arc::new(store::FsStore::new(dir).map_err(Error::internal)?))
        }
        "s3" => {
            let need = |v: &Option<String>, k: &str| {
                v.clone()
                    .filter(|x| !x.is_empty())
                    .ok_or_else(|| Error::internal(format!("image store {id} (s3) needs {k}")))
            };
            let settings = s3::S3Settings {
                endpoint: need(&b.s3_store_host, "s3_store_host")?,
                bucket: need(&b.s3_store_bucket, "s3_store_bucket")?,
                region: b.s3_store_region.clone(),
                access_key: need(&b.s3_store_access_key, "s3_store_access_key")?,
                secret_key: need(&b.s3_store_secret_key, "s3_store_secret_key")?,
                prefix: b.s3_store_prefix.clone(),
            };
            Ok(Arc::new(
                s3::S3Store::new(&settings).map_err(Error::internal)?,
            ))
        }
        other => Err(Error::internal(format!(
            "image store {id}: unknown type {other:?} (file, s3, memory)"
        ))),
    }
}
