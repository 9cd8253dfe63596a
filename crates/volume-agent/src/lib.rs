//! A host's volume agent (what Cinder's `cinder-volume` is): it owns the
//! host's volume driver and serves Block Storage's typed requests
//! (`ferro_rpc::volume`) on the `cinder-volume` topic for its host. Each
//! request runs in its own task, as the volume manager's workers do; the
//! workflows that send them persist their progress, so a request lost with
//! a dying agent is sent again or undone by the saga that sent it.
//!
//! Image data moves between this host and the Image service directly
//! (cinder-volume's `copy_image_to_volume`, `copy_volume_to_image`),
//! through a scratch directory of this host; no file of the controller's
//! host is read or written.
use ferro_bus::{Bus, Incoming};
use ferro_rpc::RpcError;
use ferro_rpc::volume::{TOPIC, VolumeReply, VolumeRequest, reply_to_wire};
use ferro_voldriver::VolumeDriver;
use std::path::PathBuf;
use std::sync::Arc;

pub struct VolumeAgent {
    pub host: String,
    pub driver: Arc<dyn VolumeDriver>,
    bus: Arc<dyn Bus>,
    /// Where images pass through on their way to or from a volume.
    scratch: PathBuf,
}

impl VolumeAgent {
    pub fn new(
        bus: Arc<dyn Bus>,
        host: String,
        driver: Arc<dyn VolumeDriver>,
        scratch: PathBuf,
    ) -> Arc<VolumeAgent> {
        Arc::new(VolumeAgent {
            host,
            driver,
            bus,
            scratch,
        })
    }

    /// A scratch file, removed when dropped.
    async fn scratch_file(&self, name: String) -> Result<Scratch, RpcError> {
        tokio::fs::create_dir_all(&self.scratch)
            .await
            .map_err(|e| RpcError::Failed(format!("{}: {e}", self.scratch.display())))?;
        Ok(Scratch(self.scratch.join(name)))
    }

    /// Downloads the image and writes it into a new volume.
    async fn create_from_image(
        &self,
        id: &str,
        image_id: &str,
        images: &ferro_rpc::volume::ImageAccess,
        size_gb: u64,
    ) -> Result<(), String> {
        let tmp = self
            .scratch_file(format!("image-{id}"))
            .await
            .map_err(|e| e.to_string())?;
        ferro_image_client::download(&images.endpoint, &images.token, image_id, &tmp.0)
            .await
            .map_err(|e| format!("downloading image {image_id}: {e}"))?;
        self.driver.create_from_file(id, &tmp.0, size_gb).await
    }

    /// Copies the volume out in `format` and uploads it to the image.
    async fn upload_to_image(
        &self,
        id: &str,
        format: &str,
        dest: &ferro_rpc::volume::ImageDestination,
    ) -> Result<(), String> {
        let tmp = self
            .scratch_file(format!("upload-{id}-{}", dest.image_id))
            .await
            .map_err(|e| e.to_string())?;
        self.driver.copy_to_file(id, &tmp.0, format).await?;
        ferro_image_client::upload(&dest.endpoint, &dest.token, &dest.image_id, &tmp.0).await
    }

