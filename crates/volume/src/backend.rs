//! The backend as Block Storage sees it: the `VolumeBackend` seam its
//! workflows and handlers call, and `BusVolumeBackend`, which sends each
//! call over the bus to the volume agent that owns the driver
//! (`ferro_rpc::volume`, Cinder's `cinder-volume` topic). The service
//! never touches a volume's data itself.
//!
//! Image data moves between the agent's host and the Image service
//! directly: the requests carry the Image service's URL and a token minted
//! for the user (never stored); no file crosses between hosts. A snapshot
//! file (`snapshot_file`) is a path on the agent's host, which the guest's
//! hypervisor writes when the volume is attached there.
pub use ferro_rpc::volume::{ImageAccess, ImageDestination};
use ferro_rpc::volume::{VolumeClient, VolumeReply, VolumeRequest};
use serde_json::Value;
use std::path::PathBuf;

pub use ferro_rpc::volume::Capacity;

pub type BResult<T> = Result<T, String>;

#[async_trait::async_trait]
pub trait VolumeBackend: Send + Sync {
    /// `volume_backend_name` (also the pool name).
    fn name(&self) -> &str;
    /// `storage_protocol` as the capabilities report it.
    fn protocol(&self) -> &str;
    fn vendor(&self) -> &str {
        "ferrostack"
    }
    /// `backend_state` in the services list (3.49): `up` or `down` (also
    /// when its agent does not answer).
    async fn state(&self) -> &'static str;
    async fn capacity(&self) -> Capacity;
    /// A blank volume of `size_gb`.
    async fn create(&self, id: &str, size_gb: u64) -> BResult<()>;
    /// A volume holding image `image_id`, which the agent downloads from
    /// the Image service with `images`, grown to `size_gb` (also what
    /// re-imaging writes over a volume).
    async fn create_from_image(
        &self,
        id: &str,
        image_id: &str,
        images: ImageAccess,
        size_gb: u64,
    ) -> BResult<()>;
    async fn clone_volume(&self, src: &str, id: &str, size_gb: u64) -> BResult<()>;
    async fn create_snapshot(&self, vol: &str, snap: &str) -> BResult<()>;
    /// Where a snapshot's file goes and its format, for a backend whose
    /// snapshots of attached volumes the guest's hypervisor makes; `None`:
    /// the backend snapshots by itself.
    async fn snapshot_file(&self, snap: &str) -> BResult<Option<(PathBuf, String)>>;
    async fn create_from_snapshot(&self, snap: &str, id: &str, size_gb: u64) -> BResult<()>;
    /// Rolls the volume back to the snapshot's content (size unchanged).
    async fn revert_to_snapshot(&self, vol: &str, snap: &str) -> BResult<()>;
    /// `Ok(false)`: a running guest's hypervisor holds the volume and
    /// grows it when Compute hears of the new size.
    async fn extend(&self, id: &str, size_gb: u64) -> BResult<bool>;
    /// Idempotent: deleting what is not there succeeds.
    async fn delete(&self, id: &str) -> BResult<()>;
    async fn delete_snapshot(&self, snap: &str) -> BResult<()>;
    /// What the host of `connector` needs to attach the volume.
    async fn export(&self, id: &str, connector: &Value) -> BResult<Value>;
    /// Closes what `export` opened for `connector` (idempotent).
    async fn unexport(&self, id: &str, connector: &Value) -> BResult<()>;
    /// Uploads the volume's content in `format` to the image `dest` names
    /// (upload-to-image).
    async fn upload_to_image(&self, id: &str, format: &str, dest: ImageDestination) -> BResult<()>;
    /// Ids of the volumes and of the snapshots the backend holds.
    async fn inventory(&self) -> BResult<(Vec<String>, Vec<String>)>;
}

/// The backend of the volume agent of `host`, over the bus.
pub struct BusVolumeBackend {
    client: VolumeClient,
    host: String,
    name: String,
}

impl BusVolumeBackend {
    /// `name`: the backend's name (`[volume] volume_driver`), known
    /// without asking, for the services and pools it names.
    pub fn new(client: VolumeClient, host: String, name: String) -> BusVolumeBackend {
        BusVolumeBackend { client, host, name }
    }

    async fn call(&self, req: VolumeRequest) -> BResult<VolumeReply> {
        self.client
            .call(&self.host, &req)
            .await
            .map_err(|e| format!("the volume agent of {}: {e}", self.host))
    }

    async fn done(&self, req: VolumeRequest) -> BResult<()> {
        match self.call(req).await? {
            VolumeReply::Done => Ok(()),
            other => Err(format!("the volume agent answered {other:?}")),
        }
    }
}

