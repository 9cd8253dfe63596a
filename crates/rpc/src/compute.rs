//! The compute agent's protocol: what the conductor asks of a host's
//! hypervisor ([`ComputeRequest`]), what it answers ([`ComputeReply`]), the
//! heartbeat it sends ([`AgentReport`]), and the guest description every
//! driver boots from ([`GuestSpec`] with its [`VifSpec`]s and [`DiskSpec`]s).
pub use crate::image::{ImageAccess, ImageDestination};
use crate::{RpcError, envelope, open};
use ferro_bus::{Bus, Envelope, Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The topic compute agents consume (one server per host).
pub const TOPIC: &str = "compute";
/// Where agents' heartbeats go.
pub const CONDUCTOR_TOPIC: &str = "conductor";

/// Nova's power states (`nova/compute/power_state.py`); [`PowerState::code`]
/// is the number the API shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerState {
    NoState = 0,
    Running = 1,
    Paused = 3,
    Shutdown = 4,
    Crashed = 6,
    Suspended = 7,
}

impl PowerState {
    pub fn code(self) -> i64 {
        self as i64
    }
    /// The state of a recorded code (unknown codes are `NoState`).
    pub fn from_code(code: i64) -> PowerState {
        match code {
            1 => PowerState::Running,
            3 => PowerState::Paused,
            4 => PowerState::Shutdown,
            6 => PowerState::Crashed,
            7 => PowerState::Suspended,
            _ => PowerState::NoState,
        }
    }
}

/// What the hypervisor measures of one guest (Nova's instance diagnostics).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Diagnostics {
    /// `qemu` (TCG) or `kvm`, as Nova's `[libvirt] virt_type`.
    pub hypervisor: String,
    /// Seconds since the guest's process started (none when it is not running).
    pub uptime: Option<u64>,
    /// CPU time of each vCPU, nanoseconds.
    pub cpu_times_ns: Vec<u64>,
    pub disks: Vec<DiskStats>,
    pub nics: Vec<NicStats>,
    /// The guest's RAM and what it currently has, MiB.
    pub memory_max_mb: u64,
    pub memory_used_mb: u64,
}

/// I/O through one of the guest's disks since its process started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DiskStats {
    /// The device as the guest names it (`vda`).
    pub name: String,
    pub read_bytes: u64,
    pub read_requests: u64,
    pub write_bytes: u64,
    pub write_requests: u64,
    pub errors_count: u64,
}

/// Traffic of one of the guest's NICs, seen from the guest (`rx` is what
/// it received).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NicStats {
    pub mac_address: String,
    /// The host device (`tap...`).
    pub name: String,
    pub rx_octets: u64,
    pub rx_errors: u64,
    pub rx_drop: u64,
    pub rx_packets: u64,
    pub tx_octets: u64,
    pub tx_errors: u64,
    pub tx_drop: u64,
    pub tx_packets: u64,
}

/// What a host offers, reported to Placement and `os-hypervisors`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HostResources {
    pub vcpus: u32,
    pub memory_mb: u64,
    pub local_gb: u64,
    pub hypervisor_type: String,
    pub hypervisor_version: u64,
    pub cpu_info: String,
    /// QEMU's memory beside each guest's RAM (MiB), reserved in Placement
    /// for every guest on the host.
    #[serde(default)]
    pub guest_memory_overhead_mb: u64,
}

/// One network interface of a guest: the Networking port it plugs into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifSpec {
    pub port_id: String,
    pub mac_address: String,
    pub network_id: String,
    /// The network's MTU, when Networking reports one.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The port's fixed addresses.
    #[serde(default)]
    pub fixed_ips: Vec<String>,
    /// The host device that joins the guest's NIC to the port.
    pub tap_name: String,
    /// `hw_vif_model` when the image asks for one (virtio otherwise).
    #[serde(default)]
    pub model: Option<String>,
    /// The device role tag the user gave the NIC (Nova's `tag`), shown
    /// with the NIC's address in the guest's device metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl VifSpec {
    /// The tap device of a port as Nova names it: `tap` and the first 11
    /// characters of the port id (`nova.network.model.NIC_NAME_LEN` = 14).
    pub fn tap_name_for(port_id: &str) -> String {
        format!("tap{}", port_id.chars().take(11).collect::<String>())
    }
}

