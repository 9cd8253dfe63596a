//! Network IP availability: `/v2.0/network-ip-availabilities`.
use super::{St, coll_url, ok};
use crate::error::{NResult, NeutronError};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, arr, s};
use crate::{Caller, NetworkService};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/network-ip-availabilities", get(ipa_list))
        .route("/v2.0/network-ip-availabilities/{id}", get(ipa_show))
}

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
