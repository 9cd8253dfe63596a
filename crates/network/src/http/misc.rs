//! Quotas, agents, availability zones, IP availability, RBAC policies,
//! subnet pools and service providers.
use super::{Body, St, coll_url, created, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::ipam::{self, Cidr};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, arr, b, new_id, s, standard, touch};
use crate::{Caller, NetworkService, body_obj, check, net_visible, only_known, owner_of};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/quotas", get(quota_list))
        .route(
            "/v2.0/quotas/{project}",
            get(quota_show).put(quota_update).delete(quota_delete),
        )
        .route("/v2.0/quotas/{project}/default", get(quota_default))
        .route("/v2.0/quotas/{project}/details", get(quota_details))
        .route("/v2.0/agents", get(agent_list))
        .route(
            "/v2.0/agents/{id}",
            get(agent_show).put(agent_update).delete(agent_delete),
        )
        .route("/v2.0/availability_zones", get(az_list))
        .route("/v2.0/network-ip-availabilities", get(ipa_list))
        .route("/v2.0/network-ip-availabilities/{id}", get(ipa_show))
        .route("/v2.0/rbac-policies", get(rbac_list).post(rbac_create))
        .route(
            "/v2.0/rbac-policies/{id}",
            get(rbac_show).put(rbac_update).delete(rbac_delete),
        )
        .route("/v2.0/subnetpools", get(pool_list).post(pool_create))
        .route(
            "/v2.0/subnetpools/{id}",
            get(pool_show).put(pool_update).delete(pool_delete),
        )
        .route(
            "/v2.0/subnetpools/{id}/add_prefixes",
            axum::routing::put(pool_add_prefixes),
        )
        .route(
            "/v2.0/subnetpools/{id}/remove_prefixes",
            axum::routing::put(pool_remove_prefixes),
        )
        .route("/v2.0/service-providers", get(service_providers))
}

/// Whether `c` can see `o` of kind `k` (for tags and generic lookups).
pub fn visible(st: &NState, c: &Caller, k: Kind, o: &Obj) -> bool {
    match k {
        Kind::Network => net_visible(st, c, o),
        Kind::Subnet => crate::subnet_visible(st, c, o),
        Kind::Port => crate::port_visible(st, c, o),
        Kind::SecurityGroup | Kind::SubnetPool => c.owns(o) || b(o, "shared"),
        _ => c.owns(o),
    }
}

const QUOTA_RES: [&str; 9] = [
    "network",
    "subnet",
    "port",
    "router",
    "floatingip",
    "security_group",
    "security_group_rule",
    "rbac_policy",
    "subnetpool",
];

fn kind_of(res: &str) -> Option<Kind> {
    Some(match res {
        "network" => Kind::Network,
        "subnet" => Kind::Subnet,
        "port" => Kind::Port,
        "router" => Kind::Router,
        "floatingip" => Kind::FloatingIp,
        "security_group" => Kind::SecurityGroup,
        "security_group_rule" => Kind::SecurityGroupRule,
        "rbac_policy" => Kind::Rbac,
        "subnetpool" => Kind::SubnetPool,
        _ => return None,
    })
}

fn quota_doc(svc: &NetworkService, st: &NState, project: &str) -> Value {
    let mut o = Obj::new();
    for r in QUOTA_RES {
        o.insert(r.into(), json!(svc.quota_limit(st, project, r)));
    }
    Value::Object(o)
}

fn may_see_quota(c: &Caller, project: &str) -> NResult<()> {
    if c.admin || c.project == project {
        Ok(())
    } else {
        Err(NeutronError::forbidden("get_quota"))
    }
}

async fn quota_list(State(svc): St, c: Caller) -> NResult<Response> {
    if !c.admin {
        return Err(NeutronError::forbidden("get_quota"));
    }
    let st = svc.store.read();
    let list: Vec<Value> = st
        .iter(Kind::Quota)
        .map(|q| {
            let p = s(q, "project_id").to_string();
            let mut d = quota_doc(&svc, &st, &p);
            d["project_id"] = json!(p);
            d["tenant_id"] = json!(p);
            d
        })
        .collect();
    Ok(ok(json!({"quotas": list})))
}

async fn quota_show(State(svc): St, c: Caller, Path(project): Path<String>) -> NResult<Response> {
    may_see_quota(&c, &project)?;
    let st = svc.store.read();
    Ok(ok(json!({"quota": quota_doc(&svc, &st, &project)})))
}