/// What a disk of the guest is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskKind {
    /// The image-backed root disk on the host.
    Root,
    /// A flavor ephemeral disk or a blank local mapping.
    Ephemeral,
    Swap,
    ConfigDrive,
    /// A Block Storage volume (root when `boot_index` is 0).
    Volume,
}

/// How a volume is reached from this host, as Block Storage exported it
/// (Cinder's `connection_info`: the transport and its transport-specific data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub driver_volume_type: String,
    #[serde(default)]
    pub data: ConnectionData,
}

/// The transport data of a [`ConnectionInfo`]: the fields ferrostack's
/// transports use, and whatever else the backend sent, kept as it came.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// A local file or block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_path: Option<String>,
    /// The image format of a file volume (`qcow2`, `raw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `rw` or `ro`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ConnectionInfo {
    /// Reads Cinder's `connection_info` JSON.
    pub fn from_json(v: &serde_json::Value) -> Result<ConnectionInfo, RpcError> {
        serde_json::from_value(v.clone())
            .map_err(|e| RpcError::BadMessage(format!("connection_info: {e}")))
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// One disk of the guest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    pub kind: DiskKind,
    /// The device the API reported (`/dev/vda`), when there is one.
    #[serde(default)]
    pub device_name: Option<String>,
    /// `hw_disk_bus` when the image asks for one (virtio otherwise).
    #[serde(default)]
    pub bus: Option<String>,
    #[serde(default)]
    pub boot_index: Option<i64>,
    /// Size in GiB (swap: MiB, as the flavor gives it).
    #[serde(default)]
    pub size: u64,
    /// The image of a root disk.
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub volume_id: Option<String>,
    /// How to reach a volume from this host (set once it is connected).
    #[serde(default)]
    pub connection_info: Option<ConnectionInfo>,
    #[serde(default)]
    pub delete_on_termination: bool,
    /// The mapping's device role tag (Nova's `tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A device of the guest as its hypervisor placed it (Nova's
/// `DeviceMetadata` without the tags): what the device is and where the
/// guest finds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestDevice {
    #[serde(flatten)]
    pub kind: GuestDeviceKind,
    /// `pci`, `scsi`, `ide`, `usb` (Nova's bus names).
    pub bus: String,
    /// The address on that bus as Nova formats it (`0000:00:04.0` on PCI,
    /// `0:0:0:1` on SCSI).
    pub address: String,
}

/// What a [`GuestDevice`] is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestDeviceKind {
    /// A NIC, by its MAC address.
    Nic { mac: String },
    /// A volume's disk, by the volume's id (Nova's `serial`).
    Disk { serial: String },
}

/// Everything a driver needs to create a guest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GuestSpec {
    pub uuid: String,
    pub name: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub root_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
    pub image_id: Option<String>,
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub key_data: Option<String>,
    #[serde(default)]
    pub vifs: Vec<VifSpec>,
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// What the guest's metadata (config drive, metadata service) shows.
    #[serde(default)]
    pub project_id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub launch_index: u32,
    /// Attach a config drive (`--config-drive`, or `force_config_drive`).
    #[serde(default)]
    pub config_drive: bool,
    /// The image's properties (`hw_disk_bus`, `hw_vif_model`,
    /// `hw_firmware_type`, `os_type`...), as the build saw them.
    #[serde(default)]
    pub image_properties: BTreeMap<String, String>,
    /// The flavor's extra specs (`quota:cpu_shares`, `quota:cpu_quota`,
    /// `quota:cpu_period`...).
    #[serde(default)]
    pub flavor_extra_specs: BTreeMap<String, String>,
    /// Start the guest with its CPUs stopped (QEMU `-S`): Nova creates a
    /// guest paused while it waits for `network-vif-plugged`, and resumes
    /// it once its ports are wired.
    #[serde(default)]
    pub start_paused: bool,
}

