//! One conformance suite, run against `InProcBus` always and `AmqpBus` when
//! RabbitMQ is reachable at 127.0.0.1:5672 (skipped with a message otherwise).
#![allow(clippy::unwrap_used)]

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inproc_conformance() {
    conformance(Arc::new(InProcBus::new()), "compute").await;
    // no consumer: an error, not a hang
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_conformance() {
    if std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], 5672).into(),
        Duration::from_millis(500),
    )
    .is_err()
    {
        eprintln!("skipping: RabbitMQ is not reachable at 127.0.0.1:5672");
        return;
    }
    let bus = Arc::new(
        AmqpBus::connect("amqp://guest:guest@127.0.0.1:5672/%2f")
            .await
            .unwrap(),
    );
    // a topic of its own so parallel runs never share queues
    let topic = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    conformance(bus.clone(), &topic).await;
    bus.delete_topic(&topic, &["host-a", "host-b"])
        .await
        .unwrap();
}
