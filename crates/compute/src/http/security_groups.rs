//! `os-security-groups` and `os-security-group-rules` (removed at 2.36), `GET /servers/{id}/os-security-groups`, and the `addSecurityGroup`/`removeSecurityGroup` actions: Networking v2.0 security groups in Nova's shapes.
use super::netproxy::{Fail, Neutron, enc, gone_collection, is_uuid, neutron, removed_at_36, s};
use super::request::{Caller, St, body, first, json_resp, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::http::servers::get_instance;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route(
            "/os-security-groups",
            get(sg_list).post(sg_create).delete(gone_collection),
        )
        .route(
            "/os-security-groups/{id}",
            get(sg_show).put(sg_update).delete(sg_delete),
        )
        .route(
            "/os-security-group-rules",
            post(rule_create).delete(gone_collection),
        )
        .route(
            "/os-security-group-rules/{id}",
            axum::routing::delete(rule_delete),
        )
        .route("/servers/{id}/os-security-groups", get(server_sgs))
}

// Security groups

fn valid_sg_id(id: &str) -> NResult<()> {
    if is_uuid(id) {
        Ok(())
    } else {
        Err(NovaError::bad("Security group id should be uuid"))
    }
}

/// Nova's rule view of a Neutron ingress rule; `groups` names the remote
/// groups (a rule whose remote group is not visible is left out, as Nova does).
fn rule_view(r: &Value, groups: &BTreeMap<String, (String, String)>) -> Option<Value> {
    let proto = r.get("protocol").cloned().unwrap_or(Value::Null);
    let (min, max) = (r.get("port_range_min"), r.get("port_range_max"));
    let none = |v: Option<&Value>| v.is_none_or(Value::is_null);
    let (from, to) = match proto.as_str() {
        Some(p) if none(min) && none(max) => {
            if p.eq_ignore_ascii_case("tcp") || p.eq_ignore_ascii_case("udp") {
                (json!(1), json!(65535))
            } else {
                (json!(-1), json!(-1))
            }
        }
        _ => (
            min.cloned().unwrap_or(Value::Null),
            max.cloned().unwrap_or(Value::Null),
        ),
    };
    let (group, ip_range) = match r.get("remote_group_id").and_then(Value::as_str) {
        Some(g) => {
            let (name, tenant) = groups.get(g)?;
            (json!({"name": name, "tenant_id": tenant}), json!({}))
        }
        None => {
            let cidr = match r.get("remote_ip_prefix").and_then(Value::as_str) {
                Some(c) => c.to_string(),
                None if s(r, "ethertype") == "IPv6" => "::/0".into(),
                None => "0.0.0.0/0".into(),
            };
            (json!({}), json!({"cidr": cidr}))
        }
    };
    Some(json!({
        "id": r.get("id"),
        "parent_group_id": r.get("security_group_id"),
        "ip_protocol": proto,
        "from_port": from,
        "to_port": to,
        "group": group,
        "ip_range": ip_range,
    }))
}

fn sg_view(g: &Value, groups: &BTreeMap<String, (String, String)>) -> Value {
    let rules: Vec<Value> = g
        .get("security_group_rules")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter(|r| s(r, "direction") == "ingress")
                .filter_map(|r| rule_view(r, groups))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": g.get("id"),
        "name": s(g, "name"),
        "description": s(g, "description"),
        "tenant_id": g.get("project_id").or_else(|| g.get("tenant_id")).and_then(Value::as_str).unwrap_or(""),
        "rules": rules,
    })
}