/// Nova's `create_info` of an assisted volume snapshot: the new overlay
/// file the guest writes to from now on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistedSnapshot {
    pub snapshot_id: String,
    #[serde(default, rename = "type")]
    pub format: Option<String>,
    #[serde(default)]
    pub new_file: Option<String>,
}

impl AssistedSnapshot {
    /// Where the snapshot goes: a file in the volume's own directory,
    /// named by `new_file` (a bare name, as Nova's libvirt driver reads it
    /// for Cinder's file drivers, or a full path into that directory).
    /// `None` without a `new_file` or when it points anywhere else.
    pub fn target(&self, volume_file: &str) -> Option<std::path::PathBuf> {
        let dir = std::path::Path::new(volume_file).parent()?;
        let f = std::path::Path::new(self.new_file.as_deref()?);
        let name = if f.is_absolute() {
            if f.parent()? != dir {
                return None;
            }
            std::path::Path::new(f.file_name()?)
        } else {
            f
        };
        let mut parts = name.components();
        match (parts.next(), parts.next()) {
            (Some(std::path::Component::Normal(_)), None) => {}
            _ => return None,
        }
        Some(dir.join(name))
    }
}

/// What the conductor asks a compute agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ComputeRequest {
    Ping,
    HostResources,
    /// The host's `uptime` line (Nova's `get_host_uptime`).
    HostUptime,
    /// Pre-cache these images on the host (Nova's `cache_images`, from an
    /// aggregate's `POST …/images`).
    CacheImages {
        image_ids: Vec<String>,
        images: Option<ImageAccess>,
    },
    List,
    Spawn {
        spec: GuestSpec,
        /// Where to download the spec's images from when the host has not
        /// cached them.
        #[serde(default)]
        images: Option<ImageAccess>,
    },
    /// A guest the host ran before the agent restarted (the fake forgets
    /// its guests with the process; a real hypervisor finds them running).
    Adopt {
        spec: GuestSpec,
        power_state: PowerState,
    },
    Destroy {
        uuid: String,
    },
    PowerOff {
        uuid: String,
    },
    PowerOn {
        uuid: String,
    },
    Reboot {
        uuid: String,
        hard: bool,
    },
    Pause {
        uuid: String,
    },
    Unpause {
        uuid: String,
    },
    Suspend {
        uuid: String,
    },
    Resume {
        uuid: String,
    },
    Rescue {
        uuid: String,
        image_id: Option<String>,
        #[serde(default)]
        images: Option<ImageAccess>,
    },
    Unrescue {
        uuid: String,
    },
    Resize {
        spec: GuestSpec,
    },
    Snapshot {
        uuid: String,
        dest: ImageDestination,
    },
    ConsoleOutput {
        uuid: String,
    },
    /// A one-time URL of the guest's graphical console of `kind` (`novnc`).
    Console {
        uuid: String,
        kind: String,
    },
    /// What the hypervisor measures of the guest (`server show --diagnostics`).
    Diagnostics {
        uuid: String,
    },
    PowerState {
        uuid: String,
    },
    AttachVolume {
        uuid: String,
        device: String,
        volume_id: String,
        connection_info: ConnectionInfo,
    },
    ExtendVolume {
        uuid: String,
        device: String,
        /// The volume's new size in bytes (Nova's `requested_size`).
        #[serde(default)]
        size: Option<u64>,
    },
    DetachVolume {
        uuid: String,
        device: String,
    },
    /// `os-interface` attach: the port's NIC hot-plugged into the guest
    /// (in its definition for the next start when it does not run).
    AttachInterface {
        uuid: String,
        vif: VifSpec,
    },
    /// `os-interface` detach: the port's NIC unplugged (the guest must
    /// release it) and its tap removed.
    DetachInterface {
        uuid: String,
        port_id: String,
    },
    Volumes {
        uuid: String,
    },
    /// Where the guest's NICs and volumes are on its buses (Nova's device
    /// metadata, for device role tags).
    Devices {
        uuid: String,
    },
    VolumeSnapshotCreate {
        uuid: String,
        volume_id: String,
        create_info: AssistedSnapshot,
    },
    VolumeSnapshotDelete {
        uuid: String,
        volume_id: String,
        snapshot_id: String,
    },
}

