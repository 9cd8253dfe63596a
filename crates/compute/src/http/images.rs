//! Nova's image proxy (`/images`, removed at 2.36): Glance images in
//! Nova's shape, with their user properties as `metadata`.
use super::request::{Caller, St, body, first, json_resp, paging, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/images", get(list))
        .route("/images/detail", get(detail))
        .route("/images/{id}", get(show).delete(delete))
        .route(
            "/images/{id}/metadata",
            get(meta_list).post(meta_merge).put(meta_replace),
        )
        .route(
            "/images/{id}/metadata/{key}",
            get(meta_get).put(meta_put).delete(meta_delete),
        )
}

const CORE: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "min_ram",
    "min_disk",
    "created_at",
    "updated_at",
    "tags",
    "disk_format",
    "container_format",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "os_hidden",
    "stores",
];

fn gate(c: &Caller) -> NResult<()> {
    if c.mv.at_least(36) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    Ok(())
}

fn metadata(img: &Value) -> Map<String, Value> {
    img.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !CORE.contains(&k.as_str()))
                .map(|(k, v)| {
                    (
                        k.clone(),
                        match v {
                            Value::String(_) => v.clone(),
                            other => json!(other.to_string()),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn view(svc: &ComputeService, img: &Value, detail: bool) -> Value {
    let id = img["id"].as_str().unwrap_or_default();
    let base = &svc.base_url;
    let links = json!([
        {"rel": "self", "href": format!("{base}/v2.1/images/{id}")},
        {"rel": "bookmark", "href": format!("{base}/images/{id}")},
        {"rel": "alternate", "type": "application/vnd.openstack.image", "href": format!("{}/image/images/{id}", svc.cfg.public_url())},
    ]);
    if !detail {
        return json!({"id": id, "name": img["name"], "links": links});
    }
    let (status, progress) = match img["status"].as_str().unwrap_or("") {
        "active" => ("ACTIVE", 100),
        "queued" => ("SAVING", 25),
        "saving" | "importing" | "uploading" => ("SAVING", 50),
        "deleted" | "pending_delete" => ("DELETED", 0),
        "killed" => ("ERROR", 0),
        _ => ("UNKNOWN", 0),
    };
    let meta = metadata(img);
    let mut v = json!({
        "id": id, "name": img["name"], "minRam": img["min_ram"].as_u64().unwrap_or(0),
        "minDisk": img["min_disk"].as_u64().unwrap_or(0), "metadata": meta,
        "created": img["created_at"], "updated": img["updated_at"], "status": status,
        "progress": progress, "links": links, "OS-EXT-IMG-SIZE:size": img["size"],
    });
    // Nova's images view: an image that says auto_disk_config shows it
    // as OS-DCF:diskConfig (oslo's bool_from_string).
    if let Some(auto) = v["metadata"].get("auto_disk_config").map(|a| match a {
        Value::String(s) => s.trim().to_ascii_lowercase(),
        other => other.to_string(),
    }) {
        let on = matches!(auto.as_str(), "1" | "t" | "true" | "on" | "y" | "yes");
        v["OS-DCF:diskConfig"] = json!(if on { "AUTO" } else { "MANUAL" });
    }
    if let Some(srv) = img["instance_uuid"].as_str() {
        v["server"] = json!({"id": srv, "links": [
            {"rel": "self", "href": format!("{base}/v2.1/servers/{srv}")},
            {"rel": "bookmark", "href": format!("{base}/servers/{srv}")},
        ]});
    }
    v
}

async fn fetch(svc: &ComputeService, c: &Caller, id: &str) -> NResult<Value> {
    svc.image
        .get(c.token(), id)
        .await?
        .ok_or_else(|| NovaError::not_found("Image not found."))
}

async fn listing(
    svc: &ComputeService,
    c: &Caller,
    raw: Option<String>,
    detail: bool,
) -> NResult<Value> {
    gate(c)?;
    let q = query(raw);
    let (limit, marker) = paging(&q)?;
    let mut imgs = svc.image.list(c.token(), "").await?;
    let server = first(&q, "server").map(|s| s.rsplit('/').next().unwrap_or(s).to_string());
    let status = first(&q, "status").map(str::to_uppercase);
    let since = first(&q, "changes-since").map(str::to_string);
    let num = |k: &str| first(&q, k).and_then(|s| s.parse::<u64>().ok());
    let (min_ram, min_disk) = (num("minRam"), num("minDisk"));
    imgs.retain(|i| {
        first(&q, "name").is_none_or(|n| i["name"] == n)
            && server
                .as_ref()
                .is_none_or(|s| i["instance_uuid"] == s.as_str())
            && first(&q, "type").is_none_or(|t| i["image_type"].as_str().unwrap_or("") == t)
            && min_ram.is_none_or(|m| i["min_ram"].as_u64().unwrap_or(0) >= m)
            && min_disk.is_none_or(|m| i["min_disk"].as_u64().unwrap_or(0) >= m)
            && since
                .as_ref()
                .is_none_or(|t| i["updated_at"].as_str().unwrap_or("") >= t.as_str())
            && status
                .as_ref()
                .is_none_or(|s| view(svc, i, true)["status"] == s.as_str())
    });
    imgs.sort_by(|a, b| b["created_at"].as_str().cmp(&a["created_at"].as_str()));
    if let Some(m) = &marker {
        let pos = imgs
            .iter()
            .position(|i| i["id"] == m.as_str())
            .ok_or_else(|| NovaError::bad(format!("marker [{m}] not found")))?;
        imgs.drain(..=pos);
    }
    let total = imgs.len();
    if let Some(l) = limit {
        imgs.truncate(l);
    }
    let mut out = json!({"images": imgs.iter().map(|i| view(svc, i, detail)).collect::<Vec<_>>()});
    if let (Some(l), Some(last)) = (limit, imgs.last())
        && total > l
    {
        let path = if detail { "images/detail" } else { "images" };
        out["images_links"] = json!([{"rel": "next", "href": format!("{}/v2.1/{path}?limit={l}&marker={}", svc.base_url, last["id"].as_str().unwrap_or(""))}]);
    }
    Ok(out)
}

async fn list(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    Ok(json_resp(
        StatusCode::OK,
        listing(&svc, &c, q, false).await?,
    ))
}

async fn detail(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, listing(&svc, &c, q, true).await?))
}

async fn show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    gate(&c)?;
    let img = fetch(&svc, &c, &id).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"image": view(&svc, &img, true)}),
    ))
}