async fn quota_default(
    State(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> NResult<Response> {
    may_see_quota(&c, &project)?;
    let mut o = Obj::new();
    for r in QUOTA_RES {
        o.insert(r.into(), json!(svc.default_quota(r)));
    }
    Ok(ok(json!({"quota": o})))
}

async fn quota_details(
    State(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> NResult<Response> {
    may_see_quota(&c, &project)?;
    let st = svc.store.read();
    let mut o = Obj::new();
    for r in QUOTA_RES {
        let used = kind_of(r).map(|k| st.count(&project, k)).unwrap_or(0);
        o.insert(
            r.into(),
            json!({"limit": svc.quota_limit(&st, &project, r), "used": used, "reserved": 0}),
        );
    }
    Ok(ok(json!({"quota": o})))
}

async fn quota_update(
    State(svc): St,
    c: Caller,
    Path(project): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    if !c.admin {
        return Err(NeutronError::forbidden("update_quota"));
    }
    let u = body_obj(&body, "quota")?;
    let mut vals = Vec::new();
    for (k, v) in &u {
        if !QUOTA_RES.contains(&k.as_str()) {
            return Err(NeutronError::bad(format!(
                "Unrecognized attribute(s) '{k}'"
            )));
        }
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
            .filter(|n| *n >= -1)
            .ok_or_else(|| {
                NeutronError::invalid(format!("'{v}' is not a valid quota limit for {k}"))
            })?;
        vals.push((k.clone(), n));
    }
    let out = svc
        .store
        .write(|tx| {
            let mut q: Obj = tx
                .get(Kind::Quota, &project)
                .map(|q| (*q).clone())
                .unwrap_or_default();
            q.insert("id".into(), json!(project));
            q.insert("project_id".into(), json!(project));
            for (k, n) in &vals {
                q.insert(k.clone(), json!(n));
            }
            tx.put(Kind::Quota, q);
            Ok(quota_doc(&svc, &tx.st, &project))
        })
        .await?;
    Ok(ok(json!({"quota": out})))
}

async fn quota_delete(State(svc): St, c: Caller, Path(project): Path<String>) -> NResult<Response> {
    if !c.admin {
        return Err(NeutronError::forbidden("delete_quota"));
    }
    svc.store
        .write(|tx| {
            if tx.get(Kind::Quota, &project).is_some() {
                tx.del(Kind::Quota, &project);
            }
            Ok(())
        })
        .await?;
    Ok(no_content())
}

// ---- agents ----

const AGENT_ATTRS: &[&str] = &[
    "id",
    "agent_type",
    "binary",
    "topic",
    "host",
    "admin_state_up",
    "alive",
    "description",
    "availability_zone",
    "created_at",
    "started_at",
    "heartbeat_timestamp",
    "configurations",
    "resources_synced",
];

fn agent_view(svc: &NetworkService, a: &Obj) -> Obj {
    let mut v = a.clone();
    let alive = chrono::DateTime::parse_from_rfc3339(s(a, "heartbeat_timestamp"))
        .map(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
                <= svc.cfg.network.agent_down_time as i64
        })
        .unwrap_or(false);
    v.insert("alive".into(), json!(alive));
    for k in ["created_at", "started_at", "heartbeat_timestamp"] {
        if let Some(t) = a.get(k).and_then(Value::as_str) {
            v.insert(k.into(), json!(t.trim_end_matches('Z').replace('T', " ")));
        }
    }
    v
}

async fn agent_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), AGENT_ATTRS)?;
    if !c.admin {
        return Ok(ok(json!({"agents": []})));
    }
    let st = svc.store.read();
    let items = st
        .iter(Kind::Agent)
        .map(|a| Arc::new(agent_view(&svc, a)))
        .filter(|a| {
            // agent_type matches case-insensitively (as MySQL does upstream).
            p.filter_value("agent_type")
                .is_none_or(|v| v.iter().any(|x| x.eq_ignore_ascii_case(s(a, "agent_type"))))
                && matches(a, &p, &["agent_type"])
        })
        .collect();
    Ok(ok(render(items, &p, "agents", &coll_url(&svc, "agents"))?))
}

