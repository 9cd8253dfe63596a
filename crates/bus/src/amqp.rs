//! RabbitMQ bus (lapin): one topic exchange `ferrostack` routes `topic` (a
//! queue every consumer of the topic shares) and `topic.server` (one host's
//! queue); fanouts go through a fanout exchange per topic with one private
//! queue per consumer. Calls carry `reply_to` (this bus's private reply
//! queue) and a `correlation_id`.
//!
//! # Surviving broker restarts
//!
//! An [`AmqpBus`] owns a supervisor task. Whenever the connection, the
//! publishing channel, the reply consumer or a consumer's channel is lost
//! (broker restart, connection reset, heartbeat timeout), the supervisor
//! drops that connection and reconnects with exponential backoff (100 ms
//! doubling up to 5 s, forever, logging at `warn`). On the new connection it
//! re-declares the `ferrostack` exchange, creates a new private reply queue
//! and re-attaches every consumer created by [`Bus::serve`] (the shared
//! `topic` / `topic.server` queues are re-declared under the same names, the
//! private fanout queue is re-created), feeding the same [`Subscription`], so
//! agents keep their receiver across reconnects.
//!
//! While disconnected, publishes wait for the reconnection instead of failing
//! at once: `call` waits up to its own timeout, `cast`, `fanout`, `serve`,
//! replies and [`AmqpBus::delete_topic`] up to [`PUBLISH_WAIT`]; past that
//! they fail with [`BusError::Transport`]. A call whose request went out on a
//! connection that is then lost fails at once with `BusError::Transport`
//! (its reply queue is gone with the connection) instead of hanging until its
//! timeout.
//!
//! # Nothing vanishes silently
//!
//! The publishing channel runs in confirm mode and `call`/`cast` publish
//! with `mandatory`: a message no queue is bound for (the host never served
//! on this broker, or has not re-attached yet after a broker restart) comes
//! back. A call retries it until its deadline, or [`PUBLISH_WAIT`] if
//! sooner (an agent re-attaching after a restart is back within its
//! backoff), then fails with [`BusError::NoConsumer`]; a cast fails with it
//! at once. A call's request carries the call's remaining timeout as its
//! AMQP `expiration` (as oslo.messaging does): a request queued for an agent
//! that is down runs if the agent returns while the caller still waits, and
//! never after the caller gave up. A consumer whose subscription is gone
//! returns deliveries to the queue unacknowledged instead of dropping them.
use crate::{Bus, BusError, Envelope, Incoming, Replier, Reply, Subscription, Target};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, ChannelStatus, Connection, ConnectionProperties, ConnectionStatus,
    Consumer, Event, ExchangeKind,
};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

const EXCHANGE: &str = "ferrostack";

/// How long `cast`, `fanout`, `serve`, replies and `delete_topic` wait for a
/// lost connection to come back before failing with `BusError::Transport`.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(10);
/// Reconnect backoff: first delay, doubled after each failure up to the max.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bound on one connection attempt (TCP + AMQP handshake + topology).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between attempts of a call whose request no queue was bound for.
const NO_ROUTE_RETRY: Duration = Duration::from_millis(200);

fn transport(e: lapin::Error) -> BusError {
    BusError::Transport(Box::new(e))
}

fn transport_msg(m: &str) -> BusError {
    BusError::Transport(m.into())
}

