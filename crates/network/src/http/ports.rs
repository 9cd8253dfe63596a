//! Ports: MAC and fixed IP allocation, security groups, port security,
//! allowed address pairs, extra DHCP options, binding attributes.
use super::subnets::assign_ips;
use super::{Body, IfMatch, St, coll_url, ok};
use crate::error::{NResult, NeutronError};
use crate::ipam::{self, Cidr};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, Tx, arr, b, new_id, s, standard, touch};
use crate::{
    Caller, NetworkService, body_obj, check, check_revision, only_known, owner_of, port_visible,
};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/ports", get(list).post(create))
        .route("/v2.0/ports/{id}", get(show).put(update).delete(delete))
}

pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "network_id",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_id",
    "device_owner",
    "status",
    "security_groups",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "port_security_enabled",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
    "binding:vif_type",
    "binding:vif_details",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "created_at",
    "updated_at",
    "revision_number",
    "ip_allocation",
];

const CREATE: &[&str] = &[
    "name",
    "network_id",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_id",
    "device_owner",
    "security_groups",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "port_security_enabled",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
    "description",
    "tags",
    "tenant_id",
    "project_id",
];

const VNIC_TYPES: [&str; 9] = [
    "normal",
    "direct",
    "macvtap",
    "baremetal",
    "direct-physical",
    "virtio-forwarder",
    "smart-nic",
    "remote-managed",
    "vdpa",
];

const ADMIN_ONLY: [&str; 4] = [
    "binding:host_id",
    "binding:profile",
    "binding:vif_type",
    "binding:vif_details",
];

/// The port as `c` sees it (binding details are for admins).
pub fn view(c: &Caller, o: &Obj) -> Obj {
    let mut v = o.clone();
    v.remove("nova_preexisting");
    if !c.admin {
        for k in ADMIN_ONLY {
            v.remove(k);
        }
    }
    v
}

fn gen_mac(st: &NState, net: &str, base: &str) -> String {
    let mut rng = rand::rng();
    loop {
        let m = format!(
            "{base}:{:02x}:{:02x}:{:02x}",
            rng.random::<u8>(),
            rng.random::<u8>(),
            rng.random::<u8>()
        );
        if !st.macs.get(net).is_some_and(|x| x.contains(&m)) {
            return m;
        }
    }
}

fn valid_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
        && u8::from_str_radix(parts[0], 16).is_ok_and(|x| x & 1 == 0)
        && m != "00:00:00:00:00:00"
}

fn binding(o: &mut Obj) {
    let host = s(o, "binding:host_id").to_string();
    if host.is_empty() {
        o.insert("binding:vif_type".into(), json!("unbound"));
        o.insert("binding:vif_details".into(), json!({}));
    } else {
        o.insert("binding:vif_type".into(), json!("bridge"));
        o.insert(
            "binding:vif_details".into(),
            json!({"port_filter": true, "connectivity": "l2"}),
        );
    }
}

fn check_pairs(o: &Obj, mac: &str) -> NResult<Value> {
    let list = match o.get("allowed_address_pairs") {
        None | Some(Value::Null) => return Ok(json!([])),
        Some(Value::Array(a)) => a.clone(),
        Some(x) => {
            return Err(NeutronError::bad(format!(
                "Allowed address pairs must be a list: '{x}'"
            )));
        }
    };
    let mut out: Vec<Value> = Vec::new();
    for p in list {
        let ip = p
            .get("ip_address")
            .and_then(Value::as_str)
            .ok_or_else(|| NeutronError::bad("AllowedAddressPair must contain ip_address"))?;
        if Cidr::parse_loose(ip).is_none() {
            return Err(NeutronError::bad(format!(
                "'{ip}' is not a valid IP address"
            )));
        }
        if let Some(k) = p
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "ip_address" && *k != "mac_address"))
        {
            return Err(NeutronError::bad(format!(
                "Unrecognized attribute(s) '{k}'"
            )));
        }
        let m = match p.get("mac_address") {
            None | Some(Value::Null) => mac.to_string(),
            Some(Value::String(m)) if valid_mac(m) => m.to_lowercase(),
            Some(m) => {
                return Err(NeutronError::bad(format!(
                    "'{m}' is not a valid MAC address"
                )));
            }
        };
        let item = json!({"ip_address": ip, "mac_address": m});
        if out.contains(&item) {
            return Err(NeutronError::bad(
                "Request contains duplicate address pair: mac_address and ip_address",
            ));
        }
        out.push(item);
    }
    Ok(Value::Array(out))
}

