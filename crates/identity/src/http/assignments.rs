//! Role grants on projects, domains and the system (for users and groups,
//! inherited or not) and `/v3/role_assignments` with `effective` expansion.
use super::{Caller, Query, State};
use crate::IdentityService;
use crate::error::{KsError, KsResult};
use crate::resolve::{SYSTEM_TARGET, kind_of};
use crate::tokens::RevEvent;
use crate::views;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use ferro_common::Error;
use ferro_db::db_err;
use ferro_db::entity::identity::*;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What a grant URL names.
struct Grant {
    target: &'static str, // "project" | "domain" | "system"
    target_id: String,
    group: bool,
    actor_id: String,
    inherited: bool,
}

impl Grant {
    fn kind(&self) -> &'static str {
        kind_of(self.group, self.target)
    }
    async fn check_exists(&self, svc: &IdentityService) -> Result<(), Error> {
        match self.target {
            "project" => {
                svc.project_get(&self.target_id).await?;
            }
            "domain" => {
                svc.domain_get(&self.target_id).await?;
            }
            _ => {}
        }
        if self.group {
            svc.group_get(&self.actor_id).await?;
        } else {
            svc.user_get(&self.actor_id).await?;
        }
        Ok(())
    }
    fn row(&self, role_id: &str) -> assignment::Model {
        assignment::Model {
            kind: self.kind().into(),
            actor_id: self.actor_id.clone(),
            target_id: self.target_id.clone(),
            role_id: role_id.into(),
            inherited: self.inherited,
        }
    }
    fn policy_target(&self) -> Value {
        json!({"target": {self.target: {"id": self.target_id}, "user": {"id": self.actor_id}}})
    }
}

async fn find(
    svc: &IdentityService,
    g: &Grant,
    role_id: &str,
) -> Result<Option<assignment::Model>, Error> {
    let r = g.row(role_id);
    assignment::Entity::find_by_id((r.kind, r.actor_id, r.target_id, r.role_id, r.inherited))
        .one(svc.conn())
        .await
        .map_err(db_err)
}

