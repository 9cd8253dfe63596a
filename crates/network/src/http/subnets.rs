//! Subnets and the IPAM that hands out their addresses: pools, gateway,
//! DHCP port, SLAAC (EUI-64) addresses, prefixes from subnet pools.
use super::{Body, IfMatch, St, coll_url, ok};
use crate::error::{NResult, NeutronError};
use crate::ipam::{self, Cidr, Range};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, Tx, arr, b, new_id, s, standard, touch};
use crate::{
    Caller, NetworkService, body_obj, check, check_revision, only_known, owner_of, subnet_visible,
};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/subnets", get(list).post(create))
        .route("/v2.0/subnets/{id}", get(show).put(update).delete(delete))
}

pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "service_types",
    "created_at",
    "updated_at",
    "revision_number",
    "segment_id",
    "router:external",
];

const CREATE: &[&str] = &[
    "name",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "prefixlen",
    "use_default_subnetpool",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "service_types",
    "segment_id",
];

const V6_MODES: [&str; 3] = ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];

/// The subnet with `router:external` of its network (`subnet-external-network`).
pub fn view(st: &NState, o: &Obj) -> Obj {
    let mut v = o.clone();
    let ext = st
        .get(Kind::Network, s(o, "network_id"))
        .is_some_and(|n| b(n, "router:external"));
    v.insert("router:external".into(), json!(ext));
    v
}

pub fn cidr_of(sub: &Obj) -> Option<Cidr> {
    Cidr::parse_loose(s(sub, "cidr")).map(|c| c.masked())
}

/// SLAAC and DHCPv6-stateless subnets address ports by EUI-64.
pub fn is_auto_address(sub: &Obj) -> bool {
    matches!(s(sub, "ipv6_address_mode"), "slaac" | "dhcpv6-stateless")
}

pub fn pools_of(sub: &Obj) -> Vec<Range> {
    arr(sub, "allocation_pools")
        .iter()
        .filter_map(|p| {
            let (_, a) = ipam::parse_ip(p["start"].as_str()?)?;
            let (_, b) = ipam::parse_ip(p["end"].as_str()?)?;
            Some(Range { start: a, end: b })
        })
        .collect()
}

fn pools_json(v: u8, pools: &[Range]) -> Value {
    Value::Array(
        pools
            .iter()
            .map(|r| json!({"start": ipam::fmt_ip(v, r.start), "end": ipam::fmt_ip(v, r.end)}))
            .collect(),
    )
}

/// The next free pool address of `sub` (moves the subnet's hint).
pub fn next_ip(tx: &mut Tx, sub: &Obj) -> Option<u128> {
    let id = s(sub, "id");
    let (used, hint) = match tx.st.ips.get(id) {
        Some(x) => (x.used.clone(), x.hint),
        None => (Default::default(), 0),
    };
    let ip = ipam::next_free(&pools_of(sub), &used, hint)?;
    tx.hint(id, ip.saturating_add(1));
    Some(ip)
}

fn fixed(sub: &Obj, v: u8, ip: u128) -> Value {
    json!({"subnet_id": s(sub, "id"), "ip_address": ipam::fmt_ip(v, ip)})
}