fn check_dhcp_opts(o: &Obj, current: &[Value]) -> NResult<Value> {
    let list = match o.get("extra_dhcp_opts") {
        None | Some(Value::Null) => return Ok(Value::Array(current.to_vec())),
        Some(Value::Array(a)) => a.clone(),
        Some(x) => {
            return Err(NeutronError::invalid(format!(
                "Invalid data format for extra-dhcp-opt: {x}"
            )));
        }
    };
    let mut out: Vec<Value> = current.to_vec();
    for e in list {
        let name = e
            .get("opt_name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                NeutronError::invalid(format!("Invalid data format for extra-dhcp-opt: {e}"))
            })?;
        let ver = match e.get("ip_version") {
            None | Some(Value::Null) => 4,
            Some(v) => match v
                .as_i64()
                .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
            {
                Some(4) => 4,
                Some(6) => 6,
                _ => {
                    return Err(NeutronError::invalid(format!(
                        "Invalid data format for extra-dhcp-opt: {e}"
                    )));
                }
            },
        };
        out.retain(|x| {
            !(x["opt_name"].as_str() == Some(name) && x["ip_version"].as_i64() == Some(ver))
        });
        match e.get("opt_value") {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) => {
                out.push(json!({"opt_name": name, "opt_value": v, "ip_version": ver}))
            }
            Some(v) => {
                out.push(json!({"opt_name": name, "opt_value": v.to_string(), "ip_version": ver}))
            }
        }
    }
    Ok(Value::Array(out))
}

/// Checks the security groups exist and belong to `owner` (or the caller is admin).
fn check_sgs(tx: &Tx, admin: bool, owner: &str, sgs: &[String]) -> NResult<()> {
    for g in sgs {
        match tx.st.get(Kind::SecurityGroup, g) {
            Some(sg) if admin || s(sg, "project_id") == owner || b(sg, "shared") => {}
            _ => return Err(NeutronError::not_found("Security group", g)),
        }
    }
    Ok(())
}

