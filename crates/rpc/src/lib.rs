//! The protocol between the controller and the agents (DESIGN.md §3): every
//! message that crosses the bus is one of the typed requests here, answered
//! by a typed reply or a typed [`RpcError`]. Services and agents both depend
//! on this crate and on nothing of each other's.
//!
//! On the wire a request is one [`ferro_bus::Envelope`]: `method` is the
//! request's name, `args` its fields plus `version` (the sender's
//! [`PROTOCOL_VERSION`]) and, for requests about one guest, `uuid` (the
//! agent queues them per instance). A receiver refuses a message whose
//! version it does not speak with [`RpcError::Incompatible`], which names
//! both versions, so an agent one release behind is told why instead of
//! failing on a field it does not know.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod compute;
pub mod image;
pub mod metadata;
pub mod network;
pub mod volume;

use serde::{Deserialize, Serialize};

/// The protocol this build speaks. 1 was the untyped method-and-JSON
/// protocol of earlier releases; 2 is the first typed one.
pub const PROTOCOL_VERSION: u32 = 2;
/// The oldest peer this build still serves.
pub const MIN_PROTOCOL_VERSION: u32 = 2;

/// Why a call failed, as the agent or the transport says it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum RpcError {
    /// The guest (or the device) is not on that host.
    #[error("{0} not found on this host")]
    NotFound(String),
    /// The driver tried and failed; the message is the driver's own.
    #[error("{0}")]
    Failed(String),
    /// This driver cannot do that operation.
    #[error("operation not supported by this driver: {0}")]
    Unsupported(String),
    /// The peers speak protocol versions that do not overlap.
    #[error(
        "protocol version mismatch: {peer} speaks version {theirs}, this side speaks {ours} (accepts {min} to {ours}); upgrade the older side"
    )]
    Incompatible {
        peer: String,
        ours: u32,
        min: u32,
        theirs: u32,
    },
    /// The message could not be decoded as any request of this version.
    #[error("bad message: {0}")]
    BadMessage(String),
    /// Nobody consumes the target's queue (the agent is not running).
    #[error("no agent consumes {0}")]
    NoAgent(String),
    /// No answer within the call's timeout.
    #[error("no answer from {0} in time")]
    Timeout(String),
    /// The bus itself failed.
    #[error("message bus: {0}")]
    Transport(String),
}

impl RpcError {
    /// The error as it travels in a bus reply (JSON of the typed error).
    pub fn to_wire(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.to_string())
    }
    /// Reads a bus reply's error: typed when the peer speaks this protocol,
    /// else the peer's text as a driver failure.
    pub fn from_wire(s: &str) -> RpcError {
        serde_json::from_str(s).unwrap_or_else(|_| RpcError::Failed(s.to_string()))
    }
    fn from_bus(e: ferro_bus::BusError) -> RpcError {
        match e {
            ferro_bus::BusError::Remote(m) => RpcError::from_wire(&m),
            ferro_bus::BusError::NoConsumer(t) => RpcError::NoAgent(t),
            ferro_bus::BusError::Timeout(t) => RpcError::Timeout(t),
            ferro_bus::BusError::Codec(m) => RpcError::BadMessage(m),
            other => RpcError::Transport(other.to_string()),
        }
    }
    /// A version carried by a message from `peer`, checked against ours.
    pub fn check_version(peer: &str, theirs: u32) -> Result<(), RpcError> {
        if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&theirs) {
            Ok(())
        } else {
            Err(RpcError::Incompatible {
                peer: peer.to_string(),
                ours: PROTOCOL_VERSION,
                min: MIN_PROTOCOL_VERSION,
                theirs,
            })
        }
    }
}

/// Wraps a typed message into an envelope: `method` from its serde tag, the
/// rest and the protocol version in `args`.
fn envelope<T: Serialize>(
    msg: &T,
    request_id: Option<&str>,
) -> Result<ferro_bus::Envelope, RpcError> {
    let mut v = serde_json::to_value(msg).map_err(|e| RpcError::BadMessage(e.to_string()))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| RpcError::BadMessage("a request must be an object".into()))?;
    let method = match obj.remove("method") {
        Some(serde_json::Value::String(m)) => m,
        _ => {
            return Err(RpcError::BadMessage(
                "a request must name its method".into(),
            ));
        }
    };
    obj.insert("version".into(), serde_json::json!(PROTOCOL_VERSION));
    let mut env = ferro_bus::Envelope::new(&method, v);
    env.request_id = request_id.map(str::to_string);
    Ok(env)
}

/// Reads a typed message back from an envelope, refusing other versions.
/// A message without a version is from protocol 1 (untyped).
fn open<T: serde::de::DeserializeOwned>(
    env: &ferro_bus::Envelope,
    peer: &str,
) -> Result<T, RpcError> {
    let theirs = env
        .args
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1) as u32;
    RpcError::check_version(peer, theirs)?;
    let mut v = env.args.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("version");
        obj.insert("method".into(), serde_json::json!(env.method));
    }
    serde_json::from_value(v).map_err(|e| RpcError::BadMessage(format!("{}: {e}", env.method)))
}

/// Workflow steps report failures as text (the saga log keeps messages).
impl From<RpcError> for String {
    fn from(e: RpcError) -> String {
        e.to_string()
    }
}
