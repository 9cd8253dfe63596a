//! The host's console proxy (nova-novncproxy's job): serves the packaged
//! noVNC client and proxies its websocket to a guest's VNC socket.
//!
//! The agent grants a console: it asks the driver where the guest's VNC
//! server listens and hands out a random one-time token that expires after
//! `token_ttl`. Tokens live in this process's memory only (never in a
//! database or a log). A websocket is proxied only when its token is valid
//! and, for a browser, its `Origin` names this host or an allowed origin
//! with the base URL's scheme (Nova's fix for CVE-2015-0259); the token is
//! spent by the connection it opens, so a used token is refused.
use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the proxy is set up (Nova's `[vnc]` and `[console]` options).
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// Where the proxy listens (`novncproxy_host:novncproxy_port`).
    pub listen: String,
    /// The URL handed to users, before `?path=...`; `None`: this host's
    /// noVNC page on the bound port, with the API's public host name.
    pub base_url: Option<String>,
    /// The public host name used when `base_url` is not set.
    pub public_host: String,
    /// The packaged noVNC client served at `/`.
    pub web: PathBuf,
    /// Lifetime of a token (Nova's `[consoleauth] token_ttl`).
    pub token_ttl: Duration,
    /// Origins accepted besides this host's name (Nova's `[console] allowed_origins`).
    pub allowed_origins: Vec<String>,
}

struct Grant {
    instance: String,
    socket: PathBuf,
    expires: Instant,
}

/// The running proxy: its tokens and the URL users get.
pub struct ConsoleProxy {
    settings: ConsoleSettings,
    base_url: String,
    tokens: Mutex<HashMap<String, Grant>>,
}

impl ConsoleProxy {
    /// Binds the listener and serves it until the process ends.
    pub async fn start(settings: ConsoleSettings) -> std::io::Result<Arc<ConsoleProxy>> {
        let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
        let port = listener.local_addr()?.port();
        let base_url = settings
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{port}/vnc_lite.html", settings.public_host));
        if !settings.web.join("vnc_lite.html").exists() {
            tracing::warn!(
                web = %settings.web.display(),
                "the noVNC client is not installed there (Debian's novnc package); consoles open only for non-browser clients"
            );
        }
        let proxy = Arc::new(ConsoleProxy {
            settings,
            base_url,
            tokens: Mutex::new(HashMap::new()),
        });
        let app = Router::new().fallback(serve).with_state(proxy.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("console proxy stopped: {e}");
            }
        });
        tracing::info!(url = %proxy.base_url, "console proxy listening");
        Ok(proxy)
    }

    /// A one-time URL for `instance`'s VNC server at `socket` (Nova's
    /// `access_url`: the token inside noVNC's `path` parameter).
    pub fn grant(&self, instance: &str, socket: PathBuf) -> String {
        let token: String = rand::random::<[u8; 24]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let now = Instant::now();
        let mut tokens = self.lock();
        tokens.retain(|_, g| g.expires > now);
        tokens.insert(
            token.clone(),
            Grant {
                instance: instance.to_string(),
                socket,
                expires: now + self.settings.token_ttl,
            },
        );
        format!("{}?path=%3Ftoken%3D{token}", self.base_url)
    }

    /// Forgets every token of `instance` (it was deleted or moved).
    pub fn revoke(&self, instance: &str) {
        self.lock().retain(|_, g| g.instance != instance);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Grant>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Spends `token`: the socket it opens, when it is valid and unexpired.
    fn spend(&self, token: &str) -> Option<(String, PathBuf)> {
        let g = self.lock().remove(token)?;
        (g.expires > Instant::now()).then_some((g.instance, g.socket))
    }

    fn valid(&self, token: &str) -> bool {
        self.lock()
            .get(token)
            .is_some_and(|g| g.expires > Instant::now())
    }

    fn scheme(&self) -> &str {
        self.base_url.split("://").next().unwrap_or("http")
    }
}