/// The network's subnets in creation order.
pub fn net_subnets(st: &NState, net: &str) -> Vec<Arc<Obj>> {
    let order: Vec<String> = st
        .get(Kind::Network, net)
        .map(|n| {
            arr(n, "subnets")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    order
        .iter()
        .filter_map(|id| st.get(Kind::Subnet, id).cloned())
        .collect()
}

/// Computes a port's fixed IPs: the requested ones (validated, allocated)
/// or Neutron's default (one IPv4 and one stateful IPv6 address from any
/// subnet, plus an EUI-64 address on every SLAAC subnet). `keep` are the
/// port's current addresses, which may be asked for again.
pub fn assign_ips(
    svc: &NetworkService,
    tx: &mut Tx,
    net: &str,
    requested: Option<&Value>,
    mac: &str,
    owner: &str,
    keep: &[Value],
) -> NResult<Vec<Value>> {
    let subs = net_subnets(&tx.st, net);
    let router = owner == "network:router_interface" || owner == "network:router_gateway";
    let mut out: Vec<Value> = Vec::new();
    let kept = |sub: &str, ip: &str| {
        keep.iter()
            .any(|f| f["subnet_id"].as_str() == Some(sub) && f["ip_address"].as_str() == Some(ip))
    };
    let taken = |out: &Vec<Value>, sub: &str, ip: &str| {
        out.iter()
            .any(|f| f["subnet_id"].as_str() == Some(sub) && f["ip_address"].as_str() == Some(ip))
    };
    match requested {
        Some(Value::Array(list)) => {
            if list.len() > svc.cfg.network.max_fixed_ips_per_port {
                return Err(NeutronError::bad(
                    "Exceeded maximum amount of fixed ips per port.",
                ));
            }
            for f in list {
                let f = f.as_object().ok_or_else(|| {
                    NeutronError::invalid(format!("Invalid data format for fixed IP: '{f}'"))
                })?;
                if let Some(k) = f.keys().find(|k| *k != "subnet_id" && *k != "ip_address") {
                    return Err(NeutronError::invalid(format!(
                        "Invalid data format for fixed IP: '{k}'"
                    )));
                }
                let sub_id = match f.get("subnet_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(x)) => Some(x.as_str()),
                    Some(v) => {
                        return Err(NeutronError::invalid(format!("'{v}' is not a valid UUID")));
                    }
                };
                let ip = match f.get("ip_address") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(x)) => Some(ipam::parse_ip(x).ok_or_else(|| {
                        NeutronError::invalid(format!("'{x}' is not a valid IP address"))
                    })?),
                    Some(v) => {
                        return Err(NeutronError::invalid(format!(
                            "'{v}' is not a valid IP address"
                        )));
                    }
                };
                let sub = match sub_id {
                    Some(id) => subs.iter().find(|x| s(x, "id") == id).cloned().ok_or_else(|| {
                        if tx.st.get(Kind::Subnet, id).is_some() {
                            NeutronError::invalid(format!(
                                "Failed to create port on network {net}, because fixed_ips included invalid subnet {id}"
                            ))
                        } else {
                            NeutronError::not_found("Subnet", id)
                        }
                    })?,
                    None => {
                        let (v, n) = ip.ok_or_else(|| NeutronError::invalid("Invalid data format for fixed IP: neither subnet_id nor ip_address given"))?;
                        subs.iter()
                            .find(|x| cidr_of(x).is_some_and(|c| c.contains(v, n)))
                            .cloned()
                            .ok_or_else(|| {
                                NeutronError::invalid(format!(
                                    "IP address {} is not a valid IP for any of the subnets on the specified network.",
                                    ipam::fmt_ip(v, n)
                                ))
                            })?
                    }
                };
                let sid = s(&sub, "id").to_string();
                let Some(c) = cidr_of(&sub) else { continue };
                match ip {
                    Some((v, n)) => {
                        if !c.contains(v, n) {
                            return Err(NeutronError::invalid(format!(
                                "IP address {} is not a valid IP for the specified subnet.",
                                ipam::fmt_ip(v, n)
                            )));
                        }
                        let txt = ipam::fmt_ip(v, n);
                        if is_auto_address(&sub) && !router && !kept(&sid, &txt) {
                            return Err(NeutronError::invalid(format!(
                                "IPv6 address {txt} cannot be directly assigned to a port on subnet {sid} as the subnet is configured for automatic addresses"
                            )));
                        }
                        if (tx.st.ip_used(&sid, n) && !kept(&sid, &txt)) || taken(&out, &sid, &txt)
                        {
                            return Err(NeutronError::conflict(
                                "IpAddressAlreadyAllocated",
                                format!("IP address {txt} already allocated in subnet {sid}"),
                            ));
                        }
                        out.push(fixed(&sub, v, n));
                    }
                    None => {
                        if is_auto_address(&sub) && !router {
                            let n = ipam::eui64(&c, mac)
                                .ok_or_else(|| NeutronError::invalid("invalid MAC address"))?;
                            out.push(fixed(&sub, c.v, n));
                            continue;
                        }
                        // A kept address on this subnet is reused before a new one.
                        if let Some(k) = keep.iter().find(|k| {
                            k["subnet_id"].as_str() == Some(&sid)
                                && !taken(&out, &sid, k["ip_address"].as_str().unwrap_or(""))
                                && !list.iter().any(|r| r["ip_address"] == k["ip_address"])
                        }) {
                            out.push(k.clone());
                            continue;
                        }
                        let n = next_ip(tx, &sub).ok_or_else(|| {
                            NeutronError::conflict(
                                "IpAddressGenerationFailure",
                                format!("No more IP addresses available for subnet {sid}."),
                            )
                        })?;
                        out.push(fixed(&sub, c.v, n));
                    }
                }
            }
        }
        Some(Value::Null) | None => {
            let v4: Vec<&Arc<Obj>> = subs.iter().filter(|x| s(x, "cidr").contains('.')).collect();
            let v6s: Vec<&Arc<Obj>> = subs
                .iter()
                .filter(|x| !s(x, "cidr").contains('.') && !is_auto_address(x))
                .collect();
            for group in [v4, v6s] {
                if group.is_empty() {
                    continue;
                }
                let mut got = false;
                for sub in &group {
                    if let (Some(c), Some(n)) = (cidr_of(sub), next_ip(tx, sub)) {
                        out.push(fixed(sub, c.v, n));
                        got = true;
                        break;
                    }
                }
                if !got {
                    return Err(NeutronError::conflict(
                        "IpAddressGenerationFailure",
                        format!("No more IP addresses available on network {net}."),
                    ));
                }
            }
            if !router {
                for sub in subs.iter().filter(|x| is_auto_address(x)) {
                    if let Some(c) = cidr_of(sub)
                        && let Some(n) = ipam::eui64(&c, mac)
                    {
                        out.push(fixed(sub, c.v, n));
                    }
                }
            }
        }
        Some(v) => {
            return Err(NeutronError::invalid(format!(
                "Invalid data format for fixed IP: '{v}'"
            )));
        }
    }
    Ok(out)
}

