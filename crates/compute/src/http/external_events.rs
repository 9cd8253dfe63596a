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
    const NAMES: &[&str] = &[
        "network-changed",
        "network-vif-plugged",
        "network-vif-unplugged",
        "network-vif-deleted",
        "volume-extended",
        "power-update",
        "accelerator-request-bound",
        "volume-reimaged",
    ];
    let st = svc.state.read();
    let mut out = Vec::new();
    let mut any_ok = false;
    for e in events {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        if !NAMES.contains(&name) {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute name. Value: {name}."
            )));
        }
        let uuid = e.get("server_uuid").and_then(Value::as_str).unwrap_or("");
        let mut r = e.clone();
        let status = e
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("completed");
        r["status"] = json!(status);
        match st.instances.get(uuid).filter(|i| !i.deleted) {
            Some(i) if i.host.is_some() => {
                r["code"] = json!(200);
                any_ok = true;
            }
            Some(_) => r["code"] = json!(422),
            None => r["code"] = json!(404),
        }
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
    if !any_ok {
        return Err(NovaError::not_found("No instances found for any event"));
    }
    let code = if out.iter().all(|r| r["code"] == 200) {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok(json_resp(code, json!({"events": out})))
}
