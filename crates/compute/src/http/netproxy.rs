//! Nova's legacy network proxy APIs and the server actions that reach the
//! Networking service.
//!
//! Removed at 2.36: `os-security-groups`, `os-security-group-rules`,
//! `os-floating-ips`, `os-floating-ip-pools`, `os-networks` and
//! `os-tenant-networks`. Removed at 2.44: the `addFloatingIp` and
//! `removeFloatingIp` actions. Still current: `addSecurityGroup`,
//! `removeSecurityGroup` and `GET /servers/{id}/os-security-groups`.
//!
//! As upstream Nova does, each request is translated into Networking v2.0
//! calls made with the caller's own token (so Neutron's policy, visibility
//! and validation apply), and the answers are translated back into Nova's
//! shapes and status codes.
use super::{Caller, St, body, first, json_resp, query};
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
        .route(
            "/os-floating-ips",
            get(fip_list).post(fip_create).delete(gone_collection),
        )
        .route("/os-floating-ips/{id}", get(fip_show).delete(fip_delete))
        .route("/os-floating-ip-pools", get(fip_pools))
        .route("/os-networks", get(net_list))
        .route("/os-networks/{id}", get(net_show))
        .route("/os-tenant-networks", get(tenant_net_list))
        .route("/os-tenant-networks/{id}", get(tenant_net_show))
        .route("/servers/{id}/os-security-groups", get(server_sgs))
        .route(
            "/servers/{id}/os-interface",
            get(interfaces).post(interface_attach),
        )
        .route(
            "/servers/{id}/os-interface/{port}",
            get(interface_show).delete(interface_detach),
        )
}

/// A Networking API failure: its status, `type` and message.
#[derive(Debug)]
struct Fail {
    code: u16,
    kind: String,
    message: String,
}

impl Fail {
    /// The same failure in Nova's shape, with the status Nova gives it.
    fn nova(self, code: u16) -> NovaError {
        NovaError::new(code, self.message)
    }
}

/// Networking v2.0 calls made with the caller's token.
struct Neutron<'a> {
    svc: &'a ComputeService,
    token: &'a str,
}

fn neutron<'a>(svc: &'a ComputeService, c: &'a Caller) -> Neutron<'a> {
    Neutron {
        svc,
        token: c.token(),
    }
}

impl Neutron<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Fail> {
        let Some((code, v)) = self
            .svc
            .network
            .neutron(self.token, method, path, body)
            .await
        else {
            return Err(Fail {
                code: 404,
                kind: "NotFound".into(),
                message: "There is no Networking service.".into(),
            });
        };
        if (200..300).contains(&code) {
            return Ok(v);
        }
        let e = v.get("NeutronError");
        let s = |k: &str| e.and_then(|e| e.get(k)).and_then(Value::as_str);
        Err(Fail {
            code,
            kind: s("type").unwrap_or("").to_string(),
            message: s("message")
                .map(str::to_string)
                .unwrap_or_else(|| format!("Networking request failed ({code}).")),
        })
    }
    async fn get(&self, path: &str) -> Result<Value, Fail> {
        self.call("GET", path, None).await
    }
    /// The list under `key` of a GET.
    async fn list(&self, path: &str, key: &str) -> Result<Vec<Value>, Fail> {
        Ok(match self.get(path).await?.get_mut(key).map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        })
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_uuid(s: &str) -> bool {
    crate::http::servers::uuid_like(s)
}

/// The proxy APIs are gone from 2.36 on.
fn removed_at_36(c: &Caller) -> NResult<()> {
    if c.mv.at_least(36) {
        Err(NovaError::not_found("The resource could not be found."))
    } else {
        Ok(())
    }
}

