//! Networks: ML2-style segments (flat, vlan, vxlan, local) with segmentation
//! ids allocated from the configured ranges, MTU, sharing and `router:external`.
use super::{Body, IfMatch, St, coll_url, ok};
use crate::error::{NResult, NeutronError};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, Tx, arr, b, new_id, s, standard, touch};
use crate::{
    Caller, NetworkService, body_obj, check, check_revision, net_visible, only_known, owner_of,
};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/networks", get(list).post(create))
        .route("/v2.0/networks/{id}", get(show).put(update).delete(delete))
}

pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "admin_state_up",
    "status",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "subnets",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "availability_zone_hints",
    "availability_zones",
    "created_at",
    "updated_at",
    "revision_number",
    "ipv4_address_scope",
    "ipv6_address_scope",
];

const CREATE: &[&str] = &[
    "name",
    "admin_state_up",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "availability_zone_hints",
];

const PROVIDER: [&str; 3] = [
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
];

/// The network as `c` sees it (provider attributes are for admins).
pub fn view(c: &Caller, o: &Obj) -> Obj {
    let mut v = o.clone();
    if !c.admin {
        for k in PROVIDER {
            v.remove(k);
        }
    }
    v
}

fn vxlan_range(cfg: &ferro_config::NetworkConfig) -> (i64, i64) {
    cfg.vni_ranges
        .first()
        .and_then(|r| r.split_once(':'))
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .unwrap_or((1, 1000))
}

fn vlan_ranges(cfg: &ferro_config::NetworkConfig) -> Vec<(String, i64, i64)> {
    cfg.network_vlan_ranges
        .iter()
        .filter_map(|r| {
            let mut it = r.split(':');
            let p = it.next()?.to_string();
            let a = it.next()?.parse().ok()?;
            let b = it.next()?.parse().ok()?;
            Some((p, a, b))
        })
        .collect()
}

fn seg_used(st: &NState, typ: &str, phys: Option<&str>, id: i64) -> bool {
    st.iter(Kind::Network).any(|n| {
        s(n, "provider:network_type") == typ
            && n.get("provider:physical_network").and_then(Value::as_str) == phys
            && n.get("provider:segmentation_id").and_then(Value::as_i64) == Some(id)
    })
}

