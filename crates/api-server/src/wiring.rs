//! The seams chosen at start-up (DESIGN.md §1): the bus, the compute
//! agents and their drivers, and the narrow service traits compute uses.
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ferro_bus::Bus;
use ferro_common::Error;
use ferro_config::Config;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The bus of `cfg`: RabbitMQ when `[bus] url` is set, else in-process.
pub async fn bus(cfg: &Config) -> Result<Arc<dyn Bus>, Error> {
    match cfg.bus.url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => {
            let b = ferro_bus::AmqpBus::connect(url)
                .await
                .map_err(|e| Error::internal(format!("connecting to the message bus: {e}")))?;
            Ok(Arc::new(b))
        }
        None => Ok(Arc::new(ferro_bus::InProcBus::new())),
    }
}

/// How the Networking service reaches the host's data plane
/// (`[network] host_net_driver`): the fake records the desired state;
/// `linuxbridge` sends it to this host's network agent over the bus.
pub fn host_net(
    cfg: &Config,
    bus: Arc<dyn Bus>,
) -> Result<Arc<dyn ferro_network::hostnet::HostNet>, Error> {
    match cfg.host_net_driver() {
        "fake" => Ok(Arc::new(ferro_network::hostnet::FakeHostNet::default())),
        "linuxbridge" => Ok(Arc::new(ferro_network::hostnet::BusHostNet::new(
            ferro_rpc::network::NetworkClient::new(bus, Duration::from_secs(60)),
        ))),
        other => Err(Error::internal(format!(
            "network.host_net_driver = {other:?} is not available in this build (fake, linuxbridge)"
        ))),
    }
}

/// Starts this host's network agent when its data plane is real
/// (`host_net_driver = linuxbridge`).
pub async fn start_network_agent(
    cfg: &Config,
    bus: Arc<dyn Bus>,
) -> Result<Option<Arc<ferro_network_agent::NetworkAgent>>, Error> {
    if cfg.host_net_driver() != "linuxbridge" {
        return Ok(None);
    }
    // Bridges, namespaces and dnsmasq need root: the privileged helper
    // builds them when there is one, else this process must be root.
    let driver: Arc<dyn ferro_netdriver::HostDriver> = match ferro_privsep::HelperClient::from_env()
    {
        Some(helper) => Arc::new(ferro_privsep::HelperNetDriver::new(helper)),
        None if ferro_config::running_as_root() => Arc::new(
            ferro_netdriver::LinuxBridge::new(
                cfg.network.host_namespace.clone(),
                ferro_privsep::supervise::network_state_dir(cfg),
            )
            .with_interface_mappings(&cfg.network.physical_interface_mappings)
            .and_then(|d| d.with_local_ip(cfg.network.local_ip.as_deref()))
            .and_then(|d| d.with_external_uplink(cfg.network.external_uplink.as_deref()))
            .map_err(Error::internal)?,
        ),
        None => {
            return Err(Error::internal(
                "network.host_net_driver = linuxbridge builds bridges, namespaces and dnsmasq: start ferrostack as root (it keeps root in its privileged helper only)",
            ));
        }
    };
    let agent = ferro_network_agent::NetworkAgent::reporting(
        bus,
        cfg.compute.host_name(),
        driver,
        cfg.network.local_ip.clone().filter(|a| !a.is_empty()),
        Duration::from_secs(cfg.network.report_interval),
    );
    agent
        .clone()
        .start()
        .await
        .map_err(|e| Error::internal(format!("starting the network agent: {e}")))?;
    tracing::info!(host = %agent.host, "network agent ready (Linux bridge)");
    Ok(Some(agent))
}

