//! Availability zones, extensions, limits, quota sets and classes,
//! services, hosts, pools and backend capabilities.
use super::{Body, Query, St, accepted, accepted_empty, body_obj, ok};
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
        .route("/v3/os-availability-zone", get(azs))
        .route("/v3/extensions", get(extensions))
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
        .route("/v3/resource_filters", get(resource_filters))
        .route("/v3/default-types", get(default_types))
        .route(
            "/v3/default-types/{project}",
            get(default_type_show)
                .put(default_type_set)
                .delete(default_type_unset),
        )
        .route("/v3/os-services", get(services))
        .route("/v3/os-services/{action}", put(service_action))
        .route("/v3/os-hosts", get(hosts))
        .route("/v3/os-hosts/{host}", get(host_show))
        .route("/v3/scheduler-stats/get_pools", get(pools))
        .route("/v3/capabilities/{host}", get(capabilities))
        .route("/v3/manageable_volumes", get(manageable_volumes))
        .route(
            "/v3/manageable_volumes/detail",
            get(manageable_volumes_detail),
        )
        .route("/v3/manageable_snapshots", get(manageable_snapshots))
        .route(
            "/v3/manageable_snapshots/detail",
            get(manageable_snapshots_detail),
        )
        .route("/v3/backups", get(backups_list).post(backup_create))
        .route("/v3/backups/detail", get(backups_list))
        .route(
            "/v3/backups/import_record",
            axum::routing::post(backup_create),
        )
        .route(
            "/v3/backups/{id}",
            get(backup_item).put(backup_item).delete(backup_item),
        )
        .route(
            "/v3/backups/{id}/{action}",
            get(backup_item2).post(backup_item2),
        )
        .route("/v3/workers/cleanup", axum::routing::post(workers_cleanup))
        .route("/v3/clusters", get(clusters))
        .route("/v3/clusters/detail", get(clusters))
        .route("/v3/clusters/{name}", get(cluster_show).put(cluster_action))
}

async fn azs(AxState(svc): St, _c: Caller) -> CResult<Response> {
    Ok(ok(json!({"availabilityZoneInfo": [
        {"zoneName": svc.cfg.volume.default_availability_zone, "zoneState": {"available": true}}
    ]})))
}

/// What this service implements, as Cinder names its API extensions.
const EXTENSIONS: [(&str, &str, &str); 16] = [
    (
        "os-availability-zone",
        "AvailabilityZones",
        "Describe Availability Zones.",
    ),
    (
        "os-extended-snapshot-attributes",
        "ExtendedSnapshotAttributes",
        "Extended SnapshotAttributes support.",
    ),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    ("os-quota-sets", "Quotas", "Quota management support."),
    (
        "os-quota-class-sets",
        "QuotaClasses",
        "Quota classes management support.",
    ),
    ("os-services", "Services", "Services support."),
    (
        "os-snapshot-actions",
        "SnapshotActions",
        "Enable snapshot manager actions.",
    ),
    (
        "os-types-extra-specs",
        "TypesExtraSpecs",
        "Type extra specs support.",
    ),
    ("os-types-manage", "TypesManage", "Types manage support."),
    (
        "os-volume-actions",
        "VolumeActions",
        "Enable volume actions.",
    ),
    (
        "os-vol-host-attr",
        "VolumeHostAttribute",
        "Expose host as an attribute of a volume.",
    ),
    (
        "os-vol-image-meta",
        "VolumeImageMetadata",
        "Show image metadata associated with the volume.",
    ),
    (
        "os-vol-tenant-attr",
        "VolumeTenantAttribute",
        "Expose the internal project_id as an attribute of a volume.",
    ),
    (
        "os-volume-type-access",
        "VolumeTypeAccess",
        "Volume type access support.",
    ),
    ("qos-specs", "Qos_specs_manage", "QoS specs support."),
    ("os-admin-actions", "AdminActions", "Enable admin actions."),
];

