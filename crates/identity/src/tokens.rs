//! Token issue, validation and revocation (Keystone's token provider, Fernet
//! formatter and revoke API). Validation is in-process: decrypt, check the
//! in-memory revocation list, and reuse resolved scope data until an identity
//! write (or `[token] cache_time` for writes made by other processes).

use crate::IdentityService;
use crate::resolve::ScopeKey;
use ferro_auth::token::{TokenPayload, TokenScope, new_audit_id};
use ferro_auth::{TokenValidator, ValidatedToken};
use ferro_common::Error;
use ferro_db::entity::identity::*;
use ferro_db::{db_err, micros_to_time, now_micros};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Instant;

/// A Keystone revocation event, kept in memory for the hot path.
#[derive(Clone, Debug, Default)]
pub struct RevEvent {
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    pub role_id: Option<String>,
    pub trust_id: Option<String>,
    pub audit_id: Option<String>,
    pub audit_chain_id: Option<String>,
    /// Seconds since the epoch (Keystone truncates to whole seconds).
    pub issued_before: i64,
}

#[derive(Debug, Default)]
pub struct RevocationList {
    pub events: Vec<RevEvent>,
    pub loaded_at: Option<Instant>,
}

impl RevocationList {
    pub fn is_revoked(&self, t: &ValidatedToken) -> bool {
        let issued = t.payload.issued_at.timestamp();
        let audit = t.payload.audit_ids.first();
        let chain = t.payload.audit_ids.last();
        self.events.iter().any(|e| {
            issued <= e.issued_before
                && e.user_id.as_ref().is_none_or(|u| {
                    *u == t.user.id
                        || t.trust
                            .as_ref()
                            .is_some_and(|tr| *u == tr.trustor_user_id || *u == tr.trustee_user_id)
                })
                && e.project_id
                    .as_ref()
                    .is_none_or(|p| t.project.as_ref().is_some_and(|x| x.id == *p))
                && e.domain_id.as_ref().is_none_or(|d| {
                    t.user.domain.id == *d
                        || t.project.as_ref().is_some_and(|x| x.domain.id == *d)
                        || t.domain.as_ref().is_some_and(|x| x.id == *d)
                })
                && e.role_id
                    .as_ref()
                    .is_none_or(|r| t.roles.iter().any(|x| x.id == *r))
                && e.trust_id
                    .as_ref()
                    .is_none_or(|tr| t.trust.as_ref().is_some_and(|x| x.id == *tr))
                && e.audit_id.as_ref().is_none_or(|a| audit == Some(a))
                && e.audit_chain_id.as_ref().is_none_or(|a| chain == Some(a))
        })
    }
}

/// What authenticated, before scoping.
pub struct AuthResult {
    pub user_id: String,
    pub default_project_id: Option<String>,
    pub methods: Vec<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub audit_parent: Option<String>,
    /// Token-method auth of a scoped token.
    pub app_cred: Option<app_cred::Model>,
    pub from_token: Option<Arc<ValidatedToken>>,
}

pub enum RequestedScope {
    None,
    Unscoped,
    Project(String),
    Domain(String),
    System,
    Trust(String),
}

fn not_found_token() -> Error {
    Error::not_found_msg("Could not find token.")
}

pub fn auth_failed() -> Error {
    Error::unauthorized("The request you have made requires authentication.")
}

/// The full catalog, and per project the ids of the endpoints OS-EP-FILTER
/// associates with it (projects without any are absent).
pub type CatalogParts = (
    Arc<Value>,
    Arc<std::collections::HashMap<String, std::collections::HashSet<String>>>,
);

impl IdentityService {
    pub async fn reload_revocations(&self) -> Result<(), Error> {
        let horizon = now_micros()
            - ((self.cfg.token.expiration + self.cfg.token.allow_expired_window) as i64 + 3600)
                * 1_000_000;
        let rows = revocation_event::Entity::find()
            .filter(revocation_event::Column::RevokedAt.gte(horizon))
            .all(self.conn())
            .await
            .map_err(db_err)?;
        let events = rows
            .into_iter()
            .map(|r| RevEvent {
                user_id: r.user_id,
                project_id: r.project_id,
                domain_id: r.domain_id,
                role_id: r.role_id,
                trust_id: r.trust_id,
                audit_id: r.audit_id,
                audit_chain_id: r.audit_chain_id,
                issued_before: r.issued_before / 1_000_000,
            })
            .collect();
        if let Ok(mut l) = self.revocations.write() {
            *l = Arc::new(RevocationList {
                events,
                loaded_at: Some(Instant::now()),
            });
        }
        Ok(())
    }