/// Whether QEMU can be run here.
async fn qemu_installed() -> bool {
    tokio::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// For a network agent without the controller in its process: the
/// metadata service's answers come from the controllers over the bus.
pub fn metadata_over_bus(agent: &ferro_network_agent::NetworkAgent, bus: Arc<dyn Bus>) {
    agent
        .metadata
        .set_source(Arc::new(ferro_network_agent::metadata::BusMetadataSource {
            bus,
            timeout: Duration::from_secs(30),
        }));
}

/// Starts this host's compute agents: one with the QEMU driver, or
/// `fake_hosts` of them with the fake driver.
pub async fn start_agents(
    cfg: &Config,
    bus: Arc<dyn Bus>,
) -> Result<Vec<Arc<ferro_compute_agent::ComputeAgent>>, Error> {
    let c = &cfg.compute;
    let interval = Duration::from_secs(c.report_interval.max(1));
    let mut drivers: Vec<(String, Arc<dyn ferro_virt::VirtDriver>)> = Vec::new();
    let driver = match c.compute_driver.as_str() {
        "auto" if qemu_installed().await => "qemu",
        "auto" => {
            tracing::warn!(
                "compute_driver auto: qemu-system-x86_64 is not installed, so guests are simulated by the fake driver (hypervisor type `fake`); install QEMU (apt-get install qemu-system-x86 qemu-utils genisoimage) for real guests"
            );
            "fake"
        }
        other => other,
    };
    match driver {
        "qemu" => {
            let mut q = ferro_virt::QemuConfig::new(cfg.instances_path());
            q.uid_pool = ferro_virt::qemu::confine::UidPool {
                base: c.guest_uid_base,
                count: c.guest_uid_count,
            };
            q.cgroup_root = c.cgroup_root.clone().into();
            q.cgroup_parent = c.cgroup_parent.clone();
            q.memory_overhead_mb =
                (c.guest_memory_overhead_mb > 0).then_some(c.guest_memory_overhead_mb);
            q.resume_guests_state_on_host_boot = c.resume_guests_state_on_host_boot;
            q.virt_type = ferro_virt::VirtType::parse(&c.virt_type)
                .ok_or_else(|| Error::internal(format!("compute.virt_type = {:?}", c.virt_type)))?;
            q.shutdown_timeout = Duration::from_secs(c.shutdown_timeout);
            q.remove_unused_base_images = c.remove_unused_base_images;
            q.remove_unused_original_minimum_age =
                Duration::from_secs(c.remove_unused_original_minimum_age_seconds);
            q.image_cache_manager_interval = Duration::from_secs(c.image_cache_manager_interval);
            q.volumes_dir = Some(cfg.volumes_dir());
            // Started by the privileged helper: what needs root goes there.
            let driver = match ferro_privsep::HelperClient::from_env() {
                Some(helper) => ferro_virt::QemuDriver::with_host(q, Arc::new(helper)).await,
                None => ferro_virt::QemuDriver::new(q).await,
            }
            .map_err(|e| Error::internal(format!("compute_driver qemu: {e}")))?;
            tracing::info!(accel = driver.accel(), "QEMU driver ready");
            drivers.push((c.host_name(), Arc::new(driver)));
        }
        "fake" => {
            for host in c.fake_host_names() {
                let driver = Arc::new(
                    ferro_virt::FakeDriver::new(c.fake_vcpus, c.fake_memory_mb, c.fake_disk_gb)
                        .with_delay(Duration::from_millis(c.fake_delay_ms)),
                );
                drivers.push((host, driver));
            }
        }
        other => {
            return Err(Error::internal(format!(
                "compute_driver {other} is not available in this build (qemu, fake)"
            )));
        }
    }
    // The console proxy serves the guests of this process's agents; fake
    // guests have no screen, so it starts only with the QEMU driver.
    let console = if driver == "qemu" && cfg.vnc.enabled {
        let settings = ferro_compute_agent::console::ConsoleSettings {
            listen: cfg.vnc.novncproxy_listen.clone(),
            base_url: cfg.vnc.novncproxy_base_url.clone(),
            public_host: cfg.public_host(),
            web: cfg.vnc.web.clone().into(),
            token_ttl: Duration::from_secs(cfg.console.token_ttl.max(1)),
            allowed_origins: cfg.console.allowed_origins.clone(),
        };
        // The API does not depend on it: a taken port leaves consoles
        // unavailable (400, as for a host without consoles), said loudly.
        match ferro_compute_agent::console::ConsoleProxy::start(settings).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(
                    "console proxy not started on {} (vnc.novncproxy_listen): {e}; `console url show` answers 400 Unavailable console type until ferrostack restarts with the port free",
                    cfg.vnc.novncproxy_listen
                );
                None
            }
        }
    } else {
        None
    };
    let mut agents = Vec::new();
    for (host, driver) in drivers {
        let agent = ferro_compute_agent::ComputeAgent::new(
            bus.clone(),
            host.clone(),
            driver,
            interval,
            cfg.data_dir().join("compute").join(&host),
            console.clone(),
        );
        agent
            .clone()
            .start()
            .await
            .map_err(|e| Error::internal(format!("starting compute agent: {e}")))?;
        agents.push(agent);
    }
    Ok(agents)
}

