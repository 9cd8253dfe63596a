//! Application credentials and access rules.
use super::{Caller, Query, State};
use crate::error::{KsError, KsResult};
use crate::resolve::ScopeKey;
use crate::tokens::hash_secret;
use crate::util::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use base64::Engine;
use ferro_common::Error;
use ferro_db::entity::identity::*;
use ferro_db::{db_err, micros_to_time, now_micros};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use serde_json::{Value, json};

/// Role ids stored in an application credential's `roles` JSON.
pub fn role_ids(roles_json: &str) -> Vec<String> {
    serde_json::from_str::<Vec<Value>>(roles_json)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// A time as Keystone's JSON serializer writes a datetime (oslo's
/// `jsonutils`: six fractional digits, no zone).
fn isoformat(us: i64) -> String {
    micros_to_time(us)
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

async fn rules_view(svc: &crate::IdentityService, ids_json: &str) -> Result<Vec<Value>, Error> {
    let ids: Vec<String> = serde_json::from_str(ids_json).unwrap_or_default();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = access_rule::Entity::find()
        .filter(access_rule::Column::Id.is_in(ids))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(rows.iter().map(rule_view).collect())
}

fn rule_view(r: &access_rule::Model) -> Value {
    json!({"id": r.id, "path": r.path, "method": r.method, "service": r.service})
}

/// An access rule as its own resource shows it: with Keystone's
/// self-link (`<base>/v3/access_rules/<id>`, as its `wrap_member` makes it).
fn rule_resource(base: &str, r: &access_rule::Model) -> Value {
    let mut v = rule_view(r);
    v["links"] = json!({"self": format!("{base}/access_rules/{}", r.id)});
    v
}

async fn view(svc: &crate::IdentityService, c: &app_cred::Model) -> Result<Value, Error> {
    // Keystone shows each role as `get_role` returns it (no links).
    let ids = role_ids(&c.roles);
    let rows = role::Entity::find()
        .filter(role::Column::Id.is_in(ids.clone()))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let base = svc.v3_url();
    let roles: Vec<Value> = ids
        .iter()
        .filter_map(|id| rows.iter().find(|r| &r.id == id))
        .map(|r| {
            let mut v = crate::views::role(&base, r);
            if let Some(o) = v.as_object_mut() {
                o.remove("links");
            }
            v
        })
        .collect();
    let mut v = json!({
        "id": c.id, "name": c.name, "description": c.description, "user_id": c.user_id, "project_id": c.project_id,
        "system": c.system, "roles": roles, "expires_at": c.expires_at.map(isoformat), "unrestricted": c.unrestricted,
        "links": {"self": format!("{base}/users/{}/application_credentials/{}", c.user_id, c.id)},
    });
    // Keystone's `_to_dict` adds access_rules only when there are some.
    let rules = rules_view(svc, &c.access_rules).await?;
    if !rules.is_empty() {
        v["access_rules"] = json!(rules);
    }
    Ok(v)
}

fn user_target(uid: &str) -> Value {
    json!({"user_id": uid, "target": {"user": {"id": uid}}})
}

pub async fn create(
    st: State,
    caller: Caller,
    Path(uid): Path<String>,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(
        svc,
        "identity:create_application_credential",
        &user_target(&uid),
    )?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "application_credential")?;
    let name = req_name(m, "name", 255)?;
    let t = &caller.0.token;
    let project = t
        .project
        .as_ref()
        .ok_or_else(|| Error::forbidden("Application credentials need a project-scoped token."))?;
    if t.app_cred_id.is_some() {
        // Keystone lets only unrestricted app creds create others.
        let ac = app_cred::Entity::find_by_id(t.app_cred_id.clone().unwrap_or_default())
            .one(svc.conn())
            .await
            .map_err(db_err)?;
        if !ac.is_some_and(|a| a.unrestricted) {
            return Err(KsError(Error::forbidden(
                "A restricted application credential cannot create application credentials.",
            )));
        }
    }
    // Roles are checked against the user's current roles on the project.
    let current = svc
        .resolve_scope(&ScopeKey::Project(uid.clone(), project.id.clone()))
        .await?;
    // No roles (absent, null or []): the caller's current roles, as Keystone.
    let roles: Vec<Value> = match m
        .get("roles")
        .filter(|r| r.as_array().is_none_or(|a| !a.is_empty()))
    {
        None | Some(Value::Null) => current
            .roles
            .iter()
            .map(|r| json!({"id": r.id, "name": r.name, "domain_id": null}))
            .collect(),
        Some(Value::Array(want)) => {
            let mut out = Vec::new();
            for w in want {
                let found = if let Some(id) = w.get("id").and_then(Value::as_str) {
                    current.roles.iter().find(|r| r.id == id)
                } else if let Some(n) = w.get("name").and_then(Value::as_str) {
                    current.roles.iter().find(|r| r.name == n)
                } else {
                    return Err(KsError(invalid(
                        "roles",
                        "each role needs an id or a name.",
                    )));
                };
                let r = found.ok_or_else(|| {
                    Error::forbidden("The user does not have the requested role on the project.")
                })?;
                out.push(json!({"id": r.id, "name": r.name, "domain_id": null}));
            }
            out
        }
        Some(_) => return Err(KsError(invalid_type("roles", "array"))),
    };
    if roles.is_empty() {
        return Err(KsError(Error::forbidden(
            "The user has no roles on the project.",
        )));
    }
    let expires_at = match m.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let t = ferro_common::time::parse_time(s)
                .ok_or_else(|| invalid("expires_at", "is not a valid timestamp."))?;
            if t <= chrono::Utc::now() {
                return Err(KsError(Error::validation(
                    "The expiration time is in the past.",
                )));
            }
            Some(t.timestamp_micros())
        }
        Some(_) => return Err(KsError(invalid_type("expires_at", "string"))),
    };
    // Absent, null or "": Keystone generates one.
    let secret = match opt_str(m, "secret", 4096, true)?
        .flatten()
        .filter(|s| !s.is_empty())
    {
        Some(s) => s,
        None => {
            let bytes: [u8; 64] = rand::random();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    let mut rule_ids = Vec::new();
    if let Some(rules) = m.get("access_rules") {
        let Value::Array(rules) = rules else {
            return Err(KsError(invalid_type("access_rules", "array")));
        };
        for r in rules {
            rule_ids.push(ensure_rule(svc, &uid, r).await?);
        }
    }
    let row = app_cred::Model {
        id: ferro_common::new_hex_id(),
        name: name.clone(),
        secret_hash: hash_secret(secret.clone(), svc.cfg.identity.password_hash_rounds).await?,
        description: opt_str(m, "description", 65_535, true)?.flatten(),
        user_id: uid.clone(),
        project_id: Some(project.id.clone()),
        system: None,
        expires_at,
        unrestricted: opt_bool(m, "unrestricted")?.unwrap_or(false),
        roles: Value::Array(roles).to_string(),
        access_rules: json!(rule_ids).to_string(),
        created_at: now_micros(),
    };
    row.clone().into_active_model().insert(svc.conn()).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict(format!("Conflict occurred attempting to store application credential - Duplicate entry found with name {name}."))
        } else {
            db_err(e)
        }
    })?;
    let mut v = view(svc, &row).await?;
    v["secret"] = json!(secret);
    Ok((
        StatusCode::CREATED,
        Json(json!({"application_credential": v})),
    ))
}

