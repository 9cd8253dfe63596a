//! APIs Nova removed and now answers with 410 Gone at every microversion
//! (nova-network, cells v1, cloudpipe, the XVP console, agent builds,
//! certificates, fping, DNS and bulk floating IPs, virtual interfaces).
//! Nova keeps them in its API reference, and clients get the same answer
//! here as there.
use crate::ComputeService;
use crate::error::NovaError;
use axum::Router;
use axum::routing::{get, post, put};
use std::sync::Arc;

/// webob's `HTTPGone`, as Nova's fault wrapper renders it.
pub(super) async fn gone() -> NovaError {
    NovaError::new(
        410,
        "This resource is no longer available.  No forwarding address is given.",
    )
}

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-agents", get(gone).post(gone))
        .route("/os-agents/{id}", put(gone).delete(gone))
        .route("/os-cells", get(gone).post(gone))
        .route("/os-cells/detail", get(gone))
        .route("/os-cells/info", get(gone))
        .route("/os-cells/capacities", get(gone))
        .route("/os-cells/{id}", get(gone).put(gone).delete(gone))
        .route("/os-cells/{id}/capacities", get(gone))
        .route("/os-certificates", post(gone))
        .route("/os-certificates/{id}", get(gone))
        .route("/os-cloudpipe", get(gone).post(gone))
        .route("/os-cloudpipe/configure-project", put(gone))
        .route("/servers/{id}/consoles", get(gone).post(gone))
        .route("/servers/{id}/consoles/{console}", get(gone).delete(gone))
        .route("/os-fixed-ips/{ip}", get(gone))
        .route("/os-fixed-ips/{ip}/action", post(gone))
        .route("/os-floating-ip-dns", get(gone))
        .route("/os-floating-ip-dns/{domain}", put(gone).delete(gone))
        .route(
            "/os-floating-ip-dns/{domain}/entries/{name}",
            get(gone).put(gone).delete(gone),
        )
        .route("/os-floating-ips-bulk", get(gone).post(gone))
        .route("/os-floating-ips-bulk/delete", put(gone))
        .route("/os-floating-ips-bulk/{host}", get(gone))
        .route("/os-fping", get(gone))
        .route("/os-fping/{id}", get(gone))
        .route("/os-networks/add", post(gone))
        .route("/os-networks/{id}/action", post(gone))
        .route("/os-security-group-default-rules", get(gone).post(gone))
        .route(
            "/os-security-group-default-rules/{id}",
            get(gone).delete(gone),
        )
        .route("/servers/{id}/os-virtual-interfaces", get(gone))
}