async fn delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    gate(&c)?;
    fetch(&svc, &c, &id).await?;
    svc.image.delete(c.token(), &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn meta_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    gate(&c)?;
    let img = fetch(&svc, &c, &id).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"metadata": metadata(&img)}),
    ))
}

fn check_meta(v: Option<&Value>) -> NResult<Map<String, Value>> {
    let o = v
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Malformed request body: metadata must be an object"))?;
    for (k, v) in o {
        if k.is_empty() || k.len() > 255 || !v.is_string() || CORE.contains(&k.as_str()) {
            return Err(NovaError::bad(format!(
                "Invalid metadata key or value: {k}"
            )));
        }
    }
    Ok(o.clone())
}

fn quota(n: usize) -> NResult<()> {
    if n > 128 {
        return Err(NovaError::forbidden(format!(
            "Quota exceeded for metadata_items: Requested {n}, but already used 0 of 128 metadata_items"
        )));
    }
    Ok(())
}

/// Sets `new` as the image's metadata (adding, replacing and, with `replace`, removing keys).
async fn write(
    svc: &ComputeService,
    c: &Caller,
    id: &str,
    new: Map<String, Value>,
    replace: bool,
) -> NResult<Map<String, Value>> {
    let img = fetch(svc, c, id).await?;
    let old = metadata(&img);
    let mut ops = Vec::new();
    if replace {
        for k in old.keys().filter(|k| !new.contains_key(*k)) {
            ops.push(json!({"op": "remove", "path": format!("/{k}")}));
        }
    }
    for (k, v) in &new {
        let op = if old.contains_key(k) {
            "replace"
        } else {
            "add"
        };
        ops.push(json!({"op": op, "path": format!("/{k}"), "value": v}));
    }
    let mut merged = if replace { Map::new() } else { old };
    merged.extend(new);
    quota(merged.len())?;
    if !ops.is_empty() {
        svc.image.patch(c.token(), id, Value::Array(ops)).await?;
    }
    Ok(merged)
}

async fn meta_merge(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    gate(&c)?;
    let m = check_meta(body(&raw)?.get("metadata"))?;
    let out = write(&svc, &c, &id, m, false).await?;
    Ok(json_resp(StatusCode::OK, json!({"metadata": out})))
}

async fn meta_replace(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    gate(&c)?;
    let m = check_meta(body(&raw)?.get("metadata"))?;
    let out = write(&svc, &c, &id, m, true).await?;
    Ok(json_resp(StatusCode::OK, json!({"metadata": out})))
}

async fn meta_get(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> NResult<Response> {
    gate(&c)?;
    let img = fetch(&svc, &c, &id).await?;
    let m = metadata(&img);
    let v = m.get(&key).ok_or_else(|| {
        NovaError::not_found(format!("Image {id} has no metadata with key {key}"))
    })?;
    Ok(json_resp(StatusCode::OK, json!({"meta": {key: v}})))
}

async fn meta_put(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
    raw: Bytes,
) -> NResult<Response> {
    gate(&c)?;
    let m = check_meta(body(&raw)?.get("meta"))?;
    if m.len() != 1 {
        return Err(NovaError::bad("Request body contains too many items"));
    }
    if !m.contains_key(&key) {
        return Err(NovaError::bad("Request body and URI mismatch"));
    }
    write(&svc, &c, &id, m.clone(), false).await?;
    Ok(json_resp(StatusCode::OK, json!({"meta": m})))
}

async fn meta_delete(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> NResult<Response> {
    gate(&c)?;
    let img = fetch(&svc, &c, &id).await?;
    if !metadata(&img).contains_key(&key) {
        return Err(NovaError::not_found(format!(
            "Image {id} has no metadata with key {key}"
        )));
    }
    svc.image
        .patch(
            c.token(),
            &id,
            json!([{"op": "remove", "path": format!("/{key}")}]),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
