//! `/v3/policies`: opaque policy blobs stored for other services.
use super::{Caller, Query, State};
use crate::error::KsResult;
use crate::util::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use ferro_common::Error;
use ferro_db::db_err;
use ferro_db::entity::identity::*;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde_json::{Value, json};

const KNOWN: &[&str] = &["id", "type", "blob", "links"];

fn view(base: &str, p: &policy::Model) -> Value {
    let mut v = json!({"id": p.id, "type": p.policy_type, "blob": p.blob, "links": {"self": format!("{base}/policies/{}", p.id)}});
    for (k, x) in json_map(&p.extra) {
        v[k] = x;
    }
    v
}

async fn get(svc: &crate::IdentityService, id: &str) -> Result<policy::Model, Error> {
    policy::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("policy", id))
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_policies", &json!({}))?;
    let mut sel = policy::Entity::find();
    if let Some(t) = q.0.get("type") {
        sel = sel.filter(policy::Column::PolicyType.eq(t.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(crate::views::list(
        &base,
        "policies",
        "policies",
        rows.iter().map(|p| view(&base, p)).collect(),
        false,
    )))
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_policy", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "policy")?;
    let row = policy::Model {
        id: ferro_common::new_hex_id(),
        policy_type: req_name(m, "type", 255)?,
        blob: opt_str(m, "blob", 1 << 20, false)?
            .flatten()
            .ok_or_else(|| Error::validation("'blob' is a required property"))?,
        extra: json_string(&extra_of(m, KNOWN)),
    };
    row.clone()
        .into_active_model()
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"policy": view(&svc.v3_url(), &row)})),
    ))
}

pub async fn show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:get_policy", &json!({}))?;
    Ok(Json(
        json!({"policy": view(&svc.v3_url(), &get(svc, &id).await?)}),
    ))
}

pub async fn update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:update_policy", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "policy")?;
    let p = get(svc, &id).await?;
    let mut am = p.clone().into_active_model();
    if let Some(t) = opt_name(m, "type", 255)? {
        am.policy_type = Set(t);
    }
    if let Some(b) = opt_str(m, "blob", 1 << 20, false)?.flatten() {
        am.blob = Set(b);
    }
    let mut extra = json_map(&p.extra);
    extra.extend(extra_of(m, KNOWN));
    am.extra = Set(json_string(&extra));
    let row = am.update(svc.conn()).await.map_err(db_err)?;
    Ok(Json(json!({"policy": view(&svc.v3_url(), &row)})))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:delete_policy", &json!({}))?;
    get(svc, &id).await?;
    policy::Entity::delete_by_id(id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}