/// Compute's view of the Image service: the Glance routes called in
/// process with the user's token, so visibility and policy are Glance's.
pub struct InProcImages {
    pub router: Router,
}

impl InProcImages {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        ctype: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Value), Error> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-auth-token", token)
            .header("content-type", ctype)
            .body(Body::from(body))
            .map_err(Error::internal)?;
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| Error::internal(format!("image call: {e}")))?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .map_err(Error::internal)?;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }
}

fn image_error(status: StatusCode, v: &Value) -> Error {
    let msg = v["message"]
        .as_str()
        .unwrap_or("image service error")
        .to_string();
    match status.as_u16() {
        400 => Error::validation(msg),
        403 => Error::forbidden(msg),
        404 => Error::not_found_msg(msg),
        409 => Error::conflict(msg),
        413 => Error::TooLarge { message: msg },
        _ => Error::internal(format!("image service answered {status}: {msg}")),
    }
}

#[async_trait::async_trait]
impl ferro_compute::ImageApi for InProcImages {
    async fn get(&self, token: &str, id: &str) -> Result<Option<Value>, Error> {
        let (s, v) = self
            .call(
                Method::GET,
                &format!("/v2/images/{id}"),
                token,
                "application/json",
                vec![],
            )
            .await?;
        match s.as_u16() {
            200 => Ok(Some(v)),
            404 | 403 => Ok(None),
            _ => Err(image_error(s, &v)),
        }
    }
    async fn create(&self, token: &str, body: Value) -> Result<Value, Error> {
        let (s, v) = self
            .call(
                Method::POST,
                "/v2/images",
                token,
                "application/json",
                body.to_string().into_bytes(),
            )
            .await?;
        if s == StatusCode::CREATED {
            Ok(v)
        } else {
            Err(image_error(s, &v))
        }
    }
    async fn list(&self, token: &str, query: &str) -> Result<Vec<Value>, Error> {
        let mut out = Vec::new();
        let mut next = format!(
            "/v2/images?limit=1000{}{query}",
            if query.is_empty() { "" } else { "&" }
        );
        loop {
            let (s, v) = self
                .call(Method::GET, &next, token, "application/json", vec![])
                .await?;
            if !s.is_success() {
                return Err(image_error(s, &v));
            }
            out.extend(v["images"].as_array().cloned().unwrap_or_default());
            match v["next"].as_str() {
                Some(n) if !n.is_empty() => next = n.to_string(),
                _ => return Ok(out),
            }
        }
    }
    async fn upload(&self, token: &str, id: &str, data: Vec<u8>) -> Result<(), Error> {
        let (s, v) = self
            .call(
                Method::PUT,
                &format!("/v2/images/{id}/file"),
                token,
                "application/octet-stream",
                data,
            )
            .await?;
        if s.is_success() {
            Ok(())
        } else {
            Err(image_error(s, &v))
        }
    }
    async fn patch(&self, token: &str, id: &str, ops: Value) -> Result<Value, Error> {
        let (s, v) = self
            .call(
                Method::PATCH,
                &format!("/v2/images/{id}"),
                token,
                "application/openstack-images-v2.1-json-patch",
                ops.to_string().into_bytes(),
            )
            .await?;
        if s.is_success() {
            Ok(v)
        } else {
            Err(image_error(s, &v))
        }
    }
    async fn delete(&self, token: &str, id: &str) -> Result<(), Error> {
        let (s, v) = self
            .call(
                Method::DELETE,
                &format!("/v2/images/{id}"),
                token,
                "application/json",
                vec![],
            )
            .await?;
        if s.is_success() || s == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(image_error(s, &v))
        }
    }
}

