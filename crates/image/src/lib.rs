//! The Image service (Glance v2): image records, streamed data with format
//! inspection and hashing, members, tags, interoperable import, schemas.
//! Layering as in identity: `http` parses and renders, `ImageService`
//! decides, the sea-orm entities persist, an `ImageStore` holds the bytes.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod http;
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

pub struct ImageService {
    pub db: Db,
    generation: std::sync::atomic::AtomicU64,
    snapshot: std::sync::RwLock<Option<(u64, std::time::Instant, Arc<Snapshot>)>>,
    pub cfg: Config,
    pub policy: Policy,
    pub store: Arc<dyn ImageStore>,
    pub validator: Arc<dyn TokenValidator>,
    /// `<public_url>/image`
    pub base_url: String,
}

impl ImageService {
    pub fn new(
        db: Db,
        cfg: Config,
        store: Arc<dyn ImageStore>,
        validator: Arc<dyn TokenValidator>,
    ) -> Result<Arc<Self>, Error> {
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

    /// The store configured by `[image] store` (`file` under the data dir by default).
    pub fn store_from_config(cfg: &Config) -> Result<Arc<dyn ImageStore>, Error> {
        match cfg.image.store.as_str() {
            "memory" => Ok(Arc::new(store::MemStore::default())),
            "file" => {
                let dir = cfg
                    .image
                    .filesystem_store_datadir
                    .clone()
                    .unwrap_or_else(|| cfg.data_dir().join("images"));
                Ok(Arc::new(store::FsStore::new(dir).map_err(Error::internal)?))
            }
            "s3" => {
                let i = &cfg.image;
                let need = |v: &Option<String>, k: &str| {
                    v.clone()
                        .filter(|x| !x.is_empty())
                        .ok_or_else(|| Error::internal(format!("[image] store = \"s3\" needs {k}")))
                };
                let settings = s3::S3Settings {
                    endpoint: need(&i.s3_store_host, "s3_store_host")?,
                    bucket: need(&i.s3_store_bucket, "s3_store_bucket")?,
                    region: i.s3_store_region.clone(),
                    access_key: need(&i.s3_store_access_key, "s3_store_access_key")?,
                    secret_key: need(&i.s3_store_secret_key, "s3_store_secret_key")?,
                    prefix: i.s3_store_prefix.clone(),
                };
                Ok(Arc::new(
                    s3::S3Store::new(&settings).map_err(Error::internal)?,
                ))
            }
            other => Err(Error::internal(format!(
                "unknown [image] store {other:?} (file, s3, memory)"
            ))),
        }
    }
}