    /// Subscribes to the host's queue, then serves until the bus closes.
    pub async fn start(
        self: Arc<Self>,
    ) -> Result<tokio::task::JoinHandle<()>, ferro_bus::BusError> {
        let mut sub = self.bus.serve(TOPIC, &self.host).await?;
        Ok(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let agent = self.clone();
                tokio::spawn(async move { agent.handle(msg).await });
            }
        }))
    }

    async fn handle(&self, msg: Incoming) {
        let method = msg.envelope.method.clone();
        let result = match VolumeRequest::from_envelope(&msg.envelope) {
            Ok(req) => self.dispatch(req).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(host = %self.host, %method, "volume agent call failed: {e}");
        }
        msg.reply(reply_to_wire(result)).await;
    }

    /// Runs one request on the driver.
    pub async fn dispatch(&self, req: VolumeRequest) -> Result<VolumeReply, RpcError> {
        let d = &self.driver;
        let done = |r: Result<(), String>| r.map(|()| VolumeReply::Done).map_err(RpcError::Failed);
        match req {
            VolumeRequest::Describe => Ok(VolumeReply::Described {
                name: d.name().to_string(),
                protocol: d.protocol().to_string(),
                vendor: d.vendor().to_string(),
                state: d.state().to_string(),
                capacity: d.capacity().await,
            }),
            VolumeRequest::Create { id, size_gb } => done(d.create(&id, size_gb).await),
            VolumeRequest::CreateFromImage {
                id,
                image_id,
                images,
                size_gb,
            } => done(
                self.create_from_image(&id, &image_id, &images, size_gb)
                    .await,
            ),
            VolumeRequest::CloneVolume { src, id, size_gb } => {
                done(d.clone_volume(&src, &id, size_gb).await)
            }
            VolumeRequest::CreateSnapshot { volume, snapshot } => {
                done(d.create_snapshot(&volume, &snapshot).await)
            }
            VolumeRequest::SnapshotFile { snapshot } => Ok(VolumeReply::SnapshotFile {
                file: d
                    .snapshot_file(&snapshot)
                    .map(|(p, f)| (p.to_string_lossy().into_owned(), f)),
            }),
            VolumeRequest::CreateFromSnapshot {
                snapshot,
                id,
                size_gb,
            } => done(d.create_from_snapshot(&snapshot, &id, size_gb).await),
            VolumeRequest::RevertToSnapshot { volume, snapshot } => {
                done(d.revert_to_snapshot(&volume, &snapshot).await)
            }
            VolumeRequest::Extend { id, size_gb } => d
                .extend(&id, size_gb)
                .await
                .map(|here| VolumeReply::Extended { here })
                .map_err(RpcError::Failed),
            VolumeRequest::Delete { id } => done(d.delete(&id).await),
            VolumeRequest::DeleteSnapshot { snapshot } => done(d.delete_snapshot(&snapshot).await),
            VolumeRequest::Export { id, connector } => d
                .export(&id, &connector)
                .await
                .map(|info| VolumeReply::Connection { info })
                .map_err(RpcError::Failed),
            VolumeRequest::Unexport { id, connector } => done(d.unexport(&id, &connector).await),
            VolumeRequest::UploadToImage { id, format, dest } => {
                done(self.upload_to_image(&id, &format, &dest).await)
            }
            VolumeRequest::Inventory => d
                .inventory()
                .await
                .map(|(volumes, snapshots)| VolumeReply::Inventory { volumes, snapshots })
                .map_err(RpcError::Failed),
        }
    }
}

/// A file of the scratch directory, removed when the request is done
/// (or fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferro_rpc::volume::VolumeClient;

    /// Block Storage's requests reach the driver over the bus and come back
    /// typed; a driver's failure arrives as the driver said it.
    #[tokio::test]
    async fn requests_reach_the_driver_over_the_bus() {
        let bus: Arc<dyn Bus> = Arc::new(ferro_bus::InProcBus::new());
        let agent = VolumeAgent::new(
            bus.clone(),
            "h1".into(),
            Arc::new(ferro_voldriver::FakeDriver::new(10)),
            std::env::temp_dir(),
        );
        agent.start().await.unwrap();
        let c = VolumeClient::new(bus);
        let call = |r: VolumeRequest| {
            let c = c.clone();
            async move { c.call("h1", &r).await }
        };
        assert_eq!(
            call(VolumeRequest::Create {
                id: "v1".into(),
                size_gb: 2
            })
            .await
            .unwrap(),
            VolumeReply::Done
        );
        match call(VolumeRequest::Describe).await.unwrap() {
            VolumeReply::Described { name, capacity, .. } => {
                assert_eq!(name, "fake");
                assert_eq!(capacity.total_gb, 10.0);
            }
            other => panic!("{other:?}"),
        }
        let conn = call(VolumeRequest::Export {
            id: "v1".into(),
            connector: serde_json::json!({"host": "h2"}),
        })
        .await
        .unwrap();
        assert!(matches!(conn, VolumeReply::Connection { .. }), "{conn:?}");
        let err = call(VolumeRequest::CreateSnapshot {
            volume: "nope".into(),
            snapshot: "s".into(),
        })
        .await
        .unwrap_err();
        assert!(matches!(err, RpcError::Failed(_)), "{err:?}");
        // Another host's queue has no agent.
        let none = c.call("h9", &VolumeRequest::Describe).await.unwrap_err();
        assert!(matches!(none, RpcError::NoAgent(_)), "{none:?}");
    }
}
