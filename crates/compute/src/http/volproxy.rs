//! Nova's Block Storage proxies (gone from 2.36): `os-volumes` and
//! `os-snapshots`, translated into Cinder v3 calls made with the caller's
//! token, as upstream Nova's cinder client does, so Cinder's validation,
//! quotas and policy apply.
use super::request::{Caller, St, body, json_resp};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<ComputeService>> {
    axum::Router::new()
        .route("/os-volumes", get(volumes).post(volume_create))
        .route("/os-volumes/detail", get(volumes_detail))
        .route("/os-volumes/{id}", get(volume_show).delete(volume_delete))
        .route("/os-snapshots", get(snapshots).post(snapshot_create))
        .route("/os-snapshots/detail", get(snapshots_detail))
        .route(
            "/os-snapshots/{id}",
            get(snapshot_show).delete(snapshot_delete),
        )
}

fn gone(c: &Caller) -> NResult<()> {
    if c.mv.at_least(36) {
        Err(NovaError::not_found("The resource could not be found."))
    } else {
        Ok(())
    }
}

/// A Cinder call; its failures keep their status and message.
async fn cinder(
    svc: &ComputeService,
    c: &Caller,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> NResult<Value> {
    let Some((code, v)) = svc.volumes.cinder(c.token(), method, path, body).await else {
        return Err(NovaError::not_found("The resource could not be found."));
    };
    if (200..300).contains(&code) {
        return Ok(v);
    }
    let msg = v
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|x| x["message"].as_str())
        .unwrap_or("Block Storage request failed")
        .to_string();
    Err(NovaError::new(code, msg))
}

fn volume_view(v: &Value) -> Value {
    let id = v["id"].clone();
    let atts: Vec<Value> = v["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            json!({"id": a["attachment_id"], "volumeId": id, "serverId": a["server_id"],
                   "device": a["device"]})
        })
        .collect();
    json!({
        "id": id,
        "status": v["status"],
        "size": v["size"],
        "availabilityZone": v["availability_zone"],
        "createdAt": v["created_at"],
        // Nova shows one empty attachment when there is none.
        "attachments": if atts.is_empty() { vec![json!({})] } else { atts },
        "displayName": v["name"],
        "displayDescription": v["description"],
        "volumeType": v["volume_type"],
        "snapshotId": v["snapshot_id"],
        "metadata": v["metadata"],
    })
}

fn snapshot_view(x: &Value) -> Value {
    json!({
        "id": x["id"],
        "volumeId": x["volume_id"],
        "status": x["status"],
        "size": x["size"],
        "createdAt": x["created_at"],
        "displayName": x["name"],
        "displayDescription": x["description"],
    })
}

/// `limit`/`offset` as Nova's proxies take them, passed to Cinder.
fn paging(q: Option<String>) -> String {
    let mut out = Vec::new();
    for p in q.unwrap_or_default().split('&') {
        if let Some((k, v)) = p.split_once('=')
            && matches!(k, "limit" | "offset")
            && v.parse::<u64>().is_ok()
        {
            out.push(format!("{k}={v}"));
        }
    }
    if out.is_empty() {
        String::new()
    } else {
        format!("?{}", out.join("&"))
    }
}

async fn volume_list(svc: &ComputeService, c: &Caller, q: Option<String>) -> NResult<Response> {
    gone(c)?;
    let v = cinder(
        svc,
        c,
        "GET",
        &format!("/v3/volumes/detail{}", paging(q)),
        None,
    )
    .await?;
    let list: Vec<Value> = v["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(volume_view)
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"volumes": list})))
}

async fn volumes(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    volume_list(&svc, &c, q).await
}

async fn volumes_detail(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    volume_list(&svc, &c, q).await
}

async fn volume_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    gone(&c)?;
    let v = cinder(&svc, &c, "GET", &format!("/v3/volumes/{id}"), None).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"volume": volume_view(&v["volume"])}),
    ))
}

async fn volume_create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    gone(&c)?;
    let b = body(&raw)?;
    let o = b
        .get("volume")
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute volume."))?;
    let size = match o.get("size") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n >= 1) => n.clone(),
        Some(Value::String(s)) if s.parse::<i64>().is_ok_and(|n| n >= 1) => {
            serde_json::Number::from(s.parse::<i64>().unwrap_or(1))
        }
        Some(v) => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute size. Value: {v}."
            )));
        }
        None => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute volume. 'size' is a required property",
            ));
        }
    };
    let mut req = json!({"size": size});
    for (from, to) in [
        ("display_name", "name"),
        ("display_description", "description"),
        ("volume_type", "volume_type"),
        ("metadata", "metadata"),
        ("availability_zone", "availability_zone"),
        ("snapshot_id", "snapshot_id"),
    ] {
        if let Some(v) = o.get(from).filter(|v| !v.is_null()) {
            req[to] = v.clone();
        }
    }
    let v = cinder(
        &svc,
        &c,
        "POST",
        "/v3/volumes",
        Some(json!({"volume": req})),
    )
    .await?;
    let id = v["volume"]["id"].as_str().unwrap_or_default().to_string();
    let shown = cinder(&svc, &c, "GET", &format!("/v3/volumes/{id}"), None).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"volume": volume_view(&shown["volume"])}),
    ))
}

async fn volume_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    gone(&c)?;
    cinder(&svc, &c, "DELETE", &format!("/v3/volumes/{id}"), None).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn snapshot_list(svc: &ComputeService, c: &Caller, q: Option<String>) -> NResult<Response> {
    gone(c)?;
    let v = cinder(
        svc,
        c,
        "GET",
        &format!("/v3/snapshots/detail{}", paging(q)),
        None,
    )
    .await?;
    let list: Vec<Value> = v["snapshots"]
        .as_array()
        .into_iter()
        .flatten()
        .map(snapshot_view)
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"snapshots": list})))
}

async fn snapshots(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    snapshot_list(&svc, &c, q).await
}

async fn snapshots_detail(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    snapshot_list(&svc, &c, q).await
}

async fn snapshot_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    gone(&c)?;
    let v = cinder(&svc, &c, "GET", &format!("/v3/snapshots/{id}"), None).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"snapshot": snapshot_view(&v["snapshot"])}),
    ))
}

async fn snapshot_create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    gone(&c)?;
    let b = body(&raw)?;
    let o = b
        .get("snapshot")
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute snapshot."))?;
    let vol = o.get("volume_id").and_then(Value::as_str).ok_or_else(|| {
        NovaError::bad(
            "Invalid input for field/attribute snapshot. 'volume_id' is a required property",
        )
    })?;
    let force = match o.get("force") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        Some(v) => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute force. Value: {v}."
            )));
        }
    };
    let req = json!({"snapshot": {"volume_id": vol, "force": force,
        "name": o.get("display_name"), "description": o.get("display_description")}});
    let v = cinder(&svc, &c, "POST", "/v3/snapshots", Some(req)).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"snapshot": snapshot_view(&v["snapshot"])}),
    ))
}

async fn snapshot_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    gone(&c)?;
    cinder(&svc, &c, "DELETE", &format!("/v3/snapshots/{id}"), None).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
