//! Routers (gateway with SNAT, interfaces by subnet or port, extra routes)
//! and the floating IPs that go through them.
use super::subnets::{assign_ips, cidr_of};
use super::{Body, IfMatch, St, coll_url, created, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::ipam::{self, Cidr};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, Tx, arr, b, new_id, s, standard, touch};
use crate::{Caller, NetworkService, body_obj, check, check_revision, only_known, owner_of};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, put};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/routers", get(list).post(create))
        .route("/v2.0/routers/{id}", get(show).put(update).delete(delete))
        .route(
            "/v2.0/routers/{id}/add_router_interface",
            put(add_interface),
        )
        .route(
            "/v2.0/routers/{id}/remove_router_interface",
            put(remove_interface),
        )
        .route("/v2.0/routers/{id}/add_extraroutes", put(add_routes))
        .route("/v2.0/routers/{id}/remove_extraroutes", put(remove_routes))
        .route("/v2.0/floatingips", get(fip_list).post(fip_create))
        .route(
            "/v2.0/floatingips/{id}",
            get(fip_show).put(fip_update).delete(fip_delete),
        )
}

pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "admin_state_up",
    "status",
    "external_gateway_info",
    "routes",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "availability_zone_hints",
    "availability_zones",
    "created_at",
    "updated_at",
    "revision_number",
];
pub const FIP_ATTRS: &[&str] = &[
    "id",
    "floating_ip_address",
    "floating_network_id",
    "router_id",
    "port_id",
    "fixed_ip_address",
    "status",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "port_details",
    "created_at",
    "updated_at",
    "revision_number",
];

fn get_router(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::Router, id)
        .filter(|r| c.owns(r))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Router", id))
}

/// Interface ports of a router.
fn interfaces(st: &NState, rid: &str) -> Vec<Arc<Obj>> {
    st.iter(Kind::Port)
        .filter(|p| s(p, "device_id") == rid && s(p, "device_owner") == "network:router_interface")
        .cloned()
        .collect()
}

