//! Service providers: `/v2.0/service-providers`.
use super::ok;
use crate::{Caller, NetworkService};
use axum::Router;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new().route("/v2.0/service-providers", get(service_providers))
}

async fn service_providers(_c: Caller) -> Response {
    ok(json!({"service_providers": [
        {"service_type": "L3_ROUTER_NAT", "name": "default", "default": true}
    ]}))
}
