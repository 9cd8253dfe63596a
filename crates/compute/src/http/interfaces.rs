//! `/servers/{id}/os-interface`: the ports of a server; attach and detach through the Networking seam.
use super::netproxy::{is_uuid, s};
use super::request::{Caller, St, body, json_resp};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::http::servers::{check_tag, get_instance};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route(
            "/servers/{id}/os-interface",
            get(interfaces).post(interface_attach),
        )
        .route(
            "/servers/{id}/os-interface/{port}",
            get(interface_show).delete(interface_detach),
        )
}

// Interfaces (os-interface)

fn interface_view(c: &Caller, i: &crate::model::Instance, mut v: Value) -> Value {
    if c.mv.at_least(70) {
        v["tag"] = json!(i.vif_tags.get(s(&v, "port_id")));
    }
    v
}

async fn interfaces(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let list: Vec<Value> = svc
        .network
        .interfaces(&i.uuid)
        .into_iter()
        .map(|v| interface_view(&c, &i, v))
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        json!({"interfaceAttachments": list}),
    ))
}

async fn interface_show(
    AxState(svc): St,
    c: Caller,
    Path((id, port)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let v = svc
        .network
        .interfaces(&i.uuid)
        .into_iter()
        .find(|v| s(v, "port_id") == port)
        .ok_or_else(|| {
            NovaError::not_found(format!("Instance {id} does not have a port with id {port}"))
        })?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"interfaceAttachment": interface_view(&c, &i, v)}),
    ))
}

/// Interfaces change only on a settled server (Nova's check_instance_state).
fn interface_ready(i: &crate::model::Instance, action: &str) -> NResult<()> {
    if !matches!(i.vm_state.as_str(), "active" | "paused" | "stopped") {
        return Err(NovaError::invalid_state(
            action,
            "vm_state",
            &i.vm_state,
            &i.uuid,
        ));
    }
    if let Some(t) = &i.task_state {
        return Err(NovaError::invalid_state(action, "task_state", t, &i.uuid));
    }
    Ok(())
}

/// The NIC an attach request names: a port, a network (with at most one
/// fixed IP), or neither (the project's one usable network); and its
/// device role tag (2.49).
fn attach_request(c: &Caller, raw: &[u8]) -> NResult<(Value, Option<String>)> {
    let b = body(raw)?;
    let o = b
        .get("interfaceAttachment")
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute interfaceAttachment."))?;
    let mut known = vec!["net_id", "port_id", "fixed_ips"];
    if c.mv.at_least(49) {
        known.push("tag");
    }
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(NovaError::bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let text = |k: &str| -> NResult<Option<String>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) if is_uuid(v) => Ok(Some(v.clone())),
            Some(v) => Err(NovaError::bad(format!(
                "Invalid input for field/attribute {k}. Value: {v}. '{v}' is not a 'uuid'"
            ))),
        }
    };
    let tag = match o.get("tag") {
        None => None,
        Some(Value::String(t)) => {
            check_tag(t)?;
            Some(t.clone())
        }
        Some(v) => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute tag. Value: {v}. {v} is not of type 'string'"
            )));
        }
    };
    let (net, port) = (text("net_id")?, text("port_id")?);
    let fixed = match o.get("fixed_ips") {
        None => None,
        Some(Value::Array(a)) if a.len() == 1 => {
            let ip = a[0]
                .get("ip_address")
                .and_then(Value::as_str)
                .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute ip_address."))?;
            Some(ip.to_string())
        }
        Some(_) => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute fixed_ips.",
            ));
        }
    };
    let nic = match (net, port, fixed) {
        (Some(_), Some(_), _) => {
            return Err(NovaError::bad("Must not input both network_id and port_id"));
        }
        (None, _, Some(_)) => {
            return Err(NovaError::bad(
                "Must input network_id when request IP address",
            ));
        }
        (None, Some(p), None) => json!({"port": p}),
        (Some(n), None, ip) => json!({"uuid": n, "fixed_ip": ip}),
        (None, None, None) => json!("auto"),
    };
    Ok((nic, tag))
}

async fn interface_attach(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    let (nic, tag) = attach_request(&c, &raw)?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-attach-interfaces:create",
    )?;
    interface_ready(&i, "attach_interface")?;
    crate::actions::record(&svc, &c, &i, "attach_interface").await?;
    let v = crate::interfaces::attach(&svc, &i, &nic, tag, &c.request_id).await?;
    let i = get_instance(&svc, &c, &id)?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"interfaceAttachment": interface_view(&c, &i, v)}),
    ))
}

async fn interface_detach(
    AxState(svc): St,
    c: Caller,
    Path((id, port)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-attach-interfaces:delete",
    )?;
    interface_ready(&i, "detach_interface")?;
    crate::actions::record(&svc, &c, &i, "detach_interface").await?;
    crate::interfaces::detach(&svc, &i, &port, &c.request_id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
