//! Block Storage and a host's volume agent (Cinder's `cinder-volume`
//! topic): the API's workflows ask the agent that owns the backend to
//! create, copy, snapshot, grow, export and delete volumes. Volumes and
//! snapshots are named by id and sized in GiB; `export` takes the
//! connector of the host that will attach (Cinder's
//! `initialize_connection`) and answers that host's `connection_info`,
//! `unexport` releases it (`terminate_connection`). Image data moves
//! between the agent's host and the Image service directly, as
//! cinder-volume's `copy_image_to_volume` and `copy_volume_to_image` do:
//! the request carries the Image service's URL and the user's token.
pub use crate::image::{ImageAccess, ImageDestination};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

pub const TOPIC: &str = "cinder-volume";

/// A backend's space.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub total_gb: f64,
    pub free_gb: f64,
}

/// What Block Storage asks a volume agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum VolumeRequest {
    /// The backend's name, protocol, state and space.
    Describe,
    /// A blank volume.
    Create {
        id: String,
        size_gb: u64,
    },
    /// A volume holding image `image_id`, which the agent downloads from
    /// the Image service (its hash verified), grown to `size_gb`; also
    /// what `os-reimage` writes over a volume.
    CreateFromImage {
        id: String,
        image_id: String,
        images: ImageAccess,
        size_gb: u64,
    },
    CloneVolume {
        src: String,
        id: String,
        size_gb: u64,
    },
    CreateSnapshot {
        volume: String,
        snapshot: String,
    },
    /// Where a snapshot's file goes, for a backend whose snapshots of
    /// attached volumes the guest's hypervisor makes.
    SnapshotFile {
        snapshot: String,
    },
    CreateFromSnapshot {
        snapshot: String,
        id: String,
        size_gb: u64,
    },
    RevertToSnapshot {
        volume: String,
        snapshot: String,
    },
    Extend {
        id: String,
        size_gb: u64,
    },
    /// Idempotent.
    Delete {
        id: String,
    },
    /// Idempotent.
    DeleteSnapshot {
        snapshot: String,
    },
    /// Opens the volume to the host of `connector`.
    Export {
        id: String,
        connector: Value,
    },
    /// Closes what `Export` opened for that connector (idempotent).
    Unexport {
        id: String,
        connector: Value,
    },
    /// Uploads the volume's content in `format` (`raw`, or `qcow2` for
    /// any other) to the image `dest` names (upload-to-image).
    UploadToImage {
        id: String,
        format: String,
        dest: ImageDestination,
    },
    /// The ids the backend holds.
    Inventory,
}

impl VolumeRequest {
    pub fn method(&self) -> &'static str {
        match self {
            VolumeRequest::Describe => "describe",
            VolumeRequest::Create { .. } => "create",
            VolumeRequest::CreateFromImage { .. } => "create_from_image",
            VolumeRequest::CloneVolume { .. } => "clone_volume",
            VolumeRequest::CreateSnapshot { .. } => "create_snapshot",
            VolumeRequest::SnapshotFile { .. } => "snapshot_file",
            VolumeRequest::CreateFromSnapshot { .. } => "create_from_snapshot",
            VolumeRequest::RevertToSnapshot { .. } => "revert_to_snapshot",
            VolumeRequest::Extend { .. } => "extend",
            VolumeRequest::Delete { .. } => "delete",
            VolumeRequest::DeleteSnapshot { .. } => "delete_snapshot",
            VolumeRequest::Export { .. } => "export",
            VolumeRequest::Unexport { .. } => "unexport",
            VolumeRequest::UploadToImage { .. } => "upload_to_image",
            VolumeRequest::Inventory => "inventory",
        }
    }

    /// How long the caller waits: data is copied by the creating, cloning,
    /// snapshotting and copying requests (a large image takes minutes);
    /// the others answer at once, and `Describe`, which asks whether the
    /// agent is there at all (Cinder's scheduler reads its heartbeats),
    /// within seconds.
    pub fn timeout(&self) -> Duration {
        match self {
            VolumeRequest::Describe => Duration::from_secs(5),
            VolumeRequest::CreateFromImage { .. }
            | VolumeRequest::CloneVolume { .. }
            | VolumeRequest::CreateSnapshot { .. }
            | VolumeRequest::CreateFromSnapshot { .. }
            | VolumeRequest::RevertToSnapshot { .. }
            | VolumeRequest::UploadToImage { .. } => Duration::from_secs(3600),
            _ => Duration::from_secs(60),
        }
    }

    pub fn to_envelope(
        &self,
        request_id: Option<&str>,
    ) -> Result<ferro_bus::Envelope, crate::RpcError> {
        crate::envelope(self, request_id)
    }

    /// Reads a request from an envelope (the agent's side).
    pub fn from_envelope(env: &ferro_bus::Envelope) -> Result<VolumeRequest, crate::RpcError> {
        crate::open(env, "the block storage service")
    }
}