fn get_agent(svc: &NetworkService, c: &Caller, id: &str) -> NResult<Obj> {
    if !c.admin {
        return Err(NeutronError::new(
            404,
            "AgentNotFound",
            format!("Agent {id} could not be found."),
        ));
    }
    svc.store
        .read()
        .get(Kind::Agent, id)
        .map(|a| agent_view(svc, a))
        .ok_or_else(|| {
            NeutronError::new(
                404,
                "AgentNotFound",
                format!("Agent {id} could not be found."),
            )
        })
}

async fn agent_show(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    Ok(ok(json!({"agent": get_agent(&svc, &c, &id)?})))
}

async fn agent_update(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    get_agent(&svc, &c, &id)?;
    let mut u = body_obj(&body, "agent")?;
    only_known(&u, &["admin_state_up", "description"])?;
    check::boolean(&mut u, "admin_state_up")?;
    check::string(&u, "description", 255)?;
    let out = svc
        .store
        .write(|tx| {
            let a = tx.get(Kind::Agent, &id).ok_or_else(|| {
                NeutronError::new(
                    404,
                    "AgentNotFound",
                    format!("Agent {id} could not be found."),
                )
            })?;
            let mut o = (*a).clone();
            for (k, v) in &u {
                o.insert(k.clone(), v.clone());
            }
            tx.put(Kind::Agent, o.clone());
            Ok(o)
        })
        .await?;
    Ok(ok(json!({"agent": agent_view(&svc, &out)})))
}

async fn agent_delete(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    get_agent(&svc, &c, &id)?;
    svc.store
        .write(|tx| {
            tx.del(Kind::Agent, &id);
            Ok(())
        })
        .await?;
    Ok(no_content())
}

async fn az_list(State(svc): St, _c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), &["name", "resource", "state"])?;
    let az = &svc.cfg.network.default_availability_zone;
    let items: Vec<Arc<Obj>> = ["network", "router"]
        .iter()
        .filter_map(|r| {
            json!({"name": az, "resource": r, "state": "available"})
                .as_object()
                .cloned()
                .map(Arc::new)
        })
        .filter(|o| matches(o, &p, &[]))
        .collect();
    Ok(ok(render(
        items,
        &p,
        "availability_zones",
        &coll_url(&svc, "availability_zones"),
    )?))
}

// ---- network IP availability ----

fn ipa(st: &NState, n: &Obj) -> Obj {
    let mut total: u128 = 0;
    let mut used_all: u128 = 0;
    let mut subs = Vec::new();
    for x in super::subnets::net_subnets(st, s(n, "id")) {
        let t: u128 = super::subnets::pools_of(&x).iter().map(|r| r.size()).sum();
        let u = st
            .ips
            .get(s(&x, "id"))
            .map(|i| i.used.len() as u128)
            .unwrap_or(0);
        total = total.saturating_add(t);
        used_all += u;
        subs.push(
            json!({"subnet_id": s(&x, "id"), "subnet_name": s(&x, "name"), "cidr": s(&x, "cidr"),
                         "ip_version": x.get("ip_version").cloned().unwrap_or(json!(4)),
                         "total_ips": t.min(u64::MAX as u128) as u64, "used_ips": u as u64}),
        );
    }
    let mut o = Obj::new();
    o.insert("network_id".into(), json!(s(n, "id")));
    o.insert("network_name".into(), json!(s(n, "name")));
    o.insert("project_id".into(), json!(s(n, "project_id")));
    o.insert("tenant_id".into(), json!(s(n, "project_id")));
    o.insert(
        "total_ips".into(),
        json!(total.min(u64::MAX as u128) as u64),
    );
    o.insert("used_ips".into(), json!(used_all as u64));
    o.insert("subnet_ip_availability".into(), Value::Array(subs));
    o
}

async fn ipa_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    if !c.admin {
        return Err(NeutronError::forbidden("get_network_ip_availability"));
    }
    let p = ListParams::parse(
        q.as_deref(),
        &[
            "network_id",
            "network_name",
            "ip_version",
            "project_id",
            "tenant_id",
        ],
    )?;
    let st = svc.store.read();
    let ipv = p.filter_value("ip_version").map(|v| v.to_vec());
    let items = st
        .iter(Kind::Network)
        .map(|n| Arc::new(ipa(&st, n)))
        .filter(|o| matches(o, &p, &["ip_version"]))
        .filter(|o| {
            ipv.as_ref().is_none_or(|vs| {
                arr(o, "subnet_ip_availability").iter().any(|x| {
                    vs.iter()
                        .any(|v| x["ip_version"].as_i64().is_some_and(|n| v.parse() == Ok(n)))
                })
            })
        })
        .collect();
    Ok(ok(render(
        items,
        &p,
        "network_ip_availabilities",
        &coll_url(&svc, "network-ip-availabilities"),
    )?))
}

