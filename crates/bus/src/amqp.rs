//! RabbitMQ bus (lapin): one topic exchange `ferrostack` routes `topic` (a
//! queue every consumer of the topic shares) and `topic.server` (one host's
//! queue); fanouts go through a fanout exchange per topic with one private
//! queue per consumer. Calls carry `reply_to` (this bus's private reply
//! queue) and a `correlation_id`.
use crate::{Bus, BusError, Envelope, Incoming, Replier, Reply, Subscription, Target};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const EXCHANGE: &str = "ferrostack";

fn transport(e: lapin::Error) -> BusError {
    BusError::Transport(Box::new(e))
}

/// A server-named queue only this connection uses, gone when it closes.
async fn private_queue(ch: &Channel) -> Result<String, BusError> {
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(transport)?;
    Ok(q.name().as_str().to_string())
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

pub struct AmqpBus {
    conn: Connection,
    publish: Channel,
    reply_queue: String,
    pending: Pending,
}

impl AmqpBus {
    /// Connects to `url` (`amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub async fn connect(url: &str) -> Result<AmqpBus, BusError> {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(transport)?;
        let publish = conn.create_channel().await.map_err(transport)?;
        publish
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(transport)?;
        let reply_queue = private_queue(&publish).await?;
        let mut replies = publish
            .basic_consume(
                reply_queue.as_str().into(),
                "ferro-replies".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(transport)?;
        let pending: Pending = Arc::default();
        let p = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = replies.next().await {
                let Some(corr) = d
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str().to_string())
                else {
                    continue;
                };
                let waiter = p.lock().ok().and_then(|mut m| m.remove(&corr));
                if let Some(tx) = waiter {
                    let _ = tx.send(d.data);
                }
            }
        });
        Ok(AmqpBus {
            conn,
            publish,
            reply_queue,
            pending,
        })
    }

    async fn publish(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BusError> {
        let confirm = self
            .publish
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .map_err(transport)?;
        confirm.await.map_err(transport)?;
        Ok(())
    }

    /// Removes a topic's queues and fanout exchange (tests, decommissioning).
    pub async fn delete_topic(&self, topic: &str, servers: &[&str]) -> Result<(), BusError> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let mut names = vec![topic.to_string()];
        names.extend(servers.iter().map(|s| format!("{topic}.{s}")));
        for n in names {
            self.publish
                .queue_delete(n.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(transport)?;
        }
        self.publish
            .exchange_delete(
                Self::fanout_exchange(topic).as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(transport)?;
        Ok(())
    }

    fn fanout_exchange(topic: &str) -> String {
        format!("{EXCHANGE}.fanout.{topic}")
    }
}

struct AmqpReplier {
    channel: Channel,
    reply_to: String,
    correlation_id: String,
}

#[async_trait::async_trait]
impl Replier for AmqpReplier {
    async fn send(self: Box<Self>, reply: Reply) {
        let Ok(body) = serde_json::to_vec(&reply) else {
            return;
        };
        let props =
            BasicProperties::default().with_correlation_id(self.correlation_id.as_str().into());
        // The default exchange routes by queue name.
        let r = self
            .channel
            .basic_publish(
                "".into(),
                self.reply_to.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not send a bus reply");
        }
    }
}

#[async_trait::async_trait]
impl Bus for AmqpBus {
    async fn call(&self, to: &Target, msg: Envelope, timeout: Duration) -> Result<Value, BusError> {
        let corr = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(corr.clone(), tx);
        }
        let props = BasicProperties::default()
            .with_reply_to(self.reply_queue.as_str().into())
            .with_correlation_id(corr.as_str().into());
        if let Err(e) = self
            .publish(EXCHANGE, &to.key(), &msg.encode()?, props)
            .await
        {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&corr);
            }
            return Err(e);
        }
        let res = tokio::time::timeout(timeout, rx).await;
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&corr);
        }
        let bytes = res
            .map_err(|_| BusError::Timeout(to.key()))?
            .map_err(|_| BusError::Timeout(to.key()))?;
        match serde_json::from_slice::<Reply>(&bytes).map_err(|e| BusError::Codec(e.to_string()))? {
            Reply::Ok(v) => Ok(v),
            Reply::Err(e) => Err(BusError::Remote(e)),
        }
    }

    async fn cast(&self, to: &Target, msg: Envelope) -> Result<(), BusError> {
        self.publish(
            EXCHANGE,
            &to.key(),
            &msg.encode()?,
            BasicProperties::default(),
        )
        .await
    }

    async fn fanout(&self, topic: &str, msg: Envelope) -> Result<(), BusError> {
        let ex = Self::fanout_exchange(topic);
        self.publish
            .exchange_declare(
                ex.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(transport)?;
        self.publish(&ex, "", &msg.encode()?, BasicProperties::default())
            .await
    }

    async fn serve(&self, topic: &str, server: &str) -> Result<Subscription, BusError> {
        let ch = self.conn.create_channel().await.map_err(transport)?;
        ch.basic_qos(64, BasicQosOptions::default())
            .await
            .map_err(transport)?;
        let fan = Self::fanout_exchange(topic);
        ch.exchange_declare(
            fan.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(transport)?;
        let mut queues = Vec::new();
        for (name, exclusive) in [
            (topic.to_string(), false),
            (format!("{topic}.{server}"), false),
        ] {
            ch.queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    exclusive,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(transport)?;
            ch.queue_bind(
                name.as_str().into(),
                EXCHANGE.into(),
                name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(transport)?;
            queues.push(name);
        }
        let fq = private_queue(&ch).await?;
        ch.queue_bind(
            fq.as_str().into(),
            fan.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(transport)?;
        queues.push(fq);
        let (tx, rx) = mpsc::channel::<Incoming>(1024);
        for (i, q) in queues.into_iter().enumerate() {
            let mut consumer = ch
                .basic_consume(
                    q.as_str().into(),
                    format!("ferro-{server}-{i}").as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(transport)?;
            let tx = tx.clone();
            let ch = ch.clone();
            tokio::spawn(async move {
                while let Some(Ok(d)) = consumer.next().await {
                    let _ = d.acker.ack(BasicAckOptions::default()).await;
                    let envelope = match Envelope::decode(&d.data) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(error = %e, "dropping undecodable bus message");
                            continue;
                        }
                    };
                    let replier = match (d.properties.reply_to(), d.properties.correlation_id()) {
                        (Some(r), Some(c)) => Some(Box::new(AmqpReplier {
                            channel: ch.clone(),
                            reply_to: r.as_str().to_string(),
                            correlation_id: c.as_str().to_string(),
                        }) as Box<dyn Replier>),
                        _ => None,
                    };
                    if tx.send(Incoming { envelope, replier }).await.is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Subscription { rx })
    }
}
