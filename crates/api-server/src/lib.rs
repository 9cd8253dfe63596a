//! Composes every service's router under its DevStack-style prefix on one
//! listener, with the middleware every response shares: `x-openstack-request-id`,
//! a structured access log, panic safety and body limits. Also the start-up
//! sequence (`App::start`) shared by `ferrostack serve` and the TestCloud.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferro_common::Error;
use ferro_config::Config;
use ferro_db::Db;
use ferro_identity::IdentityService;
use ferro_identity::bootstrap::{BootstrapReport, CatalogEntry};
use ferro_identity::error::KsError;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// Every service this binary serves, as the catalog advertises it.
pub const CATALOG: &[CatalogEntry] = &[
    ("identity", "keystone", "/identity"),
    ("image", "glance", "/image"),
    ("placement", "placement", "/placement"),
    ("compute", "nova", "/compute/v2.1"),
    ("network", "neutron", "/networking"),
    ("block-storage", "cinder", "/volume/v3"),
    ("volumev3", "cinderv3", "/volume/v3"),
];

pub mod recorder;
pub mod wiring;

/// Which parts of ferrostack this process runs (`serve --roles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// APIs, database, conductor and scheduler.
    pub controller: bool,
    /// This host's compute agents (its guests).
    pub compute: bool,
    /// This host's network agent (bridges, DHCP, metadata, security
    /// groups) when its data plane is real.
    pub network: bool,
    /// This host's volume agent (the volume backend).
    pub volume: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        controller: true,
        compute: true,
        network: true,
        volume: true,
    };
    /// Parses `controller,compute,network,volume` (also `all`, `api`).
    pub fn parse(s: &str) -> Result<Roles, String> {
        let mut r = Roles {
            controller: false,
            compute: false,
            network: false,
            volume: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => r = Roles::ALL,
                "controller" | "api" => r.controller = true,
                "compute" => r.compute = true,
                "network" => r.network = true,
                "volume" => r.volume = true,
                other => {
                    return Err(format!(
                        "unknown role {other} (controller, compute, network, volume, all)"
                    ));
                }
            }
        }
        if !r.controller && !r.compute && !r.network && !r.volume {
            return Err("no role given".into());
        }
        Ok(r)
    }
}

pub struct App {
    pub cfg: Config,
    pub identity: Arc<IdentityService>,
    pub image: Arc<ferro_image::ImageService>,
    pub placement: Arc<ferro_placement::PlacementService>,
    pub compute: Arc<ferro_compute::ComputeService>,
    pub network: Arc<ferro_network::NetworkService>,
    pub volume: Arc<ferro_volume::VolumeService>,
    pub bus: Arc<dyn ferro_bus::Bus>,
    pub agents: Vec<Arc<ferro_compute_agent::ComputeAgent>>,
    pub volume_agent: Option<Arc<ferro_volume_agent::VolumeAgent>>,
    pub report: BootstrapReport,
    pub admin_password: String,
}

impl App {
    /// Data dir, database + migrations, keys, identity bootstrap, client files.
    pub async fn start(cfg: Config) -> Result<App, Error> {
        Self::start_roles(cfg, Roles::ALL).await
    }