fn validate_ip_list(o: &Obj, k: &str, v: u8, max: usize) -> NResult<Vec<String>> {
    let list = check::string_list(o, k)?;
    if list.len() > max {
        return Err(NeutronError::bad(format!(
            "Unable to complete operation for {k}. The number of DNS nameservers exceeds the limit {max}."
        )));
    }
    let mut seen = Vec::new();
    for x in &list {
        match ipam::parse_ip(x) {
            Some((xv, _)) if xv == v || k == "dns_nameservers" => {}
            _ => {
                return Err(NeutronError::invalid(format!(
                    "'{x}' is not a valid nameserver. '{x}' is not a valid IP address"
                )));
            }
        }
        if seen.contains(x) {
            return Err(NeutronError::invalid(format!("Duplicate nameserver '{x}'")));
        }
        seen.push(x.clone());
    }
    Ok(list)
}

fn validate_routes(o: &Obj, v: u8, max: usize) -> NResult<Value> {
    let list = match o.get("host_routes") {
        None | Some(Value::Null) => return Ok(json!([])),
        Some(Value::Array(a)) => a.clone(),
        Some(x) => {
            return Err(NeutronError::invalid(format!(
                "Invalid data format for hostroute: '{x}'"
            )));
        }
    };
    if list.len() > max {
        return Err(NeutronError::bad(format!(
            "Unable to complete operation for subnet. The number of host routes exceeds the limit {max}."
        )));
    }
    let mut out = Vec::new();
    for r in &list {
        let (Some(d), Some(n)) = (r["destination"].as_str(), r["nexthop"].as_str()) else {
            return Err(NeutronError::invalid(format!(
                "Invalid data format for hostroute: '{r}'"
            )));
        };
        let dc = Cidr::parse_loose(d)
            .ok_or_else(|| NeutronError::invalid(format!("'{d}' is not a valid IP subnet")))?;
        let (nv, _) = ipam::parse_ip(n)
            .ok_or_else(|| NeutronError::invalid(format!("'{n}' is not a valid IP address")))?;
        if dc.v != v || nv != v {
            return Err(NeutronError::invalid(format!(
                "Host route {d} via {n} does not match the subnet's IP version"
            )));
        }
        let item = json!({"destination": dc.masked().to_string(), "nexthop": n});
        if out.contains(&item) {
            return Err(NeutronError::invalid(format!("Duplicate hostroute '{d}'")));
        }
        out.push(item);
    }
    Ok(Value::Array(out))
}

