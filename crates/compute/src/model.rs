//! Compute's records, as persisted (JSON documents) and held in memory.
//! Wire views are built in `http::views`.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram: u64,
    pub disk: u64,
    #[serde(default)]
    pub ephemeral: u64,
    #[serde(default)]
    pub swap: u64,
    #[serde(default = "one")]
    pub rxtx_factor: f64,
    #[serde(default = "yes")]
    pub is_public: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, String>,
    /// Projects given access to a private flavor.
    #[serde(default)]
    pub access: Vec<String>,
    #[serde(default)]
    pub created_at: String,
    /// Sort key: creation order (Nova lists by flavorid/ internal id).
    #[serde(default)]
    pub seq: u64,
}
fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Keypair {
    pub name: String,
    pub user_id: String,
    pub public_key: String,
    pub fingerprint: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    pub id: u64,
}

/// A server's fault (shown while it is in ERROR).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    pub code: u16,
    pub message: String,
    pub details: String,
    pub created: String,
}

/// A block device mapping as requested and as attached.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Bdm {
    pub source_type: String,
    pub destination_type: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub boot_index: Option<i64>,
    #[serde(default)]
    pub volume_size: Option<u64>,
    #[serde(default)]
    pub delete_on_termination: bool,
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub volume_id: Option<String>,
    /// The Block Storage attachment of a volume mapping.
    #[serde(default)]
    pub attachment_id: Option<String>,
    /// Compute created the volume (from an image, a snapshot or blank).
    #[serde(default)]
    pub created_volume: bool,
    /// The mapping's own id (`bdm_uuid` from 2.89).
    #[serde(default)]
    pub bdm_uuid: Option<String>,
    /// How the host reaches the volume (Nova keeps it in the mapping too),
    /// so a detach can plug it back if it has to be undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_info: Option<ferro_rpc::compute::ConnectionInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    pub uuid: String,
    /// `OS-DCF:diskConfig` (AUTO or MANUAL); None shows MANUAL.
    #[serde(default)]
    pub disk_config: Option<String>,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    #[serde(default)]
    pub description: Option<String>,
    pub flavor: Flavor,
    #[serde(default)]
    pub old_flavor: Option<Flavor>,
    #[serde(default)]
    pub new_flavor: Option<Flavor>,
    /// Empty when booted from a volume.
    pub image_ref: String,
    #[serde(default)]
    pub image_properties: BTreeMap<String, String>,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub key_data: Option<String>,
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub vm_state: String,
    #[serde(default)]
    pub task_state: Option<String>,
    #[serde(default)]
    pub power_state: i64,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    /// The zone asked for at create (None: any), and where it landed.
    #[serde(default)]
    pub requested_az: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub launched_at: Option<String>,
    #[serde(default)]
    pub terminated_at: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub deleted_at: Option<String>,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub locked_by: Option<String>,
    #[serde(default)]
    pub locked_reason: Option<String>,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(default)]
    pub config_drive: bool,
    #[serde(default)]
    pub access_ip_v4: String,
    #[serde(default)]
    pub access_ip_v6: String,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub hostname: String,
    pub reservation_id: String,
    #[serde(default)]
    pub launch_index: u32,
    #[serde(default)]
    pub server_group: Option<String>,
    #[serde(default)]
    pub bdms: Vec<Bdm>,
    /// network name -> addresses (Nova's `addresses`)
    #[serde(default)]
    pub addresses: BTreeMap<String, Value>,
    #[serde(default)]
    pub requested_networks: Value,
    /// The device role tags of the instance's ports (Nova's virtual
    /// interface `tag`), by port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vif_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub scheduler_hints: BTreeMap<String, Value>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub shelved_image: Option<String>,
    #[serde(default)]
    pub rescue_image: Option<String>,
    /// vm_state before rescue/resize, to return to.
    #[serde(default)]
    pub previous_vm_state: Option<String>,
    #[serde(default)]
    pub trusted_certs: Option<Value>,
    /// Creation order, for stable sorting.
    #[serde(default)]
    pub seq: u64,
    /// Nova's `internal id` for `instance_name` (`instance-%08x`).
    #[serde(default)]
    pub internal_id: u64,
}

/// Nova's status from vm_state and task_state (`nova/api/openstack/common.py`).
pub fn status_of(vm_state: &str, task_state: Option<&str>) -> &'static str {
    let t = task_state.unwrap_or("");
    match vm_state {
        "active" => match t {
            "rebooting" | "reboot_pending" | "reboot_started" => "REBOOT",
            "rebooting_hard" | "reboot_pending_hard" | "reboot_started_hard" => "HARD_REBOOT",
            "updating_password" => "PASSWORD",
            "rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning" => "REBUILD",
            "migrating" => "MIGRATING",
            "resize_prep" | "resize_migrating" | "resize_migrated" | "resize_finish" => "RESIZE",
            _ => "ACTIVE",
        },
        "building" => "BUILD",
        "stopped" => match t {
            "resize_prep" | "resize_migrating" | "resize_migrated" | "resize_finish" => "RESIZE",
            "rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning" => "REBUILD",
            _ => "SHUTOFF",
        },
        "resized" => match t {
            "resize_reverting" => "REVERT_RESIZE",
            _ => "VERIFY_RESIZE",
        },
        "paused" => "PAUSED",
        "suspended" => "SUSPENDED",
        "rescued" => "RESCUE",
        "error" => match t {
            "rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning" => "REBUILD",
            _ => "ERROR",
        },
        "deleted" => "DELETED",
        "soft-delete" => "SOFT_DELETED",
        "shelved" => "SHELVED",
        "shelved_offloaded" => "SHELVED_OFFLOADED",
        _ => "UNKNOWN",
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServerGroup {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub policy: String,
    #[serde(default)]
    pub rules: BTreeMap<String, Value>,
    #[serde(default)]
    pub members: Vec<String>,
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Aggregate {
    pub id: u64,
    pub uuid: String,
    pub name: String,
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A service record (nova-compute per host, nova-scheduler, nova-conductor).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceRec {
    pub id: u64,
    pub uuid: String,
    pub host: String,
    pub binary: String,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub forced_down: bool,
    pub created_at: String,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The compute node (resource provider) uuid, for nova-compute.
    #[serde(default)]
    pub node_uuid: Option<String>,
    #[serde(default)]
    pub node_id: u64,
    #[serde(default)]
    pub resources: Option<ferro_rpc::compute::HostResources>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionEvent {
    pub event: String,
    pub start_time: String,
    #[serde(default)]
    pub finish_time: Option<String>,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub traceback: Option<String>,
    /// A failed event's fault message (shown to admins from 2.84).
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceAction {
    pub instance_uuid: String,
    pub request_id: String,
    pub action: String,
    pub user_id: String,
    pub project_id: String,
    pub start_time: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub events: Vec<ActionEvent>,
    pub updated_at: String,
    pub seq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Migration {
    pub id: u64,
    pub uuid: String,
    pub instance_uuid: String,
    pub source_compute: String,
    pub dest_compute: String,
    pub source_node: String,
    pub dest_node: String,
    pub old_flavor_id: String,
    pub new_flavor_id: String,
    pub status: String,
    pub migration_type: String,
    pub project_id: String,
    pub user_id: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Per-project quota overrides (unset keys use the defaults).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProjectQuota {
    pub project_id: String,
    #[serde(default)]
    pub limits: BTreeMap<String, i64>,
    /// Per-user overrides: user id -> limits.
    #[serde(default)]
    pub users: BTreeMap<String, BTreeMap<String, i64>>,
}
