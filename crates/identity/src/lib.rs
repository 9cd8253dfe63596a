//! The Identity service (Keystone v3): resources, Fernet tokens, catalog,
//! and the token validator every other service uses.
//!
//! Layering: `http/*` parses requests and renders Keystone's JSON; the
//! `IdentityService` methods decide (policy, validation, revocation); the
//! sea-orm entities in `ferro-db` persist.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod bootstrap;
pub mod compliance;
pub mod error;
pub mod http;
pub mod policy_defaults;
pub mod resolve;
pub mod tokens;
pub mod util;
pub mod views;

use ferro_auth::fernet_keys::{self, FernetKeys};
use ferro_auth::{Policy, ValidatedToken};
use ferro_common::Error;
use ferro_config::Config;
use ferro_db::Db;
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub use tokens::RevocationList;

/// How often the Fernet key repository is re-read.
pub const KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(30);

/// A cached value: the identity generation and time it was computed at.
pub(crate) type Cached<T> = (u64, Instant, T);

/// A validated token kept for reuse until identity data changes.
pub(crate) struct CachedToken {
    pub generation: u64,
    pub at: Instant,
    pub token: Arc<ValidatedToken>,
}

pub struct IdentityService {
    pub db: Db,
    pub cfg: Config,
    pub policy: Policy,
    /// `<public_url>/identity`: the identity endpoint and links base.
    pub base_url: String,
    pub key_repo: PathBuf,
    keys: RwLock<(Instant, Arc<FernetKeys>)>,
    cred_keys: Arc<FernetKeys>,
    /// Bumped by every identity write; cached tokens and scopes from an
    /// older generation are recomputed.
    generation: AtomicU64,
    token_cache: Mutex<HashMap<String, CachedToken>>,
    scope_cache: Mutex<HashMap<resolve::ScopeKey, Cached<Arc<resolve::ResolvedScope>>>>,
    project_cache: Mutex<
        HashMap<resolve::ProjectKey, Cached<Option<ferro_db::entity::identity::project::Model>>>,
    >,
    pub(crate) revocations: RwLock<Arc<RevocationList>>,
    /// The catalog, and per project the endpoints OS-EP-FILTER leaves it.
    catalog_cache: RwLock<Option<(u64, Instant, tokens::CatalogParts)>>,
}

impl IdentityService {
    /// Opens the service over a migrated database and an existing key repo.
    pub async fn new(db: Db, cfg: Config, policy: Policy) -> Result<Arc<IdentityService>, Error> {
        let key_repo = cfg.key_repository();
        fernet_keys::setup(&key_repo).map_err(Error::internal)?;
        let keys = fernet_keys::load(&key_repo).map_err(Error::internal)?;
        let cred_dir = cfg.data_dir().join("credential-keys");
        fernet_keys::setup(&cred_dir).map_err(Error::internal)?;
        let cred_keys = fernet_keys::load(&cred_dir).map_err(Error::internal)?;
        let base_url = format!("{}/identity", cfg.public_url());
        let _ = error::AUTH_URI.set(base_url.clone());
        let svc = Arc::new(IdentityService {
            db,
            cfg,
            policy,
            base_url,
            key_repo,
            keys: RwLock::new((Instant::now(), Arc::new(keys))),
            cred_keys: Arc::new(cred_keys),
            generation: AtomicU64::new(1),
            token_cache: Mutex::new(HashMap::new()),
            scope_cache: Mutex::new(HashMap::new()),
            project_cache: Mutex::new(HashMap::new()),
            revocations: RwLock::new(Arc::new(RevocationList::default())),
            catalog_cache: RwLock::new(None),
        });
        svc.reload_revocations().await?;
        Ok(svc)
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.db.conn
    }

    pub fn v3_url(&self) -> String {
        format!("{}/v3", self.base_url)
    }

    /// The key set; re-read from the repository at most every `KEY_RELOAD`
    /// so `ferrostack fernet rotate` (or a tool copying keys between
    /// controllers) takes effect without a restart.
    pub fn keys(&self) -> Arc<FernetKeys> {
        let (at, keys) = match self.keys.read() {
            Ok(k) => (k.0, k.1.clone()),
            Err(p) => {
                let k = p.into_inner();
                (k.0, k.1.clone())
            }
        };
        if at.elapsed() > KEY_RELOAD {
            if let Err(e) = self.reload_keys() {
                tracing::warn!(error = %e.log_message(), "keeping the loaded Fernet keys");
                if let Ok(mut k) = self.keys.write() {
                    k.0 = Instant::now();
                }
            }
            return self.keys.read().map(|k| k.1.clone()).unwrap_or(keys);
        }
        keys
    }

    /// Re-reads the key repository.
    pub fn reload_keys(&self) -> Result<(), Error> {
        let keys = fernet_keys::load(&self.key_repo).map_err(Error::internal)?;
        if let Ok(mut k) = self.keys.write() {
            *k = (Instant::now(), Arc::new(keys));
        }
        Ok(())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Call after every identity write: cached validations are recomputed.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn cache_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.cfg.token.cache_time)
    }
}