fn iface_subnets(st: &NState, rid: &str) -> Vec<String> {
    interfaces(st, rid)
        .iter()
        .flat_map(|p| {
            arr(p, "fixed_ips")
                .iter()
                .filter_map(|f| f["subnet_id"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Sets, replaces or clears the router's gateway (port on the external network).
fn set_gateway(
    svc: &NetworkService,
    tx: &mut Tx,
    c: &Caller,
    router: &mut Obj,
    info: &Value,
) -> NResult<()> {
    let rid = s(router, "id").to_string();
    let current = router
        .get("external_gateway_info")
        .cloned()
        .unwrap_or(Value::Null);
    let gw_port = tx
        .st
        .iter(Kind::Port)
        .find(|p| s(p, "device_id") == rid && s(p, "device_owner") == "network:router_gateway")
        .cloned();
    let clear = match info {
        Value::Null => true,
        Value::Object(o) => o.is_empty() || o.get("network_id").is_none_or(Value::is_null),
        _ => {
            return Err(NeutronError::invalid(
                "external_gateway_info must be a dictionary",
            ));
        }
    };
    if clear {
        if tx
            .st
            .iter(Kind::FloatingIp)
            .any(|f| s(f, "router_id") == rid)
        {
            return Err(NeutronError::conflict(
                "RouterExternalGatewayInUseByFloatingIp",
                format!(
                    "Gateway cannot be updated for router {rid}, since a gateway to external network {} is required by one or more floating IPs.",
                    current
                        .get("network_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            ));
        }
        if let Some(p) = gw_port {
            tx.del(Kind::Port, s(&p, "id"));
        }
        router.insert("external_gateway_info".into(), Value::Null);
        return Ok(());
    }
    let o = info.as_object().cloned().unwrap_or_default();
    only_known(&o, &["network_id", "enable_snat", "external_fixed_ips"])?;
    let net_id = s(&o, "network_id").to_string();
    let net = tx
        .get(Kind::Network, &net_id)
        .ok_or_else(|| NeutronError::not_found("Network", &net_id))?;
    if !b(&net, "router:external") {
        return Err(NeutronError::bad(format!(
            "Bad router request: Network {net_id} is not an external network."
        )));
    }
    let snat = match o.get("enable_snat") {
        None | Some(Value::Null) => current
            .get("enable_snat")
            .and_then(Value::as_bool)
            .filter(|_| current.get("network_id").and_then(Value::as_str) == Some(&net_id))
            .unwrap_or(true),
        Some(Value::Bool(x)) => {
            if !c.admin {
                return Err(NeutronError::forbidden(
                    "create_router:external_gateway_info:enable_snat",
                ));
            }
            *x
        }
        Some(x) => {
            return Err(NeutronError::invalid(format!(
                "'{x}' is not a valid boolean value"
            )));
        }
    };
    let want_ips = o.get("external_fixed_ips").cloned();
    if want_ips.is_some() && !c.admin {
        return Err(NeutronError::forbidden(
            "create_router:external_gateway_info:external_fixed_ips",
        ));
    }
    let same_net = gw_port
        .as_ref()
        .is_some_and(|p| s(p, "network_id") == net_id);
    let fixed = match (&gw_port, same_net, &want_ips) {
        (Some(p), true, None) => arr(p, "fixed_ips").to_vec(),
        _ => {
            if let Some(p) = &gw_port {
                if !same_net
                    && tx
                        .st
                        .iter(Kind::FloatingIp)
                        .any(|f| s(f, "router_id") == rid)
                {
                    return Err(NeutronError::conflict(
                        "RouterExternalGatewayInUseByFloatingIp",
                        format!(
                            "Gateway cannot be updated for router {rid}, since a gateway to external network is required by one or more floating IPs."
                        ),
                    ));
                }
                tx.del(Kind::Port, s(p, "id"));
            }
            let mut po = Obj::new();
            po.insert("network_id".into(), json!(net_id));
            po.insert("device_owner".into(), json!("network:router_gateway"));
            po.insert("device_id".into(), json!(rid));
            po.insert("binding:host_id".into(), json!(svc.host));
            if let Some(w) = &want_ips {
                po.insert("fixed_ips".into(), w.clone());
            }
            let keep = gw_port
                .as_ref()
                .filter(|_| same_net)
                .map(|p| arr(p, "fixed_ips").to_vec())
                .unwrap_or_default();
            if same_net {
                // The old port is gone; its addresses may be requested again.
                let _ = keep;
            }
            let p = super::ports::create_tx(svc, tx, true, "", "", po)?;
            if arr(&p, "fixed_ips").is_empty() {
                return Err(NeutronError::bad(format!(
                    "Bad router request: No subnets on external network {net_id}."
                )));
            }
            arr(&p, "fixed_ips").to_vec()
        }
    };
    router.insert(
        "external_gateway_info".into(),
        json!({"network_id": net_id, "enable_snat": snat, "external_fixed_ips": fixed}),
    );
    Ok(())
}

fn validate_routes(
    svc: &NetworkService,
    st: &NState,
    rid: &str,
    routes: &Value,
) -> NResult<Vec<Value>> {
    let list = routes.as_array().ok_or_else(|| {
        NeutronError::invalid(format!("Invalid data format for routes: {routes}"))
    })?;
    if list.len() > svc.cfg.network.max_routes {
        return Err(NeutronError::bad(format!(
            "Unable to complete operation for {rid}. The number of routes exceeds the maximum {}.",
            svc.cfg.network.max_routes
        )));
    }
    let subs: Vec<Cidr> = iface_subnets(st, rid)
        .iter()
        .filter_map(|x| st.get(Kind::Subnet, x))
        .filter_map(|x| cidr_of(x))
        .collect();
    let own: Vec<String> = interfaces(st, rid)
        .iter()
        .flat_map(|p| {
            arr(p, "fixed_ips")
                .iter()
                .filter_map(|f| f["ip_address"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out: Vec<Value> = Vec::new();
    for r in list {
        let (Some(d), Some(n)) = (r["destination"].as_str(), r["nexthop"].as_str()) else {
            return Err(NeutronError::invalid(format!(
                "Invalid data format for routes: {r}"
            )));
        };
        let dc = Cidr::parse_loose(d).ok_or_else(|| {
            NeutronError::invalid(format!(
                "Invalid format for routes: {r}, '{d}' is not a valid IP subnet"
            ))
        })?;
        let (nv, nn) = ipam::parse_ip(n).ok_or_else(|| {
            NeutronError::invalid(format!(
                "Invalid format for routes: {r}, '{n}' is not a valid IP address"
            ))
        })?;
        if !subs.iter().any(|c| c.contains(nv, nn)) {
            return Err(NeutronError::bad(format!(
                "Invalid format for routes: {r}, the nexthop is not connected with router"
            )));
        }
        if own.iter().any(|x| x == n) {
            return Err(NeutronError::bad(format!(
                "Invalid format for routes: {r}, the nexthop is used by router"
            )));
        }
        let item = json!({"destination": dc.masked().to_string(), "nexthop": n});
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

async fn create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_router"));
    }
    let mut o = body_obj(&body, "router")?;
    only_known(
        &o,
        &[
            "name",
            "admin_state_up",
            "external_gateway_info",
            "description",
            "tags",
            "tenant_id",
            "project_id",
            "availability_zone_hints",
        ],
    )?;
    check::string(&o, "name", 255)?;
    check::string(&o, "description", 255)?;
    check::boolean(&mut o, "admin_state_up")?;
    check::tags(&mut o)?;
    let out = svc
        .store
        .write(|tx| {
            let owner = owner_of(&c, &mut o)?;
            svc.check_quota(&tx.st, &owner, Kind::Router, 1)?;
            let hints = check::string_list(&o, "availability_zone_hints")?;
            let gw = o.remove("external_gateway_info").unwrap_or(Value::Null);
            let mut r = o.clone();
            r.insert("id".into(), json!(new_id()));
            r.entry("name").or_insert(json!(""));
            r.entry("admin_state_up").or_insert(json!(true));
            r.insert("status".into(), json!("ACTIVE"));
            r.insert("external_gateway_info".into(), Value::Null);
            r.insert("routes".into(), json!([]));
            r.insert("availability_zone_hints".into(), json!(hints));
            r.insert(
                "availability_zones".into(),
                json!([svc.cfg.network.default_availability_zone]),
            );
            standard(&mut r, &owner);
            if !gw.is_null() {
                set_gateway(&svc, tx, &c, &mut r, &gw)?;
            }
            tx.put(Kind::Router, r.clone());
            Ok(r)
        })
        .await?;
    svc.notify();
    Ok(created(json!({"router": out})))
}

async fn list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::Router)
        .filter(|x| c.owns(x))
        .filter(|x| matches(x, &p, &[]))
        .cloned()
        .collect();
    Ok(ok(render(
        items,
        &p,
        "routers",
        &coll_url(&svc, "routers"),
    )?))
}

async fn show(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    let st = svc.store.read();
    let r = get_router(&st, &c, &id)?;
    Ok(ok(json!({"router": crate::query::project(&r, &p.fields)})))
}

async fn update(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let mut u = body_obj(&body, "router")?;
    only_known(
        &u,
        &[
            "name",
            "admin_state_up",
            "external_gateway_info",
            "description",
            "routes",
        ],
    )?;
    check::string(&u, "name", 255)?;
    check::string(&u, "description", 255)?;
    check::boolean(&mut u, "admin_state_up")?;
    let out = svc
        .store
        .write(|tx| {
            let r = get_router(&tx.st, &c, &id)?;
            check_revision(im.as_deref(), &r)?;
            let mut o = (*r).clone();
            if let Some(gw) = u.get("external_gateway_info") {
                set_gateway(&svc, tx, &c, &mut o, gw)?;
            }
            if let Some(routes) = u.get("routes") {
                let routes = if routes.is_null() {
                    json!([])
                } else {
                    routes.clone()
                };
                let v = validate_routes(&svc, &tx.st, &id, &routes)?;
                o.insert("routes".into(), Value::Array(v));
            }
            for k in ["name", "admin_state_up", "description"] {
                if let Some(v) = u.get(k) {
                    o.insert(k.into(), v.clone());
                }
            }
            touch(&mut o);
            tx.put(Kind::Router, o.clone());
            crate::hosts::reschedule_unhosted(tx, &id);
            Ok(o)
        })
        .await?;
    svc.notify();
    Ok(ok(json!({"router": out})))
}

async fn delete(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
) -> NResult<Response> {
    super::delete_one(
        &svc,
        im.as_deref(),
        "delete_router",
        |st| get_router(st, &c, &id),
        |_, _| true,
        |tx, _| {
            if !interfaces(&tx.st, &id).is_empty() {
                return Err(NeutronError::conflict(
                    "RouterInUse",
                    format!("Router {id} still has ports"),
                ));
            }
            if tx
                .st
                .iter(Kind::FloatingIp)
                .any(|f| s(f, "router_id") == id)
            {
                return Err(NeutronError::conflict(
                    "RouterInUse",
                    format!("Router {id} still has floating IPs"),
                ));
            }
            let gws: Vec<String> = tx
                .st
                .iter(Kind::Port)
                .filter(|p| {
                    s(p, "device_id") == id && s(p, "device_owner") == "network:router_gateway"
                })
                .map(|p| s(p, "id").to_string())
                .collect();
            for p in gws {
                tx.del(Kind::Port, &p);
            }
            tx.del(Kind::Router, &id);
            Ok(())
        },
    )
    .await
}

fn iface_info(r: &Obj, port: &Obj, subnet: &str) -> Value {
    json!({
        "id": s(r, "id"), "tenant_id": s(r, "project_id"), "project_id": s(r, "project_id"),
        "port_id": s(port, "id"), "network_id": s(port, "network_id"), "subnet_id": subnet,
        "subnet_ids": arr(port, "fixed_ips").iter().filter_map(|f| f["subnet_id"].as_str()).collect::<Vec<_>>(),
    })
}

fn check_overlap(st: &NState, rid: &str, new: &[String]) -> NResult<()> {
    for sid in new {
        let Some(c) = st.get(Kind::Subnet, sid).and_then(|x| cidr_of(x)) else {
            continue;
        };
        for other in iface_subnets(st, rid) {
            if let Some(oc) = st.get(Kind::Subnet, &other).and_then(|x| cidr_of(x))
                && oc.overlaps(&c)
            {
                return Err(NeutronError::bad(format!(
                    "Bad router request: Cidr {c} of subnet {sid} overlaps with cidr {oc} of subnet {other}."
                )));
            }
        }
    }
    Ok(())
}

/// Attaches a subnet or port to the router (one transaction).
pub fn add_interface_tx(
    svc: &NetworkService,
    tx: &mut Tx,
    c: &Caller,
    id: &str,
    body: &Value,
) -> NResult<Value> {
    let r = get_router(&tx.st, c, id)?;
    crate::hosts::reschedule_unhosted(tx, id);
    let b_ = body.as_object().cloned().unwrap_or_default();
    let sub_id = b_
        .get("subnet_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let port_id = b_
        .get("port_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (port, subnet) = match (sub_id, port_id) {
        (Some(_), Some(_)) => {
            return Err(NeutronError::bad(
                "Bad router request: Cannot specify both subnet-id and port-id",
            ));
        }
        (None, None) => {
            return Err(NeutronError::bad(
                "Bad router request: Either subnet_id or port_id must be specified",
            ));
        }
        (Some(sid), None) => {
            let x = tx
                .st
                .get(Kind::Subnet, &sid)
                .filter(|x| crate::subnet_visible(&tx.st, c, x))
                .cloned()
                .ok_or_else(|| NeutronError::not_found("Subnet", &sid))?;
            let gw = x
                .get("gateway_ip")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    NeutronError::bad(
                        "Bad router request: Subnet for router interface must have a gateway IP.",
                    )
                })?
                .to_string();
            if iface_subnets(&tx.st, id).contains(&sid) {
                return Err(NeutronError::bad(format!(
                    "Bad router request: Router already has a port on subnet {sid}."
                )));
            }
            check_overlap(&tx.st, id, std::slice::from_ref(&sid))?;
            if tx
                .st
                .ip_used(&sid, ipam::parse_ip(&gw).map(|x| x.1).unwrap_or(0))
            {
                return Err(NeutronError::conflict(
                    "IpAddressInUse",
                    format!(
                        "Unable to complete operation for network {}. The IP address {gw} is in use.",
                        s(&x, "network_id")
                    ),
                ));
            }
            let mut po = Obj::new();
            po.insert("network_id".into(), json!(s(&x, "network_id")));
            po.insert("device_owner".into(), json!("network:router_interface"));
            po.insert("device_id".into(), json!(id));
            po.insert("binding:host_id".into(), json!(svc.host));
            po.insert(
                "fixed_ips".into(),
                json!([{"subnet_id": sid, "ip_address": gw}]),
            );
            let owner = s(&r, "project_id").to_string();
            let p = super::ports::create_tx(svc, tx, true, &owner, &owner, po)?;
            (p, sid)
        }
        (None, Some(pid)) => {
            let p = tx
                .st
                .get(Kind::Port, &pid)
                .filter(|p| c.owns(p))
                .cloned()
                .ok_or_else(|| NeutronError::not_found("Port", &pid))?;
            if !s(&p, "device_id").is_empty() {
                return Err(NeutronError::conflict(
                    "PortInUse",
                    format!(
                        "Unable to complete operation on port {pid} for network {}. Port already has an attached device {}.",
                        s(&p, "network_id"),
                        s(&p, "device_id")
                    ),
                ));
            }
            let subs: Vec<String> = arr(&p, "fixed_ips")
                .iter()
                .filter_map(|f| f["subnet_id"].as_str().map(str::to_string))
                .collect();
            if subs.is_empty() {
                return Err(NeutronError::bad(
                    "Bad router request: Router port must have at least one fixed IP.",
                ));
            }
            check_overlap(&tx.st, id, &subs)?;
            let mut po = (*p).clone();
            po.insert("device_owner".into(), json!("network:router_interface"));
            po.insert("device_id".into(), json!(id));
            po.insert("binding:host_id".into(), json!(svc.host));
            po.insert("security_groups".into(), json!([]));
            touch(&mut po);
            tx.put(Kind::Port, po.clone());
            (po, subs[0].clone())
        }
    };
    let mut ro = (*r).clone();
    touch(&mut ro);
    tx.put(Kind::Router, ro.clone());
    Ok(iface_info(&ro, &port, &subnet))
}

async fn add_interface(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let out = svc
        .store
        .write(|tx| add_interface_tx(&svc, tx, &c, &id, &body))
        .await?;
    svc.notify();
    Ok(ok(out))
}

async fn remove_interface(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let out = svc
        .store
        .write(|tx| {
            let r = get_router(&tx.st, &c, &id)?;
            let sub_id = body.get("subnet_id").and_then(Value::as_str).map(str::to_string);
            let port_id = body.get("port_id").and_then(Value::as_str).map(str::to_string);
            let ifaces = interfaces(&tx.st, &id);
            let port = match (&port_id, &sub_id) {
                (None, None) => return Err(NeutronError::bad("Bad router request: Either subnet_id or port_id must be specified")),
                (Some(pid), _) => {
                    let p = ifaces.iter().find(|p| s(p, "id") == pid).cloned().ok_or_else(|| {
                        NeutronError::new(404, "RouterInterfaceNotFound", format!("Router {id} does not have an interface with id {pid}"))
                    })?;
                    if let Some(sid) = &sub_id
                        && !arr(&p, "fixed_ips").iter().any(|f| f["subnet_id"].as_str() == Some(sid))
                    {
                        return Err(NeutronError::conflict("SubnetMismatchForPort", format!("Subnet {sid} does not match with the port {pid}")));
                    }
                    p
                }
                (None, Some(sid)) => {
                    if tx.st.get(Kind::Subnet, sid).is_none() {
                        return Err(NeutronError::not_found("Subnet", sid));
                    }
                    ifaces
                        .iter()
                        .find(|p| arr(p, "fixed_ips").iter().any(|f| f["subnet_id"].as_str() == Some(sid)))
                        .cloned()
                        .ok_or_else(|| {
                            NeutronError::new(404, "RouterInterfaceNotFoundForSubnet", format!("Router {id} has no interface on subnet {sid}"))
                        })?
                }
            };
            let subs: Vec<String> = arr(&port, "fixed_ips").iter().filter_map(|f| f["subnet_id"].as_str().map(str::to_string)).collect();
            let gone: Vec<String> = match &sub_id {
                Some(sid) if port_id.is_none() => vec![sid.clone()],
                _ => subs.clone(),
            };
            for sid in &gone {
                let Some(c) = tx.st.get(Kind::Subnet, sid).and_then(|x| cidr_of(x)) else { continue };
                let used_by_fip = tx.st.iter(Kind::FloatingIp).any(|f| {
                    s(f, "router_id") == id
                        && f.get("fixed_ip_address").and_then(Value::as_str).and_then(ipam::parse_ip).is_some_and(|(v, n)| c.contains(v, n))
                });
                if used_by_fip {
                    return Err(NeutronError::conflict(
                        "RouterInterfaceInUseByFloatingIP",
                        format!("Router interface for subnet {sid} on router {id} cannot be deleted, as it is required by one or more floating IPs."),
                    ));
                }
                let used_by_route = arr(&r, "routes").iter().any(|rt| {
                    rt["nexthop"].as_str().and_then(ipam::parse_ip).is_some_and(|(v, n)| c.contains(v, n))
                });
                if used_by_route {
                    return Err(NeutronError::conflict(
                        "RouterInterfaceInUseByRoute",
                        format!("Router interface for subnet {sid} on router {id} cannot be deleted, as it is required by one or more routes."),
                    ));
                }
            }
            let remaining: Vec<Value> = arr(&port, "fixed_ips")
                .iter()
                .filter(|f| !gone.iter().any(|g| f["subnet_id"].as_str() == Some(g)))
                .cloned()
                .collect();
            if remaining.is_empty() {
                tx.del(Kind::Port, s(&port, "id"));
            } else {
                let mut po = (*port).clone();
                po.insert("fixed_ips".into(), Value::Array(remaining));
                touch(&mut po);
                tx.put(Kind::Port, po);
            }
            let mut ro = (*r).clone();
            touch(&mut ro);
            tx.put(Kind::Router, ro.clone());
            let sid = gone.first().cloned().unwrap_or_default();
            let mut info = iface_info(&ro, &port, &sid);
            info["subnet_ids"] = json!(gone);
            Ok(info)
        })
        .await?;
    svc.notify();
    Ok(ok(out))
}

async fn edit_routes(
    svc: &NetworkService,
    c: &Caller,
    id: &str,
    body: &Value,
    add: bool,
) -> NResult<Value> {
    let r = body_obj(body, "router")?;
    let routes = r
        .get("routes")
        .cloned()
        .ok_or_else(|| NeutronError::bad("routes required"))?;
    let out = svc
        .store
        .write(|tx| {
            let r = get_router(&tx.st, c, id)?;
            let mut o = (*r).clone();
            let mut cur = arr(&o, "routes").to_vec();
            if add {
                let v = validate_routes(svc, &tx.st, id, &routes)?;
                for x in v {
                    if !cur.contains(&x) {
                        cur.push(x);
                    }
                }
                validate_routes(svc, &tx.st, id, &Value::Array(cur.clone()))?;
            } else {
                let list = routes.as_array().cloned().unwrap_or_default();
                cur.retain(|x| {
                    !list.iter().any(|y| {
                        let d = y["destination"]
                            .as_str()
                            .and_then(Cidr::parse_loose)
                            .map(|c| c.masked().to_string());
                        d.as_deref() == x["destination"].as_str() && y["nexthop"] == x["nexthop"]
                    })
                });
            }
            o.insert("routes".into(), Value::Array(cur));
            touch(&mut o);
            tx.put(Kind::Router, o.clone());
            Ok(o)
        })
        .await?;
    svc.notify();
    Ok(json!({"router": out}))
}

async fn add_routes(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    Ok(ok(edit_routes(&svc, &c, &id, &body, true).await?))
}
async fn remove_routes(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    Ok(ok(edit_routes(&svc, &c, &id, &body, false).await?))
}

// ---- floating IPs ----

fn port_details(p: &Obj) -> Value {
    json!({"name": s(p, "name"), "network_id": s(p, "network_id"), "mac_address": s(p, "mac_address"),
           "admin_state_up": b(p, "admin_state_up"), "status": s(p, "status"),
           "device_id": s(p, "device_id"), "device_owner": s(p, "device_owner")})
}

/// Associates `fip` with a port (or clears it): finds the router that
/// connects the port's subnet to the floating network.
fn associate(
    tx: &Tx,
    c: &Caller,
    fip: &mut Obj,
    port_id: Option<&str>,
    fixed: Option<&str>,
) -> NResult<()> {
    let Some(pid) = port_id else {
        fip.insert("port_id".into(), Value::Null);
        fip.insert("fixed_ip_address".into(), Value::Null);
        fip.insert("router_id".into(), Value::Null);
        fip.insert("port_details".into(), Value::Null);
        return Ok(());
    };
    let p = tx
        .st
        .get(Kind::Port, pid)
        .filter(|p| c.admin || s(p, "project_id") == s(fip, "project_id"))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Port", pid))?;
    let v4: Vec<&Value> = arr(&p, "fixed_ips")
        .iter()
        .filter(|f| f["ip_address"].as_str().is_some_and(|x| x.contains('.')))
        .collect();
    let chosen = match fixed {
        Some(ip) => v4
            .iter()
            .find(|f| f["ip_address"].as_str() == Some(ip))
            .cloned()
            .ok_or_else(|| {
                NeutronError::bad(format!(
                    "Bad floatingip request: Port {pid} does not have fixed ip {ip}."
                ))
            })?,
        None => match v4.len() {
            0 => {
                return Err(NeutronError::bad(format!(
                    "Bad floatingip request: Port {pid} does not have any IPv4 address. Floating IPs can only be associated with IPv4 addresses."
                )));
            }
            1 => v4[0],
            _ => {
                return Err(NeutronError::bad(format!(
                    "Bad floatingip request: Port {pid} has multiple fixed IPv4 addresses. Must provide a specific IPv4 address when assigning a floating IP."
                )));
            }
        },
    };
    let ip = chosen["ip_address"].as_str().unwrap_or("").to_string();
    let sid = chosen["subnet_id"].as_str().unwrap_or("").to_string();
    let ext = s(fip, "floating_network_id").to_string();
    let router = tx
        .st
        .iter(Kind::Router)
        .filter(|r| r.get("external_gateway_info").and_then(|g| g.get("network_id")).and_then(Value::as_str) == Some(ext.as_str()))
        .find(|r| iface_subnets(&tx.st, s(r, "id")).contains(&sid))
        .cloned()
        .ok_or_else(|| {
            NeutronError::new(404, "ExternalGatewayForFloatingIPNotFound", format!(
                "External network {ext} is not reachable from subnet {sid}.  Therefore, cannot associate Port {pid} with a Floating IP."
            ))
        })?;
    if tx.st.iter(Kind::FloatingIp).any(|f| {
        s(f, "id") != s(fip, "id")
            && s(f, "port_id") == pid
            && s(f, "fixed_ip_address") == ip
            && s(f, "floating_network_id") == ext
    }) {
        return Err(NeutronError::conflict(
            "FloatingIPPortAlreadyAssociated",
            format!(
                "Cannot associate floating IP {} ({}) with port {pid} using fixed IP {ip}, as that fixed IP already has a floating IP on external network {ext}.",
                s(fip, "floating_ip_address"),
                s(fip, "id")
            ),
        ));
    }
    fip.insert("port_id".into(), json!(pid));
    fip.insert("fixed_ip_address".into(), json!(ip));
    fip.insert("router_id".into(), json!(s(&router, "id")));
    fip.insert("port_details".into(), port_details(&p));
    Ok(())
}

pub fn fip_create_tx(svc: &NetworkService, tx: &mut Tx, c: &Caller, mut o: Obj) -> NResult<Obj> {
    only_known(
        &o,
        &[
            "floating_network_id",
            "floating_ip_address",
            "subnet_id",
            "port_id",
            "fixed_ip_address",
            "description",
            "tags",
            "tenant_id",
            "project_id",
        ],
    )?;
    check::string(&o, "description", 255)?;
    check::uuid(&o, "floating_network_id")?;
    check::uuid(&o, "port_id")?;
    check::uuid(&o, "subnet_id")?;
    check::tags(&mut o)?;
    let owner = owner_of(c, &mut o)?;
    let net_id = o
        .get("floating_network_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            NeutronError::bad(
                "Failed to parse request. Required attribute 'floating_network_id' not specified",
            )
        })?
        .to_string();
    let net = tx
        .get(Kind::Network, &net_id)
        .ok_or_else(|| NeutronError::not_found("Network", &net_id))?;
    if !b(&net, "router:external") {
        return Err(NeutronError::bad(format!(
            "Bad floatingip request: Network {net_id} is not a valid external network."
        )));
    }
    if o.contains_key("floating_ip_address") && !c.admin {
        return Err(NeutronError::forbidden(
            "create_floatingip:floating_ip_address",
        ));
    }
    svc.check_quota(&tx.st, &owner, Kind::FloatingIp, 1)?;
    let id = new_id();
    let fixed = match (
        o.get("floating_ip_address").and_then(Value::as_str),
        o.get("subnet_id").and_then(Value::as_str),
    ) {
        (Some(ip), Some(sid)) => json!([{"ip_address": ip, "subnet_id": sid}]),
        (Some(ip), None) => json!([{"ip_address": ip}]),
        (None, Some(sid)) => json!([{"subnet_id": sid}]),
        (None, None) => {
            // One IPv4 address from any IPv4 subnet of the external network.
            let v4: Vec<Arc<Obj>> = super::subnets::net_subnets(&tx.st, &net_id)
                .into_iter()
                .filter(|x| x.get("ip_version").and_then(Value::as_i64) == Some(4))
                .collect();
            let mut chosen = None;
            for x in &v4 {
                let used = tx
                    .st
                    .ips
                    .get(s(x, "id"))
                    .map(|u| u.used.clone())
                    .unwrap_or_default();
                if ipam::next_free(&super::subnets::pools_of(x), &used, 0).is_some() {
                    chosen = Some(s(x, "id").to_string());
                    break;
                }
            }
            match chosen {
                Some(sid) => json!([{"subnet_id": sid}]),
                None if v4.is_empty() => {
                    return Err(NeutronError::bad(format!(
                        "Bad floatingip request: Network {net_id} does not contain any IPv4 subnet"
                    )));
                }
                None => {
                    return Err(NeutronError::conflict(
                        "IpAddressGenerationFailure",
                        format!("No more IP addresses available on network {net_id}."),
                    ));
                }
            }
        }
    };
    let mut po = Obj::new();
    po.insert("network_id".into(), json!(net_id));
    po.insert("device_owner".into(), json!("network:floatingip"));
    po.insert("device_id".into(), json!(id));
    let ips = assign_ips(
        svc,
        tx,
        &net_id,
        Some(&fixed),
        "fa:16:3e:00:00:00",
        "network:floatingip",
        &[],
    )?;
    po.insert("fixed_ips".into(), Value::Array(ips.clone()));
    let port = super::ports::create_tx(svc, tx, true, "", "", po)?;
    let addr = arr(&port, "fixed_ips")
        .first()
        .and_then(|f| f["ip_address"].as_str())
        .unwrap_or("")
        .to_string();
    let mut f = Obj::new();
    f.insert("id".into(), json!(id));
    f.insert("floating_network_id".into(), json!(net_id));
    f.insert("floating_ip_address".into(), json!(addr));
    f.insert("status".into(), json!("DOWN"));
    f.insert(
        "description".into(),
        o.get("description").cloned().unwrap_or(json!("")),
    );
    if let Some(t) = o.get("tags") {
        f.insert("tags".into(), t.clone());
    }
    standard(&mut f, &owner);
    associate(
        tx,
        c,
        &mut f,
        o.get("port_id").and_then(Value::as_str),
        o.get("fixed_ip_address").and_then(Value::as_str),
    )?;
    if !s(&f, "port_id").is_empty() {
        f.insert("status".into(), json!("ACTIVE"));
    }
    f.insert("port_forwardings".into(), json!([]));
    tx.put(Kind::FloatingIp, f.clone());
    Ok(f)
}

async fn fip_create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_floatingip"));
    }
    let o = body_obj(&body, "floatingip")?;
    let out = svc.store.write(|tx| fip_create_tx(&svc, tx, &c, o)).await?;
    svc.notify();
    Ok(created(json!({"floatingip": out})))
}

async fn fip_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), FIP_ATTRS)?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::FloatingIp)
        .filter(|x| c.owns(x))
        .filter(|x| matches(x, &p, &[]))
        .cloned()
        .collect();
    Ok(ok(render(
        items,
        &p,
        "floatingips",
        &coll_url(&svc, "floatingips"),
    )?))
}

fn get_fip(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::FloatingIp, id)
        .filter(|x| c.owns(x))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Floating IP", id))
}

async fn fip_show(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), FIP_ATTRS)?;
    let st = svc.store.read();
    let f = get_fip(&st, &c, &id)?;
    Ok(ok(
        json!({"floatingip": crate::query::project(&f, &p.fields)}),
    ))
}