/// Compute's view of the Networking service: the network crate's Nova
/// seam called in process.
pub struct InProcNetwork {
    pub svc: Arc<ferro_network::NetworkService>,
    /// The Networking API itself, for the calls Nova's proxies make.
    pub router: Router,
}

#[async_trait::async_trait]
impl ferro_compute::NetworkApi for InProcNetwork {
    async fn validate(
        &self,
        token: &str,
        project: &str,
        requested: &Value,
        security_groups: &[String],
    ) -> Result<(), Error> {
        let admin = match self.svc.validator.validate(token, false).await {
            Ok(t) => t.has_role("admin"),
            Err(_) => false,
        };
        let r = ferro_network::nova::Requester { project, admin };
        self.svc
            .nova_validate(&r, requested, security_groups)
            .map_err(|m| {
                if m.starts_with("Multiple possible networks") {
                    Error::conflict(m)
                } else {
                    Error::validation(m)
                }
            })
    }
    async fn allocate(
        &self,
        instance: &str,
        project: &str,
        host: &str,
        requested: &Value,
        security_groups: &[String],
    ) -> Result<serde_json::Map<String, Value>, String> {
        let r = ferro_network::nova::Requester {
            project,
            admin: false,
        };
        self.svc
            .nova_allocate(instance, &r, host, requested, security_groups)
            .await
    }
    async fn deallocate(&self, instance: &str) -> Result<(), String> {
        self.svc.nova_deallocate(instance).await
    }
    fn addresses(&self, instance: &str) -> Option<serde_json::Map<String, Value>> {
        Some(self.svc.nova_addresses(instance))
    }
    fn present(&self) -> bool {
        true
    }
    async fn attach_interface(
        &self,
        instance: &str,
        project: &str,
        host: &str,
        nic: &Value,
    ) -> Result<Value, Error> {
        let r = ferro_network::nova::Requester {
            project,
            admin: false,
        };
        self.svc
            .nova_attach(instance, &r, host, nic)
            .await
            .map_err(neutron_to_error)
    }
    async fn detach_interface(&self, instance: &str, port: &str) -> Result<(), Error> {
        self.svc
            .nova_detach(instance, port)
            .await
            .map_err(neutron_to_error)
    }
    fn interfaces(&self, instance: &str) -> Vec<Value> {
        self.svc.nova_interfaces(instance)
    }
    fn vifs(&self, instance: &str) -> Vec<ferro_compute::Vif> {
        self.svc
            .nova_vifs(instance)
            .into_iter()
            .map(|v| ferro_compute::Vif {
                port_id: v.port_id,
                mac_address: v.mac_address,
                network_id: v.network_id,
                mtu: v.mtu,
                fixed_ips: v.fixed_ips,
                active: v.active,
            })
            .collect()
    }
    async fn neutron(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        call_json(&self.router, token, method, path, body).await
    }
}

/// One JSON request to an in-process service router with `token`: the
/// status and the body (`Null` when empty). None if it cannot be made.
async fn call_json(
    router: &Router,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(path)
        .header("x-auth-token", token)
        .header("content-type", "application/json")
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .ok()?;
    let resp = router.clone().oneshot(req).await.ok()?;
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 256 << 20)
        .await
        .ok()?;
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Some((code, v))
}

/// A Networking failure as Compute reports it: same status, its message.
fn neutron_to_error(e: ferro_network::error::NeutronError) -> Error {
    match e.code {
        404 => Error::not_found_msg(e.message),
        409 => Error::conflict(e.message),
        400 => Error::validation(e.message),
        403 => Error::forbidden(e.message),
        _ => Error::internal(e.message),
    }
}

