//! The `addFixedIp` and `removeFixedIp` server actions (Nova's
//! `multinic`, removed at 2.44): one more fixed address on the server's
//! port on a network, or one fewer, through Networking as Nova's
//! `add_fixed_ip_to_instance`/`remove_fixed_ip_from_instance` do.
use super::netproxy::{enc, neutron, s};
use super::request::Caller;
use super::security_groups::ports_of;
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::http::servers::get_instance;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The action's one object argument with exactly `key` (400 otherwise).
fn only<'a>(arg: &'a Value, action: &str, key: &str) -> NResult<&'a Value> {
    let o = arg.as_object().ok_or_else(|| {
        NovaError::bad(format!("Invalid input for field/attribute {action}. Value: {arg}. {arg} is not of type 'object'"))
    })?;
    if let Some(k) = o.keys().find(|k| *k != key) {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute {action}. Value: {arg}. Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    o.get(key).ok_or_else(|| {
        NovaError::bad(format!(
            "Invalid input for field/attribute {action}. Value: {arg}. '{key}' is a required property"
        ))
    })
}

fn removed(c: &Caller) -> NResult<()> {
    if c.mv.at_least(44) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    Ok(())
}

/// `addFixedIp`: a new address from the network's subnets on the server's
/// first port on that network.
pub async fn add_fixed_ip(
    svc: &ComputeService,
    c: &Caller,
    id: &str,
    arg: &Value,
) -> NResult<Response> {
    removed(c)?;
    let net = match only(arg, "addFixedIp", "networkId")? {
        Value::String(n) if !n.is_empty() && n.len() <= 255 => n.clone(),
        Value::Number(n) => n.to_string(),
        v => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute networkId. Value: {v}. {v} is not of type 'string', 'integer'"
            )));
        }
    };
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:os-multinic:add")?;
    let n = neutron(svc, c);
    let not_found = || NovaError::bad(format!("No network {net} for instance {id}."));
    let subnets = n
        .list(
            &format!("/v2.0/subnets?network_id={}", enc(&net)),
            "subnets",
        )
        .await
        .map_err(|f| f.nova(400))?;
    let ports: Vec<Value> = ports_of(&n, &i.uuid)
        .await?
        .into_iter()
        .filter(|p| s(p, "network_id") == net)
        .collect();
    if subnets.is_empty() || ports.is_empty() {
        return Err(not_found());
    }
    for p in &ports {
        for sub in &subnets {
            let mut fixed = p
                .get("fixed_ips")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            fixed.push(json!({"subnet_id": s(sub, "id")}));
            let body = json!({"port": {"fixed_ips": fixed}});
            if n.call("PUT", &format!("/v2.0/ports/{}", s(p, "id")), Some(body))
                .await
                .is_ok()
            {
                return Ok(StatusCode::ACCEPTED.into_response());
            }
        }
    }
    Err(NovaError::bad(format!(
        "No fixed IP addresses available for network: {net}"
    )))
}

/// `removeFixedIp`: the address leaves the server's port that holds it.
pub async fn remove_fixed_ip(
    svc: &ComputeService,
    c: &Caller,
    id: &str,
    arg: &Value,
) -> NResult<Response> {
    removed(c)?;
    let address = match only(arg, "removeFixedIp", "address")? {
        Value::String(a) if a.parse::<std::net::IpAddr>().is_ok() => a.clone(),
        v => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute address. Value: {v}. {v} is not a 'ip-address'"
            )));
        }
    };
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:os-multinic:remove")?;
    let n = neutron(svc, c);
    for p in ports_of(&n, &i.uuid).await? {
        let fixed: Vec<Value> = p
            .get("fixed_ips")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !fixed.iter().any(|f| s(f, "ip_address") == address) {
            continue;
        }
        let kept: Vec<Value> = fixed
            .into_iter()
            .filter(|f| s(f, "ip_address") != address)
            .collect();
        n.call(
            "PUT",
            &format!("/v2.0/ports/{}", s(&p, "id")),
            Some(json!({"port": {"fixed_ips": kept}})),
        )
        .await
        .map_err(|f| f.nova(400))?;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    Err(NovaError::bad(format!(
        "Instance {id} doesn't have fixed IP '{address}'."
    )))
}
