//! Routes under `/volume`: version discovery, `/v3` with or without the
//! project id in the path (clients use both), microversion negotiation
//! and the authenticated caller.
pub mod attachments;
pub mod availability_zones;
pub mod backups;
pub mod clusters;
pub mod default_types;
pub mod extensions;
pub mod groups;
pub mod manageable;
pub mod messages;
pub mod metadata;
pub mod pools;
pub mod quotas;
pub mod resource_filters;
pub mod services;
pub mod snapshots;
pub mod transfers;
pub mod types;
pub mod volumes;
pub mod workers;

use crate::error::{CResult, CinderError};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub const MIN_VERSION: u16 = 0;
/// Every microversion up to 3.71 is honoured. Among them: 3.1 image
/// metadata actions, 3.3/3.5 user messages, 3.7 clusters (none here), 3.8
/// manageable listings, 3.9/3.18/3.37/3.43/3.47/3.51/3.56/3.64 backups (no
/// backup service: the collection is empty, a backup source is not found),
/// 3.11-3.20/3.25/3.29/3.58 groups and group snapshots, 3.12/3.36 volume
/// summary, 3.15 metadata ETags, 3.27/3.44/3.54 attachments, 3.28/3.35
/// pool filters, 3.32 log levels, 3.33 resource filters, 3.34 like
/// filters, 3.38 group replication (refused: no replication target), 3.39
/// limits of another project, 3.40 revert, 3.41 snapshot user_id, 3.42
/// in-use extend, 3.45 counts, 3.46 Compute snapshot images, 3.48/3.61/
/// 3.63/3.64/3.65/3.69 volume fields, 3.49 backend state, 3.50
/// multiattach types, 3.52 type filters and zones, 3.53 strict volume
/// bodies, 3.55/3.57/3.59 transfers, 3.60 time filters, 3.62 project
/// default types, 3.66 in-use snapshots, 3.67 project-less URLs, 3.68
/// re-image, 3.70 (encrypted volumes are refused anyway), 3.71 extend
/// completion.
pub const MAX_VERSION: u16 = 71;

pub type St = State<Arc<VolumeService>>;

/// First path segments under `/v3` that name a resource; anything else
/// there is a project id.
const TOP: [&str; 27] = [
    "volumes",
    "snapshots",
    "types",
    "qos-specs",
    "os-quota-sets",
    "os-quota-class-sets",
    "limits",
    "extensions",
    "os-availability-zone",
    "os-services",
    "attachments",
    "messages",
    "backups",
    "os-volume-transfer",
    "volume-transfers",
    "groups",
    "group_types",
    "group_snapshots",
    "scheduler-stats",
    "os-hosts",
    "capabilities",
    "default-types",
    "resource_filters",
    "workers",
    "clusters",
    "manageable_volumes",
    "manageable_snapshots",
];

