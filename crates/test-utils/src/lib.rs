//! `TestCloud`: the whole ferrostack server booted in-process on an
//! ephemeral port with a temporary data directory, plus an HTTP client that
//! speaks to it like an OpenStack client. Every service's integration tests
//! use it.
#![allow(clippy::unwrap_used)]

use ferro_config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

pub const ADMIN_PASSWORD: &str = "test-admin-secret";

/// Which database a TestCloud runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MariaDb,
}

pub struct TestCloud {
    pub url: String,
    /// The identity service inside the server, for tests that reach below HTTP.
    pub identity: std::sync::Arc<ferro_identity::IdentityService>,
    pub compute: std::sync::Arc<ferro_compute::ComputeService>,
    /// The image service inside the server.
    pub image: std::sync::Arc<ferro_image::ImageService>,
    pub agents: Vec<std::sync::Arc<ferro_compute_agent::ComputeAgent>>,
    pub backend: Backend,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    drop_db: Option<(String, String)>,
}

/// Response of a test request: status, headers, parsed JSON (or Null).
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

fn reachable(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
        .is_ok()
}

impl TestCloud {
    /// SQLite in a temporary directory.
    pub async fn start() -> TestCloud {
        Self::start_on(Backend::Sqlite).await.unwrap().unwrap()
    }

    /// Boots on `backend`; `Ok(None)` (with a message) when that database
    /// server is not reachable on this machine.
    pub async fn start_on(backend: Backend) -> anyhow::Result<Option<TestCloud>> {
        Self::start_with(backend, |_| {}).await
    }

    /// Like `start_on`, with a chance to change the configuration first.
    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Option<TestCloud>> {
        let dir = tempfile::tempdir()?;
        let mut cfg = Config {
            data_dir: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        cfg.identity.password_hash_rounds = 4; // keep tests fast; Keystone's cost is covered by benchmarks
        cfg.identity.admin_password = Some(ADMIN_PASSWORD.into());
        cfg.log.level = "warn".into();
        // API tests run on simulated hosts; tests of real guests ask for `qemu`.
        cfg.compute.compute_driver = "fake".into();
        // Nor do they touch the machine's network: tests of the data plane
        // ask for `linuxbridge` in a namespace of their own.
        cfg.network.host_net_driver = "fake".into();
        // Guests and volumes stay in the test's directory (as root they
        // would default to /var/lib/ferrostack).
        cfg.compute.instances_path = Some(dir.path().join("instances").display().to_string());
        cfg.volume.volumes_dir = Some(dir.path().join("volumes"));
        cfg.vnc.novncproxy_listen = "127.0.0.1:0".into();
        let dbname = format!("ferro_test_{}", uuid::Uuid::new_v4().simple());
        let mut drop_db = None;
        match backend {
            Backend::Sqlite => {}
            Backend::Postgres => {
                if !reachable(5432) {
                    ferro_common::skip_or_fail("PostgreSQL is not reachable at 127.0.0.1:5432");
                    return Ok(None);
                }
                let admin = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
                exec(&admin, &format!("CREATE DATABASE {dbname}")).await?;
                cfg.database.url = Some(format!("postgres://postgres@127.0.0.1:5432/{dbname}"));
                drop_db = Some((
                    admin,
                    format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"),
                ));
            }
            Backend::MariaDb => {
                if !reachable(3306) {
                    ferro_common::skip_or_fail("MariaDB is not reachable at 127.0.0.1:3306");
                    return Ok(None);
                }
                let admin = "mysql://root@127.0.0.1:3306/mysql".to_string();
                exec(
                    &admin,
                    &format!("CREATE DATABASE {dbname} CHARACTER SET utf8mb4"),
                )
                .await?;
                cfg.database.url = Some(format!("mysql://root@127.0.0.1:3306/{dbname}"));
                drop_db = Some((admin, format!("DROP DATABASE IF EXISTS {dbname}")));
            }
        }
        tweak(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        cfg.api.listen = addr.to_string();
        let app = ferro_api_server::App::start(cfg)
            .await
            .map_err(|e| anyhow::anyhow!(e.log_message()))?;
        let router = app.router();
        let identity = app.identity.clone();
        let compute = app.compute.clone();
        let image = app.image.clone();
        let agents = app.agents.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = ferro_api_server::serve(listener, router, async move {
                let _ = rx.await;
            })
            .await;
        });
        Ok(Some(TestCloud {
            url: format!("http://{addr}"),
            identity,
            compute,
            image,
            agents,
            backend,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            _dir: dir,
            shutdown: Some(tx),
            task: Some(task),
            drop_db,
        }))
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().to_path_buf()
    }