/// A server-named queue only this connection uses, gone when it closes.
async fn private_queue(ch: &Channel) -> Result<String, lapin::Error> {
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
        .await?;
    Ok(q.name().as_str().to_string())
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// Raised (once) when a connection is found dead; the supervisor reconnects.
#[derive(Clone)]
struct LostFlag(Arc<watch::Sender<bool>>);

impl LostFlag {
    fn new() -> LostFlag {
        LostFlag(Arc::new(watch::channel(false).0))
    }
    fn raise(&self) {
        self.0.send_replace(true);
    }
    fn is_raised(&self) -> bool {
        *self.0.borrow()
    }
    /// Resolves once the flag is raised.
    async fn raised(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }
}

/// One established connection and what hangs off it.
struct Live {
    conn: Connection,
    publish: Channel,
    reply_queue: String,
    lost: LostFlag,
}

impl Live {
    /// Marks the connection lost if lapin already knows it is; true if usable.
    fn check(&self) -> bool {
        if self.lost.is_raised() {
            return false;
        }
        if !self.conn.status().connected() || !self.publish.status().connected() {
            self.lost.raise();
            return false;
        }
        true
    }
}

/// A `serve()` registration, re-attached on every new connection.
struct SubSpec {
    topic: String,
    server: String,
    tx: mpsc::Sender<Incoming>,
}

struct Inner {
    url: String,
    /// The usable connection, `None` while reconnecting.
    state: watch::Sender<Option<Arc<Live>>>,
    pending: Pending,
    subs: Mutex<Vec<SubSpec>>,
    /// Serializes attaching consumers with publishing a new connection, so a
    /// `serve()` racing a reconnect is attached exactly once.
    attach: tokio::sync::Mutex<()>,
    consumer_seq: AtomicU64,
}

/// A RabbitMQ [`Bus`] that reconnects by itself; see the module docs.
pub struct AmqpBus {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
}

impl Drop for AmqpBus {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl AmqpBus {
    /// Connects to `url` (`amqp://guest:guest@127.0.0.1:5672/%2f`). The first
    /// connection must succeed (an unreachable broker at startup is an
    /// error); later losses are repaired in the background.
    pub async fn connect(url: &str) -> Result<AmqpBus, BusError> {
        let inner = Arc::new(Inner {
            url: url.to_string(),
            state: watch::channel(None).0,
            pending: Arc::default(),
            subs: Mutex::new(Vec::new()),
            attach: tokio::sync::Mutex::new(()),
            consumer_seq: AtomicU64::new(0),
        });
        let live = tokio::time::timeout(CONNECT_TIMEOUT, establish(&inner))
            .await
            .map_err(|_| transport_msg("timed out connecting to the broker"))?
            .map_err(transport)?;
        inner.state.send_replace(Some(live.clone()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(supervise(inner.clone(), live, shutdown_rx));
        Ok(AmqpBus { inner, shutdown })
    }

    /// Whether the bus currently has a usable broker connection.
    pub fn is_connected(&self) -> bool {
        self.inner
            .state
            .borrow()
            .as_ref()
            .is_some_and(|l| l.check())
    }

    /// Removes a topic's queues and fanout exchange (tests, decommissioning).
    /// This bus's own `serve()` registrations for the topic are forgotten
    /// (not re-attached after a reconnect); their subscriptions end.
    pub async fn delete_topic(&self, topic: &str, servers: &[&str]) -> Result<(), BusError> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        if let Ok(mut subs) = self.inner.subs.lock() {
            subs.retain(|s| s.topic != topic);
        }
        let mut names = vec![topic.to_string()];
        names.extend(servers.iter().map(|s| format!("{topic}.{s}")));
        let fan = fanout_exchange(topic);
        let deadline = Instant::now() + PUBLISH_WAIT;
        self.inner
            .with_live(deadline, |live| {
                let (names, fan) = (&names, &fan);
                async move {
                    for n in names {
                        live.publish
                            .queue_delete(n.as_str().into(), QueueDeleteOptions::default())
                            .await?;
                    }
                    live.publish
                        .exchange_delete(fan.as_str().into(), ExchangeDeleteOptions::default())
                        .await
                }
            })
            .await
    }

    /// Removes the queues of `servers` on `topic` only (a decommissioned
    /// host), leaving the topic's shared queue and exchange to others.
    pub async fn delete_server_queues(
        &self,
        topic: &str,
        servers: &[&str],
    ) -> Result<(), BusError> {
        use lapin::options::QueueDeleteOptions;
        if let Ok(mut subs) = self.inner.subs.lock() {
            subs.retain(|s| s.topic != topic || !servers.contains(&s.server.as_str()));
        }
        let names: Vec<String> = servers.iter().map(|s| format!("{topic}.{s}")).collect();
        self.inner
            .with_live(Instant::now() + PUBLISH_WAIT, |live| {
                let names = &names;
                async move {
                    for n in names {
                        live.publish
                            .queue_delete(n.as_str().into(), QueueDeleteOptions::default())
                            .await?;
                    }
                    Ok(())
                }
            })
            .await
    }
}

fn fanout_exchange(topic: &str) -> String {
    format!("{EXCHANGE}.fanout.{topic}")
}

/// Opens a connection: the `ferrostack` exchange, a fresh private reply queue
/// and its consumer, and a watcher that raises `lost` when lapin reports the
/// connection dead.
async fn establish(inner: &Inner) -> Result<Arc<Live>, lapin::Error> {
    let conn = Connection::connect(&inner.url, ConnectionProperties::default()).await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    publish
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
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
        .await?;
    let lost = LostFlag::new();

    // Replies, matched to waiting calls by correlation id. The reply
    // consumer never ends while the connection is healthy.
    let (p, l) = (inner.pending.clone(), lost.clone());
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
        l.raise();
    });

    // Connection-level errors (socket closed, missed heartbeats).
    let mut events = conn.events_listener();
    let (status, pub_status, l) = (
        conn.status().clone(),
        publish.status().clone(),
        lost.clone(),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = l.raised() => break,
                e = events.next() => match e {
                    Some(Event::Error(_)) if !status.connected() || !pub_status.connected() => {
                        l.raise();
                        break;
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
    });

    Ok(Arc::new(Live {
        conn,
        publish,
        reply_queue,
        lost,
    }))
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Watches the current connection; when it is lost, reconnects with backoff
/// and re-attaches every subscription. Ends when the `AmqpBus` is dropped.
async fn supervise(inner: Arc<Inner>, mut live: Arc<Live>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = live.lost.raised() => {}
            _ = stopped(&mut shutdown) => {
                inner.state.send_replace(None);
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    live.conn.close(200, "bus dropped".into()),
                )
                .await;
                return;
            }
        }
        inner.state.send_replace(None);
        tracing::warn!("AMQP connection lost; reconnecting");
        let old = live;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                old.conn.close(320, "reconnecting".into()),
            )
            .await;
        });
        let mut delay = BACKOFF_MIN;
        let mut attempt: u32 = 0;
        live = loop {
            attempt += 1;
            let res = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, reconnect(&inner)) => r,
                _ = stopped(&mut shutdown) => return,
            };
            match res {
                Ok(Ok(l)) => break l,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, attempt, retry_in = ?delay, "AMQP reconnect failed");
                }
                Err(_) => {
                    tracing::warn!(attempt, retry_in = ?delay, "AMQP reconnect timed out");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut shutdown) => return,
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        };
        tracing::warn!(attempt, "AMQP connection re-established");
    }
}

