//! `/servers`: create, list (filters, sorting, paging), show, update,
//! delete, and the sub-resources (metadata, tags, ips, instance actions,
//! password, remote consoles).
use super::request::{Caller, Mv, St, body, first, json_resp, link, paging, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::{Flavor, Instance, status_of};
use crate::state::iso_z;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha224};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::servers::{check_locked, delete_instance, get_instance, visible};

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/servers/detail", get(detail))
        .route("/servers/{id}", get(show).put(update).delete(delete))
        .route("/servers/{id}/ips", get(ips))
        .route("/servers/{id}/ips/{net}", get(ips_net))
}

pub fn host_id(project: &str, host: Option<&str>) -> String {
    match host {
        Some(h) if !h.is_empty() => hex::encode(Sha224::digest(format!("{project}{h}").as_bytes())),
        _ => String::new(),
    }
}

pub fn flavor_embed(f: &Flavor, mv: Mv, admin: bool) -> Value {
    let _ = admin;
    let mut v = json!({
        "vcpus": f.vcpus, "ram": f.ram, "disk": f.disk, "ephemeral": f.ephemeral,
        "swap": f.swap, "original_name": f.name,
    });
    if mv.at_least(47) {
        v["extra_specs"] = json!(f.extra_specs);
    }
    v
}

