//! The hypervisor seam (DESIGN.md §6): the `VirtDriver` trait the compute
//! agent drives; `FakeDriver`, which keeps instances in memory and can be
//! told to fail at a chosen operation (how API tests and scale simulations
//! run); and `QemuDriver`, one QEMU process per guest driven over QMP, on
//! qcow2 overlays of a per-host image cache.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod configdrive;
pub mod conformance;
pub mod fake;
pub mod qemu;

pub use fake::FakeDriver;
pub use qemu::{QemuConfig, QemuDriver, VirtType};

use ferro_rpc::RpcError;
pub use ferro_rpc::compute::{
    AssistedSnapshot, ConnectionData, ConnectionInfo, Diagnostics, DiskKind, DiskSpec, DiskStats,
    GuestDevice, GuestDeviceKind, GuestSpec, HostResources, NicStats, PowerState, VifSpec,
};
use std::path::Path;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VirtError {
    #[error("instance {0} not found on this host")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
    #[error("operation not supported by this driver: {0}")]
    Unsupported(&'static str),
}

impl From<VirtError> for RpcError {
    fn from(e: VirtError) -> RpcError {
        match e {
            VirtError::NotFound(what) => RpcError::NotFound(format!("instance {what}")),
            VirtError::Failed(m) => RpcError::Failed(m),
            VirtError::Unsupported(op) => RpcError::Unsupported(op.to_string()),
        }
    }
}

/// Where a host gets the bits of an image it has not cached (the compute
/// agent downloads from the Image service with the request's token).
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync {
    /// Writes image `image_id` to `dest` (a new file), verifying the
    /// checksum the Image service recorded; returns its `disk_format`.
    async fn fetch(&self, image_id: &str, dest: &Path) -> Result<String, VirtError>;
}

/// One hypervisor on one host. Every method is idempotent where upstream's
/// state machine can repeat it (spawn of an existing guest, destroy of a gone one).
#[async_trait::async_trait]
pub trait VirtDriver: Send + Sync {
    fn name(&self) -> &'static str;
    fn host_resources(&self) -> HostResources;
    /// Makes sure the images `ids` are in this host's cache, fetching the
    /// missing ones from `source` (once per image, however many boots ask
    /// at the same time). Drivers without local images do nothing.
    async fn cache_images(
        &self,
        _ids: &[&str],
        _source: &dyn ImageSource,
    ) -> Result<(), VirtError> {
        Ok(())
    }
    /// Nova's `cache_image` (aggregate image pre-caching, 2.81): `Some(true)`
    /// when the image was fetched now, `Some(false)` when it was cached
    /// already, `None` when this driver keeps no image cache.
    async fn precache_image(
        &self,
        _id: &str,
        _source: &dyn ImageSource,
    ) -> Result<Option<bool>, VirtError> {
        Ok(None)
    }
    async fn spawn(&self, spec: &GuestSpec) -> Result<(), VirtError>;
    async fn destroy(&self, uuid: &str) -> Result<(), VirtError>;
    async fn power_off(&self, uuid: &str) -> Result<(), VirtError>;
    async fn power_on(&self, uuid: &str) -> Result<(), VirtError>;
    async fn reboot(&self, uuid: &str, hard: bool) -> Result<(), VirtError>;
    async fn pause(&self, uuid: &str) -> Result<(), VirtError>;
    async fn unpause(&self, uuid: &str) -> Result<(), VirtError>;
    async fn suspend(&self, uuid: &str) -> Result<(), VirtError>;
    async fn resume(&self, uuid: &str) -> Result<(), VirtError>;
    async fn rescue(&self, uuid: &str, image_id: Option<&str>) -> Result<(), VirtError>;
    async fn unrescue(&self, uuid: &str) -> Result<(), VirtError>;
    /// Resizes the guest in place (the fake and single-host case of a resize/migrate).
    async fn resize(&self, spec: &GuestSpec) -> Result<(), VirtError>;
    /// Writes a disk image of the guest to `dest` (for `createImage`,
    /// backup and shelve; the agent streams the file to the Image
    /// service) and returns its size in bytes.
    async fn snapshot(&self, uuid: &str, dest: &Path) -> Result<u64, VirtError>;
    async fn console_output(&self, uuid: &str) -> Result<String, VirtError>;
    /// What the hypervisor measures of the guest (CPU time per vCPU, disk
    /// and NIC counters, memory, uptime).
    async fn diagnostics(&self, uuid: &str) -> Result<Diagnostics, VirtError>;
    /// The unix socket of the running guest's VNC server, for the host's
    /// console proxy. Drivers without a screen to show say Unsupported.
    async fn vnc_socket(&self, _uuid: &str) -> Result<std::path::PathBuf, VirtError> {
        Err(VirtError::Unsupported("graphical consoles"))
    }
    async fn power_state(&self, uuid: &str) -> Result<PowerState, VirtError>;
    /// Periodic upkeep of the host (console log rotation, image cache
    /// ageing); the agent calls it with each heartbeat.
    async fn housekeeping(&self) {}
    /// Guests this driver knows of (for power-state sync and clean-up).
    async fn list(&self) -> Vec<String>;
    /// Adopts a guest that existed before a restart (the fake forgets
    /// everything when the process ends).
    async fn adopt(&self, spec: &GuestSpec, state: PowerState) -> Result<(), VirtError>;
    /// Hot-plugs a volume at `device` (`connection_info` as Block Storage
    /// exported it). Attaching what is already there succeeds.
    async fn attach_volume(
        &self,
        _uuid: &str,
        _device: &str,
        _connection_info: &ConnectionInfo,
    ) -> Result<(), VirtError> {
        Err(VirtError::Unsupported("attach_volume"))
    }
    /// Tells the guest the volume at `device` grew to `size` bytes (Block
    /// Storage's `volume-extended` event; QEMU's `block_resize`, which also
    /// grows a file the guest holds).
    async fn extend_volume(
        &self,
        _uuid: &str,
        _device: &str,
        _size: Option<u64>,
    ) -> Result<(), VirtError> {
        Err(VirtError::Unsupported("extend_volume"))
    }
    /// Unplugs the volume at `device` (gone already succeeds).
    async fn detach_volume(&self, _uuid: &str, _device: &str) -> Result<(), VirtError> {
        Err(VirtError::Unsupported("detach_volume"))
    }
    /// Hot-plugs the NIC of `vif` (a stopped guest has it from its next
    /// start). Attaching what is already there succeeds.
    async fn attach_interface(&self, _uuid: &str, _vif: &VifSpec) -> Result<(), VirtError> {
        Err(VirtError::Unsupported("attach_interface"))
    }
    /// Unplugs the NIC of the port (gone already succeeds); one the guest
    /// will not release stays and the call fails.
    async fn detach_interface(&self, _uuid: &str, _port_id: &str) -> Result<(), VirtError> {
        Err(VirtError::Unsupported("detach_interface"))
    }
    /// Snapshots an attached file-based volume for Block Storage (Nova's
    /// assisted volume snapshots: `create_info` names the new file).
    async fn volume_snapshot_create(
        &self,
        _uuid: &str,
        _volume_id: &str,
        _create_info: &AssistedSnapshot,
    ) -> Result<(), VirtError> {
        Err(VirtError::Unsupported("volume_snapshot_create"))
    }
    async fn volume_snapshot_delete(
        &self,
        _uuid: &str,
        _volume_id: &str,
        _snapshot_id: &str,
    ) -> Result<(), VirtError> {
        Err(VirtError::Unsupported("volume_snapshot_delete"))
    }
    /// The devices of the guest's attached volumes.
    async fn volumes(&self, _uuid: &str) -> Vec<String> {
        Vec::new()
    }
    /// Where the guest's NICs and volumes are on its buses (what Nova's
    /// `_build_device_metadata` reads from the domain): as the running
    /// guest reports them, or where its next start puts them.
    async fn devices(&self, _uuid: &str) -> Result<Vec<GuestDevice>, VirtError> {
        Err(VirtError::Unsupported("device metadata"))
    }
    /// Test hook: make the next `times` calls of `op` fail. Only the fake
    /// driver honours it (returns false elsewhere).
    fn inject_failure(&self, _op: &str, _times: u32) -> bool {
        false
    }
}