async fn ipa_show(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    if !c.admin {
        return Err(NeutronError::forbidden("get_network_ip_availability"));
    }
    let st = svc.store.read();
    let n = st
        .get(Kind::Network, &id)
        .ok_or_else(|| NeutronError::not_found("Network", &id))?;
    Ok(ok(json!({"network_ip_availability": ipa(&st, n)})))
}

// ---- RBAC ----

const RBAC_ATTRS: &[&str] = &[
    "id",
    "object_type",
    "object_id",
    "action",
    "target_tenant",
    "target_project",
    "tenant_id",
    "project_id",
];

fn rbac_visible(c: &Caller, r: &Obj) -> bool {
    c.owns(r) || s(r, "target_tenant") == c.project
}

async fn rbac_create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    let mut o = body_obj(&body, "rbac_policy")?;
    only_known(
        &o,
        &[
            "object_type",
            "object_id",
            "action",
            "target_tenant",
            "target_project",
            "tenant_id",
            "project_id",
        ],
    )?;
    let out = svc
        .store
        .write(|tx| {
            let owner = owner_of(&c, &mut o)?;
            let otype = s(&o, "object_type").to_string();
            if otype != "network" {
                return Err(NeutronError::invalid(format!("Invalid input for object_type. Reason: '{otype}' is not in ['network']")));
            }
            let action = s(&o, "action").to_string();
            if !matches!(action.as_str(), "access_as_shared" | "access_as_external") {
                return Err(NeutronError::invalid(format!("Invalid input for action. Reason: '{action}' is not in ['access_as_external', 'access_as_shared']")));
            }
            let target = o.get("target_project").or(o.get("target_tenant")).and_then(Value::as_str).unwrap_or("").to_string();
            if target.is_empty() {
                return Err(NeutronError::bad("Failed to parse request. Required attribute 'target_tenant' not specified"));
            }
            if action == "access_as_external" && !c.admin {
                return Err(NeutronError::forbidden("create_rbac_policy:action"));
            }
            let oid = s(&o, "object_id").to_string();
            let net = tx.get(Kind::Network, &oid).filter(|n| c.owns(n)).ok_or_else(|| {
                NeutronError::new(404, "RbacPolicyNotFound", format!("RBAC policy on object {oid} not found"))
            })?;
            let dup = tx.st.iter(Kind::Rbac).any(|r| s(r, "object_id") == oid && s(r, "action") == action && s(r, "target_tenant") == target);
            if dup {
                return Err(NeutronError::conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values."));
            }
            svc.check_quota(&tx.st, &owner, Kind::Rbac, 1)?;
            let mut r = Obj::new();
            r.insert("id".into(), json!(new_id()));
            r.insert("object_type".into(), json!(otype));
            r.insert("object_id".into(), json!(oid));
            r.insert("action".into(), json!(action));
            r.insert("target_tenant".into(), json!(target));
            r.insert("target_project".into(), json!(target));
            standard(&mut r, &owner);
            r.remove("tags");
            r.remove("description");
            tx.put(Kind::Rbac, r.clone());
            if action == "access_as_shared" && target == "*" {
                let mut n = (*net).clone();
                n.insert("shared".into(), json!(true));
                touch(&mut n);
                tx.put(Kind::Network, n);
            }
            Ok(r)
        })
        .await?;
    svc.notify();
    Ok(created(json!({"rbac_policy": out})))
}

async fn rbac_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), RBAC_ATTRS)?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::Rbac)
        .filter(|r| rbac_visible(&c, r))
        .filter(|r| matches(r, &p, &[]))
        .cloned()
        .collect();
    Ok(ok(render(
        items,
        &p,
        "rbac_policies",
        &coll_url(&svc, "rbac-policies"),
    )?))
}

fn get_rbac(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::Rbac, id)
        .filter(|r| rbac_visible(c, r))
        .cloned()
        .ok_or_else(|| {
            NeutronError::new(
                404,
                "RbacPolicyNotFound",
                format!("RBAC policy of type network with ID {id} not found"),
            )
        })
}

async fn rbac_show(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let st = svc.store.read();
    Ok(ok(json!({"rbac_policy": get_rbac(&st, &c, &id)?})))
}

