//! Metadata of volumes (`SNAP = false`) and snapshots (`SNAP = true`):
//! list, merge (POST), replace (PUT), and items, as Cinder serves both;
//! volumes' sets carry an ETag and honour `If-Match` from 3.15.
use super::{Body, St, check_metadata, ok};
use crate::error::{CResult, CinderError};
use crate::store::{Kind, Obj, State};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::Arc;

fn kind<const SNAP: bool>() -> Kind {
    if SNAP { Kind::Snapshot } else { Kind::Volume }
}

fn what<const SNAP: bool>() -> &'static str {
    if SNAP { "Snapshot" } else { "Volume" }
}

fn find<const SNAP: bool>(st: &State, c: &Caller, id: &str) -> CResult<Arc<Obj>> {
    st.get(kind::<SNAP>(), id)
        .filter(|o| c.owns(o))
        .cloned()
        .ok_or_else(|| {
            CinderError::not_found(format!("{} {id} could not be found.", what::<SNAP>()))
        })
}

/// The entity tag of a metadata set (3.15: guards against lost updates).
fn etag(m: &Value) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(m.to_string().as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn with_etag(m: Value) -> Response {
    let tag = etag(&m);
    let mut r = ok(json!({ "metadata": m }));
    if let Ok(h) = axum::http::HeaderValue::from_str(&format!("\"{tag}\"")) {
        r.headers_mut().insert(axum::http::header::ETAG, h);
    }
    r
}

/// `If-Match` against the current metadata (from 3.15): 412 on a mismatch.
fn check_if_match<const SNAP: bool>(
    svc: &VolumeService,
    c: &Caller,
    mv: Mv,
    id: &str,
    headers: &axum::http::HeaderMap,
) -> CResult<()> {
    let Some(want) = headers
        .get(axum::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    if SNAP || !mv.at_least(15) {
        return Ok(());
    }
    let st = svc.store.read();
    let v = find::<SNAP>(&st, c, id)?;
    let cur = etag(&v.get("metadata").cloned().unwrap_or_else(|| json!({})));
    let matches = want
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t == cur);
    if matches {
        Ok(())
    } else {
        Err(CinderError::new(
            412,
            "Precondition Failed: the metadata changed meanwhile.",
        ))
    }
}

pub async fn meta_get<const SNAP: bool>(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
) -> CResult<Response> {
    let st = svc.store.read();
    let v = find::<SNAP>(&st, &c, &id)?;
    let m = v.get("metadata").cloned().unwrap_or_else(|| json!({}));
    Ok(if SNAP {
        ok(json!({ "metadata": m }))
    } else {
        with_etag(m)
    })
}

/// Changes a volume's or snapshot's `metadata` with `f`, returning the result.
async fn change_meta<const SNAP: bool>(
    svc: &VolumeService,
    c: &Caller,
    id: &str,
    f: impl FnOnce(&mut Map<String, Value>) -> CResult<()>,
) -> CResult<Map<String, Value>> {
    c.require_writer("volume:update_volume_metadata")?;
    find::<SNAP>(&svc.store.read(), c, id)?;
    let k = kind::<SNAP>();
    let o = svc
        .store
        .update(k, id, |o| {
            let mut m = o
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            f(&mut m)?;
            o.insert("metadata".into(), Value::Object(m));
            Ok(())
        })
        .await?;
    Ok(o.get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

fn meta_body(body: &Value) -> CResult<Map<String, Value>> {
    let m = body
        .get("metadata")
        .ok_or_else(|| CinderError::bad("Malformed request body: no metadata"))?;
    check_metadata(m)
}

/// `{"meta": {key: value}}` naming exactly `key`.
fn meta_item_body(body: &Value, key: &str) -> CResult<Value> {
    let m = body
        .get("meta")
        .and_then(Value::as_object)
        .ok_or_else(|| CinderError::bad("Malformed request body"))?;
    if m.len() > 1 {
        return Err(CinderError::bad("Request body contains too many items"));
    }
    let Some(v) = m.get(key) else {
        return Err(CinderError::bad("Request body and URI mismatch"));
    };
    check_metadata(&json!({key: v}))?;
    Ok(v.clone())
}

pub async fn meta_merge<const SNAP: bool>(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> CResult<Response> {
    check_if_match::<SNAP>(&svc, &c, mv, &id, &headers)?;
    let new = meta_body(&body)?;
    let m = change_meta::<SNAP>(&svc, &c, &id, |m| {
        m.extend(new);
        Ok(())
    })
    .await?;
    Ok(ok(json!({"metadata": m})))
}

pub async fn meta_replace<const SNAP: bool>(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> CResult<Response> {
    check_if_match::<SNAP>(&svc, &c, mv, &id, &headers)?;
    let new = meta_body(&body)?;
    let m = change_meta::<SNAP>(&svc, &c, &id, |m| {
        *m = new;
        Ok(())
    })
    .await?;
    Ok(ok(json!({"metadata": m})))
}

pub async fn meta_item_get<const SNAP: bool>(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> CResult<Response> {
    let st = svc.store.read();
    let v = find::<SNAP>(&st, &c, &id)?;
    let x = v.get("metadata").and_then(|m| m.get(&key)).ok_or_else(|| {
        CinderError::not_found(format!(
            "{} {id} has no metadata with key {key}.",
            what::<SNAP>()
        ))
    })?;
    Ok(ok(json!({"meta": {key: x}})))
}

pub async fn meta_item_put<const SNAP: bool>(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
    Body(body): Body,
) -> CResult<Response> {
    let x = meta_item_body(&body, &key)?;
    let k2 = key.clone();
    let x2 = x.clone();
    change_meta::<SNAP>(&svc, &c, &id, move |m| {
        m.insert(k2, x2);
        Ok(())
    })
    .await?;
    Ok(ok(json!({"meta": {key: x}})))
}

pub async fn meta_item_del<const SNAP: bool>(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> CResult<Response> {
    let k2 = key.clone();
    let id2 = id.clone();
    change_meta::<SNAP>(&svc, &c, &id, move |m| {
        m.remove(&k2).map(|_| ()).ok_or_else(|| {
            CinderError::not_found(format!(
                "{} {id2} has no metadata with key {k2}.",
                what::<SNAP>()
            ))
        })
    })
    .await?;
    Ok(super::ok_empty())
}
