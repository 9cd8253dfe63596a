//! `GET /servers` and `GET /servers/detail`: the filters, sorting and
//! paging of Nova's server list at each microversion (who may filter by
//! what, which columns match exactly and which by regular expression).
use super::request::{Caller, St, first, json_resp, next_link, paging, query};
use super::servers::{last_segment, view};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::{Instance, status_of};
use axum::extract::{RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

fn bad(m: impl Into<String>) -> NovaError {
    NovaError::bad(m)
}

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

pub(super) fn parse_time(s: &str) -> NResult<String> {
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
            if !LIST_PARAMS.contains(&k.as_str()) && !JOINED_PARAMS.contains(&k.as_str()) {
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
    for k in q.keys() {
        if admin && (JOINED_PARAMS.contains(&k.as_str()) || k.starts_with('_')) {
            return Err(bad(format!("Invalid filter field: {k}.")));
        }
    }
    // The column filters this caller may use: an admin all of them, others
    // those Nova's `_get_server_search_options` allows at this version.
    let column_filters: Vec<(&str, &str)> = COLUMN_FILTERS
        .iter()
        .filter(|k| {
            admin
                || (mv.at_least(83) && NON_ADMIN_2_83.contains(k))
                || (mv.at_least(90) && **k == "hostname")
        })
        .filter_map(|k| first(&q, k).map(|v| (*k, v)))
        .collect();
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
        .filter(|i| column_filters.iter().all(|(k, v)| column_matches(i, k, v)))
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
        let path = if detail { "servers/detail" } else { "servers" };
        out["servers_links"] = next_link(&svc.base_url, path, &q, l, &last.uuid);
    }
    Ok(out)
}

/// Relationships Nova refuses to filter on (`JOINED_TABLE_QUERY_PARAMS_SERVERS`).
const JOINED_PARAMS: &[&str] = &[
    "block_device_mapping",
    "services",
    "metadata",
    "system_metadata",
    "info_cache",
    "security_groups",
    "pci_devices",
];

/// Instance columns filtered as Nova's database API does: `EXACT` ones by
/// equality, the others by regular expression.
const COLUMN_FILTERS: &[&str] = &[
    "user_id",
    "vm_state",
    "task_state",
    "uuid",
    "availability_zone",
    "config_drive",
    "key_name",
    "created_at",
    "launched_at",
    "terminated_at",
    "power_state",
    "progress",
    "hostname",
    "access_ip_v4",
    "access_ip_v6",
    "kernel_id",
    "ramdisk_id",
    "launch_index",
    "locked_by",
    "display_description",
    "description",
];
const EXACT: &[&str] = &["user_id", "vm_state", "task_state", "uuid"];

/// What microversion 2.83 lets a non-admin filter by.
const NON_ADMIN_2_83: &[&str] = &[
    "availability_zone",
    "config_drive",
    "key_name",
    "created_at",
    "launched_at",
    "terminated_at",
    "power_state",
    "task_state",
    "vm_state",
    "progress",
    "user_id",
];

fn column_matches(i: &Instance, k: &str, v: &str) -> bool {
    let db_time = |t: &Option<String>| t.as_deref().map(|t| t.replacen('T', " ", 1));
    let col: Option<String> = match k {
        "user_id" => Some(i.user_id.clone()),
        "vm_state" => Some(i.vm_state.clone()),
        "task_state" => i.task_state.clone(),
        "uuid" => Some(i.uuid.clone()),
        "availability_zone" => i.availability_zone.clone(),
        "config_drive" => Some(if i.config_drive { "True" } else { "" }.to_string()),
        "key_name" => i.key_name.clone(),
        "created_at" => db_time(&Some(i.created_at.clone())),
        "launched_at" => db_time(&i.launched_at),
        "terminated_at" => db_time(&i.terminated_at),
        "power_state" => Some(i.power_state.to_string()),
        "progress" => Some("0".to_string()),
        "hostname" => Some(i.hostname.clone()),
        "access_ip_v4" => Some(i.access_ip_v4.clone()),
        "access_ip_v6" => Some(i.access_ip_v6.clone()),
        "kernel_id" => i.image_properties.get("kernel_id").cloned(),
        "ramdisk_id" => i.image_properties.get("ramdisk_id").cloned(),
        "launch_index" => Some(i.launch_index.to_string()),
        "locked_by" => i.locked_by.clone(),
        _ => i.description.clone(),
    };
    match col {
        None => false,
        Some(c) if EXACT.contains(&k) => c == v,
        Some(c) => matches_regex_like(&c, v),
    }
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

pub(super) async fn detail(
    AxState(svc): St,
    c: Caller,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, listing(&svc, &c, q, true)?))
}