impl ComputeRequest {
    /// The guest the request is about (the agent runs one guest's requests
    /// in order); `None` for host-wide requests.
    pub fn instance(&self) -> Option<&str> {
        use ComputeRequest::*;
        match self {
            Ping | HostResources | HostUptime | CacheImages { .. } | List => None,
            Spawn { spec, .. } | Adopt { spec, .. } | Resize { spec } => Some(&spec.uuid),
            Destroy { uuid }
            | PowerOff { uuid }
            | PowerOn { uuid }
            | Reboot { uuid, .. }
            | Pause { uuid }
            | Unpause { uuid }
            | Suspend { uuid }
            | Resume { uuid }
            | Rescue { uuid, .. }
            | Unrescue { uuid }
            | Snapshot { uuid, .. }
            | ConsoleOutput { uuid }
            | Console { uuid, .. }
            | Diagnostics { uuid }
            | PowerState { uuid }
            | AttachVolume { uuid, .. }
            | ExtendVolume { uuid, .. }
            | DetachVolume { uuid, .. }
            | AttachInterface { uuid, .. }
            | DetachInterface { uuid, .. }
            | Volumes { uuid }
            | Devices { uuid }
            | VolumeSnapshotCreate { uuid, .. }
            | VolumeSnapshotDelete { uuid, .. } => Some(uuid),
        }
    }

    /// Whether it is an action whose answer may take long (downloads,
    /// disk copies, waits for a guest), so the caller waits Nova's
    /// `long_rpc_timeout` rather than `rpc_response_timeout`. Queries and
    /// instant actions are not.
    pub fn long_running(&self) -> bool {
        use ComputeRequest::*;
        !matches!(
            self,
            Ping | HostResources
                | HostUptime
                | List
                | ConsoleOutput { .. }
                | Console { .. }
                | Diagnostics { .. }
                | Volumes { .. }
                | Devices { .. }
                | PowerState { .. }
                | Pause { .. }
                | Unpause { .. }
        )
    }

    /// A question that changes nothing on the host: safe to send again
    /// when the connection carrying the first attempt was lost.
    pub fn idempotent(&self) -> bool {
        use ComputeRequest::*;
        matches!(
            self,
            Ping | HostResources
                | HostUptime
                | List
                | ConsoleOutput { .. }
                | Diagnostics { .. }
                | Volumes { .. }
                | Devices { .. }
                | PowerState { .. }
        )
    }

    /// The request's method name on the wire.
    pub fn method(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("method").and_then(|m| m.as_str().map(str::to_string)))
            .unwrap_or_default()
    }

    /// The envelope that carries it; the guest's uuid is also at the top
    /// of `args` for the agent's per-instance queues.
    pub fn to_envelope(&self, request_id: Option<&str>) -> Result<Envelope, RpcError> {
        let mut env = envelope(self, request_id)?;
        if let (Some(uuid), Some(obj)) = (self.instance(), env.args.as_object_mut()) {
            obj.entry("uuid").or_insert_with(|| serde_json::json!(uuid));
        }
        Ok(env)
    }

    /// Reads a request from an envelope (the agent's side).
    pub fn from_envelope(env: &Envelope) -> Result<ComputeRequest, RpcError> {
        // `uuid` at the top of a spec-carrying request is only for
        // queueing; serde ignores it there.
        open(env, "the conductor")
    }
}

/// What an agent answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ComputeReply {
    /// The operation is done; the guest is now in `power_state`.
    Done {
        power_state: PowerState,
    },
    Pong {
        host: String,
        version: u32,
    },
    Resources {
        resources: HostResources,
    },
    Uptime {
        uptime: String,
    },
    /// Per image: `cached`, `existing`, `unsupported` or `error`.
    ImageCache {
        results: BTreeMap<String, String>,
    },
    Instances {
        instances: Vec<String>,
    },
    ConsoleOutput {
        output: String,
    },
    /// The URL a browser opens for the console (its token is spent once).
    Console {
        url: String,
    },
    Diagnostics {
        diagnostics: Diagnostics,
    },
    Volumes {
        devices: Vec<String>,
    },
    Devices {
        devices: Vec<GuestDevice>,
    },
    /// A snapshot was streamed to the Image service (`size` bytes).
    Snapshot {
        size: u64,
    },
}