async fn ensure_rule(svc: &crate::IdentityService, uid: &str, r: &Value) -> Result<String, Error> {
    if let Some(id) = r.get("id").and_then(Value::as_str) {
        let row = access_rule::Entity::find_by_id(id.to_string())
            .one(svc.conn())
            .await
            .map_err(db_err)?;
        return match row {
            Some(x) if x.user_id == uid => Ok(x.id),
            _ => Err(Error::not_found("access_rule", id)),
        };
    }
    let field = |k: &str| -> Result<String, Error> {
        r.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid("access_rules", &format!("'{k}' is required.")))
    };
    let (service, path, method) = (field("service")?, field("path")?, field("method")?);
    if !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(invalid("access_rules", "method must be an HTTP method."));
    }
    let existing = access_rule::Entity::find()
        .filter(access_rule::Column::UserId.eq(uid))
        .filter(access_rule::Column::Service.eq(service.as_str()))
        .filter(access_rule::Column::Path.eq(path.as_str()))
        .filter(access_rule::Column::Method.eq(method.as_str()))
        .one(svc.conn())
        .await
        .map_err(db_err)?;
    if let Some(x) = existing {
        return Ok(x.id);
    }
    let row = access_rule::Model {
        id: ferro_common::new_hex_id(),
        user_id: uid.into(),
        service,
        path,
        method,
    };
    row.clone()
        .into_active_model()
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(row.id)
}