/// Names and owners of the remote groups `sgs`' rules refer to: those in
/// `sgs` themselves, the rest fetched in one list call.
async fn remote_groups(
    n: &Neutron<'_>,
    sgs: &[Value],
) -> Result<BTreeMap<String, (String, String)>, Fail> {
    let mut known: BTreeMap<String, (String, String)> = sgs
        .iter()
        .map(|g| {
            (
                s(g, "id").to_string(),
                (s(g, "name").to_string(), s(g, "project_id").to_string()),
            )
        })
        .collect();
    let missing: BTreeSet<String> = sgs
        .iter()
        .filter_map(|g| g.get("security_group_rules").and_then(Value::as_array))
        .flatten()
        .filter_map(|r| r.get("remote_group_id").and_then(Value::as_str))
        .filter(|id| !known.contains_key(*id))
        .map(str::to_string)
        .collect();
    if !missing.is_empty() {
        let q: Vec<String> = missing.iter().map(|id| format!("id={}", enc(id))).collect();
        for g in n
            .list(
                &format!("/v2.0/security-groups?{}", q.join("&")),
                "security_groups",
            )
            .await?
        {
            known.insert(
                s(&g, "id").to_string(),
                (s(&g, "name").to_string(), s(&g, "project_id").to_string()),
            );
        }
    }
    Ok(known)
}

async fn sg_get(n: &Neutron<'_>, id: &str) -> NResult<Value> {
    match n.get(&format!("/v2.0/security-groups/{}", enc(id))).await {
        Ok(mut v) => Ok(v
            .get_mut("security_group")
            .map(Value::take)
            .unwrap_or_default()),
        Err(f) if f.code == 404 => Err(NovaError::not_found(format!(
            "Security group {id} not found."
        ))),
        Err(f) => Err(f.nova(400)),
    }
}

async fn sg_one(n: &Neutron<'_>, g: Value) -> NResult<Response> {
    let groups = remote_groups(n, std::slice::from_ref(&g))
        .await
        .map_err(|f| f.nova(400))?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"security_group": sg_view(&g, &groups)}),
    ))
}

async fn sg_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    removed_at_36(&c)?;
    let q = query(raw);
    let all = first(&q, "all_tenants").is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "f" | "no" | "off"
        )
    }) && c.is_admin(&svc);
    let n = neutron(&svc, &c);
    let path = if all {
        "/v2.0/security-groups".to_string()
    } else {
        format!("/v2.0/security-groups?project_id={}", enc(&c.project()))
    };
    let sgs = n
        .list(&path, "security_groups")
        .await
        .map_err(|f| f.nova(400))?;
    let groups = remote_groups(&n, &sgs).await.map_err(|f| f.nova(400))?;
    let mut out: Vec<Value> = sgs.iter().map(|g| sg_view(g, &groups)).collect();
    // Nova's limit/offset paging of this list.
    let offset = first(&q, "offset")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    out = out.into_iter().skip(offset).collect();
    if let Some(l) = first(&q, "limit").and_then(|v| v.parse::<usize>().ok()) {
        out.truncate(l);
    }
    Ok(json_resp(StatusCode::OK, json!({"security_groups": out})))
}

async fn sg_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    removed_at_36(&c)?;
    valid_sg_id(&id)?;
    let n = neutron(&svc, &c);
    let g = sg_get(&n, &id).await?;
    sg_one(&n, g).await
}

/// Nova's check of a group's name or description: a string, at most 255
/// characters, and (for the name) not blank.
fn sg_property(o: &Map<String, Value>, k: &str, required: bool) -> NResult<Option<String>> {
    match o.get(k) {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(v)) => {
            if v.chars().count() > 255 {
                return Err(NovaError::bad(format!(
                    "Security group {k} should not be greater than 255 characters."
                )));
            }
            if k == "name" && v.trim().is_empty() {
                return Err(NovaError::bad(format!(
                    "Security group {k} should not be empty."
                )));
            }
            Ok(Some(v.clone()))
        }
        _ => Err(NovaError::bad(format!(
            "Security group {k} is not a string or unicode"
        ))),
    }
}

fn sg_body(raw: &[u8], required: bool) -> NResult<Map<String, Value>> {
    let b = body(raw)?;
    let o = b
        .get("security_group")
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Missing parameter security_group"))?;
    let mut out = Map::new();
    for k in ["name", "description"] {
        if let Some(v) = sg_property(o, k, required)? {
            out.insert(k.into(), json!(v));
        }
    }
    Ok(out)
}

