//! The compute agent (nova-compute's job): consumes `compute.<host>` on the
//! bus, reads each message as a typed [`ComputeRequest`] of the protocol
//! crate, owns its instances (one task per instance, requests queued in
//! order), drives a `VirtDriver`, and heartbeats its host and resources to
//! the conductor. It never opens the database (DESIGN.md §3).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod console;
mod download;

use ferro_bus::{Bus, Incoming, Target};
use ferro_rpc::RpcError;
use ferro_rpc::compute::{
    AgentReport, CONDUCTOR_TOPIC, ComputeReply, ComputeRequest, ConductorMessage, ImageDestination,
    PowerState, Registration, TOPIC, reply_to_wire,
};
use ferro_virt::VirtDriver;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The host's `uptime` line, as Nova's libvirt driver reads it (`env
/// LANG=C uptime`): the host's, whichever driver runs its guests.
async fn host_uptime() -> Result<String, RpcError> {
    let out = tokio::process::Command::new("uptime")
        .env("LANG", "C")
        .output()
        .await
        .map_err(|e| RpcError::Failed(format!("uptime: {e}")))?;
    if !out.status.success() {
        return Err(RpcError::Failed(format!(
            "uptime: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// How long a starting agent waits for the conductor's answer.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ComputeAgent {
    pub host: String,
    pub driver: Arc<dyn VirtDriver>,
    bus: Arc<dyn Bus>,
    report_interval: Duration,
    /// Where snapshots are written before they are streamed to the Image service.
    work_dir: PathBuf,
    /// The host's console proxy (`None`: consoles are disabled).
    console: Option<Arc<console::ConsoleProxy>>,
}

impl ComputeAgent {
    pub fn new(
        bus: Arc<dyn Bus>,
        host: String,
        driver: Arc<dyn VirtDriver>,
        report_interval: Duration,
        work_dir: PathBuf,
        console: Option<Arc<console::ConsoleProxy>>,
    ) -> Arc<ComputeAgent> {
        Arc::new(ComputeAgent {
            host,
            driver,
            bus,
            report_interval,
            work_dir,
            console,
        })
    }

    /// Registers with the conductor, then subscribes and runs until the
    /// bus closes; heartbeats meanwhile.
    pub async fn start(
        self: Arc<Self>,
    ) -> Result<tokio::task::JoinHandle<()>, ferro_bus::BusError> {
        self.register().await;
        let mut sub = self.bus.serve(TOPIC, &self.host).await?;
        let hb = self.clone();
        tokio::spawn(async move {
            loop {
                hb.report().await;
                hb.driver.housekeeping().await;
                tokio::time::sleep(hb.report_interval).await;
            }
        });
        let me = self.clone();
        Ok(tokio::spawn(async move {
            let mut queues: HashMap<String, mpsc::UnboundedSender<Incoming>> = HashMap::new();
            while let Some(msg) = sub.next().await {
                let uuid = msg
                    .envelope
                    .args
                    .get("uuid")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string);
                match uuid {
                    Some(uuid) => {
                        queues.retain(|_, q| !q.is_closed());
                        let q = queues.entry(uuid.clone()).or_insert_with(|| {
                            let (tx, rx) = mpsc::unbounded_channel();
                            tokio::spawn(me.clone().instance_task(uuid, rx));
                            tx
                        });
                        if let Err(e) = q.send(msg) {
                            // The task ended between the check and the send:
                            // serve this one on a task of its own.
                            let me = me.clone();
                            tokio::spawn(async move { me.handle(e.0).await });
                        }
                    }
                    None => me.handle(msg).await,
                }
            }
        }))
    }

    /// One instance's requests, strictly in order; ends when idle.
    async fn instance_task(
        self: Arc<Self>,
        uuid: String,
        mut rx: mpsc::UnboundedReceiver<Incoming>,
    ) {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            self.handle(msg).await;
        }
        tracing::debug!(instance = %uuid, "instance task idle; ended");
    }

    async fn handle(&self, msg: Incoming) {
        let rid = msg.envelope.request_id.clone().unwrap_or_default();
        let method = msg.envelope.method.clone();
        let span = tracing::info_span!("agent", host = %self.host, request_id = %rid, %method);
        let result = match ComputeRequest::from_envelope(&msg.envelope) {
            Ok(req) => tracing::Instrument::instrument(self.dispatch(req), span).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(host = %self.host, %method, "agent call failed: {e}");
        }
        msg.reply(reply_to_wire(result)).await;
    }

    /// Runs one request on the driver.
    pub async fn dispatch(&self, req: ComputeRequest) -> Result<ComputeReply, RpcError> {
        use ComputeRequest as R;
        let d = &self.driver;
        let uuid = req.instance().map(str::to_string).unwrap_or_default();
        match req {
            R::Ping => {
                return Ok(ComputeReply::Pong {
                    host: self.host.clone(),
                    version: ferro_rpc::PROTOCOL_VERSION,
                });
            }
            R::HostResources => {
                return Ok(ComputeReply::Resources {
                    resources: d.host_resources(),
                });
            }
            R::HostUptime => {
                return Ok(ComputeReply::Uptime {
                    uptime: host_uptime().await?,
                });
            }
            R::CacheImages { image_ids, images } => {
                let mut results = BTreeMap::new();
                for id in image_ids {
                    let r = match &images {
                        Some(access) => {
                            d.precache_image(
                                &id,
                                &download::HttpImages {
                                    access: access.clone(),
                                },
                            )
                            .await
                        }
                        None => Err(ferro_virt::VirtError::Failed(
                            "no access to the Image service".into(),
                        )),
                    };
                    let status = match r {
                        Ok(Some(true)) => "cached",
                        Ok(Some(false)) => "existing",
                        Ok(None) => "unsupported",
                        Err(e) => {
                            tracing::error!(image = %id, "failed to cache image: {e}");
                            "error"
                        }
                    };
                    results.insert(id, status.to_string());
                }
                return Ok(ComputeReply::ImageCache { results });
            }
            R::List => {
                return Ok(ComputeReply::Instances {
                    instances: d.list().await,
                });
            }
            R::ConsoleOutput { uuid } => {
                return Ok(ComputeReply::ConsoleOutput {
                    output: d.console_output(&uuid).await?,
                });
            }
            R::Console { uuid, kind } => {
                return Ok(ComputeReply::Console {
                    url: self.console_url(&uuid, &kind).await?,
                });
            }
            R::Diagnostics { uuid } => {
                return Ok(ComputeReply::Diagnostics {
                    diagnostics: d.diagnostics(&uuid).await?,
                });
            }
            R::Volumes { uuid } => {
                return Ok(ComputeReply::Volumes {
                    devices: d.volumes(&uuid).await,
                });
            }
            R::Devices { uuid } => {
                return Ok(ComputeReply::Devices {
                    devices: d.devices(&uuid).await?,
                });
            }
            R::Snapshot { uuid, dest } => {
                return Ok(ComputeReply::Snapshot {
                    size: self.snapshot(&uuid, &dest).await?,
                });
            }
            R::PowerState { uuid } => {
                // Asking about a guest the host does not have is an answer,
                // not a failure: recovery checks builds with it.
                return Ok(ComputeReply::Done {
                    power_state: match d.power_state(&uuid).await {
                        Ok(ps) => ps,
                        Err(ferro_virt::VirtError::NotFound(_)) => PowerState::NoState,
                        Err(e) => return Err(e.into()),
                    },
                });
            }
            R::Spawn { spec, images } => {
                if let Some(access) = images {
                    let mut ids: Vec<&str> = spec.image_id.iter().map(String::as_str).collect();
                    for k in ["kernel_id", "ramdisk_id"] {
                        if let Some(v) = spec.image_properties.get(k) {
                            ids.push(v);
                        }
                    }
                    d.cache_images(&ids, &download::HttpImages { access })
                        .await?;
                }
                d.spawn(&spec).await?
            }
            R::Adopt { spec, power_state } => d.adopt(&spec, power_state).await?,
            R::Destroy { uuid } => {
                if let Some(c) = &self.console {
                    c.revoke(&uuid);
                }
                d.destroy(&uuid).await?;
                return Ok(ComputeReply::Done {
                    power_state: PowerState::NoState,
                });
            }
            R::PowerOff { uuid } => d.power_off(&uuid).await?,
            R::PowerOn { uuid } => d.power_on(&uuid).await?,
            R::Reboot { uuid, hard } => d.reboot(&uuid, hard).await?,
            R::Pause { uuid } => d.pause(&uuid).await?,
            R::Unpause { uuid } => d.unpause(&uuid).await?,
            R::Suspend { uuid } => d.suspend(&uuid).await?,
            R::Resume { uuid } => d.resume(&uuid).await?,
            R::Rescue {
                uuid,
                image_id,
                images,
            } => {
                if let (Some(id), Some(access)) = (&image_id, images) {
                    d.cache_images(&[id], &download::HttpImages { access })
                        .await?;
                }
                d.rescue(&uuid, image_id.as_deref()).await?
            }
            R::Unrescue { uuid } => d.unrescue(&uuid).await?,
            R::Resize { spec } => d.resize(&spec).await?,
            R::AttachVolume {
                uuid,
                device,
                connection_info,
                ..
            } => d.attach_volume(&uuid, &device, &connection_info).await?,
            R::ExtendVolume { uuid, device, size } => d.extend_volume(&uuid, &device, size).await?,
            R::DetachVolume { uuid, device } => d.detach_volume(&uuid, &device).await?,
            R::AttachInterface { uuid, vif } => d.attach_interface(&uuid, &vif).await?,
            R::DetachInterface { uuid, port_id } => d.detach_interface(&uuid, &port_id).await?,
            R::VolumeSnapshotCreate {
                uuid,
                volume_id,
                create_info,
            } => {
                d.volume_snapshot_create(&uuid, &volume_id, &create_info)
                    .await?
            }
            R::VolumeSnapshotDelete {
                uuid,
                volume_id,
                snapshot_id,
            } => {
                d.volume_snapshot_delete(&uuid, &volume_id, &snapshot_id)
                    .await?
            }
        }
        Ok(ComputeReply::Done {
            power_state: d.power_state(&uuid).await.unwrap_or(PowerState::NoState),
        })
    }

    /// A one-time console URL of a running guest (`novnc` is the one
    /// console type served here).
    async fn console_url(&self, uuid: &str, kind: &str) -> Result<String, RpcError> {
        if kind != "novnc" {
            return Err(RpcError::Unsupported(format!("console type {kind}")));
        }
        let Some(proxy) = &self.console else {
            return Err(RpcError::Unsupported(
                "consoles (vnc.enabled is false on this host)".into(),
            ));
        };
        let socket = self.driver.vnc_socket(uuid).await?;
        Ok(proxy.grant(uuid, socket))
    }

    /// The driver writes the guest's disk to a file of this host; the agent
    /// streams that file to the Image service and removes it. No disk
    /// travels over the bus or sits whole in memory.
    async fn snapshot(&self, uuid: &str, dest: &ImageDestination) -> Result<u64, RpcError> {
        tokio::fs::create_dir_all(&self.work_dir)
            .await
            .map_err(|e| RpcError::Failed(format!("{}: {e}", self.work_dir.display())))?;
        let path = self
            .work_dir
            .join(format!("snapshot-{uuid}-{}", dest.image_id));
        let r = async {
            let size = self.driver.snapshot(uuid, &path).await?;
            ferro_image_client::upload(&dest.endpoint, &dest.token, &dest.image_id, &path)
                .await
                .map_err(RpcError::Failed)?;
            Ok(size)
        }
        .await;
        let _removed = tokio::fs::remove_file(&path).await;
        r
    }

    /// Nova's `init_host`, before the queue is consumed: tells the
    /// conductor this agent starts, and takes back the guests it answers
    /// with (a driver that keeps no state across restarts forgot them), so
    /// requests that waited in the host's queue find them. Without an
    /// answer (no controller yet) the agent serves anyway; the conductor
    /// hands guests back by `Adopt` requests on the first heartbeat it hears.
    async fn register(&self) {
        let report = self.host_report().await;
        let env = match ConductorMessage::Register(report).to_envelope() {
            Ok(env) => env,
            Err(e) => {
                tracing::error!("cannot encode the registration: {e}");
                return;
            }
        };
        let answer = self
            .bus
            .call(&Target::topic(CONDUCTOR_TOPIC), env, REGISTER_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value::<Registration>(v).map_err(|e| e.to_string()));
        let reg = match answer {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(host = %self.host, "not registered with a conductor before serving: {e}");
                return;
            }
        };
        for a in reg.adopt {
            let uuid = a.spec.uuid.clone();
            if let Err(e) = self.driver.adopt(&a.spec, a.power_state).await {
                tracing::warn!(instance = %uuid, "guest not taken back: {e}");
            }
        }
    }

    /// The host, its resources, the guests it runs and their power states.
    async fn host_report(&self) -> AgentReport {
        let instances = self.driver.list().await;
        let mut power_states = BTreeMap::new();
        for uuid in &instances {
            if let Ok(ps) = self.driver.power_state(uuid).await {
                power_states.insert(uuid.clone(), ps);
            }
        }
        AgentReport {
            host: self.host.clone(),
            binary: "nova-compute".into(),
            resources: self.driver.host_resources(),
            driver: self.driver.name().into(),
            instances,
            power_states,
        }
    }

    /// Heartbeat: the host, its resources, the guests it runs and their power states.
    pub async fn report(&self) {
        let msg = ConductorMessage::Report(self.host_report().await);
        let sent = match msg.to_envelope() {
            Ok(env) => self
                .bus
                .cast(&Target::topic(CONDUCTOR_TOPIC), env)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::debug!(host = %self.host, "heartbeat not delivered: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferro_bus::InProcBus;
    use ferro_rpc::compute::{ComputeClient, GuestSpec};
    use ferro_virt::FakeDriver;

    #[tokio::test]
    async fn typed_requests_over_the_bus() {
        let bus: Arc<dyn Bus> = Arc::new(InProcBus::new());
        let mut conductor = bus.serve(CONDUCTOR_TOPIC, "c").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let agent = ComputeAgent::new(
            bus.clone(),
            "h1".into(),
            Arc::new(FakeDriver::new(4, 4096, 40)),
            Duration::from_secs(3600),
            dir.path().to_path_buf(),
            None,
        );
        let started = tokio::spawn(agent.clone().start());
        // Before it serves, the agent registers and takes back what the
        // conductor hands it.
        let reg = conductor.next().await.unwrap();
        let ConductorMessage::Register(r) =
            ConductorMessage::from_envelope(&reg.envelope, "agent").unwrap()
        else {
            panic!("expected a registration first");
        };
        assert_eq!(r.host, "h1");
        assert!(r.instances.is_empty());
        let kept = GuestSpec {
            uuid: "kept".into(),
            name: "kept".into(),
            vcpus: 1,
            memory_mb: 64,
            ..Default::default()
        };
        reg.reply(Ok(serde_json::to_value(Registration {
            adopt: vec![ferro_rpc::compute::Adoption {
                spec: kept,
                power_state: PowerState::Shutdown,
            }],
        })
        .unwrap()))
            .await;
        started.await.unwrap().unwrap();
        let hb = conductor.next().await.unwrap();
        let ConductorMessage::Report(r) =
            ConductorMessage::from_envelope(&hb.envelope, "agent").unwrap()
        else {
            panic!("expected a heartbeat");
        };
        assert_eq!(r.host, "h1");
        assert_eq!(r.instances, ["kept"]);
        assert_eq!(r.power_states["kept"], PowerState::Shutdown);
        let client = ComputeClient::new(bus.clone(), Duration::from_secs(5));
        let spec = GuestSpec {
            uuid: "u1".into(),
            name: "vm".into(),
            vcpus: 1,
            memory_mb: 64,
            root_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image_id: None,
            user_data: None,
            key_data: None,
            vifs: vec![],
            disks: vec![],
            ..Default::default()
        };
        let r = client
            .call(
                "h1",
                &ComputeRequest::Spawn { spec, images: None },
                Some("req-1"),
            )
            .await
            .unwrap();
        assert_eq!(r.power_state(), Some(PowerState::Running));
        let r = client
            .call("h1", &ComputeRequest::PowerOff { uuid: "u1".into() }, None)
            .await
            .unwrap();
        assert_eq!(r.power_state(), Some(PowerState::Shutdown));
        // A guest that is not there: a typed NotFound for an action, and
        // NoState (an answer, not an error) for a power-state check.
        let e = client
            .call(
                "h1",
                &ComputeRequest::Pause {
                    uuid: "nope".into(),
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RpcError::NotFound(_)), "{e:?}");
        let r = client
            .call(
                "h1",
                &ComputeRequest::PowerState {
                    uuid: "nope".into(),
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.power_state(), Some(PowerState::NoState));
        // A message of another protocol version is refused by name.
        let mut env = ComputeRequest::Ping.to_envelope(None).unwrap();
        env.args["version"] = serde_json::json!(1);
        let e = match bus
            .call(&Target::server(TOPIC, "h1"), env, Duration::from_secs(5))
            .await
        {
            Err(ferro_bus::BusError::Remote(m)) => RpcError::from_wire(&m),
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(e, RpcError::Incompatible { theirs: 1, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("protocol version mismatch"), "{e}");
        // No agent on a host: a typed error, not a hang.
        let e = client
            .call("h2", &ComputeRequest::Ping, None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, RpcError::NoAgent(_) | RpcError::Timeout(_)),
            "{e:?}"
        );
    }
}
