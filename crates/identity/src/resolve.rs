//! Lookups and role resolution: which roles a user has on a project, domain
//! or the system, through direct and group grants, inheritance down the
//! project tree, and implied roles.

use crate::IdentityService;
use ferro_auth::{DomainRef, ProjectRef, RoleRef, UserRef};
use ferro_common::Error;
use ferro_db::db_err;
use ferro_db::entity::identity::*;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

pub const SYSTEM_TARGET: &str = "system";

/// How a project row was looked up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProjectKey {
    Id(String),
    Name(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScopeKey {
    Project(String, String),
    Domain(String, String),
    System(String),
}

#[derive(Clone, Debug)]
pub struct ResolvedScope {
    pub user: UserRef,
    pub user_enabled: bool,
    pub project: Option<ProjectRef>,
    pub domain: Option<DomainRef>,
    pub roles: Vec<RoleRef>,
    pub role_ids: HashSet<String>,
}

pub fn kind_of(actor_is_group: bool, target: &str) -> &'static str {
    match (actor_is_group, target) {
        (false, "project") => "UserProject",
        (true, "project") => "GroupProject",
        (false, "domain") => "UserDomain",
        (true, "domain") => "GroupDomain",
        (false, _) => "UserSystem",
        (true, _) => "GroupSystem",
    }
}

impl IdentityService {
    /// A project or domain row by id (cached per identity generation).
    pub async fn project_row(&self, id: &str) -> Result<Option<project::Model>, Error> {
        let key = ProjectKey::Id(id.to_string());
        if let Some(hit) = self.project_cached(&key) {
            return Ok(hit);
        }
        let generation = self.generation();
        let row = project::Entity::find_by_id(id.to_string())
            .one(self.conn())
            .await
            .map_err(db_err)?;
        self.project_remember(key, generation, row.clone());
        Ok(row)
    }

    fn project_cached(&self, key: &ProjectKey) -> Option<Option<project::Model>> {
        let generation = self.generation();
        let cache = self.project_cache.lock().ok()?;
        let (g, at, row) = cache.get(key)?;
        (*g == generation && at.elapsed() < self.cache_ttl()).then(|| row.clone())
    }

