//! OS-TRUST: delegation of a trustor's roles on a project to a trustee.
use super::{Caller, Query, State};
use crate::error::{KsError, KsResult};
use crate::resolve::ScopeKey;
use crate::tokens::RevEvent;
use crate::util::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use ferro_common::Error;
use ferro_db::entity::identity::*;
use ferro_db::{db_err, micros_to_time, now_micros};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde_json::{Value, json};

/// A trust that exists, is not deleted or expired and has uses left.
pub async fn trust_usable(svc: &crate::IdentityService, id: &str) -> Result<trust::Model, Error> {
    let t = trust::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?;
    match t {
        Some(t)
            if !t.deleted
                && t.expires_at.is_none_or(|e| e > now_micros())
                && t.remaining_uses.is_none_or(|u| u > 0) =>
        {
            Ok(t)
        }
        _ => Err(Error::not_found("trust", id)),
    }
}

pub async fn consume_use(svc: &crate::IdentityService, t: &trust::Model) -> Result<(), Error> {
    if let Some(n) = t.remaining_uses {
        let mut am = t.clone().into_active_model();
        am.remaining_uses = Set(Some(n - 1));
        am.update(svc.conn()).await.map_err(db_err)?;
        svc.invalidate();
    }
    Ok(())
}

async fn roles_of(
    svc: &crate::IdentityService,
    t: &trust::Model,
) -> Result<Vec<role::Model>, Error> {
    let ids: Vec<String> = serde_json::from_str(&t.roles).unwrap_or_default();
    role::Entity::find()
        .filter(role::Column::Id.is_in(ids))
        .all(svc.conn())
        .await
        .map_err(db_err)
}

/// A trust as Keystone's list shows it: no roles.
fn summary_view(base: &str, t: &trust::Model) -> Value {
    json!({
        "id": t.id, "trustor_user_id": t.trustor_user_id, "trustee_user_id": t.trustee_user_id,
        "project_id": t.project_id, "impersonation": t.impersonation,
        // Keystone's `isotime(subsecond=True)` after zeroing the microseconds.
        "expires_at": t.expires_at.map(|e| micros_to_time(e).format("%Y-%m-%dT%H:%M:%S.000000Z").to_string()),
        "remaining_uses": t.remaining_uses, "redelegation_count": t.redelegation_count.unwrap_or(0),
        "redelegated_trust_id": t.redelegated_trust_id, "deleted_at": null,
        "links": {"self": format!("{base}/OS-TRUST/trusts/{}", t.id)},
    })
}

/// A trust with its roles (each the whole role, as `GET /v3/roles/{id}`).
async fn view(svc: &crate::IdentityService, t: &trust::Model) -> Result<Value, Error> {
    let base = svc.v3_url();
    let roles = roles_of(svc, t).await?;
    let mut v = summary_view(&base, t);
    v["roles"] = json!(
        roles
            .iter()
            .map(|r| crate::views::role(&base, r))
            .collect::<Vec<_>>()
    );
    v["roles_links"] = json!({"self": format!("{base}/OS-TRUST/trusts/{}/roles", t.id), "previous": null, "next": null});
    Ok(v)
}

