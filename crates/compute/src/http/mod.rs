//! Compute v2.1 routes under `/compute`, microversion negotiation, and the
//! authenticated caller.
pub mod actions;
pub mod aggregates;
pub mod audit_log;
pub mod availability_zones;
pub mod extensions;
pub mod external_events;
pub mod flavors;
pub mod floating_ips;
pub mod hosts;
pub mod hypervisors;
pub mod images;
pub mod interfaces;
pub mod keypairs;
pub mod migrations;
pub mod multinic;
pub mod netproxy;
pub mod networks;
pub mod quotas;
pub mod removed;
pub mod request;
pub mod security_groups;
pub mod server_create;
pub mod server_groups;
pub mod server_info;
pub mod server_list;
pub mod server_metadata;
pub mod server_shares;
pub mod servers;
pub mod services;
pub mod usage;
pub mod volproxy;
pub mod volume_attachments;

use crate::ComputeService;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use request::json_resp;
pub use request::{Caller, MAX_VERSION, MIN_VERSION, Mv, St, microversion};
use serde_json::{Value, json};
use std::sync::Arc;

fn version_entry(base: &str) -> Value {
    json!({
        "id": "v2.1", "status": "CURRENT",
        "version": format!("{}.{}", MAX_VERSION.0, MAX_VERSION.1),
        "min_version": format!("{}.{}", MIN_VERSION.0, MIN_VERSION.1),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2.1/")}],
    })
}

fn version_v20(base: &str) -> Value {
    json!({
        "id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2/")}],
    })
}

/// `GET /compute`: the version list.
pub async fn versions(State(svc): St) -> Response {
    json_resp(
        StatusCode::OK,
        json!({"versions": [version_v20(&svc.base_url), version_entry(&svc.base_url)]}),
    )
}

async fn version_show(
    State(svc): St,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> Response {
    let legacy = uri.path().trim_end_matches('/').ends_with("/v2");
    let (mut v, path) = if legacy {
        (version_v20(&svc.base_url), "v2")
    } else {
        (version_entry(&svc.base_url), "v2.1")
    };
    v["links"] = json!([
        {"rel": "self", "href": format!("{}/{path}/", svc.base_url)},
        {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
    ]);
    v["media-types"] = json!([{"base": "application/json",
        "type": format!("application/vnd.openstack.compute+json;version={}", if legacy { "2" } else { "2.1" })}]);
    json_resp(StatusCode::OK, json!({"version": v}))
}

/// Routes relative to `/compute`.
pub fn router() -> Router<Arc<ComputeService>> {
    let api = Router::new()
        .route("/", get(version_show))
        // One path, two modules: listing with the servers, creation apart.
        .route(
            "/servers",
            get(server_list::list).post(server_create::create),
        )
        .route("/servers/detail", get(server_list::detail))
        .merge(servers::routes())
        .merge(server_metadata::routes())
        .merge(server_info::routes())
        .merge(server_shares::routes())
        .merge(removed::routes())
        .merge(actions::routes())
        .merge(flavors::routes())
        .merge(security_groups::routes())
        .merge(floating_ips::routes())
        .merge(interfaces::routes())
        .merge(networks::routes())
        .merge(volume_attachments::routes())
        .merge(volproxy::routes())
        .merge(volume_attachments::assisted_routes())
        .merge(images::routes())
        .merge(keypairs::routes())
        .merge(quotas::routes())
        .merge(availability_zones::routes())
        .merge(hypervisors::routes())
        .merge(services::routes())
        .merge(hosts::routes())
        .merge(aggregates::routes())
        .merge(server_groups::routes())
        .merge(usage::routes())
        .merge(migrations::routes())
        .merge(extensions::routes())
        .merge(audit_log::routes())
        .merge(external_events::routes());
    Router::new()
        .route("/", get(versions))
        .nest("/v2.1", api.clone())
        .nest("/v2", api)
        .layer(axum::middleware::from_fn(microversion))
}
