//! `os-simple-tenant-usage`: per-project usage over a period, computed from the instances.
use super::request::{Caller, St, first, json_resp, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::state::State;
use axum::Router;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-simple-tenant-usage", get(usage_all))
        .route("/os-simple-tenant-usage/{project}", get(usage_one))
}

pub(super) fn parse_ts(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .ok()
}

fn usage_for(
    st: &State,
    project: &str,
    start: chrono::NaiveDateTime,
    end: chrono::NaiveDateTime,
    detailed: bool,
) -> Option<Value> {
    let mut servers = Vec::new();
    let (mut gb, mut vc, mut mb, mut hours) = (0.0, 0.0, 0.0, 0.0);
    for i in st.instances.values().filter(|i| i.project_id == project) {
        let Some(launched) = i
            .launched_at
            .as_deref()
            .and_then(parse_ts)
            .or_else(|| parse_ts(&i.created_at))
        else {
            continue;
        };
        let ended = i.terminated_at.as_deref().and_then(parse_ts);
        if launched > end || ended.is_some_and(|e| e < start) {
            continue;
        }
        let a = launched.max(start);
        let b = ended.unwrap_or(end).min(end);
        let h = ((b - a).num_milliseconds().max(0) as f64) / 3_600_000.0;
        hours += h;
        gb += h * (i.flavor.disk + i.flavor.ephemeral) as f64;
        vc += h * f64::from(i.flavor.vcpus);
        mb += h * i.flavor.ram as f64;
        if detailed {
            let now_t = chrono::Utc::now().naive_utc();
            servers.push(json!({
                "instance_id": i.uuid, "name": i.name, "hours": h, "memory_mb": i.flavor.ram,
                "local_gb": i.flavor.disk + i.flavor.ephemeral, "vcpus": i.flavor.vcpus, "tenant_id": i.project_id,
                "flavor": i.flavor.name, "started_at": launched.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                "ended_at": ended.map(|e| e.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
                "state": if i.deleted { "terminated".to_string() } else { i.vm_state.clone() },
                "uptime": (ended.unwrap_or(now_t) - launched).num_seconds().max(0),
            }));
        }
    }
    if hours == 0.0 && servers.is_empty() && !st.instances.values().any(|i| i.project_id == project)
    {
        return None;
    }
    let mut v = json!({
        "tenant_id": project, "total_local_gb_usage": gb, "total_vcpus_usage": vc,
        "total_memory_mb_usage": mb, "total_hours": hours,
        "start": start.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "stop": end.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
    });
    if detailed {
        v["server_usages"] = json!(servers);
    }
    Some(v)
}

fn period(
    q: &BTreeMap<String, Vec<String>>,
) -> NResult<(chrono::NaiveDateTime, chrono::NaiveDateTime)> {
    let now_t = chrono::Utc::now().naive_utc();
    let start = match first(q, "start") {
        Some(s) => parse_ts(s).ok_or_else(|| NovaError::bad(format!("Invalid start time {s}")))?,
        None => now_t,
    };
    let end = match first(q, "end") {
        Some(s) => parse_ts(s).ok_or_else(|| NovaError::bad(format!("Invalid end time {s}")))?,
        None => now_t,
    };
    if start > end {
        return Err(NovaError::bad(
            "Invalid start time. The start time cannot occur after the end time.",
        ));
    }
    Ok((start, end))
}

async fn usage_all(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-simple-tenant-usage:list")?;
    let q = query(raw);
    let (start, end) = period(&q)?;
    let detailed = first(&q, "detailed").is_some_and(|d| d == "1" || d == "true");
    let st = svc.state.read();
    let projects: std::collections::BTreeSet<&String> =
        st.instances.values().map(|i| &i.project_id).collect();
    let list: Vec<Value> = projects
        .into_iter()
        .filter_map(|p| usage_for(&st, p, start, end, detailed))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"tenant_usages": list})))
}

async fn usage_one(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    if project != c.project() {
        c.require_admin(&svc, "os_compute_api:os-simple-tenant-usage:show")?;
    }
    let q = query(raw);
    let (start, end) = period(&q)?;
    let st = svc.state.read();
    let u = usage_for(&st, &project, start, end, true).unwrap_or(json!({}));
    Ok(json_resp(StatusCode::OK, json!({"tenant_usage": u})))
}