    fn project_remember(&self, key: ProjectKey, generation: u64, row: Option<project::Model>) {
        if let Ok(mut cache) = self.project_cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (generation, std::time::Instant::now(), row));
        }
    }

    async fn project_by_name_any(
        &self,
        domain_id: &str,
        name: &str,
    ) -> Result<Option<project::Model>, Error> {
        let key = ProjectKey::Name(domain_id.to_string(), name.to_string());
        if let Some(hit) = self.project_cached(&key) {
            return Ok(hit);
        }
        let generation = self.generation();
        let row = project::Entity::find()
            .filter(project::Column::DomainId.eq(domain_id))
            .filter(project::Column::Name.eq(name))
            .one(self.conn())
            .await
            .map_err(db_err)?;
        self.project_remember(key, generation, row.clone());
        Ok(row)
    }

    /// A domain (a project row with `is_domain`), 404 when absent.
    pub async fn domain_get(&self, id: &str) -> Result<project::Model, Error> {
        match self.project_row(id).await? {
            Some(p) if p.is_domain => Ok(p),
            _ => Err(Error::not_found("domain", id)),
        }
    }

    /// A project that is not a domain, 404 when absent.
    pub async fn project_get(&self, id: &str) -> Result<project::Model, Error> {
        match self.project_row(id).await? {
            Some(p) if !p.is_domain => Ok(p),
            _ => Err(Error::not_found("project", id)),
        }
    }

    pub async fn domain_by_name(&self, name: &str) -> Result<project::Model, Error> {
        self.project_by_name_any(ROOT_DOMAIN, name)
            .await?
            .ok_or_else(|| Error::not_found("domain", name))
    }

    pub async fn project_by_name(
        &self,
        domain_id: &str,
        name: &str,
    ) -> Result<project::Model, Error> {
        match self.project_by_name_any(domain_id, name).await? {
            Some(p) if !p.is_domain => Ok(p),
            _ => Err(Error::not_found("project", name)),
        }
    }

    pub async fn user_get(&self, id: &str) -> Result<user::Model, Error> {
        user::Entity::find_by_id(id.to_string())
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("user", id))
    }

    pub async fn user_by_name(&self, domain_id: &str, name: &str) -> Result<user::Model, Error> {
        user::Entity::find()
            .filter(user::Column::DomainId.eq(domain_id))
            .filter(user::Column::Name.eq(name))
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("user", name))
    }

    pub async fn group_get(&self, id: &str) -> Result<group::Model, Error> {
        group::Entity::find_by_id(id.to_string())
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("group", id))
    }

    pub async fn role_get(&self, id: &str) -> Result<role::Model, Error> {
        role::Entity::find_by_id(id.to_string())
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("role", id))
    }

    pub async fn domain_ref(&self, id: &str) -> Result<DomainRef, Error> {
        let d = self.domain_get(id).await?;
        Ok(DomainRef {
            id: d.id,
            name: d.name,
        })
    }

    pub async fn user_ref(&self, u: &user::Model) -> Result<UserRef, Error> {
        Ok(UserRef {
            id: u.id.clone(),
            name: u.name.clone(),
            domain: self.domain_ref(&u.domain_id).await?,
            password_expires_at: u
                .password_expires_at
                .map(|t| ferro_common::time::keystone_token_time(&ferro_db::micros_to_time(t))),
        })
    }

    pub async fn user_group_ids(&self, user_id: &str) -> Result<Vec<String>, Error> {
        Ok(user_group::Entity::find()
            .filter(user_group::Column::UserId.eq(user_id))
            .all(self.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|m| m.group_id)
            .collect())
    }

    /// Ancestors of a project, nearest first, ending with its domain.
    pub async fn project_ancestors(
        &self,
        p: &project::Model,
    ) -> Result<Vec<project::Model>, Error> {
        let mut out = Vec::new();
        let mut next = p.parent_id.clone();
        let mut seen = HashSet::new();
        while let Some(id) = next {
            if !seen.insert(id.clone()) || out.len() > 64 {
                break;
            }
            match self.project_row(&id).await? {
                Some(parent) => {
                    next = parent.parent_id.clone();
                    out.push(parent);
                }
                None => break,
            }
        }
        // Top-level projects' parent is their domain, which has no parent.
        if !out.iter().any(|a| a.is_domain)
            && let Some(d) = self.project_row(&p.domain_id).await?
        {
            out.push(d);
        }
        Ok(out)
    }

    /// Role ids granted to `actors` on `target` (direct or inherited rows).
    async fn granted(
        &self,
        actors: &[String],
        target: &str,
        inherited: bool,
    ) -> Result<Vec<String>, Error> {
        Ok(assignment::Entity::find()
            .filter(assignment::Column::ActorId.is_in(actors.to_vec()))
            .filter(assignment::Column::TargetId.eq(target))
            .filter(assignment::Column::Inherited.eq(inherited))
            .all(self.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|a| a.role_id)
            .collect())
    }

    /// Adds every role implied (transitively) by `roles`.
    pub async fn expand_implied(&self, roles: BTreeSet<String>) -> Result<BTreeSet<String>, Error> {
        let rules = implied_role::Entity::find()
            .all(self.conn())
            .await
            .map_err(db_err)?;
        let mut out = roles.clone();
        let mut stack: Vec<String> = roles.into_iter().collect();
        while let Some(r) = stack.pop() {
            for rule in rules.iter().filter(|x| x.prior_role_id == r) {
                if out.insert(rule.implied_role_id.clone()) {
                    stack.push(rule.implied_role_id.clone());
                }
            }
        }
        Ok(out)
    }

    /// Effective role ids of `user_id` on project `p` (before implication).
    pub async fn project_role_ids(
        &self,
        user_id: &str,
        p: &project::Model,
    ) -> Result<BTreeSet<String>, Error> {
        let mut actors = vec![user_id.to_string()];
        actors.extend(self.user_group_ids(user_id).await?);
        let mut ids: BTreeSet<String> = self
            .granted(&actors, &p.id, false)
            .await?
            .into_iter()
            .collect();
        for a in self.project_ancestors(p).await? {
            ids.extend(self.granted(&actors, &a.id, true).await?);
        }
        Ok(ids)
    }

    pub async fn domain_role_ids(
        &self,
        user_id: &str,
        domain_id: &str,
    ) -> Result<BTreeSet<String>, Error> {
        let mut actors = vec![user_id.to_string()];
        actors.extend(self.user_group_ids(user_id).await?);
        Ok(self
            .granted(&actors, domain_id, false)
            .await?
            .into_iter()
            .collect())
    }

    pub async fn system_role_ids(&self, user_id: &str) -> Result<BTreeSet<String>, Error> {
        let mut actors = vec![user_id.to_string()];
        actors.extend(self.user_group_ids(user_id).await?);
        Ok(self
            .granted(&actors, SYSTEM_TARGET, false)
            .await?
            .into_iter()
            .collect())
    }

    pub async fn role_refs(&self, ids: &BTreeSet<String>) -> Result<Vec<RoleRef>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = role::Entity::find()
            .filter(role::Column::Id.is_in(ids.iter().cloned().collect::<Vec<_>>()))
            .all(self.conn())
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| RoleRef {
                id: r.id,
                name: r.name,
            })
            .collect())
    }

    /// Resolves user + scope + effective roles, cached per generation.
    pub async fn resolve_scope(&self, key: &ScopeKey) -> Result<Arc<ResolvedScope>, Error> {
        let generation = self.generation();
        if let Ok(cache) = self.scope_cache.lock()
            && let Some((g, at, r)) = cache.get(key)
            && *g == generation
            && at.elapsed() < self.cache_ttl()
        {
            return Ok(r.clone());
        }
        let resolved = Arc::new(self.resolve_scope_uncached(key).await?);
        if let Ok(mut cache) = self.scope_cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(
                key.clone(),
                (generation, std::time::Instant::now(), resolved.clone()),
            );
        }
        Ok(resolved)
    }

    async fn resolve_scope_uncached(&self, key: &ScopeKey) -> Result<ResolvedScope, Error> {
        let user_id = match key {
            ScopeKey::Project(u, _) | ScopeKey::Domain(u, _) | ScopeKey::System(u) => u,
        };
        let u = self.user_get(user_id).await?;
        let user = self.user_ref(&u).await?;
        let user_domain = self.domain_get(&u.domain_id).await?;
        let user_enabled = u.enabled && user_domain.enabled;
        let (project, domain, ids) = match key {
            ScopeKey::Project(_, pid) => {
                let p = self.project_get(pid).await?;
                let d = self.domain_get(&p.domain_id).await?;
                if !p.enabled || !d.enabled {
                    return Err(Error::unauthorized(format!("Project {pid} is disabled.")));
                }
                // A disabled ancestor disables the subtree.
                for a in self.project_ancestors(&p).await? {
                    if !a.enabled {
                        return Err(Error::unauthorized(format!("Project {pid} is disabled.")));
                    }
                }
                let ids = self.project_role_ids(user_id, &p).await?;
                (
                    Some(ProjectRef {
                        id: p.id.clone(),
                        name: p.name.clone(),
                        domain: DomainRef {
                            id: d.id,
                            name: d.name,
                        },
                    }),
                    None,
                    ids,
                )
            }
            ScopeKey::Domain(_, did) => {
                let d = self.domain_get(did).await?;
                if !d.enabled {
                    return Err(Error::unauthorized(format!("Domain {did} is disabled.")));
                }
                let ids = self.domain_role_ids(user_id, did).await?;
                (
                    None,
                    Some(DomainRef {
                        id: d.id,
                        name: d.name,
                    }),
                    ids,
                )
            }
            ScopeKey::System(_) => (None, None, self.system_role_ids(user_id).await?),
        };
        let ids = self.expand_implied(ids).await?;
        let roles = self.role_refs(&ids).await?;
        let role_ids = roles.iter().map(|r| r.id.clone()).collect();
        Ok(ResolvedScope {
            user,
            user_enabled,
            project,
            domain,
            roles,
            role_ids,
        })
    }
}
