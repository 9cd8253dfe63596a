//! The metadata agent's part (Neutron's metadata agent and its proxy in
//! the DHCP namespace, in one): for every network whose DHCP port is up on
//! this host, a socket listening on 169.254.169.254:80 inside
//! `qdhcp-<network>` (made by the host driver, which may enter namespaces)
//! is served here. A request is answered for the instance whose port on
//! that network has the request's source address, found in the host's
//! desired state; a guest cannot claim to be another, and an address no
//! port of this network holds gets 404.
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ferro_netdriver::HostState;
use ferro_rpc::metadata::MetadataReply;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

/// Where the answers come from: Compute's metadata API (Nova's).
#[async_trait::async_trait]
pub trait MetadataSource: Send + Sync {
    /// Answers `method path` (with `body`) for the guest of `instance`.
    async fn fetch(&self, instance: &str, method: &str, path: &str, body: Vec<u8>)
    -> MetadataReply;
}

/// The sockets served, per network, and who holds which address.
#[derive(Default)]
pub struct MetadataServer {
    source: std::sync::OnceLock<Arc<dyn MetadataSource>>,
    /// (network, fixed address) -> instance.
    index: Arc<RwLock<HashMap<(String, IpAddr), String>>>,
    served: std::sync::Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

#[derive(Clone)]
struct Ctx {
    network: String,
    index: Arc<RwLock<HashMap<(String, IpAddr), String>>>,
    source: Arc<dyn MetadataSource>,
}

impl MetadataServer {
    pub fn set_source(&self, s: Arc<dyn MetadataSource>) {
        let _ = self.source.set(s);
    }

    pub fn source(&self) -> Option<Arc<dyn MetadataSource>> {
        self.source.get().cloned()
    }

    /// The networks served now.
    pub fn networks(&self) -> BTreeSet<String> {
        self.served
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Follows a convergence: indexes the guests' addresses of `state`,
    /// stops serving networks whose DHCP port is no longer up, and returns
    /// those that must be served and are not yet.
    pub fn update(&self, state: &HostState, up: &[String]) -> Vec<String> {
        let mut index = HashMap::new();
        for p in state.ports.values() {
            if !ferro_netdriver::is_guest_port(p) || p.device_id.is_empty() {
                continue;
            }
            for ip in &p.ips {
                if let Ok(a) = ip.parse::<IpAddr>() {
                    index.insert((p.network_id.clone(), a), p.device_id.clone());
                }
            }
        }
        if let Ok(mut i) = self.index.write() {
            *i = index;
        }
        let want: BTreeSet<String> = state
            .ports
            .values()
            .filter(|p| ferro_netdriver::is_dhcp_port(p) && up.contains(&p.id))
            .map(|p| p.network_id.clone())
            .collect();
        let Ok(mut served) = self.served.lock() else {
            return Vec::new();
        };
        served.retain(|net, task| {
            let keep = want.contains(net) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        if self.source.get().is_none() {
            return Vec::new();
        }
        want.into_iter()
            .filter(|n| !served.contains_key(n))
            .collect()
    }

    /// Serves `listener` (bound in `network`'s namespace).
    pub fn serve(&self, network: &str, listener: std::net::TcpListener) -> Result<(), String> {
        let Some(source) = self.source.get().cloned() else {
            return Err("no metadata source".into());
        };
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let ctx = Ctx {
            network: network.to_string(),
            index: self.index.clone(),
            source,
        };
        let app = Router::new().fallback(answer).with_state(ctx);
        let net = network.to_string();
        let task = tokio::spawn(async move {
            let svc = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, svc).await {
                tracing::warn!(network = %net, "metadata service: {e}");
            }
        });
        if let Ok(mut s) = self.served.lock()
            && let Some(old) = s.insert(network.to_string(), task.abort_handle())
        {
            old.abort();
        }
        tracing::info!(network, "metadata service listening at 169.254.169.254:80");
        Ok(())
    }
}

async fn answer(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let instance = ctx
        .index
        .read()
        .ok()
        .and_then(|i| i.get(&(ctx.network.clone(), peer.ip())).cloned());
    let Some(instance) = instance else {
        tracing::debug!(network = %ctx.network, %peer, "metadata request from an unknown address");
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let r = ctx
        .source
        .fetch(&instance, method.as_str(), uri.path(), body.to_vec())
        .await;
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, r.content_type)], r.body).into_response()
}

/// The answers from the controllers over the bus, for a network agent on a
/// host without the controller (`serve --roles network`): Neutron's
/// metadata agent proxying to Nova's metadata API.
pub struct BusMetadataSource {
    pub bus: Arc<dyn ferro_bus::Bus>,
    pub timeout: std::time::Duration,
}

#[async_trait::async_trait]
impl MetadataSource for BusMetadataSource {
    async fn fetch(
        &self,
        instance: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> MetadataReply {
        let req = ferro_rpc::metadata::MetadataRequest {
            instance: instance.to_string(),
            http_method: method.to_string(),
            path: path.to_string(),
            body,
        };
        match ferro_rpc::metadata::ask(self.bus.as_ref(), &req, self.timeout).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(instance, path, "metadata from the controller: {e}");
                MetadataReply {
                    status: 500,
                    content_type: "text/plain".into(),
                    body: b"An unknown error has occurred. Please try your request again.\n"
                        .to_vec(),
                }
            }
        }
    }
}