/// Validates or allocates the network's segment; sets provider attributes and mtu.
fn segment(svc: &NetworkService, st: &NState, o: &mut Obj, admin: bool) -> NResult<()> {
    let given = PROVIDER
        .iter()
        .any(|k| o.get(*k).is_some_and(|v| !v.is_null()));
    if given && !admin {
        return Err(NeutronError::forbidden(
            "create_network:provider:network_type",
        ));
    }
    let cfg = &svc.cfg.network;
    let typ = match o.get("provider:network_type") {
        Some(Value::String(t)) => t.clone(),
        None | Some(Value::Null) => {
            if given {
                return Err(NeutronError::invalid("network_type required"));
            }
            cfg.tenant_network_types
                .first()
                .cloned()
                .unwrap_or_else(|| "vxlan".into())
        }
        Some(v) => {
            return Err(NeutronError::invalid(format!(
                "'{v}' is not a valid network_type"
            )));
        }
    };
    let phys = match o.get("provider:physical_network") {
        Some(Value::String(p)) if !p.is_empty() => Some(p.clone()),
        None | Some(Value::Null) => None,
        Some(Value::String(_)) => None,
        Some(v) => {
            return Err(NeutronError::invalid(format!(
                "'{v}' is not a valid physical_network"
            )));
        }
    };
    let seg = match o.get("provider:segmentation_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
                .ok_or_else(|| NeutronError::invalid(format!("'{v}' is not an integer")))?,
        ),
    };
    let (phys, seg) = match typ.as_str() {
        "flat" => {
            let p = phys.ok_or_else(|| {
                NeutronError::invalid("physical_network required for flat provider network")
            })?;
            if seg.is_some() {
                return Err(NeutronError::invalid(
                    "segmentation_id prohibited for flat provider network",
                ));
            }
            if !cfg.flat_networks.iter().any(|f| f == "*" || *f == p) {
                return Err(NeutronError::invalid(format!(
                    "physical_network '{p}' unknown for flat provider network"
                )));
            }
            if st.iter(Kind::Network).any(|n| {
                s(n, "provider:network_type") == "flat" && s(n, "provider:physical_network") == p
            }) {
                return Err(NeutronError::conflict(
                    "FlatNetworkInUse",
                    format!("Unable to create the flat network. Physical network {p} is in use."),
                ));
            }
            (Some(p), None)
        }
        "vlan" => {
            let ranges = vlan_ranges(cfg);
            let p = match phys {
                Some(p) => p,
                None => ranges.first().map(|r| r.0.clone()).ok_or_else(|| {
                    NeutronError::invalid("physical_network required for VLAN provider network")
                })?,
            };
            let id = match seg {
                Some(id) => {
                    if !(1..=4094).contains(&id) {
                        return Err(NeutronError::invalid("segmentation_id out of range (1 through 4094)".to_string()));
                    }
                    if seg_used(st, "vlan", Some(&p), id) {
                        return Err(NeutronError::conflict(
                            "VlanIdInUse",
                            format!("Unable to create the network. The VLAN {id} on physical network {p} is in use."),
                        ));
                    }
                    id
                }
                None => ranges
                    .iter()
                    .filter(|r| r.0 == p)
                    .flat_map(|r| r.1..=r.2)
                    .find(|id| !seg_used(st, "vlan", Some(&p), *id))
                    .ok_or_else(|| {
                        NeutronError::new(503, "NoNetworkAvailable", "Unable to create the network. No tenant network is available for allocation.")
                    })?,
            };
            (Some(p), Some(id))
        }
        "vxlan" => {
            if phys.is_some() {
                return Err(NeutronError::invalid(
                    "provider:physical_network specified for vxlan network",
                ));
            }
            let (lo, hi) = vxlan_range(cfg);
            let id = match seg {
                Some(id) => {
                    if !(1..=16_777_215).contains(&id) {
                        return Err(NeutronError::invalid(format!("{id} is not a valid VXLAN VNI")));
                    }
                    if seg_used(st, "vxlan", None, id) {
                        return Err(NeutronError::conflict(
                            "TunnelIdInUse",
                            format!("Unable to create the network. The tunnel ID {id} is in use."),
                        ));
                    }
                    id
                }
                None => (lo..=hi)
                    .find(|id| !seg_used(st, "vxlan", None, *id))
                    .ok_or_else(|| {
                        NeutronError::new(503, "NoNetworkAvailable", "Unable to create the network. No tenant network is available for allocation.")
                    })?,
            };
            (None, Some(id))
        }
        "local" => (None, None),
        other => {
            return Err(NeutronError::invalid(format!(
                "network_type value '{other}' not supported"
            )));
        }
    };
    let max_mtu = cfg.global_physnet_mtu as i64 - if typ == "vxlan" { 50 } else { 0 };
    let mtu = match o.get("mtu") {
        None | Some(Value::Null) => max_mtu,
        Some(v) => {
            let m = v
                .as_i64()
                .ok_or_else(|| NeutronError::invalid(format!("'{v}' is not an integer")))?;
            if m < 68 || m > max_mtu {
                return Err(NeutronError::invalid(format!(
                    "Requested MTU is too big, maximum is {max_mtu}"
                )));
            }
            m
        }
    };
    o.insert("provider:network_type".into(), json!(typ));
    o.insert("provider:physical_network".into(), json!(phys));
    o.insert("provider:segmentation_id".into(), json!(seg));
    o.insert("mtu".into(), json!(mtu));
    Ok(())
}

/// Creates one network in `tx`.
pub fn create_tx(
    svc: &NetworkService,
    tx: &mut Tx,
    admin: bool,
    owner: &str,
    mut o: Obj,
) -> NResult<Obj> {
    only_known(&o, CREATE)?;
    check::string(&o, "name", 255)?;
    check::string(&o, "description", 255)?;
    for k in [
        "admin_state_up",
        "shared",
        "router:external",
        "port_security_enabled",
    ] {
        check::boolean(&mut o, k)?;
    }
    check::tags(&mut o)?;
    if !admin {
        if b(&o, "shared") {
            return Err(NeutronError::forbidden("create_network:shared"));
        }
        if b(&o, "router:external") {
            return Err(NeutronError::forbidden("create_network:router:external"));
        }
    }
    let hints = check::string_list(&o, "availability_zone_hints")?;
    for h in &hints {
        if *h != svc.cfg.network.default_availability_zone {
            return Err(NeutronError::new(
                404,
                "AvailabilityZoneNotFound",
                format!("AvailabilityZone {h} could not be found."),
            ));
        }
    }
    svc.check_quota(&tx.st, owner, Kind::Network, 1)?;
    segment(svc, &tx.st, &mut o, admin)?;
    let id = new_id();
    o.insert("id".into(), json!(id));
    o.entry("name").or_insert_with(|| json!(""));
    o.entry("admin_state_up").or_insert(json!(true));
    o.entry("shared").or_insert(json!(false));
    o.entry("router:external").or_insert(json!(false));
    o.entry("port_security_enabled").or_insert(json!(true));
    o.insert("availability_zone_hints".into(), json!(hints));
    o.insert(
        "availability_zones".into(),
        json!([svc.cfg.network.default_availability_zone]),
    );
    o.insert("status".into(), json!("ACTIVE"));
    o.insert("subnets".into(), json!([]));
    o.insert("ipv4_address_scope".into(), Value::Null);
    o.insert("ipv6_address_scope".into(), Value::Null);
    standard(&mut o, owner);
    tx.put(Kind::Network, o.clone());
    Ok(o)
}