/// Block Storage's view of the Image service (the image's record for
/// create from image, the new image's for upload to image), through the
/// same in-process Glance routes; the volume agent moves the data.
#[async_trait::async_trait]
impl ferro_volume::ImageApi for InProcImages {
    async fn get(&self, token: &str, id: &str) -> Result<Option<Value>, Error> {
        ferro_compute::ImageApi::get(self, token, id).await
    }
    async fn create(&self, token: &str, body: Value) -> Result<Value, Error> {
        ferro_compute::ImageApi::create(self, token, body).await
    }
    async fn delete(&self, token: &str, id: &str) -> Result<(), Error> {
        ferro_compute::ImageApi::delete(self, token, id).await
    }
}

/// The volume driver of `cfg` (`[volume] volume_driver`), which this
/// host's volume agent owns.
pub fn volume_driver(cfg: &Config) -> Result<Arc<dyn ferro_voldriver::VolumeDriver>, Error> {
    let v = &cfg.volume;
    match v.volume_driver.as_str() {
        "fake" => Ok(Arc::new(ferro_voldriver::FakeDriver::new(
            if v.capacity_gb > 0 {
                v.capacity_gb
            } else {
                1000
            },
        ))),
        "file" => {
            let dir = cfg.volumes_dir();
            let mut b = ferro_voldriver::FileDriver::new(dir, &v.volume_format, v.capacity_gb)
                .map_err(Error::internal)?;
            let listen = cfg.volume_target_ip();
            let host = cfg.compute.host_name();
            match v.remote_transport.as_str() {
                "nbd" => b = b.with_nbd(&host, &listen),
                // tgtd and its management socket need root: without it the
                // privileged helper runs them.
                "iscsi" => {
                    b = match ferro_privsep::HelperClient::from_env() {
                        Some(helper) => b.with_iscsi_targets(
                            &host,
                            Arc::new(ferro_privsep::HelperIscsi::new(helper)),
                        ),
                        None => b.with_iscsi(&host, &listen, v.target_port),
                    }
                    .map_err(Error::internal)?
                }
                _ => {}
            }
            Ok(Arc::new(b))
        }
        other => Err(Error::internal(format!(
            "volume_driver {other} is not available (file, fake)"
        ))),
    }
}

/// This host's volume agent (`--roles volume`), serving on the bus.
pub async fn start_volume_agent(
    cfg: &Config,
    bus: Arc<dyn Bus>,
) -> Result<Arc<ferro_volume_agent::VolumeAgent>, Error> {
    // Images pass through the volume host's own scratch directory.
    let agent = ferro_volume_agent::VolumeAgent::new(
        bus,
        cfg.compute.host_name(),
        volume_driver(cfg)?,
        cfg.volumes_dir().join(".images"),
    );
    agent
        .clone()
        .start()
        .await
        .map_err(|e| Error::internal(format!("starting the volume agent: {e}")))?;
    tracing::info!(host = %agent.host, driver = agent.driver.name(), "volume agent ready");
    Ok(agent)
}

/// Block Storage's backend: the volume agent of `volume.volume_host`
/// (default this host), over the bus.
pub fn volume_backend(
    cfg: &Config,
    bus: Arc<dyn Bus>,
) -> Arc<dyn ferro_volume::backend::VolumeBackend> {
    let host = cfg
        .volume
        .volume_host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| cfg.compute.host_name());
    Arc::new(ferro_volume::backend::BusVolumeBackend::new(
        ferro_rpc::volume::VolumeClient::new(bus),
        host,
        cfg.volume.volume_driver.clone(),
    ))
}

/// Compute's view of the Block Storage service: the attachment steps
/// called directly, volume creation through the Cinder routes with the
/// user's token (so Cinder's validation, quotas and policy apply).
/// Block Storage's events for Compute, delivered in-process.
pub struct InProcCompute {
    pub svc: Arc<ferro_compute::ComputeService>,
}

