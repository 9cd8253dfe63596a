//! `/v3/services`, `/v3/endpoints`, `/v3/regions`.
use super::{Caller, Query, State};
use crate::error::{KsError, KsResult};
use crate::util::*;
use crate::views;
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
use serde_json::{Value, json};

const SERVICE_KNOWN: &[&str] = &["id", "type", "enabled", "links"];
const ENDPOINT_KNOWN: &[&str] = &[
    "id",
    "service_id",
    "interface",
    "url",
    "region",
    "region_id",
    "enabled",
    "links",
];
const REGION_KNOWN: &[&str] = &["id", "description", "parent_region_id", "links"];
const INTERFACES: &[&str] = &["public", "internal", "admin"];

pub async fn service_list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_services", &json!({}))?;
    let mut sel = service::Entity::find();
    if let Some(t) = q.0.get("type") {
        sel = sel.filter(service::Column::ServiceType.eq(t.as_str()));
    }
    let mut rows = sel.all(svc.conn()).await.map_err(db_err)?;
    if let Some(n) = q.0.get("name") {
        rows.retain(|s| json_map(&s.extra).get("name").and_then(Value::as_str) == Some(n.as_str()));
    }
    let base = svc.v3_url();
    Ok(Json(views::list(
        &base,
        "services",
        "services",
        rows.iter().map(|s| views::service(&base, s)).collect(),
        false,
    )))
}

pub async fn service_create(
    st: State,
    caller: Caller,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_service", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "service")?;
    let ty = req_name(m, "type", 255)?;
    // A name, when given, is a non-blank string; left out it is "" (as
    // Keystone's create_service defaults it).
    opt_name(m, "name", 255)?;
    let mut extra = extra_of(m, SERVICE_KNOWN);
    extra.entry("name").or_insert_with(|| json!(""));
    let row = service::Model {
        id: ferro_common::new_hex_id(),
        service_type: ty,
        enabled: opt_bool(m, "enabled")?.unwrap_or(true),
        extra: json_string(&extra),
    };
    row.clone()
        .into_active_model()
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
    svc.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(json!({"service": views::service(&svc.v3_url(), &row)})),
    ))
}

async fn service_get(svc: &crate::IdentityService, id: &str) -> Result<service::Model, Error> {
    service::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("service", id))
}

pub async fn service_show(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:get_service", &json!({}))?;
    Ok(Json(
        json!({"service": views::service(&svc.v3_url(), &service_get(svc, &id).await?)}),
    ))
}

pub async fn service_update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:update_service", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "service")?;
    let s = service_get(svc, &id).await?;
    let mut am = s.clone().into_active_model();
    if let Some(t) = opt_name(m, "type", 255)? {
        am.service_type = Set(t);
    }
    opt_name(m, "name", 255)?;
    if let Some(e) = opt_bool(m, "enabled")? {
        am.enabled = Set(e);
    }
    let mut extra = json_map(&s.extra);
    extra.extend(extra_of(m, SERVICE_KNOWN));
    am.extra = Set(json_string(&extra));
    let row = am.update(svc.conn()).await.map_err(db_err)?;
    svc.invalidate();
    Ok(Json(
        json!({"service": views::service(&svc.v3_url(), &row)}),
    ))
}