    /// Starts the controller; with `roles.compute` and `roles.network`,
    /// this host's agents too.
    pub async fn start_roles(cfg: Config, roles: Roles) -> Result<App, Error> {
        let data = cfg.data_dir();
        std::fs::create_dir_all(&data)
            .map_err(|e| Error::internal(format!("{}: {e}", data.display())))?;
        let db = Db::connect(&cfg.database_url(), cfg.database.max_connections).await?;
        db.upgrade().await?;
        let mut policy = ferro_identity::policy_defaults::policy().map_err(Error::internal)?;
        if let Some(f) = &cfg.policy.file {
            policy.load_overrides(f).map_err(Error::internal)?;
        }
        let identity = IdentityService::new(db, cfg.clone(), policy).await?;
        let (password, explicit) = ferro_identity::bootstrap::admin_password(
            &data,
            cfg.identity.admin_password.as_deref(),
        )?;
        identity.bootstrap(&password, explicit, CATALOG).await?;
        let report = identity.write_client_files(&data, &password)?;
        let stores = ferro_image::ImageService::backends_from_config(&cfg)?;
        let validator: Arc<dyn ferro_auth::TokenValidator> = identity.clone();
        let image =
            ferro_image::ImageService::new(identity.db.clone(), cfg.clone(), stores, validator)?;
        ferro_image::import::recover(image.clone()).await?;
        let placement = ferro_placement::PlacementService::new(
            identity.db.clone(),
            cfg.clone(),
            identity.clone(),
        )
        .await?;
        let admin_project = identity.project_by_name("default", "admin").await?.id;
        let bus = wiring::bus(&cfg).await?;
        let network = ferro_network::NetworkService::start(
            identity.db.clone(),
            cfg.clone(),
            identity.clone(),
            &admin_project,
            wiring::host_net(&cfg, bus.clone())?,
        )
        .await?;
        // The volume agent serves before Block Storage starts, which may
        // resume interrupted workflows on it.
        let volume_agent = if roles.volume {
            Some(wiring::start_volume_agent(&cfg, bus.clone()).await?)
        } else {
            None
        };
        let volume = ferro_volume::VolumeService::start(
            identity.db.clone(),
            cfg.clone(),
            identity.clone(),
            wiring::volume_backend(&cfg, bus.clone()),
            Arc::new(wiring::InProcImages {
                router: ferro_image::http::router().with_state(image.clone()),
            }),
        )
        .await?;
        let images = Arc::new(wiring::InProcImages {
            router: ferro_image::http::router().with_state(image.clone()),
        });
        let compute = ferro_compute::ComputeService::start(
            identity.db.clone(),
            cfg.clone(),
            identity.clone(),
            Arc::new(wiring::InProcPlacement {
                svc: placement.clone(),
            }),
            ferro_compute::Peers {
                image: images,
                network: Arc::new(wiring::InProcNetwork {
                    svc: network.clone(),
                    router: ferro_network::http::router().with_state(network.clone()),
                }),
                volumes: Arc::new(wiring::InProcVolumes {
                    svc: volume.clone(),
                    router: ferro_volume::http::router(volume.clone()),
                }),
            },
            bus.clone(),
        )
        .await?;
        volume.set_compute(Arc::new(wiring::InProcCompute {
            svc: compute.clone(),
        }));
        network.set_compute(Arc::new(wiring::InProcCompute {
            svc: compute.clone(),
        }));
        // Hosts' network agents report to Networking, tell it when guests'
        // taps come and go, and ask Compute what their guests' metadata
        // says; this host's agent starts once that is heard (its first
        // report is what makes it a host that Networking converges).
        if cfg.host_net_driver() == "linuxbridge" {
            ferro_network::agent::listen(network.clone(), bus.clone()).await?;
            ferro_compute::metadata::listen(compute.clone(), bus.clone()).await?;
        }
        let network_agent = if roles.network {
            wiring::start_network_agent(&cfg, bus.clone()).await?
        } else {
            None
        };
        // The host's metadata service answers from Compute.
        if let Some(agent) = &network_agent {
            agent.metadata.set_source(Arc::new(wiring::InProcCompute {
                svc: compute.clone(),
            }));
        }
        // Block Storage finishes its interrupted workflows once Compute can
        // hear about them (an in-use extend notifies it).
        volume.recover().await?;
        let agents = if roles.compute {
            wiring::start_agents(&cfg, bus.clone()).await?
        } else {
            Vec::new()
        };
        // Unfinished builds resume once agents have had a moment to report in.
        let c2 = compute.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if let Err(e) = c2.recover().await {
                tracing::error!("compute recovery: {}", e.log_message());
            }
        });
        Ok(App {
            cfg,
            identity,
            image,
            placement,
            compute,
            network,
            volume,
            bus,
            agents,
            volume_agent,
            report,
            admin_password: password,
        })
    }

    pub fn router(&self) -> Router {
        let router = router(
            self.identity.clone(),
            self.image.clone(),
            self.placement.clone(),
            self.compute.clone(),
            self.network.clone(),
            self.volume.clone(),
            self.cfg.api.max_request_body_size,
        );
        match self
            .cfg
            .api
            .record_responses
            .as_ref()
            .map(recorder::Recorder::open)
        {
            Some(Ok(rec)) => {
                tracing::warn!(
                    "recording the key shape of every JSON response (api.record_responses)"
                );
                router.layer(axum::middleware::from_fn_with_state(rec, recorder::record))
            }
            Some(Err(e)) => {
                tracing::error!("api.record_responses: {e}; not recording");
                router
            }
            None => router,
        }
    }
}

fn versions_doc(base: &str) -> serde_json::Value {
    json!({"versions": {"values": [ferro_identity::http::auth::version_doc(base)]}})
}

/// Glance's version list (what its version-negotiation middleware answers).
fn image_versions(base: &str) -> serde_json::Value {
    let href = format!("{base}/v2/");
    let v = |id: &str, status: &str| json!({"id": id, "status": status, "links": [{"rel": "self", "href": href}]});
    json!({"versions": [
        v("v2.9", "SUPPORTED"), v("v2.7", "SUPPORTED"), v("v2.6", "SUPPORTED"), v("v2.5", "SUPPORTED"),
        v("v2.4", "SUPPORTED"), v("v2.3", "SUPPORTED"), v("v2.2", "SUPPORTED"), v("v2.1", "SUPPORTED"),
        v("v2.0", "SUPPORTED"), v("v2.15", "CURRENT"),
    ]})
}

