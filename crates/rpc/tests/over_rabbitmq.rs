//! The compute client over RabbitMQ when the caller's broker connection is
//! cut in the middle of a call (through a proxy the test owns): a question
//! is asked again and answered, an action is not resent.
#![allow(clippy::unwrap_used)]

use ferro_bus::testing::BrokerProxy;
use ferro_bus::{AmqpBus, Bus};
use ferro_rpc::RpcError;
use ferro_rpc::compute::{ComputeClient, ComputeReply, ComputeRequest, PowerState, TOPIC};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const RABBIT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_repeats_questions_not_actions() {
    if std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], 5672).into(),
        Duration::from_millis(500),
    )
    .is_err()
    {
        ferro_common::skip_or_fail("RabbitMQ is not reachable at 127.0.0.1:5672");
        return;
    }
    let host = format!("rpc-{}", uuid::Uuid::new_v4().simple());
    // The agent talks to the broker directly; only the caller's
    // connection goes through the proxy.
    let agent_bus = Arc::new(AmqpBus::connect(RABBIT_URL).await.unwrap());
    let mut sub = agent_bus.serve(TOPIC, &host).await.unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            s2.fetch_add(1, Ordering::SeqCst);
            // Slow enough for the cut to land while the caller waits.
            tokio::time::sleep(Duration::from_millis(800)).await;
            let reply = ComputeReply::Done {
                power_state: PowerState::Running,
            };
            m.reply(Ok(serde_json::to_value(reply).unwrap())).await;
        }
    });
    let proxy = Arc::new(BrokerProxy::start().await);
    let caller: Arc<dyn Bus> = Arc::new(AmqpBus::connect(&proxy.url()).await.unwrap());
    let client = ComputeClient::new(caller, Duration::from_secs(10));
    let cut = |proxy: Arc<BrokerProxy>| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.down().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.up();
    };

    let q = ComputeRequest::PowerState { uuid: "u1".into() };
    let (r, ()) = tokio::join!(client.call(&host, &q, None), cut(proxy.clone()));
    assert!(r.is_ok(), "the question was not asked again: {r:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "asked twice, answered once");

    let a = ComputeRequest::PowerOff { uuid: "u1".into() };
    let (r, ()) = tokio::join!(client.call(&host, &a, None), cut(proxy.clone()));
    assert!(matches!(r, Err(RpcError::Transport(_))), "{r:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 3, "the action was sent once");
    agent_bus
        .delete_server_queues(TOPIC, &[host.as_str()])
        .await
        .unwrap();
}
