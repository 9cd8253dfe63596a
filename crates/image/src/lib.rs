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

pub struct ImageService {
    pub db: Db,
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
            cfg,
            policy,
            store,
            validator,
            base_url,
        }))
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
            other => Err(Error::internal(format!(
                "unknown [image] store {other:?} (file, memory)"
            ))),
        }
    }
}
