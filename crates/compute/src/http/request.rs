//! What every Compute handler uses: the microversion (negotiated by the
//! `microversion` middleware), the authenticated [`Caller`], query-string
//! parsing and paging, JSON bodies and responses.
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferro_auth::RequestContext;
use ferro_common::Error;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::caller::{Caller, Mv};

pub const MIN_VERSION: (u16, u16) = (2, 1);
pub const MAX_VERSION: (u16, u16) = (2, 100);

pub type St = State<Arc<ComputeService>>;

fn parse_version(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.trim().split_once('.')?;
    if b.starts_with('0') && b.len() > 1 {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Reads `OpenStack-API-Version: compute X.Y` (or the legacy
/// `X-OpenStack-Nova-API-Version`), refuses what we do not serve, and
/// echoes the version on the response.
pub async fn microversion(mut req: Request, next: Next) -> Response {
    let h = req.headers();
    let mut asked: Option<String> = None;
    if let Some(v) = h.get("openstack-api-version").and_then(|v| v.to_str().ok()) {
        for part in v.split(',') {
            let mut it = part.split_whitespace();
            if it.next().is_some_and(|s| s.eq_ignore_ascii_case("compute")) {
                asked = it.next().map(str::to_string);
            }
        }
    }
    if asked.is_none() {
        asked = h
            .get("x-openstack-nova-api-version")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string());
    }
    let v = match asked.as_deref() {
        None => MIN_VERSION,
        Some(s) if s.eq_ignore_ascii_case("latest") => MAX_VERSION,
        Some(s) => match parse_version(s) {
            None => {
                return NovaError::bad(format!(
                    "API Version String {s} is of invalid format. Must be of format MajorNum.MinorNum."
                ))
                .into_response();
            }
            Some(v) if v < MIN_VERSION || v > MAX_VERSION => {
                return NovaError::new(
                    406,
                    format!(
                        "Version {}.{} is not supported by the API. Minimum is {}.{} and maximum is {}.{}.",
                        v.0, v.1, MIN_VERSION.0, MIN_VERSION.1, MAX_VERSION.0, MAX_VERSION.1
                    ),
                )
                .into_response();
            }
            Some(v) => v,
        },
    };
    req.extensions_mut().insert(Mv(v.0, v.1));
    let mut resp = next.run(req).await;
    let vs = format!("{}.{}", v.0, v.1);
    let hs = resp.headers_mut();
    if let Ok(x) = HeaderValue::from_str(&format!("compute {vs}")) {
        hs.insert("openstack-api-version", x);
    }
    if let Ok(x) = HeaderValue::from_str(&vs) {
        hs.insert("x-openstack-nova-api-version", x);
    }
    hs.append(
        "vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    resp
}

impl FromRequestParts<Arc<ComputeService>> for Caller {
    type Rejection = NovaError;
    async fn from_request_parts(
        parts: &mut Parts,
        svc: &Arc<ComputeService>,
    ) -> Result<Self, NovaError> {
        let unauth = || NovaError::new(401, "unauthorized");
        let tok = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .ok_or_else(unauth)?;
        let vt = svc
            .validator
            .validate(tok, false)
            .await
            .map_err(|e| match e {
                Error::Internal { .. } => NovaError::from(e),
                _ => unauth(),
            })?;
        if vt.project.is_none() {
            return Err(NovaError::forbidden(
                "Compute API calls need a project-scoped token.",
            ));
        }
        let mv = parts.extensions.get::<Mv>().copied().unwrap_or(Mv(2, 1));
        let request_id = parts
            .headers
            .get("x-openstack-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(ferro_common::new_request_id);
        Ok(Caller {
            ctx: RequestContext::new(vt, tok.to_string()),
            mv,
            request_id,
        })
    }
}

/// Query parameters with repeats kept (`?status=A&status=B`).
pub fn query(raw: Option<String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(q) = raw {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.entry(decode(k)).or_default().push(decode(v));
        }
    }
    out
}

pub fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hexv(b[i + 1]), hexv(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexv(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

pub fn first<'a>(q: &'a BTreeMap<String, Vec<String>>, k: &str) -> Option<&'a str> {
    q.get(k).and_then(|v| v.last()).map(String::as_str)
}

/// `limit` (>= 0) and `marker` as Nova validates them.
pub fn paging(q: &BTreeMap<String, Vec<String>>) -> NResult<(Option<usize>, Option<String>)> {
    let limit = match first(q, "limit") {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n as usize),
            _ => return Err(NovaError::bad("limit param must be an integer")),
        },
    };
    Ok((limit, first(q, "marker").map(str::to_string)))
}

/// A list's `next` link (Nova's `_get_collection_links`): the same query
/// with this page's `limit` and its last item as the `marker`.
pub fn next_link(
    base: &str,
    path: &str,
    q: &BTreeMap<String, Vec<String>>,
    limit: usize,
    marker: &str,
) -> Value {
    let mut params: Vec<String> = q
        .iter()
        .filter(|(k, _)| *k != "marker" && *k != "limit")
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
        .collect();
    params.push(format!("limit={limit}"));
    params.push(format!("marker={marker}"));
    json!([{"rel": "next", "href": format!("{base}/v2.1/{path}?{}", params.join("&"))}])
}

pub fn link(base: &str, path: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/v2.1/{path}")},
        {"rel": "bookmark", "href": format!("{base}/{path}")},
    ])
}

pub fn json_resp(code: StatusCode, v: Value) -> Response {
    (code, axum::Json(v)).into_response()
}

/// Parses a JSON body (Nova: 400 on malformed JSON).
pub fn body(bytes: &[u8]) -> NResult<Value> {
    if bytes.is_empty() {
        return Err(NovaError::bad(
            "The server could not comply with the request since it is either malformed or otherwise incorrect.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|_| NovaError::bad("Malformed request body"))
}

/// The object under `key` of a request body, or a 400 saying `missing`.
pub fn member<'a>(
    b: &'a Value,
    key: &str,
    missing: &str,
) -> NResult<&'a serde_json::Map<String, Value>> {
    b.get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad(missing))
}
