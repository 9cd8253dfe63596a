//! Unified limits: `/v3/registered_limits`, `/v3/limits`, `/v3/limits/model`
//! (the flat enforcement model).
use super::{Caller, Query, State};
use crate::error::{KsError, KsResult};
use crate::util::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use ferro_common::Error;
use ferro_db::db_err;
use ferro_db::entity::identity::*;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set, TransactionTrait,
};
use serde_json::{Map, Value, json};

fn reg_view(base: &str, r: &registered_limit::Model) -> Value {
    json!({"id": r.id, "service_id": r.service_id, "region_id": r.region_id, "resource_name": r.resource_name,
           "default_limit": r.default_limit, "description": r.description,
           "links": {"self": format!("{base}/registered_limits/{}", r.id)}})
}

fn limit_view(base: &str, l: &limit::Model) -> Value {
    json!({"id": l.id, "project_id": l.project_id, "domain_id": l.domain_id, "service_id": l.service_id,
           "region_id": l.region_id, "resource_name": l.resource_name, "resource_limit": l.resource_limit,
           "description": l.description, "links": {"self": format!("{base}/limits/{}", l.id)}})
}

fn int_field(m: &Map<String, Value>, f: &str) -> Result<Option<i64>, Error> {
    match m.get(f) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= -1)
            .map(Some)
            .ok_or_else(|| invalid(f, "must be an integer >= -1.")),
    }
}

fn items<'a>(body: &'a Value, key: &str) -> Result<&'a Vec<Value>, Error> {
    match body.get(key) {
        Some(Value::Array(a)) if !a.is_empty() => Ok(a),
        Some(_) => Err(invalid(key, "must be a non-empty array.")),
        None => Err(Error::validation(format!("'{key}' is a required property"))),
    }
}

async fn check_service_region(
    svc: &crate::IdentityService,
    service_id: &str,
    region: &Option<String>,
) -> Result<(), Error> {
    if service::Entity::find_by_id(service_id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .is_none()
    {
        return Err(Error::validation(format!(
            "Invalid service_id: {service_id}."
        )));
    }
    if let Some(r) = region
        && region::Entity::find_by_id(r.clone())
            .one(svc.conn())
            .await
            .map_err(db_err)?
            .is_none()
    {
        return Err(Error::validation(format!("Invalid region_id: {r}.")));
    }
    Ok(())
}

pub async fn registered_list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_registered_limits", &json!({}))?;
    let mut sel = registered_limit::Entity::find();
    if let Some(v) = q.0.get("service_id") {
        sel = sel.filter(registered_limit::Column::ServiceId.eq(v.as_str()));
    }
    if let Some(v) = q.0.get("region_id") {
        sel = sel.filter(registered_limit::Column::RegionId.eq(v.as_str()));
    }
    if let Some(v) = q.0.get("resource_name") {
        sel = sel.filter(registered_limit::Column::ResourceName.eq(v.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(crate::views::list(
        &base,
        "registered_limits",
        "registered_limits",
        rows.iter().map(|r| reg_view(&base, r)).collect(),
        false,
    )))
}

pub async fn registered_create(
    st: State,
    caller: Caller,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_registered_limits", &json!({}))?;
    let body = parse_body(&body)?;
    let mut rows = Vec::new();
    for it in items(&body, "registered_limits")? {
        let m = it
            .as_object()
            .ok_or_else(|| invalid_type("registered_limits", "object"))?;
        let service_id = opt_id(m, "service_id")?
            .flatten()
            .ok_or_else(|| Error::validation("'service_id' is a required property"))?;
        let region_id = opt_str(m, "region_id", 255, true)?.flatten();
        check_service_region(svc, &service_id, &region_id).await?;
        let resource_name = req_name(m, "resource_name", 255)?;
        let default_limit = int_field(m, "default_limit")?
            .ok_or_else(|| Error::validation("'default_limit' is a required property"))?;
        let dup = registered_limit::Entity::find()
            .filter(registered_limit::Column::ServiceId.eq(service_id.as_str()))
            .filter(registered_limit::Column::ResourceName.eq(resource_name.as_str()))
            .all(svc.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .any(|r| r.region_id == region_id);
        if dup
            || rows.iter().any(|r: &registered_limit::Model| {
                r.service_id == service_id
                    && r.resource_name == resource_name
                    && r.region_id == region_id
            })
        {
            return Err(KsError(Error::conflict(format!(
                "Duplicate entry found with resource_name {resource_name}."
            ))));
        }
        rows.push(registered_limit::Model {
            id: ferro_common::new_hex_id(),
            service_id,
            region_id,
            resource_name,
            default_limit,
            description: opt_str(m, "description", 65_535, true)?.flatten(),
        });
    }
    let txn = svc.conn().begin().await.map_err(db_err)?;
    for r in &rows {
        r.clone()
            .into_active_model()
            .insert(&txn)
            .await
            .map_err(db_err)?;
    }
    txn.commit().await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"registered_limits": rows.iter().map(|r| reg_view(&base, r)).collect::<Vec<_>>()}),
        ),
    ))
}

