//! The Compute service (Nova v2.1): the API at `/compute/v2.1`, the
//! conductor (agents' heartbeats, the build and delete sagas) and the
//! scheduler glue over Placement. State is held in memory behind one writer
//! and written through to the document store (docs/adr/0007); agents are
//! reached only over the bus.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod actions;
pub mod build;
pub mod caller;
pub mod error;
pub mod extra_specs;
pub mod http;
pub mod image_cache;
pub mod interfaces;
pub mod keys;
pub mod metadata;
pub mod model;
pub mod ops;
pub mod placement;
pub mod servers;
pub mod state;
pub mod vifs;
pub mod volumes;
pub mod workflow;

use ferro_auth::{Policy, TokenValidator};
use ferro_bus::Bus;
use ferro_common::Error;
use ferro_config::Config;
use ferro_db::Db;
use serde_json::Value;
use std::sync::Arc;

pub use state::{Rec, State};

/// What compute needs of the Image service (Nova calls Glance with the
/// user's token; so does this).
#[async_trait::async_trait]
pub trait ImageApi: Send + Sync {
    /// The image as Glance shows it, or None when the caller cannot see it.
    async fn get(&self, token: &str, id: &str) -> Result<Option<Value>, Error>;
    /// Creates an image record; returns Glance's view.
    async fn create(&self, token: &str, body: Value) -> Result<Value, Error>;
    async fn delete(&self, token: &str, id: &str) -> Result<(), Error>;
    /// `GET /v2/images?{query}`: the images the caller can see.
    async fn list(&self, token: &str, query: &str) -> Result<Vec<Value>, Error>;
    /// Applies a JSON-patch document (`application/openstack-images-v2.1-json-patch`).
    async fn patch(&self, token: &str, id: &str, ops: Value) -> Result<Value, Error>;
    /// Uploads the image's data (`PUT /v2/images/{id}/file`).
    async fn upload(&self, token: &str, id: &str, data: Vec<u8>) -> Result<(), Error>;
}

/// What compute needs of the Networking service (implemented by the
/// network crate; until then `NoNetwork`).
#[async_trait::async_trait]
pub trait NetworkApi: Send + Sync {
    /// Checks a create request's `networks` before anything is recorded.
    async fn validate(
        &self,
        token: &str,
        project: &str,
        requested: &Value,
        security_groups: &[String],
    ) -> Result<(), Error>;
    /// Creates/binds ports; returns Nova's `addresses` map.
    async fn allocate(
        &self,
        instance: &str,
        project: &str,
        host: &str,
        requested: &Value,
        security_groups: &[String],
    ) -> Result<serde_json::Map<String, Value>, String>;
    /// Unbinds/deletes the instance's ports (idempotent).
    async fn deallocate(&self, instance: &str) -> Result<(), String>;
    /// The instance's current `addresses` (fixed and floating), when the
    /// Networking service knows them; None: use what allocation returned.
    fn addresses(&self, _instance: &str) -> Option<serde_json::Map<String, Value>> {
        None
    }
    /// `os-interface` attach: one NIC (`{"port": id}`, `{"uuid": net,
    /// "fixed_ip": ip}` or `"auto"`) added to the instance on `host`, in one
    /// step that either happens whole or not at all. Returns Nova's
    /// `interfaceAttachment`.
    async fn attach_interface(
        &self,
        _instance: &str,
        _project: &str,
        _host: &str,
        _nic: &Value,
    ) -> Result<Value, Error> {
        Err(Error::validation("There is no Networking service."))
    }
    /// `os-interface` detach: the port leaves the instance (deleted when
    /// Compute made it, unbound when the user gave it).
    async fn detach_interface(&self, _instance: &str, port: &str) -> Result<(), Error> {
        Err(Error::not_found_msg(format!("Port {port} is not attached")))
    }
    /// The instance's `interfaceAttachments`.
    fn interfaces(&self, _instance: &str) -> Vec<Value> {
        Vec::new()
    }
    /// The instance's ports as its hypervisor plugs them.
    fn vifs(&self, _instance: &str) -> Vec<Vif> {
        Vec::new()
    }
    /// Whether a Networking service answers `neutron` calls.
    fn present(&self) -> bool {
        false
    }
    /// One Networking v2.0 request (`path` with its query) made with the
    /// caller's token, so Neutron's own policy and validation apply: Nova's
    /// proxy APIs and security-group actions are translated into these, as
    /// upstream Nova's neutron client does. The status and JSON body
    /// (`Null` when empty); `None` when there is no Networking service.
    async fn neutron(
        &self,
        _token: &str,
        _method: &str,
        _path: &str,
        _body: Option<Value>,
    ) -> Option<(u16, Value)> {
        None
    }
}