/// Whether a browser's `Origin` may open a console on this host: its host
/// name is the one the request was sent to (`Host`) or an allowed origin,
/// and its scheme (or `X-Forwarded-Proto`) is the base URL's.
pub fn origin_allowed(
    headers: &HeaderMap,
    scheme: &str,
    allowed: &[String],
) -> Result<(), &'static str> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        // No Origin: not a browser, so no cross-site request to stop.
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| "Origin header not valid.")?;
    let (origin_scheme, rest) = origin.split_once("://").ok_or("Origin header not valid.")?;
    let origin_host = host_name(rest);
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(origin_scheme);
    if origin_host.is_empty() || proto.is_empty() {
        return Err("Origin header not valid.");
    }
    let matches_scheme = match scheme {
        "https" => proto == "https" || proto == "wss",
        _ => proto == "http" || proto == "ws",
    };
    if !matches_scheme {
        return Err("Origin header protocol does not match this host.");
    }
    let expected = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_name)
        .unwrap_or_default();
    if !origin_host.eq_ignore_ascii_case(&expected)
        && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&origin_host))
    {
        return Err("Origin header does not match this host.");
    }
    Ok(())
}

/// The host name of `host[:port][/...]`, brackets of an IPv6 literal kept off.
fn host_name(s: &str) -> String {
    let s = s.split('/').next().unwrap_or_default();
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    s.rsplit_once(':').map_or(s, |(h, _)| h).to_string()
}

/// The token of a websocket request: `?token=` (noVNC puts it in the
/// path it opens) or a `token` cookie (older clients).
fn token_of(req: &Request) -> Option<String> {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    from_query.or_else(|| {
        req.headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    })
}

async fn serve(State(proxy): State<Arc<ConsoleProxy>>, req: Request) -> Response {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        websocket(proxy, req).await
    } else {
        static_file(&proxy.settings.web, req.uri().path()).await
    }
}

/// A refusal a websocket client reads as a closed connection: no body.
fn refuse(status: StatusCode, why: &str) -> Response {
    tracing::info!("console connection refused: {why}");
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn websocket(proxy: Arc<ConsoleProxy>, req: Request) -> Response {
    let Some(token) = token_of(&req) else {
        return refuse(StatusCode::FORBIDDEN, "no token");
    };
    // The Origin is checked before the token is spent, so a foreign page
    // cannot use up the token of the user it was issued to.
    if let Err(why) = origin_allowed(
        req.headers(),
        proxy.scheme(),
        &proxy.settings.allowed_origins,
    ) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    if !proxy.valid(&token) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the token is invalid, used or expired",
        );
    }
    let ws = match WebSocketUpgrade::from_request(req, &()).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let Some((instance, socket)) = proxy.spend(&token) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "the token is invalid, used or expired",
        );
    };
    let vnc = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%instance, "console: cannot reach the guest's VNC server: {e}");
            return refuse(StatusCode::BAD_GATEWAY, "the guest's VNC server is gone");
        }
    };
    tracing::info!(%instance, "console connection opened");
    ws.protocols(["binary"])
        .on_upgrade(move |ws| async move {
            bridge(ws, vnc).await;
            tracing::info!(%instance, "console connection closed");
        })
        .into_response()
}

/// Copies binary websocket messages to the VNC socket and back until
/// either side closes.
async fn bridge(mut ws: WebSocket, mut vnc: tokio::net::UnixStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            m = ws.recv() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if vnc.write_all(&b).await.is_err() { break; }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            n = vnc.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if ws.send(Message::Binary(data)).await.is_err() { break; }
                }
            },
        }
    }
    let _closed = ws.send(Message::Close(None)).await;
}