/// A new connection with every live subscription attached, published as the
/// current one.
async fn reconnect(inner: &Arc<Inner>) -> Result<Arc<Live>, BusError> {
    let live = establish(inner).await.map_err(transport)?;
    let _guard = inner.attach.lock().await;
    let specs: Vec<(String, String, mpsc::Sender<Incoming>)> = match inner.subs.lock() {
        Ok(mut subs) => {
            subs.retain(|s| !s.tx.is_closed());
            subs.iter()
                .map(|s| (s.topic.clone(), s.server.clone(), s.tx.clone()))
                .collect()
        }
        Err(_) => Vec::new(),
    };
    for (topic, server, tx) in specs {
        if let Err(e) = attach(inner, &live, &topic, &server, tx).await {
            if !live.check() {
                return Err(transport(e));
            }
            // The connection is fine but this subscription's topology is not
            // (e.g. a queue redeclared with other arguments): keep the rest
            // working and retry it on the next reconnect.
            tracing::error!(error = %e, %topic, %server, "could not re-attach a bus subscription");
        }
    }
    inner.state.send_replace(Some(live.clone()));
    Ok(live)
}

/// Declares a subscription's queues on `live` and starts its consumers,
/// which feed `tx`. All or nothing: no consumer runs unless all started.
async fn attach(
    inner: &Arc<Inner>,
    live: &Arc<Live>,
    topic: &str,
    server: &str,
    tx: mpsc::Sender<Incoming>,
) -> Result<(), lapin::Error> {
    let ch = live.conn.create_channel().await?;
    let consumers = match declare_and_consume(inner, &ch, topic, server).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ch.close(200, "attach failed".into()).await;
            return Err(e);
        }
    };
    for consumer in consumers {
        tokio::spawn(consume(
            consumer,
            ch.clone(),
            live.conn.status().clone(),
            live.lost.clone(),
            Arc::downgrade(inner),
            tx.clone(),
        ));
    }
    Ok(())
}

