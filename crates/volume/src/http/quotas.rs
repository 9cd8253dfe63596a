//! Limits (`/v3/limits`), quota sets (`/v3/os-quota-sets`) and the
//! default quota class (`/v3/os-quota-class-sets`).
use super::{Body, Query, St, body_obj, ok};
use crate::error::{CResult, CinderError};
use crate::store::{Kind, s};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/limits", get(limits))
        .route(
            "/v3/os-quota-sets/{project}",
            get(quota_show).put(quota_update).delete(quota_delete),
        )
        .route("/v3/os-quota-sets/{project}/defaults", get(quota_defaults))
        .route(
            "/v3/os-quota-class-sets/{class}",
            get(class_show).put(class_update),
        )
}

async fn limits(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    let st = svc.store.read();
    // An admin may ask for another project's limits (3.39).
    let p = match q.get("project_id") {
        Some(other) if mv.at_least(39) && c.admin => other.to_string(),
        _ => c.project.clone(),
    };
    let p = &p;
    let u = svc.usage(&st, p);
    let used = |k: &str| u.get(k).copied().unwrap_or(0);
    let lim = |k: &str| svc.quota_limit(&st, p, k);
    Ok(ok(json!({"limits": {"rate": [], "absolute": {
        "totalSnapshotsUsed": used("snapshots"),
        "maxTotalBackups": lim("backups"),
        "maxTotalVolumeGigabytes": lim("gigabytes"),
        "maxTotalSnapshots": lim("snapshots"),
        "maxTotalBackupGigabytes": lim("backup_gigabytes"),
        "totalBackupGigabytesUsed": used("backup_gigabytes"),
        "maxTotalVolumes": lim("volumes"),
        "totalVolumesUsed": used("volumes"),
        "totalBackupsUsed": used("backups"),
        "totalGigabytesUsed": used("gigabytes"),
    }}})))
}

const QUOTA_KEYS: [&str; 7] = [
    "volumes",
    "snapshots",
    "gigabytes",
    "backups",
    "backup_gigabytes",
    "per_volume_gigabytes",
    "groups",
];

/// The id of the stored default quota class.
const CLASS_DEFAULT: &str = "class:default";

/// Every quota key: the fixed ones and the per-type ones of each type.
fn quota_keys(svc: &VolumeService) -> Vec<String> {
    let st = svc.store.read();
    let mut keys: Vec<String> = QUOTA_KEYS.iter().map(|k| k.to_string()).collect();
    for t in st.iter(Kind::VolumeType) {
        let n = s(t, "name");
        for p in ["volumes", "gigabytes", "snapshots"] {
            keys.push(format!("{p}_{n}"));
        }
    }
    keys
}

/// The default limit of `key`: the default class, else the config.
fn default_limit(svc: &VolumeService, key: &str) -> i64 {
    let st = svc.store.read();
    st.get(Kind::Quota, CLASS_DEFAULT)
        .and_then(|q| q.get(key))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| svc.default_quota(key))
}

fn limit_of(svc: &VolumeService, project: &str, key: &str) -> i64 {
    let st = svc.store.read();
    st.get(Kind::Quota, project)
        .and_then(|q| q.get(key))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| default_limit(svc, key))
}

fn quota_set(svc: &VolumeService, project: &str, usage: bool, defaults: bool) -> Value {
    let st = svc.store.read();
    let u = svc.usage(&st, project);
    let mut o = Map::new();
    o.insert("id".into(), json!(project));
    for k in quota_keys(svc) {
        let limit = if defaults {
            default_limit(svc, &k)
        } else {
            limit_of(svc, project, &k)
        };
        let v = if usage {
            json!({"limit": limit, "in_use": u.get(&k).copied().unwrap_or(0), "reserved": 0, "allocated": 0})
        } else {
            json!(limit)
        };
        o.insert(k, v);
    }
    Value::Object(o)
}

fn may_see_quota(c: &Caller, project: &str) -> CResult<()> {
    if c.admin || c.project == project {
        Ok(())
    } else {
        Err(CinderError::forbidden("volume_extension:quotas:show"))
    }
}

async fn quota_show(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    q: Query,
) -> CResult<Response> {
    may_see_quota(&c, &project)?;
    let usage = q
        .get("usage")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"));
    Ok(ok(
        json!({"quota_set": quota_set(&svc, &project, usage, false)}),
    ))
}

async fn quota_defaults(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> CResult<Response> {
    may_see_quota(&c, &project)?;
    Ok(ok(
        json!({"quota_set": quota_set(&svc, &project, false, true)}),
    ))
}

/// Validates `{key: int}` limits against the known keys.
fn parse_limits(svc: &VolumeService, req: &Map<String, Value>) -> CResult<Vec<(String, i64)>> {
    let keys = quota_keys(svc);
    let mut out = Vec::new();
    for (k, v) in req {
        if k == "id" || k == "tenant_id" {
            continue;
        }
        if !keys.contains(k) {
            return Err(CinderError::bad(format!("Bad key(s) in quota set: {k}")));
        }
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(x) => x.trim().parse().ok(),
            _ => None,
        }
        .filter(|n| *n >= -1)
        .ok_or_else(|| {
            CinderError::bad(format!(
                "Invalid input received: Quota value for key '{k}' must be an integer of at least -1."
            ))
        })?;
        out.push((k.clone(), n));
    }
    Ok(out)
}

async fn quota_update(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:quotas:update")?;
    let req = body_obj(&body, "quota_set")?;
    let limits = parse_limits(&svc, req)?;
    svc.store
        .write(|tx| {
            let mut q = tx.get(Kind::Quota, &project).unwrap_or_default();
            for (k, n) in &limits {
                q.insert(k.clone(), json!(n));
            }
            tx.put_id(Kind::Quota, &project, q);
            Ok(())
        })
        .await?;
    let mut view = quota_set(&svc, &project, false, false);
    if let Some(o) = view.as_object_mut() {
        o.remove("id");
    }
    Ok(ok(json!({"quota_set": view})))
}

async fn quota_delete(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> CResult<Response> {
    c.require_admin("volume_extension:quotas:delete")?;
    svc.store
        .write(|tx| {
            tx.del(Kind::Quota, &project);
            Ok(())
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn class_show(AxState(svc): St, c: Caller, Path(class): Path<String>) -> CResult<Response> {
    c.require_admin("volume_extension:quota_classes")?;
    let mut o = Map::new();
    o.insert("id".into(), json!(class));
    for k in quota_keys(&svc) {
        let v = default_limit(&svc, &k);
        o.insert(k, json!(v));
    }
    Ok(ok(json!({"quota_class_set": o})))
}

async fn class_update(
    AxState(svc): St,
    c: Caller,
    Path(class): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:quota_classes")?;
    if class != "default" {
        return Err(CinderError::bad("Only the default quota class is used."));
    }
    let req = body_obj(&body, "quota_class_set")?;
    let limits = parse_limits(&svc, req)?;
    svc.store
        .write(|tx| {
            let mut q = tx.get(Kind::Quota, CLASS_DEFAULT).unwrap_or_default();
            for (k, n) in &limits {
                q.insert(k.clone(), json!(n));
            }
            tx.put_id(Kind::Quota, CLASS_DEFAULT, q);
            Ok(())
        })
        .await?;
    let mut o = Map::new();
    for k in quota_keys(&svc) {
        let v = default_limit(&svc, &k);
        o.insert(k, json!(v));
    }
    Ok(ok(json!({"quota_class_set": o})))
}