/// Creates a port in `tx`. `net_owner_or_admin` lets the caller set
/// addresses, MACs and `network:*` owners.
pub fn create_tx(
    svc: &NetworkService,
    tx: &mut Tx,
    admin: bool,
    caller_project: &str,
    owner: &str,
    mut o: Obj,
) -> NResult<Obj> {
    only_known(&o, CREATE)?;
    check::string(&o, "name", 255)?;
    check::string(&o, "description", 255)?;
    check::string(&o, "device_id", 255)?;
    check::string(&o, "device_owner", 255)?;
    check::boolean(&mut o, "admin_state_up")?;
    check::boolean(&mut o, "port_security_enabled")?;
    check::tags(&mut o)?;
    check::uuid(&o, "network_id")?;
    let net_id = o
        .get("network_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            NeutronError::bad(
                "Failed to parse request. Required attribute 'network_id' not specified",
            )
        })?;
    let net = tx
        .get(Kind::Network, &net_id)
        .ok_or_else(|| NeutronError::not_found("Network", &net_id))?;
    let net_owner = admin || s(&net, "project_id") == caller_project;
    if !net_owner && !crate::net_shared_with(&tx.st, &net, caller_project) {
        if b(&net, "router:external") {
            return Err(NeutronError::forbidden("create_port:network_id"));
        }
        return Err(NeutronError::not_found("Network", &net_id));
    }
    let device_owner = s(&o, "device_owner").to_string();
    if device_owner.starts_with("network:") && !net_owner {
        return Err(NeutronError::forbidden("create_port:device_owner"));
    }
    if !admin {
        for k in ["binding:host_id", "binding:profile"] {
            if o.contains_key(k) {
                return Err(NeutronError::forbidden(&format!("create_port:{k}")));
            }
        }
    }
    let mac = match o.get("mac_address") {
        None | Some(Value::Null) => gen_mac(&tx.st, &net_id, &svc.cfg.network.base_mac),
        Some(Value::String(m)) => {
            if !net_owner {
                return Err(NeutronError::forbidden("create_port:mac_address"));
            }
            if !valid_mac(m) {
                return Err(NeutronError::invalid(format!(
                    "'{m}' is not a valid MAC address"
                )));
            }
            let m = m.to_lowercase();
            if tx.st.macs.get(&net_id).is_some_and(|x| x.contains(&m)) {
                return Err(NeutronError::conflict(
                    "MacAddressInUse",
                    format!(
                        "Unable to complete operation for network {net_id}. The mac address {m} is in use."
                    ),
                ));
            }
            m
        }
        Some(x) => {
            return Err(NeutronError::invalid(format!(
                "'{x}' is not a valid MAC address"
            )));
        }
    };
    if !net_owner
        && arr(&o, "fixed_ips")
            .iter()
            .any(|f| f.get("ip_address").is_some())
    {
        return Err(NeutronError::forbidden("create_port:fixed_ips:ip_address"));
    }
    if let Some(vt) = o.get("binding:vnic_type")
        && !vt.as_str().is_some_and(|v| VNIC_TYPES.contains(&v))
    {
        return Err(NeutronError::invalid(format!(
            "Invalid input for binding:vnic_type. Reason: {vt} is not in {VNIC_TYPES:?}"
        )));
    }
    if let Some(p) = o.get("binding:profile")
        && !p.is_object()
        && !p.is_null()
    {
        return Err(NeutronError::invalid(
            "binding:profile must be a dictionary",
        ));
    }
    svc.check_quota(&tx.st, owner, Kind::Port, 1)?;
    let fixed = assign_ips(
        svc,
        tx,
        &net_id,
        o.get("fixed_ips"),
        &mac,
        &device_owner,
        &[],
    )?;
    let port_sec = o
        .get("port_security_enabled")
        .and_then(Value::as_bool)
        .unwrap_or_else(|| {
            net.get("port_security_enabled")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        });
    let sgs: Vec<String> = match o.get("security_groups") {
        Some(Value::Null) | None => {
            if port_sec && !device_owner.starts_with("network:") && !owner.is_empty() {
                vec![super::secgroups::ensure_default(svc, tx, owner)?]
            } else {
                vec![]
            }
        }
        Some(_) => {
            let l = check::string_list(&o, "security_groups")?;
            let mut u: Vec<String> = Vec::new();
            for g in l {
                if !u.contains(&g) {
                    u.push(g);
                }
            }
            u
        }
    };
    if !sgs.is_empty() && !port_sec {
        return Err(NeutronError::bad(
            "Port security must be enabled and port must have an IP address in order to use security groups.",
        ));
    }
    check_sgs(tx, admin, owner, &sgs)?;
    let pairs = check_pairs(&o, &mac)?;
    if !port_sec && !pairs.as_array().is_none_or(Vec::is_empty) {
        return Err(NeutronError::conflict(
            "AddressPairAndPortSecurityRequired",
            "Port Security must be enabled in order to have allowed address pairs on a port.",
        ));
    }
    let opts = check_dhcp_opts(&o, &[])?;
    let id = new_id();
    o.insert("id".into(), json!(id));
    o.entry("name").or_insert(json!(""));
    o.entry("admin_state_up").or_insert(json!(true));
    o.entry("device_id").or_insert(json!(""));
    o.insert("device_owner".into(), json!(device_owner));
    o.insert("mac_address".into(), json!(mac));
    o.insert("fixed_ips".into(), Value::Array(fixed));
    o.insert("status".into(), json!("DOWN"));
    o.insert("security_groups".into(), json!(sgs));
    o.insert("port_security_enabled".into(), json!(port_sec));
    o.insert("allowed_address_pairs".into(), pairs);
    o.insert("extra_dhcp_opts".into(), opts);
    o.entry("binding:host_id").or_insert(json!(""));
    o.entry("binding:profile").or_insert(json!({}));
    if o.get("binding:profile").is_some_and(Value::is_null) {
        o.insert("binding:profile".into(), json!({}));
    }
    o.entry("binding:vnic_type").or_insert(json!("normal"));
    o.insert("ip_allocation".into(), json!("immediate"));
    binding(&mut o);
    standard(&mut o, owner);
    o.insert("revision_number".into(), json!(1));
    tx.put(Kind::Port, o.clone());
    Ok(o)
}

