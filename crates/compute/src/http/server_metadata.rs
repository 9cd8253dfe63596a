//! `/servers/{id}/metadata` and `/servers/{id}/tags`.
use super::request::{Caller, St, body, json_resp};
use super::servers::{check_locked, check_metadata, check_tag, get_instance};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::Instance;
use crate::ops;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

fn bad(m: impl Into<String>) -> NovaError {
    NovaError::bad(m)
}

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route(
            "/servers/{id}/metadata",
            get(meta_list).put(meta_replace).post(meta_merge),
        )
        .route(
            "/servers/{id}/metadata/{key}",
            get(meta_get).put(meta_put).delete(meta_delete),
        )
        .route(
            "/servers/{id}/tags",
            get(tags_list).put(tags_replace).delete(tags_clear),
        )
        .route(
            "/servers/{id}/tags/{tag}",
            get(tag_check).put(tag_add).delete(tag_delete),
        )
}

// ---------------------------------------------------------------- metadata

fn meta_quota(svc: &ComputeService, i: &Instance, n: usize) -> NResult<()> {
    let st = svc.state.read();
    let lim = ops::quota_limits(&st, &i.project_id, None)
        .get("metadata_items")
        .copied()
        .unwrap_or(-1);
    if lim >= 0 && n as i64 > lim {
        return Err(NovaError::forbidden(format!(
            "Quota exceeded for metadata_items: Requested {n}, but already used 0 of {lim} metadata_items"
        )));
    }
    Ok(())
}

async fn meta_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    Ok(json_resp(StatusCode::OK, json!({"metadata": i.metadata})))
}

async fn meta_write(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    raw: &[u8],
    replace: bool,
) -> NResult<Response> {
    let b = body(raw)?;
    let m = check_metadata(
        b.get("metadata")
            .ok_or_else(|| bad("Malformed request body: metadata is required"))?,
    )?;
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:server-metadata:update")?;
    check_locked(svc, c, &i)?;
    let mut next = if replace {
        BTreeMap::new()
    } else {
        i.metadata.clone()
    };
    next.extend(m);
    meta_quota(svc, &i, next.len())?;
    let i = svc
        .state
        .update_instance(id, move |i| {
            i.metadata = next;
            Ok(())
        })
        .await?;
    Ok(json_resp(StatusCode::OK, json!({"metadata": i.metadata})))
}

async fn meta_replace(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    meta_write(&svc, &c, &id, &raw, true).await
}

async fn meta_merge(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    meta_write(&svc, &c, &id, &raw, false).await
}

async fn meta_get(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let v = i
        .metadata
        .get(&key)
        .ok_or_else(|| NovaError::not_found("Metadata item was not found"))?;
    Ok(json_resp(StatusCode::OK, json!({"meta": {key: v}})))
}

async fn meta_put(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
    raw: Bytes,
) -> NResult<Response> {
    let b = body(&raw)?;
    let m = check_metadata(
        b.get("meta")
            .ok_or_else(|| bad("Malformed request body: meta is required"))?,
    )?;
    if m.len() != 1 {
        return Err(bad("Request body contains too many items"));
    }
    if !m.contains_key(&key) {
        return Err(bad("Request body and URI mismatch"));
    }
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:server-metadata:update")?;
    check_locked(&svc, &c, &i)?;
    let mut next = i.metadata.clone();
    next.extend(m.clone());
    meta_quota(&svc, &i, next.len())?;
    svc.state
        .update_instance(&id, move |i| {
            i.metadata = next;
            Ok(())
        })
        .await?;
    Ok(json_resp(StatusCode::OK, json!({"meta": m})))
}

async fn meta_delete(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:server-metadata:delete")?;
    check_locked(&svc, &c, &i)?;
    if !i.metadata.contains_key(&key) {
        return Err(NovaError::not_found("Metadata item was not found"));
    }
    svc.state
        .update_instance(&id, move |i| {
            i.metadata.remove(&key);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- tags

fn tags_mv(c: &Caller) -> NResult<()> {
    if !c.mv.at_least(26) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    Ok(())
}

async fn tags_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    tags_mv(&c)?;
    let i = get_instance(&svc, &c, &id)?;
    Ok(json_resp(StatusCode::OK, json!({"tags": i.tags})))
}

async fn tags_replace(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    tags_mv(&c)?;
    let b = body(&raw)?;
    let arr = b
        .get("tags")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Invalid input for field/attribute tags."))?;
    let mut tags = Vec::new();
    for t in arr {
        let t = t
            .as_str()
            .ok_or_else(|| bad("Invalid input for field/attribute tags."))?;
        check_tag(t)?;
        if !tags.contains(&t.to_string()) {
            tags.push(t.to_string());
        }
    }
    if tags.len() > 50 {
        return Err(bad("The number of tags exceeded the per-server limit 50"));
    }
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-server-tags:update_all",
    )?;
    let i = svc
        .state
        .update_instance(&id, move |i| {
            i.tags = tags;
            Ok(())
        })
        .await?;
    Ok(json_resp(StatusCode::OK, json!({"tags": i.tags})))
}

async fn tags_clear(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    tags_mv(&c)?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-server-tags:delete_all",
    )?;
    svc.state
        .update_instance(&id, |i| {
            i.tags.clear();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tag_check(
    AxState(svc): St,
    c: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> NResult<Response> {
    tags_mv(&c)?;
    let i = get_instance(&svc, &c, &id)?;
    if i.tags.contains(&tag) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(NovaError::not_found(format!(
            "Tag {tag} could not be found."
        )))
    }
}

async fn tag_add(
    AxState(svc): St,
    c: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> NResult<Response> {
    tags_mv(&c)?;
    check_tag(&tag)?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:os-server-tags:update")?;
    if i.tags.contains(&tag) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if i.tags.len() >= 50 {
        return Err(bad("The number of tags exceeded the per-server limit 50"));
    }
    let t2 = tag.clone();
    svc.state
        .update_instance(&id, move |i| {
            i.tags.push(t2);
            Ok(())
        })
        .await?;
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(h) = HeaderValue::from_str(&format!("{}/v2.1/servers/{id}/tags/{tag}", svc.base_url))
    {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}

async fn tag_delete(
    AxState(svc): St,
    c: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> NResult<Response> {
    tags_mv(&c)?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:os-server-tags:delete")?;
    if !i.tags.contains(&tag) {
        return Err(NovaError::not_found(format!(
            "Tag {tag} could not be found."
        )));
    }
    svc.state
        .update_instance(&id, move |i| {
            i.tags.retain(|t| t != &tag);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