/// One port of an instance as Networking binds it for the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vif {
    pub port_id: String,
    pub mac_address: String,
    pub network_id: String,
    pub mtu: Option<u32>,
    pub fixed_ips: Vec<String>,
    /// Whether the port is ACTIVE (wired on its host): Nova waits for
    /// `network-vif-plugged` only of the ports that are not.
    pub active: bool,
}

/// The other services compute calls, behind its narrow traits.
pub struct Peers {
    pub image: Arc<dyn ImageApi>,
    pub network: Arc<dyn NetworkApi>,
    pub volumes: Arc<dyn VolumeApi>,
}

/// What compute needs of the Block Storage service: the steps of Nova's
/// attach and detach workflows (each one atomic; `release` idempotent),
/// and the volumes block device mappings create. Implemented by the
/// volume crate; `NoVolumes` when it is absent.
#[async_trait::async_trait]
pub trait VolumeApi: Send + Sync {
    fn present(&self) -> bool {
        true
    }
    /// The volume (Cinder's record) if `project` may use it.
    fn get(&self, project: &str, admin: bool, id: &str) -> Option<Value>;
    /// A new attachment for `instance`: the volume is reserved.
    async fn reserve(
        &self,
        project: &str,
        admin: bool,
        volume: &str,
        instance: &str,
    ) -> Result<String, Error>;
    /// The host's connector: returns the connection info.
    async fn connect(&self, attachment: &str, host: &str, device: &str) -> Result<Value, Error>;
    /// The attachment is in use.
    async fn complete(&self, attachment: &str, device: &str, host: &str) -> Result<(), Error>;
    /// Deletes the attachment (gone already is fine).
    async fn release(&self, attachment: &str) -> Result<(), Error>;
    async fn begin_detaching(&self, volume: &str) -> Result<(), Error>;
    async fn roll_detaching(&self, volume: &str) -> Result<(), Error>;
    /// Creates a volume (Cinder's create body) as the caller and waits for
    /// it to become available; returns its id.
    async fn create(&self, token: &str, body: Value) -> Result<String, Error>;
    /// Deletes a volume compute created (gone already is fine).
    async fn delete(&self, id: &str) -> Result<(), Error>;
    /// Block Storage's `os-reimage` (3.68) of a volume this server holds
    /// reserved (`reimage_reserved`), as the user: accepted, then done in
    /// the background (the volume leaves `downloading`).
    async fn reimage(&self, _token: &str, _volume: &str, _image: &str) -> Result<(), Error> {
        Err(Error::validation("There is no Block Storage service."))
    }
    /// One Block Storage v3 request (`path` under `/v3`, with its query)
    /// with the caller's token, for Nova's `os-volumes`/`os-snapshots`
    /// proxies: status and JSON body; None without Block Storage.
    async fn cinder(
        &self,
        _token: &str,
        _method: &str,
        _path: &str,
        _body: Option<Value>,
    ) -> Option<(u16, Value)> {
        None
    }
}

/// No Block Storage service: volume mappings and attachments are refused.
pub struct NoVolumes;