async fn gone_collection() -> NovaError {
    NovaError::not_found("The resource could not be found.")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------
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
            Some(Value::String(c)) => super::decode(c),
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
async fn ports_of(n: &Neutron<'_>, instance: &str) -> NResult<Vec<Value>> {
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

// ---------------------------------------------------------------------------
// Floating IPs

/// Nova's floating IP view; `pools` names the external networks.
fn fip_view(f: &Value, pools: &BTreeMap<String, String>) -> Value {
    let net = s(f, "floating_network_id");
    let instance = f
        .get("port_details")
        .and_then(|d| d.get("device_id"))
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty());
    json!({
        "id": f.get("id"),
        "ip": f.get("floating_ip_address"),
        "pool": pools.get(net).cloned().unwrap_or_else(|| net.to_string()),
        "fixed_ip": f.get("fixed_ip_address").cloned().unwrap_or(Value::Null),
        "instance_id": instance,
    })
}

/// Names of the networks the floating IPs come from, in one call.
async fn pool_names(n: &Neutron<'_>, fips: &[Value]) -> BTreeMap<String, String> {
    let ids: BTreeSet<&str> = fips.iter().map(|f| s(f, "floating_network_id")).collect();
    if ids.is_empty() {
        return BTreeMap::new();
    }
    let q: Vec<String> = ids.iter().map(|id| format!("id={}", enc(id))).collect();
    n.list(
        &format!("/v2.0/networks?fields=id&fields=name&{}", q.join("&")),
        "networks",
    )
    .await
    .unwrap_or_default()
    .iter()
    .map(|x| (s(x, "id").to_string(), s(x, "name").to_string()))
    .collect()
}

async fn fip_one(n: &Neutron<'_>, f: Value) -> NResult<Response> {
    let pools = pool_names(n, std::slice::from_ref(&f)).await;
    Ok(json_resp(
        StatusCode::OK,
        json!({"floating_ip": fip_view(&f, &pools)}),
    ))
}

async fn fip_list(AxState(svc): St, c: Caller) -> NResult<Response> {
    removed_at_36(&c)?;
    let n = neutron(&svc, &c);
    let fips = n
        .list(
            &format!("/v2.0/floatingips?project_id={}", enc(&c.project())),
            "floatingips",
        )
        .await
        .map_err(|f| f.nova(400))?;
    let pools = pool_names(&n, &fips).await;
    let out: Vec<Value> = fips.iter().map(|f| fip_view(f, &pools)).collect();
    Ok(json_resp(StatusCode::OK, json!({"floating_ips": out})))
}

async fn fip_get(n: &Neutron<'_>, id: &str) -> NResult<Value> {
    let not_found = || NovaError::not_found(format!("Floating IP not found for ID {id}"));
    if !is_uuid(id) {
        return Err(not_found());
    }
    match n.get(&format!("/v2.0/floatingips/{id}")).await {
        Ok(mut v) => Ok(v.get_mut("floatingip").map(Value::take).unwrap_or_default()),
        Err(f) if f.code == 404 => Err(not_found()),
        Err(f) => Err(f.nova(400)),
    }
}

async fn fip_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    removed_at_36(&c)?;
    let n = neutron(&svc, &c);
    let f = fip_get(&n, &id).await?;
    fip_one(&n, f).await
}

async fn fip_create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    removed_at_36(&c)?;
    let pool = if raw.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match body(&raw)? {
            Value::Null => None,
            Value::Object(o) => match o.get("pool") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(p.clone()),
                Some(_) => return Err(NovaError::bad("Invalid input for field/attribute pool.")),
            },
            _ => return Err(NovaError::bad("Malformed request body")),
        }
    };
    let n = neutron(&svc, &c);
    let externals = n
        .list("/v2.0/networks?router:external=true", "networks")
        .await
        .map_err(|f| f.nova(400))?;
    let net = match &pool {
        // Without a pool, the first external network by name (upstream's
        // `default_floating_pool`).
        None => {
            let mut e: Vec<&Value> = externals.iter().collect();
            e.sort_by_key(|x| s(x, "name"));
            e.first().map(|x| (*x).clone())
        }
        Some(p) => {
            let by_name: Vec<&Value> = externals.iter().filter(|x| s(x, "name") == p).collect();
            match by_name.len() {
                0 => externals.iter().find(|x| s(x, "id") == p).cloned(),
                1 => Some(by_name[0].clone()),
                _ => {
                    return Err(NovaError::conflict(format!(
                        "Multiple floating IP pools matches found for name '{p}'"
                    )));
                }
            }
        }
    }
    .ok_or_else(|| NovaError::not_found("Floating IP pool not found."))?;
    let pool_name = s(&net, "name").to_string();
    let mut v = n
        .call(
            "POST",
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": s(&net, "id")}})),
        )
        .await
        .map_err(|f| match f.kind.as_str() {
            "OverQuota" => {
                NovaError::forbidden(format!("IP allocation over quota in pool {pool_name}."))
            }
            "IpAddressGenerationFailure" | "ExternalIpAddressExhausted" => {
                NovaError::not_found(format!("No more floating IPs in pool {pool_name}."))
            }
            _ => f.nova(400),
        })?;
    let f = v.get_mut("floatingip").map(Value::take).unwrap_or_default();
    fip_one(&n, f).await
}