impl ComputeReply {
    pub fn power_state(&self) -> Option<PowerState> {
        match self {
            ComputeReply::Done { power_state } => Some(*power_state),
            _ => None,
        }
    }
}

/// An agent's heartbeat: its host, resources, guests and their power states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub host: String,
    pub binary: String,
    pub driver: String,
    pub resources: HostResources,
    pub instances: Vec<String>,
    pub power_states: BTreeMap<String, PowerState>,
}

/// What agents send the conductor.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ConductorMessage {
    /// The periodic heartbeat (a cast).
    Report(AgentReport),
    /// An agent starting, before it consumes its queue (Nova's `init_host`
    /// runs before its RPC server starts): a call answered with a
    /// [`Registration`], so requests that waited in the host's queue while
    /// the agent was down find their guests.
    Register(AgentReport),
}

/// The conductor's answer to [`ConductorMessage::Register`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registration {
    /// Guests the database places on the host that the agent must take
    /// (back) under its management before serving requests.
    pub adopt: Vec<Adoption>,
}

/// One guest handed to a host, with the power state it should have.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Adoption {
    pub spec: GuestSpec,
    pub power_state: PowerState,
}

impl ConductorMessage {
    pub fn to_envelope(&self) -> Result<Envelope, RpcError> {
        envelope(self, None)
    }
    pub fn from_envelope(env: &Envelope, peer: &str) -> Result<ConductorMessage, RpcError> {
        open(env, peer)
    }
}

/// Encodes an agent's answer for the bus.
pub fn reply_to_wire(r: Result<ComputeReply, RpcError>) -> Result<serde_json::Value, String> {
    match r {
        Ok(reply) => {
            serde_json::to_value(&reply).map_err(|e| RpcError::BadMessage(e.to_string()).to_wire())
        }
        Err(e) => Err(e.to_wire()),
    }
}

/// The conductor's handle on the compute agents.
#[derive(Clone)]
pub struct ComputeClient {
    bus: Arc<dyn Bus>,
    timeout: Duration,
}

impl ComputeClient {
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> ComputeClient {
        ComputeClient { bus, timeout }
    }