async fn sg_create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    removed_at_36(&c)?;
    let o = sg_body(&raw, true)?;
    let n = neutron(&svc, &c);
    let mut v = n
        .call(
            "POST",
            "/v2.0/security-groups",
            Some(json!({"security_group": o})),
        )
        .await
        .map_err(|f| match f.kind.as_str() {
            "OverQuota" => NovaError::forbidden("Quota exceeded, too many security groups."),
            _ => f.nova(400),
        })?;
    let g = v
        .get_mut("security_group")
        .map(Value::take)
        .unwrap_or_default();
    sg_one(&n, g).await
}

async fn sg_update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    removed_at_36(&c)?;
    valid_sg_id(&id)?;
    let o = sg_body(&raw, false)?;
    let n = neutron(&svc, &c);
    sg_get(&n, &id).await?;
    let mut v = n
        .call(
            "PUT",
            &format!("/v2.0/security-groups/{id}"),
            Some(json!({"security_group": o})),
        )
        .await
        .map_err(|f| match f.code {
            404 => NovaError::not_found(format!("Security group {id} not found.")),
            _ => f.nova(400),
        })?;
    let g = v
        .get_mut("security_group")
        .map(Value::take)
        .unwrap_or_default();
    sg_one(&n, g).await
}

async fn sg_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    removed_at_36(&c)?;
    valid_sg_id(&id)?;
    let n = neutron(&svc, &c);
    n.call("DELETE", &format!("/v2.0/security-groups/{id}"), None)
        .await
        .map_err(|f| match f.code {
            404 => NovaError::not_found(format!("Security group {id} not found.")),
            // In use, or the project's default group: Nova says 400.
            _ => f.nova(400),
        })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// An optional integer port (JSON number or numeric string).
fn port_arg(o: &Map<String, Value>, k: &str, icmp: bool) -> NResult<Option<i64>> {
    let bad = || {
        NovaError::bad(if icmp {
            "Type and Code must be integers for ICMP protocol type".to_string()
        } else {
            "To and From ports must be integers".to_string()
        })
    };
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// Nova's `_new_ingress_rule`: the Neutron rule for a Nova rule request, or
/// why it is invalid.
fn build_rule(
    o: &Map<String, Value>,
    parent: &str,
    group_id: Option<&str>,
) -> NResult<Map<String, Value>> {
    let proto = match o.get("ip_protocol") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.is_empty() => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(v) => Some(v.to_string()),
    };
    let up = proto.as_deref().unwrap_or("").to_ascii_uppercase();
    let icmp = up == "ICMP";
    let mut from = port_arg(o, "from_port", icmp)?;
    let mut to = port_arg(o, "to_port", icmp)?;
    let mut rule = Map::new();
    rule.insert("security_group_id".into(), json!(parent));
    rule.insert("direction".into(), json!("ingress"));
    let mut ethertype = "IPv4";
    if let Some(g) = group_id {
        rule.insert("remote_group_id".into(), json!(g));
        if from.is_none() && to.is_none() {
            if icmp {
                (from, to) = (Some(-1), Some(-1));
            } else if up == "TCP" || up == "UDP" {
                (from, to) = (Some(1), Some(65535));
            }
        }
    } else {
        let cidr = match o.get("cidr") {
            None | Some(Value::Null) => "0.0.0.0/0".to_string(),
            Some(Value::String(c)) if c.is_empty() => "0.0.0.0/0".to_string(),
            Some(Value::String(c)) => super::request::decode(c),
            Some(v) => v.to_string(),
        };
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| NovaError::bad(format!("Invalid cidr {cidr}.")))?;
        let ip: std::net::IpAddr = addr
            .parse()
            .map_err(|_| NovaError::bad(format!("Invalid cidr {cidr}.")))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match len.parse::<u8>() {
            Ok(l) if l <= max => {
                if l == 0 && !ip.is_unspecified() {
                    return Err(NovaError::bad(format!(
                        "Bad prefix for network in cidr {cidr}"
                    )));
                }
            }
            _ => return Err(NovaError::bad(format!("Invalid cidr {cidr}."))),
        }
        if ip.is_ipv6() {
            ethertype = "IPv6";
        }
        rule.insert("remote_ip_prefix".into(), json!(cidr));
    }
    rule.insert("ethertype".into(), json!(ethertype));
    match (proto, from, to) {
        (Some(p), Some(from), Some(to)) => {
            if !matches!(up.as_str(), "TCP" | "UDP" | "ICMP") {
                return Err(NovaError::bad(format!("Invalid IP protocol {p}.")));
            }
            let range = |m: &str| NovaError::bad(format!("Invalid port range {from}:{to}. {m}"));
            if up != "ICMP" {
                if from > to {
                    return Err(range("Former value cannot be greater than the later"));
                }
                if from < 1 || to > 65535 {
                    return Err(range(&format!(
                        "Valid {up} ports should be between 1-65535"
                    )));
                }
            } else if !(-1..=255).contains(&from) || !(-1..=255).contains(&to) {
                return Err(range("For ICMP, the type:code must be valid"));
            }
            rule.insert("protocol".into(), json!(p.to_ascii_lowercase()));
            // Nova's -1 (any ICMP type or code) is Neutron's null.
            let port = |v: i64| if v == -1 { Value::Null } else { json!(v) };
            rule.insert("port_range_min".into(), port(from));
            rule.insert("port_range_max".into(), port(to));
        }
        _ if group_id.is_none() => {
            return Err(NovaError::bad(
                "Not enough parameters to build a valid rule.",
            ));
        }
        (p, _, _) => {
            if let Some(p) = p {
                if !matches!(up.as_str(), "TCP" | "UDP" | "ICMP") {
                    return Err(NovaError::bad(format!("Invalid IP protocol {p}.")));
                }
                rule.insert("protocol".into(), json!(p.to_ascii_lowercase()));
            }
        }
    }
    Ok(rule)
}