/// The DHCP port of a network holds an address on every DHCP-enabled subnet.
pub fn ensure_dhcp_port(svc: &NetworkService, tx: &mut Tx, net_id: &str) -> NResult<()> {
    let Some(net) = tx.get(Kind::Network, net_id) else {
        return Ok(());
    };
    let subs: Vec<Arc<Obj>> = super::subnets::net_subnets(&tx.st, net_id)
        .into_iter()
        .filter(|x| b(x, "enable_dhcp"))
        .collect();
    if subs.is_empty() {
        return Ok(());
    }
    let existing = tx
        .st
        .ports_on(net_id)
        .find(|p| s(p, "device_owner") == "network:dhcp")
        .cloned();
    match existing {
        None => {
            let fixed: Vec<Value> = subs
                .iter()
                .map(|x| json!({"subnet_id": s(x, "id")}))
                .collect();
            let mut o = Obj::new();
            o.insert("network_id".into(), json!(net_id));
            o.insert("device_owner".into(), json!("network:dhcp"));
            let host_tag = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, svc.host.as_bytes());
            o.insert(
                "device_id".into(),
                json!(format!("dhcp{host_tag}-{net_id}")),
            );
            o.insert("binding:host_id".into(), json!(svc.host));
            o.insert("fixed_ips".into(), Value::Array(fixed));
            let owner = s(&net, "project_id").to_string();
            create_tx(svc, tx, true, &owner, &owner, o)?;
        }
        Some(p) => {
            let mut po = (*p).clone();
            let mut f = arr(&po, "fixed_ips").to_vec();
            let mut changed = false;
            for x in &subs {
                if f.iter()
                    .any(|e| e["subnet_id"].as_str() == Some(s(x, "id")))
                {
                    continue;
                }
                let c = super::subnets::cidr_of(x);
                let ip = if super::subnets::is_auto_address(x) {
                    c.and_then(|c| ipam::eui64(&c, s(&po, "mac_address")))
                } else {
                    super::subnets::next_ip(tx, x)
                };
                if let (Some(c), Some(ip)) = (c, ip) {
                    f.push(json!({"subnet_id": s(x, "id"), "ip_address": ipam::fmt_ip(c.v, ip)}));
                    changed = true;
                }
            }
            if changed {
                po.insert("fixed_ips".into(), Value::Array(f));
                touch(&mut po);
                tx.put(Kind::Port, po);
            }
        }
    }
    Ok(())
}

async fn create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_port"));
    }
    let req = super::Creation::parse(&body, "port", "ports")?;
    let out = svc
        .store
        .write(|tx| {
            let mut out = Vec::new();
            for mut o in req.items.clone() {
                let owner = owner_of(&c, &mut o)?;
                out.push(view(
                    &c,
                    &create_tx(&svc, tx, c.admin, &c.project, &owner, o)?,
                ));
            }
            Ok(out)
        })
        .await?;
    svc.notify();
    Ok(req.respond(out))
}

