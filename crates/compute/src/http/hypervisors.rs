//! `os-hypervisors`: the compute nodes, their resources as their agents report them, uptime, statistics and servers.
use super::availability_zones::computes;
use super::request::{Caller, St, first, json_resp, paging, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::ServiceRec;
use crate::ops;
use crate::state::State;
use axum::Router;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-hypervisors", get(hyp_list))
        .route("/os-hypervisors/detail", get(hyp_detail))
        .route("/os-hypervisors/statistics", get(hyp_stats))
        .route("/os-hypervisors/{id}", get(hyp_show))
        .route("/os-hypervisors/{id}/uptime", get(hyp_uptime))
        .route("/os-hypervisors/{id}/search", get(hyp_search))
        .route("/os-hypervisors/{id}/servers", get(hyp_servers))
}

fn hyp_id(c: &Caller, s: &ServiceRec) -> Value {
    if c.mv.at_least(53) {
        json!(s.node_uuid)
    } else {
        json!(s.node_id)
    }
}

fn hyp_view(svc: &ComputeService, st: &State, c: &Caller, s: &ServiceRec, detail: bool) -> Value {
    let up = ops::service_up(svc, s);
    let mut v = json!({
        "id": hyp_id(c, s),
        "hypervisor_hostname": s.host,
        "state": if up { "up" } else { "down" },
        "status": if s.disabled { "disabled" } else { "enabled" },
    });
    if detail {
        let r = s
            .resources
            .clone()
            .unwrap_or(ferro_rpc::compute::HostResources {
                vcpus: 0,
                memory_mb: 0,
                local_gb: 0,
                hypervisor_type: "fake".into(),
                hypervisor_version: 0,
                cpu_info: "{}".into(),
                guest_memory_overhead_mb: 0,
            });
        let insts: Vec<&crate::model::Instance> = st
            .live()
            .filter(|i| i.host.as_deref() == Some(s.host.as_str()))
            .collect();
        let vcpus_used: u64 = insts.iter().map(|i| u64::from(i.flavor.vcpus)).sum();
        let mem_used: u64 = insts.iter().map(|i| i.flavor.ram).sum::<u64>()
            + svc.cfg.compute.reserved_host_memory_mb;
        let disk_used: u64 = insts
            .iter()
            .map(|i| i.flavor.disk + i.flavor.ephemeral)
            .sum();
        v["hypervisor_type"] = json!(r.hypervisor_type);
        v["hypervisor_version"] = json!(r.hypervisor_version);
        v["host_ip"] = json!("127.0.0.1");
        v["service"] = json!({"host": s.host, "id": if c.mv.at_least(53) { json!(s.uuid) } else { json!(s.id) }, "disabled_reason": s.disabled_reason});
        if !c.mv.at_least(88) {
            v["vcpus"] = json!(r.vcpus);
            v["memory_mb"] = json!(r.memory_mb);
            v["local_gb"] = json!(r.local_gb);
            v["vcpus_used"] = json!(vcpus_used);
            v["memory_mb_used"] = json!(mem_used);
            v["local_gb_used"] = json!(disk_used);
            v["free_ram_mb"] = json!(r.memory_mb as i64 - mem_used as i64);
            v["free_disk_gb"] = json!(r.local_gb as i64 - disk_used as i64);
            v["current_workload"] = json!(0);
            v["running_vms"] = json!(insts.len());
            v["disk_available_least"] = json!(r.local_gb as i64 - disk_used as i64);
            v["cpu_info"] = serde_json::from_str::<Value>(&r.cpu_info)
                .map(|x| {
                    if c.mv.at_least(28) {
                        x
                    } else {
                        json!(r.cpu_info)
                    }
                })
                .unwrap_or(json!(r.cpu_info));
        }
    }
    v
}

fn find_hyp<'a>(st: &'a State, id: &str) -> NResult<&'a ServiceRec> {
    computes(st)
        .into_iter()
        .find(|s| s.node_uuid.as_deref() == Some(id) || s.node_id.to_string() == id)
        .ok_or_else(|| NovaError::not_found(format!("Hypervisor with ID {id} could not be found.")))
}

async fn hyp_listing(
    svc: &ComputeService,
    c: &Caller,
    raw: Option<String>,
    detail: bool,
) -> NResult<Value> {
    c.require_admin(svc, "os_compute_api:os-hypervisors:list")?;
    let q = query(raw);
    let st = svc.state.read();
    let pattern = first(&q, "hypervisor_hostname_pattern");
    let with_servers = first(&q, "with_servers").is_some_and(|v| v == "true" || v == "1");
    let mut list: Vec<&ServiceRec> = computes(&st)
        .into_iter()
        .filter(|s| pattern.is_none_or(|p| s.host.contains(p)))
        .collect();
    if pattern.is_some() && list.is_empty() {
        return Err(NovaError::not_found(format!(
            "No hypervisor matching '{}' could be found.",
            pattern.unwrap_or("")
        )));
    }
    list.sort_by_key(|s| s.node_id);
    let (limit, marker) = if c.mv.at_least(33) {
        paging(&q)?
    } else {
        (None, None)
    };
    if let Some(m) = &marker {
        let pos = list
            .iter()
            .position(|s| s.node_uuid.as_deref() == Some(m.as_str()) || s.node_id.to_string() == *m)
            .ok_or_else(|| NovaError::bad(format!("marker [{m}] not found")))?;
        list.drain(..=pos);
    }
    if let Some(l) = limit {
        list.truncate(l);
    }
    let mut hs = Vec::with_capacity(list.len());
    for s in &list {
        let mut v = hyp_view(svc, &st, c, s, detail);
        if with_servers && c.mv.at_least(53) {
            v["servers"] = json!(st.live().filter(|i| i.host.as_deref() == Some(s.host.as_str())).map(|i| json!({"uuid": i.uuid, "name": format!("instance-{:08x}", i.internal_id)})).collect::<Vec<_>>());
        }
        if detail && c.mv.at_least(88) {
            v["uptime"] = json!(uptime(svc, s, &c.request_id).await);
        }
        hs.push(v);
    }
    Ok(json!({"hypervisors": hs}))
}

