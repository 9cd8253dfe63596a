//! `os-floating-ips` and `os-floating-ip-pools` (removed at 2.36) and the `addFloatingIp`/`removeFloatingIp` actions (removed at 2.44): Networking v2.0 floating IPs in Nova's shapes.
use super::netproxy::{Neutron, enc, gone_collection, is_uuid, neutron, removed_at_36, s};
use super::request::{Caller, St, body, json_resp};
use super::security_groups::ports_of;
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::http::servers::get_instance;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route(
            "/os-floating-ips",
            get(fip_list).post(fip_create).delete(gone_collection),
        )
        .route("/os-floating-ips/{id}", get(fip_show).delete(fip_delete))
        .route("/os-floating-ip-pools", get(fip_pools))
}

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
