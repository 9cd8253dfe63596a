//! `/v3/users`: CRUD, self password change, a user's groups and projects.
use super::{Caller, Query, State};
use crate::compliance::PasswordSetter;
use crate::error::{KsError, KsResult};
use crate::tokens::{RevEvent, auth_failed, verify_secret};
use crate::util::*;
use crate::views;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use ferro_common::Error;
use ferro_db::entity::identity::*;
use ferro_db::{db_err, now_micros};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const KNOWN: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "enabled",
    "password",
    "default_project_id",
    "options",
    "links",
    "password_expires_at",
];
pub const USER_OPTIONS: &[(&str, &str)] = &[
    ("ignore_change_password_upon_first_use", "bool"),
    ("ignore_password_expiry", "bool"),
    ("ignore_lockout_failure_attempts", "bool"),
    ("lock_password", "bool"),
    ("ignore_user_inactivity", "bool"),
    ("multi_factor_auth_rules", "list"),
    ("multi_factor_auth_enabled", "bool"),
];

pub async fn delete_user_rows(c: &impl ConnectionTrait, id: &str) -> Result<(), Error> {
    user_group::Entity::delete_many()
        .filter(user_group::Column::UserId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    assignment::Entity::delete_many()
        .filter(assignment::Column::ActorId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    app_cred::Entity::delete_many()
        .filter(app_cred::Column::UserId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    credential::Entity::delete_many()
        .filter(credential::Column::UserId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    password_history::Entity::delete_many()
        .filter(password_history::Column::UserId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    user::Entity::delete_by_id(id.to_string())
        .exec(c)
        .await
        .map_err(db_err)?;
    Ok(())
}

fn password_field(
    svc: &crate::IdentityService,
    m: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<Option<String>>, Error> {
    let max = svc.cfg.identity.max_password_length;
    match opt_str(m, field, max, true)? {
        Some(Some(p)) if p.is_empty() => Err(invalid(field, "must not be empty.")),
        other => Ok(other),
    }
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let dom =
        q.0.get("domain_id")
            .cloned()
            .or_else(|| caller.0.token.domain.as_ref().map(|d| d.id.clone()));
    caller.authorize(
        svc,
        "identity:list_users",
        &json!({"target": {"domain_id": dom}, "domain_id": dom}),
    )?;
    let mut sel = user::Entity::find().order_by_asc(user::Column::Name);
    if let Some(d) = q.0.get("domain_id") {
        sel = sel.filter(user::Column::DomainId.eq(d.as_str()));
    } else if !caller.0.is_admin()
        && let Some(d) = &caller.0.token.domain
    {
        sel = sel.filter(user::Column::DomainId.eq(d.id.as_str()));
    }
    if let Some(n) = q.0.get("name") {
        sel = sel.filter(user::Column::Name.eq(n.as_str()));
    }
    if let Some(e) = q.0.get("enabled") {
        sel = sel.filter(user::Column::Enabled.eq(query_bool(e)));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    let items = rows.iter().map(|u| views::user(&base, u)).collect();
    Ok(Json(views::list(&base, "users", "users", items, false)))
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "user")?;
    let name = req_name(m, "name", 255)?;
    let domain_id = opt_id(m, "domain_id")?
        .flatten()
        .or_else(|| caller.0.token.domain.as_ref().map(|d| d.id.clone()))
        .unwrap_or_else(|| "default".into());
    caller.authorize(
        svc,
        "identity:create_user",
        &json!({"target": {"user": {"domain_id": domain_id}}}),
    )?;
    svc.domain_get(&domain_id).await?;
    let default_project_id = opt_id(m, "default_project_id")?.flatten();
    if let Some(p) = &default_project_id {
        let proj = svc.project_row(p).await?;
        if proj.as_ref().is_some_and(|p| p.is_domain) {
            return Err(KsError(Error::validation(
                "Domains cannot be a user's default project.",
            )));
        }
    }
    let options = validate_options(m, USER_OPTIONS)?
        .map(crate::util::without_nulls)
        .unwrap_or_default();
    let enabled = opt_bool(m, "enabled")?.unwrap_or(true);
    let password = password_field(svc, m, "password")?.flatten();
    let now = now_micros();
    let (hash, pw_created, pw_expires) = match &password {
        Some(p) => {
            let (h, at, exp) = svc
                .new_password(None, p.clone(), PasswordSetter::Admin)
                .await?;
            (Some(h), Some(at), exp)
        }
        None => (None, None, None),
    };
    let row = user::Model {
        id: ferro_common::new_hex_id(),
        domain_id,
        name: name.clone(),
        enabled,
        password_hash: hash.clone(),
        password_created_at: pw_created,
        password_expires_at: pw_expires,
        default_project_id,
        extra: json_string(&extra_of(m, KNOWN)),
        options: json_string(&options),
        created_at: now,
        last_active_at: None,
        failed_auth_count: 0,
        failed_auth_at: None,
    };
    row.clone().into_active_model().insert(svc.conn()).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict(format!("Conflict occurred attempting to store user - Duplicate entry found with name {name} at domain ID {}.", row.domain_id))
        } else {
            db_err(e)
        }
    })?;
    if let (Some(h), Some(at)) = (&hash, pw_created) {
        svc.remember_password(&row.id, h, at).await?;
    }
    svc.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": views::user(&svc.v3_url(), &row)})),
    ))
}

fn user_target(id: &str, u: &Result<user::Model, Error>) -> Value {
    json!({"target": {"user": {"id": id, "domain_id": u.as_ref().ok().map(|u| u.domain_id.clone())}}, "user_id": id})
}

pub async fn show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let u = svc.user_get(&id).await;
    caller.authorize(svc, "identity:get_user", &user_target(&id, &u))?;
    Ok(Json(json!({"user": views::user(&svc.v3_url(), &u?)})))
}