    pub fn identity(&self) -> String {
        format!("{}/identity/v3", self.url)
    }

    /// What the metadata service answers the guest of `instance` for a
    /// GET of `path` (the network agent's question, asked in-process):
    /// the status and the body.
    pub async fn guest_metadata(&self, instance: &str, path: &str) -> (u16, Vec<u8>) {
        let r = ferro_compute::metadata::serve(&self.compute, instance, "GET", path, b"").await;
        (r.status, r.body)
    }

    /// Any request; `body` is sent as JSON when not Null.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Resp {
        self.request_h(method, path, token, body, &[]).await
    }

    pub async fn request_h(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.url, path)
        };
        let mut rb = self.client.request(method, url);
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if !body.is_null() {
            rb = rb
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let r = rb.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `/identity/v3{path}` as `token`.
    pub async fn ks(&self, method: Method, path: &str, token: &str, body: Value) -> Resp {
        self.request(method, &format!("/identity/v3{path}"), Some(token), body)
            .await
    }

    /// Password auth; returns (status, token, body).
    pub async fn password_token(&self, user: Value, password: &str, scope: Option<Value>) -> Resp {
        let mut user = user;
        user["password"] = json!(password);
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": user}}});
        if let Some(s) = scope {
            auth["scope"] = s;
        }
        self.request(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            json!({ "auth": auth }),
        )
        .await
    }

    /// A project-scoped admin token.
    pub async fn admin_token(&self) -> String {
        let r = self
            .password_token(
                json!({"name": "admin", "domain": {"id": "default"}}),
                ADMIN_PASSWORD,
                Some(json!({"project": {"name": "admin", "domain": {"id": "default"}}})),
            )
            .await;
        assert_eq!(r.status, 201, "admin login failed: {}", r.body);
        r.header("x-subject-token").unwrap()
    }

    /// A member user in a fresh project; returns (project id, token).
    pub async fn member_user(&self, admin: &str, name: &str) -> (String, String) {
        let p = self
            .ks(
                Method::POST,
                "/projects",
                admin,
                json!({"project": {"name": name}}),
            )
            .await
            .body["project"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let u = self
            .ks(
                Method::POST,
                "/users",
                admin,
                json!({"user": {"name": name, "password": "pw"}}),
            )
            .await
            .body["user"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let member = self
            .ks(Method::GET, "/roles?name=member", admin, Value::Null)
            .await
            .body["roles"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            self.ks(
                Method::PUT,
                &format!("/projects/{p}/users/{u}/roles/{member}"),
                admin,
                Value::Null
            )
            .await
            .status,
            204
        );
        let t = self
            .password_token(json!({"id": u}), "pw", Some(json!({"project": {"id": p}})))
            .await
            .header("x-subject-token")
            .unwrap();
        (p, t)
    }

    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if let Some((admin, sql)) = self.drop_db.take() {
            let _ = exec(&admin, &sql).await;
        }
    }
}

impl Drop for TestCloud {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn exec(url: &str, sql: &str) -> anyhow::Result<()> {
    use ferro_db::sea_orm::{ConnectionTrait, Database};
    let conn = Database::connect(url).await?;
    conn.execute_unprepared(sql).await?;
    conn.close().await?;
    Ok(())
}