fn net_in_use_by(st: &NState, net: &str, project: &str) -> bool {
    st.ports_on(net).any(|p| {
        (project == "*" || s(p, "project_id") == project)
            && !s(p, "device_owner").starts_with("network:")
            && st
                .get(Kind::Network, net)
                .is_some_and(|n| s(n, "project_id") != s(p, "project_id"))
    })
}

async fn rbac_update(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let u = body_obj(&body, "rbac_policy")?;
    only_known(&u, &["target_tenant", "target_project"])?;
    let out = svc
        .store
        .write(|tx| {
            let r = get_rbac(&tx.st, &c, &id)?;
            if !c.owns(&r) {
                return Err(NeutronError::forbidden("update_rbac_policy"));
            }
            let t = u.get("target_project").or(u.get("target_tenant")).and_then(Value::as_str).unwrap_or("").to_string();
            if net_in_use_by(&tx.st, s(&r, "object_id"), s(&r, "target_tenant")) {
                return Err(NeutronError::conflict("RbacPolicyInUse", format!("RBAC policy on object {} cannot be removed because other objects depend on it.", s(&r, "object_id"))));
            }
            let mut o = (*r).clone();
            o.insert("target_tenant".into(), json!(t));
            o.insert("target_project".into(), json!(t));
            tx.put(Kind::Rbac, o.clone());
            Ok(o)
        })
        .await?;
    Ok(ok(json!({"rbac_policy": out})))
}

async fn rbac_delete(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    svc.store
        .write(|tx| {
            let r = get_rbac(&tx.st, &c, &id)?;
            if !c.owns(&r) {
                return Err(NeutronError::forbidden("delete_rbac_policy"));
            }
            let net = s(&r, "object_id").to_string();
            if net_in_use_by(&tx.st, &net, s(&r, "target_tenant")) {
                return Err(NeutronError::conflict("RbacPolicyInUse", format!("RBAC policy on object {net} cannot be removed because other objects depend on it.")));
            }
            tx.del(Kind::Rbac, &id);
            if s(&r, "target_tenant") == "*" && s(&r, "action") == "access_as_shared"
                && let Some(n) = tx.get(Kind::Network, &net)
            {
                let mut n = (*n).clone();
                n.insert("shared".into(), json!(false));
                touch(&mut n);
                tx.put(Kind::Network, n);
            }
            Ok(())
        })
        .await?;
    svc.notify();
    Ok(no_content())
}

// ---- subnet pools ----

pub const POOL_ATTRS: &[&str] = &[
    "id",
    "name",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "shared",
    "is_default",
    "ip_version",
    "address_scope_id",
    "default_quota",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "created_at",
    "updated_at",
    "revision_number",
];

fn parse_prefixes(o: &Obj) -> NResult<Vec<Cidr>> {
    let list = check::string_list(o, "prefixes")?;
    let mut out: Vec<Cidr> = Vec::new();
    for p in list {
        let c = Cidr::parse_loose(&p)
            .ok_or_else(|| NeutronError::invalid(format!("'{p}' is not a valid IP subnet")))?;
        out.push(c.masked());
    }
    if let Some(v) = out.first().map(|c| c.v)
        && out.iter().any(|c| c.v != v)
    {
        return Err(NeutronError::bad(
            "Illegal subnetpool prefix bounds: prefixes of mixed IP versions",
        ));
    }
    // Merge prefixes contained in others (Neutron compacts the list).
    let mut merged: Vec<Cidr> = Vec::new();
    for c in &out {
        if !out
            .iter()
            .any(|o| o != c && o.len < c.len && o.contains(c.v, c.first()))
            && !merged.contains(c)
        {
            merged.push(*c);
        }
    }
    Ok(merged)
}

fn pool_bounds(o: &mut Obj, v: u8, cur: Option<&Obj>) -> NResult<()> {
    let get = |k: &str| -> NResult<Option<i64>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(cur.and_then(|c| c.get(k)).and_then(Value::as_i64)),
            Some(x) => x
                .as_i64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                .map(Some)
                .ok_or_else(|| NeutronError::invalid(format!("'{x}' is not an integer"))),
        }
    };
    let max_bits = ipam::bits(v) as i64;
    let min = get("min_prefixlen")?.unwrap_or(if v == 4 { 8 } else { 64 });
    let max = get("max_prefixlen")?.unwrap_or(max_bits);
    let def = get("default_prefixlen")?.unwrap_or(min);
    if !(0..=max_bits).contains(&min)
        || !(0..=max_bits).contains(&max)
        || min > max
        || def < min
        || def > max
    {
        return Err(NeutronError::bad(format!(
            "Illegal prefix bounds: min_prefixlen={min}, max_prefixlen={max}, default_prefixlen={def}"
        )));
    }
    o.insert("min_prefixlen".into(), json!(min));
    o.insert("max_prefixlen".into(), json!(max));
    o.insert("default_prefixlen".into(), json!(def));
    Ok(())
}