pub async fn update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "user")?;
    let u = svc.user_get(&id).await;
    caller.authorize(svc, "identity:update_user", &user_target(&id, &u))?;
    let u = u?;
    if let Some(d) = m.get("domain_id")
        && d.as_str() != Some(u.domain_id.as_str())
    {
        return Err(KsError(Error::validation(
            "Update of `domain_id` is not allowed.",
        )));
    }
    if m.get("id").is_some_and(|v| v.as_str() != Some(id.as_str())) {
        return Err(KsError(Error::validation("Cannot change user ID")));
    }
    let mut am = u.clone().into_active_model();
    if let Some(n) = opt_name(m, "name", 255)? {
        am.name = Set(n);
    }
    let enabled = opt_bool(m, "enabled")?;
    if let Some(e) = enabled {
        am.enabled = Set(e);
    }
    if let Some(p) = opt_id(m, "default_project_id")? {
        am.default_project_id = Set(p);
    }
    let mut revoke = enabled == Some(false) && u.enabled;
    if let Some(p) = password_field(svc, m, "password")? {
        match p {
            Some(p) => {
                let (h, at, exp) = svc.new_password(Some(&u), p, PasswordSetter::Admin).await?;
                svc.remember_password(&u.id, &h, at).await?;
                am.password_hash = Set(Some(h));
                am.password_created_at = Set(Some(at));
                am.password_expires_at = Set(exp);
                am.failed_auth_count = Set(0);
                am.failed_auth_at = Set(None);
            }
            None => am.password_hash = Set(None),
        }
        revoke = true;
    }
    if let Some(opts) = validate_options(m, USER_OPTIONS)? {
        am.options = Set(merge_json(&u.options, opts));
    }
    let mut extra = json_map(&u.extra);
    for (k, v) in extra_of(m, KNOWN) {
        if v.is_null() {
            extra.remove(&k);
        } else {
            extra.insert(k, v);
        }
    }
    am.extra = Set(json_string(&extra));
    let row = am.update(svc.conn()).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict("Conflict occurred attempting to store user - Duplicate entry found with that name.")
        } else {
            db_err(e)
        }
    })?;
    svc.invalidate();
    if revoke {
        svc.revoke(RevEvent {
            user_id: Some(id),
            ..Default::default()
        })
        .await?;
    }
    Ok(Json(json!({"user": views::user(&svc.v3_url(), &row)})))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    let u = svc.user_get(&id).await;
    caller.authorize(svc, "identity:delete_user", &user_target(&id, &u))?;
    u?;
    let txn = svc.conn().begin().await.map_err(db_err)?;
    delete_user_rows(&txn, &id).await?;
    txn.commit().await.map_err(db_err)?;
    svc.revoke(RevEvent {
        user_id: Some(id),
        ..Default::default()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Self-service password change: authenticated by the original password.
pub async fn change_password(
    st: State,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "user")?;
    let original = password_field(svc, m, "original_password")?
        .flatten()
        .ok_or_else(|| Error::validation("'original_password' is a required property"))?;
    let new = password_field(svc, m, "password")?
        .flatten()
        .ok_or_else(|| Error::validation("'password' is a required property"))?;
    let u = svc.user_get(&id).await.map_err(|_| auth_failed())?;
    svc.check_lockout(&u)?;
    let ok = match &u.password_hash {
        Some(h) => verify_secret(original, h.clone()).await,
        None => false,
    };
    if !ok {
        svc.record_auth_failure(&u).await?;
        return Err(KsError(auth_failed()));
    }
    if !u.enabled {
        return Err(KsError(auth_failed()));
    }
    let (hash, at, expires) = svc
        .new_password(Some(&u), new, PasswordSetter::SelfService)
        .await?;
    svc.remember_password(&u.id, &hash, at).await?;
    let mut am = u.into_active_model();
    am.password_hash = Set(Some(hash));
    am.password_created_at = Set(Some(at));
    am.password_expires_at = Set(expires);
    am.update(svc.conn()).await.map_err(db_err)?;
    svc.revoke(RevEvent {
        user_id: Some(id),
        ..Default::default()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn groups(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let u = svc.user_get(&id).await;
    caller.authorize(svc, "identity:list_groups_for_user", &user_target(&id, &u))?;
    u?;
    let ids = svc.user_group_ids(&id).await?;
    let rows = group::Entity::find()
        .filter(group::Column::Id.is_in(ids))
        .order_by_asc(group::Column::Name)
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let base = svc.v3_url();
    // Keystone's `list_groups_for_user`: each membership's expiry (only
    // federated memberships expire; a local one's is null).
    let items = rows
        .iter()
        .map(|g| {
            let mut v = views::group(&base, g);
            v["membership_expires_at"] = Value::Null;
            v
        })
        .collect();
    Ok(Json(views::list(
        &base,
        &format!("users/{id}/groups"),
        "groups",
        items,
        false,
    )))
}

/// Projects on which the user has an effective role.
pub async fn projects_of_user(
    svc: &crate::IdentityService,
    user_id: &str,
) -> Result<Vec<project::Model>, Error> {
    let mut actors = vec![user_id.to_string()];
    actors.extend(svc.user_group_ids(user_id).await?);
    let rows = assignment::Entity::find()
        .filter(assignment::Column::ActorId.is_in(actors))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let direct: BTreeSet<String> = rows
        .iter()
        .filter(|a| !a.inherited && (a.kind == "UserProject" || a.kind == "GroupProject"))
        .map(|a| a.target_id.clone())
        .collect();
    let inherited: BTreeSet<String> = rows
        .iter()
        .filter(|a| a.inherited)
        .map(|a| a.target_id.clone())
        .collect();
    let mut out = Vec::new();
    let candidates = if inherited.is_empty() {
        project::Entity::find()
            .filter(project::Column::Id.is_in(direct.iter().cloned().collect::<Vec<_>>()))
            .all(svc.conn())
            .await
            .map_err(db_err)?
    } else {
        project::Entity::find()
            .filter(project::Column::IsDomain.eq(false))
            .all(svc.conn())
            .await
            .map_err(db_err)?
    };
    for p in candidates {
        if p.is_domain {
            continue;
        }
        let mut include = direct.contains(&p.id);
        if !include && !inherited.is_empty() {
            include = svc
                .project_ancestors(&p)
                .await?
                .iter()
                .any(|a| inherited.contains(&a.id));
        }
        if include {
            out.push(p);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub async fn projects(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    q: Query,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let u = svc.user_get(&id).await;
    caller.authorize(svc, "identity:list_user_projects", &user_target(&id, &u))?;
    u?;
    let mut rows = projects_of_user(svc, &id).await?;
    if let Some(e) = q.0.get("enabled") {
        let want = query_bool(e);
        rows.retain(|p| p.enabled == want);
    }
    if let Some(n) = q.0.get("name") {
        rows.retain(|p| p.name == *n);
    }
    let base = svc.v3_url();
    let items = rows.iter().map(|p| views::project(&base, p, &[])).collect();
    Ok(Json(views::list(
        &base,
        &format!("users/{id}/projects"),
        "projects",
        items,
        false,
    )))
}
