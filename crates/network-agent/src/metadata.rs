//! The metadata agent's part (Neutron's metadata agent and its proxies, in
//! one). It is served on two paths, as Neutron's are:
//! - in `qdhcp-<network>`, for every network whose DHCP port is up on this
//!   host, a socket listening on 169.254.169.254:80 (isolated metadata;
//!   DHCP's host route leads guests there);
//! - in `qrouter-<router>`, for every router up here, a socket on port
//!   9697 to which the router redirects what its internal networks send to
//!   169.254.169.254:80 (the L3 agent's metadata proxy): a guest that
//!   ignores DHCP's routes, or has a static address, reaches it through its
//!   default gateway. The interface address the request arrived at names
//!   its network.
//!
//! The host driver (which may enter namespaces) makes the sockets. A
//! request is answered for the instance whose port on that network has the
//! request's source address, found in the host's desired state; a guest
//! cannot claim to be another, and an address no port of this network
//! holds gets 404.
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
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

/// Where a socket of the metadata service listens.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// In a network's DHCP namespace.
    Network(String),
    /// In a router's namespace, for its internal networks.
    Router(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Network(n) => write!(f, "network {n}"),
            Scope::Router(r) => write!(f, "router {r}"),
        }
    }
}

type Index = Arc<RwLock<HashMap<(String, IpAddr), String>>>;

/// The sockets served, and who holds which address.
#[derive(Default)]
pub struct MetadataServer {
    source: std::sync::OnceLock<Arc<dyn MetadataSource>>,
    /// (network, fixed address) -> instance.
    index: Index,
    /// (router, its interface address) -> the interface's network.
    interfaces: Index,
    served: std::sync::Mutex<HashMap<Scope, tokio::task::AbortHandle>>,
}

#[derive(Clone)]
struct Ctx {
    scope: Scope,
    index: Index,
    interfaces: Index,
    source: Arc<dyn MetadataSource>,
}

/// A connection's two ends (the local one names a router's interface).
#[derive(Clone, Copy, Debug)]
struct Ends {
    peer: SocketAddr,
    local: Option<SocketAddr>,
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Ends {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Ends {
            peer: *stream.remote_addr(),
            local: stream.io().local_addr().ok(),
        }
    }
}

impl MetadataServer {
    pub fn set_source(&self, s: Arc<dyn MetadataSource>) {
        let _ = self.source.set(s);
    }

    pub fn source(&self) -> Option<Arc<dyn MetadataSource>> {
        self.source.get().cloned()
    }

    /// What is served now.
    pub fn scopes(&self) -> BTreeSet<Scope> {
        self.served
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Follows a convergence: indexes the guests' addresses of `state` and
    /// the routers' interfaces, stops serving networks whose DHCP port and
    /// routers whose interfaces are no longer up, and returns what must be
    /// served and is not yet.
    pub fn update(&self, state: &HostState, up: &[String]) -> Vec<Scope> {
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
        let mut interfaces = HashMap::new();
        for r in state.routers.values().filter(|r| r.admin_up) {
            for (net, addr) in &r.interfaces {
                if let Ok(a) = addr.split('/').next().unwrap_or_default().parse::<IpAddr>() {
                    interfaces.insert((r.id.clone(), a), net.clone());
                }
            }
        }
        if let Ok(mut i) = self.interfaces.write() {
            *i = interfaces;
        }
        let mut want: BTreeSet<Scope> = BTreeSet::new();
        for p in state.ports.values().filter(|p| up.contains(&p.id)) {
            if ferro_netdriver::is_dhcp_port(p) {
                want.insert(Scope::Network(p.network_id.clone()));
            } else if p.device_owner == "network:router_interface"
                && state.routers.get(&p.device_id).is_some_and(|r| r.admin_up)
            {
                want.insert(Scope::Router(p.device_id.clone()));
            }
        }
        let Ok(mut served) = self.served.lock() else {
            return Vec::new();
        };
        served.retain(|scope, task| {
            let keep = want.contains(scope) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        if self.source.get().is_none() {
            return Vec::new();
        }
        want.into_iter()
            .filter(|s| !served.contains_key(s))
            .collect()
    }

    /// Serves `listener` (bound in `scope`'s namespace).
    pub fn serve(&self, scope: &Scope, listener: std::net::TcpListener) -> Result<(), String> {
        let Some(source) = self.source.get().cloned() else {
            return Err("no metadata source".into());
        };
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let ctx = Ctx {
            scope: scope.clone(),
            index: self.index.clone(),
            interfaces: self.interfaces.clone(),
            source,
        };
        let app = Router::new().fallback(answer).with_state(ctx);
        let s = scope.clone();
        let task = tokio::spawn(async move {
            let svc = app.into_make_service_with_connect_info::<Ends>();
            if let Err(e) = axum::serve(listener, svc).await {
                tracing::warn!("metadata service of {s}: {e}");
            }
        });
        if let Ok(mut served) = self.served.lock()
            && let Some(old) = served.insert(scope.clone(), task.abort_handle())
        {
            old.abort();
        }
        tracing::info!("metadata service of {scope} listening");
        Ok(())
    }
}

async fn answer(
    State(ctx): State<Ctx>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let peer = ends.peer;
    let network = match &ctx.scope {
        Scope::Network(n) => Some(n.clone()),
        Scope::Router(r) => ends.local.and_then(|l| {
            ctx.interfaces
                .read()
                .ok()
                .and_then(|i| i.get(&(r.clone(), l.ip())).cloned())
        }),
    };
    let instance = network.as_ref().and_then(|n| {
        ctx.index
            .read()
            .ok()
            .and_then(|i| i.get(&(n.clone(), peer.ip())).cloned())
    });
    let Some(instance) = instance else {
        tracing::debug!(scope = %ctx.scope, %peer, "metadata request from an unknown address");
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