async fn create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_network"));
    }
    let req = super::Creation::parse(&body, "network", "networks")?;
    let out = svc
        .store
        .write(|tx| {
            let mut out = Vec::new();
            for mut o in req.items.clone() {
                let owner = owner_of(&c, &mut o)?;
                out.push(view(&c, &create_tx(&svc, tx, c.admin, &owner, o)?));
            }
            Ok(out)
        })
        .await?;
    svc.notify();
    Ok(req.respond(out))
}

async fn list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    if !c.admin && PROVIDER.iter().any(|k| p.filter_value(k).is_some()) {
        return Err(NeutronError::bad(
            "[provider:network_type] is invalid attribute for filtering",
        ));
    }
    let st = svc.store.read();
    let items = st
        .iter(Kind::Network)
        .filter(|n| net_visible(&st, &c, n))
        .filter(|n| matches(n, &p, &[]))
        .map(|n| Arc::new(view(&c, n)))
        .collect();
    Ok(ok(render(
        items,
        &p,
        "networks",
        &coll_url(&svc, "networks"),
    )?))
}

pub fn get_visible(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::Network, id)
        .filter(|n| net_visible(st, c, n))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Network", id))
}

async fn show(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    let st = svc.store.read();
    let n = get_visible(&st, &c, &id)?;
    Ok(ok(
        json!({"network": crate::query::project(&view(&c, &n), &p.fields)}),
    ))
}

const UPDATE: &[&str] = &[
    "name",
    "admin_state_up",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "description",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
];

async fn update(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let mut u = body_obj(&body, "network")?;
    only_known(&u, UPDATE)?;
    check::string(&u, "name", 255)?;
    check::string(&u, "description", 255)?;
    for k in [
        "admin_state_up",
        "shared",
        "router:external",
        "port_security_enabled",
    ] {
        check::boolean(&mut u, k)?;
    }
    let out = svc
        .store
        .write(|tx| {
            let n = get_visible(&tx.st, &c, &id)?;
            if !c.owns(&n) {
                return Err(NeutronError::forbidden("update_network"));
            }
            check_revision(im.as_deref(), &n)?;
            let mut o = (*n).clone();
            if PROVIDER.iter().any(|k| u.contains_key(*k)) {
                if !c.admin {
                    return Err(NeutronError::forbidden("update_network:provider:network_type"));
                }
                let same = PROVIDER.iter().all(|k| u.get(*k).is_none_or(|v| o.get(*k) == Some(v)));
                if !same {
                    return Err(NeutronError::invalid("Plugin does not support updating the following provider network attributes: provider:network_type, provider:physical_network, provider:segmentation_id"));
                }
            }
            if let Some(sh) = u.get("shared").and_then(Value::as_bool) {
                if !c.admin && sh != b(&o, "shared") {
                    return Err(NeutronError::forbidden("update_network:shared"));
                }
                if !sh && b(&o, "shared") {
                    let owner = s(&o, "project_id").to_string();
                    let foreign = tx.st.ports_on(&id).any(|p| {
                        s(p, "project_id") != owner && !s(p, "device_owner").starts_with("network:")
                    }) || tx.st.subnets_of(&id).any(|x| s(x, "project_id") != owner);
                    if foreign {
                        return Err(NeutronError::conflict(
                            "InvalidSharedSetting",
                            format!("Unable to reconfigure sharing settings for network {id}. Multiple tenants are using it."),
                        ));
                    }
                }
            }
            if let Some(ext) = u.get("router:external").and_then(Value::as_bool) {
                if !c.admin && ext != b(&o, "router:external") {
                    return Err(NeutronError::forbidden("update_network:router:external"));
                }
                if !ext && b(&o, "router:external") {
                    let used = tx.st.ports_on(&id).any(|p| {
                        matches!(s(p, "device_owner"), "network:router_gateway" | "network:floatingip")
                    });
                    if used {
                        return Err(NeutronError::conflict(
                            "ExternalNetworkInUse",
                            format!("External network {id} cannot be updated to be made non-external, since it has existing gateway ports."),
                        ));
                    }
                }
            }
            if let Some(m) = u.get("mtu") {
                let m = m.as_i64().ok_or_else(|| NeutronError::invalid(format!("'{m}' is not an integer")))?;
                let max = svc.cfg.network.global_physnet_mtu as i64
                    - if s(&o, "provider:network_type") == "vxlan" { 50 } else { 0 };
                if m < 68 || m > max {
                    return Err(NeutronError::invalid(format!("Requested MTU is too big, maximum is {max}")));
                }
            }
            for (k, v) in u.iter() {
                if !k.starts_with("provider:") {
                    o.insert(k.clone(), v.clone());
                }
            }
            touch(&mut o);
            tx.put(Kind::Network, o.clone());
            Ok(view(&c, &o))
        })
        .await?;
    svc.notify();
    Ok(ok(json!({"network": out})))
}