/// Parses and checks allocation pools against the cidr and gateway.
fn validate_pools(o: &Obj, c: &Cidr, gw: Option<u128>) -> NResult<Option<Vec<Range>>> {
    let list = match o.get("allocation_pools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(x) => {
            return Err(NeutronError::invalid(format!(
                "Invalid data format for IP pool: '{x}'"
            )));
        }
    };
    let mut pools: Vec<Range> = Vec::new();
    for p in list {
        let (Some(a), Some(bb)) = (p["start"].as_str(), p["end"].as_str()) else {
            return Err(NeutronError::invalid(format!(
                "Invalid data format for IP pool: '{p}'"
            )));
        };
        let (va, na) = ipam::parse_ip(a)
            .ok_or_else(|| NeutronError::invalid(format!("'{a}' is not a valid IP address")))?;
        let (vb, nb) = ipam::parse_ip(bb)
            .ok_or_else(|| NeutronError::invalid(format!("'{bb}' is not a valid IP address")))?;
        if va != c.v || vb != c.v || !c.contains(va, na) || !c.contains(vb, nb) {
            return Err(NeutronError::bad(format!(
                "The allocation pool {a}-{bb} spans beyond the subnet cidr {c}."
            )));
        }
        if na > nb {
            return Err(NeutronError::bad(format!(
                "The allocation pool {a}-{bb} is not valid."
            )));
        }
        let r = Range { start: na, end: nb };
        if pools.iter().any(|q| q.start <= r.end && r.start <= q.end) {
            return Err(NeutronError::bad(format!(
                "Found overlapping allocation pools: {a}-{bb} and another pool for subnet {c}."
            )));
        }
        if let Some(g) = gw
            && g >= na
            && g <= nb
        {
            return Err(NeutronError::conflict(
                "GatewayConflictWithAllocationPools",
                format!(
                    "Gateway ip {} conflicts with allocation pool {a}-{bb}.",
                    ipam::fmt_ip(c.v, g)
                ),
            ));
        }
        pools.push(r);
    }
    pools.sort_by_key(|r| r.start);
    Ok(Some(pools))
}

/// Gateway: absent -> first host address, null -> none, else validated.
fn gateway(o: &Obj, c: &Cidr) -> NResult<Option<u128>> {
    match o.get("gateway_ip") {
        None => Ok(Some(c.first() + 1).filter(|_| c.size() > 2 || c.v == 6)),
        Some(Value::Null) => Ok(None),
        Some(Value::String(g)) => {
            let (v, n) = ipam::parse_ip(g)
                .ok_or_else(|| NeutronError::invalid(format!("'{g}' is not a valid IP address")))?;
            if v != c.v {
                return Err(NeutronError::invalid(
                    "Gateway IP version inconsistent with allocation pool version".to_string(),
                ));
            }
            if c.v == 4 && c.len < 31 && (n == c.first() || n == c.last()) {
                return Err(NeutronError::invalid(format!(
                    "Gateway is not valid on subnet. Gateway IP {g} is the network or broadcast address of {c}"
                )));
            }
            if c.v == 6 && n == c.first() && c.len < 127 {
                return Err(NeutronError::invalid(format!(
                    "Gateway is not valid on subnet. Gateway IP {g} is the subnet-router anycast address"
                )));
            }
            Ok(Some(n))
        }
        Some(x) => Err(NeutronError::invalid(format!(
            "'{x}' is not a valid IP address"
        ))),
    }
}

/// A prefix of `len` bits from the pool that overlaps nothing allocated.
fn prefix_from_pool(st: &NState, pool: &Obj, len: u8) -> NResult<Cidr> {
    let v = pool.get("ip_version").and_then(Value::as_u64).unwrap_or(4) as u8;
    let used: Vec<Cidr> = st
        .iter(Kind::Subnet)
        .filter(|x| s(x, "subnetpool_id") == s(pool, "id"))
        .filter_map(|x| cidr_of(x))
        .collect();
    for p in arr(pool, "prefixes").iter().filter_map(Value::as_str) {
        let Some(pc) = Cidr::parse_loose(p) else {
            continue;
        };
        if pc.len > len {
            continue;
        }
        let step: u128 = 1u128 << (ipam::bits(v) - len);
        let mut cand = pc.first();
        loop {
            let c = Cidr { v, net: cand, len };
            match used.iter().find(|u| u.overlaps(&c)) {
                None => return Ok(c),
                Some(u) => {
                    // Jump past the allocated block.
                    let next = u.last().saturating_add(1);
                    cand = next.div_ceil(step) * step;
                }
            }
            if cand > pc.last() || cand == 0 {
                break;
            }
        }
    }
    Err(NeutronError::conflict(
        "SubnetAllocationError",
        "Failed to allocate subnet: Insufficient prefix space to allocate subnet size".to_string(),
    ))
}