async fn fip_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    removed_at_36(&c)?;
    let n = neutron(&svc, &c);
    fip_get(&n, &id).await?;
    n.call("DELETE", &format!("/v2.0/floatingips/{id}"), None)
        .await
        .map_err(|f| match f.code {
            404 => NovaError::not_found(format!("Floating IP not found for ID {id}")),
            _ => f.nova(400),
        })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn fip_pools(AxState(svc): St, c: Caller) -> NResult<Response> {
    removed_at_36(&c)?;
    let nets = neutron(&svc, &c)
        .list("/v2.0/networks?router:external=true", "networks")
        .await
        .map_err(|f| f.nova(400))?;
    let pools: Vec<Value> = nets.iter().map(|x| json!({"name": s(x, "name")})).collect();
    Ok(json_resp(
        StatusCode::OK,
        json!({"floating_ip_pools": pools}),
    ))
}

/// The floating IP with this address, as the caller sees it.
async fn fip_by_address(n: &Neutron<'_>, address: &str) -> NResult<Value> {
    let not_found = || NovaError::not_found("floating IP not found");
    if address.parse::<std::net::IpAddr>().is_err() {
        return Err(not_found());
    }
    n.list(
        &format!("/v2.0/floatingips?floating_ip_address={}", enc(address)),
        "floatingips",
    )
    .await
    .map_err(|f| f.nova(400))?
    .into_iter()
    .next()
    .ok_or_else(not_found)
}

fn address_arg(arg: &Value, key: &str) -> NResult<String> {
    let a = arg
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| NovaError::bad(format!("Invalid input for field/attribute {key}.")))?;
    if a.parse::<std::net::IpAddr>().is_err() {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute {key}. Value: {a}. '{a}' is not a 'ip-address'"
        )));
    }
    Ok(a.to_string())
}