pub fn router(
    identity: Arc<IdentityService>,
    image: Arc<ferro_image::ImageService>,
    placement: Arc<ferro_placement::PlacementService>,
    compute: Arc<ferro_compute::ComputeService>,
    network: Arc<ferro_network::NetworkService>,
    volume: Arc<ferro_volume::VolumeService>,
    body_limit: usize,
) -> Router {
    let base = identity.base_url.clone();
    let base2 = base.clone();
    let discovery = move || {
        let b = base.clone();
        async move { (StatusCode::MULTIPLE_CHOICES, axum::Json(versions_doc(&b))) }
    };
    let discovery2 = move || {
        let b = base2.clone();
        async move { (StatusCode::MULTIPLE_CHOICES, axum::Json(versions_doc(&b))) }
    };
    let identity_router = ferro_identity::http::router().with_state(identity);
    let image_base = image.base_url.clone();
    let image_base2 = image_base.clone();
    let image_discovery = move || {
        let b = image_base.clone();
        async move { (StatusCode::MULTIPLE_CHOICES, axum::Json(image_versions(&b))) }
    };
    let image_versions_ok = move || {
        let b = image_base2.clone();
        async move { axum::Json(image_versions(&b)) }
    };
    // Uploads stream without a body limit; every other image call keeps it.
    let image_router = ferro_image::http::router().with_state(image);
    let volume_versions = {
        let v = volume.clone();
        move || {
            let v = v.clone();
            async move { ferro_volume::http::versions_response(&v) }
        }
    };
    let routed = Router::new()
        .nest(
            "/compute",
            ferro_compute::http::router().with_state(compute),
        )
        .nest(
            "/networking",
            ferro_network::http::router().with_state(network),
        )
        .route("/volume", axum::routing::get(volume_versions.clone()))
        .route("/volume/", axum::routing::get(volume_versions))
        .nest("/volume", ferro_volume::http::router(volume))
        .nest(
            "/placement",
            ferro_placement::http::router().with_state(placement),
        )
        .route("/image", axum::routing::get(image_discovery.clone()))
        .route("/image/", axum::routing::get(image_discovery))
        .route("/image/versions", axum::routing::get(image_versions_ok))
        .nest("/image", image_router)
        .route("/", axum::routing::get(discovery))
        .route("/identity", axum::routing::get(discovery2.clone()))
        .route("/identity/", axum::routing::get(discovery2))
        .nest("/identity", identity_router)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit));
    // Path normalisation must see the request before routing does: it
    // wraps the routed app as a fallback service.
    Router::new()
        .fallback_service(routed)
        .layer(axum::middleware::from_fn(normalize_path))
        .layer(axum::middleware::from_fn(request_context))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

async fn not_found() -> Response {
    KsError(Error::not_found_msg("The resource could not be found.")).into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("request handler panicked");
    KsError(Error::internal("handler panicked")).into_response()
}

/// Clients build URLs by joining; collapse `//`, and under `/identity`,
/// `/compute` and `/placement` drop a trailing `/` so `/v3/OS-TRUST/trusts/` routes like Keystone's. (Glance
/// treats `/v2/images/` as an image with an empty id: 404, so image paths keep it.)
async fn normalize_path(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let strip = path.len() > 1
        && path.ends_with('/')
        && ((path.starts_with("/identity/") && path.matches('/').count() > 2)
            || (path.starts_with("/networking/") && path != "/networking/v2.0/")
            || matches!(
                path,
                "/compute/" | "/compute/v2.1/" | "/compute/v2/" | "/placement/"
            ));
    if path.contains("//") || strip {
        let mut p = path.to_string();
        while p.contains("//") {
            p = p.replace("//", "/");
        }
        if strip && p.ends_with('/') {
            p.pop();
        }
        let pq = match req.uri().query() {
            Some(q) => format!("{p}?{q}"),
            None => p,
        };
        if let Ok(uri) = pq.parse() {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}

/// Request id (taken from a trusted caller's header or made here), response
/// header, and one access-log line per request.
async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let rid = req
        .headers()
        .get("x-openstack-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("req-") && v.len() <= 64)
        .map(str::to_string)
        .unwrap_or_else(ferro_common::new_request_id);
    // Handlers (instance actions) record the id the response carries.
    if let Ok(v) = HeaderValue::from_str(&rid) {
        req.headers_mut().insert("x-openstack-request-id", v);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %rid);
    let mut resp = {
        let _g = span.enter();
        drop(_g);
        tracing::Instrument::instrument(next.run(req), span.clone()).await
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        if path.starts_with("/compute") {
            // Nova answers with both names.
            resp.headers_mut().insert("x-compute-request-id", v.clone());
        }
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(target: "ferrostack::access", request_id = %rid, %method, %path, status, ms = format!("{ms:.2}"), "request");
    resp
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