/// `fixed_ips=ip_address=X`, `subnet_id=Y`, `ip_address_substr=Z`.
fn fixed_ip_filter(p: &ListParams) -> NResult<Option<Vec<(String, String)>>> {
    let Some(vals) = p.filter_value("fixed_ips") else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for v in vals {
        let (k, x) = v
            .split_once('=')
            .ok_or_else(|| NeutronError::bad(format!("Invalid fixed_ips filter '{v}'")))?;
        if !matches!(k, "ip_address" | "subnet_id" | "ip_address_substr") {
            return Err(NeutronError::bad(format!("Invalid fixed_ips filter '{v}'")));
        }
        out.push((k.to_string(), x.to_string()));
    }
    Ok(Some(out))
}

fn fixed_ip_match(port: &Obj, conds: &[(String, String)]) -> bool {
    let ips: Vec<&String> = conds
        .iter()
        .filter(|c| c.0 == "ip_address")
        .map(|c| &c.1)
        .collect();
    let subs: Vec<&String> = conds
        .iter()
        .filter(|c| c.0 == "subnet_id")
        .map(|c| &c.1)
        .collect();
    let subst: Vec<&String> = conds
        .iter()
        .filter(|c| c.0 == "ip_address_substr")
        .map(|c| &c.1)
        .collect();
    arr(port, "fixed_ips").iter().any(|f| {
        let ip = f["ip_address"].as_str().unwrap_or("");
        let sub = f["subnet_id"].as_str().unwrap_or("");
        (ips.is_empty() || ips.iter().any(|x| *x == ip))
            && (subs.is_empty() || subs.iter().any(|x| *x == sub))
            && (subst.is_empty() || subst.iter().all(|x| ip.contains(x.as_str())))
    })
}

async fn list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    let fip = fixed_ip_filter(&p)?;
    let st = svc.store.read();
    let admin = c.admin;
    let items: Vec<Arc<Obj>> = st
        .iter(Kind::Port)
        .filter(|x| admin || port_visible(&st, &c, x))
        .filter(|x| matches(x, &p, &["fixed_ips"]))
        .filter(|x| fip.as_ref().is_none_or(|f| fixed_ip_match(x, f)))
        .map(|x| {
            if admin && !x.contains_key("nova_preexisting") {
                x.clone()
            } else {
                Arc::new(view(&c, x))
            }
        })
        .collect();
    Ok(ok(render(items, &p, "ports", &coll_url(&svc, "ports"))?))
}

pub fn get_visible(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::Port, id)
        .filter(|x| port_visible(st, c, x))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Port", id))
}

async fn show(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    let st = svc.store.read();
    let x = get_visible(&st, &c, &id)?;
    Ok(ok(
        json!({"port": crate::query::project(&view(&c, &x), &p.fields)}),
    ))
}

const UPDATE: &[&str] = &[
    "name",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_id",
    "device_owner",
    "security_groups",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "port_security_enabled",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
    "description",
];