/// `addFloatingIp` (before 2.44): the floating IP goes to the port holding
/// `fixed_address` (or the instance's first IPv4 address).
pub async fn add_floating_ip(
    svc: &ComputeService,
    c: &Caller,
    id: &str,
    arg: &Value,
) -> NResult<Response> {
    if c.mv.at_least(44) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let address = address_arg(arg, "address")?;
    let fixed_wanted = match arg.get("fixed_address") {
        None => None,
        Some(_) => Some(address_arg(arg, "fixed_address")?),
    };
    let i = get_instance(svc, c, id)?;
    let n = neutron(svc, c);
    let ports = ports_of(&n, &i.uuid).await?;
    if ports.is_empty() {
        return Err(NovaError::bad("Instance network is not ready yet"));
    }
    // (port, address) of every fixed IP, IPv4 first.
    let mut fixed: Vec<(String, String)> = ports
        .iter()
        .flat_map(|p| {
            let pid = s(p, "id").to_string();
            p.get("fixed_ips")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(move |f| (pid.clone(), s(f, "ip_address").to_string()))
        })
        .collect();
    if fixed.is_empty() {
        return Err(NovaError::bad("No fixed IPs associated to instance"));
    }
    fixed.sort_by_key(|(_, a)| a.contains(':'));
    let (port, fixed_ip) = match &fixed_wanted {
        Some(w) => fixed
            .iter()
            .find(|(_, a)| a == w)
            .cloned()
            .ok_or_else(|| NovaError::bad("Specified fixed address not assigned to instance"))?,
        None => fixed.iter().find(|(_, a)| !a.contains(':')).cloned().ok_or_else(|| {
            NovaError::bad(format!(
                "Unable to associate floating IP {address} to any fixed IPs for instance {id}. Instance has no fixed IPv4 addresses to associate."
            ))
        })?,
    };
    let fip = fip_by_address(&n, &address).await?;
    n.call(
        "PUT",
        &format!("/v2.0/floatingips/{}", s(&fip, "id")),
        Some(json!({"floatingip": {"port_id": port, "fixed_ip_address": fixed_ip}})),
    )
    .await
    .map_err(|f| {
        NovaError::bad(format!(
            "Unable to associate floating IP {address} to fixed IP {fixed_ip} for instance {id}. Error: {}",
            f.message
        ))
    })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `removeFloatingIp` (before 2.44): 409 unless the address is associated
/// with this instance.
pub async fn remove_floating_ip(
    svc: &ComputeService,
    c: &Caller,
    id: &str,
    arg: &Value,
) -> NResult<Response> {
    if c.mv.at_least(44) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let address = address_arg(arg, "address")?;
    let i = get_instance(svc, c, id)?;
    let n = neutron(svc, c);
    let fip = fip_by_address(&n, &address).await?;
    let on_this = match fip.get("port_id").and_then(Value::as_str) {
        Some(port) => ports_of(&n, &i.uuid)
            .await?
            .iter()
            .any(|p| s(p, "id") == port),
        None => false,
    };
    if !on_this {
        return Err(NovaError::conflict(format!(
            "Floating IP {address} is not associated with instance {id}."
        )));
    }
    n.call(
        "PUT",
        &format!("/v2.0/floatingips/{}", s(&fip, "id")),
        Some(json!({"floatingip": {"port_id": null}})),
    )
    .await
    .map_err(|f| f.nova(400))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---------------------------------------------------------------------------
// Interfaces (os-interface)

fn interface_view(c: &Caller, mut v: Value) -> Value {
    if c.mv.at_least(70) {
        v["tag"] = Value::Null;
    }
    v
}

async fn interfaces(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let list: Vec<Value> = svc
        .network
        .interfaces(&i.uuid)
        .into_iter()
        .map(|v| interface_view(&c, v))
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        json!({"interfaceAttachments": list}),
    ))
}

async fn interface_show(
    AxState(svc): St,
    c: Caller,
    Path((id, port)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let v = svc
        .network
        .interfaces(&i.uuid)
        .into_iter()
        .find(|v| s(v, "port_id") == port)
        .ok_or_else(|| {
            NovaError::not_found(format!("Instance {id} does not have a port with id {port}"))
        })?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"interfaceAttachment": interface_view(&c, v)}),
    ))
}

/// Interfaces change only on a settled server (Nova's check_instance_state).
fn interface_ready(i: &crate::model::Instance, action: &str) -> NResult<()> {
    if !matches!(i.vm_state.as_str(), "active" | "paused" | "stopped") {
        return Err(NovaError::invalid_state(
            action,
            "vm_state",
            &i.vm_state,
            &i.uuid,
        ));
    }
    if let Some(t) = &i.task_state {
        return Err(NovaError::invalid_state(action, "task_state", t, &i.uuid));
    }
    Ok(())
}