    /// Calls `host`'s agent and waits for its typed answer. An idempotent
    /// question whose connection was lost under it is asked once more
    /// (the bus has reconnected or waits for it); an action is not, since
    /// the agent may have run it.
    pub async fn call(
        &self,
        host: &str,
        req: &ComputeRequest,
        request_id: Option<&str>,
    ) -> Result<ComputeReply, RpcError> {
        let env = req.to_envelope(request_id)?;
        let to = Target::server(TOPIC, host);
        let first = self.bus.call(&to, env.clone(), self.timeout).await;
        let v = match first {
            Err(ferro_bus::BusError::Transport(e)) if req.idempotent() => {
                tracing::info!(%host, method = %req.method(), "asking again after a lost connection: {e}");
                self.bus.call(&to, env, self.timeout).await
            }
            r => r,
        }
        .map_err(RpcError::from_bus)?;
        serde_json::from_value(v)
            .map_err(|e| RpcError::BadMessage(format!("reply to {}: {e}", req.method())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PROTOCOL_VERSION;

    #[test]
    fn an_assisted_snapshot_stays_in_the_volume_directory() {
        let at = |f: &str| {
            AssistedSnapshot {
                snapshot_id: "s".into(),
                format: None,
                new_file: Some(f.into()),
            }
            .target("/v/volume-1")
        };
        assert_eq!(at("snap"), Some("/v/snap".into()));
        assert_eq!(at("/v/snap"), Some("/v/snap".into()));
        assert_eq!(at("/etc/passwd"), None);
        assert_eq!(at("../x"), None);
        assert_eq!(at("a/b"), None);
        assert_eq!(at(""), None);
    }

    fn spec() -> GuestSpec {
        GuestSpec {
            uuid: "u1".into(),
            name: "vm".into(),
            vcpus: 1,
            memory_mb: 64,
            root_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image_id: Some("img".into()),
            user_data: None,
            key_data: None,
            vifs: vec![VifSpec {
                port_id: "0123456789abcdef".into(),
                mac_address: "fa:16:3e:00:00:01".into(),
                network_id: "n".into(),
                mtu: Some(1450),
                fixed_ips: vec!["10.0.0.3".into()],
                tap_name: VifSpec::tap_name_for("0123456789abcdef"),
                model: None,
                tag: None,
            }],
            disks: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn actions_wait_long_queries_do_not() {
        let u = || "u1".to_string();
        assert!(
            ComputeRequest::Snapshot {
                uuid: u(),
                dest: ImageDestination {
                    image_id: "i".into(),
                    endpoint: "e".into(),
                    token: "t".into(),
                },
            }
            .long_running()
        );
        assert!(ComputeRequest::PowerOff { uuid: u() }.long_running());
        assert!(!ComputeRequest::PowerState { uuid: u() }.long_running());
        assert!(
            !ComputeRequest::Console {
                uuid: u(),
                kind: "novnc".into()
            }
            .long_running()
        );
        assert!(!ComputeRequest::Ping.long_running());
    }

    #[test]
    fn requests_round_trip_through_an_envelope() {
        for req in [
            ComputeRequest::Spawn {
                spec: spec(),
                images: None,
            },
            ComputeRequest::Reboot {
                uuid: "u1".into(),
                hard: true,
            },
            ComputeRequest::Ping,
            ComputeRequest::AttachVolume {
                uuid: "u1".into(),
                device: "/dev/vdb".into(),
                volume_id: "v".into(),
                connection_info: ConnectionInfo::from_json(&serde_json::json!({
                    "driver_volume_type": "file",
                    "data": {"device_path": "/x", "format": "qcow2", "other": 1}
                }))
                .unwrap(),
            },
        ] {
            let env = req.to_envelope(Some("req-1")).unwrap();
            assert_eq!(env.method, req.method());
            assert_eq!(env.args["version"], PROTOCOL_VERSION);
            assert_eq!(env.request_id.as_deref(), Some("req-1"));
            if let Some(u) = req.instance() {
                assert_eq!(env.args["uuid"], u);
            }
            let back = ComputeRequest::from_envelope(&env).unwrap();
            assert_eq!(back.method(), req.method());
            assert_eq!(back.instance(), req.instance());
        }
        assert_eq!(spec().vifs[0].tap_name, "tap0123456789a");
    }

    #[test]
    fn other_versions_are_refused_by_name() {
        let mut env = ComputeRequest::Pause { uuid: "u".into() }
            .to_envelope(None)
            .unwrap();
        env.args["version"] = serde_json::json!(PROTOCOL_VERSION + 1);
        let e = ComputeRequest::from_envelope(&env).unwrap_err();
        assert!(
            matches!(e, RpcError::Incompatible { theirs, .. } if theirs == PROTOCOL_VERSION + 1)
        );
        assert!(e.to_string().contains("protocol version mismatch"), "{e}");
        // An untyped message of protocol 1 carries no version.
        let old = Envelope::new("pause", serde_json::json!({"uuid": "u"}));
        assert!(matches!(
            ComputeRequest::from_envelope(&old),
            Err(RpcError::Incompatible { theirs: 1, .. })
        ));
        let unknown = Envelope::new("teleport", serde_json::json!({"version": PROTOCOL_VERSION}));
        assert!(matches!(
            ComputeRequest::from_envelope(&unknown),
            Err(RpcError::BadMessage(_))
        ));
    }

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        for e in [
            RpcError::NotFound("u1".into()),
            RpcError::Unsupported("rescue".into()),
            RpcError::Failed("qemu: could not open disk".into()),
        ] {
            assert_eq!(RpcError::from_wire(&e.to_wire()), e);
        }
        assert_eq!(
            RpcError::from_wire("plain text"),
            RpcError::Failed("plain text".into())
        );
        let d = format!(
            "{:?}",
            ImageDestination {
                image_id: "i".into(),
                endpoint: "e".into(),
                token: "secret".into()
            }
        );
        assert!(!d.contains("secret"));
    }
}