/// Drops the project id from `/v3/{project_id}/...` so one set of routes
/// serves both URL forms.
async fn strip_project(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/v3/") {
        let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if !first.is_empty() && !TOP.contains(&first) {
            let p = if tail.is_empty() {
                "/v3".to_string()
            } else {
                format!("/v3/{tail}")
            };
            let pq = match req.uri().query() {
                Some(q) => format!("{p}?{q}"),
                None => p,
            };
            if let Ok(uri) = pq.parse() {
                *req.uri_mut() = uri;
            }
        }
    } else if path.len() > 1 && path.ends_with('/') && path != "/v3/" {
        let p = path.trim_end_matches('/').to_string();
        let pq = match req.uri().query() {
            Some(q) => format!("{p}?{q}"),
            None => p,
        };
        if let Ok(uri) = pq.parse() {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}

fn parse_minor(v: &str) -> Option<u16> {
    let (a, b) = v.trim().split_once('.')?;
    if a != "3" || (b.starts_with('0') && b.len() > 1) {
        return None;
    }
    b.parse().ok()
}

/// Reads `OpenStack-API-Version: volume 3.x` (406 outside what we serve)
/// and echoes the version on the response.
async fn microversion(mut req: Request, next: Next) -> Response {
    let mut asked = None;
    if let Some(v) = req
        .headers()
        .get("openstack-api-version")
        .and_then(|v| v.to_str().ok())
    {
        for part in v.split(',') {
            let mut it = part.split_whitespace();
            if it.next().is_some_and(|x| x.eq_ignore_ascii_case("volume")) {
                asked = it.next().map(str::to_string);
            }
        }
    }
    let minor = match asked.as_deref() {
        None => MIN_VERSION,
        Some(x) if x.eq_ignore_ascii_case("latest") => MAX_VERSION,
        Some(x) => match parse_minor(x) {
            Some(m) if (MIN_VERSION..=MAX_VERSION).contains(&m) => m,
            Some(_) => {
                return CinderError::new(
                    406,
                    format!(
                        "Version {x} is not supported by the API. Minimum is 3.{MIN_VERSION} and maximum is 3.{MAX_VERSION}."
                    ),
                )
                .into_response();
            }
            None => {
                return CinderError::bad(format!(
                    "API Version String {x} is of invalid format. Must be of format MajorNum.MinorNum."
                ))
                .into_response();
            }
        },
    };
    req.extensions_mut().insert(Mv(minor));
    let mut resp = next.run(req).await;
    if let Ok(h) = HeaderValue::from_str(&format!("volume 3.{minor}")) {
        resp.headers_mut().insert("openstack-api-version", h);
    }
    resp.headers_mut()
        .insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
    resp
}

impl<S: Send + Sync> FromRequestParts<S> for Mv {
    type Rejection = CinderError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, CinderError> {
        Ok(parts.extensions.get::<Mv>().copied().unwrap_or(Mv(0)))
    }
}

impl FromRequestParts<Arc<VolumeService>> for Caller {
    type Rejection = CinderError;
    async fn from_request_parts(
        parts: &mut Parts,
        svc: &Arc<VolumeService>,
    ) -> Result<Self, CinderError> {
        let (ctx, admin, project) =
            ferro_auth::project_caller(svc.validator.as_ref(), &parts.headers)
                .await
                .map_err(|e| match e {
                    ferro_auth::CallerError::Unauthenticated => {
                        CinderError::new(401, "unauthorized")
                    }
                    ferro_auth::CallerError::ProjectScopeRequired => {
                        CinderError::forbidden("project scope required")
                    }
                    ferro_auth::CallerError::Internal(e) => CinderError::from(e),
                })?;
        Ok(Caller {
            ctx,
            admin,
            project,
        })
    }
}

/// A JSON body (400 in Cinder's shape when it does not parse).
pub struct Body(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = CinderError;
    async fn from_request(req: axum::extract::Request, s: &S) -> Result<Self, CinderError> {
        let bytes = axum::body::Bytes::from_request(req, s)
            .await
            .map_err(|e| CinderError::bad(e.to_string()))?;
        if bytes.is_empty() {
            return Ok(Body(Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|_| CinderError::bad("Malformed request body"))
    }
}

/// The raw query, decoded, in order.
pub struct Query(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = CinderError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, CinderError> {
        let q = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = url_decode_pairs(q);
        Ok(Query(pairs))
    }
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                ferro_common::percent_decode(k),
                ferro_common::percent_decode(v),
            )
        })
        .collect()
}

impl Query {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
}

pub fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}
pub fn accepted(v: Value) -> Response {
    (StatusCode::ACCEPTED, axum::Json(v)).into_response()
}
/// 200 with no body (Tempest insists on an empty one).
pub fn ok_empty() -> Response {
    StatusCode::OK.into_response()
}
pub fn accepted_empty() -> Response {
    StatusCode::ACCEPTED.into_response()
}
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A boolean as Cinder reads one (`bool_from_string`): JSON booleans and
/// numbers, `true/false`, `yes/no`, `on/off`, `t/f`, `y/n`, `1/0`.
pub fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(x) => Some(*x),
        Value::String(x) => match x.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
            "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|x| x != 0),
        _ => None,
    }
}

/// The body's `key` object, or 400.
pub fn body_obj<'a>(b: &'a Value, key: &str) -> CResult<&'a serde_json::Map<String, Value>> {
    b.get(key).and_then(Value::as_object).ok_or_else(|| {
        CinderError::bad(format!("Missing required element '{key}' in request body."))
    })
}

