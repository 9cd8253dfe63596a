//! The all-in-one bus: tokio channels inside one process. Messages are
//! encoded and decoded exactly as on RabbitMQ.
use crate::{Bus, BusError, Envelope, Incoming, Replier, Reply, Subscription, Target};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Wire = (Vec<u8>, Option<oneshot::Sender<Vec<u8>>>);

#[derive(Default)]
struct Registry {
    /// queue key (`topic` or `topic.server`) → consumers (round-robin)
    queues: HashMap<String, Vec<mpsc::Sender<Wire>>>,
    /// topic → every consumer, for fanout
    fanout: HashMap<String, Vec<mpsc::Sender<Wire>>>,
}

#[derive(Clone, Default)]
pub struct InProcBus {
    reg: Arc<Mutex<Registry>>,
    rr: Arc<AtomicUsize>,
}

struct OneshotReplier(oneshot::Sender<Vec<u8>>);

#[async_trait::async_trait]
impl Replier for OneshotReplier {
    async fn send(self: Box<Self>, reply: Reply) {
        if let Ok(b) = serde_json::to_vec(&reply) {
            let _ = self.0.send(b);
        }
    }
}

impl InProcBus {
    pub fn new() -> InProcBus {
        InProcBus::default()
    }

    fn pick(&self, key: &str) -> Option<mpsc::Sender<Wire>> {
        let mut reg = self.reg.lock().ok()?;
        let list = reg.queues.get_mut(key)?;
        list.retain(|s| !s.is_closed());
        if list.is_empty() {
            return None;
        }
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % list.len();
        Some(list[i].clone())
    }

    async fn send(
        &self,
        to: &Target,
        msg: &Envelope,
        reply: Option<oneshot::Sender<Vec<u8>>>,
    ) -> Result<(), BusError> {
        let bytes = msg.encode()?;
        let tx = self
            .pick(&to.key())
            .ok_or_else(|| BusError::NoConsumer(to.key()))?;
        tx.send((bytes, reply))
            .await
            .map_err(|_| BusError::NoConsumer(to.key()))
    }
}

#[async_trait::async_trait]
impl Bus for InProcBus {
    async fn call(&self, to: &Target, msg: Envelope, timeout: Duration) -> Result<Value, BusError> {
        let (tx, rx) = oneshot::channel();
        self.send(to, &msg, Some(tx)).await?;
        let bytes = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| BusError::Timeout(to.key()))?
            .map_err(|_| BusError::Remote("the consumer dropped the call".into()))?;
        match serde_json::from_slice::<Reply>(&bytes).map_err(|e| BusError::Codec(e.to_string()))? {
            Reply::Ok(v) => Ok(v),
            Reply::Err(e) => Err(BusError::Remote(e)),
        }
    }

    async fn cast(&self, to: &Target, msg: Envelope) -> Result<(), BusError> {
        self.send(to, &msg, None).await
    }

    async fn fanout(&self, topic: &str, msg: Envelope) -> Result<(), BusError> {
        let bytes = msg.encode()?;
        let subs: Vec<mpsc::Sender<Wire>> = match self.reg.lock() {
            Ok(mut reg) => {
                let list = reg.fanout.entry(topic.to_string()).or_default();
                list.retain(|s| !s.is_closed());
                list.clone()
            }
            Err(_) => Vec::new(),
        };
        for s in subs {
            let _ = s.send((bytes.clone(), None)).await;
        }
        Ok(())
    }

    async fn serve(&self, topic: &str, server: &str) -> Result<Subscription, BusError> {
        let (wire_tx, mut wire_rx) = mpsc::channel::<Wire>(1024);
        if let Ok(mut reg) = self.reg.lock() {
            reg.queues
                .entry(topic.to_string())
                .or_default()
                .push(wire_tx.clone());
            reg.queues
                .entry(format!("{topic}.{server}"))
                .or_default()
                .push(wire_tx.clone());
            reg.fanout
                .entry(topic.to_string())
                .or_default()
                .push(wire_tx);
        }
        let (tx, rx) = mpsc::channel::<Incoming>(1024);
        tokio::spawn(async move {
            while let Some((bytes, reply)) = wire_rx.recv().await {
                let envelope = match Envelope::decode(&bytes) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping undecodable bus message");
                        continue;
                    }
                };
                let replier = reply.map(|r| Box::new(OneshotReplier(r)) as Box<dyn Replier>);
                if tx.send(Incoming { envelope, replier }).await.is_err() {
                    break;
                }
            }
        });
        Ok(Subscription { rx })
    }
}
