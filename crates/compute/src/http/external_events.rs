//! `os-server-external-events`: what Networking and Block Storage tell Compute (vif plugged, volume extended...).
use super::request::{Caller, St, body, json_resp};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new().route("/os-server-external-events", post(external_events))
}

/// The nova-network proxy (removed at 2.36): no Networking service, no networks.
/// Events from Neutron/Cinder about an instance (network-vif-plugged, volume-extended...).
async fn external_events(AxState(svc): St, c: Caller, bytes: Bytes) -> NResult<Response> {
    if !c.is_admin(&svc) && !c.ctx.token.has_role("service") {
        return Err(NovaError::forbidden(
            "Policy doesn't allow os_compute_api:os-server-external-events:create to be performed.",
        ));
    }
    let b = body(&bytes)?;
    let events = b
        .get("events")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute events."))?;
    // The event names Nova's schema takes at each microversion.
    let mut names = vec![
        "network-changed",
        "network-vif-plugged",
        "network-vif-unplugged",
        "network-vif-deleted",
    ];
    for (minor, name) in [
        (51, "volume-extended"),
        (76, "power-update"),
        (82, "accelerator-request-bound"),
        (93, "volume-reimaged"),
    ] {
        if c.mv.at_least(minor) {
            names.push(name);
        }
    }
    const STATUSES: &[&str] = &["failed", "completed", "in-progress"];
    for e in events {
        let o = e.as_object().ok_or_else(|| {
            NovaError::bad(format!(
                "Invalid input for field/attribute events. Value: {e}. {e} is not of type 'object'"
            ))
        })?;
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "name" | "server_uuid" | "status" | "tag"))
        {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute events. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        if !names.contains(&name) {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute name. Value: {name}. '{name}' is not one of {names:?}"
            )));
        }
        if !e
            .get("server_uuid")
            .and_then(Value::as_str)
            .is_some_and(super::servers::uuid_like)
        {
            return Err(NovaError::bad(
                "Invalid input for field/attribute server_uuid.",
            ));
        }
        if let Some(st) = e.get("status")
            && !st.as_str().is_some_and(|s| STATUSES.contains(&s))
        {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute status. Value: {st}. {st} is not one of {STATUSES:?}"
            )));
        }
        if let Some(t) = e.get("tag")
            && t.as_str().is_none_or(|s| s.chars().count() > 255)
        {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute tag. Value: {t}."
            )));
        }
    }
    // Events Nova drops (400 each) without the tag naming what they are about.
    const TAG_REQUIRED: &[&str] = &[
        "volume-extended",
        "power-update",
        "accelerator-request-bound",
    ];
    let st = svc.state.read();
    let mut out = Vec::new();
    for e in events {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        let uuid = e.get("server_uuid").and_then(Value::as_str).unwrap_or("");
        let mut r = e.clone();
        let code = match st.instances.get(uuid).filter(|i| !i.deleted) {
            None => 404,
            Some(_) if TAG_REQUIRED.contains(&name) && e.get("tag").is_none() => 400,
            Some(i) if i.host.is_some() => 200,
            Some(_) => 422,
        };
        r["code"] = json!(code);
        r["status"] = json!(if code == 200 { "completed" } else { "failed" });
        out.push(r);
    }
    drop(st);
    // The events that change a guest.
    for r in out.iter_mut() {
        if r["code"] == 200
            && let (Some(name), Some(server)) = (r["name"].as_str(), r["server_uuid"].as_str())
        {
            crate::vifs::network_event(&svc, name, server, r["tag"].as_str().unwrap_or(""));
        }
        if r["name"] == "volume-extended" && r["code"] == 200 {
            let uuid = r["server_uuid"].as_str().unwrap_or_default().to_string();
            let vol = r["tag"].as_str().unwrap_or_default().to_string();
            let code = crate::volumes::volume_extended(&svc, &uuid, &vol, &c.request_id).await;
            r["code"] = json!(code);
        }
    }
    let code = if out.iter().all(|r| r["code"] == 200) {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok(json_resp(code, json!({"events": out})))
}