/// Deletes the network, its subnets and its DHCP ports (409 while other ports remain).
pub fn delete_tx(tx: &mut Tx, id: &str) -> NResult<()> {
    // Unassociated floating IPs of an external network go with it.
    let fips: Vec<String> = tx
        .st
        .iter(Kind::FloatingIp)
        .filter(|f| s(f, "floating_network_id") == id && s(f, "port_id").is_empty())
        .map(|f| s(f, "id").to_string())
        .collect();
    for f in &fips {
        tx.del(Kind::FloatingIp, f);
    }
    let busy = tx.st.ports_on(id).any(|p| {
        let o = s(p, "device_owner");
        o != "network:dhcp"
            && !(o == "network:floatingip" && fips.iter().any(|f| f == s(p, "device_id")))
    });
    if busy {
        return Err(NeutronError::conflict(
            "NetworkInUse",
            format!(
                "Unable to complete operation on network {id}. There are one or more ports still in use on the network."
            ),
        ));
    }
    let ports: Vec<String> = tx.st.ports_on(id).map(|p| s(p, "id").to_string()).collect();
    for p in ports {
        tx.del(Kind::Port, &p);
    }
    let subs: Vec<String> = tx
        .st
        .subnets_of(id)
        .map(|p| s(p, "id").to_string())
        .collect();
    for x in subs {
        tx.del(Kind::Subnet, &x);
        tx.st.ips.remove(&x);
    }
    let rbac: Vec<String> = tx
        .st
        .iter(Kind::Rbac)
        .filter(|r| s(r, "object_id") == id)
        .map(|r| s(r, "id").to_string())
        .collect();
    for r in rbac {
        tx.del(Kind::Rbac, &r);
    }
    tx.del(Kind::Network, id);
    Ok(())
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
        "delete_network",
        |st| get_visible(st, &c, &id),
        |_, o| c.owns(o),
        |tx, _| delete_tx(tx, &id),
    )
    .await
}

/// At first start: the external flat network `public` and its subnet.
pub async fn bootstrap_public(svc: &NetworkService, admin_project: &str) -> NResult<()> {
    if svc
        .store
        .read()
        .iter(Kind::Network)
        .any(|n| s(n, "name") == "public" && b(n, "router:external"))
    {
        return Ok(());
    }
    let cidr = svc.cfg.network.public_network_cidr.clone();
    svc.store
        .write(|tx| {
            let mut o = Obj::new();
            o.insert("name".into(), json!("public"));
            o.insert("router:external".into(), json!(true));
            o.insert("provider:network_type".into(), json!("flat"));
            o.insert("provider:physical_network".into(), json!("public"));
            let n = create_tx(svc, tx, true, admin_project, o)?;
            let mut sub = Obj::new();
            sub.insert("name".into(), json!("public-subnet"));
            sub.insert("network_id".into(), n["id"].clone());
            sub.insert("cidr".into(), json!(cidr));
            sub.insert("ip_version".into(), json!(4));
            sub.insert("enable_dhcp".into(), json!(false));
            super::subnets::create_tx(svc, tx, true, admin_project, sub)?;
            Ok(())
        })
        .await
}

/// Whether any of the network's subnets is attached to a router.
pub fn has_router_ports(st: &NState, net: &str) -> bool {
    st.ports_on(net).any(|p| {
        s(p, "device_owner") == "network:router_interface" && !arr(p, "fixed_ips").is_empty()
    })
}