async fn rule_create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    removed_at_36(&c)?;
    let b = body(&raw)?;
    let o = b
        .get("security_group_rule")
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Missing parameter security_group_rule"))?;
    let parent = match o.get("parent_group_id") {
        Some(Value::String(p)) => p.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(NovaError::bad("Security group id should be uuid")),
    };
    valid_sg_id(&parent)?;
    let n = neutron(&svc, &c);
    sg_get(&n, &parent).await?;
    let group_id = match o.get("group_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(g)) if g.is_empty() => None,
        Some(Value::String(g)) => {
            valid_sg_id(g)?;
            Some(g.clone())
        }
        Some(_) => return Err(NovaError::bad("Security group id should be uuid")),
    };
    let rule = build_rule(o, &parent, group_id.as_deref())?;
    let mut groups = BTreeMap::new();
    if let Some(g) = &group_id {
        let src = sg_get(&n, g).await?;
        groups.insert(
            g.clone(),
            (
                s(&src, "name").to_string(),
                s(&src, "project_id").to_string(),
            ),
        );
    }
    let mut v = n
        .call(
            "POST",
            "/v2.0/security-group-rules",
            Some(json!({"security_group_rule": rule})),
        )
        .await
        .map_err(|f| match (f.code, f.kind.as_str()) {
            (404, _) => NovaError::not_found(f.message),
            (_, "OverQuota") => {
                NovaError::forbidden("Quota exceeded, too many security group rules.")
            }
            // Duplicates (Neutron's 409 SecurityGroupRuleExists) and invalid rules.
            _ => f.nova(400),
        })?;
    let r = v
        .get_mut("security_group_rule")
        .map(Value::take)
        .unwrap_or_default();
    let view = rule_view(&r, &groups).unwrap_or_default();
    Ok(json_resp(
        StatusCode::OK,
        json!({"security_group_rule": view}),
    ))
}