#[async_trait::async_trait]
impl VolumeBackend for BusVolumeBackend {
    fn name(&self) -> &str {
        &self.name
    }
    fn protocol(&self) -> &str {
        &self.name
    }
    async fn state(&self) -> &'static str {
        match self.call(VolumeRequest::Describe).await {
            Ok(VolumeReply::Described { state, .. }) if state == "up" => "up",
            _ => "down",
        }
    }
    async fn capacity(&self) -> Capacity {
        match self.call(VolumeRequest::Describe).await {
            Ok(VolumeReply::Described { capacity, .. }) => capacity,
            Ok(_) | Err(_) => Capacity {
                total_gb: 0.0,
                free_gb: 0.0,
            },
        }
    }
    async fn create(&self, id: &str, size_gb: u64) -> BResult<()> {
        self.done(VolumeRequest::Create {
            id: id.into(),
            size_gb,
        })
        .await
    }
    async fn create_from_image(
        &self,
        id: &str,
        image_id: &str,
        images: ImageAccess,
        size_gb: u64,
    ) -> BResult<()> {
        self.done(VolumeRequest::CreateFromImage {
            id: id.into(),
            image_id: image_id.into(),
            images,
            size_gb,
        })
        .await
    }
    async fn clone_volume(&self, src: &str, id: &str, size_gb: u64) -> BResult<()> {
        self.done(VolumeRequest::CloneVolume {
            src: src.into(),
            id: id.into(),
            size_gb,
        })
        .await
    }
    async fn create_snapshot(&self, vol: &str, snap: &str) -> BResult<()> {
        self.done(VolumeRequest::CreateSnapshot {
            volume: vol.into(),
            snapshot: snap.into(),
        })
        .await
    }
    async fn snapshot_file(&self, snap: &str) -> BResult<Option<(PathBuf, String)>> {
        match self
            .call(VolumeRequest::SnapshotFile {
                snapshot: snap.into(),
            })
            .await?
        {
            VolumeReply::SnapshotFile { file } => Ok(file.map(|(p, f)| (PathBuf::from(p), f))),
            other => Err(format!("the volume agent answered {other:?}")),
        }
    }
    async fn create_from_snapshot(&self, snap: &str, id: &str, size_gb: u64) -> BResult<()> {
        self.done(VolumeRequest::CreateFromSnapshot {
            snapshot: snap.into(),
            id: id.into(),
            size_gb,
        })
        .await
    }
    async fn revert_to_snapshot(&self, vol: &str, snap: &str) -> BResult<()> {
        self.done(VolumeRequest::RevertToSnapshot {
            volume: vol.into(),
            snapshot: snap.into(),
        })
        .await
    }
    async fn extend(&self, id: &str, size_gb: u64) -> BResult<bool> {
        match self
            .call(VolumeRequest::Extend {
                id: id.into(),
                size_gb,
            })
            .await?
        {
            VolumeReply::Extended { here } => Ok(here),
            other => Err(format!("the volume agent answered {other:?}")),
        }
    }
    async fn delete(&self, id: &str) -> BResult<()> {
        self.done(VolumeRequest::Delete { id: id.into() }).await
    }
    async fn delete_snapshot(&self, snap: &str) -> BResult<()> {
        self.done(VolumeRequest::DeleteSnapshot {
            snapshot: snap.into(),
        })
        .await
    }
    async fn export(&self, id: &str, connector: &Value) -> BResult<Value> {
        match self
            .call(VolumeRequest::Export {
                id: id.into(),
                connector: connector.clone(),
            })
            .await?
        {
            VolumeReply::Connection { info } => Ok(info),
            other => Err(format!("the volume agent answered {other:?}")),
        }
    }
    async fn unexport(&self, id: &str, connector: &Value) -> BResult<()> {
        self.done(VolumeRequest::Unexport {
            id: id.into(),
            connector: connector.clone(),
        })
        .await
    }
    async fn upload_to_image(&self, id: &str, format: &str, dest: ImageDestination) -> BResult<()> {
        self.done(VolumeRequest::UploadToImage {
            id: id.into(),
            format: format.into(),
            dest,
        })
        .await
    }
    async fn inventory(&self) -> BResult<(Vec<String>, Vec<String>)> {
        match self.call(VolumeRequest::Inventory).await? {
            VolumeReply::Inventory { volumes, snapshots } => Ok((volumes, snapshots)),
            other => Err(format!("the volume agent answered {other:?}")),
        }
    }
}