pub fn uuid_like(s: &str) -> bool {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

/// The service's routes, ready to nest under `/volume`.
pub fn router(svc: Arc<VolumeService>) -> Router {
    let inner = Router::new()
        .route("/", get(versions_root))
        .route("/v3", get(version_v3))
        .route("/v3/", get(version_v3))
        .merge(volumes::routes())
        .merge(snapshots::routes())
        .merge(types::routes())
        .merge(attachments::routes())
        .merge(availability_zones::routes())
        .merge(extensions::routes())
        .merge(quotas::routes())
        .merge(resource_filters::routes())
        .merge(default_types::routes())
        .merge(services::routes())
        .merge(pools::routes())
        .merge(manageable::routes())
        .merge(backups::routes())
        .merge(workers::routes())
        .merge(clusters::routes())
        .merge(transfers::routes())
        .merge(messages::routes())
        .merge(groups::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(microversion))
        .with_state(svc);
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(strip_project))
}

async fn not_found() -> CinderError {
    CinderError::not_found("The resource could not be found.")
}

/// The unauthenticated version list at `/volume/` (300 Multiple Choices).
pub fn versions_response(svc: &VolumeService) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(json!({"versions": [version_doc(svc)]})),
    )
        .into_response()
}

pub fn version_doc(svc: &VolumeService) -> Value {
    json!({
        "id": "v3.0",
        "status": "CURRENT",
        "version": format!("3.{MAX_VERSION}"),
        "min_version": format!("3.{MIN_VERSION}"),
        "updated": "2023-08-31T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{}/v3/", svc.base_url)},
        ],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.volume+json;version=3"}],
    })
}

async fn versions_root(State(svc): St) -> Response {
    versions_response(&svc)
}

async fn version_v3(State(svc): St) -> Response {
    ok(json!({"versions": [version_doc(&svc)]}))
}

/// Cinder's list parameters: sort (`sort=k:d,...` or `sort_key`/`sort_dir`),
/// `limit`, `marker`, `offset`; the rest are filters.
pub struct ListParams {
    pub sorts: Vec<(String, bool)>,
    pub limit: Option<usize>,
    pub marker: Option<String>,
    pub offset: usize,
    pub filters: Vec<(String, String)>,
    pub all_tenants: bool,
    pub with_count: bool,
}

const MAX_LIMIT: usize = 1000;

pub fn list_params(q: &Query, sort_keys: &[&str]) -> CResult<ListParams> {
    let mut p = ListParams {
        sorts: Vec::new(),
        limit: None,
        marker: None,
        offset: 0,
        filters: Vec::new(),
        all_tenants: false,
        with_count: false,
    };
    let mut sort_key: Vec<String> = Vec::new();
    let mut sort_dir: Vec<String> = Vec::new();
    for (k, v) in &q.0 {
        match k.as_str() {
            "sort" => {
                for part in v.split(',').filter(|x| !x.is_empty()) {
                    let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
                    p.sorts.push((key.trim().to_string(), parse_dir(dir)?));
                }
            }
            "sort_key" => sort_key.extend(v.split(',').map(str::to_string)),
            "sort_dir" => sort_dir.extend(v.split(',').map(str::to_string)),
            "limit" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| CinderError::bad("limit param must be an integer"))?;
                if n < 0 {
                    return Err(CinderError::bad("limit param must be positive"));
                }
                p.limit = Some(usize::try_from(n).unwrap_or(0));
            }
            "marker" => p.marker = Some(v.clone()),
            "offset" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| CinderError::bad("offset param must be an integer"))?;
                if n < 0 {
                    return Err(CinderError::bad("offset param must be positive"));
                }
                p.offset = usize::try_from(n).unwrap_or(0);
            }
            "all_tenants" => p.all_tenants = !matches!(v.as_str(), "0" | "false" | "False"),
            "with_count" => p.with_count = matches!(v.as_str(), "1" | "true" | "True"),
            _ => p.filters.push((k.clone(), v.clone())),
        }
    }
    if p.sorts.is_empty() && !sort_key.is_empty() {
        for (n, k) in sort_key.iter().enumerate() {
            let d = sort_dir.get(n).or(sort_dir.first()).map(String::as_str);
            p.sorts.push((k.clone(), parse_dir(d.unwrap_or("desc"))?));
        }
    }
    // `display_name` is the old spelling of `name`.
    for (k, _) in p.sorts.iter_mut() {
        if k == "display_name" {
            *k = "name".into();
        }
    }
    for (k, _) in &p.sorts {
        if !sort_keys.contains(&k.as_str()) {
            return Err(CinderError::bad(format!(
                "Invalid input received: Invalid sort key {k}"
            )));
        }
    }
    if p.sorts.is_empty() {
        p.sorts.push(("created_at".into(), false));
    }
    if !p.sorts.iter().any(|(k, _)| k == "id") {
        let dir = p.sorts[0].1;
        p.sorts.push(("id".into(), dir));
    }
    Ok(p)
}

