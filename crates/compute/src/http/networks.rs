//! `os-networks` and `os-tenant-networks` (removed at 2.36): Networking v2.0 networks in Nova's shapes.
use super::netproxy::{enc, neutron, removed_at_36, s};
use super::removed::gone;
use super::request::{Caller, St, json_resp};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-networks", get(net_list).post(gone))
        .route("/os-networks/{id}", get(net_show).delete(gone))
        .route("/os-tenant-networks", get(tenant_net_list).post(gone))
        .route(
            "/os-tenant-networks/{id}",
            get(tenant_net_show).delete(gone),
        )
}

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
