//! `os-instance_usage_audit_log`: the audit periods of the compute hosts.
use super::availability_zones::computes;
use super::request::{Caller, St, json_resp};
use super::usage::parse_ts;
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::ServiceRec;
use crate::state::State;
use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-instance_usage_audit_log", get(audit_log_index))
        .route("/os-instance_usage_audit_log/{before}", get(audit_log_show))
}

fn audit_log(st: &State, before: chrono::NaiveDateTime) -> Value {
    let hosts: Vec<&ServiceRec> = computes(st);
    let begin = before - chrono::Duration::days(30);
    json!({
        "hosts_not_run": hosts.iter().map(|s| s.host.clone()).collect::<Vec<_>>(),
        "log": {},
        "num_hosts": hosts.len(),
        "num_hosts_done": 0,
        "num_hosts_not_run": hosts.len(),
        "num_hosts_running": 0,
        "overall_status": format!("0 of {} hosts done. 0 errors.", hosts.len()),
        "period_beginning": begin.format("%Y-%m-%d %H:%M:%S").to_string(),
        "period_ending": before.format("%Y-%m-%d %H:%M:%S").to_string(),
        "total_errors": 0,
        "total_instances": st.live().count(),
    })
}

async fn audit_log_index(AxState(svc): St, c: Caller) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-instance-usage-audit-log:list")?;
    let st = svc.state.read();
    Ok(json_resp(
        StatusCode::OK,
        json!({"instance_usage_audit_logs": audit_log(&st, chrono::Utc::now().naive_utc())}),
    ))
}

async fn audit_log_show(
    AxState(svc): St,
    c: Caller,
    Path(before): Path<String>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-instance-usage-audit-log:show")?;
    let t = parse_ts(&before)
        .ok_or_else(|| NovaError::bad(format!("Invalid timestamp for date {before}")))?;
    let st = svc.state.read();
    Ok(json_resp(
        StatusCode::OK,
        json!({"instance_usage_audit_log": audit_log(&st, t)}),
    ))
}
