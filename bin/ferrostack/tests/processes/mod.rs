//! What the tests that run real `ferrostack serve` processes share: start
//! one with a data directory, roles and environment, and talk to its API.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PW: &str = "crash-test-password";

pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: std::path::PathBuf,
}

/// A failing assertion must not leave the server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(dir: &std::path::Path, port: u16, inject: Option<&str>) -> Server {
    start_with(dir, port, inject, &[], &[])
}

pub fn start_with(
    dir: &std::path::Path,
    port: u16,
    inject: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Server {
    start_as(
        Command::new(env!("CARGO_BIN_EXE_ferrostack")),
        dir,
        port,
        inject,
        args,
        env,
    )
}

/// `start_with`, in a mount namespace of its own where `hide` is an empty
/// tmpfs: the process cannot read or write another's files there (as on
/// another host). Needs root.
pub fn start_hiding(
    hide: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
    args: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs hidden "$0" && exec "$@""#)
        .arg(hide)
        .arg(env!("CARGO_BIN_EXE_ferrostack"));
    start_as(cmd, dir, port, None, args, env)
}

fn start_as(
    mut cmd: Command,
    dir: &std::path::Path,
    port: u16,
    inject: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let log = dir.join(format!(
        "serve-{}{}.log",
        inject.unwrap_or("clean").replace(':', "-"),
        args.join("").replace(['-', ','], "")
    ));
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .env("FERROSTACK_ADMIN_PASSWORD", PW)
        .env("FERROSTACK__IDENTITY__PASSWORD_HASH_ROUNDS", "4")
        .env("FERROSTACK__IDENTITY__WRITE_USER_CLOUDS_YAML", "false")
        .env("FERROSTACK__COMPUTE__COMPUTE_DRIVER", "fake")
        .env("FERROSTACK__COMPUTE__FAKE_HOSTS", "1")
        .env("FERROSTACK__LOG__LEVEL", "warn")
        // The test's own settings win over those defaults.
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    match inject {
        Some(i) => cmd.env("FERROSTACK__COMPUTE__FAULT_INJECTION", i),
        None => cmd.env_remove("FERROSTACK__COMPUTE__FAULT_INJECTION"),
    };
    let child = cmd.spawn().unwrap();
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    }
}

pub async fn req(
    c: &reqwest::Client,
    m: reqwest::Method,
    url: &str,
    tok: Option<&str>,
    body: Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut rb = c.request(m, url).header(
        "OpenStack-API-Version",
        "compute 2.79, placement 1.39, volume 3.49",
    );
    if let Some(t) = tok {
        rb = rb.header("X-Auth-Token", t);
    }
    if !body.is_null() {
        rb = rb
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    let v = serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    (s, v, h)
}

pub async fn token(c: &reqwest::Client, url: &str) -> String {
    let t = Instant::now();
    loop {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": PW}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
        if let Ok(r) = c
            .post(format!("{url}/identity/v3/auth/tokens"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            && r.status() == 201
        {
            return r.headers()["x-subject-token"].to_str().unwrap().to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn used(c: &reqwest::Client, url: &str, tok: &str) -> u64 {
    let (_, rps, _) = req(
        c,
        reqwest::Method::GET,
        &format!("{url}/placement/resource_providers"),
        Some(tok),
        Value::Null,
    )
    .await;
    let mut n = 0;
    for rp in rps["resource_providers"].as_array().unwrap() {
        let (_, u, _) = req(
            c,
            reqwest::Method::GET,
            &format!(
                "{url}/placement/resource_providers/{}/usages",
                rp["uuid"].as_str().unwrap()
            ),
            Some(tok),
            Value::Null,
        )
        .await;
        n += u["usages"]["MEMORY_MB"].as_u64().unwrap_or(0);
    }
    n
}

/// A 1 KiB raw image, active.
pub async fn upload_image(c: &reqwest::Client, url: &str, tok: &str) -> String {
    let (st, img, _) = req(
        c,
        reqwest::Method::POST,
        &format!("{url}/image/v2/images"),
        Some(tok),
        json!({"name": "img", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    assert_eq!(st, 201);
    let img = img["id"].as_str().unwrap().to_string();
    let up = c
        .put(format!("{url}/image/v2/images/{img}/file"))
        .header("X-Auth-Token", tok)
        .header("Content-Type", "application/octet-stream")
        .body(vec![1u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 204);
    img
}

pub async fn status(c: &reqwest::Client, url: &str, tok: &str, id: &str) -> Value {
    req(
        c,
        reqwest::Method::GET,
        &format!("{url}/compute/v2.1/servers/{id}"),
        Some(tok),
        Value::Null,
    )
    .await
    .1["server"]
        .clone()
}

/// Every server of `project` (all pages), as `/servers/detail` shows them.
pub async fn all_servers(c: &reqwest::Client, url: &str, tok: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut marker = String::new();
    loop {
        let q = if marker.is_empty() {
            "limit=1000".to_string()
        } else {
            format!("limit=1000&marker={marker}")
        };
        let (st, b, _) = req(
            c,
            reqwest::Method::GET,
            &format!("{url}/compute/v2.1/servers/detail?{q}"),
            Some(tok),
            Value::Null,
        )
        .await;
        assert_eq!(st, 200, "{b}");
        let page = b["servers"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        marker = page.last().unwrap()["id"].as_str().unwrap().to_string();
        out.extend(page);
    }
}

/// Whether RabbitMQ answers at 127.0.0.1:5672; says why a test is skipped.
pub fn rabbit_reachable() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok();
    if !up {
        ferro_common::skip_or_fail("RabbitMQ is not reachable at 127.0.0.1:5672");
    }
    up
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