async fn fip_update(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let u = body_obj(&body, "floatingip")?;
    only_known(&u, &["port_id", "fixed_ip_address", "description"])?;
    check::string(&u, "description", 255)?;
    check::uuid(&u, "port_id")?;
    let out = svc
        .store
        .write(|tx| {
            let f = get_fip(&tx.st, &c, &id)?;
            check_revision(im.as_deref(), &f)?;
            let mut o = (*f).clone();
            if u.contains_key("port_id") {
                associate(tx, &c, &mut o, u.get("port_id").and_then(Value::as_str), u.get("fixed_ip_address").and_then(Value::as_str))?;
            } else if let Some(ip) = u.get("fixed_ip_address").and_then(Value::as_str) {
                let pid = s(&o, "port_id").to_string();
                if pid.is_empty() {
                    return Err(NeutronError::bad("Bad floatingip request: fixed_ip_address cannot be specified without a port_id."));
                }
                associate(tx, &c, &mut o, Some(&pid), Some(ip))?;
            }
            if let Some(d) = u.get("description") {
                o.insert("description".into(), d.clone());
            }
            touch(&mut o);
            tx.put(Kind::FloatingIp, o.clone());
            Ok(o)
        })
        .await?;
    svc.notify();
    Ok(ok(json!({"floatingip": out})))
}

async fn fip_delete(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
) -> NResult<Response> {
    svc.store
        .write(|tx| {
            let f = get_fip(&tx.st, &c, &id)?;
            check_revision(im.as_deref(), &f)?;
            let ports: Vec<String> = tx
                .st
                .iter(Kind::Port)
                .filter(|p| s(p, "device_id") == id && s(p, "device_owner") == "network:floatingip")
                .map(|p| s(p, "id").to_string())
                .collect();
            for p in ports {
                tx.del(Kind::Port, &p);
            }
            tx.del(Kind::FloatingIp, &id);
            Ok(())
        })
        .await?;
    svc.notify();
    Ok(no_content())
}