async fn pool_create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_subnetpool"));
    }
    let mut o = body_obj(&body, "subnetpool")?;
    only_known(
        &o,
        &[
            "name",
            "prefixes",
            "default_prefixlen",
            "min_prefixlen",
            "max_prefixlen",
            "shared",
            "is_default",
            "address_scope_id",
            "default_quota",
            "description",
            "tags",
            "tenant_id",
            "project_id",
        ],
    )?;
    check::string(&o, "name", 255)?;
    check::string(&o, "description", 255)?;
    check::boolean(&mut o, "shared")?;
    check::boolean(&mut o, "is_default")?;
    check::tags(&mut o)?;
    if o.get("address_scope_id").is_some_and(|v| !v.is_null()) {
        return Err(NeutronError::not_found(
            "Address scope",
            o["address_scope_id"].as_str().unwrap_or(""),
        ));
    }
    let out = svc
        .store
        .write(|tx| {
            let owner = owner_of(&c, &mut o)?;
            if !c.admin && (b(&o, "shared") || b(&o, "is_default")) {
                return Err(NeutronError::forbidden("create_subnetpool:shared"));
            }
            let prefixes = parse_prefixes(&o)?;
            let v = prefixes.first().map(|c| c.v).ok_or_else(|| NeutronError::bad("Failed to parse request. Required attribute 'prefixes' not specified"))?;
            if b(&o, "is_default") && tx.st.iter(Kind::SubnetPool).any(|p| b(p, "is_default") && p.get("ip_version").and_then(Value::as_u64) == Some(v as u64)) {
                return Err(NeutronError::bad("A default subnetpool for this IP family has already been set. Only one default may exist per IP family".to_string()));
            }
            pool_bounds(&mut o, v, None)?;
            svc.check_quota(&tx.st, &owner, Kind::SubnetPool, 1)?;
            o.insert("id".into(), json!(new_id()));
            o.entry("name").or_insert(json!(""));
            o.insert("prefixes".into(), json!(prefixes.iter().map(|c| c.to_string()).collect::<Vec<_>>()));
            o.insert("ip_version".into(), json!(v));
            o.entry("shared").or_insert(json!(false));
            o.entry("is_default").or_insert(json!(false));
            o.insert("address_scope_id".into(), Value::Null);
            o.entry("default_quota").or_insert(Value::Null);
            standard(&mut o, &owner);
            tx.put(Kind::SubnetPool, o.clone());
            Ok(o)
        })
        .await?;
    Ok(created(json!({"subnetpool": out})))
}

async fn pool_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), POOL_ATTRS)?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::SubnetPool)
        .filter(|x| c.owns(x) || b(x, "shared"))
        .filter(|x| matches(x, &p, &[]))
        .cloned()
        .collect();
    Ok(ok(render(
        items,
        &p,
        "subnetpools",
        &coll_url(&svc, "subnetpools"),
    )?))
}

fn get_pool(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::SubnetPool, id)
        .filter(|x| c.owns(x) || b(x, "shared"))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Subnet pool", id))
}

async fn pool_show(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), POOL_ATTRS)?;
    let st = svc.store.read();
    let x = get_pool(&st, &c, &id)?;
    Ok(ok(
        json!({"subnetpool": crate::query::project(&x, &p.fields)}),
    ))
}