async fn do_grant(
    svc: &IdentityService,
    caller: &Caller,
    g: Grant,
    role_id: String,
) -> KsResult<StatusCode> {
    caller.authorize(
        svc,
        if g.target == "system" {
            "identity:create_system_grant"
        } else {
            "identity:create_grant"
        },
        &g.policy_target(),
    )?;
    g.check_exists(svc).await?;
    svc.role_get(&role_id).await?;
    if find(svc, &g, &role_id).await?.is_none() {
        let r = g.row(&role_id);
        let am = assignment::ActiveModel {
            kind: Set(r.kind),
            actor_id: Set(r.actor_id),
            target_id: Set(r.target_id),
            role_id: Set(r.role_id),
            inherited: Set(r.inherited),
        };
        if let Err(e) = am.insert(svc.conn()).await
            && !ferro_db::is_unique_violation(&e)
        {
            return Err(KsError(db_err(e)));
        }
        svc.invalidate();
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn do_check(
    svc: &IdentityService,
    caller: &Caller,
    g: Grant,
    role_id: String,
) -> KsResult<StatusCode> {
    caller.authorize(
        svc,
        if g.target == "system" {
            "identity:check_system_grant"
        } else {
            "identity:check_grant"
        },
        &g.policy_target(),
    )?;
    g.check_exists(svc).await?;
    svc.role_get(&role_id).await?;
    match find(svc, &g, &role_id).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(KsError(Error::not_found_msg(format!(
            "Could not find role assignment with role: {role_id}."
        )))),
    }
}

async fn do_revoke(
    svc: &IdentityService,
    caller: &Caller,
    g: Grant,
    role_id: String,
) -> KsResult<StatusCode> {
    caller.authorize(
        svc,
        if g.target == "system" {
            "identity:revoke_system_grant"
        } else {
            "identity:revoke_grant"
        },
        &g.policy_target(),
    )?;
    g.check_exists(svc).await?;
    let Some(row) = find(svc, &g, &role_id).await? else {
        return Err(KsError(Error::not_found_msg(format!(
            "Could not find role assignment with role: {role_id}."
        ))));
    };
    assignment::Entity::delete_by_id((
        row.kind,
        row.actor_id,
        row.target_id,
        row.role_id,
        row.inherited,
    ))
    .exec(svc.conn())
    .await
    .map_err(db_err)?;
    svc.invalidate();
    if !g.group && g.target == "project" && !g.inherited {
        svc.revoke(RevEvent {
            user_id: Some(g.actor_id),
            project_id: Some(g.target_id),
            ..Default::default()
        })
        .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn do_list(svc: &IdentityService, caller: &Caller, g: Grant) -> KsResult<Json<Value>> {
    caller.authorize(
        svc,
        if g.target == "system" {
            "identity:list_system_grants"
        } else {
            "identity:list_grants"
        },
        &g.policy_target(),
    )?;
    g.check_exists(svc).await?;
    let rows = assignment::Entity::find()
        .filter(assignment::Column::Kind.eq(g.kind()))
        .filter(assignment::Column::ActorId.eq(g.actor_id.as_str()))
        .filter(assignment::Column::TargetId.eq(g.target_id.as_str()))
        .filter(assignment::Column::Inherited.eq(g.inherited))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let ids: Vec<String> = rows.into_iter().map(|r| r.role_id).collect();
    let roles = role::Entity::find()
        .filter(role::Column::Id.is_in(ids))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(
        json!({"roles": roles.iter().map(|r| views::role(&base, r)).collect::<Vec<_>>(),
                   "links": {"self": base, "previous": null, "next": null}}),
    ))
}

fn parse_actor(a: &str) -> Result<bool, Error> {
    match a {
        "users" => Ok(false),
        "groups" => Ok(true),
        _ => Err(Error::not_found_msg("The resource could not be found.")),
    }
}

fn parse_target(t: &str) -> Result<&'static str, Error> {
    match t {
        "projects" => Ok("project"),
        "domains" => Ok("domain"),
        _ => Err(Error::not_found_msg("The resource could not be found.")),
    }
}

/// `/v3/{projects|domains}/{id}/{users|groups}/{id}/roles[/{role}]`, one
/// static route per combination (they share the first segment with the
/// resource routes, so no catch-all parameter there).
pub fn grant_routes(mut r: Router<Arc<IdentityService>>) -> Router<Arc<IdentityService>> {
    for (t, a) in [
        ("projects", "users"),
        ("projects", "groups"),
        ("domains", "users"),
        ("domains", "groups"),
    ] {
        let target = if t == "projects" { "project" } else { "domain" };
        let group = a == "groups";
        let mk = move |tid: String, aid: String| Grant {
            target,
            target_id: tid,
            group,
            actor_id: aid,
            inherited: false,
        };
        r = r
            .route(
                &format!("/v3/{t}/{{id}}/{a}/{{aid}}/roles"),
                get(move |st: State, c: Caller, Path((tid, aid)): Path<(String, String)>| async move {
                    do_list(&st.0, &c, mk(tid, aid)).await
                }),
            )
            .route(
                &format!("/v3/{t}/{{id}}/{a}/{{aid}}/roles/{{rid}}"),
                get(move |st: State, c: Caller, Path((tid, aid, rid)): Path<(String, String, String)>| async move {
                    do_check(&st.0, &c, mk(tid, aid), rid).await
                })
                .put(move |st: State, c: Caller, Path((tid, aid, rid)): Path<(String, String, String)>| async move {
                    do_grant(&st.0, &c, mk(tid, aid), rid).await
                })
                .delete(move |st: State, c: Caller, Path((tid, aid, rid)): Path<(String, String, String)>| async move {
                    do_revoke(&st.0, &c, mk(tid, aid), rid).await
                }),
            );
    }
    r
}

fn system_grant(actor: &str, aid: String) -> Result<Grant, Error> {
    Ok(Grant {
        target: "system",
        target_id: SYSTEM_TARGET.into(),
        group: parse_actor(actor)?,
        actor_id: aid,
        inherited: false,
    })
}

pub async fn system_list(
    st: State,
    c: Caller,
    Path((actor, aid)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    do_list(&st.0, &c, system_grant(&actor, aid)?).await
}
pub async fn system_grant_h(
    st: State,
    c: Caller,
    Path((actor, aid, rid)): Path<(String, String, String)>,
) -> KsResult<StatusCode> {
    do_grant(&st.0, &c, system_grant(&actor, aid)?, rid).await
}
pub use system_grant_h as system_grant_route;
pub async fn system_check(
    st: State,
    c: Caller,
    Path((actor, aid, rid)): Path<(String, String, String)>,
) -> KsResult<StatusCode> {
    do_check(&st.0, &c, system_grant(&actor, aid)?, rid).await
}
pub async fn system_revoke(
    st: State,
    c: Caller,
    Path((actor, aid, rid)): Path<(String, String, String)>,
) -> KsResult<StatusCode> {
    do_revoke(&st.0, &c, system_grant(&actor, aid)?, rid).await
}

fn inherited_grant(t: &str, tid: String, a: &str, aid: String) -> Result<Grant, Error> {
    Ok(Grant {
        target: parse_target(t)?,
        target_id: tid,
        group: parse_actor(a)?,
        actor_id: aid,
        inherited: true,
    })
}

type InhPath = Path<(String, String, String, String)>;
type InhRolePath = Path<(String, String, String, String, String)>;

pub async fn inherited_list(
    st: State,
    c: Caller,
    Path((t, tid, a, aid)): InhPath,
) -> KsResult<Json<Value>> {
    do_list(&st.0, &c, inherited_grant(&t, tid, &a, aid)?).await
}
pub async fn inherited_grant_h(
    st: State,
    c: Caller,
    Path((t, tid, a, aid, rid)): InhRolePath,
) -> KsResult<StatusCode> {
    do_grant(&st.0, &c, inherited_grant(&t, tid, &a, aid)?, rid).await
}
pub use inherited_grant_h as inherited_grant_route;
pub async fn inherited_check(
    st: State,
    c: Caller,
    Path((t, tid, a, aid, rid)): InhRolePath,
) -> KsResult<StatusCode> {
    do_check(&st.0, &c, inherited_grant(&t, tid, &a, aid)?, rid).await
}
pub async fn inherited_revoke(
    st: State,
    c: Caller,
    Path((t, tid, a, aid, rid)): InhRolePath,
) -> KsResult<StatusCode> {
    do_revoke(&st.0, &c, inherited_grant(&t, tid, &a, aid)?, rid).await
}

/// One row of `/v3/role_assignments`.
#[derive(Clone)]
struct Entry {
    role_id: String,
    actor_id: String,
    group: bool,
    scope: &'static str, // project | domain | system
    target_id: String,
    inherited: bool,
    prior_role: Option<String>,
    via_group: Option<String>,
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let q = &q.0;
    caller.authorize(
        svc,
        "identity:list_role_assignments",
        &json!({"target": {"domain_id": q.get("scope.domain.id")}}),
    )?;
    let effective = q.contains_key("effective");
    let include_names = q
        .get("include_names")
        .is_some_and(|v| crate::util::query_bool(v));
    let rows = assignment::Entity::find()
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let mut entries: Vec<Entry> = rows
        .iter()
        .map(|a| Entry {
            role_id: a.role_id.clone(),
            actor_id: a.actor_id.clone(),
            group: a.kind.starts_with("Group"),
            scope: if a.kind.ends_with("Project") {
                "project"
            } else if a.kind.ends_with("Domain") {
                "domain"
            } else {
                "system"
            },
            target_id: a.target_id.clone(),
            inherited: a.inherited,
            prior_role: None,
            via_group: None,
        })
        .collect();
    let roles: HashMap<String, role::Model> = role::Entity::find()
        .all(svc.conn())
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    if effective {
        let members = user_group::Entity::find()
            .all(svc.conn())
            .await
            .map_err(db_err)?;
        let projects = project::Entity::find()
            .filter(project::Column::IsDomain.eq(false))
            .all(svc.conn())
            .await
            .map_err(db_err)?;
        let rules = implied_role::Entity::find()
            .all(svc.conn())
            .await
            .map_err(db_err)?;
        let mut expanded = Vec::new();
        for e in entries {
            // groups → their members
            let actors: Vec<(String, Option<String>)> = if e.group {
                members
                    .iter()
                    .filter(|m| m.group_id == e.actor_id)
                    .map(|m| (m.user_id.clone(), Some(e.actor_id.clone())))
                    .collect()
            } else {
                vec![(e.actor_id.clone(), None)]
            };
            // inherited → every project below the target
            let targets: Vec<(&'static str, String)> = if e.inherited {
                let mut out = Vec::new();
                let mut frontier = vec![e.target_id.clone()];
                while let Some(cur) = frontier.pop() {
                    for p in projects
                        .iter()
                        .filter(|p| p.parent_id.as_deref() == Some(cur.as_str()))
                    {
                        out.push(("project", p.id.clone()));
                        frontier.push(p.id.clone());
                    }
                    if out.len() > 100_000 {
                        break;
                    }
                }
                out
            } else {
                vec![(e.scope, e.target_id.clone())]
            };
            for (uid, via) in &actors {
                for (scope, tid) in &targets {
                    expanded.push(Entry {
                        role_id: e.role_id.clone(),
                        actor_id: uid.clone(),
                        group: false,
                        scope,
                        target_id: tid.clone(),
                        inherited: false,
                        prior_role: None,
                        via_group: via.clone(),
                    });
                }
            }
        }
        // implied roles
        let mut with_implied = Vec::new();
        for e in expanded {
            let mut seen = BTreeSet::new();
            let mut stack = vec![e.role_id.clone()];
            while let Some(r) = stack.pop() {
                for rule in rules.iter().filter(|x| x.prior_role_id == r) {
                    if seen.insert(rule.implied_role_id.clone()) {
                        stack.push(rule.implied_role_id.clone());
                        with_implied.push(Entry {
                            role_id: rule.implied_role_id.clone(),
                            prior_role: Some(e.role_id.clone()),
                            ..e.clone()
                        });
                    }
                }
            }
            with_implied.push(e);
        }
        // domain-specific roles never show up as effective assignments
        with_implied.retain(|e| {
            roles
                .get(&e.role_id)
                .is_some_and(|r| r.domain_id == NULL_DOMAIN)
        });
        entries = with_implied;
    }
    // filters
    let user_filter = q.get("user.id");
    let group_filter = q.get("group.id");
    entries.retain(|e| {
        user_filter.is_none_or(|u| !e.group && e.actor_id == *u)
            && group_filter.is_none_or(|g| e.group && e.actor_id == *g)
            && q.get("role.id").is_none_or(|r| e.role_id == *r)
            && q.get("scope.project.id")
                .is_none_or(|p| e.scope == "project" && e.target_id == *p)
            && q.get("scope.domain.id")
                .is_none_or(|d| e.scope == "domain" && e.target_id == *d)
            && q.get("scope.system").is_none_or(|_| e.scope == "system")
            && q.get("scope.OS-INHERIT:inherited_to")
                .is_none_or(|_| e.inherited)
    });
    let base = svc.v3_url();
    let mut items = Vec::with_capacity(entries.len());
    let mut name_cache: HashMap<String, Value> = HashMap::new();
    for e in &entries {
        let mut role = json!({"id": e.role_id});
        let actor_key = if e.group { "group" } else { "user" };
        let mut actor = json!({"id": e.actor_id});
        let mut scope_v = match e.scope {
            "system" => json!({"system": {"all": true}}),
            s => json!({ s: {"id": e.target_id} }),
        };
        if include_names {
            if let Some(r) = roles.get(&e.role_id) {
                role["name"] = json!(r.name);
                if r.domain_id != NULL_DOMAIN {
                    role["domain"] = json!({"id": r.domain_id});
                }
            }
            let key = format!("{actor_key}:{}", e.actor_id);
            if !name_cache.contains_key(&key) {
                let v = if e.group {
                    match svc.group_get(&e.actor_id).await {
                        Ok(g) => {
                            json!({"name": g.name, "domain": svc.domain_ref(&g.domain_id).await.ok()})
                        }
                        Err(_) => Value::Null,
                    }
                } else {
                    match svc.user_get(&e.actor_id).await {
                        Ok(u) => {
                            json!({"name": u.name, "domain": svc.domain_ref(&u.domain_id).await.ok()})
                        }
                        Err(_) => Value::Null,
                    }
                };
                name_cache.insert(key.clone(), v);
            }
            if let Some(Value::Object(m)) = name_cache.get(&key) {
                for (k, v) in m {
                    actor[k] = v.clone();
                }
            }
            if e.scope != "system" {
                let skey = format!("{}:{}", e.scope, e.target_id);
                if !name_cache.contains_key(&skey) {
                    let v = match svc.project_row(&e.target_id).await? {
                        Some(p) if p.is_domain => json!({"name": p.name}),
                        Some(p) => {
                            json!({"name": p.name, "domain": svc.domain_ref(&p.domain_id).await.ok()})
                        }
                        None => Value::Null,
                    };
                    name_cache.insert(skey.clone(), v);
                }
                if let Some(Value::Object(m)) = name_cache.get(&skey) {
                    for (k, v) in m {
                        scope_v[e.scope][k] = v.clone();
                    }
                }
            }
        }
        if e.inherited {
            scope_v["OS-INHERIT:inherited_to"] = json!("projects");
        }
        let path = match e.scope {
            "system" => format!("system/{actor_key}s/{}/roles/{}", e.actor_id, e.role_id),
            s => format!(
                "{s}s/{}/{actor_key}s/{}/roles/{}",
                e.target_id, e.actor_id, e.role_id
            ),
        };
        let mut links = json!({"assignment": format!("{base}/{path}")});
        if let Some(g) = &e.via_group {
            links["membership"] = json!(format!("{base}/groups/{g}/users/{}", e.actor_id));
        }
        if let Some(p) = &e.prior_role {
            links["prior_role"] = json!(format!("{base}/roles/{p}"));
        }
        let mut item = json!({"role": role, "scope": scope_v, "links": links});
        item[actor_key] = actor;
        items.push(item);
    }
    Ok(Json(
        json!({"role_assignments": items, "links": {"self": format!("{base}/role_assignments"), "previous": null, "next": null}}),
    ))
}