/// Creates one subnet in `tx` (with its DHCP port and SLAAC addresses).
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
    check::boolean(&mut o, "enable_dhcp")?;
    check::boolean(&mut o, "use_default_subnetpool")?;
    check::tags(&mut o)?;
    check::uuid(&o, "network_id")?;
    check::uuid(&o, "subnetpool_id")?;
    let net_id = match o.get("network_id").and_then(Value::as_str) {
        Some(n) => n.to_string(),
        None => {
            return Err(NeutronError::bad(
                "Failed to parse request. Required attribute 'network_id' not specified",
            ));
        }
    };
    let net = tx
        .get(Kind::Network, &net_id)
        .ok_or_else(|| NeutronError::not_found("Network", &net_id))?;
    if !admin && s(&net, "project_id") != owner {
        let visible = crate::net_shared_with(&tx.st, &net, owner) || b(&net, "router:external");
        if !visible {
            return Err(NeutronError::not_found("Network", &net_id));
        }
        return Err(NeutronError::forbidden("create_subnet"));
    }
    let ipv = match o.get("ip_version") {
        Some(v) => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
        {
            Some(4) => 4u8,
            Some(6) => 6u8,
            _ => {
                return Err(NeutronError::invalid(format!(
                    "Invalid input for ip_version. Reason: {v} is not in [4, 6]"
                )));
            }
        },
        None => {
            // Neutron derives it from the cidr when one is given.
            match o
                .get("cidr")
                .and_then(Value::as_str)
                .and_then(Cidr::parse_loose)
            {
                Some(c) => c.v,
                None => {
                    return Err(NeutronError::bad(
                        "Failed to parse request. Required attribute 'ip_version' not specified",
                    ));
                }
            }
        }
    };
    // The pool, if any: explicit, or the default one of this version.
    let mut pool_id = o
        .get("subnetpool_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if pool_id.is_none() && b(&o, "use_default_subnetpool") {
        pool_id = tx
            .st
            .iter(Kind::SubnetPool)
            .find(|p| {
                b(p, "is_default")
                    && p.get("ip_version").and_then(Value::as_u64) == Some(ipv as u64)
            })
            .map(|p| s(p, "id").to_string());
        if pool_id.is_none() {
            return Err(NeutronError::bad(format!(
                "No default subnetpool found for IPv{ipv}"
            )));
        }
    }
    let pool = match &pool_id {
        Some(p) => {
            let pool = tx
                .get(Kind::SubnetPool, p)
                .ok_or_else(|| NeutronError::not_found("Subnet pool", p))?;
            if !admin && s(&pool, "project_id") != owner && !b(&pool, "shared") {
                return Err(NeutronError::not_found("Subnet pool", p));
            }
            if pool.get("ip_version").and_then(Value::as_u64) != Some(ipv as u64) {
                return Err(NeutronError::invalid(
                    "Cannot allocate requested subnet from the available set of prefixes",
                ));
            }
            Some(pool)
        }
        None => None,
    };
    let c = match o.get("cidr") {
        Some(Value::String(x)) => {
            let c = Cidr::parse(x).map_err(NeutronError::invalid)?;
            if let Some(pool) = &pool {
                let inside = arr(pool, "prefixes")
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(Cidr::parse_loose)
                    .any(|p| p.len <= c.len && p.contains(c.v, c.first()));
                if !inside {
                    return Err(NeutronError::bad(format!(
                        "Cannot allocate requested subnet {c} from the available set of prefixes"
                    )));
                }
                let dup = tx
                    .st
                    .iter(Kind::Subnet)
                    .filter(|x| s(x, "subnetpool_id") == s(pool, "id"))
                    .filter_map(|x| cidr_of(x))
                    .any(|u| u.overlaps(&c));
                if dup {
                    return Err(NeutronError::bad(format!(
                        "Cannot allocate requested subnet {c} from the available set of prefixes"
                    )));
                }
            }
            c
        }
        None | Some(Value::Null) => match &pool {
            Some(pool) => {
                let len = match o.get("prefixlen") {
                    Some(v) => v
                        .as_u64()
                        .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
                        .ok_or_else(|| NeutronError::invalid(format!("'{v}' is not an integer")))?
                        as u8,
                    None => pool
                        .get("default_prefixlen")
                        .and_then(Value::as_u64)
                        .unwrap_or(24) as u8,
                };
                let min = pool
                    .get("min_prefixlen")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u8;
                let max = pool
                    .get("max_prefixlen")
                    .and_then(Value::as_u64)
                    .unwrap_or(ipam::bits(ipv) as u64) as u8;
                if len < min || len > max {
                    return Err(NeutronError::bad(format!(
                        "Unable to allocate subnet with prefix length {len}, minimum allowed prefix is {min}, maximum allowed prefix is {max}"
                    )));
                }
                prefix_from_pool(&tx.st, pool, len)?
            }
            None => {
                return Err(NeutronError::bad(
                    "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
                ));
            }
        },
        Some(x) => {
            return Err(NeutronError::invalid(format!(
                "'{x}' is not a valid IP subnet"
            )));
        }
    };
    if c.v != ipv {
        return Err(NeutronError::invalid(format!(
            "Cidr {c} does not match ip_version {ipv}"
        )));
    }
    if c.len == 0 {
        return Err(NeutronError::invalid(format!(
            "{c} is not a valid IP subnet"
        )));
    }
    for other in tx.st.subnets_of(&net_id) {
        if cidr_of(other).is_some_and(|x| x.overlaps(&c)) {
            return Err(NeutronError::invalid(format!(
                "Requested subnet with cidr: {c} for network: {net_id} overlaps with another subnet"
            )));
        }
    }
    // IPv6 modes.
    let ra = o
        .get("ipv6_ra_mode")
        .and_then(Value::as_str)
        .map(str::to_string);
    let am = o
        .get("ipv6_address_mode")
        .and_then(Value::as_str)
        .map(str::to_string);
    for (k, m) in [("ipv6_ra_mode", &ra), ("ipv6_address_mode", &am)] {
        if let Some(m) = m {
            if !V6_MODES.contains(&m.as_str()) {
                return Err(NeutronError::invalid(format!(
                    "Invalid input for {k}. Reason: '{m}' is not in {V6_MODES:?}"
                )));
            }
            if ipv == 4 {
                return Err(NeutronError::invalid(
                    "ipv6_ra_mode or ipv6_address_mode cannot be set when ip_version is 4"
                        .to_string(),
                ));
            }
        }
    }
    if let (Some(r), Some(a)) = (&ra, &am)
        && r != a
    {
        return Err(NeutronError::invalid(format!(
            "ipv6_ra_mode set to '{r}' with ipv6_address_mode set to '{a}' is not valid. If both attributes are set, they must be the same value"
        )));
    }
    // This host's Linux bridge data plane does not serve router
    // advertisements or DHCPv6: a subnet asking for them is refused rather
    // than left without addresses (IPv6 with static addresses is served).
    if (ra.is_some() || am.is_some()) && svc.cfg.host_net_driver() == "linuxbridge" {
        return Err(NeutronError::invalid(
            "ipv6_ra_mode and ipv6_address_mode (SLAAC, DHCPv6) are not served by this cloud's Linux bridge data plane; create the IPv6 subnet without them".to_string(),
        ));
    }
    if matches!(am.as_deref(), Some("slaac" | "dhcpv6-stateless")) && c.len != 64 {
        return Err(NeutronError::invalid(format!(
            "Invalid CIDR {c} for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64"
        )));
    }
    let gw = gateway(&o, &c)?;
    let pools = match validate_pools(&o, &c, gw)? {
        Some(p) => p,
        None => ipam::default_pools(&c, gw),
    };
    let dns = validate_ip_list(
        &o,
        "dns_nameservers",
        ipv,
        svc.cfg.network.max_dns_nameservers,
    )?;
    let routes = validate_routes(&o, ipv, svc.cfg.network.max_subnet_host_routes)?;
    check_pool_affinity(&tx.st, &net_id, ipv, pool_id.as_deref())?;
    svc.check_quota(&tx.st, owner, Kind::Subnet, 1)?;
    let id = new_id();
    let enable_dhcp = o
        .get("enable_dhcp")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    o.remove("prefixlen");
    o.remove("use_default_subnetpool");
    o.insert("id".into(), json!(id));
    o.entry("name").or_insert(json!(""));
    o.insert("ip_version".into(), json!(ipv));
    o.insert("cidr".into(), json!(c.to_string()));
    o.insert("gateway_ip".into(), json!(gw.map(|g| ipam::fmt_ip(ipv, g))));
    o.insert("allocation_pools".into(), pools_json(ipv, &pools));
    o.insert("dns_nameservers".into(), json!(dns));
    o.insert("host_routes".into(), routes);
    o.insert("enable_dhcp".into(), json!(enable_dhcp));
    o.insert("ipv6_ra_mode".into(), json!(ra));
    o.insert("ipv6_address_mode".into(), json!(am));
    o.insert("subnetpool_id".into(), json!(pool_id));
    o.insert(
        "service_types".into(),
        o.get("service_types").cloned().unwrap_or(json!([])),
    );
    o.insert("segment_id".into(), Value::Null);
    standard(&mut o, owner);
    tx.put(Kind::Subnet, o.clone());
    let mut n = (*net).clone();
    let mut subs = arr(&n, "subnets").to_vec();
    subs.push(json!(id));
    n.insert("subnets".into(), Value::Array(subs));
    touch(&mut n);
    tx.put(Kind::Network, n);
    super::address_scopes::refresh_network(tx, &net_id);
    // Existing ports get their automatic address on a SLAAC subnet.
    if is_auto_address(&o) {
        let ports: Vec<Arc<Obj>> = tx.st.ports_on(&net_id).cloned().collect();
        for p in ports {
            if s(&p, "device_owner") == "network:router_interface" {
                continue;
            }
            if let Some(a) = ipam::eui64(&c, s(&p, "mac_address")) {
                let mut po = (*p).clone();
                let mut f = arr(&po, "fixed_ips").to_vec();
                f.push(fixed(&o, ipv, a));
                po.insert("fixed_ips".into(), Value::Array(f));
                tx.put(Kind::Port, po);
            }
        }
    }
    if enable_dhcp {
        super::ports::ensure_dhcp_port(svc, tx, &net_id)?;
    }
    Ok(o)
}

