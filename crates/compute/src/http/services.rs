//! `os-services`: the compute services, enabled or disabled, forced down, deleted.
use super::request::{Caller, St, body, first, json_resp, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::ServiceRec;
use crate::ops;
use crate::state::{Rec, State, iso_z, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use ferro_common::Error;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-services", get(services_list))
        .route(
            "/os-services/{id}",
            put(service_update).delete(service_delete),
        )
}

fn service_view(svc: &ComputeService, st: &State, c: &Caller, s: &ServiceRec) -> Value {
    let zone = if s.binary == "nova-compute" {
        ops::host_az(svc, st, &s.host)
    } else {
        "internal".into()
    };
    let mut v = json!({
        "id": if c.mv.at_least(53) { json!(s.uuid) } else { json!(s.id) },
        "binary": s.binary, "host": s.host, "zone": zone,
        "status": if s.disabled { "disabled" } else { "enabled" },
        "state": if ops::service_up(svc, s) { "up" } else { "down" },
        "updated_at": s.updated_at.as_deref().map(iso_z),
        "disabled_reason": s.disabled_reason,
    });
    if c.mv.at_least(11) {
        v["forced_down"] = json!(s.forced_down);
    }
    v
}

async fn services_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-services:list")?;
    let q = query(raw);
    let st = svc.state.read();
    let list: Vec<Value> = st
        .services
        .values()
        .filter(|s| first(&q, "host").is_none_or(|h| s.host == h))
        .filter(|s| first(&q, "binary").is_none_or(|b| s.binary == b))
        .map(|s| service_view(&svc, &st, &c, s))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"services": list})))
}

async fn service_update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-services:update")?;
    let b = body(&bytes)?;
    let o = b.as_object().cloned().unwrap_or_default();
    if c.mv.at_least(53) {
        for k in o.keys() {
            if !matches!(k.as_str(), "status" | "disabled_reason" | "forced_down") {
                return Err(NovaError::bad(format!(
                    "Additional properties are not allowed ('{k}' was unexpected)"
                )));
            }
        }
        let status = o.get("status").and_then(Value::as_str).map(str::to_string);
        if let Some(s) = &status
            && s != "enabled"
            && s != "disabled"
        {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute status. Value: {s}."
            )));
        }
        let reason = o
            .get("disabled_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        if reason.is_some() && status.as_deref() != Some("disabled") {
            return Err(NovaError::bad(
                "Specifying 'disabled_reason' with status 'enabled' is invalid.",
            ));
        }
        let forced = o.get("forced_down").and_then(Value::as_bool);
        if status.is_none() && forced.is_none() {
            return Err(NovaError::bad(
                "No updates were requested. Fields 'status' or 'forced_down' should be specified.",
            ));
        }
        let s = svc
            .state
            .write(|st| {
                let mut s = st.services.values().find(|s| s.uuid == id).cloned().ok_or_else(|| Error::not_found_msg(format!("Service {id} could not be found.")))?;
                if s.binary != "nova-compute" {
                    return Err(Error::validation(format!("Updating a {} service is not supported. Only nova-compute services can be updated.", s.binary)));
                }
                if let Some(st2) = &status {
                    s.disabled = st2 == "disabled";
                    s.disabled_reason = if s.disabled { reason.clone() } else { None };
                }
                if let Some(f) = forced {
                    s.forced_down = f;
                }
                s.updated_at = Some(now());
                Ok((s.clone(), vec![Rec::Service(s)]))
            })
            .await?;
        let st = svc.state.read();
        return Ok(json_resp(
            StatusCode::OK,
            json!({"service": service_view(&svc, &st, &c, &s)}),
        ));
    }
    // Before 2.53: PUT /os-services/{enable|disable|disable-log-reason|force-down}.
    let host = o
        .get("host")
        .and_then(Value::as_str)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute host."))?
        .to_string();
    let binary = o
        .get("binary")
        .and_then(Value::as_str)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute binary."))?
        .to_string();
    let reason = o
        .get("disabled_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let forced = o.get("forced_down").and_then(Value::as_bool);
    let action = id.clone();
    if !matches!(
        action.as_str(),
        "enable" | "disable" | "disable-log-reason" | "force-down"
    ) {
        return Err(NovaError::not_found("Unknown action"));
    }
    if action == "disable-log-reason" && reason.is_none() {
        return Err(NovaError::bad("Missing disabled reason field"));
    }
    let s = svc
        .state
        .write(|st| {
            let mut s = st
                .services
                .values()
                .find(|s| s.host == host && s.binary == binary)
                .cloned()
                .ok_or_else(|| {
                    Error::not_found_msg(format!("Service {binary} on host {host} not found."))
                })?;
            match action.as_str() {
                "enable" => {
                    s.disabled = false;
                    s.disabled_reason = None;
                }
                "disable" => {
                    s.disabled = true;
                }
                "disable-log-reason" => {
                    s.disabled = true;
                    s.disabled_reason = reason.clone();
                }
                _ => {
                    s.forced_down = forced.unwrap_or(true);
                }
            }
            s.updated_at = Some(now());
            Ok((s.clone(), vec![Rec::Service(s)]))
        })
        .await?;
    let mut v = json!({"host": s.host, "binary": s.binary});
    match id.as_str() {
        "force-down" => v["forced_down"] = json!(s.forced_down),
        _ => {
            v["status"] = json!(if s.disabled { "disabled" } else { "enabled" });
            if id == "disable-log-reason" {
                v["disabled_reason"] = json!(s.disabled_reason);
            }
        }
    }
    Ok(json_resp(StatusCode::OK, json!({"service": v})))
}

async fn service_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-services:delete")?;
    let node = svc
        .state
        .write(|st| {
            let s = st
                .services
                .values()
                .find(|s| s.uuid == id || s.id.to_string() == id)
                .cloned()
                .ok_or_else(|| Error::not_found_msg(format!("Service {id} not found.")))?;
            if s.binary == "nova-compute"
                && st
                    .live()
                    .any(|i| i.host.as_deref() == Some(s.host.as_str()))
            {
                return Err(Error::conflict(
                    "Unable to delete compute service that is hosting instances.".to_string(),
                ));
            }
            Ok((s.node_uuid.clone(), vec![Rec::DelService(s.id)]))
        })
        .await?;
    if let Some(n) = node {
        let _ = svc.placement.delete_provider(&n).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
