//! `os-hosts` (deprecated upstream, still served): hosts, their resources, maintenance and power actions.
use super::availability_zones::computes;
use super::request::{Caller, St, body, first, json_resp, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::ops;
use crate::state::{Rec, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use ferro_common::Error;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-hosts", get(hosts_list))
        .route("/os-hosts/{host}", get(host_show).put(host_update))
        .route("/os-hosts/{host}/{action}", get(host_power))
}

async fn hosts_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hosts:list")?;
    if c.mv.at_least(43) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let q = query(raw);
    let st = svc.state.read();
    let list: Vec<Value> = st
        .services
        .values()
        .map(|s| {
            let zone = if s.binary == "nova-compute" { ops::host_az(&svc, &st, &s.host) } else { "internal".into() };
            json!({"host_name": s.host, "service": s.binary.trim_start_matches("nova-"), "zone": zone})
        })
        .filter(|v| first(&q, "zone").filter(|z| !z.is_empty()).is_none_or(|z| v["zone"] == z))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"hosts": list})))
}

async fn host_show(AxState(svc): St, c: Caller, Path(host): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hosts:show")?;
    if c.mv.at_least(43) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let st = svc.state.read();
    let s = computes(&st)
        .into_iter()
        .find(|s| s.host == host)
        .ok_or_else(|| NovaError::not_found(format!("Compute host {host} could not be found.")))?;
    let r = s
        .resources
        .clone()
        .unwrap_or(ferro_rpc::compute::HostResources {
            vcpus: 0,
            memory_mb: 0,
            local_gb: 0,
            hypervisor_type: String::new(),
            hypervisor_version: 0,
            cpu_info: String::new(),
            guest_memory_overhead_mb: 0,
        });
    let insts: Vec<&crate::model::Instance> = st
        .live()
        .filter(|i| i.host.as_deref() == Some(host.as_str()))
        .collect();
    let used = |f: fn(&crate::model::Instance) -> u64| -> u64 { insts.iter().map(|i| f(i)).sum() };
    let res = vec![
        json!({"resource": {"host": host, "project": "(total)", "cpu": r.vcpus, "memory_mb": r.memory_mb, "disk_gb": r.local_gb}}),
        json!({"resource": {"host": host, "project": "(used_now)", "cpu": used(|i| u64::from(i.flavor.vcpus)), "memory_mb": used(|i| i.flavor.ram), "disk_gb": used(|i| i.flavor.disk)}}),
        json!({"resource": {"host": host, "project": "(used_max)", "cpu": used(|i| u64::from(i.flavor.vcpus)), "memory_mb": used(|i| i.flavor.ram), "disk_gb": used(|i| i.flavor.disk)}}),
    ];
    Ok(json_resp(StatusCode::OK, json!({"host": res})))
}

async fn host_update(
    AxState(svc): St,
    c: Caller,
    Path(host): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hosts:update")?;
    if c.mv.at_least(43) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let b = body(&bytes)?;
    let o = b.as_object().cloned().unwrap_or_default();
    let status = o.get("status").and_then(Value::as_str).map(str::to_string);
    let maint = o
        .get("maintenance_mode")
        .and_then(Value::as_str)
        .map(str::to_string);
    for (k, v) in &o {
        let ok = match k.as_str() {
            "status" | "maintenance_mode" => matches!(v.as_str(), Some("enable" | "disable")),
            _ => false,
        };
        if !ok {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute {k}. Value: {v}."
            )));
        }
    }
    if status.is_none() && maint.is_none() {
        return Err(NovaError::bad(
            "'status' or 'maintenance_mode' needed for host update",
        ));
    }
    if !computes(&svc.state.read()).iter().any(|s| s.host == host) {
        return Err(NovaError::not_found(format!(
            "Compute host {host} could not be found."
        )));
    }
    if maint.is_some() {
        return Err(NovaError::new(
            501,
            "Virt driver does not implement host maintenance mode.",
        ));
    }
    let disable = status.as_deref() == Some("disable");
    svc.state
        .write(|st| {
            let mut s = computes(st)
                .into_iter()
                .find(|s| s.host == host)
                .cloned()
                .ok_or_else(|| {
                    Error::not_found_msg(format!("Compute host {host} could not be found."))
                })?;
            s.disabled = disable;
            s.updated_at = Some(now());
            Ok(((), vec![Rec::Service(s)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"host": host, "status": if disable { "disabled" } else { "enabled" }}),
    ))
}

async fn host_power(
    AxState(svc): St,
    c: Caller,
    Path((host, action)): Path<(String, String)>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hosts:start")?;
    if c.mv.at_least(43) || !matches!(action.as_str(), "reboot" | "shutdown" | "startup") {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    if !computes(&svc.state.read()).iter().any(|s| s.host == host) {
        return Err(NovaError::not_found(format!(
            "Compute host {host} could not be found."
        )));
    }
    Err(NovaError::new(
        501,
        "Virt driver does not implement host power management.",
    ))
}