async fn create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_subnet"));
    }
    let req = super::Creation::parse(&body, "subnet", "subnets")?;
    let out = svc
        .store
        .write(|tx| {
            let mut out = Vec::new();
            for mut o in req.items.clone() {
                let owner = owner_of(&c, &mut o)?;
                let x = create_tx(&svc, tx, c.admin, &owner, o)?;
                out.push(view(&tx.st, &x));
            }
            Ok(out)
        })
        .await?;
    svc.notify();
    Ok(req.respond(out))
}

async fn list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::Subnet)
        .filter(|x| subnet_visible(&st, &c, x))
        .map(|x| Arc::new(view(&st, x)))
        .filter(|x| matches(x, &p, &[]))
        .collect();
    Ok(ok(render(
        items,
        &p,
        "subnets",
        &coll_url(&svc, "subnets"),
    )?))
}

pub fn get_visible(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::Subnet, id)
        .filter(|x| subnet_visible(st, c, x))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Subnet", id))
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
        json!({"subnet": crate::query::project(&view(&st, &x), &p.fields)}),
    ))
}

const UPDATE: &[&str] = &[
    "name",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
    "description",
    "service_types",
];
const READ_ONLY: &[&str] = &[
    "cidr",
    "ip_version",
    "network_id",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "prefixlen",
    "tenant_id",
    "project_id",
    "id",
];