/// Applies an update to a port in `tx` (also used by Nova's binding).
pub fn update_tx(
    svc: &NetworkService,
    tx: &mut Tx,
    admin: bool,
    caller_project: &str,
    id: &str,
    mut u: Obj,
) -> NResult<Obj> {
    if u.contains_key("network_id") || u.contains_key("tenant_id") || u.contains_key("project_id") {
        return Err(NeutronError::bad(
            "Cannot update read-only attribute network_id",
        ));
    }
    only_known(&u, UPDATE)?;
    check::string(&u, "name", 255)?;
    check::string(&u, "description", 255)?;
    check::boolean(&mut u, "admin_state_up")?;
    check::boolean(&mut u, "port_security_enabled")?;
    let p = tx
        .get(Kind::Port, id)
        .ok_or_else(|| NeutronError::not_found("Port", id))?;
    let net_id = s(&p, "network_id").to_string();
    let net_owner = admin
        || tx
            .st
            .get(Kind::Network, &net_id)
            .is_some_and(|n| s(n, "project_id") == caller_project);
    if !admin {
        for k in ["binding:host_id", "binding:profile"] {
            if u.contains_key(k) {
                return Err(NeutronError::forbidden(&format!("update_port:{k}")));
            }
        }
        if u.contains_key("mac_address") {
            return Err(NeutronError::forbidden("update_port:mac_address"));
        }
        if u.get("device_owner")
            .and_then(Value::as_str)
            .is_some_and(|d| d.starts_with("network:"))
            && !net_owner
        {
            return Err(NeutronError::forbidden("update_port:device_owner"));
        }
    }
    let mut o = (*p).clone();
    let owner = s(&o, "project_id").to_string();
    if let Some(m) = u.get("mac_address") {
        let m = m
            .as_str()
            .filter(|m| valid_mac(m))
            .ok_or_else(|| NeutronError::invalid(format!("'{m}' is not a valid MAC address")))?
            .to_lowercase();
        if m != s(&o, "mac_address") {
            if !s(&o, "binding:host_id").is_empty() && s(&o, "device_owner").starts_with("compute:")
            {
                return Err(NeutronError::conflict(
                    "PortBound",
                    format!(
                        "Unable to complete operation on port {id}, port is already bound, port type: bridge, old_mac {}, new_mac {m}.",
                        s(&o, "mac_address")
                    ),
                ));
            }
            if tx.st.macs.get(&net_id).is_some_and(|x| x.contains(&m)) {
                return Err(NeutronError::conflict(
                    "MacAddressInUse",
                    format!(
                        "Unable to complete operation for network {net_id}. The mac address {m} is in use."
                    ),
                ));
            }
            o.insert("mac_address".into(), json!(m));
        }
    }
    if u.contains_key("fixed_ips") {
        if !net_owner
            && u["fixed_ips"]
                .as_array()
                .is_some_and(|a| a.iter().any(|f| f.get("ip_address").is_some()))
        {
            return Err(NeutronError::forbidden("update_port:fixed_ips:ip_address"));
        }
        let keep = arr(&o, "fixed_ips").to_vec();
        // Release the current addresses first so they can be chosen again.
        let mut stripped = o.clone();
        stripped.insert("fixed_ips".into(), json!([]));
        tx.put(Kind::Port, stripped);
        let new = assign_ips(
            svc,
            tx,
            &net_id,
            u.get("fixed_ips"),
            s(&o, "mac_address"),
            s(&o, "device_owner"),
            &keep,
        )?;
        o.insert("fixed_ips".into(), Value::Array(new));
    }
    let port_sec = u
        .get("port_security_enabled")
        .and_then(Value::as_bool)
        .unwrap_or_else(|| b(&o, "port_security_enabled"));
    if u.contains_key("security_groups") {
        let l = check::string_list(&u, "security_groups")?;
        let mut g: Vec<String> = Vec::new();
        for x in l {
            if !g.contains(&x) {
                g.push(x);
            }
        }
        check_sgs(tx, admin, &owner, &g)?;
        if !g.is_empty() && !port_sec {
            return Err(NeutronError::bad(
                "Port security must be enabled and port must have an IP address in order to use security groups.",
            ));
        }
        o.insert("security_groups".into(), json!(g));
    } else if !port_sec && !arr(&o, "security_groups").is_empty() {
        return Err(NeutronError::conflict(
            "PortSecurityPortHasSecurityGroup",
            "Port has security group associated. Cannot disable port security or ip address until security group is removed",
        ));
    }
    if u.contains_key("allowed_address_pairs") {
        let pairs = check_pairs(&u, s(&o, "mac_address"))?;
        o.insert("allowed_address_pairs".into(), pairs);
    }
    if !port_sec && !arr(&o, "allowed_address_pairs").is_empty() {
        return Err(NeutronError::conflict(
            "AddressPairAndPortSecurityRequired",
            "Port Security must be enabled in order to have allowed address pairs on a port.",
        ));
    }
    if u.contains_key("extra_dhcp_opts") {
        let cur = arr(&o, "extra_dhcp_opts").to_vec();
        o.insert("extra_dhcp_opts".into(), check_dhcp_opts(&u, &cur)?);
    }
    if let Some(vt) = u.get("binding:vnic_type")
        && !vt.as_str().is_some_and(|v| VNIC_TYPES.contains(&v))
    {
        return Err(NeutronError::invalid(format!(
            "Invalid input for binding:vnic_type. Reason: {vt} is not in {VNIC_TYPES:?}"
        )));
    }
    for k in [
        "name",
        "admin_state_up",
        "device_id",
        "device_owner",
        "port_security_enabled",
        "binding:host_id",
        "binding:profile",
        "binding:vnic_type",
        "description",
    ] {
        if let Some(v) = u.get(k) {
            let v = if v.is_null() && k == "binding:profile" {
                json!({})
            } else if v.is_null()
                && (k == "binding:host_id" || k == "device_id" || k == "device_owner")
            {
                json!("")
            } else {
                v.clone()
            };
            o.insert(k.into(), v);
        }
    }
    binding(&mut o);
    touch(&mut o);
    tx.put(Kind::Port, o.clone());
    Ok(o)
}

