//! One conformance suite, run against `InProcBus` always and `AmqpBus` when
//! RabbitMQ is reachable at 127.0.0.1:5672 (skipped with a message otherwise).
#![allow(clippy::unwrap_used)]

use ferro_bus::testing::BrokerProxy;
use ferro_bus::{AmqpBus, Bus, BusError, Envelope, InProcBus, Target};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// An agent that echoes calls, counts casts and fanouts, and fails on demand.
fn spawn_agent(
    mut sub: ferro_bus::Subscription,
    name: &'static str,
    seen: tokio::sync::mpsc::Sender<(String, String)>,
) {
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let method = m.envelope.method.clone();
            let _ = seen.send((name.to_string(), method.clone())).await;
            match method.as_str() {
                "echo" => {
                    let args = m.envelope.args.clone();
                    m.reply(Ok(json!({"host": name, "args": args}))).await;
                }
                "fail" => m.reply(Err("boom".into())).await,
                "slow" => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    m.reply(Ok(json!(null))).await;
                }
                _ => {}
            }
        }
    });
}

async fn conformance(bus: Arc<dyn Bus>, topic: &str) {
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(64);
    spawn_agent(
        bus.serve(topic, "host-a").await.unwrap(),
        "host-a",
        seen_tx.clone(),
    );
    spawn_agent(
        bus.serve(topic, "host-b").await.unwrap(),
        "host-b",
        seen_tx.clone(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    // call to a specific server: routed there, reply carries its result
    let r = bus
        .call(
            &Target::server(topic, "host-b"),
            Envelope::new("echo", json!({"x": 1})),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(r, json!({"host": "host-b", "args": {"x": 1}}));
    // remote errors come back as errors
    match bus
        .call(
            &Target::server(topic, "host-a"),
            Envelope::new("fail", json!({})),
            Duration::from_secs(5),
        )
        .await
    {
        Err(BusError::Remote(e)) => assert_eq!(e, "boom"),
        other => panic!("expected a remote error, got {other:?}"),
    }
    // timeouts
    match bus
        .call(
            &Target::server(topic, "host-a"),
            Envelope::new("slow", json!({})),
            Duration::from_millis(100),
        )
        .await
    {
        Err(BusError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    while seen.try_recv().is_ok() {}

    // cast to the topic: exactly one consumer gets each message
    for _ in 0..10 {
        bus.cast(&Target::topic(topic), Envelope::new("work", json!({})))
            .await
            .unwrap();
    }
    let mut got = 0;
    while got < 10 {
        let (_, m) = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m, "work");
        got += 1;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(seen.try_recv().is_err(), "a cast was delivered twice");

    // fanout: every consumer gets it
    bus.fanout(topic, Envelope::new("refresh", json!({})))
        .await
        .unwrap();
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let (h, m) = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m, "refresh");
        hosts.push(h);
    }
    hosts.sort();
    assert_eq!(hosts, ["host-a", "host-b"]);
}

/// A call nobody serves fails within its timeout with `NoConsumer` instead
/// of hanging: the in-process bus knows there is no consumer, RabbitMQ
/// returns the unroutable (mandatory) request. A cast fails the same way.
async fn call_without_consumer(bus: Arc<dyn Bus>, topic: &str) {
    let timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let r = bus
        .call(
            &Target::server(topic, "nowhere"),
            Envelope::new("echo", json!({})),
            timeout,
        )
        .await;
    assert!(
        matches!(r, Err(BusError::NoConsumer(_))),
        "expected a no-consumer error, got {r:?}"
    );
    assert!(
        started.elapsed() < timeout + Duration::from_millis(500),
        "the call took {:?}",
        started.elapsed()
    );
    let r = bus
        .cast(
            &Target::server(topic, "nowhere"),
            Envelope::new("echo", json!({})),
        )
        .await;
    assert!(
        matches!(r, Err(BusError::NoConsumer(_))),
        "expected a no-consumer error, got {r:?}"
    );
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Whether RabbitMQ answers at 127.0.0.1:5672; prints why a test is skipped.
fn rabbit_reachable() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], 5672).into(),
        Duration::from_millis(500),
    )
    .is_ok();
    if !up {
        ferro_common::skip_or_fail("RabbitMQ is not reachable at 127.0.0.1:5672");
    }
    up
}