/// Nova's server view (`detail` = the full one; else id/name/links).
pub fn view(svc: &ComputeService, c: &Caller, i: &Instance, detail: bool) -> Value {
    let base = &svc.base_url;
    let links = link(base, &format!("servers/{}", i.uuid));
    if !detail {
        return json!({"id": i.uuid, "name": i.name, "links": links});
    }
    let mv = c.mv;
    let admin = c.is_admin(svc);
    let image = if i.image_ref.is_empty() {
        json!("")
    } else {
        json!({"id": i.image_ref, "links": [{"rel": "bookmark", "href": format!("{}/images/{}", base, i.image_ref)}]})
    };
    let flavor = if mv.at_least(47) {
        flavor_embed(&i.flavor, mv, admin)
    } else {
        json!({"id": i.flavor.id, "links": [{"rel": "bookmark", "href": format!("{}/flavors/{}", base, i.flavor.id)}]})
    };
    let status = status_of(&i.vm_state, i.task_state.as_deref());
    let mut v = json!({
        "id": i.uuid,
        "name": i.name,
        "status": status,
        "tenant_id": i.project_id,
        "user_id": i.user_id,
        "metadata": i.metadata,
        "hostId": host_id(&i.project_id, i.host.as_deref()),
        "image": image,
        "flavor": flavor,
        "created": iso_z(&i.created_at),
        "updated": iso_z(&i.updated_at),
        "addresses": svc.network.addresses(&i.uuid).map(Value::Object).unwrap_or_else(|| json!(i.addresses)),
        "accessIPv4": i.access_ip_v4,
        "accessIPv6": i.access_ip_v6,
        "links": links,
        "OS-DCF:diskConfig": i.disk_config.as_deref().unwrap_or("MANUAL"),
        "OS-EXT-AZ:availability_zone": i.availability_zone.clone().unwrap_or_default(),
        "config_drive": if i.config_drive { "True" } else { "" },
        "key_name": i.key_name,
        "OS-SRV-USG:launched_at": i.launched_at,
        "OS-SRV-USG:terminated_at": i.terminated_at,
        "OS-EXT-STS:task_state": i.task_state,
        "OS-EXT-STS:vm_state": i.vm_state,
        "OS-EXT-STS:power_state": i.power_state,
        "os-extended-volumes:volumes_attached": i.bdms.iter().filter(|b| b.destination_type == "volume").map(|b| {
            let mut x = json!({"id": b.volume_id.clone().or(b.uuid.clone())});
            if mv.at_least(3) { x["delete_on_termination"] = json!(b.delete_on_termination); }
            x
        }).collect::<Vec<_>>(),
    });
    // Nova shows progress only while it means something.
    if matches!(
        status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        v["progress"] = json!(0);
    }
    if !i.security_groups.is_empty() {
        v["security_groups"] = json!(
            i.security_groups
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        );
    }
    if admin {
        v["OS-EXT-SRV-ATTR:host"] = json!(i.host);
        v["OS-EXT-SRV-ATTR:instance_name"] = json!(format!("instance-{:08x}", i.internal_id));
        v["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(i.host);
        if mv.at_least(3) {
            v["OS-EXT-SRV-ATTR:reservation_id"] = json!(i.reservation_id);
            v["OS-EXT-SRV-ATTR:launch_index"] = json!(i.launch_index);
            v["OS-EXT-SRV-ATTR:hostname"] = json!(i.hostname);
            v["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
            v["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
            v["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
            v["OS-EXT-SRV-ATTR:user_data"] = json!(i.user_data);
        }
    }
    if mv.at_least(9) {
        v["locked"] = json!(i.locked);
    }
    if mv.at_least(16) && admin {
        v["host_status"] = json!(if i.host.is_some() { "UP" } else { "" });
    }
    if mv.at_least(19) {
        v["description"] = json!(i.description);
    }
    if mv.at_least(26) {
        v["tags"] = json!(i.tags);
    }
    if mv.at_least(63) {
        v["trusted_image_certificates"] = i.trusted_certs.clone().unwrap_or(Value::Null);
    }
    if mv.at_least(73) {
        v["locked_reason"] = json!(i.locked_reason);
    }
    if let Some(f) = &i.fault
        && (status == "ERROR" || status == "DELETED")
    {
        let mut fv = json!({"code": f.code, "message": f.message, "created": iso_z(&f.created)});
        if admin || f.code != 500 {
            fv["details"] = json!(f.details);
        }
        v["fault"] = fv;
    }
    v
}

/// Before 2.75, PUT and rebuild answer with the basic server view (no
/// extended attributes); from 2.75 with everything `show` has.
pub fn update_view(svc: &ComputeService, c: &Caller, i: &Instance) -> Value {
    let mut v = view(svc, c, i, true);
    if !c.mv.at_least(75)
        && let Some(o) = v.as_object_mut()
    {
        o.retain(|k, _| {
            let extended = k.starts_with("OS-EXT-") || k.starts_with("OS-SRV-USG:");
            !extended
                && !matches!(
                    k.as_str(),
                    "config_drive"
                        | "key_name"
                        | "os-extended-volumes:volumes_attached"
                        | "security_groups"
                        | "host_status"
                        | "fault"
                )
        });
        // Before 2.75 the addresses carry only `version` and `addr` here.
        if let Some(Value::Object(nets)) = o.get_mut("addresses") {
            for list in nets.values_mut() {
                if let Some(a) = list.as_array_mut() {
                    for x in a.iter_mut().filter_map(Value::as_object_mut) {
                        x.retain(|k, _| k == "version" || k == "addr");
                    }
                }
            }
        }
        if c.mv.at_least(54) {
            o.insert("key_name".into(), json!(i.key_name));
        }
    }
    if c.mv.at_least(71) {
        v["server_groups"] = json!(i.server_group.iter().collect::<Vec<_>>());
    }
    v
}

fn bad(m: impl Into<String>) -> NovaError {
    NovaError::bad(m)
}

pub(super) fn check_name(v: &Value, what: &str) -> NResult<String> {
    let s = v.as_str().ok_or_else(|| {
        bad(format!(
            "Invalid input for field/attribute {what}. Value: {v}. {v} is not of type 'string'"
        ))
    })?;
    if s.is_empty() || s.len() > 255 {
        return Err(bad(format!(
            "Invalid input for field/attribute {what}. Value: {s}. '{s}' is too long or empty"
        )));
    }
    if s.trim() != s {
        return Err(bad(format!(
            "Invalid input for field/attribute {what}. Value: {s}. '{s}' does not match '^(?! )[a-zA-Z0-9]...'"
        )));
    }
    Ok(s.to_string())
}

pub fn check_metadata(v: &Value) -> NResult<BTreeMap<String, String>> {
    let obj = v.as_object().ok_or_else(|| {
        bad("Invalid input for field/attribute metadata. Value must be an object.")
    })?;
    let mut out = BTreeMap::new();
    for (k, val) in obj {
        if k.is_empty() || k.len() > 255 {
            return Err(bad(format!(
                "Invalid input for field/attribute metadata. Value: {k}. Key length must be 1-255."
            )));
        }
        let s = val.as_str().ok_or_else(|| {
            bad(format!(
                "Invalid input for field/attribute {k}. Value: {val}. {val} is not of type 'string'"
            ))
        })?;
        if s.len() > 255 {
            return Err(bad(format!(
                "Invalid input for field/attribute {k}. Value is too long."
            )));
        }
        out.insert(k.clone(), s.to_string());
    }
    Ok(out)
}

pub fn check_tag(t: &str) -> NResult<()> {
    if t.is_empty() || t.len() > 60 || t.contains('/') || t.contains(',') {
        return Err(bad(format!(
            "Invalid input for field/attribute tags. Value: {t}. Tags must be 1-60 characters without '/' or ','."
        )));
    }
    Ok(())
}

pub fn uuid_like(s: &str) -> bool {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit())
}

// ---------------------------------------------------------------- list

const STATUSES: &[&str] = &[
    "ACTIVE",
    "BUILD",
    "SHUTOFF",
    "ERROR",
    "PAUSED",
    "SUSPENDED",
    "RESCUE",
    "REBOOT",
    "HARD_REBOOT",
    "RESIZE",
    "VERIFY_RESIZE",
    "REVERT_RESIZE",
    "MIGRATING",
    "REBUILD",
    "PASSWORD",
    "DELETED",
    "SOFT_DELETED",
    "SHELVED",
    "SHELVED_OFFLOADED",
    "UNKNOWN",
];

fn parse_time(s: &str) -> NResult<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").map(|n| n.and_utc()))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").map(|n| n.and_utc()))
        .map_err(|_| bad(format!("Invalid input for field/attribute changes-since. Value: {s}. '{s}' is not a 'date-time'")))?;
    Ok(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
}

/// Nova filters names with a regular expression (Python `re.search`); an
/// invalid expression matches as a plain substring.
fn matches_regex_like(hay: &str, pat: &str) -> bool {
    match regex_lite::Regex::new(pat) {
        Ok(re) => re.is_match(hay),
        Err(_) => hay.contains(pat),
    }
}

const LIST_PARAMS: &[&str] = &[
    "name",
    "status",
    "image",
    "flavor",
    "host",
    "changes-since",
    "changes-before",
    "ip",
    "ip6",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "all_tenants",
    "project_id",
    "tenant_id",
    "user_id",
    "locked",
    "deleted",
    "reservation_id",
    "availability_zone",
    "key_name",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
    "launched_at",
    "terminated_at",
    "node",
    "config_drive",
    "description",
    "created_at",
    "uuid",
    "vm_state",
    "task_state",
    "power_state",
    "progress",
    "hostname",
    "access_ip_v4",
    "access_ip_v6",
    "locked_by",
    "launch_index",
    "kernel_id",
    "ramdisk_id",
    "root_device_name",
    "display_name",
    "display_description",
    "image_ref",
    "instance_type_id",
    "updated_at",
    "soft_deleted",
];

fn listing(svc: &ComputeService, c: &Caller, raw: Option<String>, detail: bool) -> NResult<Value> {
    let q = query(raw.clone());
    let admin = c.is_admin(svc);
    let mv = c.mv;
    if mv.at_least(75) {
        for k in q.keys() {
            if !LIST_PARAMS.contains(&k.as_str()) {
                return Err(bad(format!(
                    "Invalid input for query parameters {k}. Value: {:?}. Additional properties are not allowed ('{k}' was unexpected)",
                    q[k]
                )));
            }
        }
    }
    let (limit, marker) = paging(&q)?;
    let all_tenants = admin
        && q.get("all_tenants").is_some_and(|v| {
            v.last()
                .is_none_or(|x| !matches!(x.to_lowercase().as_str(), "0" | "false" | "off" | "no"))
        });
    let project_filter = q
        .get("project_id")
        .or_else(|| q.get("tenant_id"))
        .and_then(|v| v.last().cloned());
    // An admin sees every project (or the one named) only with all_tenants;
    // without it Nova ignores tenant_id and lists the caller's project.
    let want_project: Option<String> = if all_tenants {
        project_filter.clone()
    } else {
        Some(c.project())
    };
    let statuses: Vec<String> = q
        .get("status")
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| s.to_uppercase())
        .collect();
    for s in &statuses {
        if !STATUSES.contains(&s.as_str()) && mv.at_least(38) {
            return Err(bad("Invalid status value".to_string()));
        }
    }
    let changes_since = first(&q, "changes-since").map(parse_time).transpose()?;
    let changes_before = first(&q, "changes-before").map(parse_time).transpose()?;
    if let (Some(a), Some(b)) = (&changes_since, &changes_before)
        && a > b
    {
        return Err(bad(
            "The value of changes-since must be less than or equal to changes-before.",
        ));
    }
    let deleted = admin
        && first(&q, "deleted")
            .is_some_and(|v| matches!(v.to_lowercase().as_str(), "true" | "1" | "yes" | "on"));
    let include_deleted = deleted
        || changes_since.is_some()
        || changes_before.is_some()
        || statuses.iter().any(|s| s == "DELETED");
    let locked = match first(&q, "locked") {
        Some(v) if mv.at_least(73) => match v.to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => {
                return Err(bad(format!(
                    "Unrecognized value '{v}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
                )));
            }
        },
        _ => None,
    };
    let tag_list = |k: &str| -> Vec<String> {
        first(&q, k)
            .map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (tags_all, tags_any, not_tags, not_tags_any) = (
        tag_list("tags"),
        tag_list("tags-any"),
        tag_list("not-tags"),
        tag_list("not-tags-any"),
    );
    let st = svc.state.read();
    let mut items: Vec<&Instance> = st
        .instances
        .values()
        .filter(|i| include_deleted || !i.deleted)
        .filter(|i| !deleted || i.deleted)
        .filter(|i| want_project.as_ref().is_none_or(|p| &i.project_id == p))
        .filter(|i| {
            statuses.is_empty()
                || statuses
                    .iter()
                    .any(|s| s == status_of(&i.vm_state, i.task_state.as_deref()))
        })
        .filter(|i| first(&q, "name").is_none_or(|n| matches_regex_like(&i.name, n)))
        .filter(|i| first(&q, "image").is_none_or(|x| i.image_ref == last_segment(x)))
        .filter(|i| first(&q, "flavor").is_none_or(|x| i.flavor.id == last_segment(x)))
        .filter(|i| !admin || first(&q, "host").is_none_or(|x| i.host.as_deref() == Some(x)))
        .filter(|i| !admin || first(&q, "node").is_none_or(|x| i.host.as_deref() == Some(x)))
        .filter(|i| first(&q, "reservation_id").is_none_or(|x| i.reservation_id == x))
        .filter(|i| first(&q, "key_name").is_none_or(|x| i.key_name.as_deref() == Some(x)))
        .filter(|i| {
            first(&q, "availability_zone").is_none_or(|x| i.availability_zone.as_deref() == Some(x))
        })
        .filter(|i| !admin || first(&q, "user_id").is_none_or(|x| i.user_id == x))
        .filter(|i| first(&q, "ip").is_none_or(|x| addresses_match(i, x)))
        .filter(|i| first(&q, "ip6").is_none_or(|x| addresses_match(i, x)))
        .filter(|i| changes_since.as_ref().is_none_or(|t| &i.updated_at >= t))
        .filter(|i| changes_before.as_ref().is_none_or(|t| &i.updated_at <= t))
        .filter(|i| locked.is_none_or(|l| i.locked == l))
        .filter(|i| tags_all.iter().all(|t| i.tags.contains(t)))
        .filter(|i| tags_any.is_empty() || tags_any.iter().any(|t| i.tags.contains(t)))
        .filter(|i| not_tags.is_empty() || !not_tags.iter().all(|t| i.tags.contains(t)))
        .filter(|i| !not_tags_any.iter().any(|t| i.tags.contains(t)))
        .collect();
    let sort_keys: Vec<String> = q.get("sort_key").cloned().unwrap_or_default();
    let sort_dirs: Vec<String> = q.get("sort_dir").cloned().unwrap_or_default();
    for d in &sort_dirs {
        if d != "asc" && d != "desc" {
            return Err(bad(format!("Invalid sort direction {d}")));
        }
    }
    let key_of = |i: &Instance, k: &str| -> String {
        match k {
            "display_name" | "name" => i.name.clone(),
            "updated_at" => i.updated_at.clone(),
            "launched_at" => i.launched_at.clone().unwrap_or_default(),
            "vm_state" => i.vm_state.clone(),
            "uuid" | "id" => i.uuid.clone(),
            "host" => i.host.clone().unwrap_or_default(),
            "key_name" => i.key_name.clone().unwrap_or_default(),
            "project_id" => i.project_id.clone(),
            "user_id" => i.user_id.clone(),
            "availability_zone" => i.availability_zone.clone().unwrap_or_default(),
            "instance_type_id" => format!("{:020}", i.flavor.seq),
            _ => format!("{:020}", i.seq),
        }
    };
    if sort_keys.is_empty() {
        items.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.seq.cmp(&a.seq)));
    } else {
        items.sort_by(|a, b| {
            for (n, k) in sort_keys.iter().enumerate() {
                let dir = sort_dirs
                    .get(n)
                    .or(sort_dirs.last())
                    .map(String::as_str)
                    .unwrap_or("desc");
                let o = key_of(a, k).cmp(&key_of(b, k));
                let o = if dir == "asc" { o } else { o.reverse() };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            b.seq.cmp(&a.seq)
        });
    }
    if let Some(m) = &marker {
        let pos = items
            .iter()
            .position(|i| &i.uuid == m)
            .ok_or_else(|| bad(format!("marker [{m}] not found")))?;
        items.drain(..=pos);
    }
    let total = items.len();
    if let Some(l) = limit {
        items.truncate(l);
    }
    let servers: Vec<Value> = items.iter().map(|i| view(svc, c, i, detail)).collect();
    let mut out = json!({"servers": servers});
    if let (Some(l), Some(last)) = (limit, items.last())
        && total > l
    {
        let mut params: Vec<String> = q
            .iter()
            .filter(|(k, _)| *k != "marker" && *k != "limit")
            .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
            .collect();
        params.push(format!("limit={l}"));
        params.push(format!("marker={}", last.uuid));
        let path = if detail { "servers/detail" } else { "servers" };
        out["servers_links"] = json!([{"rel": "next", "href": format!("{}/v2.1/{path}?{}", svc.base_url, params.join("&"))}]);
    }
    Ok(out)
}

