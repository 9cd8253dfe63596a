//! `ferrostack serve --roles controller` and `--roles compute` as separate
//! processes over RabbitMQ: a driver call crosses the bus; and, through a
//! TCP proxy to the broker that the test owns (never the machine's broker
//! itself), the connection cut under a load of builds and requests sent to
//! a compute agent that is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod processes;

use processes::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Controllers on one broker share the `conductor` topic, as the
/// controllers of one cloud do: two clouds on the machine's broker at once
/// would answer each other's agents. The tests here take turns.
static ONE_CLOUD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until `host` is an up hypervisor; returns the up ones' names.
async fn wait_host_up(c: &reqwest::Client, url: &str, tok: &str, host: &str) -> Vec<String> {
    let t = Instant::now();
    loop {
        let (_, h, _) = req(
            c,
            reqwest::Method::GET,
            &format!("{url}/compute/v2.1/os-hypervisors"),
            Some(tok),
            Value::Null,
        )
        .await;
        let names: Vec<String> = h["hypervisors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["state"] == "up")
                    .filter_map(|x| x["hypervisor_hostname"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if names.iter().any(|n| n == host) {
            return names;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "compute host {host} never came up: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn controller_and_compute_roles_over_rabbitmq() {
    let _turn = ONE_CLOUD_AT_A_TIME.lock().await;
    if !rabbit_reachable() {
        return;
    }
    let bus = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let c = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let suffix = format!("{:08x}", std::process::id() ^ port as u32);
    let ctl_host = format!("ctl-{suffix}");
    let cpu_host = format!("cpu-{suffix}");
    let s = start_with(
        dir.path(),
        port,
        None,
        &["--roles", "controller"],
        &[
            ("FERROSTACK__BUS__URL", bus),
            ("FERROSTACK__COMPUTE__HOST", &ctl_host),
        ],
    );
    let cdir = tempfile::tempdir().unwrap();
    let _agent = start_with(
        cdir.path(),
        9,
        None,
        &["--roles", "compute"],
        &[
            ("FERROSTACK__BUS__URL", bus),
            ("FERROSTACK__COMPUTE__HOST", &cpu_host),
        ],
    );
    let tok = token(&c, &s.url).await;
    // The agent's host registers through the bus, and only it.
    let names = wait_host_up(&c, &s.url, &tok, &cpu_host).await;
    assert!(!names.contains(&ctl_host), "the controller runs no agent");
    let img = upload_image(&c, &s.url, &tok).await;
    let id = create_server(&c, &s.url, &tok, &img, "remote").await;
    let t = Instant::now();
    let sv = loop {
        let sv = status(&c, &s.url, &tok, &id).await;
        if sv["status"] != "BUILD" {
            break sv;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{sv}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sv["status"], "ACTIVE", "{sv}");
    assert_eq!(sv["OS-EXT-SRV-ATTR:host"], cpu_host.as_str());
    // A driver call crosses the bus too.
    let (st, _, _) = req(
        &c,
        reqwest::Method::POST,
        &format!("{}/compute/v2.1/servers/{id}/action", s.url),
        Some(&tok),
        json!({"os-stop": null}),
    )
    .await;
    assert_eq!(st, 202);
    let t = Instant::now();
    while status(&c, &s.url, &tok, &id).await["status"] != "SHUTOFF" {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--roles volume` as its own process: the controller's Block Storage
/// sends volume work over RabbitMQ to the volume agent of
/// `volume.volume_host`, whose file driver writes the volume where that
/// agent keeps volumes; with the agent gone, the backend is reported down
/// and a new volume ends in `error`.
#[tokio::test]
async fn volume_role_over_rabbitmq() {
    let _turn = ONE_CLOUD_AT_A_TIME.lock().await;
    if !rabbit_reachable() {
        return;
    }
    let bus = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let c = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let suffix = format!("{:08x}", std::process::id() ^ port as u32);
    let (ctl_host, vol_host) = (format!("ctl-{suffix}"), format!("vol-{suffix}"));
    let ctl_volumes = dir.path().join("volumes");
    let s = start_with(
        dir.path(),
        port,
        None,
        &["--roles", "controller"],
        &[
            ("FERROSTACK__BUS__URL", bus),
            ("FERROSTACK__COMPUTE__HOST", &ctl_host),
            ("FERROSTACK__VOLUME__VOLUME_HOST", &vol_host),
            (
                "FERROSTACK__VOLUME__VOLUMES_DIR",
                ctl_volumes.to_str().unwrap(),
            ),
        ],
    );
    let vdir = tempfile::tempdir().unwrap();
    let volumes = vdir.path().join("volumes");
    let mut agent = start_with(
        vdir.path(),
        9,
        None,
        &["--roles", "volume"],
        &[
            ("FERROSTACK__BUS__URL", bus),
            ("FERROSTACK__COMPUTE__HOST", &vol_host),
            ("FERROSTACK__VOLUME__VOLUMES_DIR", volumes.to_str().unwrap()),
        ],
    );
    let tok = token(&c, &s.url).await;
    let (_, p, _) = req(
        &c,
        reqwest::Method::GET,
        &format!("{}/identity/v3/projects?name=admin", s.url),
        Some(&tok),
        Value::Null,
    )
    .await;
    let cinder = format!(
        "{}/volume/v3/{}",
        s.url,
        p["projects"][0]["id"].as_str().unwrap()
    );
    let backend_state = || {
        let (c, tok, cinder) = (c.clone(), tok.clone(), cinder.clone());
        async move {
            let (_, b, _) = req(
                &c,
                reqwest::Method::GET,
                &format!("{cinder}/os-services?binary=cinder-volume"),
                Some(&tok),
                Value::Null,
            )
            .await;
            b["services"][0]["backend_state"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    let t = Instant::now();
    while backend_state().await != "up" {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the volume agent never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let create = |name: &'static str| {
        let (c, tok, cinder) = (c.clone(), tok.clone(), cinder.clone());
        async move {
            let (st, b, _) = req(
                &c,
                reqwest::Method::POST,
                &format!("{cinder}/volumes"),
                Some(&tok),
                json!({"volume": {"size": 1, "name": name}}),
            )
            .await;
            assert_eq!(st, 202, "{b}");
            b["volume"]["id"].as_str().unwrap().to_string()
        }
    };
    let wait = |id: String, want: &'static str| {
        let (c, tok, cinder) = (c.clone(), tok.clone(), cinder.clone());
        async move {
            let t = Instant::now();
            loop {
                let (_, b, _) = req(
                    &c,
                    reqwest::Method::GET,
                    &format!("{cinder}/volumes/{id}"),
                    Some(&tok),
                    Value::Null,
                )
                .await;
                let st = b["volume"]["status"]
                    .as_str()
                    .unwrap_or("deleted")
                    .to_string();
                if st == want {
                    return;
                }
                assert!(t.elapsed() < Duration::from_secs(30), "volume {id}: {b}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let id = create("on-the-agent").await;
    wait(id.clone(), "available").await;
    let file = volumes.join(format!("volume-{id}"));
    assert!(file.exists(), "the agent's driver wrote {}", file.display());
    assert!(!ctl_volumes.join(format!("volume-{id}")).exists());
    let (st, _, _) = req(
        &c,
        reqwest::Method::DELETE,
        &format!("{cinder}/volumes/{id}"),
        Some(&tok),
        Value::Null,
    )
    .await;
    assert_eq!(st, 202);
    wait(id, "deleted").await;
    assert!(!file.exists(), "the agent deleted the file");
    // The agent gone: the backend is down, and a volume cannot be made.
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let t = Instant::now();
    while backend_state().await != "down" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the backend stayed up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let orphan = create("no-agent").await;
    wait(orphan, "error").await;
}

async fn create_server(c: &reqwest::Client, url: &str, tok: &str, img: &str, name: &str) -> String {
    let (st, b, _) = req(
        c,
        reqwest::Method::POST,
        &format!("{url}/compute/v2.1/servers"),
        Some(tok),
        json!({"server": {"name": name, "imageRef": img, "flavorRef": "1", "networks": "none"}}),
    )
    .await;
    assert_eq!(st, 202, "{b}");
    b["server"]["id"].as_str().unwrap().to_string()
}

/// Waits until the server leaves BUILD and no task runs on it.
async fn settled(c: &reqwest::Client, url: &str, tok: &str, id: &str, limit: Duration) -> Value {
    let t = Instant::now();
    loop {
        let sv = status(c, url, tok, id).await;
        if sv["status"] != "BUILD" && sv["OS-EXT-STS:task_state"].is_null() {
            return sv;
        }
        assert!(t.elapsed() < limit, "not settled after {limit:?}: {sv}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn server_action(c: &reqwest::Client, url: &str, tok: &str, id: &str, body: Value) {
    let (st, b, _) = req(
        c,
        reqwest::Method::POST,
        &format!("{url}/compute/v2.1/servers/{id}/action"),
        Some(tok),
        body,
    )
    .await;
    assert_eq!(st, 202, "{b}");
}

/// The events of the server's most recent `action` (instance actions).
async fn last_action_events(
    c: &reqwest::Client,
    url: &str,
    tok: &str,
    id: &str,
    action: &str,
) -> Vec<Value> {
    let (_, l, _) = req(
        c,
        reqwest::Method::GET,
        &format!("{url}/compute/v2.1/servers/{id}/os-instance-actions"),
        Some(tok),
        Value::Null,
    )
    .await;
    let rid = l["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == action)
        .unwrap_or_else(|| panic!("no {action} action: {l}"))["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, a, _) = req(
        c,
        reqwest::Method::GET,
        &format!("{url}/compute/v2.1/servers/{id}/os-instance-actions/{rid}"),
        Some(tok),
        Value::Null,
    )
    .await;
    a["instanceAction"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Issue 19: the broker connection is cut (through the test's proxy) while
/// builds are in flight: every build ends ACTIVE with its guest or ERROR
/// with a fault, later builds succeed, and the agent process never
/// restarts (its bus reconnects). A stop sent while the compute agent is
/// down waits in its host's queue and runs when the agent returns; a start
/// whose caller gave up (the agent stayed down past `long_rpc_timeout`)
/// fails visibly (an error event, no task state) and never runs later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_loses_nothing_when_the_broker_connection_or_the_agent_goes() {
    let _turn = ONE_CLOUD_AT_A_TIME.lock().await;
    if !rabbit_reachable() {
        return;
    }
    let proxy = ferro_bus::testing::BrokerProxy::start().await;
    let bus = proxy.url();
    let c = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let suffix = format!("{:08x}", std::process::id() ^ u32::from(port));
    let ctl_host = format!("ctl-{suffix}");
    let cpu_host = format!("cpu-{suffix}");
    let common = [
        ("FERROSTACK__BUS__URL", bus.as_str()),
        ("FERROSTACK__COMPUTE__REPORT_INTERVAL", "1"),
        ("FERROSTACK__COMPUTE__FAKE_DELAY_MS", "1500"),
        ("FERROSTACK__COMPUTE__LONG_RPC_TIMEOUT", "12"),
        ("FERROSTACK__COMPUTE__RPC_RESPONSE_TIMEOUT", "12"),
    ];
    let mut ctl_env: Vec<(&str, &str)> = common.to_vec();
    ctl_env.push(("FERROSTACK__COMPUTE__HOST", &ctl_host));
    let s = start_with(dir.path(), port, None, &["--roles", "controller"], &ctl_env);
    let cdir = tempfile::tempdir().unwrap();
    let mut cpu_env: Vec<(&str, &str)> = common.to_vec();
    cpu_env.push(("FERROSTACK__COMPUTE__HOST", &cpu_host));
    let agent_args = ["--roles", "compute"];
    let mut agent = start_with(cdir.path(), 9, None, &agent_args, &cpu_env);
    let tok = token(&c, &s.url).await;
    wait_host_up(&c, &s.url, &tok, &cpu_host).await;
    let img = upload_image(&c, &s.url, &tok).await;

    // Builds in flight (each spawn takes 1.5 s on the fake hypervisor)
    // when every connection to the broker is cut for two seconds.
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(create_server(&c, &s.url, &tok, &img, &format!("cut-{n}")).await);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.down().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.up();
    let (mut active, mut error) = (0, 0);
    for id in &ids {
        let sv = settled(&c, &s.url, &tok, id, Duration::from_secs(90)).await;
        match sv["status"].as_str() {
            Some("ACTIVE") => active += 1,
            Some("ERROR") => {
                assert!(
                    sv["fault"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "an ERROR server without a fault: {sv}"
                );
                eprintln!("fault: {}", sv["fault"]["message"]);
                error += 1;
            }
            _ => panic!("neither ACTIVE nor ERROR: {sv}"),
        }
    }
    eprintln!("builds across the cut: {active} ACTIVE, {error} ERROR with a fault");
    // ACTIVE means a guest on the host: two heartbeats later (power-state
    // sync), each is still ACTIVE and running.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in &ids {
        let sv = status(&c, &s.url, &tok, id).await;
        if sv["status"] != "ERROR" {
            assert_eq!(sv["status"], "ACTIVE", "{sv}");
            assert_eq!(sv["OS-EXT-STS:power_state"], 1, "no guest behind {sv}");
        }
    }
    // Later builds succeed, on the same agent process.
    let later: Vec<String> = {
        let mut v = Vec::new();
        for n in 0..3 {
            v.push(create_server(&c, &s.url, &tok, &img, &format!("after-{n}")).await);
        }
        v
    };
    for id in &later {
        let sv = settled(&c, &s.url, &tok, id, Duration::from_secs(60)).await;
        assert_eq!(sv["status"], "ACTIVE", "a build after the cut: {sv}");
    }
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the compute agent exited across the cut"
    );
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    assert!(
        log.contains("AMQP connection re-established"),
        "the agent's bus did not reconnect: {log}"
    );

    // A stop sent while the agent is down waits in the host's queue and
    // runs when the agent is back (which first takes its guests back).
    let id = later[0].clone();
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    server_action(&c, &s.url, &tok, &id, json!({"os-stop": null})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sv = status(&c, &s.url, &tok, &id).await;
    assert_eq!(sv["OS-EXT-STS:task_state"], "powering-off", "{sv}");
    drop(agent);
    let agent = start_with(cdir.path(), 9, None, &agent_args, &cpu_env);
    let sv = settled(&c, &s.url, &tok, &id, Duration::from_secs(30)).await;
    assert_eq!(sv["status"], "SHUTOFF", "{sv}");
    let ev = last_action_events(&c, &s.url, &tok, &id, "stop").await;
    assert_eq!(ev[0]["result"], "Success", "{ev:?}");
    // Its other guests are back with it, still running.
    let other = status(&c, &s.url, &tok, &later[1]).await;
    assert_eq!(other["status"], "ACTIVE", "{other}");

    // A start whose caller gives up (the agent stays down past
    // rpc timeouts are 12 s here) fails visibly and never runs afterwards.
    drop(agent);
    server_action(&c, &s.url, &tok, &id, json!({"os-start": null})).await;
    let sv = settled(&c, &s.url, &tok, &id, Duration::from_secs(30)).await;
    assert_eq!(sv["status"], "SHUTOFF", "{sv}");
    let ev = last_action_events(&c, &s.url, &tok, &id, "start").await;
    assert_eq!(ev[0]["result"], "Error", "{ev:?}");
    let agent = start_with(cdir.path(), 9, None, &agent_args, &cpu_env);
    wait_host_up(&c, &s.url, &tok, &cpu_host).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sv = status(&c, &s.url, &tok, &id).await;
    assert_eq!(sv["status"], "SHUTOFF", "the expired start ran late: {sv}");
    assert_eq!(sv["OS-EXT-STS:power_state"], 4, "{sv}");
    drop(agent);
}