pub async fn service_delete(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:delete_service", &json!({}))?;
    service_get(svc, &id).await?;
    let txn = svc.conn().begin().await.map_err(db_err)?;
    endpoint::Entity::delete_many()
        .filter(endpoint::Column::ServiceId.eq(id.as_str()))
        .exec(&txn)
        .await
        .map_err(db_err)?;
    service::Entity::delete_by_id(id)
        .exec(&txn)
        .await
        .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

/// Keystone's legacy behaviour: an endpoint naming an unknown region creates it.
async fn ensure_region(svc: &crate::IdentityService, id: &str) -> Result<(), Error> {
    if region::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .is_none()
    {
        let r = region::ActiveModel {
            id: Set(id.to_string()),
            description: Set(Some(String::new())),
            parent_region_id: Set(None),
            extra: Set("{}".into()),
        };
        if let Err(e) = r.insert(svc.conn()).await
            && !ferro_db::is_unique_violation(&e)
        {
            return Err(db_err(e));
        }
    }
    Ok(())
}

fn interface(m: &serde_json::Map<String, Value>) -> Result<Option<String>, Error> {
    match opt_str(m, "interface", 10, false)?.flatten() {
        Some(i) if INTERFACES.contains(&i.as_str()) => Ok(Some(i)),
        Some(_) => Err(invalid(
            "interface",
            "must be one of public, internal, admin.",
        )),
        None => Ok(None),
    }
}

fn url(m: &serde_json::Map<String, Value>) -> Result<Option<String>, Error> {
    match opt_str(m, "url", 2048, false)?.flatten() {
        Some(u) if u.contains("://") => Ok(Some(u)),
        Some(_) => Err(invalid("url", "is not a valid URL.")),
        None => Ok(None),
    }
}

fn region_of(m: &serde_json::Map<String, Value>) -> Result<Option<Option<String>>, Error> {
    let a = opt_str(m, "region_id", 255, true)?;
    let b = opt_str(m, "region", 255, true)?;
    Ok(a.or(b))
}

pub async fn endpoint_list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_endpoints", &json!({}))?;
    let mut sel = endpoint::Entity::find();
    if let Some(v) = q.0.get("service_id") {
        sel = sel.filter(endpoint::Column::ServiceId.eq(v.as_str()));
    }
    if let Some(v) = q.0.get("interface") {
        sel = sel.filter(endpoint::Column::Interface.eq(v.as_str()));
    }
    if let Some(v) = q.0.get("region_id").or(q.0.get("region")) {
        sel = sel.filter(endpoint::Column::RegionId.eq(v.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(views::list(
        &base,
        "endpoints",
        "endpoints",
        rows.iter().map(|e| views::endpoint(&base, e)).collect(),
        false,
    )))
}

pub async fn endpoint_create(
    st: State,
    caller: Caller,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_endpoint", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "endpoint")?;
    let service_id = opt_id(m, "service_id")?
        .flatten()
        .ok_or_else(|| Error::validation("'service_id' is a required property"))?;
    let iface =
        interface(m)?.ok_or_else(|| Error::validation("'interface' is a required property"))?;
    let u = url(m)?.ok_or_else(|| Error::validation("'url' is a required property"))?;
    let enabled = opt_bool(m, "enabled")?.unwrap_or(true);
    let region_id = region_of(m)?.flatten();
    service_get(svc, &service_id)
        .await
        .map_err(|_| Error::validation(format!("Could not find service: {service_id}.")))?;
    if let Some(r) = &region_id {
        ensure_region(svc, r).await?;
    }
    let row = endpoint::Model {
        id: ferro_common::new_hex_id(),
        service_id,
        interface: iface,
        url: u,
        region_id,
        enabled,
        extra: json_string(&extra_of(m, ENDPOINT_KNOWN)),
    };
    row.clone()
        .into_active_model()
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
    svc.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(json!({"endpoint": views::endpoint(&svc.v3_url(), &row)})),
    ))
}

async fn endpoint_get(svc: &crate::IdentityService, id: &str) -> Result<endpoint::Model, Error> {
    endpoint::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("endpoint", id))
}

pub async fn endpoint_show(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:get_endpoint", &json!({}))?;
    Ok(Json(
        json!({"endpoint": views::endpoint(&svc.v3_url(), &endpoint_get(svc, &id).await?)}),
    ))
}

pub async fn endpoint_update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:update_endpoint", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "endpoint")?;
    let e = endpoint_get(svc, &id).await?;
    let mut am = e.clone().into_active_model();
    if let Some(s) = opt_id(m, "service_id")?.flatten() {
        service_get(svc, &s)
            .await
            .map_err(|_| Error::validation(format!("Could not find service: {s}.")))?;
        am.service_id = Set(s);
    }
    if let Some(i) = interface(m)? {
        am.interface = Set(i);
    }
    if let Some(u) = url(m)? {
        am.url = Set(u);
    }
    if let Some(en) = opt_bool(m, "enabled")? {
        am.enabled = Set(en);
    }
    if let Some(r) = region_of(m)? {
        if let Some(r) = &r {
            ensure_region(svc, r).await?;
        }
        am.region_id = Set(r);
    }
    let mut extra = json_map(&e.extra);
    extra.extend(extra_of(m, ENDPOINT_KNOWN));
    am.extra = Set(json_string(&extra));
    let row = am.update(svc.conn()).await.map_err(db_err)?;
    svc.invalidate();
    Ok(Json(
        json!({"endpoint": views::endpoint(&svc.v3_url(), &row)}),
    ))
}