    fn revocations(&self) -> Arc<RevocationList> {
        self.revocations
            .read()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Persists a revocation event and applies it at once in this process.
    pub async fn revoke(&self, mut ev: RevEvent) -> Result<(), Error> {
        let now = now_micros();
        // Whole seconds, as Keystone, so a token issued in the same second
        // (Fernet timestamps have seconds precision) is revoked too.
        ev.issued_before = now / 1_000_000;
        revocation_event::ActiveModel {
            id: Set(ferro_common::new_hex_id()),
            domain_id: Set(ev.domain_id.clone()),
            project_id: Set(ev.project_id.clone()),
            user_id: Set(ev.user_id.clone()),
            role_id: Set(ev.role_id.clone()),
            trust_id: Set(ev.trust_id.clone()),
            consumer_id: Set(None),
            access_token_id: Set(None),
            issued_before: Set(ev.issued_before * 1_000_000),
            expires_at: Set(None),
            revoked_at: Set(now),
            audit_id: Set(ev.audit_id.clone()),
            audit_chain_id: Set(ev.audit_chain_id.clone()),
        }
        .insert(self.conn())
        .await
        .map_err(db_err)?;
        if let Ok(mut l) = self.revocations.write() {
            let mut events = l.events.clone();
            events.push(ev);
            *l = Arc::new(RevocationList {
                events,
                loaded_at: l.loaded_at,
            });
        }
        self.invalidate();
        Ok(())
    }

    /// Keeps the token cache bounded without stalling a request: a full map is
    /// swapped for an empty one and dropped on a blocking thread.
    fn make_room(&self, c: &mut std::collections::HashMap<String, crate::CachedToken>) {
        if c.len() >= 10_000 {
            let old = std::mem::take(c);
            tokio::task::spawn_blocking(move || drop(old));
        }
    }

    /// Validates a token. `Err(NotFound)` for anything invalid; callers turn
    /// it into 401 when it was the caller's own token.
    pub async fn validate_token(
        &self,
        token: &str,
        allow_expired: bool,
    ) -> Result<Arc<ValidatedToken>, Error> {
        // Pick up other processes' revocations within cache_time.
        let revs = self.revocations();
        if revs
            .loaded_at
            .is_none_or(|t| t.elapsed() > self.cache_ttl())
        {
            self.reload_revocations().await?;
        }
        let generation = self.generation();
        let cached = self.token_cache.lock().ok().and_then(|c| {
            c.get(token)
                .filter(|e| e.generation == generation && e.at.elapsed() < self.cache_ttl())
                .map(|e| e.token.clone())
        });
        let vt = match cached {
            Some(t) => t,
            None => {
                let payload =
                    TokenPayload::open(token, &self.keys()).ok_or_else(not_found_token)?;
                let vt = Arc::new(self.build_validated(payload).await?);
                if let Ok(mut c) = self.token_cache.lock() {
                    self.make_room(&mut c);
                    c.insert(
                        token.to_string(),
                        crate::CachedToken {
                            generation,
                            at: Instant::now(),
                            token: vt.clone(),
                        },
                    );
                }
                vt
            }
        };
        let now = chrono::Utc::now();
        if vt.payload.expires_at <= now {
            let window = chrono::Duration::seconds(self.cfg.token.allow_expired_window as i64);
            if !allow_expired || vt.payload.expires_at + window <= now {
                return Err(not_found_token());
            }
        }
        if self.revocations().is_revoked(&vt) {
            return Err(not_found_token());
        }
        Ok(vt)
    }

    async fn build_validated(&self, payload: TokenPayload) -> Result<ValidatedToken, Error> {
        let invalid = |_| not_found_token();
        let mut trust_ref = None;
        let mut app_cred_id = None;
        let (key, roles_filter): (Option<ScopeKey>, Option<Vec<String>>) = match &payload.scope {
            TokenScope::Unscoped => (None, None),
            TokenScope::Project(p) => (
                Some(ScopeKey::Project(payload.user_id.clone(), p.clone())),
                None,
            ),
            TokenScope::Domain(d) => (
                Some(ScopeKey::Domain(payload.user_id.clone(), d.clone())),
                None,
            ),
            TokenScope::System => (Some(ScopeKey::System(payload.user_id.clone())), None),
            TokenScope::AppCred {
                project_id,
                app_cred_id: ac,
            } => {
                let cred = app_cred::Entity::find_by_id(ac.clone())
                    .one(self.conn())
                    .await
                    .map_err(db_err)?
                    .ok_or_else(not_found_token)?;
                if cred.expires_at.is_some_and(|e| e <= now_micros()) {
                    return Err(not_found_token());
                }
                app_cred_id = Some(cred.id.clone());
                let ids: Vec<String> = crate::http::app_creds::role_ids(&cred.roles);
                (
                    Some(ScopeKey::Project(
                        payload.user_id.clone(),
                        project_id.clone(),
                    )),
                    Some(ids),
                )
            }
            TokenScope::Trust {
                project_id,
                trust_id,
            } => {
                let t = crate::http::trusts::trust_usable(self, trust_id)
                    .await
                    .map_err(|_| not_found_token())?;
                trust_ref = Some(ferro_auth::context::TrustRef {
                    id: t.id.clone(),
                    trustor_user_id: t.trustor_user_id.clone(),
                    trustee_user_id: t.trustee_user_id.clone(),
                    impersonation: t.impersonation,
                });
                // The trustor must still hold the delegated roles.
                let ids: Vec<String> = serde_json::from_str(&t.roles).unwrap_or_default();
                (
                    Some(ScopeKey::Project(
                        t.trustor_user_id.clone(),
                        project_id.clone(),
                    )),
                    Some(ids),
                )
            }
        };
        let scope = match &key {
            Some(k) => Some(self.resolve_scope(k).await.map_err(|e| match e {
                Error::Internal { .. } => e,
                _ => not_found_token(),
            })?),
            None => None,
        };
        // The resolved scope already carries the user (cached); trust tokens
        // resolve the trustor's roles, so their user (the trustee) is read here.
        let user = match (&scope, &key) {
            (
                Some(s),
                Some(ScopeKey::Project(u, _) | ScopeKey::Domain(u, _) | ScopeKey::System(u)),
            ) if *u == payload.user_id => {
                if !s.user_enabled {
                    return Err(not_found_token());
                }
                s.user.clone()
            }
            _ => {
                let u = self.user_get(&payload.user_id).await.map_err(invalid)?;
                let user_domain = self.domain_get(&u.domain_id).await.map_err(invalid)?;
                if !u.enabled || !user_domain.enabled {
                    return Err(not_found_token());
                }
                self.user_ref(&u).await?
            }
        };
        let mut vt = ValidatedToken {
            user,
            payload,
            project: None,
            domain: None,
            system: false,
            roles: Vec::new(),
            is_admin_project: false,
            app_cred_id,
            trust: trust_ref,
            creds_cache: Default::default(),
            body_cache: Default::default(),
        };
        if let (Some(key), Some(scope)) = (key, scope) {
            let mut roles = scope.roles.clone();
            if let Some(allowed) = roles_filter {
                // Only the delegated roles (plus what they imply) that are still held.
                let implied = self.expand_implied(allowed.into_iter().collect()).await?;
                roles.retain(|r| implied.contains(&r.id));
            }
            if roles.is_empty() {
                return Err(not_found_token());
            }
            vt.roles = roles;
            vt.project = scope.project.clone();
            vt.domain = scope.domain.clone();
            vt.system = matches!(key, ScopeKey::System(_));
            vt.is_admin_project = vt
                .project
                .as_ref()
                .is_some_and(|p| p.name == "admin" && p.domain.id == "default");
        }
        Ok(vt)
    }

    /// Issues a token for an authenticated user and a requested scope.
    pub async fn issue_token(
        &self,
        auth: AuthResult,
        scope: RequestedScope,
    ) -> Result<(String, Arc<ValidatedToken>), Error> {
        let user_id = auth.user_id.clone();
        let mut payload_scope = match scope {
            RequestedScope::Unscoped => TokenScope::Unscoped,
            RequestedScope::Project(p) => TokenScope::Project(p),
            RequestedScope::Domain(d) => TokenScope::Domain(d),
            RequestedScope::System => TokenScope::System,
            RequestedScope::Trust(t) => {
                let trust = crate::http::trusts::trust_usable(self, &t).await?;
                if trust.trustee_user_id != user_id {
                    return Err(Error::forbidden("User is not a trustee."));
                }
                let project_id = trust
                    .project_id
                    .clone()
                    .ok_or_else(|| Error::forbidden("Trust is not scoped to a project."))?;
                crate::http::trusts::consume_use(self, &trust).await?;
                TokenScope::Trust {
                    project_id,
                    trust_id: trust.id,
                }
            }
            RequestedScope::None => match &auth.default_project_id {
                Some(p) => {
                    let key = ScopeKey::Project(user_id.clone(), p.clone());
                    match self.resolve_scope(&key).await {
                        Ok(s) if !s.roles.is_empty() => TokenScope::Project(p.clone()),
                        _ => TokenScope::Unscoped,
                    }
                }
                None => TokenScope::Unscoped,
            },
        };
        if let Some(ac) = &auth.app_cred {
            let project = ac.project_id.clone().unwrap_or_default();
            match &payload_scope {
                TokenScope::Unscoped => {}
                TokenScope::Project(p) if *p == project => {}
                _ => {
                    return Err(Error::unauthorized(
                        "Application credentials cannot request a scope.",
                    ));
                }
            }
            payload_scope = TokenScope::AppCred {
                project_id: project,
                app_cred_id: ac.id.clone(),
            };
        }
        // Scoped tokens need at least one role on the target.
        let key = match &payload_scope {
            TokenScope::Project(p) => Some(ScopeKey::Project(user_id.clone(), p.clone())),
            TokenScope::Domain(d) => Some(ScopeKey::Domain(user_id.clone(), d.clone())),
            TokenScope::System => Some(ScopeKey::System(user_id.clone())),
            _ => None,
        };
        if let Some(key) = key {
            let resolved = self.resolve_scope(&key).await.map_err(|e| match e {
                Error::NotFound { kind, id } => {
                    Error::unauthorized(format!("Could not find {kind}: {id}."))
                }
                other => other,
            })?;
            if resolved.roles.is_empty() {
                let what = match &key {
                    ScopeKey::Project(_, p) => format!("project {p}"),
                    ScopeKey::Domain(_, d) => format!("domain {d}"),
                    ScopeKey::System(_) => "the system".to_string(),
                };
                return Err(Error::unauthorized(format!(
                    "User {user_id} has no access to {what}."
                )));
            }
        }
        let now = chrono::Utc::now();
        let mut expires_at = now + chrono::Duration::seconds(self.cfg.token.expiration as i64);
        if let Some(e) = auth.expires_at
            && e < expires_at
        {
            expires_at = e;
        }
        if let Some(e) = auth
            .app_cred
            .as_ref()
            .and_then(|a| a.expires_at)
            .map(micros_to_time)
            && e < expires_at
        {
            expires_at = e;
        }
        let mut audit_ids = vec![new_audit_id()];
        if let Some(parent) = auth.audit_parent {
            audit_ids.push(parent);
        }
        let payload = TokenPayload {
            user_id,
            methods: auth.methods,
            scope: payload_scope,
            expires_at,
            audit_ids,
            issued_at: now,
        };
        let generation = self.generation();
        let mut token = payload.seal(&self.keys());
        // The payload is at hand: build the validated token without decrypting
        // it again (issued_at exactly as validation reads it back: the Fernet
        // timestamp), and cache it for the validations that follow.
        let mut built = self.build_validated(payload).await.map_err(|e| match e {
            Error::Internal { .. } => e,
            _ => auth_failed(),
        })?;
        built.payload.issued_at =
            ferro_auth::token::issued_at_of(&token).unwrap_or(built.payload.issued_at);
        if self.revocations().is_revoked(&built) {
            // Revocation works in whole seconds (Fernet timestamps): a token
            // minted in the same second as a matching revocation (a password
            // change, a revoked grant) is revoked too. Mint again once that
            // second is over, as a later request would.
            let ms = 1000 - u64::from(chrono::Utc::now().timestamp_subsec_millis()).min(999);
            tokio::time::sleep(std::time::Duration::from_millis(ms + 5)).await;
            built.payload.issued_at = chrono::Utc::now();
            token = built.payload.seal(&self.keys());
            built.payload.issued_at =
                ferro_auth::token::issued_at_of(&token).unwrap_or(built.payload.issued_at);
            if self.revocations().is_revoked(&built) {
                return Err(auth_failed());
            }
        }
        let vt = Arc::new(built);
        if let Ok(mut c) = self.token_cache.lock() {
            self.make_room(&mut c);
            c.insert(
                token.clone(),
                crate::CachedToken {
                    generation,
                    at: Instant::now(),
                    token: vt.clone(),
                },
            );
        }
        Ok((token, vt))
    }

    /// The service catalog (enabled services and endpoints) as `project`
    /// sees it: when OS-EP-FILTER associates endpoints with the project,
    /// only those, and only the services that keep an endpoint (Keystone's
    /// `get_v3_catalog`). Cached with the identity generation.
    pub async fn catalog_for(&self, project: Option<&str>) -> Result<Arc<Value>, Error> {
        let (full, filters) = self.catalog_parts().await?;
        let Some(ids) = project.and_then(|p| filters.get(p)) else {
            return Ok(full);
        };
        let services = full.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut out = Vec::new();
        for svc in services {
            let eps: Vec<Value> = svc["endpoints"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|e| e["id"].as_str().is_some_and(|id| ids.contains(id)))
                .cloned()
                .collect();
            if !eps.is_empty() {
                let mut svc = svc.clone();
                svc["endpoints"] = Value::Array(eps);
                out.push(svc);
            }
        }
        Ok(Arc::new(Value::Array(out)))
    }

    async fn catalog_parts(&self) -> Result<CatalogParts, Error> {
        let generation = self.generation();
        if let Ok(c) = self.catalog_cache.read()
            && let Some((g, at, v)) = c.as_ref()
            && *g == generation
            && at.elapsed() < self.cache_ttl()
        {
            return Ok(v.clone());
        }
        let services = service::Entity::find()
            .all(self.conn())
            .await
            .map_err(db_err)?;
        let endpoints = endpoint::Entity::find()
            .all(self.conn())
            .await
            .map_err(db_err)?;
        let mut out = Vec::new();
        for s in services.iter().filter(|s| s.enabled) {
            let extra = crate::util::json_map(&s.extra);
            let eps: Vec<Value> = endpoints
                .iter()
                .filter(|e| e.service_id == s.id && e.enabled)
                .map(|e| {
                    json!({"id": e.id, "interface": e.interface, "region_id": e.region_id,
                           "url": e.url, "region": e.region_id})
                })
                .collect();
            out.push(json!({
                "endpoints": eps, "id": s.id, "type": s.service_type,
                "name": extra.get("name").cloned().unwrap_or(Value::from("")),
            }));
        }
        let filters = crate::http::ep_filter::project_endpoints(self).await?;
        let v = (Arc::new(Value::Array(out)), Arc::new(filters));
        if let Ok(mut c) = self.catalog_cache.write() {
            *c = Some((generation, Instant::now(), v.clone()));
        }
        Ok(v)
    }

    /// The serialized token body, rendered once per validated token.
    pub async fn render_token_bytes(
        &self,
        vt: &ValidatedToken,
        with_catalog: bool,
    ) -> Result<bytes::Bytes, Error> {
        let slot = &vt.body_cache[usize::from(with_catalog)];
        if let Some(b) = slot.get() {
            return Ok(b.clone());
        }
        let body = self.render_token(vt, with_catalog).await?;
        let bytes = bytes::Bytes::from(serde_json::to_vec(&body).map_err(Error::internal)?);
        Ok(slot.get_or_init(|| bytes).clone())
    }

    /// Keystone's token body for a validated token.
    pub async fn render_token(
        &self,
        vt: &ValidatedToken,
        with_catalog: bool,
    ) -> Result<Value, Error> {
        let p = &vt.payload;
        let mut t = Map::new();
        t.insert("methods".into(), json!(p.methods));
        t.insert(
            "user".into(),
            json!({"id": vt.user.id, "name": vt.user.name,
                   "domain": {"id": vt.user.domain.id, "name": vt.user.domain.name},
                   "password_expires_at": vt.user.password_expires_at}),
        );
        t.insert("audit_ids".into(), json!(p.audit_ids));
        t.insert(
            "expires_at".into(),
            json!(ferro_common::time::keystone_token_time(&p.expires_at)),
        );
        t.insert(
            "issued_at".into(),
            json!(ferro_common::time::keystone_token_time(&p.issued_at)),
        );
        if let Some(pr) = &vt.project {
            t.insert(
                "project".into(),
                json!({"id": pr.id, "name": pr.name, "domain": {"id": pr.domain.id, "name": pr.domain.name}}),
            );
            t.insert("is_domain".into(), json!(false));
        }
        if let Some(d) = &vt.domain {
            t.insert("domain".into(), json!({"id": d.id, "name": d.name}));
        }
        if vt.system {
            t.insert("system".into(), json!({"all": true}));
        }
        if vt.project.is_some() || vt.domain.is_some() || vt.system {
            t.insert("roles".into(), json!(vt.roles));
            if with_catalog {
                let project = vt.project.as_ref().map(|p| p.id.as_str());
                t.insert(
                    "catalog".into(),
                    (*self.catalog_for(project).await?).clone(),
                );
            }
        }
        if vt.project.is_some() {
            t.insert("is_admin_project".into(), json!(vt.is_admin_project));
        }
        if let Some(ac) = &vt.app_cred_id
            && let Some(cred) = app_cred::Entity::find_by_id(ac.clone())
                .one(self.conn())
                .await
                .map_err(db_err)?
        {
            t.insert(
                "application_credential".into(),
                json!({"id": cred.id, "name": cred.name, "restricted": !cred.unrestricted}),
            );
        }
        if let Some(tr) = &vt.trust {
            t.insert(
                "OS-TRUST:trust".into(),
                json!({"id": tr.id, "impersonation": tr.impersonation,
                       "trustor_user": {"id": tr.trustor_user_id}, "trustee_user": {"id": tr.trustee_user_id}}),
            );
        }
        Ok(json!({ "token": Value::Object(t) }))
    }
}

#[async_trait::async_trait]
impl TokenValidator for IdentityService {
    async fn validate(
        &self,
        token: &str,
        allow_expired: bool,
    ) -> Result<Arc<ValidatedToken>, Error> {
        self.validate_token(token, allow_expired).await
    }
    async fn token_for(&self, who: &ferro_auth::Acting) -> Result<String, Error> {
        let scope = match (&who.project_id, who.system) {
            (Some(p), _) => TokenScope::Project(p.clone()),
            (None, true) => TokenScope::System,
            (None, false) => TokenScope::Unscoped,
        };
        let now = chrono::Utc::now();
        // At most an hour, and never longer than a user's own token lives.
        let life = (self.cfg.token.expiration as i64).clamp(60, 3600);
        let payload = TokenPayload {
            user_id: who.user_id.clone(),
            methods: vec!["token".into()],
            scope,
            expires_at: now + chrono::Duration::seconds(life),
            audit_ids: vec![new_audit_id()],
            issued_at: now,
        };
        Ok(payload.seal(&self.keys()))
    }
}

/// At most one bcrypt per core: more only queue inside the kernel, finish in
/// bursts and tie up blocking threads under overload.
fn bcrypt_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    })
}

/// bcrypt with Keystone's parameters, off the async workers.
pub async fn hash_secret(secret: String, rounds: u32) -> Result<String, Error> {
    let _slot = bcrypt_slots().acquire().await.map_err(Error::internal)?;
    tokio::task::spawn_blocking(move || bcrypt::hash(secret.as_bytes(), rounds))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}

pub async fn verify_secret(secret: String, hash: String) -> bool {
    let Ok(_slot) = bcrypt_slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || bcrypt::verify(secret.as_bytes(), &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}
