//! Test instrumentation for `scripts/compat.py samples`: with
//! `[api] record_responses = "FILE"`, the key shape of every JSON response
//! (never its values) is appended to FILE as one JSON line, so a test run
//! (Tempest, the CLI golden paths) leaves a record of what each route
//! answered that can be compared with upstream's published API samples.
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The largest body whose shape is recorded (bigger ones pass untouched).
const MAX_BODY: usize = 4 << 20;

/// Maps whose keys are data (names, ids, resource classes), not
/// attributes: their own keys are not part of a shape.
pub const DATA_MAPS: &[&str] = &[
    "metadata",
    "meta",
    "extra_specs",
    "addresses",
    "volume_image_metadata",
    "image_metadata",
    "allocations",
    "inventories",
    "usages",
    "resources",
    "provider_summaries",
    "mappings",
    "properties",
    "capabilities",
];

/// The key paths of a JSON body, two levels deep: top-level keys, and
/// the keys of each top-level object (`server.id`) or of the objects of
/// each top-level list (`servers[].id`). Keys of [`DATA_MAPS`] are not
/// descended into.
pub fn shape(body: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let inner = |prefix: &str, v: &Value, out: &mut BTreeSet<String>| match v {
        Value::Object(o) => {
            for k in o.keys() {
                out.insert(format!("{prefix}.{k}"));
            }
        }
        Value::Array(a) => {
            for x in a {
                if let Value::Object(o) = x {
                    for k in o.keys() {
                        out.insert(format!("{prefix}[].{k}"));
                    }
                }
            }
        }
        _ => {}
    };
    match body {
        Value::Object(o) => {
            for (k, v) in o {
                out.insert(k.clone());
                if !DATA_MAPS.contains(&k.as_str()) {
                    inner(k, v, &mut out);
                }
            }
        }
        Value::Array(_) => inner("", body, &mut out),
        _ => {}
    }
    out
}

/// Where shapes are appended.
#[derive(Clone)]
pub struct Recorder {
    file: Arc<Mutex<std::fs::File>>,
}

impl Recorder {
    pub fn open(path: &PathBuf) -> std::io::Result<Recorder> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn write(&self, line: &Value) {
        let mut text = line.to_string();
        text.push('\n');
        if let Ok(mut f) = self.file.lock() {
            // One write per line: lines of concurrent requests never mix.
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// The middleware: passes the request on, and records the response's
/// method, path, status, microversion header and shape.
pub async fn record(
    axum::extract::State(rec): axum::extract::State<Recorder>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    if !json {
        return resp;
    }
    let version = ["openstack-api-version", "x-openstack-nova-api-version"]
        .iter()
        .find_map(|h| resp.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        rec.write(&json!({
            "method": method,
            "path": path,
            "status": status,
            "version": version,
            "keys": shape(&v),
        }));
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_go_two_levels_and_skip_data_maps() {
        let v = json!({"server": {"id": "x", "metadata": {"a": "b"}, "addresses": {"n": []}},
                       "servers_links": [{"href": "h", "rel": "next"}]});
        let s: Vec<String> = shape(&v).into_iter().collect();
        assert_eq!(
            s,
            vec![
                "server",
                "server.addresses",
                "server.id",
                "server.metadata",
                "servers_links",
                "servers_links[].href",
                "servers_links[].rel"
            ]
        );
        let m: Vec<String> = shape(&json!({"metadata": {"k": "v"}}))
            .into_iter()
            .collect();
        assert_eq!(m, vec!["metadata"]);
    }
}