const RABBIT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inproc_conformance() {
    conformance(Arc::new(InProcBus::new()), "compute").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inproc_call_without_consumer() {
    call_without_consumer(Arc::new(InProcBus::new()), "compute").await;
    // in process, the bus knows at once that nobody listens
    let bus = InProcBus::new();
    assert!(matches!(
        bus.call(
            &Target::server("compute", "nowhere"),
            Envelope::new("echo", json!({})),
            Duration::from_secs(1)
        )
        .await,
        Err(BusError::NoConsumer(_))
    ));
    // a served topic, but not that server
    let bus = Arc::new(InProcBus::new());
    let _sub = bus.serve("compute", "host-a").await.unwrap();
    call_without_consumer(bus, "compute").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_conformance() {
    if !rabbit_reachable() {
        return;
    }
    let bus = Arc::new(AmqpBus::connect(RABBIT_URL).await.unwrap());
    // a topic of its own so parallel runs never share queues
    let topic = unique("conformance");
    conformance(bus.clone(), &topic).await;
    bus.delete_topic(&topic, &["host-a", "host-b"])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_call_without_consumer() {
    if !rabbit_reachable() {
        return;
    }
    let bus = Arc::new(AmqpBus::connect(RABBIT_URL).await.unwrap());
    call_without_consumer(bus.clone(), &unique("nobody")).await;
    // a served topic, but not that server
    let topic = unique("nobody");
    let _sub = bus.serve(&topic, "host-a").await.unwrap();
    call_without_consumer(bus.clone(), &topic).await;
    bus.delete_topic(&topic, &["host-a"]).await.unwrap();
}

/// A host whose consumer is gone keeps its queue: a call to it waits there
/// and is answered when a consumer returns while the caller still waits; a
/// call whose caller gave up expires and is never delivered; a message
/// that reached a subscription dropped meanwhile goes back to the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_requests_wait_for_a_returning_host_until_they_expire() {
    if !rabbit_reachable() {
        return;
    }
    let topic = unique("away");
    let caller = Arc::new(AmqpBus::connect(RABBIT_URL).await.unwrap());
    // The host serves once (its queue exists), then its subscription is
    // dropped while its connection stays up: the broker still thinks it
    // consumes.
    let host = Arc::new(AmqpBus::connect(RABBIT_URL).await.unwrap());
    drop(host.serve(&topic, "host-a").await.unwrap());
    let to = Target::server(&topic, "host-a");
    let t = std::time::Instant::now();
    let r = caller
        .call(
            &to,
            Envelope::new("expired", json!({})),
            Duration::from_secs(1),
        )
        .await;
    assert!(matches!(r, Err(BusError::Timeout(_))), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // A cast queued now must survive the dropped subscription.
    caller
        .cast(&to, Envelope::new("kept", json!({})))
        .await
        .unwrap();
    let pending = {
        let caller = caller.clone();
        let to = to.clone();
        tokio::spawn(async move {
            caller
                .call(
                    &to,
                    Envelope::new("echo", json!({"n": 2})),
                    Duration::from_secs(15),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The host comes back on a new connection.
    let back = Arc::new(AmqpBus::connect(RABBIT_URL).await.unwrap());
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(64);
    spawn_agent(
        back.serve(&topic, "host-a").await.unwrap(),
        "host-a",
        seen_tx,
    );
    let v = pending.await.unwrap().unwrap();
    assert_eq!(v["args"]["n"], 2, "{v}");
    let mut methods = Vec::new();
    while let Ok(Some((_, m))) =
        tokio::time::timeout(Duration::from_millis(1500), seen.recv()).await
    {
        methods.push(m);
    }
    methods.sort();
    assert_eq!(methods, ["echo", "kept"], "the expired call must never run");
    back.delete_topic(&topic, &["host-a"]).await.unwrap();
}

/// Waits (a bounded time) until an agent reports `method`, skipping others.
async fn wait_seen(
    seen: &mut tokio::sync::mpsc::Receiver<(String, String)>,
    method: &str,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (host, m) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .unwrap_or_else(|_| panic!("no {method} delivered"))
            .unwrap();
        if m == method {
            return host;
        }
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The broker "restarts" (through the proxy) twice; the same `AmqpBus` and
/// the same `Subscription` keep working: a call in flight fails fast, a
/// cast made while the broker is away waits and is delivered, and call,
/// cast and fanout work again, as does the whole suite on a fresh topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_survives_broker_restart() {
    if !rabbit_reachable() {
        return;
    }
    let proxy = BrokerProxy::start().await;
    let bus = Arc::new(AmqpBus::connect(&proxy.url()).await.unwrap());
    let topic = unique("restart");
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(64);
    spawn_agent(
        bus.serve(&topic, "host-a").await.unwrap(),
        "host-a",
        seen_tx,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let echo = |n: u32| {
        let bus = bus.clone();
        let to = Target::server(&topic, "host-a");
        async move {
            bus.call(
                &to,
                Envelope::new("echo", json!({"n": n})),
                Duration::from_secs(2),
            )
            .await
        }
    };
    assert_eq!(
        echo(0).await.unwrap(),
        json!({"host": "host-a", "args": {"n": 0}})
    );

    for round in 1..=2 {
        // a call in flight when the connection drops fails fast, not after
        // its 10 s timeout
        let in_flight = {
            let bus = bus.clone();
            let to = Target::server(&topic, "host-a");
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let r = bus
                    .call(
                        &to,
                        Envelope::new("slow", json!({})),
                        Duration::from_secs(10),
                    )
                    .await;
                (r, started.elapsed())
            })
        };
        wait_seen(&mut seen, "slow").await;
        proxy.down().await;
        let (r, took) = in_flight.await.unwrap();
        assert!(
            matches!(r, Err(BusError::Transport(_))),
            "round {round}: expected a transport error, got {r:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "round {round}: took {took:?}"
        );
        wait_until("the bus notices the drop", || !bus.is_connected()).await;

        // a cast while the broker is away waits for the reconnection
        let to = Target::topic(&topic);
        let (cast, ()) = tokio::join!(bus.cast(&to, Envelope::new("queued", json!({}))), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            proxy.up();
        });
        cast.unwrap();
        assert_eq!(wait_seen(&mut seen, "queued").await, "host-a");
        assert!(bus.is_connected());

        // calls work again (bounded retry: the first may race the re-attach)
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let reply = loop {
            match echo(round).await {
                Ok(v) => break v,
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "round {round}: calls still fail after reconnecting: {e:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        assert_eq!(reply, json!({"host": "host-a", "args": {"n": round}}));
        // casts and fanouts reach the same subscription
        bus.cast(&Target::topic(&topic), Envelope::new("work", json!({})))
            .await
            .unwrap();
        assert_eq!(wait_seen(&mut seen, "work").await, "host-a");
        bus.fanout(&topic, Envelope::new("refresh", json!({})))
            .await
            .unwrap();
        assert_eq!(wait_seen(&mut seen, "refresh").await, "host-a");
    }

    // and new subscriptions on the reconnected bus pass the whole suite
    let fresh = unique("restart-suite");
    conformance(bus.clone(), &fresh).await;
    bus.delete_topic(&fresh, &["host-a", "host-b"])
        .await
        .unwrap();
    bus.delete_topic(&topic, &["host-a"]).await.unwrap();
}