pub async fn endpoint_delete(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:delete_endpoint", &json!({}))?;
    endpoint_get(svc, &id).await?;
    endpoint::Entity::delete_by_id(id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn region_list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_regions", &json!({}))?;
    let mut sel = region::Entity::find();
    if let Some(p) = q.0.get("parent_region_id") {
        sel = sel.filter(region::Column::ParentRegionId.eq(p.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(views::list(
        &base,
        "regions",
        "regions",
        rows.iter().map(|r| views::region(&base, r)).collect(),
        false,
    )))
}

async fn region_get(svc: &crate::IdentityService, id: &str) -> Result<region::Model, Error> {
    region::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("region", id))
}

async fn region_insert(
    svc: &crate::IdentityService,
    id: String,
    body: &[u8],
) -> KsResult<(StatusCode, Json<Value>)> {
    let body = parse_body(body)?;
    let m = wrapped(&body, "region")?;
    let parent = opt_str(m, "parent_region_id", 255, true)?.flatten();
    if let Some(p) = &parent {
        region_get(svc, p)
            .await
            .map_err(|_| Error::validation(format!("Could not find parent region: {p}.")))?;
    }
    let row = region::Model {
        id: id.clone(),
        description: Some(
            opt_str(m, "description", 255, true)?
                .flatten()
                .unwrap_or_default(),
        ),
        parent_region_id: parent,
        extra: json_string(&extra_of(m, REGION_KNOWN)),
    };
    row.clone()
        .into_active_model()
        .insert(svc.conn())
        .await
        .map_err(|e| {
            if ferro_db::is_unique_violation(&e) {
                Error::conflict(format!("Duplicate ID, {id}."))
            } else {
                db_err(e)
            }
        })?;
    svc.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(json!({"region": views::region(&svc.v3_url(), &row)})),
    ))
}

pub async fn region_create(
    st: State,
    caller: Caller,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_region", &json!({}))?;
    let parsed = parse_body(&body)?;
    let id = match wrapped(&parsed, "region")?.get("id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Some(_) => return Err(KsError(invalid("id", "must be a non-empty string."))),
        None => ferro_common::new_hex_id(),
    };
    region_insert(svc, id, &body).await
}

pub async fn region_put(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_region", &json!({}))?;
    region_insert(svc, id, &body).await
}

pub async fn region_show(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:get_region", &json!({}))?;
    Ok(Json(
        json!({"region": views::region(&svc.v3_url(), &region_get(svc, &id).await?)}),
    ))
}

pub async fn region_update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:update_region", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "region")?;
    let r = region_get(svc, &id).await?;
    let mut am = r.clone().into_active_model();
    if let Some(d) = opt_str(m, "description", 255, true)? {
        am.description = Set(Some(d.unwrap_or_default()));
    }
    if let Some(p) = opt_str(m, "parent_region_id", 255, true)? {
        if let Some(pid) = &p {
            if *pid == id {
                return Err(KsError(Error::validation(
                    "A region cannot be its own parent.",
                )));
            }
            region_get(svc, pid)
                .await
                .map_err(|_| Error::validation(format!("Could not find parent region: {pid}.")))?;
        }
        am.parent_region_id = Set(p);
    }
    let mut extra = json_map(&r.extra);
    extra.extend(extra_of(m, REGION_KNOWN));
    am.extra = Set(json_string(&extra));
    let row = am.update(svc.conn()).await.map_err(db_err)?;
    svc.invalidate();
    Ok(Json(json!({"region": views::region(&svc.v3_url(), &row)})))
}

pub async fn region_delete(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:delete_region", &json!({}))?;
    region_get(svc, &id).await?;
    let child = region::Entity::find()
        .filter(region::Column::ParentRegionId.eq(id.as_str()))
        .one(svc.conn())
        .await
        .map_err(db_err)?;
    if child.is_some() {
        return Err(KsError(Error::forbidden(
            "Cannot delete a region that has child regions.",
        )));
    }
    region::Entity::delete_by_id(id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}