async fn pool_update(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let mut u = body_obj(&body, "subnetpool")?;
    only_known(
        &u,
        &[
            "name",
            "prefixes",
            "default_prefixlen",
            "min_prefixlen",
            "max_prefixlen",
            "is_default",
            "default_quota",
            "description",
            "address_scope_id",
        ],
    )?;
    check::string(&u, "name", 255)?;
    check::boolean(&mut u, "is_default")?;
    let out = svc
        .store
        .write(|tx| {
            let x = get_pool(&tx.st, &c, &id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("update_subnetpool"));
            }
            let mut o = (*x).clone();
            let v = o.get("ip_version").and_then(Value::as_u64).unwrap_or(4) as u8;
            if u.contains_key("prefixes") {
                let new = parse_prefixes(&u)?;
                let old: Vec<Cidr> = arr(&o, "prefixes")
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(Cidr::parse_loose)
                    .collect();
                for c0 in &old {
                    if !new
                        .iter()
                        .any(|n| n.len <= c0.len && n.contains(c0.v, c0.first()))
                    {
                        return Err(NeutronError::bad(
                            "Illegal update to prefixes: existing prefixes can only be extended",
                        ));
                    }
                }
                o.insert(
                    "prefixes".into(),
                    json!(new.iter().map(|c| c.to_string()).collect::<Vec<_>>()),
                );
            }
            if u.contains_key("is_default") && !c.admin {
                return Err(NeutronError::forbidden("update_subnetpool:is_default"));
            }
            for k in ["name", "description", "is_default", "default_quota"] {
                if let Some(val) = u.get(k) {
                    o.insert(k.into(), val.clone());
                }
            }
            let mut bounds = Obj::new();
            for k in ["min_prefixlen", "max_prefixlen", "default_prefixlen"] {
                if let Some(val) = u.get(k) {
                    bounds.insert(k.into(), val.clone());
                }
            }
            pool_bounds(&mut bounds, v, Some(&o))?;
            for (k, val) in bounds {
                o.insert(k, val);
            }
            touch(&mut o);
            tx.put(Kind::SubnetPool, o.clone());
            Ok(o)
        })
        .await?;
    Ok(ok(json!({"subnetpool": out})))
}

async fn pool_delete(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    svc.store
        .write(|tx| {
            let x = get_pool(&tx.st, &c, &id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("delete_subnetpool"));
            }
            if tx
                .st
                .iter(Kind::Subnet)
                .any(|s0| s(s0, "subnetpool_id") == id)
            {
                return Err(NeutronError::conflict(
                    "SubnetPoolInUse",
                    format!("Subnet pool {id} cannot be deleted: Subnets are allocated from it."),
                ));
            }
            tx.del(Kind::SubnetPool, &id);
            Ok(())
        })
        .await?;
    Ok(no_content())
}

async fn pool_prefixes(
    svc: &NetworkService,
    c: &Caller,
    id: &str,
    body: &Value,
    add: bool,
) -> NResult<Value> {
    let list = body
        .get("prefixes")
        .cloned()
        .ok_or_else(|| NeutronError::bad("prefixes required"))?;
    let mut tmp = Obj::new();
    tmp.insert("prefixes".into(), list);
    let given = parse_prefixes(&tmp)?;
    svc.store
        .write(|tx| {
            let x = get_pool(&tx.st, c, id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("update_subnetpool"));
            }
            let mut o = (*x).clone();
            let mut cur: Vec<String> = arr(&o, "prefixes")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            for g in &given {
                let gs = g.to_string();
                if add {
                    if !cur.contains(&gs) {
                        cur.push(gs);
                    }
                } else {
                    let used = tx
                        .st
                        .iter(Kind::Subnet)
                        .filter(|s0| s(s0, "subnetpool_id") == id)
                        .filter_map(|s0| super::subnets::cidr_of(s0))
                        .any(|sc| sc.overlaps(g));
                    if used {
                        return Err(NeutronError::conflict(
                            "IllegalSubnetPoolPrefixUpdate",
                            format!("Illegal update to prefixes: {gs} is in use"),
                        ));
                    }
                    cur.retain(|c0| *c0 != gs);
                }
            }
            let mut t = Obj::new();
            t.insert("prefixes".into(), json!(cur));
            let merged = parse_prefixes(&t)?;
            o.insert(
                "prefixes".into(),
                json!(merged.iter().map(|c| c.to_string()).collect::<Vec<_>>()),
            );
            touch(&mut o);
            tx.put(Kind::SubnetPool, o.clone());
            Ok(json!({"prefixes": o["prefixes"].clone()}))
        })
        .await
}

async fn pool_add_prefixes(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    Ok(ok(pool_prefixes(&svc, &c, &id, &body, true).await?))
}
async fn pool_remove_prefixes(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    Ok(ok(pool_prefixes(&svc, &c, &id, &body, false).await?))
}

async fn service_providers(_c: Caller) -> Response {
    ok(json!({"service_providers": [
        {"service_type": "L3_ROUTER_NAT", "name": "default", "default": true}
    ]}))
}