/// A file of the noVNC client; nothing outside its directory.
async fn static_file(web: &Path, uri_path: &str) -> Response {
    let rel = Path::new(uri_path.trim_start_matches('/'));
    let inside = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside || rel.as_os_str().is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = web.join(rel);
    match tokio::fs::read(&path).await {
        Ok(body) => {
            let mime = match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "html" => "text/html; charset=utf-8",
                "js" | "mjs" => "text/javascript; charset=utf-8",
                "css" => "text/css; charset=utf-8",
                "svg" => "image/svg+xml",
                "png" => "image/png",
                "ico" => "image/x-icon",
                "json" => "application/json",
                "ogg" | "oga" => "audio/ogg",
                "mp3" => "audio/mpeg",
                "woff" => "font/woff",
                "woff2" => "font/woff2",
                "ttf" => "font/ttf",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, mime)], body).into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origin_must_name_this_host_with_the_base_urls_scheme() {
        let none: Vec<String> = vec![];
        // No Origin: a non-browser client.
        assert!(origin_allowed(&headers(&[("host", "10.0.0.5:6080")]), "http", &none).is_ok());
        let same = headers(&[
            ("host", "10.0.0.5:6080"),
            ("origin", "http://10.0.0.5:6080"),
        ]);
        assert!(origin_allowed(&same, "http", &none).is_ok());
        let foreign = headers(&[("host", "10.0.0.5:6080"), ("origin", "http://evil.example")]);
        assert_eq!(
            origin_allowed(&foreign, "http", &none),
            Err("Origin header does not match this host.")
        );
        assert!(origin_allowed(&foreign, "http", &["evil.example".to_string()]).is_ok());
        assert_eq!(
            origin_allowed(&same, "https", &none),
            Err("Origin header protocol does not match this host.")
        );
        let forwarded = headers(&[
            ("host", "cloud:6080"),
            ("origin", "http://cloud"),
            ("x-forwarded-proto", "https"),
        ]);
        assert!(origin_allowed(&forwarded, "https", &none).is_ok());
        let v6 = headers(&[("host", "[::1]:6080"), ("origin", "http://[::1]:6080")]);
        assert!(origin_allowed(&v6, "http", &none).is_ok());
        let bad = headers(&[("host", "cloud"), ("origin", "null")]);
        assert_eq!(
            origin_allowed(&bad, "http", &none),
            Err("Origin header not valid.")
        );
    }

    #[tokio::test]
    async fn a_token_opens_one_connection_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let proxy = ConsoleProxy::start(ConsoleSettings {
            listen: "127.0.0.1:0".into(),
            base_url: None,
            public_host: "127.0.0.1".into(),
            web: dir.path().to_path_buf(),
            token_ttl: Duration::from_millis(200),
            allowed_origins: vec![],
        })
        .await
        .unwrap();
        let url = proxy.grant("u1", dir.path().join("vnc.sock"));
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(url.contains("/vnc_lite.html?path=%3Ftoken%3D"), "{url}");
        let token = url.rsplit("%3D").next().unwrap().to_string();
        assert!(proxy.valid(&token));
        assert!(proxy.spend(&token).is_some());
        assert!(proxy.spend(&token).is_none(), "a token is spent once");
        let url = proxy.grant("u1", dir.path().join("vnc.sock"));
        let token = url.rsplit("%3D").next().unwrap().to_string();
        proxy.revoke("u1");
        assert!(!proxy.valid(&token), "revoked with its instance");
        let url = proxy.grant("u1", dir.path().join("vnc.sock"));
        let token = url.rsplit("%3D").next().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(proxy.spend(&token).is_none(), "expired");
    }

    #[tokio::test]
    async fn serves_files_of_the_client_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vnc_lite.html"), "<html>noVNC</html>").unwrap();
        let r = static_file(dir.path(), "/vnc_lite.html").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        for p in ["/../etc/passwd", "/", "/nope.js", "/a/../../x"] {
            assert_eq!(
                static_file(dir.path(), p).await.status(),
                StatusCode::NOT_FOUND,
                "{p}"
            );
        }
    }
}