async fn update(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let mut u = body_obj(&body, "subnet")?;
    if let Some(k) = u.keys().find(|k| READ_ONLY.contains(&k.as_str())) {
        return Err(NeutronError::bad(format!(
            "Cannot update read-only attribute {k}"
        )));
    }
    only_known(&u, UPDATE)?;
    check::string(&u, "name", 255)?;
    check::string(&u, "description", 255)?;
    check::boolean(&mut u, "enable_dhcp")?;
    let out = svc
        .store
        .write(|tx| {
            let x = get_visible(&tx.st, &c, &id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("update_subnet"));
            }
            check_revision(im.as_deref(), &x)?;
            let mut o = (*x).clone();
            let cidr =
                cidr_of(&o).ok_or_else(|| NeutronError::internal("stored subnet without cidr"))?;
            let v = cidr.v;
            if u.contains_key("gateway_ip") {
                let gw = gateway(&u, &cidr)?;
                let pools = if u.contains_key("allocation_pools") {
                    validate_pools(&u, &cidr, gw)?.unwrap_or_default()
                } else {
                    pools_of(&o)
                };
                if let Some(g) = gw {
                    if pools.iter().any(|r| g >= r.start && g <= r.end) {
                        return Err(NeutronError::conflict(
                            "GatewayConflictWithAllocationPools",
                            format!(
                                "Gateway ip {} conflicts with allocation pool.",
                                ipam::fmt_ip(v, g)
                            ),
                        ));
                    }
                    let txt = ipam::fmt_ip(v, g);
                    let in_use = tx.st.ports_on(s(&o, "network_id")).any(|p| {
                        s(p, "device_owner") != "network:router_interface"
                            && arr(p, "fixed_ips")
                                .iter()
                                .any(|f| f["ip_address"].as_str() == Some(&txt))
                    });
                    if in_use {
                        return Err(NeutronError::conflict(
                            "GatewayIpInUse",
                            format!(
                                "Current gateway ip {txt} already in use by port. Unable to update."
                            ),
                        ));
                    }
                }
                o.insert("gateway_ip".into(), json!(gw.map(|g| ipam::fmt_ip(v, g))));
            }
            if u.contains_key("allocation_pools") {
                let gw = o
                    .get("gateway_ip")
                    .and_then(Value::as_str)
                    .and_then(ipam::parse_ip)
                    .map(|x| x.1);
                let pools = validate_pools(&u, &cidr, gw)?.unwrap_or_default();
                o.insert("allocation_pools".into(), pools_json(v, &pools));
            }
            if u.contains_key("dns_nameservers") {
                let dns = validate_ip_list(
                    &u,
                    "dns_nameservers",
                    v,
                    svc.cfg.network.max_dns_nameservers,
                )?;
                o.insert("dns_nameservers".into(), json!(dns));
            }
            if u.contains_key("host_routes") {
                o.insert(
                    "host_routes".into(),
                    validate_routes(&u, v, svc.cfg.network.max_subnet_host_routes)?,
                );
            }
            for k in ["name", "description", "enable_dhcp", "service_types"] {
                if let Some(val) = u.get(k) {
                    o.insert(k.into(), val.clone());
                }
            }
            touch(&mut o);
            tx.put(Kind::Subnet, o.clone());
            if b(&o, "enable_dhcp") && !b(&x, "enable_dhcp") {
                super::ports::ensure_dhcp_port(&svc, tx, s(&o, "network_id"))?;
            }
            Ok(view(&tx.st, &o))
        })
        .await?;
    svc.notify();
    Ok(ok(json!({"subnet": out})))
}