#[async_trait::async_trait]
impl VolumeApi for NoVolumes {
    fn present(&self) -> bool {
        false
    }
    fn get(&self, _: &str, _: bool, _: &str) -> Option<Value> {
        None
    }
    async fn reserve(&self, _: &str, _: bool, v: &str, _: &str) -> Result<String, Error> {
        Err(Error::not_found_msg(format!(
            "Volume {v} could not be found."
        )))
    }
    async fn connect(&self, _: &str, _: &str, _: &str) -> Result<Value, Error> {
        Err(Error::validation("There is no Block Storage service."))
    }
    async fn complete(&self, _: &str, _: &str, _: &str) -> Result<(), Error> {
        Err(Error::validation("There is no Block Storage service."))
    }
    async fn release(&self, _: &str) -> Result<(), Error> {
        Ok(())
    }
    async fn begin_detaching(&self, _: &str) -> Result<(), Error> {
        Ok(())
    }
    async fn roll_detaching(&self, _: &str) -> Result<(), Error> {
        Ok(())
    }
    async fn create(&self, _: &str, _: Value) -> Result<String, Error> {
        Err(Error::validation("There is no Block Storage service."))
    }
    async fn delete(&self, _: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// No Networking service: `networks: none` and `auto` boot without ports;
/// naming a network or port is a 400, as Nova says when it cannot find it.
pub struct NoNetwork;

#[async_trait::async_trait]
impl NetworkApi for NoNetwork {
    async fn validate(
        &self,
        _: &str,
        _: &str,
        requested: &Value,
        _: &[String],
    ) -> Result<(), Error> {
        if let Some(list) = requested.as_array() {
            for n in list {
                if let Some(p) = n.get("port").and_then(Value::as_str) {
                    return Err(Error::validation(format!("Port {p} could not be found.")));
                }
                if let Some(u) = n.get("uuid").and_then(Value::as_str) {
                    return Err(Error::validation(format!(
                        "Network {u} could not be found."
                    )));
                }
            }
        }
        Ok(())
    }
    async fn allocate(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &Value,
        _: &[String],
    ) -> Result<serde_json::Map<String, Value>, String> {
        Ok(serde_json::Map::new())
    }
    async fn deallocate(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Nova's default rules (secure RBAC, simplified to the personas).
pub fn default_policy() -> Result<Policy, ferro_auth::policy::ParseError> {
    Policy::from_defaults([
        ("context_is_admin", "role:admin"),
        ("admin_api", "role:admin"),
        (
            "project_member_api",
            "role:member and project_id:%(project_id)s",
        ),
        (
            "project_reader_api",
            "role:reader and project_id:%(project_id)s",
        ),
        (
            "project_member_or_admin",
            "rule:project_member_api or rule:context_is_admin",
        ),
        (
            "project_reader_or_admin",
            "rule:project_reader_api or rule:context_is_admin",
        ),
    ])
}

/// The saga executor with every Compute workflow registered.
fn executor(svc: Arc<ComputeService>) -> ferro_saga::Executor<workflow::Ctx> {
    let log = Arc::new(ferro_saga::DbSagaLog { db: svc.db.clone() });
    let mut ex = ferro_saga::Executor::new(
        log,
        Arc::new(workflow::Ctx {
            svc: Arc::downgrade(&svc),
        }),
    );
    build::register(&mut ex);
    volumes::register(&mut ex);
    ex
}

pub struct ComputeService {
    pub db: Db,
    pub cfg: Config,
    pub policy: Policy,
    pub validator: Arc<dyn TokenValidator>,
    pub placement: Arc<dyn placement::PlacementApi>,
    pub image: Arc<dyn ImageApi>,
    pub network: Arc<dyn NetworkApi>,
    pub volumes: Arc<dyn VolumeApi>,
    pub bus: Arc<dyn Bus>,
    pub state: state::Store,
    pub scheduler: ferro_scheduler::Scheduler,
    pub sagas: std::sync::OnceLock<ferro_saga::Executor<workflow::Ctx>>,
    /// `<public_url>/compute`
    pub base_url: String,
    /// Woken by each `network-vif-plugged` event: builds waiting for their
    /// ports look again.
    pub vif_events: tokio::sync::Notify,
    /// When this process started (as `updated_at` is written): start-up
    /// recovery clears only task states older than this.
    pub started_at: String,
}

impl ComputeService {
    /// Loads the state, seeds flavors on first start, starts the conductor
    /// (heartbeats) and recovers unfinished sagas in the background.
    pub async fn start(
        db: Db,
        cfg: Config,
        validator: Arc<dyn TokenValidator>,
        placement: Arc<dyn placement::PlacementApi>,
        peers: Peers,
        bus: Arc<dyn Bus>,
    ) -> Result<Arc<Self>, Error> {
        let Peers {
            image,
            network,
            volumes,
        } = peers;
        let mut policy = default_policy().map_err(Error::internal)?;
        if let Some(f) = &cfg.policy.file {
            let _ = policy.load_overrides(f);
        }
        let scheduler =
            ferro_scheduler::Scheduler::new(&cfg.filter_scheduler).map_err(Error::internal)?;
        let store = state::Store::load(&db).await?;
        let base_url = format!("{}/compute", cfg.public_url());
        let svc = Arc::new(ComputeService {
            db,
            cfg,
            policy,
            validator,
            placement,
            image,
            network,
            volumes,
            bus,
            state: store,
            scheduler,
            sagas: std::sync::OnceLock::new(),
            base_url,
            vif_events: tokio::sync::Notify::new(),
            started_at: state::now(),
        });
        svc.seed().await?;
        // Unfinished sagas are resumed after start-up; one whose state
        // cannot be read stops start-up now, naming it.
        ferro_saga::SagaLog::unfinished(&ferro_saga::DbSagaLog { db: svc.db.clone() }).await?;
        let exec = executor(svc.clone());
        let _ = svc.sagas.set(exec);
        ops::start_conductor(svc.clone()).await?;
        Ok(svc)
    }

    /// Resumes or unwinds every saga a previous process left unfinished,
    /// and clears task states no saga owns (Nova's init_host).
    pub async fn recover(self: &Arc<Self>) -> Result<(), Error> {
        build::recover_builds(self).await;
        build::clear_stale_tasks(self).await
    }

    pub(crate) fn exec(&self) -> Result<&ferro_saga::Executor<workflow::Ctx>, Error> {
        self.sagas
            .get()
            .ok_or_else(|| Error::internal("saga executor not ready"))
    }

    /// m1.* flavors and the controller's service records, once.
    async fn seed(&self) -> Result<(), Error> {
        let host = self.cfg.compute.host_name();
        let seed_flavors = self.cfg.compute.bootstrap_flavors;
        self.state
            .write(|st| {
                let mut recs = Vec::new();
                if seed_flavors && st.flavors.is_empty() && !st.flavors_seeded {
                    let now = state::now();
                    for (i, (name, ram, disk, vcpus)) in [
                        ("m1.tiny", 512, 1, 1),
                        ("m1.small", 2048, 20, 1),
                        ("m1.medium", 4096, 40, 2),
                        ("m1.large", 8192, 80, 4),
                        ("m1.xlarge", 16384, 160, 8),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        recs.push(Rec::Flavor(model::Flavor {
                            id: (i + 1).to_string(),
                            name: name.into(),
                            vcpus,
                            ram,
                            disk,
                            ephemeral: 0,
                            swap: 0,
                            rxtx_factor: 1.0,
                            is_public: true,
                            disabled: false,
                            description: None,
                            extra_specs: Default::default(),
                            access: vec![],
                            created_at: now.clone(),
                            seq: i as u64 + 1,
                        }));
                    }
                    recs.push(Rec::Marker("flavors_seeded".into()));
                }
                for binary in ["nova-scheduler", "nova-conductor"] {
                    if !st
                        .services
                        .values()
                        .any(|s| s.binary == binary && s.host == host)
                    {
                        let id = st.next_service_id(&recs);
                        recs.push(Rec::Service(model::ServiceRec {
                            id,
                            uuid: ferro_common::new_uuid(),
                            host: host.clone(),
                            binary: binary.into(),
                            disabled: false,
                            disabled_reason: None,
                            forced_down: false,
                            created_at: state::now(),
                            updated_at: Some(state::now()),
                            node_uuid: None,
                            node_id: 0,
                            resources: None,
                        }));
                    }
                }
                Ok(((), recs))
            })
            .await
    }
}
