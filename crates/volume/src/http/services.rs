//! Services (`/v3/os-services`, with their actions and log levels) and
//! hosts (`/v3/os-hosts`).
use super::{Body, Query, St, accepted_empty, ok};
use crate::error::{CResult, CinderError};
use crate::store::{Kind, Obj, s};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/os-services", get(services))
        .route("/v3/os-services/{action}", put(service_action))
        .route("/v3/os-hosts", get(hosts))
        .route("/v3/os-hosts/{host}", get(host_show))
}

/// (binary, host) of each service this process runs.
fn service_list(svc: &VolumeService) -> Vec<(&'static str, String)> {
    let plain = svc.host.split('@').next().unwrap_or_default().to_string();
    vec![
        ("cinder-scheduler", plain),
        ("cinder-volume", svc.host.clone()),
    ]
}

fn disabled(svc: &VolumeService, binary: &str, host: &str) -> Option<Obj> {
    svc.store
        .read()
        .get(Kind::Quota, &format!("service:{binary}:{host}"))
        .map(|o| (**o).clone())
}

fn started_at(svc: &VolumeService) -> String {
    let t = chrono::Utc::now() - chrono::Duration::from_std(svc.uptime()).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

async fn services(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    c.require_admin("volume_extension:services:index")?;
    let now = crate::store::now();
    let _ = started_at(&svc);
    // The volume agent's answer (down when it does not answer).
    let backend_state = if mv.at_least(49) {
        Some(svc.backend.state().await)
    } else {
        None
    };
    let list: Vec<Value> = service_list(&svc)
        .into_iter()
        .filter(|(b, h)| {
            q.get("binary").is_none_or(|x| x == *b)
                && q.get("host").is_none_or(|x| {
                    h == x || h.split('@').next() == Some(x)
                })
        })
        .map(|(b, h)| {
            let d = disabled(&svc, b, &h);
            json!({
                "binary": b, "host": h, "zone": svc.cfg.volume.default_availability_zone,
                "status": if d.is_some() { "disabled" } else { "enabled" },
                "state": "up", "updated_at": now,
                "disabled_reason": d.as_ref().and_then(|o| o.get("reason").cloned()).unwrap_or(Value::Null),
            })
        })
        .map(|mut s| {
            if mv.at_least(7) {
                // No service here is clustered (Cinder's active-active HA).
                s["cluster"] = Value::Null;
            }
            if let Some(state) = backend_state.filter(|_| s["binary"] == "cinder-volume") {
                s["backend_state"] = json!(state);
            }
            if s["binary"] == "cinder-volume" {
                // Cinder's detailed view of a volume service: no backend
                // here replicates (its Service model's default status).
                s["replication_status"] = json!("not-capable");
                s["active_backend_id"] = Value::Null;
                s["frozen"] = json!(false);
            }
            s
        })
        .collect();
    Ok(ok(json!({"services": list})))
}

async fn service_action(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(action): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:services:update")?;
    if matches!(action.as_str(), "set-log" | "get-log") {
        if !mv.at_least(32) {
            return Err(CinderError::not_found("Unknown action"));
        }
        return log_levels(&svc, &action, &body);
    }
    let host = body
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let known_host = service_list(&svc).iter().any(|(_, h)| *h == host);
    match action.as_str() {
        "freeze" | "thaw" => {
            if !known_host {
                return Err(CinderError::bad(format!(
                    "Invalid input received: Host {host} is not a volume host."
                )));
            }
            return Ok(StatusCode::OK.into_response());
        }
        "failover_host" | "failover" => {
            return Err(CinderError::bad(
                "Invalid input received: this backend does not replicate.",
            ));
        }
        "enable" | "disable" | "disable-log-reason" => {}
        _ => return Err(CinderError::not_found("Unknown action")),
    }
    let binary = body
        .get("binary")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !service_list(&svc)
        .iter()
        .any(|(b, h)| *b == binary && *h == host)
    {
        return Err(CinderError::not_found(format!(
            "Service {binary} on host {host} could not be found."
        )));
    }
    let reason = match action.as_str() {
        "disable-log-reason" => match body.get("disabled_reason") {
            Some(Value::String(r)) if !r.trim().is_empty() && r.len() <= 255 => Some(r.clone()),
            _ => {
                return Err(CinderError::bad(
                    "Disabled reason contains invalid characters or is too long",
                ));
            }
        },
        _ => None,
    };
    let key = format!("service:{binary}:{host}");
    let disable = action != "enable";
    let r2 = reason.clone();
    svc.store
        .write(|tx| {
            if disable {
                let mut o = Obj::new();
                o.insert("reason".into(), json!(r2));
                tx.put_id(Kind::Quota, &key, o);
            } else {
                tx.del(Kind::Quota, &key);
            }
            Ok(())
        })
        .await?;
    let mut out = json!({"disabled": disable, "status": if disable { "disabled" } else { "enabled" },
        "host": host, "service": binary, "binary": binary});
    if action != "disable" {
        out["disabled_reason"] = json!(reason);
    }
    Ok(ok(out))
}

async fn hosts(AxState(svc): St, c: Caller) -> CResult<Response> {
    c.require_admin("volume_extension:hosts")?;
    let now = crate::store::now();
    let list: Vec<Value> = service_list(&svc)
        .into_iter()
        .map(|(b, h)| {
            let d = disabled(&svc, b, &h).is_some();
            json!({"service-status": "available", "service": b,
                   "zone": svc.cfg.volume.default_availability_zone,
                   "service-state": if d { "disabled" } else { "enabled" },
                   "host_name": h, "last-update": now})
        })
        .collect();
    Ok(ok(json!({"hosts": list})))
}

async fn host_show(AxState(svc): St, c: Caller, Path(host): Path<String>) -> CResult<Response> {
    c.require_admin("volume_extension:hosts")?;
    if !service_list(&svc).iter().any(|(_, h)| *h == host) {
        return Err(CinderError::not_found(format!(
            "Host {host} could not be found."
        )));
    }
    let st = svc.store.read();
    let mut per: std::collections::BTreeMap<String, (i64, i64, i64, i64)> = Default::default();
    let mut total = (0, 0, 0, 0);
    for v in st.iter(Kind::Volume) {
        let e = per.entry(s(v, "project_id").to_string()).or_default();
        e.0 += 1;
        e.1 += crate::store::i(v, "size");
        total.0 += 1;
        total.1 += crate::store::i(v, "size");
    }
    for x in st.iter(Kind::Snapshot) {
        let e = per.entry(s(x, "project_id").to_string()).or_default();
        e.2 += 1;
        e.3 += crate::store::i(x, "size");
        total.2 += 1;
        total.3 += crate::store::i(x, "size");
    }
    let res = |project: &str, t: (i64, i64, i64, i64)| {
        json!({"resource": {"volume_count": t.0.to_string(), "total_volume_gb": t.1.to_string(),
            "snapshot_count": t.2.to_string(), "total_snapshot_gb": t.3.to_string(),
            "project": project, "host": host}})
    };
    let mut list = vec![res("(total)", total)];
    for (p, t) in per {
        list.push(res(&p, t));
    }
    Ok(ok(json!({"host": list})))
}

// ---------------------------------------------------------------- log levels (3.32)

/// `set-log` / `get-log`: the levels of this process's log targets. A
/// Cinder prefix (`cinder`, `cinder.volume...`) names the Block Storage
/// code; any other prefix is taken as a log target of ours.
fn log_levels(svc: &VolumeService, action: &str, body: &Value) -> CResult<Response> {
    let o = body
        .as_object()
        .ok_or_else(|| CinderError::bad("Malformed request body"))?;
    let allowed: &[&str] = if action == "set-log" {
        &["binary", "server", "prefix", "level"]
    } else {
        &["binary", "server", "prefix"]
    };
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(CinderError::bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let text = |k: &str| match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(x)) => Ok(Some(x.clone())),
        Some(_) => Err(CinderError::bad(format!(
            "Invalid input for field/attribute {k}."
        ))),
    };
    let binary = text("binary")?.unwrap_or_default();
    const BINARIES: [&str; 4] = [
        "cinder-api",
        "cinder-scheduler",
        "cinder-volume",
        "cinder-backup",
    ];
    if !binary.is_empty() && binary != "*" && !BINARIES.contains(&binary.as_str()) {
        return Err(CinderError::bad(format!(
            "Invalid input for field/attribute binary. Value: {binary}."
        )));
    }
    let server = text("server")?;
    let prefix = text("prefix")?.unwrap_or_default();
    // Every binary is this one process: one set of levels.
    let hosts: Vec<(String, String)> = [(
        "cinder-api",
        svc.host.split('@').next().unwrap_or_default().to_string(),
    )]
    .into_iter()
    .chain(service_list(svc))
    .filter(|(b, _)| binary.is_empty() || binary == "*" || *b == binary)
    .filter(|(_, h)| {
        server
            .as_deref()
            .is_none_or(|x| h == x || h.split('@').next() == Some(x))
    })
    .map(|(b, h)| (b.to_string(), h))
    .collect();
    if action == "set-log" {
        let level = text("level")?.unwrap_or_default();
        if !matches!(
            level.to_ascii_uppercase().as_str(),
            "DEBUG" | "INFO" | "WARNING" | "WARN" | "ERROR"
        ) {
            return Err(CinderError::bad(format!(
                "Invalid input for field/attribute level. Value: {level}. Must be one of DEBUG, INFO, WARNING, ERROR."
            )));
        }
        // Nothing matches the binary/server asked for: nothing changes.
        if !hosts.is_empty() {
            ferro_common::logctl::set(&log_target(&prefix), &level).map_err(CinderError::bad)?;
        }
        return Ok(accepted_empty());
    }
    let levels: Map<String, Value> = ferro_common::logctl::get(&log_target(&prefix))
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let out: Vec<Value> = hosts
        .into_iter()
        .map(|(b, h)| json!({"host": h, "binary": b, "levels": levels}))
        .collect();
    Ok(ok(json!({"log_levels": out})))
}

/// `cinder.volume.flows` → `ferro_volume::volume::flows`; a Rust target
/// (`ferro_compute::saga` or `ferro_compute.saga`) is kept.
fn log_target(prefix: &str) -> String {
    let p: String = prefix
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'))
        .collect();
    let p = p.replace('.', "::");
    match p.strip_prefix("cinder") {
        Some("") => "ferro_volume".into(),
        Some(rest) if rest.starts_with("::") => format!("ferro_volume{rest}"),
        _ => p,
    }
}