async fn declare_and_consume(
    inner: &Inner,
    ch: &Channel,
    topic: &str,
    server: &str,
) -> Result<Vec<Consumer>, lapin::Error> {
    ch.basic_qos(64, BasicQosOptions::default()).await?;
    let fan = fanout_exchange(topic);
    ch.exchange_declare(
        fan.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut queues = Vec::new();
    // Shared, named queues: re-declared under the same name on reconnect.
    for name in [topic.to_string(), format!("{topic}.{server}")] {
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            name.as_str().into(),
            EXCHANGE.into(),
            name.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        queues.push(name);
    }
    // This consumer's fanout queue dies with the connection; a new one.
    let fq = private_queue(ch).await?;
    ch.queue_bind(
        fq.as_str().into(),
        fan.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    queues.push(fq);
    let mut consumers = Vec::new();
    for q in queues {
        let n = inner.consumer_seq.fetch_add(1, Ordering::Relaxed);
        consumers.push(
            ch.basic_consume(
                q.as_str().into(),
                format!("ferro-{server}-{n}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?,
        );
    }
    Ok(consumers)
}

/// Feeds one AMQP consumer into a subscription until the consumer ends. If
/// it ended because the channel or connection died, the connection is
/// marked lost (the supervisor re-attaches); if the broker cancelled it
/// (queue deleted) or the subscription is gone, it just stops.
async fn consume(
    mut consumer: Consumer,
    ch: Channel,
    conn: ConnectionStatus,
    lost: LostFlag,
    inner: Weak<Inner>,
    tx: mpsc::Sender<Incoming>,
) {
    while let Some(Ok(d)) = consumer.next().await {
        if tx.is_closed() {
            // Nobody reads this subscription any more. Closing its channel
            // (its own, see `attach`) hands this message and any other
            // unacknowledged one back to their queues, and ends the
            // subscription's other consumers.
            let _ = ch.close(200, "subscription dropped".into()).await;
            return;
        }
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
                inner: inner.clone(),
                reply_to: r.as_str().to_string(),
                correlation_id: c.as_str().to_string(),
            }) as Box<dyn Replier>),
            _ => None,
        };
        if tx.send(Incoming { envelope, replier }).await.is_err() {
            return;
        }
    }
    if tx.is_closed() {
        return;
    }
    if dead(&conn, ch.status()) {
        lost.raise();
    } else {
        tracing::info!(queue = %consumer.queue(), "bus consumer cancelled by the broker");
    }
}

fn dead(conn: &ConnectionStatus, ch: &ChannelStatus) -> bool {
    !conn.connected() || !ch.connected()
}