async fn reg_get(svc: &crate::IdentityService, id: &str) -> Result<registered_limit::Model, Error> {
    registered_limit::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("registered limit", id))
}

pub async fn registered_show(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:get_registered_limit", &json!({}))?;
    Ok(Json(
        json!({"registered_limit": reg_view(&svc.v3_url(), &reg_get(svc, &id).await?)}),
    ))
}

pub async fn registered_update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:update_registered_limit", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "registered_limit")?;
    let r = reg_get(svc, &id).await?;
    let mut am = r.into_active_model();
    if let Some(d) = int_field(m, "default_limit")? {
        am.default_limit = Set(d);
    }
    if let Some(d) = opt_str(m, "description", 65_535, true)? {
        am.description = Set(d);
    }
    if let Some(n) = opt_name(m, "resource_name", 255)? {
        am.resource_name = Set(n);
    }
    let row = am.update(svc.conn()).await.map_err(db_err)?;
    Ok(Json(
        json!({"registered_limit": reg_view(&svc.v3_url(), &row)}),
    ))
}

pub async fn registered_delete(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:delete_registered_limit", &json!({}))?;
    let r = reg_get(svc, &id).await?;
    let in_use = limit::Entity::find()
        .filter(limit::Column::ServiceId.eq(r.service_id.as_str()))
        .filter(limit::Column::ResourceName.eq(r.resource_name.as_str()))
        .all(svc.conn())
        .await
        .map_err(db_err)?
        .into_iter()
        .any(|l| l.region_id == r.region_id);
    if in_use {
        return Err(KsError(Error::forbidden(
            "Cannot delete a registered limit that project limits reference.",
        )));
    }
    registered_limit::Entity::delete_by_id(id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn model(st: State, caller: Caller) -> KsResult<Json<Value>> {
    caller.authorize(&st.0, "identity:get_limit_model", &json!({}))?;
    Ok(Json(
        json!({"model": {"name": "flat", "description": "Limit enforcement and validation does not take project hierarchy into consideration."}}),
    ))
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_limits", &json!({}))?;
    let mut sel = limit::Entity::find();
    let admin = svc
        .policy
        .enforce("rule:admin_required", &json!({}), &caller.0.creds)
        || caller.0.is_admin()
        || caller.0.is_system();
    if !admin {
        // Project users see the limits of their own project only.
        match caller.0.project_id() {
            Some(p) => sel = sel.filter(limit::Column::ProjectId.eq(p)),
            None => {
                sel = sel.filter(
                    limit::Column::DomainId.eq(caller
                        .0
                        .token
                        .domain
                        .as_ref()
                        .map(|d| d.id.clone())
                        .unwrap_or_default()),
                )
            }
        }
    }
    for (k, col) in [
        ("service_id", limit::Column::ServiceId),
        ("region_id", limit::Column::RegionId),
        ("resource_name", limit::Column::ResourceName),
        ("project_id", limit::Column::ProjectId),
        ("domain_id", limit::Column::DomainId),
    ] {
        if let Some(v) = q.0.get(k) {
            sel = sel.filter(col.eq(v.as_str()));
        }
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(crate::views::list(
        &base,
        "limits",
        "limits",
        rows.iter().map(|l| limit_view(&base, l)).collect(),
        false,
    )))
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_limits", &json!({}))?;
    let body = parse_body(&body)?;
    let mut rows = Vec::new();
    for it in items(&body, "limits")? {
        let m = it
            .as_object()
            .ok_or_else(|| invalid_type("limits", "object"))?;
        let project_id = opt_id(m, "project_id")?.flatten();
        let domain_id = opt_id(m, "domain_id")?.flatten();
        if project_id.is_some() == domain_id.is_some() {
            return Err(KsError(Error::validation(
                "Exactly one of project_id or domain_id is required.",
            )));
        }
        if let Some(p) = &project_id {
            svc.project_get(p)
                .await
                .map_err(|_| Error::validation(format!("Invalid project_id: {p}.")))?;
        }
        if let Some(d) = &domain_id {
            svc.domain_get(d)
                .await
                .map_err(|_| Error::validation(format!("Invalid domain_id: {d}.")))?;
        }
        let service_id = opt_id(m, "service_id")?
            .flatten()
            .ok_or_else(|| Error::validation("'service_id' is a required property"))?;
        let region_id = opt_str(m, "region_id", 255, true)?.flatten();
        check_service_region(svc, &service_id, &region_id).await?;
        let resource_name = req_name(m, "resource_name", 255)?;
        let resource_limit = int_field(m, "resource_limit")?
            .ok_or_else(|| Error::validation("'resource_limit' is a required property"))?;
        let registered = registered_limit::Entity::find()
            .filter(registered_limit::Column::ServiceId.eq(service_id.as_str()))
            .filter(registered_limit::Column::ResourceName.eq(resource_name.as_str()))
            .all(svc.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .any(|r| r.region_id == region_id);
        if !registered {
            return Err(KsError(Error::forbidden(format!(
                "No registered limit with matching service_id, region_id and resource_name {resource_name}."
            ))));
        }
        let dup = limit::Entity::find()
            .filter(limit::Column::ServiceId.eq(service_id.as_str()))
            .filter(limit::Column::ResourceName.eq(resource_name.as_str()))
            .all(svc.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .any(|l| {
                l.region_id == region_id && l.project_id == project_id && l.domain_id == domain_id
            });
        if dup {
            return Err(KsError(Error::conflict(format!(
                "Duplicate entry found with resource_name {resource_name}."
            ))));
        }
        rows.push(limit::Model {
            id: ferro_common::new_hex_id(),
            project_id,
            domain_id,
            service_id,
            region_id,
            resource_name,
            resource_limit,
            description: opt_str(m, "description", 65_535, true)?.flatten(),
        });
    }
    let txn = svc.conn().begin().await.map_err(db_err)?;
    for r in &rows {
        r.clone()
            .into_active_model()
            .insert(&txn)
            .await
            .map_err(db_err)?;
    }
    txn.commit().await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok((
        StatusCode::CREATED,
        Json(json!({"limits": rows.iter().map(|l| limit_view(&base, l)).collect::<Vec<_>>()})),
    ))
}

async fn get(svc: &crate::IdentityService, id: &str) -> Result<limit::Model, Error> {
    limit::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("limit", id))
}

pub async fn show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let l = get(svc, &id).await;
    let t = json!({"target": {"limit": {"project_id": l.as_ref().ok().and_then(|l| l.project_id.clone()), "domain_id": l.as_ref().ok().and_then(|l| l.domain_id.clone())}}});
    caller.authorize(svc, "identity:get_limit", &t)?;
    Ok(Json(json!({"limit": limit_view(&svc.v3_url(), &l?)})))
}

pub async fn update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:update_limit", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "limit")?;
    let l = get(svc, &id).await?;
    let mut am = l.into_active_model();
    if let Some(v) = int_field(m, "resource_limit")? {
        am.resource_limit = Set(v);
    }
    if let Some(d) = opt_str(m, "description", 65_535, true)? {
        am.description = Set(d);
    }
    let row = am.update(svc.conn()).await.map_err(db_err)?;
    Ok(Json(json!({"limit": limit_view(&svc.v3_url(), &row)})))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:delete_limit", &json!({}))?;
    get(svc, &id).await?;
    limit::Entity::delete_by_id(id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}
