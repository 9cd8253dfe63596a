//! The message bus between the controller and the agents (DESIGN.md §3):
//! `call` (request/response with a timeout), `cast` (one consumer) and
//! `fanout` (every consumer) to a topic, optionally a specific server (host).
//! `InProcBus` (tokio channels, all-in-one) and `AmqpBus` (RabbitMQ) carry the
//! same serialized [`Envelope`], so the in-process path exercises the real
//! encoding.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod amqp;
pub mod inproc;
pub mod testing;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

pub use amqp::AmqpBus;
pub use inproc::InProcBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no consumer for {0}")]
    NoConsumer(String),
    #[error("call to {0} timed out")]
    Timeout(String),
    #[error("remote error: {0}")]
    Remote(String),
    #[error("bus transport: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("bad message: {0}")]
    Codec(String),
}

/// Where a message goes: every consumer of `topic` shares one queue; a
/// `server` narrows it to that host's consumer (Nova's `prepare(server=)`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub topic: String,
    pub server: Option<String>,
}

impl Target {
    pub fn topic(topic: &str) -> Target {
        Target {
            topic: topic.into(),
            server: None,
        }
    }
    pub fn server(topic: &str, server: &str) -> Target {
        Target {
            topic: topic.into(),
            server: Some(server.into()),
        }
    }
    /// The queue/routing-key name: `topic` or `topic.server`.
    pub fn key(&self) -> String {
        match &self.server {
            Some(s) => format!("{}.{}", self.topic, s),
            None => self.topic.clone(),
        }
    }
}

/// What travels on the wire, identically for both implementations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub method: String,
    #[serde(default)]
    pub args: Value,
    /// `x-openstack-request-id` of the API call that caused the message.
    #[serde(default)]
    pub request_id: Option<String>,
}

impl Envelope {
    pub fn new(method: &str, args: Value) -> Envelope {
        Envelope {
            method: method.into(),
            args,
            request_id: None,
        }
    }
    pub fn encode(&self) -> Result<Vec<u8>, BusError> {
        serde_json::to_vec(self).map_err(|e| BusError::Codec(e.to_string()))
    }
    pub fn decode(b: &[u8]) -> Result<Envelope, BusError> {
        serde_json::from_slice(b).map_err(|e| BusError::Codec(e.to_string()))
    }
}

/// A reply: the method's result or the error it raised.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    Ok(Value),
    Err(String),
}

/// One delivered message; answer calls with [`Incoming::reply`].
pub struct Incoming {
    pub envelope: Envelope,
    pub(crate) replier: Option<Box<dyn Replier>>,
}

impl Incoming {
    pub fn expects_reply(&self) -> bool {
        self.replier.is_some()
    }
    pub async fn reply(self, result: Result<Value, String>) {
        if let Some(r) = self.replier {
            let reply = match result {
                Ok(v) => Reply::Ok(v),
                Err(e) => Reply::Err(e),
            };
            r.send(reply).await;
        }
    }
}

#[async_trait::async_trait]
pub(crate) trait Replier: Send {
    async fn send(self: Box<Self>, reply: Reply);
}

/// A consumer's inbox: direct messages for its server, its share of the
/// topic queue, and the topic's fanouts.
pub struct Subscription {
    pub rx: tokio::sync::mpsc::Receiver<Incoming>,
}

impl Subscription {
    pub async fn next(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }
}

#[async_trait::async_trait]
pub trait Bus: Send + Sync {
    async fn call(&self, to: &Target, msg: Envelope, timeout: Duration) -> Result<Value, BusError>;
    async fn cast(&self, to: &Target, msg: Envelope) -> Result<(), BusError>;
    async fn fanout(&self, topic: &str, msg: Envelope) -> Result<(), BusError>;
    /// Consume as `server` on `topic`.
    async fn serve(&self, topic: &str, server: &str) -> Result<Subscription, BusError>;
}