/// What a volume agent answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum VolumeReply {
    Done,
    /// `here`: the driver grew the volume; false when a running guest's
    /// hypervisor holds it and grows it itself.
    Extended {
        here: bool,
    },
    Described {
        name: String,
        protocol: String,
        vendor: String,
        /// `up` or `down` (Cinder's `backend_state`).
        state: String,
        capacity: Capacity,
    },
    SnapshotFile {
        /// (path, format), or none when the backend snapshots by itself.
        file: Option<(String, String)>,
    },
    /// The `connection_info` for the connector's host.
    Connection {
        info: Value,
    },
    Inventory {
        volumes: Vec<String>,
        snapshots: Vec<String>,
    },
}

/// Encodes an agent's answer for the bus.
pub fn reply_to_wire(r: Result<VolumeReply, crate::RpcError>) -> Result<Value, String> {
    match r {
        Ok(reply) => serde_json::to_value(&reply)
            .map_err(|e| crate::RpcError::BadMessage(e.to_string()).to_wire()),
        Err(e) => Err(e.to_wire()),
    }
}

/// Block Storage's handle on a volume agent.
#[derive(Clone)]
pub struct VolumeClient {
    bus: std::sync::Arc<dyn ferro_bus::Bus>,
}

impl VolumeClient {
    pub fn new(bus: std::sync::Arc<dyn ferro_bus::Bus>) -> VolumeClient {
        VolumeClient { bus }
    }

    /// Calls `host`'s volume agent and waits for its typed answer.
    pub async fn call(
        &self,
        host: &str,
        req: &VolumeRequest,
    ) -> Result<VolumeReply, crate::RpcError> {
        let env = req.to_envelope(None)?;
        let v = self
            .bus
            .call(&ferro_bus::Target::server(TOPIC, host), env, req.timeout())
            .await
            .map_err(crate::RpcError::from_bus)?;
        serde_json::from_value(v)
            .map_err(|e| crate::RpcError::BadMessage(format!("reply to {}: {e}", req.method())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_cross_the_wire_intact() {
        let req = VolumeRequest::Export {
            id: "v1".into(),
            connector: serde_json::json!({"host": "h1", "initiator": "iqn.x"}),
        };
        let env = req.to_envelope(Some("req-1")).unwrap();
        assert_eq!(env.method, "export");
        assert_eq!(VolumeRequest::from_envelope(&env).unwrap(), req);
        let reply = VolumeReply::SnapshotFile {
            file: Some(("/v/snapshot-s".into(), "qcow2".into())),
        };
        let wire = reply_to_wire(Ok(reply.clone())).unwrap();
        assert_eq!(serde_json::from_value::<VolumeReply>(wire).unwrap(), reply);
        // The user's token crosses the bus but is never logged.
        let req = VolumeRequest::CreateFromImage {
            id: "v".into(),
            image_id: "i".into(),
            images: ImageAccess {
                endpoint: "http://127.0.0.1/image".into(),
                token: "secret-token".into(),
            },
            size_gb: 1,
        };
        let env = req.to_envelope(None).unwrap();
        assert_eq!(VolumeRequest::from_envelope(&env).unwrap(), req);
        assert!(!format!("{req:?}").contains("secret-token"));
        assert!(
            VolumeRequest::UploadToImage {
                id: "v".into(),
                format: "raw".into(),
                dest: ImageDestination {
                    image_id: "i".into(),
                    endpoint: "http://127.0.0.1/image".into(),
                    token: "secret".into()
                }
            }
            .timeout()
                > VolumeRequest::Describe.timeout()
        );
    }
}