fn target(t: &trust::Model) -> Value {
    json!({"target": {"trust": {"trustor_user_id": t.trustor_user_id, "trustee_user_id": t.trustee_user_id}}})
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "trust")?;
    let trustor = opt_id(m, "trustor_user_id")?
        .flatten()
        .ok_or_else(|| Error::validation("'trustor_user_id' is a required property"))?;
    let trustee = opt_id(m, "trustee_user_id")?
        .flatten()
        .ok_or_else(|| Error::validation("'trustee_user_id' is a required property"))?;
    let impersonation = opt_bool(m, "impersonation")?
        .ok_or_else(|| Error::validation("'impersonation' is a required property"))?;
    caller.authorize(
        svc,
        "identity:create_trust",
        &json!({"trust": {"trustor_user_id": trustor}}),
    )?;
    if caller.0.token.trust.is_some() || caller.0.token.app_cred_id.is_some() {
        return Err(KsError(Error::forbidden(
            "Trusts cannot be created with this token.",
        )));
    }
    svc.user_get(&trustee)
        .await
        .map_err(|_| Error::not_found("user", &trustee))?;
    let expires_at = match m.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            ferro_common::time::parse_time(s)
                .ok_or_else(|| invalid("expires_at", "is not a valid timestamp."))?
                .timestamp_micros(),
        ),
        Some(_) => return Err(KsError(invalid_type("expires_at", "string"))),
    };
    if expires_at.is_some_and(|e| e <= now_micros()) {
        return Err(KsError(Error::validation(
            "The expiration time is in the past.",
        )));
    }
    let remaining_uses = match m.get("remaining_uses") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("remaining_uses", "must be a positive integer."))?,
        ),
    };
    let project_id = opt_id(m, "project_id")?.flatten();
    let mut role_ids = Vec::new();
    if let Some(p) = &project_id {
        let current = svc
            .resolve_scope(&ScopeKey::Project(trustor.clone(), p.clone()))
            .await?;
        let wanted = match m.get("roles") {
            Some(Value::Array(a)) => a.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(KsError(invalid_type("roles", "array"))),
        };
        if wanted.is_empty() {
            return Err(KsError(Error::forbidden(
                "At least one role should be specified",
            )));
        }
        for w in &wanted {
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
                Error::forbidden("The trustor does not have the requested role on the project.")
            })?;
            role_ids.push(r.id.clone());
        }
    }
    let row = trust::Model {
        id: ferro_common::new_hex_id(),
        trustor_user_id: trustor,
        trustee_user_id: trustee,
        project_id,
        impersonation,
        expires_at,
        remaining_uses,
        roles: json!(role_ids).to_string(),
        redelegated_trust_id: None,
        redelegation_count: Some(0),
        deleted: false,
        extra: "{}".into(),
    };
    row.clone()
        .into_active_model()
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"trust": view(svc, &row).await?})),
    ))
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let trustor = q.0.get("trustor_user_id");
    let trustee = q.0.get("trustee_user_id");
    match (trustor, trustee) {
        (Some(t), _) => caller.authorize(
            svc,
            "identity:list_trusts_for_trustor",
            &json!({"target": {"trust": {"trustor_user_id": t}}}),
        )?,
        (None, Some(t)) => caller.authorize(
            svc,
            "identity:list_trusts_for_trustee",
            &json!({"target": {"trust": {"trustee_user_id": t}}}),
        )?,
        (None, None) => caller.authorize(svc, "identity:list_trusts", &json!({}))?,
    }
    let mut sel = trust::Entity::find().filter(trust::Column::Deleted.eq(false));
    if let Some(t) = trustor {
        sel = sel.filter(trust::Column::TrustorUserId.eq(t.as_str()));
    }
    if let Some(t) = trustee {
        sel = sel.filter(trust::Column::TrusteeUserId.eq(t.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    // Keystone lists every trust not deleted, expired or used up ones too.
    let base = svc.v3_url();
    let items: Vec<Value> = rows.iter().map(|t| summary_view(&base, t)).collect();
    Ok(Json(crate::views::list(
        &svc.v3_url(),
        "OS-TRUST/trusts",
        "trusts",
        items,
        false,
    )))
}

async fn get_visible(
    svc: &crate::IdentityService,
    caller: &Caller,
    id: &str,
    rule: &str,
) -> Result<trust::Model, Error> {
    let t = trust_usable(svc, id).await?;
    caller.authorize(svc, rule, &target(&t))?;
    Ok(t)
}

pub async fn show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let t = get_visible(svc, &caller, &id, "identity:get_trust").await?;
    Ok(Json(json!({"trust": view(svc, &t).await?})))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    let t = get_visible(svc, &caller, &id, "identity:delete_trust").await?;
    let mut am = t.into_active_model();
    am.deleted = Set(true);
    am.update(svc.conn()).await.map_err(db_err)?;
    svc.revoke(RevEvent {
        trust_id: Some(id),
        ..Default::default()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn roles(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let t = get_visible(svc, &caller, &id, "identity:list_roles_for_trust").await?;
    let base = svc.v3_url();
    let roles = roles_of(svc, &t).await?;
    Ok(Json(crate::views::list(
        &base,
        &format!("OS-TRUST/trusts/{id}/roles"),
        "roles",
        roles.iter().map(|r| crate::views::role(&base, r)).collect(),
        false,
    )))
}

pub async fn role_check(
    st: State,
    caller: Caller,
    Path((id, rid)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let t = get_visible(svc, &caller, &id, "identity:get_role_for_trust").await?;
    let roles = roles_of(svc, &t).await?;
    let r = roles
        .iter()
        .find(|r| r.id == rid)
        .ok_or_else(|| Error::not_found("role", &rid))?;
    Ok(Json(json!({"role": crate::views::role(&svc.v3_url(), r)})))
}
