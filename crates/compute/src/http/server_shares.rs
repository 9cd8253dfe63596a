//! `/servers/{id}/shares` (2.97): Manila shares mounted in a guest over
//! virtiofs. Nova attaches one only on a host whose provider has
//! `COMPUTE_STORAGE_VIRTIO_FS` (and file-backed or huge-page memory). No
//! driver here offers virtiofs, so attaching is refused as Nova refuses it
//! on such a host; no server ever has a share, and the list is empty.
use super::request::{Caller, St, body, json_resp, query};
use super::servers::{get_instance, uuid_like};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::Instance;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<ComputeService>> {
    axum::Router::new()
        .route("/servers/{id}/shares", get(list).post(create))
        .route("/servers/{id}/shares/{share}", get(show).delete(delete))
}

/// The server, if the caller may use its shares at this microversion.
fn server(svc: &ComputeService, c: &Caller, id: &str, rule: &str) -> NResult<Instance> {
    if !c.mv.at_least(97) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, rule)?;
    Ok(i)
}

fn no_query(raw: Option<String>) -> NResult<()> {
    let q = query(raw);
    match q.keys().next() {
        Some(k) => Err(NovaError::bad(format!(
            "Invalid input for query parameters {k}. Value: {:?}. Additional properties are not allowed ('{k}' was unexpected)",
            q[k]
        ))),
        None => Ok(()),
    }
}

/// A share action's state check (Nova: a stopped server; detach also in error).
fn check_state(i: &Instance, action: &str, allowed: &[&str]) -> NResult<()> {
    if allowed.contains(&i.vm_state.as_str()) {
        return Ok(());
    }
    Err(NovaError::conflict(format!(
        "Cannot '{action}' instance {} while it is in vm_state {}",
        i.uuid, i.vm_state
    )))
}

async fn list(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    no_query(raw)?;
    server(&svc, &c, &id, "os_compute_api:os-server-shares:index")?;
    Ok(json_resp(StatusCode::OK, json!({"shares": []})))
}

async fn create(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    let i = server(&svc, &c, &id, "os_compute_api:os-server-shares:create")?;
    let b = body(&raw)?;
    let invalid = |m: String| NovaError::bad(format!("Invalid input for field/attribute {m}"));
    let Some(o) = b.get("share").and_then(Value::as_object) else {
        return Err(invalid("share. 'share' is a required property".into()));
    };
    if let Some(k) = b
        .as_object()
        .and_then(|m| m.keys().find(|k| *k != "share"))
        .or_else(|| o.keys().find(|k| *k != "share_id" && *k != "tag"))
    {
        return Err(NovaError::bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    match o.get("share_id") {
        Some(Value::String(s)) if uuid_like(s) => {}
        Some(v) => {
            return Err(invalid(format!(
                "share_id. Value: {v}. {v} is not a 'uuid'"
            )));
        }
        None => return Err(invalid("share. 'share_id' is a required property".into())),
    }
    if let Some(t) = o.get("tag") {
        let ok = t.as_str().is_some_and(|s| {
            (1..=255).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !ok {
            return Err(invalid(format!(
                "tag. Value: {t}. {t} does not match '^[a-zA-Z0-9-]*$'"
            )));
        }
    }
    check_state(&i, "create share", &["stopped"])?;
    Err(NovaError::conflict(
        "Feature not supported because either compute or instance are not configured correctly.",
    ))
}

async fn show(
    AxState(svc): St,
    c: Caller,
    Path((id, share)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    no_query(raw)?;
    server(&svc, &c, &id, "os_compute_api:os-server-shares:show")?;
    Err(NovaError::not_found(format!(
        "Share {share} could not be found."
    )))
}

async fn delete(
    AxState(svc): St,
    c: Caller,
    Path((id, share)): Path<(String, String)>,
) -> NResult<Response> {
    let i = server(&svc, &c, &id, "os_compute_api:os-server-shares:delete")?;
    check_state(&i, "delete share", &["stopped", "error"])?;
    Err(NovaError::not_found(format!(
        "Share {share} could not be found."
    )))
}