fn addresses_match(i: &Instance, pat: &str) -> bool {
    i.addresses.values().any(|list| {
        list.as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["addr"]
                    .as_str()
                    .is_some_and(|ad| matches_regex_like(ad, pat))
            })
        })
    })
}

pub(super) async fn list(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, listing(&svc, &c, q, false)?))
}

async fn detail(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, listing(&svc, &c, q, true)?))
}

async fn show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let mut v = view(&svc, &c, &i, true);
    if c.mv.at_least(71) {
        v["server_groups"] = json!(i.server_group.iter().collect::<Vec<_>>());
    }
    Ok(json_resp(StatusCode::OK, json!({"server": v})))
}

async fn update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    let b = body(&raw)?;
    let s = b
        .get("server")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            bad("Invalid input for field/attribute server. 'server' is a required property")
        })?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:servers:update")?;
    for k in s.keys() {
        let ok = matches!(
            k.as_str(),
            "name" | "accessIPv4" | "accessIPv6" | "OS-DCF:diskConfig"
        ) || (k == "description" && c.mv.at_least(19));
        if !ok {
            return Err(bad(format!(
                "Invalid input for field/attribute server. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    let name = s.get("name").map(|n| check_name(n, "name")).transpose()?;
    let dc = disk_config_of(s.get("OS-DCF:diskConfig"))?;
    let desc = match s.get("description") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(d)) if d.len() <= 255 => Some(Some(d.clone())),
        Some(_) => return Err(bad("Invalid input for field/attribute description.")),
    };
    let v4 = match s.get("accessIPv4") {
        None => None,
        Some(Value::String(x)) if x.is_empty() || x.parse::<std::net::Ipv4Addr>().is_ok() => {
            Some(x.clone())
        }
        Some(Value::Null) => Some(String::new()),
        Some(x) => {
            return Err(bad(format!(
                "Invalid input for field/attribute accessIPv4. Value: {x}. is not a 'ipv4'"
            )));
        }
    };
    let v6 = match s.get("accessIPv6") {
        None => None,
        Some(Value::String(x)) if x.is_empty() => Some(String::new()),
        Some(Value::String(x)) if x.parse::<std::net::Ipv6Addr>().is_ok() => {
            x.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string())
        }
        Some(Value::Null) => Some(String::new()),
        Some(x) => {
            return Err(bad(format!(
                "Invalid input for field/attribute accessIPv6. Value: {x}. is not a 'ipv6'"
            )));
        }
    };
    let i = svc
        .state
        .update_instance(&id, |i| {
            if let Some(n) = name {
                i.name = n;
            }
            if dc.is_some() {
                i.disk_config = dc;
            }
            if let Some(d) = desc {
                i.description = d;
            }
            if let Some(x) = v4 {
                i.access_ip_v4 = x;
            }
            if let Some(x) = v6 {
                i.access_ip_v6 = x;
            }
            Ok(())
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"server": update_view(&svc, &c, &i)}),
    ))
}