async fn update(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let u = body_obj(&body, "port")?;
    let out = svc
        .store
        .write(|tx| {
            let p = get_visible(&tx.st, &c, &id)?;
            let net_owner = tx
                .st
                .get(Kind::Network, s(&p, "network_id"))
                .is_some_and(|n| c.owns(n));
            if !c.owns(&p) && !net_owner {
                return Err(NeutronError::forbidden("update_port"));
            }
            check_revision(im.as_deref(), &p)?;
            update_tx(&svc, tx, c.admin, &c.project, &id, u)
        })
        .await?;
    svc.notify();
    Ok(ok(json!({"port": view(&c, &out)})))
}

/// Deletes a port and disassociates floating IPs from it.
pub fn delete_tx(tx: &mut Tx, id: &str, l3_check: bool) -> NResult<()> {
    let p = tx
        .get(Kind::Port, id)
        .ok_or_else(|| NeutronError::not_found("Port", id))?;
    let owner = s(&p, "device_owner");
    if l3_check
        && (matches!(
            owner,
            "network:router_interface"
                | "network:router_gateway"
                | "network:router_interface_distributed"
                | "network:ha_router_replicated_interface"
        ) || (owner == "network:floatingip"
            && tx.st.get(Kind::FloatingIp, s(&p, "device_id")).is_some()))
    {
        return Err(NeutronError::conflict(
            "ServicePortInUse",
            format!(
                "Port {id} cannot be deleted directly via the port API: has device owner {owner}."
            ),
        ));
    }
    let fips: Vec<Arc<Obj>> = tx
        .st
        .iter(Kind::FloatingIp)
        .filter(|f| s(f, "port_id") == id)
        .cloned()
        .collect();
    for f in fips {
        let mut fo = (*f).clone();
        fo.insert("port_id".into(), Value::Null);
        fo.insert("fixed_ip_address".into(), Value::Null);
        fo.insert("router_id".into(), Value::Null);
        fo.insert("port_details".into(), Value::Null);
        touch(&mut fo);
        tx.put(Kind::FloatingIp, fo);
    }
    tx.del(Kind::Port, id);
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
        "delete_port",
        |st| get_visible(st, &c, &id),
        |st, p| {
            c.owns(p)
                || st
                    .get(Kind::Network, s(p, "network_id"))
                    .is_some_and(|n| c.owns(n))
        },
        |tx, _| delete_tx(tx, &id, true),
    )
    .await
}