impl Inner {
    /// The current usable connection, waiting for a reconnection until
    /// `deadline`.
    async fn live(&self, deadline: Instant) -> Result<Arc<Live>, BusError> {
        if let Some(l) = self.state.borrow().as_ref() {
            l.check();
        }
        let mut rx = self.state.subscribe();
        let wait = rx.wait_for(|s| s.as_ref().is_some_and(|l| !l.lost.is_raised()));
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(s)) => s
                .clone()
                .ok_or_else(|| transport_msg("not connected to the broker")),
            _ => Err(transport_msg("not connected to the broker")),
        }
    }

    /// Runs `op` on the current connection; if it fails because that
    /// connection died, waits for the next one and retries, until `deadline`.
    async fn with_live<T, F, Fut>(&self, deadline: Instant, mut op: F) -> Result<T, BusError>
    where
        F: FnMut(Arc<Live>) -> Fut,
        Fut: Future<Output = Result<T, lapin::Error>>,
    {
        loop {
            let live = self.live(deadline).await?;
            match tokio::time::timeout_at(deadline, op(live.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    if live.check() || Instant::now() >= deadline {
                        return Err(transport(e));
                    }
                    tracing::warn!(error = %e, "bus operation hit a lost connection; retrying once reconnected");
                }
                Err(_) => return Err(transport_msg("timed out waiting for the broker")),
            }
        }
    }

    async fn publish(
        &self,
        deadline: Instant,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
        mandatory: bool,
    ) -> Result<Routed, BusError> {
        self.with_live(deadline, |live| {
            let props = props.clone();
            async move { publish_on(&live, exchange, key, body, props, mandatory).await }
        })
        .await
    }
}

/// What became of a published message.
#[derive(Debug, PartialEq)]
enum Routed {
    /// The broker took it (queued, or dropped by design: not mandatory).
    Yes,
    /// Mandatory and no queue is bound for its key: it came back.
    Returned,
    /// The broker could not take it (a negative confirm).
    Refused,
}

fn refused(key: &str) -> BusError {
    transport_msg(&format!("the broker refused a message for {key}"))
}

async fn publish_on(
    live: &Live,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
    mandatory: bool,
) -> Result<Routed, lapin::Error> {
    let confirm = live
        .publish
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            body,
            props,
        )
        .await?
        .await?;
    if !confirm.is_ack() {
        return Ok(Routed::Refused);
    }
    Ok(match confirm.take_message() {
        Some(_) => Routed::Returned,
        None => Routed::Yes,
    })
}

/// Answers a call on whatever connection is current when the reply is sent.
struct AmqpReplier {
    inner: Weak<Inner>,
    reply_to: String,
    correlation_id: String,
}