async fn delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    delete_instance(&svc, &c, &id, "delete").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ips(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let addrs = svc
        .network
        .addresses(&i.uuid)
        .map(Value::Object)
        .unwrap_or_else(|| json!(i.addresses));
    Ok(json_resp(StatusCode::OK, json!({ "addresses": addrs })))
}

async fn ips_net(
    AxState(svc): St,
    c: Caller,
    Path((id, net)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let live = svc.network.addresses(&i.uuid);
    let a = live
        .as_ref()
        .map(|m| m.get(&net))
        .unwrap_or_else(|| i.addresses.get(&net))
        .ok_or_else(|| {
            NovaError::not_found("Network could not be found in the instance's addresses.")
        })?;
    Ok(json_resp(StatusCode::OK, json!({ net: a })))
}

/// `OS-DCF:diskConfig`: AUTO or MANUAL (400 otherwise).
pub(super) fn last_segment(s: &str) -> String {
    s.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(s)
        .to_string()
}

pub fn disk_config_of(v: Option<&Value>) -> NResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(Value::String(x)) if x == "AUTO" || x == "MANUAL" => Ok(Some(x.clone())),
        Some(x) => Err(bad(format!(
            "Invalid input for field/attribute OS-DCF:diskConfig. Value: {x}. '{x}' is not one of ['AUTO', 'MANUAL']"
        ))),
    }
}