async fn extensions(_c: Caller) -> CResult<Response> {
    let list: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(alias, name, d)| {
            json!({"alias": alias, "name": name, "description": d,
                   "updated": "2013-04-18T00:00:00+00:00", "links": []})
        })
        .collect();
    Ok(ok(json!({"extensions": list})))
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

// ---------------------------------------------------------------- quotas

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

// ---------------------------------------------------------------- services

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
                "frozen": false,
            })
        })
        .map(|mut s| {
            if mv.at_least(7) {
                // No service here is clustered (Cinder's active-active HA).
                s["cluster"] = Value::Null;
            }
            if mv.at_least(49) && s["binary"] == "cinder-volume" {
                s["backend_state"] = json!(svc.backend.state());
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

async fn caps(svc: &VolumeService) -> Value {
    let cap = svc.capacity().await;
    json!({
        "volume_backend_name": svc.backend.name(),
        "vendor_name": svc.backend.vendor(),
        "driver_version": "1.0.0",
        "storage_protocol": svc.backend.protocol(),
        "total_capacity_gb": cap.total_gb,
        "free_capacity_gb": cap.free_gb,
        "reserved_percentage": 0,
        "QoS_support": false,
        "thin_provisioning_support": true,
        "multiattach": true,
        "timestamp": crate::store::now(),
    })
}

async fn pools(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    c.require_admin("scheduler_extension:scheduler_stats:get_pools")?;
    let detail = q
        .get("detail")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"));
    let name = svc.pool_host();
    let cap = caps(&svc).await;
    // Filters (3.28): the pool's name or any capability; `volume_type`
    // (3.35) keeps the pool when the type's backend specs fit it.
    let mut keep = true;
    if mv.at_least(28) {
        for (k, want) in &q.0 {
            keep &= match k.as_str() {
                "detail" => true,
                "name" => name == *want,
                "volume_type" if mv.at_least(35) => {
                    let st = svc.store.read();
                    let t = st.volume_type(want).cloned().ok_or_else(|| {
                        CinderError::not_found(format!("Volume type {want} could not be found."))
                    })?;
                    crate::flows::type_fits(&svc, &t).is_ok()
                }
                // Before 3.35 Cinder drops this filter.
                "volume_type" => true,
                other => match cap.get(other) {
                    Some(Value::String(x)) => x == want,
                    Some(v) => *v == serde_json::from_str::<Value>(want).unwrap_or(Value::Null),
                    None => false,
                },
            };
        }
    }
    let mut pools = Vec::new();
    if keep {
        let mut pool = json!({"name": name});
        if detail {
            pool["capabilities"] = cap;
        }
        pools.push(pool);
    }
    Ok(ok(json!({"pools": pools})))
}

// ---------------------------------------------------------------- resource filters (3.33)

/// The list filters each resource accepts from users (Cinder's
/// `resource_filters.json`); admins may filter on any field.
pub const RESOURCE_FILTERS: [(&str, &[&str]); 9] = [
    (
        "volume",
        &[
            "name",
            "status",
            "metadata",
            "bootable",
            "migration_status",
            "availability_zone",
            "group_id",
            "size",
            "created_at",
            "updated_at",
            "consumes_quota",
        ],
    ),
    ("backup", &["name", "status", "volume_id"]),
    (
        "snapshot",
        &[
            "name",
            "status",
            "volume_id",
            "metadata",
            "availability_zone",
            "consumes_quota",
        ],
    ),
    ("group", &["name"]),
    ("group_snapshot", &["name", "status", "group_id"]),
    (
        "attachment",
        &["volume_id", "status", "instance_id", "attach_status"],
    ),
    (
        "message",
        &[
            "resource_uuid",
            "resource_type",
            "event_id",
            "request_id",
            "message_level",
        ],
    ),
    ("pool", &["name", "volume_type"]),
    ("volume_type", &["is_public", "extra_specs"]),
];

/// The user filters of one resource.
pub fn resource_filters_of(resource: &str) -> &'static [&'static str] {
    RESOURCE_FILTERS
        .iter()
        .find(|(r, _)| *r == resource)
        .map(|(_, f)| *f)
        .unwrap_or(&[])
}

async fn resource_filters(_c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    if !mv.at_least(33) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    let want = q.get("resource");
    let list: Vec<Value> = RESOURCE_FILTERS
        .iter()
        .filter(|(r, _)| want.is_none_or(|w| w == *r))
        .map(|(r, f)| json!({"resource": r, "filters": f}))
        .collect();
    Ok(ok(json!({"resource_filters": list})))
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

// ---------------------------------------------------------------- default types (3.62)

fn need_62(mv: Mv) -> CResult<()> {
    if mv.at_least(62) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

fn default_view(d: &Obj) -> Value {
    json!({"project_id": s(d, "project_id"), "volume_type_id": s(d, "volume_type_id")})
}

async fn default_types(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    need_62(mv)?;
    c.require_admin("volume_extension:default_get_all")?;
    let st = svc.store.read();
    let list: Vec<Value> = st
        .iter(Kind::Quota)
        .filter(|d| s(d, "id").starts_with("default_type:"))
        .map(|d| default_view(d))
        .collect();
    Ok(ok(json!({"default_types": list})))
}

async fn default_type_show(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(project): Path<String>,
) -> CResult<Response> {
    need_62(mv)?;
    c.require_admin("volume_extension:default_get")?;
    let st = svc.store.read();
    let d = st
        .get(Kind::Quota, &crate::project_default_key(&project))
        .ok_or_else(|| {
            CinderError::not_found(format!("Default type for project {project} not found."))
        })?;
    Ok(ok(json!({"default_type": default_view(d)})))
}

async fn default_type_set(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(project): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need_62(mv)?;
    c.require_admin("volume_extension:default_set_or_update")?;
    let want = body_obj(&body, "default_type")?
        .get("volume_type")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
        .ok_or_else(|| {
            CinderError::bad(
                "Invalid input for field/attribute default_type: volume_type is required.",
            )
        })?
        .to_string();
    let d = svc
        .store
        .write(|tx| {
            let t = tx.st.volume_type(&want).cloned().ok_or_else(|| {
                CinderError::bad(format!("Volume type {want} could not be found."))
            })?;
            let key = crate::project_default_key(&project);
            let mut d = Obj::new();
            d.insert("id".into(), json!(key));
            d.insert("project_id".into(), json!(project));
            d.insert("volume_type_id".into(), json!(s(&t, "id")));
            tx.put_id(Kind::Quota, &key, d.clone());
            Ok(d)
        })
        .await?;
    Ok(ok(json!({"default_type": default_view(&d)})))
}

async fn default_type_unset(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(project): Path<String>,
) -> CResult<Response> {
    need_62(mv)?;
    c.require_admin("volume_extension:default_unset")?;
    svc.store
        .write(|tx| {
            tx.del(Kind::Quota, &crate::project_default_key(&project));
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn capabilities(AxState(svc): St, c: Caller, Path(host): Path<String>) -> CResult<Response> {
    c.require_admin("volume_extension:capabilities")?;
    let host = host.split('#').next().unwrap_or_default();
    if host != svc.host {
        return Err(CinderError::not_found(format!(
            "Service cinder-volume on host {host} could not be found."
        )));
    }
    Ok(ok(json!({
        "pool_name": Value::Null,
        "description": Value::Null,
        "volume_backend_name": svc.backend.name(),
        "namespace": format!("OS::Storage::Capabilities::{host}"),
        "visibility": Value::Null,
        "driver_version": "1.0.0",
        "vendor_name": svc.backend.vendor(),
        "properties": {
            "thin_provisioning": {"title": "Thin Provisioning", "description": "Sets thin provisioning.", "type": "boolean"},
        },
        "storage_protocol": svc.backend.protocol(),
        "replication_targets": [],
        "display_name": Value::Null,
    })))
}

// ---------------------------------------------------------------- clusters (3.7)
//
// Cinder groups active-active volume services into clusters; this one's
// services are not clustered, so the list is empty and names are unknown.

fn need_7(mv: Mv) -> CResult<()> {
    if mv.at_least(7) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

async fn clusters(c: Caller, mv: Mv) -> CResult<Response> {
    need_7(mv)?;
    c.require_admin("clusters:get_all")?;
    Ok(ok(json!({"clusters": []})))
}

async fn cluster_show(c: Caller, mv: Mv, Path(name): Path<String>) -> CResult<Response> {
    need_7(mv)?;
    c.require_admin("clusters:get")?;
    Err(CinderError::not_found(format!(
        "Cluster {name} could not be found."
    )))
}

async fn cluster_action(
    c: Caller,
    mv: Mv,
    Path(action): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need_7(mv)?;
    c.require_admin("clusters:update")?;
    if !matches!(action.as_str(), "enable" | "disable") {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    Err(CinderError::not_found(format!(
        "Cluster {name} could not be found."
    )))
}

// ------------------------------------------------ manageable resources (3.8)
//
// What the backend holds that no record owns (a file left by another
// installation, say), listed so an operator can see it. Managing it in
// (`os-volume-manage`) is not offered yet, so none is `safe_to_manage`.

async fn manageable(
    svc: &VolumeService,
    c: &Caller,
    mv: Mv,
    snapshots: bool,
    detail: bool,
) -> CResult<Response> {
    if !mv.at_least(8) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    c.require_admin("volume_extension:list_manageable")?;
    let (vols, snaps) = svc
        .backend
        .inventory()
        .await
        .map_err(CinderError::internal)?;
    let st = svc.store.read();
    let (ids, kind, prefix, key) = if snapshots {
        (snaps, Kind::Snapshot, "snapshot-", "manageable-snapshots")
    } else {
        (vols, Kind::Volume, "volume-", "manageable-volumes")
    };
    let list: Vec<Value> = ids
        .into_iter()
        .filter(|id| st.get(kind, id).is_none())
        .map(|id| {
            let mut o = json!({"reference": {"source-name": format!("{prefix}{id}")},
                               "safe_to_manage": false, "size": 0});
            if detail {
                o["reason_not_safe"] =
                    json!("managing existing backend objects is not supported yet");
                o["cinder_id"] = Value::Null;
                o["extra_info"] = Value::Null;
            }
            o
        })
        .collect();
    Ok(ok(json!({ key: list })))
}

async fn manageable_volumes(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    manageable(&svc, &c, mv, false, false).await
}
async fn manageable_volumes_detail(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    manageable(&svc, &c, mv, false, true).await
}
async fn manageable_snapshots(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    manageable(&svc, &c, mv, true, false).await
}
async fn manageable_snapshots_detail(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    manageable(&svc, &c, mv, true, true).await
}

// ------------------------------------------------ backups
//
// No cinder-backup service runs here: the collection is empty and every
// request that needs the service answers as Cinder does without one.

fn no_backup_service() -> CinderError {
    CinderError::not_found("Service cinder-backup could not be found.")
}

async fn backups_list(_c: Caller) -> CResult<Response> {
    Ok(ok(json!({"backups": []})))
}

async fn backup_item(_c: Caller, Path(id): Path<String>) -> CResult<Response> {
    Err(CinderError::not_found(format!(
        "Backup {id} could not be found."
    )))
}

async fn backup_create(c: Caller) -> CResult<Response> {
    c.require_writer("backup:create")?;
    Err(no_backup_service())
}

// ------------------------------------------------ workers (3.24)
//
// Cinder's cleanup of a dead service's half-done work. Here every
// workflow is a saga that start-up recovery finishes or unwinds, so there
// is never anything left for a cleanup request to claim.

async fn workers_cleanup(c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    if !mv.at_least(24) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    c.require_admin("workers:cleanup")?;
    if !body.is_null() && !body.is_object() {
        return Err(CinderError::bad("Malformed request body"));
    }
    Ok(accepted(json!({"cleaning": [], "unavailable": []})))
}

async fn backup_item2(_c: Caller, Path((id, _a)): Path<(String, String)>) -> CResult<Response> {
    Err(CinderError::not_found(format!(
        "Backup {id} could not be found."
    )))
}