#[async_trait::async_trait]
impl ferro_volume::ComputeApi for InProcCompute {
    async fn volume_extended(&self, server: &str, volume_id: &str) -> Result<(), Error> {
        let rid = ferro_common::new_request_id();
        match ferro_compute::volumes::volume_extended(&self.svc, server, volume_id, &rid).await {
            200 => Ok(()),
            404 => Err(Error::not_found("server", server)),
            code => Err(Error::validation(format!(
                "volume-extended for server {server} answered {code}"
            ))),
        }
    }
    async fn server_volume_attachment(
        &self,
        server: &str,
        volume_id: &str,
    ) -> Result<Option<String>, Error> {
        Ok(ferro_compute::volumes::server_volume_attachment(
            &self.svc, server, volume_id,
        ))
    }
    async fn snapshot_attached(
        &self,
        server: &str,
        volume_id: &str,
        snapshot_id: &str,
        new_file: &std::path::Path,
        format: &str,
    ) -> Result<(), Error> {
        ferro_compute::volumes::snapshot_attached(
            &self.svc,
            server,
            volume_id,
            snapshot_id,
            new_file,
            format,
        )
        .await
        .map_err(Error::internal)
    }
}

#[async_trait::async_trait]
impl ferro_network::ComputeNotifier for InProcCompute {
    async fn vif_events(&self, events: Vec<ferro_network::VifEvent>) {
        for e in events {
            ferro_compute::vifs::network_event(&self.svc, e.name, &e.server, &e.port);
        }
    }
}

#[async_trait::async_trait]
impl ferro_network_agent::metadata::MetadataSource for InProcCompute {
    async fn fetch(
        &self,
        instance: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> ferro_rpc::metadata::MetadataReply {
        ferro_compute::metadata::serve(&self.svc, instance, method, path, &body).await
    }
}

pub struct InProcVolumes {
    pub svc: Arc<ferro_volume::VolumeService>,
    pub router: Router,
}

fn cinder_to_error(e: ferro_volume::error::CinderError) -> Error {
    match e.code {
        400 => Error::validation(e.message),
        403 => Error::forbidden(e.message),
        404 => Error::not_found_msg(e.message),
        409 => Error::conflict(e.message),
        413 => Error::TooLarge { message: e.message },
        _ => Error::internal(e.message),
    }
}

#[async_trait::async_trait]
impl ferro_compute::VolumeApi for InProcVolumes {
    fn get(&self, project: &str, admin: bool, id: &str) -> Option<Value> {
        self.svc.nova_volume(project, admin, id)
    }
    async fn reserve(
        &self,
        project: &str,
        admin: bool,
        volume: &str,
        instance: &str,
    ) -> Result<String, Error> {
        self.svc
            .nova_reserve(project, admin, volume, instance)
            .await
            .map_err(cinder_to_error)
    }
    async fn connect(&self, attachment: &str, host: &str, device: &str) -> Result<Value, Error> {
        self.svc
            .nova_connect(attachment, host, device)
            .await
            .map_err(cinder_to_error)
    }
    async fn complete(&self, attachment: &str, device: &str, host: &str) -> Result<(), Error> {
        self.svc
            .nova_complete(attachment, device, host)
            .await
            .map_err(cinder_to_error)
    }
    async fn release(&self, attachment: &str) -> Result<(), Error> {
        self.svc
            .nova_release(attachment)
            .await
            .map_err(cinder_to_error)
    }
    async fn begin_detaching(&self, volume: &str) -> Result<(), Error> {
        self.svc
            .nova_begin_detaching(volume)
            .await
            .map_err(cinder_to_error)
    }
    async fn roll_detaching(&self, volume: &str) -> Result<(), Error> {
        self.svc
            .nova_roll_detaching(volume)
            .await
            .map_err(cinder_to_error)
    }
    async fn create(&self, token: &str, body: Value) -> Result<String, Error> {
        let (status, v) = call_json(
            &self.router,
            token,
            "POST",
            "/v3/volumes",
            Some(serde_json::json!({"volume": body})),
        )
        .await
        .ok_or_else(|| Error::internal("volume call failed"))?;
        if status != 202 {
            let msg = v
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|x| x["message"].as_str())
                .unwrap_or("volume create failed")
                .to_string();
            return Err(cinder_to_error(ferro_volume::error::CinderError::new(
                status, msg,
            )));
        }
        let id = v["volume"]["id"].as_str().unwrap_or_default().to_string();
        self.svc
            .nova_wait_available(&id, Duration::from_secs(600))
            .await
            .map_err(cinder_to_error)?;
        Ok(id)
    }
    async fn delete(&self, id: &str) -> Result<(), Error> {
        self.svc.nova_delete(id).await.map_err(cinder_to_error)
    }
    async fn cinder(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        call_json(&self.router, token, method, path, body).await
    }
    async fn reimage(&self, token: &str, volume: &str, image: &str) -> Result<(), Error> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("/v3/volumes/{volume}/action"))
            .header("x-auth-token", token)
            .header("content-type", "application/json")
            .header("openstack-api-version", "volume 3.68")
            .body(Body::from(
                serde_json::json!({"os-reimage": {"image_id": image, "reimage_reserved": true}})
                    .to_string(),
            ))
            .map_err(|e| Error::internal(e.to_string()))?;
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 202 {
            return Ok(());
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let msg = v
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|x| x["message"].as_str())
            .unwrap_or("re-image refused")
            .to_string();
        Err(cinder_to_error(ferro_volume::error::CinderError::new(
            status, msg,
        )))
    }
}