#[async_trait::async_trait]
impl Replier for AmqpReplier {
    async fn send(self: Box<Self>, reply: Reply) {
        let Ok(body) = serde_json::to_vec(&reply) else {
            return;
        };
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let props =
            BasicProperties::default().with_correlation_id(self.correlation_id.as_str().into());
        // The default exchange routes by queue name.
        let r = inner
            .publish(
                Instant::now() + PUBLISH_WAIT,
                "",
                &self.reply_to,
                &body,
                props,
                false,
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
        let deadline = Instant::now() + timeout;
        let corr = uuid::Uuid::new_v4().to_string();
        let body = msg.encode()?;
        let key = to.key();
        let pending = &self.inner.pending;
        // Each attempt registers a fresh waiter and names the reply queue
        // of the connection it publishes on. A request no queue is bound
        // for comes back and is sent again until the host's consumer is
        // there (it may be re-attaching after a broker restart).
        let no_route_until = deadline.min(Instant::now() + PUBLISH_WAIT);
        let sent = loop {
            let sent = self
                .inner
                .with_live(deadline, |live| {
                    let (tx, rx) = oneshot::channel();
                    if let Ok(mut p) = pending.lock() {
                        p.insert(corr.clone(), tx);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let props = BasicProperties::default()
                        .with_reply_to(live.reply_queue.as_str().into())
                        .with_correlation_id(corr.as_str().into())
                        .with_expiration(left.as_millis().max(1).to_string().as_str().into());
                    let (body, key) = (&body, &key);
                    async move {
                        let routed = publish_on(&live, EXCHANGE, key, body, props, true).await?;
                        Ok((routed, live, rx))
                    }
                })
                .await;
            match sent {
                Ok((Routed::Returned, _, _)) => {
                    if Instant::now() + NO_ROUTE_RETRY >= no_route_until {
                        break Err(BusError::NoConsumer(key.clone()));
                    }
                    tokio::time::sleep(NO_ROUTE_RETRY).await;
                }
                Ok((Routed::Yes, live, rx)) => break Ok((live, rx)),
                Ok((Routed::Refused, _, _)) => break Err(refused(&key)),
                Err(e) => break Err(e),
            }
        };
        let res = match sent {
            Err(e) => Err(e),
            Ok((live, rx)) => tokio::select! {
                r = tokio::time::timeout_at(deadline, rx) => match r {
                    Ok(Ok(bytes)) => Ok(bytes),
                    _ => Err(BusError::Timeout(key.clone())),
                },
                _ = live.lost.raised() => {
                    Err(transport_msg("connection lost while waiting for the reply"))
                }
            },
        };
        if let Ok(mut p) = pending.lock() {
            p.remove(&corr);
        }
        match serde_json::from_slice::<Reply>(&res?).map_err(|e| BusError::Codec(e.to_string()))? {
            Reply::Ok(v) => Ok(v),
            Reply::Err(e) => Err(BusError::Remote(e)),
        }
    }

    async fn cast(&self, to: &Target, msg: Envelope) -> Result<(), BusError> {
        let routed = self
            .inner
            .publish(
                Instant::now() + PUBLISH_WAIT,
                EXCHANGE,
                &to.key(),
                &msg.encode()?,
                BasicProperties::default(),
                true,
            )
            .await?;
        match routed {
            Routed::Yes => Ok(()),
            Routed::Returned => Err(BusError::NoConsumer(to.key())),
            Routed::Refused => Err(refused(&to.key())),
        }
    }

    async fn fanout(&self, topic: &str, msg: Envelope) -> Result<(), BusError> {
        let ex = fanout_exchange(topic);
        let body = msg.encode()?;
        self.inner
            .with_live(Instant::now() + PUBLISH_WAIT, |live| {
                let (ex, body) = (&ex, &body);
                async move {
                    live.publish
                        .exchange_declare(
                            ex.as_str().into(),
                            ExchangeKind::Fanout,
                            ExchangeDeclareOptions::default(),
                            FieldTable::default(),
                        )
                        .await?;
                    publish_on(&live, ex, "", body, BasicProperties::default(), false).await
                }
            })
            .await
            .and_then(|r| match r {
                Routed::Refused => Err(refused(topic)),
                _ => Ok(()),
            })
    }

    async fn serve(&self, topic: &str, server: &str) -> Result<Subscription, BusError> {
        let inner = &self.inner;
        let deadline = Instant::now() + PUBLISH_WAIT;
        let (tx, rx) = mpsc::channel::<Incoming>(1024);
        loop {
            let live = inner.live(deadline).await?;
            let _guard = tokio::time::timeout_at(deadline, inner.attach.lock())
                .await
                .map_err(|_| transport_msg("timed out waiting for the broker"))?;
            // A reconnect may have happened meanwhile; attach to the current
            // connection only (the supervisor holds `attach` while it
            // re-attaches and publishes a new one).
            let current = inner.state.borrow().clone();
            if !current.is_some_and(|c| Arc::ptr_eq(&c, &live)) {
                continue;
            }
            match tokio::time::timeout_at(deadline, attach(inner, &live, topic, server, tx.clone()))
                .await
            {
                Ok(Ok(())) => {
                    if let Ok(mut subs) = inner.subs.lock() {
                        subs.push(SubSpec {
                            topic: topic.to_string(),
                            server: server.to_string(),
                            tx,
                        });
                    }
                    return Ok(Subscription { rx });
                }
                Ok(Err(e)) => {
                    if live.check() || Instant::now() >= deadline {
                        return Err(transport(e));
                    }
                }
                Err(_) => return Err(transport_msg("timed out waiting for the broker")),
            }
        }
    }
}