/// `true` for ascending.
fn parse_dir(d: &str) -> CResult<bool> {
    match d.trim().to_ascii_lowercase().as_str() {
        "asc" => Ok(true),
        "desc" => Ok(false),
        other => Err(CinderError::bad(format!(
            "Invalid input received: Unknown sort direction, must be 'desc' or 'asc': {other}"
        ))),
    }
}

fn cmp_field(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Sorts (keys name stored fields), applies marker/offset/limit, and builds
/// the `next` link when a page is full.
pub fn paginate(
    svc: &VolumeService,
    mut items: Vec<Arc<crate::store::Obj>>,
    p: &ListParams,
    path: &str,
    q: &Query,
) -> CResult<(Vec<Arc<crate::store::Obj>>, Option<Value>)> {
    items.sort_by(|a, b| {
        for (k, asc) in &p.sorts {
            let o = cmp_field(
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null),
            );
            let o = if *asc { o } else { o.reverse() };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    let mut start = 0;
    if let Some(m) = &p.marker {
        start = items
            .iter()
            .position(|x| crate::store::s(x, "id") == m)
            .map(|n| n + 1)
            .ok_or_else(|| CinderError::not_found(format!("Marker {m} could not be found.")))?;
    }
    start += p.offset;
    let rest: Vec<_> = items.into_iter().skip(start).collect();
    let limit = p.limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    // Cinder links the next page whenever this one is full (the next may be empty).
    let more = limit > 0 && rest.len() >= limit && (p.limit.is_some() || rest.len() > limit);
    let page: Vec<_> = rest.into_iter().take(limit).collect();
    let links = match (more, page.last()) {
        (true, Some(last)) => {
            let mut qs: Vec<String> =
                q.0.iter()
                    .filter(|(k, _)| k != "marker" && k != "offset")
                    .map(|(k, v)| format!("{k}={}", enc(v)))
                    .collect();
            if p.limit.is_none() {
                qs.push(format!("limit={limit}"));
            }
            qs.push(format!("marker={}", crate::store::s(last, "id")));
            Some(json!([{"rel": "next",
                "href": format!("{}/v3/{path}?{}", svc.base_url, qs.join("&"))}]))
        }
        _ => None,
    };
    Ok((page, links))
}

fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Parses a `metadata` filter: Cinder takes a Python dict literal
/// (`{'k': 'v'}`) or JSON.
pub fn parse_metadata_filter(v: &str) -> CResult<serde_json::Map<String, Value>> {
    let j: Value = serde_json::from_str(v)
        .or_else(|_| serde_json::from_str(&v.replace('\'', "\"")))
        .map_err(|_| CinderError::bad(format!("Invalid input received: metadata {v}")))?;
    match j {
        Value::Object(m) => Ok(m),
        _ => Err(CinderError::bad(format!(
            "Invalid input received: metadata {v}"
        ))),
    }
}

/// Validates a metadata body: string keys of 1..255 chars, string values up to 255.
pub fn check_metadata(m: &Value) -> CResult<serde_json::Map<String, Value>> {
    let o = m
        .as_object()
        .ok_or_else(|| CinderError::bad("Malformed request body: metadata must be a dict"))?;
    for (k, v) in o {
        if k.is_empty() || k.len() > 255 {
            return Err(CinderError::bad(
                "Invalid input received: metadata key length must be between 1 and 255",
            ));
        }
        match v {
            Value::String(s) if s.len() <= 255 => {}
            Value::String(_) => {
                return Err(CinderError::bad(
                    "Invalid input received: metadata value length must be at most 255",
                ));
            }
            _ => {
                return Err(CinderError::bad(format!(
                    "Invalid input received: metadata value of {k} must be a string"
                )));
            }
        }
    }
    Ok(o.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let p = url_decode_pairs("metadata=%7B%27k%27%3A+%27v%27%7D&name=a+b&x");
        assert_eq!(p[0].1, "{'k': 'v'}");
        assert_eq!(p[1].1, "a b");
        assert_eq!(p[2], ("x".to_string(), String::new()));
        assert_eq!(
            parse_metadata_filter("{'k': 'v'}").unwrap()["k"],
            json!("v")
        );
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_minor("3.27"), Some(27));
        assert_eq!(parse_minor("3.027"), None);
        assert_eq!(parse_minor("2.1"), None);
    }
}