/// The NIC an attach request names: a port, a network (with at most one
/// fixed IP), or neither (the project's one usable network).
fn attach_request(c: &Caller, raw: &[u8]) -> NResult<Value> {
    let b = body(raw)?;
    let o = b
        .get("interfaceAttachment")
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute interfaceAttachment."))?;
    let mut known = vec!["net_id", "port_id", "fixed_ips"];
    if c.mv.at_least(49) {
        known.push("tag");
    }
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(NovaError::bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let text = |k: &str| -> NResult<Option<String>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) if is_uuid(v) => Ok(Some(v.clone())),
            Some(v) => Err(NovaError::bad(format!(
                "Invalid input for field/attribute {k}. Value: {v}. '{v}' is not a 'uuid'"
            ))),
        }
    };
    let (net, port) = (text("net_id")?, text("port_id")?);
    let fixed = match o.get("fixed_ips") {
        None => None,
        Some(Value::Array(a)) if a.len() == 1 => {
            let ip = a[0]
                .get("ip_address")
                .and_then(Value::as_str)
                .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute ip_address."))?;
            Some(ip.to_string())
        }
        Some(_) => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute fixed_ips.",
            ));
        }
    };
    match (net, port, fixed) {
        (Some(_), Some(_), _) => Err(NovaError::bad("Must not input both network_id and port_id")),
        (None, _, Some(_)) => Err(NovaError::bad(
            "Must input network_id when request IP address",
        )),
        (None, Some(p), None) => Ok(json!({"port": p})),
        (Some(n), None, ip) => Ok(json!({"uuid": n, "fixed_ip": ip})),
        (None, None, None) => Ok(json!("auto")),
    }
}

async fn interface_attach(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    let nic = attach_request(&c, &raw)?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-attach-interfaces:create",
    )?;
    interface_ready(&i, "attach_interface")?;
    let host = i.host.clone().unwrap_or_default();
    let v = svc
        .network
        .attach_interface(&i.uuid, &i.project_id, &host, &nic)
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"interfaceAttachment": interface_view(&c, v)}),
    ))
}

async fn interface_detach(
    AxState(svc): St,
    c: Caller,
    Path((id, port)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-attach-interfaces:delete",
    )?;
    interface_ready(&i, "detach_interface")?;
    svc.network.detach_interface(&i.uuid, &port).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---------------------------------------------------------------------------
// Networks

/// Nova's network view of a Neutron network. The cidr is the string
/// "None", as Nova has always answered with Neutron behind it.
fn net_view(x: &Value, full: bool) -> Value {
    let mut v = json!({"id": x.get("id"), "cidr": "None", "label": s(x, "name")});
    if full {
        for k in [
            "bridge",
            "bridge_interface",
            "broadcast",
            "cidr_v6",
            "created_at",
            "deleted",
            "deleted_at",
            "dhcp_server",
            "dhcp_start",
            "dns1",
            "dns2",
            "enable_dhcp",
            "gateway",
            "gateway_v6",
            "host",
            "injected",
            "mtu",
            "multi_host",
            "netmask",
            "netmask_v6",
            "priority",
            "project_id",
            "rxtx_base",
            "share_address",
            "updated_at",
            "vlan",
            "vpn_private_address",
            "vpn_public_address",
            "vpn_public_port",
        ] {
            v[k] = Value::Null;
        }
    }
    v
}

async fn networks(svc: &ComputeService, c: &Caller) -> NResult<Vec<Value>> {
    neutron(svc, c)
        .list("/v2.0/networks", "networks")
        .await
        .map_err(|f| f.nova(400))
}

async fn network(svc: &ComputeService, c: &Caller, id: &str) -> NResult<Value> {
    match neutron(svc, c)
        .get(&format!("/v2.0/networks/{}", enc(id)))
        .await
    {
        Ok(mut v) => Ok(v.get_mut("network").map(Value::take).unwrap_or_default()),
        Err(f) if f.code == 404 => Err(NovaError::not_found(format!(
            "Network {id} could not be found."
        ))),
        Err(f) => Err(f.nova(400)),
    }
}

async fn net_list(AxState(svc): St, c: Caller) -> NResult<Response> {
    removed_at_36(&c)?;
    let out: Vec<Value> = networks(&svc, &c)
        .await?
        .iter()
        .map(|x| net_view(x, true))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"networks": out})))
}

async fn net_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    removed_at_36(&c)?;
    let x = network(&svc, &c, &id).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"network": net_view(&x, true)}),
    ))
}

async fn tenant_net_list(AxState(svc): St, c: Caller) -> NResult<Response> {
    removed_at_36(&c)?;
    let out: Vec<Value> = networks(&svc, &c)
        .await?
        .iter()
        .map(|x| net_view(x, false))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"networks": out})))
}

async fn tenant_net_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    removed_at_36(&c)?;
    let x = network(&svc, &c, &id).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"network": net_view(&x, false)}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