async fn rule_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    removed_at_36(&c)?;
    if !is_uuid(&id) {
        return Err(NovaError::bad("Security group rule id should be uuid"));
    }
    neutron(&svc, &c)
        .call("DELETE", &format!("/v2.0/security-group-rules/{id}"), None)
        .await
        .map_err(|f| match f.code {
            404 => NovaError::not_found(format!("Rule ({id}) not found.")),
            _ => f.nova(400),
        })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The instance's ports.
pub(super) async fn ports_of(n: &Neutron<'_>, instance: &str) -> NResult<Vec<Value>> {
    n.list(&format!("/v2.0/ports?device_id={}", enc(instance)), "ports")
        .await
        .map_err(|f| f.nova(400))
}

async fn server_sgs(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let n = neutron(&svc, &c);
    let ids: BTreeSet<String> = match ports_of(&n, &i.uuid).await {
        Ok(ports) => ports
            .iter()
            .filter_map(|p| p.get("security_groups").and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    let mut out = Vec::new();
    if !ids.is_empty() {
        let q: Vec<String> = ids.iter().map(|id| format!("id={}", enc(id))).collect();
        let sgs = n
            .list(
                &format!("/v2.0/security-groups?{}", q.join("&")),
                "security_groups",
            )
            .await
            .map_err(|f| f.nova(400))?;
        let groups = remote_groups(&n, &sgs).await.map_err(|f| f.nova(400))?;
        out = sgs.iter().map(|g| sg_view(g, &groups)).collect();
    }
    Ok(json_resp(StatusCode::OK, json!({"security_groups": out})))
}

/// The project's group called (or with the id) `name`.
async fn find_sg(n: &Neutron<'_>, c: &Caller, name: &str) -> NResult<Value> {
    let project = c.project();
    let mut found = n
        .list(
            &format!(
                "/v2.0/security-groups?name={}&project_id={}",
                enc(name),
                enc(&project)
            ),
            "security_groups",
        )
        .await
        .map_err(|f| f.nova(400))?;
    if found.is_empty() && is_uuid(name) {
        found = n
            .list(
                &format!("/v2.0/security-groups?id={}", enc(name)),
                "security_groups",
            )
            .await
            .map_err(|f| f.nova(400))?;
    }
    match found.len() {
        0 => Err(NovaError::not_found(format!(
            "Security group {name} not found for project {project}."
        ))),
        1 => Ok(found.swap_remove(0)),
        _ => Err(NovaError::conflict(format!(
            "Multiple security groups found matching '{name}'. Use an ID to be more specific."
        ))),
    }
}

/// `addSecurityGroup` / `removeSecurityGroup`: the group is added to (or
/// taken from) every port of the instance. `Ok(false)`: there is no
/// Networking service, the caller keeps its own bookkeeping.
pub async fn server_security_group(
    svc: &ComputeService,
    c: &Caller,
    id: &str,
    name: &str,
    add: bool,
) -> NResult<bool> {
    if !svc.network.present() {
        return Ok(false);
    }
    let i = get_instance(svc, c, id)?;
    let n = neutron(svc, c);
    let sg = find_sg(&n, c, name).await?;
    let sg_id = s(&sg, "id").to_string();
    let ports = ports_of(&n, &i.uuid).await?;
    let cannot = || {
        NovaError::bad(
            "Network requires port_security_enabled and subnet associated in order to apply security groups.",
        )
    };
    if add && ports.is_empty() {
        return Err(cannot());
    }
    let groups_of = |p: &Value| -> Vec<String> {
        p.get("security_groups")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut changes = Vec::new();
    for p in &ports {
        let mut sgs = groups_of(p);
        let has = sgs.contains(&sg_id);
        if add {
            let secured = p.get("port_security_enabled") != Some(&Value::Bool(false));
            let addressed = p
                .get("fixed_ips")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !secured || !addressed {
                return Err(cannot());
            }
            if !has {
                sgs.push(sg_id.clone());
                changes.push((s(p, "id").to_string(), sgs));
            }
        } else if has {
            sgs.retain(|g| g != &sg_id);
            changes.push((s(p, "id").to_string(), sgs));
        }
    }
    if changes.is_empty() {
        return Err(if add {
            NovaError::bad(format!(
                "Security group {name} is already associated with the instance {id}"
            ))
        } else {
            NovaError::bad(format!(
                "Security group {name} not associated with the instance {id}"
            ))
        });
    }
    for (port, sgs) in changes {
        n.call(
            "PUT",
            &format!("/v2.0/ports/{port}"),
            Some(json!({"port": {"security_groups": sgs}})),
        )
        .await
        .map_err(|f| match f.code {
            404 => NovaError::not_found(f.message),
            _ => f.nova(400),
        })?;
    }
    let sg_name = s(&sg, "name").to_string();
    svc.state
        .update_instance(&i.uuid, move |x| {
            if add {
                if !x.security_groups.contains(&sg_name) {
                    x.security_groups.push(sg_name);
                }
            } else {
                x.security_groups.retain(|g| g != &sg_name);
            }
            Ok(())
        })
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn cidr_rule_defaults_to_any_ipv4() {
        let r = build_rule(
            &req(json!({"ip_protocol": "tcp", "from_port": 22, "to_port": 22})),
            "p",
            None,
        )
        .unwrap();
        assert_eq!(r["remote_ip_prefix"], "0.0.0.0/0");
        assert_eq!(r["ethertype"], "IPv4");
        assert_eq!(r["port_range_min"], 22);
    }

    #[test]
    fn invalid_rules_are_400() {
        for b in [
            json!({"ip_protocol": "999x", "from_port": 22, "to_port": 22}),
            json!({"ip_protocol": "tcp", "from_port": 65536, "to_port": 22}),
            json!({"ip_protocol": "tcp", "from_port": 22, "to_port": 65536}),
            json!({"ip_protocol": "tcp", "from_port": 22, "to_port": 21}),
            json!({"ip_protocol": "icmp", "from_port": 256, "to_port": 0}),
            json!({"ip_protocol": "tcp", "from_port": "a", "to_port": 22}),
            json!({"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.1/0"}),
            json!({"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "nope"}),
            json!({"cidr": "10.0.0.0/8"}),
        ] {
            let e = build_rule(&req(b.clone()), "p", None).unwrap_err();
            assert_eq!(e.code, 400, "{b}");
        }
    }

    #[test]
    fn icmp_any_round_trips_as_minus_one() {
        let r = build_rule(
            &req(json!({"ip_protocol": "icmp", "from_port": -1, "to_port": -1})),
            "p",
            None,
        )
        .unwrap();
        assert_eq!(r["port_range_min"], Value::Null);
        let mut n = Value::Object(r);
        n["id"] = json!("r");
        let v = rule_view(&n, &BTreeMap::new()).unwrap();
        assert_eq!(
            (v["from_port"].clone(), v["to_port"].clone()),
            (json!(-1), json!(-1))
        );
        assert_eq!(v["ip_range"]["cidr"], "0.0.0.0/0");
    }

    #[test]
    fn group_rule_shows_the_group_and_hides_unknown_ones() {
        let r = json!({"id": "r", "security_group_id": "p", "protocol": "tcp",
            "port_range_min": null, "port_range_max": null, "remote_group_id": "g",
            "direction": "ingress", "ethertype": "IPv4"});
        let mut g = BTreeMap::new();
        assert!(rule_view(&r, &g).is_none());
        g.insert("g".to_string(), ("web".to_string(), "t".to_string()));
        let v = rule_view(&r, &g).unwrap();
        assert_eq!(v["group"], json!({"name": "web", "tenant_id": "t"}));
        assert_eq!(v["ip_range"], json!({}));
        assert_eq!(
            (v["from_port"].clone(), v["to_port"].clone()),
            (json!(1), json!(65535))
        );
    }
}