pub async fn list(
    st: State,
    caller: Caller,
    Path(uid): Path<String>,
    q: Query,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(
        svc,
        "identity:list_application_credentials",
        &user_target(&uid),
    )?;
    svc.user_get(&uid).await?;
    let mut sel = app_cred::Entity::find()
        .filter(app_cred::Column::UserId.eq(uid.as_str()))
        .order_by_asc(app_cred::Column::Name);
    if let Some(n) = q.0.get("name") {
        sel = sel.filter(app_cred::Column::Name.eq(n.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let mut items = Vec::new();
    for r in &rows {
        items.push(view(svc, r).await?);
    }
    Ok(Json(crate::views::list(
        &svc.v3_url(),
        &format!("users/{uid}/application_credentials"),
        "application_credentials",
        items,
        false,
    )))
}

async fn get(svc: &crate::IdentityService, uid: &str, id: &str) -> Result<app_cred::Model, Error> {
    match app_cred::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
    {
        Some(c) if c.user_id == uid => Ok(c),
        _ => Err(Error::not_found("application credential", id)),
    }
}

pub async fn show(
    st: State,
    caller: Caller,
    Path((uid, id)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(
        svc,
        "identity:get_application_credential",
        &user_target(&uid),
    )?;
    let c = get(svc, &uid, &id).await?;
    Ok(Json(
        json!({"application_credential": view(svc, &c).await?}),
    ))
}

pub async fn remove(
    st: State,
    caller: Caller,
    Path((uid, id)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(
        svc,
        "identity:delete_application_credential",
        &user_target(&uid),
    )?;
    get(svc, &uid, &id).await?;
    app_cred::Entity::delete_by_id(id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    // Tokens issued from it stop validating (their app cred is gone).
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn access_rules_list(
    st: State,
    caller: Caller,
    Path(uid): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_access_rules", &user_target(&uid))?;
    let rows = access_rule::Entity::find()
        .filter(access_rule::Column::UserId.eq(uid.as_str()))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let base = svc.v3_url();
    let items = rows.iter().map(|r| rule_resource(&base, r)).collect();
    Ok(Json(crate::views::list(
        &base,
        &format!("users/{uid}/access_rules"),
        "access_rules",
        items,
        false,
    )))
}

async fn rule_get(
    svc: &crate::IdentityService,
    uid: &str,
    id: &str,
) -> Result<access_rule::Model, Error> {
    match access_rule::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
    {
        Some(r) if r.user_id == uid => Ok(r),
        _ => Err(Error::not_found("access_rule", id)),
    }
}

pub async fn access_rule_show(
    st: State,
    caller: Caller,
    Path((uid, id)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:get_access_rule", &user_target(&uid))?;
    let r = rule_get(svc, &uid, &id).await?;
    Ok(Json(
        json!({"access_rule": rule_resource(&svc.v3_url(), &r)}),
    ))
}

pub async fn access_rule_delete(
    st: State,
    caller: Caller,
    Path((uid, id)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:delete_access_rule", &user_target(&uid))?;
    rule_get(svc, &uid, &id).await?;
    let creds = app_cred::Entity::find()
        .filter(app_cred::Column::UserId.eq(uid.as_str()))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let in_use = creds.iter().any(|c| {
        serde_json::from_str::<Vec<String>>(&c.access_rules)
            .unwrap_or_default()
            .contains(&id)
    });
    if in_use {
        return Err(KsError(Error::forbidden(
            "Cannot delete an access rule that is used by an application credential.",
        )));
    }
    access_rule::Entity::delete_by_id(id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}