/// Compute's view of Placement: the Placement service called in process.
pub struct InProcPlacement {
    pub svc: Arc<ferro_placement::PlacementService>,
}

#[async_trait::async_trait]
impl ferro_compute::placement::PlacementApi for InProcPlacement {
    async fn allocation_candidates(
        &self,
        q: &ferro_compute::placement::CandidateQuery,
    ) -> Result<Vec<ferro_compute::placement::Candidate>, Error> {
        let q = ferro_placement::CandidateQuery {
            resources: q.resources.clone(),
            required: q.required.clone(),
            forbidden: q.forbidden.clone(),
            member_of: q.member_of.clone(),
            in_tree: q.in_tree.clone(),
            limit: q.limit,
        };
        Ok(self
            .svc
            .allocation_candidates(&q)
            .await?
            .into_iter()
            .map(|c| ferro_compute::placement::Candidate {
                provider: c.provider,
                name: c.name,
                allocations: c.allocations,
                summary: c.summary,
                traits: c.traits,
                aggregates: c.aggregates,
            })
            .collect())
    }
    async fn put_allocations(
        &self,
        consumer: &str,
        project: &str,
        user: &str,
        allocs: ferro_compute::placement::AllocMap,
        consumer_generation: Option<u64>,
    ) -> Result<(), Error> {
        self.svc
            .put_allocations(consumer, project, user, allocs, consumer_generation)
            .await
    }
    async fn get_allocations(
        &self,
        consumer: &str,
    ) -> (ferro_compute::placement::AllocMap, Option<u64>) {
        self.svc.get_allocations(consumer).await
    }
    async fn delete_allocations(&self, consumer: &str) -> Result<(), Error> {
        self.svc.delete_allocations(consumer).await
    }
    async fn ensure_provider(
        &self,
        uuid: &str,
        name: &str,
        inventories: std::collections::BTreeMap<String, ferro_compute::placement::Inventory>,
        traits: Vec<String>,
    ) -> Result<(), Error> {
        let inventories = inventories
            .into_iter()
            .map(|(rc, i)| {
                (
                    rc,
                    ferro_placement::Inventory {
                        total: i.total,
                        reserved: i.reserved,
                        min_unit: i.min_unit,
                        max_unit: i.max_unit,
                        step_size: i.step_size,
                        allocation_ratio: i.allocation_ratio,
                    },
                )
            })
            .collect();
        self.svc
            .ensure_provider(uuid, name, inventories, traits)
            .await
    }
    async fn delete_provider(&self, uuid: &str) -> Result<(), Error> {
        self.svc.delete_provider(uuid).await
    }
    async fn set_provider_aggregates(&self, uuid: &str, aggs: Vec<String>) -> Result<(), Error> {
        self.svc.set_provider_aggregates(uuid, aggs).await
    }
    async fn provider_usages(&self, uuid: &str) -> std::collections::BTreeMap<String, u64> {
        self.svc.provider_usages(uuid).await
    }
}