/// Removes the subnet (409 while ports other than DHCP and SLAAC-only hold addresses).
pub fn delete_tx(tx: &mut Tx, id: &str) -> NResult<()> {
    let x = tx
        .get(Kind::Subnet, id)
        .ok_or_else(|| NeutronError::not_found("Subnet", id))?;
    let net = s(&x, "network_id").to_string();
    let auto = is_auto_address(&x);
    let ports: Vec<Arc<Obj>> = tx
        .st
        .ports_on(&net)
        .filter(|p| {
            arr(p, "fixed_ips")
                .iter()
                .any(|f| f["subnet_id"].as_str() == Some(id))
        })
        .cloned()
        .collect();
    for p in &ports {
        let owner = s(p, "device_owner");
        if owner != "network:dhcp" && (!auto || owner == "network:router_interface") {
            return Err(NeutronError::conflict(
                "SubnetInUse",
                format!(
                    "Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."
                ),
            ));
        }
    }
    for p in ports {
        let mut po = (*p).clone();
        let f: Vec<Value> = arr(&po, "fixed_ips")
            .iter()
            .filter(|f| f["subnet_id"].as_str() != Some(id))
            .cloned()
            .collect();
        if f.is_empty() && s(&po, "device_owner") == "network:dhcp" {
            tx.del(Kind::Port, s(&p, "id"));
        } else {
            po.insert("fixed_ips".into(), Value::Array(f));
            tx.put(Kind::Port, po);
        }
    }
    tx.del(Kind::Subnet, id);
    tx.st.ips.remove(id);
    if let Some(n) = tx.get(Kind::Network, &net) {
        let mut n = (*n).clone();
        let subs: Vec<Value> = arr(&n, "subnets")
            .iter()
            .filter(|v| v.as_str() != Some(id))
            .cloned()
            .collect();
        n.insert("subnets".into(), Value::Array(subs));
        touch(&mut n);
        tx.put(Kind::Network, n);
        super::address_scopes::refresh_network(tx, &net);
    }
    Ok(())
}

/// Neutron's `_validate_network_subnetpools`: the subnets of one IP
/// version on a network are all in one address scope when the network is
/// scoped, and otherwise all from one subnet pool (or none).
fn check_pool_affinity(st: &NState, net: &str, ipv: u8, pool: Option<&str>) -> NResult<()> {
    use super::address_scopes::{network_scope, scope_of_pool};
    if let Some(scope) = network_scope(st, net, ipv as u64) {
        if pool.and_then(|p| scope_of_pool(st, p)).as_deref() != Some(scope.as_str()) {
            return Err(NeutronError::new(
                400,
                "NetworkAddressScopeAffinityError",
                "Subnets of the same address family hosted on the same network must all participate in the same address scope.",
            ));
        }
        return Ok(());
    }
    let mixed = st
        .subnets_of(net)
        .filter(|x| x.get("ip_version").and_then(Value::as_u64) == Some(ipv as u64))
        .any(|x| {
            let theirs = s(x, "subnetpool_id");
            match pool {
                Some(p) => theirs != p,
                None => !theirs.is_empty(),
            }
        });
    if mixed {
        return Err(NeutronError::new(
            400,
            "NetworkSubnetPoolAffinityError",
            "Subnets hosted on the same network must be allocated from the same subnet pool.",
        ));
    }
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
        "delete_subnet",
        |st| get_visible(st, &c, &id),
        |_, o| c.owns(o),
        |tx, _| delete_tx(tx, &id),
    )
    .await
}
