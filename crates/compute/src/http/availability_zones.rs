//! `os-availability-zone`: the zones of the compute hosts (and, for admins, their services).
use super::request::{Caller, St, json_resp};
use crate::ComputeService;
use crate::error::NResult;
use crate::model::ServiceRec;
use crate::ops;
use crate::state::{State, iso_z};
use axum::Router;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-availability-zone", get(az_list))
        .route("/os-availability-zone/detail", get(az_detail))
}

pub(super) fn computes(st: &State) -> Vec<&ServiceRec> {
    st.services
        .values()
        .filter(|s| s.binary == "nova-compute")
        .collect()
}

async fn az_list(AxState(svc): St, _c: Caller) -> NResult<Response> {
    let st = svc.state.read();
    let mut zones: BTreeMap<String, bool> = BTreeMap::new();
    for s in computes(&st) {
        let z = ops::host_az(&svc, &st, &s.host);
        let ok = !s.disabled && ops::service_up(&svc, s);
        let e = zones.entry(z).or_insert(false);
        *e = *e || ok;
    }
    let list: Vec<Value> = zones
        .iter()
        .map(|(z, ok)| json!({"zoneName": z, "zoneState": {"available": ok}, "hosts": Value::Null}))
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        json!({"availabilityZoneInfo": list}),
    ))
}

async fn az_detail(AxState(svc): St, c: Caller) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-availability-zone:detail")?;
    let st = svc.state.read();
    let mut zones: BTreeMap<String, (bool, Map<String, Value>)> = BTreeMap::new();
    for s in st.services.values() {
        let z = if s.binary == "nova-compute" {
            ops::host_az(&svc, &st, &s.host)
        } else {
            "internal".to_string()
        };
        let up = ops::service_up(&svc, s);
        let e = zones.entry(z).or_insert((false, Map::new()));
        e.0 = e.0 || (up && !s.disabled);
        let h = e.1.entry(s.host.clone()).or_insert(json!({}));
        h[&s.binary] = json!({"available": up, "active": !s.disabled, "updated_at": s.updated_at.as_deref().map(iso_z)});
    }
    let list: Vec<Value> = zones
        .into_iter()
        .map(|(z, (ok, hosts))| json!({"zoneName": z, "zoneState": {"available": ok}, "hosts": hosts}))
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        json!({"availabilityZoneInfo": list}),
    ))
}