async fn hyp_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    Ok(json_resp(
        StatusCode::OK,
        hyp_listing(&svc, &c, raw, false).await?,
    ))
}

async fn hyp_detail(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    Ok(json_resp(
        StatusCode::OK,
        hyp_listing(&svc, &c, raw, true).await?,
    ))
}

async fn hyp_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hypervisors:show")?;
    let st = svc.state.read();
    let s = find_hyp(&st, &id)?;
    let mut v = hyp_view(&svc, &st, &c, s, true);
    if c.mv.at_least(88) {
        v["uptime"] = json!(uptime(&svc, s, &c.request_id).await);
    }
    Ok(json_resp(StatusCode::OK, json!({"hypervisor": v})))
}

/// The host's `uptime` line, asked of its agent; null when the host is
/// down or does not answer (as Nova's view).
async fn uptime(svc: &ComputeService, s: &ServiceRec, request_id: &str) -> Option<String> {
    if !ops::service_up(svc, s) {
        return None;
    }
    match ops::call_agent(
        svc,
        &s.host,
        ferro_rpc::compute::ComputeRequest::HostUptime,
        Some(request_id),
    )
    .await
    {
        Ok(ferro_rpc::compute::ComputeReply::Uptime { uptime }) => Some(uptime),
        Ok(other) => {
            tracing::warn!(host = %s.host, "unexpected answer to host_uptime: {other:?}");
            None
        }
        Err(e) => {
            tracing::warn!(host = %s.host, "uptime not read: {e}");
            None
        }
    }
}

/// What Nova answers for a route its microversion removed.
fn removed() -> NovaError {
    NovaError::not_found("The resource could not be found.")
}

async fn hyp_uptime(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    if c.mv.at_least(88) {
        return Err(removed());
    }
    c.require_admin(&svc, "os_compute_api:os-hypervisors:uptime")?;
    let st = svc.state.read();
    let s = find_hyp(&st, &id)?;
    if !ops::service_up(&svc, s) {
        return Err(NovaError::bad(format!(
            "Compute service of {} is unavailable at this time.",
            s.host
        )));
    }
    let mut v = hyp_view(&svc, &st, &c, s, false);
    v["uptime"] = json!(uptime(&svc, s, &c.request_id).await);
    Ok(json_resp(StatusCode::OK, json!({"hypervisor": v})))
}

async fn hyp_stats(AxState(svc): St, c: Caller) -> NResult<Response> {
    if c.mv.at_least(88) {
        return Err(removed());
    }
    c.require_admin(&svc, "os_compute_api:os-hypervisors:statistics")?;
    let st = svc.state.read();
    let mut tot = BTreeMap::<&str, i64>::new();
    let list = computes(&st);
    for s in &list {
        let v = hyp_view(&svc, &st, &c, s, true);
        for k in [
            "vcpus",
            "memory_mb",
            "local_gb",
            "vcpus_used",
            "memory_mb_used",
            "local_gb_used",
            "free_ram_mb",
            "free_disk_gb",
            "current_workload",
            "running_vms",
            "disk_available_least",
        ] {
            *tot.entry(k).or_default() += v[k].as_i64().unwrap_or(0);
        }
    }
    let mut m = Map::new();
    m.insert("count".into(), json!(list.len()));
    for (k, v) in tot {
        m.insert(k.into(), json!(v));
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"hypervisor_statistics": m}),
    ))
}

async fn hyp_search(AxState(svc): St, c: Caller, Path(pat): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hypervisors:search")?;
    let st = svc.state.read();
    let hs: Vec<Value> = computes(&st)
        .into_iter()
        .filter(|s| s.host.contains(&pat))
        .map(|s| hyp_view(&svc, &st, &c, s, false))
        .collect();
    if hs.is_empty() {
        return Err(NovaError::not_found(format!(
            "No hypervisor matching '{pat}' could be found."
        )));
    }
    Ok(json_resp(StatusCode::OK, json!({"hypervisors": hs})))
}

async fn hyp_servers(AxState(svc): St, c: Caller, Path(pat): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hypervisors:servers")?;
    let st = svc.state.read();
    let hs: Vec<Value> = computes(&st)
        .into_iter()
        .filter(|s| s.host.contains(&pat))
        .map(|s| {
            let mut v = hyp_view(&svc, &st, &c, s, false);
            let servers: Vec<Value> = st
                .live()
                .filter(|i| i.host.as_deref() == Some(s.host.as_str()))
                .map(|i| json!({"uuid": i.uuid, "name": format!("instance-{:08x}", i.internal_id)}))
                .collect();
            if !servers.is_empty() {
                v["servers"] = json!(servers);
            }
            v
        })
        .collect();
    if hs.is_empty() {
        return Err(NovaError::not_found(format!(
            "No hypervisor matching '{pat}' could be found."
        )));
    }
    Ok(json_resp(StatusCode::OK, json!({"hypervisors": hs})))
}
