//! The Placement REST API (mounted under `/placement`), microversions
//! 1.0 to 1.39.
use crate::names::{self, STANDARD_RESOURCE_CLASSES};
use crate::state::{self, CODE_DUPLICATE, CODE_INUSE, ConsumerWrite, PErr, Provider, Query, State};
use crate::{AllocMap, Inventory, PlacementService};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State as AxState};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferro_common::Error;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

type St = AxState<Arc<PlacementService>>;
type R = Result<Response, PErr>;

pub const MIN_VERSION: u16 = 0;
pub const MAX_VERSION: u16 = 39;
/// `placement` consumers' placeholder when a request (< 1.8) names none.
const INCOMPLETE_CONSUMER: &str = "00000000-0000-0000-0000-000000000000";

// ---- microversions ----------------------------------------------------------

/// The requested microversion: 1.`minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mv(pub u16);

impl Mv {
    pub fn at_least(self, minor: u16) -> bool {
        self.0 >= minor
    }
}

/// Parses `OpenStack-API-Version` (the `placement` entry).
pub fn parse_version(headers: &HeaderMap) -> Result<Mv, PErr> {
    let mut found: Option<String> = None;
    for v in headers.get_all("openstack-api-version") {
        let Ok(s) = v.to_str() else {
            return Err(PErr::bad("invalid version header"));
        };
        for part in s.split(',') {
            let mut it = part.split_whitespace();
            if it
                .next()
                .is_some_and(|svc| svc.eq_ignore_ascii_case("placement"))
            {
                found = Some(it.collect::<Vec<_>>().join(" "));
            }
        }
    }
    let Some(v) = found else {
        return Ok(Mv(MIN_VERSION));
    };
    let v = v.trim();
    if v.eq_ignore_ascii_case("latest") {
        return Ok(Mv(MAX_VERSION));
    }
    let parsed = v.split_once('.').and_then(|(a, b)| {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if ok(a) && ok(b) {
            Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
        } else {
            None
        }
    });
    let Some((major, minor)) = parsed else {
        return Err(PErr::bad(format!("invalid version string: {v}")));
    };
    if major != 1 || minor > u32::from(MAX_VERSION) {
        return Err(PErr::new(
            406,
            format!("Unacceptable version header: {v}",),
            state::CODE_DEFAULT,
        ));
    }
    Ok(Mv(minor as u16))
}

fn version_headers(resp: &mut Response, mv: Mv) {
    if let Ok(v) = HeaderValue::from_str(&format!("placement 1.{}", mv.0)) {
        resp.headers_mut().insert("openstack-api-version", v);
    }
    resp.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("openstack-api-version"),
    );
}

async fn version_mw(mut req: Request, next: Next) -> Response {
    let mv = match parse_version(req.headers()) {
        Ok(mv) => mv,
        Err(e) => {
            let mut r = e.into_response();
            version_headers(&mut r, Mv(MIN_VERSION));
            return r;
        }
    };
    req.extensions_mut().insert(mv);
    let mut resp = next.run(req).await;
    version_headers(&mut resp, mv);
    resp
}

// ---- errors -----------------------------------------------------------------

impl IntoResponse for PErr {
    fn into_response(self) -> Response {
        let rid = ferro_common::new_request_id();
        let title = ferro_common::error::reason_phrase(self.status);
        let title = if self.status == 406 {
            "Not Acceptable"
        } else {
            title
        };
        let body = json!({"errors": [{
            "status": self.status,
            "title": title,
            "detail": self.detail,
            "code": self.code,
            "request_id": rid,
        }]});
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(body)).into_response()
    }
}

// ---- caller -----------------------------------------------------------------

/// An authenticated, authorised caller and the request's microversion.
pub struct Ctx {
    pub mv: Mv,
}

impl FromRequestParts<Arc<PlacementService>> for Ctx {
    type Rejection = PErr;
    async fn from_request_parts(
        parts: &mut Parts,
        svc: &Arc<PlacementService>,
    ) -> Result<Self, PErr> {
        let mv = parts
            .extensions
            .get::<Mv>()
            .copied()
            .unwrap_or(Mv(MIN_VERSION));
        let unauth = || {
            PErr::new(
                401,
                "The request you have made requires authentication.",
                state::CODE_DEFAULT,
            )
        };
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
                Error::Internal { .. } | Error::Unavailable { .. } => PErr::from(e),
                _ => unauth(),
            })?;
        // Placement's defaults: admin (or the service role Nova uses).
        if !(vt.has_role("admin") || vt.has_role("service")) {
            return Err(PErr::new(
                403,
                "Policy does not allow this action to be performed.",
                state::CODE_DEFAULT,
            ));
        }
        Ok(Ctx { mv })
    }
}

// ---- helpers ----------------------------------------------------------------

fn json_resp(status: u16, v: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, axum::Json(v)).into_response()
}

fn http_date(micros: i64) -> String {
    ferro_db::micros_to_time(micros)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// 1.15+: `Last-Modified` and `Cache-Control: no-cache` on GETs.
fn cached(mut r: Response, mv: Mv, micros: Option<i64>) -> Response {
    if mv.at_least(15) {
        let t = micros
            .filter(|m| *m > 0)
            .unwrap_or_else(ferro_db::now_micros);
        if let Ok(v) = HeaderValue::from_str(&http_date(t)) {
            r.headers_mut().insert(header::LAST_MODIFIED, v);
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    r
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `Location`, absolute (as webob makes it): clients request it as-is.
fn with_location(svc: &PlacementService, mut r: Response, loc: &str) -> Response {
    let pre = prefix(svc);
    let abs = match loc.strip_prefix(pre.as_str()) {
        Some(rest) => format!("{}{rest}", svc.base_url.trim_end_matches('/')),
        None => loc.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&abs) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn version_404() -> PErr {
    PErr::not_found("The resource could not be found.")
}

fn need(mv: Mv, minor: u16) -> Result<(), PErr> {
    if mv.at_least(minor) {
        Ok(())
    } else {
        Err(version_404())
    }
}

fn body_json(b: &Bytes) -> Result<Value, PErr> {
    if b.is_empty() {
        return Err(PErr::bad("Malformed JSON: request body is empty"));
    }
    serde_json::from_slice(b).map_err(|e| PErr::bad(format!("Malformed JSON: {e}")))
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PErr> {
    v.as_object().ok_or_else(|| {
        PErr::bad(format!(
            "JSON does not validate: {what} is not of type 'object'"
        ))
    })
}

fn only_keys(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), PErr> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(PErr::bad(format!(
                "JSON does not validate: Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    Ok(())
}

fn req_key<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a Value, PErr> {
    m.get(k).ok_or_else(|| {
        PErr::bad(format!(
            "JSON does not validate: '{k}' is a required property"
        ))
    })
}

fn as_uint(v: &Value, what: &str) -> Result<u64, PErr> {
    v.as_u64().ok_or_else(|| {
        PErr::bad(format!(
            "JSON does not validate: {what} {v} is not a non-negative integer"
        ))
    })
}

fn as_str<'a>(v: &'a Value, what: &str) -> Result<&'a str, PErr> {
    v.as_str().ok_or_else(|| {
        PErr::bad(format!(
            "JSON does not validate: {what} {v} is not of type 'string'"
        ))
    })
}

/// Accepts 36-char hyphenated or 32-char plain hex; returns the hyphenated
/// lowercase form.
pub(crate) fn norm_uuid(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if s.len() != 32 && s.len() != 36 {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn parse_qs(raw: Option<String>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                ferro_common::percent_decode(k),
                ferro_common::percent_decode(v),
            ),
            None => (ferro_common::percent_decode(p), String::new()),
        })
        .collect()
}

fn qget<'a>(qs: &'a [(String, String)], k: &str) -> Vec<&'a str> {
    qs.iter()
        .filter(|(kk, _)| kk == k)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn prefix(svc: &PlacementService) -> String {
    // The path part of base_url ("/placement").
    let b = svc.base_url.as_str();
    let rest = b.split_once("://").map_or(b, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest[i..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

fn rp_url(svc: &PlacementService, uuid: &str) -> String {
    format!("{}/resource_providers/{uuid}", prefix(svc))
}

fn rp_json(svc: &PlacementService, mv: Mv, p: &Provider) -> Value {
    let url = rp_url(svc, &p.uuid);
    let mut rels = vec!["inventories", "usages"];
    if mv.at_least(1) {
        rels.push("aggregates");
    }
    if mv.at_least(6) {
        rels.push("traits");
    }
    if mv.at_least(11) {
        rels.push("allocations");
    }
    let mut links = vec![json!({"rel": "self", "href": url})];
    for r in rels {
        links.push(json!({"rel": r, "href": format!("{url}/{r}")}));
    }
    let mut v = json!({
        "uuid": p.uuid,
        "name": p.name,
        "generation": p.generation,
        "links": links,
    });
    if mv.at_least(14) {
        v["parent_provider_uuid"] = json!(p.parent);
        v["root_provider_uuid"] = json!(p.root);
    }
    v
}

fn inv_json(inv: &Inventory) -> Value {
    json!({
        "total": inv.total,
        "reserved": inv.reserved,
        "min_unit": inv.min_unit,
        "max_unit": inv.max_unit,
        "step_size": inv.step_size,
        "allocation_ratio": inv.allocation_ratio,
    })
}

/// One inventory from a request body (extra allowed keys are skipped).
fn parse_inventory(rc: &str, v: &Value, extra: &[&str]) -> Result<Inventory, PErr> {
    let m = obj(v, &format!("inventory of {rc}"))?;
    let mut allowed = vec![
        "total",
        "reserved",
        "min_unit",
        "max_unit",
        "step_size",
        "allocation_ratio",
    ];
    allowed.extend_from_slice(extra);
    only_keys(m, &allowed)?;
    let int = |k: &str, d: u64| -> Result<u64, PErr> {
        match m.get(k) {
            None => Ok(d),
            Some(v) => as_uint(v, k),
        }
    };
    let inv = Inventory {
        total: as_uint(req_key(m, "total")?, "total")?,
        reserved: int("reserved", 0)?,
        min_unit: int("min_unit", 1)?,
        max_unit: int("max_unit", 2147483647)?,
        step_size: int("step_size", 1)?,
        allocation_ratio: match m.get("allocation_ratio") {
            None => 1.0,
            Some(v) => v.as_f64().ok_or_else(|| {
                PErr::bad(format!(
                    "JSON does not validate: allocation_ratio {v} is not of type 'number'"
                ))
            })?,
        },
    };
    Ok(inv)
}

fn check_inventory(rc: &str, inv: &Inventory, mv: Mv) -> Result<(), PErr> {
    crate::validate_inventory(rc, inv, mv.at_least(26))
}

fn gen_of(m: &Map<String, Value>) -> Result<u64, PErr> {
    as_uint(
        req_key(m, "resource_provider_generation")?,
        "resource_provider_generation",
    )
}

// ---- query parsing ------------------------------------------------------------

/// `required=` values: AND of ORs and forbidden traits.
fn parse_required(
    vals: &[&str],
    mv: Mv,
    st: &State,
    param: &str,
) -> Result<(Vec<Vec<String>>, Vec<String>), PErr> {
    let mut req = Vec::new();
    let mut forb = Vec::new();
    for v in vals {
        if v.trim().is_empty() {
            return Err(PErr::new(
                400,
                format!(
                    "Invalid query string parameters: Expected '{param}' parameter value of the form: HW_CPU_X86_VMX,!CUSTOM_MAGIC."
                ),
                "placement.query.missing_value",
            ));
        }
        if let Some(list) = v.strip_prefix("in:").filter(|_| mv.at_least(39)) {
            let any: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if any.iter().any(|t| t.is_empty() || t.starts_with('!')) {
                return Err(PErr::bad(format!(
                    "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only allows positive traits: {v}"
                )));
            }
            req.push(any);
            continue;
        }
        for t in v.split(',').map(str::trim) {
            if let Some(f) = t.strip_prefix('!').filter(|_| mv.at_least(22)) {
                forb.push(f.to_string());
            } else if t.is_empty() {
                return Err(PErr::bad(format!(
                    "Invalid query string parameters: Expected '{param}' parameter value of the form: HW_CPU_X86_VMX,!CUSTOM_MAGIC. Got: {v}"
                )));
            } else {
                req.push(vec![t.to_string()]);
            }
        }
    }
    let mut missing: Vec<&str> = req
        .iter()
        .flatten()
        .chain(forb.iter())
        .map(String::as_str)
        .filter(|t| !st.trait_exists(t))
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        return Err(PErr::bad(format!(
            "Invalid query string parameters: No such trait(s): {}.",
            missing.join(", ")
        )));
    }
    Ok((req, forb))
}

/// `member_of=` values: AND of ORs and forbidden aggregates.
fn parse_member_of(vals: &[&str], mv: Mv) -> Result<(Vec<Vec<String>>, Vec<String>), PErr> {
    let bad = |v: &str| {
        PErr::bad(format!(
            "Invalid query string parameters: Expected 'member_of' parameter to contain valid UUID(s). Got: {v}"
        ))
    };
    if vals.len() > 1 && !mv.at_least(24) {
        return Err(PErr::bad(
            "Invalid query string parameters: Multiple member_of parameters are not supported before microversion 1.24.",
        ));
    }
    let mut and = Vec::new();
    let mut forb = Vec::new();
    for v in vals {
        let (neg, rest) = match v.strip_prefix('!') {
            Some(r) if mv.at_least(32) => (true, r),
            _ => (false, *v),
        };
        let list = rest.strip_prefix("in:");
        let items: Vec<&str> = match list {
            Some(l) => l.split(',').collect(),
            None => vec![rest],
        };
        let mut uuids = Vec::new();
        for i in items {
            if i.starts_with('!') {
                return Err(PErr::bad(format!(
                    "Invalid query string parameters: Forbidden member_of parameters may only be specified as !in:... or !<uuid>. Got: {v}"
                )));
            }
            uuids.push(norm_uuid(i.trim()).ok_or_else(|| bad(v))?);
        }
        if neg {
            forb.extend(uuids);
        } else {
            and.push(uuids);
        }
    }
    Ok((and, forb))
}

/// `resources=VCPU:1,MEMORY_MB:512`.
fn parse_resources(v: &str, st: &State) -> Result<BTreeMap<String, u64>, PErr> {
    let bad = || {
        PErr::bad(format!(
            "Badly formed resources parameter. Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {v}."
        ))
    };
    let mut out = BTreeMap::new();
    for part in v.split(',') {
        let (rc, n) = part.split_once(':').ok_or_else(bad)?;
        let rc = rc.trim();
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(PErr::bad(format!(
                "Requested resource {rc} expected positive integer amount. Got: 0."
            )));
        }
        if !st.rc_exists(rc) {
            return Err(PErr::bad(format!(
                "Invalid resource class in resources parameter: No such resource class {rc}."
            )));
        }
        *out.entry(rc.to_string()).or_default() += n;
    }
    Ok(out)
}

// ---- router -------------------------------------------------------------------

pub fn router() -> Router<Arc<PlacementService>> {
    Router::new()
        .route("/", get(root))
        .route("/resource_providers", get(rp_list).post(rp_create))
        .route(
            "/resource_providers/{uuid}",
            get(rp_show).put(rp_update).delete(rp_delete),
        )
        .route(
            "/resource_providers/{uuid}/inventories",
            get(inv_list)
                .put(inv_set_all)
                .post(inv_create)
                .delete(inv_delete_all),
        )
        .route(
            "/resource_providers/{uuid}/inventories/{rc}",
            get(inv_show).put(inv_update).delete(inv_delete),
        )
        .route("/resource_providers/{uuid}/usages", get(rp_usages))
        .route(
            "/resource_providers/{uuid}/traits",
            get(rp_traits).put(rp_traits_set).delete(rp_traits_delete),
        )
        .route(
            "/resource_providers/{uuid}/aggregates",
            get(rp_aggs).put(rp_aggs_set),
        )
        .route(
            "/resource_providers/{uuid}/allocations",
            get(rp_allocations),
        )
        .route("/resource_classes", get(rc_list).post(rc_create))
        .route(
            "/resource_classes/{name}",
            get(rc_show).put(rc_put).delete(rc_delete),
        )
        .route("/traits", get(trait_list))
        .route(
            "/traits/{name}",
            get(trait_show).put(trait_put).delete(trait_delete),
        )
        .route(
            "/allocations/{consumer}",
            get(alloc_show).put(alloc_put).delete(alloc_delete),
        )
        .route("/allocations", post(alloc_post))
        .route("/allocation_candidates", get(candidates))
        .route("/usages", get(usages))
        .route("/reshaper", post(reshaper))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(version_mw))
}

async fn fallback() -> PErr {
    PErr::not_found("The resource could not be found.")
}

async fn method_not_allowed() -> PErr {
    PErr::new(
        405,
        "The method specified is not allowed for this resource.",
        state::CODE_DEFAULT,
    )
}

pub async fn root() -> Response {
    json_resp(
        200,
        json!({"versions": [{
            "id": "v1.0",
            "max_version": format!("1.{MAX_VERSION}"),
            "min_version": format!("1.{MIN_VERSION}"),
            "status": "CURRENT",
            "links": [{"rel": "self", "href": ""}],
        }]}),
    )
}

// ---- resource providers ---------------------------------------------------------

async fn rp_list(AxState(svc): St, ctx: Ctx, RawQuery(q): RawQuery) -> R {
    let mv = ctx.mv;
    let qs = parse_qs(q);
    let st = svc.lock().await;
    let mut query = Query::default();
    let one = |k: &str| qget(&qs, k).last().map(|s| s.to_string());
    let name = one("name");
    let uuid = one("uuid");
    if mv.at_least(3) {
        let mo = qget(&qs, "member_of");
        if !mo.is_empty() {
            let (a, f) = parse_member_of(&mo, mv)?;
            query.member_of = a;
            query.forbidden_aggs = f;
        }
    }
    if mv.at_least(4)
        && let Some(r) = one("resources")
    {
        query.resources = parse_resources(&r, &st)?;
    }
    if mv.at_least(14)
        && let Some(t) = one("in_tree")
    {
        let t = norm_uuid(&t).ok_or_else(|| {
            PErr::bad(format!(
                "Invalid query string parameters: Invalid in_tree uuid {t}"
            ))
        })?;
        query.in_tree = Some(t);
    }
    if mv.at_least(18) {
        let r = qget(&qs, "required");
        if !r.is_empty() {
            let (a, f) = parse_required(&r, mv, &st, "required")?;
            query.required = a;
            query.forbidden = f;
        }
    }
    let mut out = Vec::new();
    let mut newest = 0;
    if query
        .in_tree
        .as_ref()
        .is_none_or(|t| st.providers.contains_key(t))
    {
        for p in st.filter_providers(&query) {
            if name.as_ref().is_some_and(|n| &p.name != n) {
                continue;
            }
            if uuid
                .as_ref()
                .is_some_and(|u| norm_uuid(u).as_deref() != Some(p.uuid.as_str()) && &p.uuid != u)
            {
                continue;
            }
            newest = newest.max(p.updated_at);
            out.push(rp_json(&svc, mv, p));
        }
    }
    Ok(cached(
        json_resp(200, json!({"resource_providers": out})),
        mv,
        Some(newest),
    ))
}

async fn rp_create(AxState(svc): St, ctx: Ctx, body: Bytes) -> R {
    let mv = ctx.mv;
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    let mut allowed = vec!["name", "uuid"];
    if mv.at_least(14) {
        allowed.push("parent_provider_uuid");
    }
    only_keys(m, &allowed)?;
    let name = as_str(req_key(m, "name")?, "name")?.to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(PErr::bad(
            "JSON does not validate: name must be between 1 and 200 characters",
        ));
    }
    let uuid = match m.get("uuid") {
        None | Some(Value::Null) => ferro_common::new_uuid(),
        Some(u) => {
            let s = as_str(u, "uuid")?;
            norm_uuid(s).ok_or_else(|| {
                PErr::bad(format!("JSON does not validate: '{s}' is not a 'uuid'"))
            })?
        }
    };
    let parent = match m.get("parent_provider_uuid") {
        None | Some(Value::Null) => None,
        Some(u) => {
            let s = as_str(u, "parent_provider_uuid")?;
            Some(norm_uuid(s).ok_or_else(|| {
                PErr::bad(format!("JSON does not validate: '{s}' is not a 'uuid'"))
            })?)
        }
    };
    let mut st = svc.lock().await;
    let mut dups = Vec::new();
    if st.providers.contains_key(&uuid) {
        dups.push(format!("uuid: {uuid}"));
    }
    if st.providers.values().any(|p| p.name == name) {
        dups.push(format!("name: {name}"));
    }
    if !dups.is_empty() {
        return Err(PErr::new(
            409,
            format!(
                "Conflicting resource provider {} already exists.",
                dups.join(", ")
            ),
            CODE_DUPLICATE,
        ));
    }
    let root = match &parent {
        None => uuid.clone(),
        Some(pu) => match st.providers.get(pu) {
            Some(pp) => pp.root.clone(),
            None => {
                return Err(PErr::bad(format!(
                    "Unable to create resource provider \"{name}\", {uuid}: The parent provider UUID does not exist: {pu}"
                )));
            }
        },
    };
    let p = Provider::new(&uuid, &name, parent, root);
    let mut ch = state::Changes::default();
    ch.put_provider(p.clone());
    svc.commit(&mut st, ch).await?;
    let loc = rp_url(&svc, &uuid);
    if mv.at_least(20) {
        Ok(with_location(
            &svc,
            cached(
                json_resp(200, rp_json(&svc, mv, &p)),
                mv,
                Some(p.updated_at),
            ),
            &loc,
        ))
    } else {
        Ok(with_location(
            &svc,
            StatusCode::CREATED.into_response(),
            &loc,
        ))
    }
}

async fn rp_show(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>) -> R {
    let st = svc.lock().await;
    let p = st.provider(&uuid)?;
    Ok(cached(
        json_resp(200, rp_json(&svc, ctx.mv, p)),
        ctx.mv,
        Some(p.updated_at),
    ))
}

async fn rp_update(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>, body: Bytes) -> R {
    let mv = ctx.mv;
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    let mut allowed = vec!["name"];
    if mv.at_least(14) {
        allowed.push("parent_provider_uuid");
    }
    only_keys(m, &allowed)?;
    let name = as_str(req_key(m, "name")?, "name")?.to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(PErr::bad(
            "JSON does not validate: name must be between 1 and 200 characters",
        ));
    }
    let mut st = svc.lock().await;
    let p = st.provider(&uuid)?.clone();
    if st
        .providers
        .values()
        .any(|o| o.name == name && o.uuid != uuid)
    {
        return Err(PErr::new(
            409,
            format!("Conflicting resource provider {name} already exists."),
            CODE_DUPLICATE,
        ));
    }
    let mut ch = state::Changes::default();
    let mut np = p.clone();
    np.name = name;
    if let Some(pv) = m.get("parent_provider_uuid") {
        let new_parent = match pv {
            Value::Null => None,
            other => {
                let s = as_str(other, "parent_provider_uuid")?;
                Some(norm_uuid(s).ok_or_else(|| {
                    PErr::bad(format!("JSON does not validate: '{s}' is not a 'uuid'"))
                })?)
            }
        };
        if new_parent != p.parent {
            if p.parent.is_some() && !mv.at_least(37) {
                return Err(PErr::bad(format!(
                    "Unable to save resource provider {uuid}: Object action update failed because: re-parenting a provider is not currently allowed."
                )));
            }
            let desc = st.descendants(&uuid);
            let new_root = match &new_parent {
                None => uuid.clone(),
                Some(np_uuid) => {
                    if np_uuid == &uuid || desc.contains(np_uuid) {
                        return Err(PErr::bad(format!(
                            "Unable to save resource provider {uuid}: Object action update failed because: creating loop in the provider tree is not allowed."
                        )));
                    }
                    st.providers
                        .get(np_uuid)
                        .ok_or_else(|| {
                            PErr::bad(format!(
                                "Unable to save resource provider {uuid}: parent provider UUID does not exist: {np_uuid}"
                            ))
                        })?
                        .root
                        .clone()
                }
            };
            np.parent = new_parent;
            np.root = new_root.clone();
            np.generation += 1;
            for d in desc {
                if let Some(dp) = st.providers.get(&d) {
                    let mut dp = dp.clone();
                    dp.root = new_root.clone();
                    ch.put_provider(dp);
                }
            }
        }
    }
    if np != p {
        np.updated_at = ferro_db::now_micros();
        ch.put_provider(np.clone());
    }
    svc.commit(&mut st, ch).await?;
    Ok(cached(
        json_resp(200, rp_json(&svc, mv, &np)),
        mv,
        Some(np.updated_at),
    ))
}

async fn rp_delete(AxState(svc): St, _ctx: Ctx, Path(uuid): Path<String>) -> R {
    svc.delete_provider_inner(&uuid).await?;
    Ok(no_content())
}

// ---- inventories ------------------------------------------------------------------

fn inventories_body(p: &Provider) -> Value {
    let invs: Map<String, Value> = p
        .inventories
        .iter()
        .map(|(rc, i)| (rc.clone(), inv_json(i)))
        .collect();
    json!({"inventories": invs, "resource_provider_generation": p.generation})
}

fn inventory_body(p: &Provider, rc: &str) -> Result<Value, PErr> {
    let inv = p
        .inventories
        .get(rc)
        .ok_or_else(|| PErr::not_found(format!("No inventory of class {rc} for {}", p.uuid)))?;
    let mut v = inv_json(inv);
    v["resource_provider_generation"] = json!(p.generation);
    Ok(v)
}

async fn inv_list(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>) -> R {
    let st = svc.lock().await;
    let p = st.provider(&uuid)?;
    Ok(cached(
        json_resp(200, inventories_body(p)),
        ctx.mv,
        Some(p.updated_at),
    ))
}

async fn inv_set_all(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>, body: Bytes) -> R {
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    only_keys(m, &["inventories", "resource_provider_generation"])?;
    let gen_ = gen_of(m)?;
    let invs_v = obj(req_key(m, "inventories")?, "inventories")?;
    let mut invs = BTreeMap::new();
    for (rc, iv) in invs_v {
        if !names::valid_name_chars(rc) {
            return Err(PErr::bad(format!(
                "JSON does not validate: '{rc}' does not match any of the regexes"
            )));
        }
        let inv = parse_inventory(rc, iv, &[])?;
        invs.insert(rc.clone(), inv);
    }
    let mut st = svc.lock().await;
    st.provider(&uuid)?;
    for (rc, inv) in &invs {
        check_inventory(rc, inv, ctx.mv)?;
    }
    let mut ch = state::Changes::default();
    let np = st.plan_set_inventories(&uuid, invs, Some(gen_), &mut ch)?;
    svc.commit(&mut st, ch).await?;
    Ok(cached(
        json_resp(200, inventories_body(&np)),
        ctx.mv,
        Some(np.updated_at),
    ))
}

async fn inv_create(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>, body: Bytes) -> R {
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    let rc = as_str(req_key(m, "resource_class")?, "resource_class")?.to_string();
    let inv = parse_inventory(&rc, &v, &["resource_class", "resource_provider_generation"])?;
    let mut st = svc.lock().await;
    let p = st.provider(&uuid)?;
    if !st.rc_exists(&rc) {
        return Err(PErr::bad(format!(
            "Unable to create inventory for resource provider {uuid}: No such resource class {rc}."
        )));
    }
    check_inventory(&rc, &inv, ctx.mv).map_err(|e| {
        PErr::bad(format!(
            "Unable to create inventory for resource provider {uuid}: {}",
            e.detail
        ))
    })?;
    if p.inventories.contains_key(&rc) {
        return Err(PErr::concurrent(format!(
            "Update conflict: Inventory for {rc} on resource provider {uuid} already exists."
        )));
    }
    let mut invs = p.inventories.clone();
    invs.insert(rc.clone(), inv);
    let mut ch = state::Changes::default();
    let np = st.plan_set_inventories(&uuid, invs, None, &mut ch)?;
    svc.commit(&mut st, ch).await?;
    let loc = format!("{}/inventories/{rc}", rp_url(&svc, &uuid));
    Ok(with_location(
        &svc,
        cached(
            json_resp(201, inventory_body(&np, &rc)?),
            ctx.mv,
            Some(np.updated_at),
        ),
        &loc,
    ))
}

async fn inv_delete_all(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>) -> R {
    if !ctx.mv.at_least(5) {
        return Err(PErr::new(
            405,
            "The method specified is not allowed for this resource.",
            state::CODE_DEFAULT,
        ));
    }
    let mut st = svc.lock().await;
    let mut ch = state::Changes::default();
    st.plan_set_inventories(&uuid, BTreeMap::new(), None, &mut ch)?;
    svc.commit(&mut st, ch).await?;
    Ok(no_content())
}

async fn inv_show(AxState(svc): St, ctx: Ctx, Path((uuid, rc)): Path<(String, String)>) -> R {
    let st = svc.lock().await;
    let p = st.provider(&uuid)?;
    Ok(cached(
        json_resp(200, inventory_body(p, &rc)?),
        ctx.mv,
        Some(p.updated_at),
    ))
}

async fn inv_update(
    AxState(svc): St,
    ctx: Ctx,
    Path((uuid, rc)): Path<(String, String)>,
    body: Bytes,
) -> R {
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    let gen_ = gen_of(m)?;
    let inv = parse_inventory(&rc, &v, &["resource_provider_generation"])?;
    let mut st = svc.lock().await;
    let p = st.provider(&uuid)?;
    if !st.rc_exists(&rc) {
        return Err(PErr::bad(format!("No such resource class {rc}.")));
    }
    check_inventory(&rc, &inv, ctx.mv)?;
    let mut invs = p.inventories.clone();
    invs.insert(rc.clone(), inv);
    let mut ch = state::Changes::default();
    let np = st.plan_set_inventories(&uuid, invs, Some(gen_), &mut ch)?;
    svc.commit(&mut st, ch).await?;
    Ok(cached(
        json_resp(200, inventory_body(&np, &rc)?),
        ctx.mv,
        Some(np.updated_at),
    ))
}

async fn inv_delete(AxState(svc): St, _ctx: Ctx, Path((uuid, rc)): Path<(String, String)>) -> R {
    let mut st = svc.lock().await;
    let p = st.provider(&uuid)?;
    if !p.inventories.contains_key(&rc) {
        return Err(PErr::not_found(format!(
            "No inventory of class {rc} found for delete"
        )));
    }
    let mut invs = p.inventories.clone();
    invs.remove(&rc);
    let mut ch = state::Changes::default();
    st.plan_set_inventories(&uuid, invs, None, &mut ch)
        .map_err(|e| {
            if e.code == CODE_INUSE {
                PErr::new(
                    409,
                    format!("Unable to delete inventory of class {rc}: Inventory for '{rc}' on resource provider '{uuid}' in use."),
                    CODE_INUSE,
                )
            } else {
                e
            }
        })?;
    svc.commit(&mut st, ch).await?;
    Ok(no_content())
}

// ---- usages, traits, aggregates, allocations of a provider --------------------------

async fn rp_usages(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>) -> R {
    let st = svc.lock().await;
    let p = st.provider(&uuid)?;
    let u = st.provider_usage(&uuid);
    Ok(cached(
        json_resp(
            200,
            json!({"resource_provider_generation": p.generation, "usages": u}),
        ),
        ctx.mv,
        None,
    ))
}

fn traits_body(p: &Provider) -> Value {
    json!({"traits": p.traits, "resource_provider_generation": p.generation})
}

async fn rp_traits(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>) -> R {
    need(ctx.mv, 6)?;
    let st = svc.lock().await;
    let p = st.provider(&uuid)?;
    Ok(cached(
        json_resp(200, traits_body(p)),
        ctx.mv,
        Some(p.updated_at),
    ))
}

async fn rp_traits_set(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>, body: Bytes) -> R {
    need(ctx.mv, 6)?;
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    only_keys(m, &["traits", "resource_provider_generation"])?;
    let gen_ = gen_of(m)?;
    let tv = req_key(m, "traits")?
        .as_array()
        .ok_or_else(|| PErr::bad("JSON does not validate: traits is not of type 'array'"))?;
    let mut want = BTreeSet::new();
    for t in tv {
        want.insert(as_str(t, "trait")?.to_string());
    }
    let mut st = svc.lock().await;
    let p = st.provider(&uuid)?;
    if p.generation != gen_ {
        return Err(PErr::concurrent(
            "Resource provider's generation already changed. Please update the generation and try again.",
        ));
    }
    let missing: Vec<&str> = want
        .iter()
        .map(String::as_str)
        .filter(|t| !st.trait_exists(t))
        .collect();
    if !missing.is_empty() {
        return Err(PErr::bad(format!(
            "No such trait(s): {}",
            missing.join(", ")
        )));
    }
    let mut np = p.clone();
    let mut ch = state::Changes::default();
    if np.traits != want {
        np.traits = want;
        np.bump();
        ch.put_provider(np.clone());
    }
    svc.commit(&mut st, ch).await?;
    Ok(cached(
        json_resp(200, traits_body(&np)),
        ctx.mv,
        Some(np.updated_at),
    ))
}

async fn rp_traits_delete(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>) -> R {
    need(ctx.mv, 6)?;
    let mut st = svc.lock().await;
    let p = st.provider(&uuid)?;
    let mut ch = state::Changes::default();
    if !p.traits.is_empty() {
        let mut np = p.clone();
        np.traits.clear();
        np.bump();
        ch.put_provider(np);
    }
    svc.commit(&mut st, ch).await?;
    Ok(no_content())
}

fn aggs_body(p: &Provider, mv: Mv) -> Value {
    let mut v = json!({"aggregates": p.aggregates});
    if mv.at_least(19) {
        v["resource_provider_generation"] = json!(p.generation);
    }
    v
}

async fn rp_aggs(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>) -> R {
    need(ctx.mv, 1)?;
    let st = svc.lock().await;
    let p = st.provider(&uuid)?;
    Ok(cached(
        json_resp(200, aggs_body(p, ctx.mv)),
        ctx.mv,
        Some(p.updated_at),
    ))
}

async fn rp_aggs_set(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>, body: Bytes) -> R {
    need(ctx.mv, 1)?;
    let mv = ctx.mv;
    let v = body_json(&body)?;
    let (list, gen_) = if mv.at_least(19) {
        let m = obj(&v, "body")?;
        only_keys(m, &["aggregates", "resource_provider_generation"])?;
        (req_key(m, "aggregates")?.clone(), Some(gen_of(m)?))
    } else {
        (v.clone(), None)
    };
    let arr = list
        .as_array()
        .ok_or_else(|| PErr::bad("JSON does not validate: aggregates is not of type 'array'"))?;
    let mut want = BTreeSet::new();
    for a in arr {
        let s = as_str(a, "aggregate")?;
        let u = norm_uuid(s)
            .ok_or_else(|| PErr::bad(format!("JSON does not validate: '{s}' is not a 'uuid'")))?;
        if !want.insert(u) {
            return Err(PErr::bad(format!(
                "JSON does not validate: {list} has non-unique elements"
            )));
        }
    }
    let mut st = svc.lock().await;
    let p = st.provider(&uuid)?;
    if let Some(g) = gen_
        && g != p.generation
    {
        return Err(PErr::concurrent(
            "Resource provider's generation already changed. Please update the generation and try again.",
        ));
    }
    let mut np = p.clone();
    let mut ch = state::Changes::default();
    if np.aggregates != want {
        np.aggregates = want;
        np.bump();
        ch.put_provider(np.clone());
    }
    svc.commit(&mut st, ch).await?;
    Ok(cached(
        json_resp(200, aggs_body(&np, mv)),
        mv,
        Some(np.updated_at),
    ))
}

async fn rp_allocations(AxState(svc): St, ctx: Ctx, Path(uuid): Path<String>) -> R {
    let st = svc.lock().await;
    let p = st.provider(&uuid)?;
    let mut out = Map::new();
    for c in st.consumers.values() {
        if let Some(res) = c.allocations.get(&uuid) {
            let mut e = json!({"resources": res});
            if ctx.mv.at_least(28) {
                e["consumer_generation"] = json!(c.generation);
            }
            out.insert(c.uuid.clone(), e);
        }
    }
    Ok(cached(
        json_resp(
            200,
            json!({"allocations": out, "resource_provider_generation": p.generation}),
        ),
        ctx.mv,
        None,
    ))
}

// ---- resource classes ---------------------------------------------------------------

fn rc_json(svc: &PlacementService, name: &str) -> Value {
    json!({"name": name, "links": [{"rel": "self", "href": format!("{}/resource_classes/{name}", prefix(svc))}]})
}

async fn rc_list(AxState(svc): St, ctx: Ctx) -> R {
    let st = svc.lock().await;
    let list: Vec<Value> = STANDARD_RESOURCE_CLASSES
        .iter()
        .map(|s| s.to_string())
        .chain(st.custom_rcs.iter().cloned())
        .map(|n| rc_json(&svc, &n))
        .collect();
    Ok(cached(
        json_resp(200, json!({"resource_classes": list})),
        ctx.mv,
        None,
    ))
}

fn rc_in_use(st: &State, rc: &str) -> bool {
    st.providers
        .values()
        .any(|p| p.inventories.contains_key(rc))
        || st
            .consumers
            .values()
            .any(|c| c.allocations.values().any(|r| r.contains_key(rc)))
}

async fn rc_create(AxState(svc): St, ctx: Ctx, body: Bytes) -> R {
    need(ctx.mv, 2)?;
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    only_keys(m, &["name"])?;
    let name = as_str(req_key(m, "name")?, "name")?.to_string();
    if !names::valid_custom_name(&name) {
        return Err(PErr::bad(format!(
            "JSON does not validate: '{name}' does not match '^CUSTOM_[A-Z0-9_]+$'"
        )));
    }
    let mut st = svc.lock().await;
    if st.rc_exists(&name) {
        return Err(PErr::new(
            409,
            format!("Conflicting resource class already exists: {name}"),
            CODE_DUPLICATE,
        ));
    }
    let mut ch = state::Changes::default();
    ch.rcs.insert(name.clone(), true);
    svc.commit(&mut st, ch).await?;
    Ok(with_location(
        &svc,
        StatusCode::CREATED.into_response(),
        &format!("{}/resource_classes/{name}", prefix(&svc)),
    ))
}

async fn rc_show(AxState(svc): St, ctx: Ctx, Path(name): Path<String>) -> R {
    need(ctx.mv, 2)?;
    let st = svc.lock().await;
    if !st.rc_exists(&name) {
        return Err(PErr::not_found(format!("No such resource class {name}.")));
    }
    Ok(cached(json_resp(200, rc_json(&svc, &name)), ctx.mv, None))
}

async fn rc_put(AxState(svc): St, ctx: Ctx, Path(name): Path<String>, body: Bytes) -> R {
    need(ctx.mv, 2)?;
    let mut st = svc.lock().await;
    if ctx.mv.at_least(7) {
        if !names::valid_custom_name(&name) {
            return Err(PErr::bad(format!(
                "JSON does not validate: '{name}' does not match '^CUSTOM_[A-Z0-9_]+$'"
            )));
        }
        if st.rc_exists(&name) {
            return Ok(no_content());
        }
        let mut ch = state::Changes::default();
        ch.rcs.insert(name.clone(), true);
        svc.commit(&mut st, ch).await?;
        return Ok(with_location(
            &svc,
            StatusCode::CREATED.into_response(),
            &format!("{}/resource_classes/{name}", prefix(&svc)),
        ));
    }
    // 1.2 - 1.6: rename a custom class.
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    only_keys(m, &["name"])?;
    let new = as_str(req_key(m, "name")?, "name")?.to_string();
    if !names::valid_custom_name(&new) {
        return Err(PErr::bad(format!(
            "JSON does not validate: '{new}' does not match '^CUSTOM_[A-Z0-9_]+$'"
        )));
    }
    if names::is_standard_rc(&name) {
        return Err(PErr::bad(format!(
            "Cannot update standard resource class {name}"
        )));
    }
    if !st.custom_rcs.contains(&name) {
        return Err(PErr::not_found(format!("No such resource class {name}.")));
    }
    if st.rc_exists(&new) {
        return Err(PErr::new(
            409,
            format!("Resource class already exists: {new}"),
            CODE_DUPLICATE,
        ));
    }
    if rc_in_use(&st, &name) {
        return Err(PErr::conflict(format!(
            "Unable to rename resource class {name}: it is in use."
        )));
    }
    let mut ch = state::Changes::default();
    ch.rcs.insert(name.clone(), false);
    ch.rcs.insert(new.clone(), true);
    svc.commit(&mut st, ch).await?;
    Ok(json_resp(200, rc_json(&svc, &new)))
}

async fn rc_delete(AxState(svc): St, ctx: Ctx, Path(name): Path<String>) -> R {
    need(ctx.mv, 2)?;
    let mut st = svc.lock().await;
    if names::is_standard_rc(&name) {
        return Err(PErr::bad(format!(
            "Cannot delete standard resource class {name}: Cannot delete standard resource class {name}"
        )));
    }
    if !st.custom_rcs.contains(&name) {
        return Err(PErr::not_found(format!("No such resource class {name}.")));
    }
    if rc_in_use(&st, &name) {
        return Err(PErr::conflict(format!(
            "Unable to delete resource class {name}: Resource class in use: {name}"
        )));
    }
    let mut ch = state::Changes::default();
    ch.rcs.insert(name, false);
    svc.commit(&mut st, ch).await?;
    Ok(no_content())
}

// ---- traits ---------------------------------------------------------------------

async fn trait_list(AxState(svc): St, ctx: Ctx, RawQuery(q): RawQuery) -> R {
    need(ctx.mv, 6)?;
    let qs = parse_qs(q);
    let st = svc.lock().await;
    let mut traits: Vec<String> = st.all_traits().into_iter().collect();
    if let Some(n) = qget(&qs, "name").last() {
        if let Some(list) = n.strip_prefix("in:") {
            let set: BTreeSet<&str> = list.split(',').map(str::trim).collect();
            traits.retain(|t| set.contains(t.as_str()));
        } else if let Some(p) = n.strip_prefix("startswith:") {
            traits.retain(|t| t.starts_with(p));
        } else {
            return Err(PErr::bad(format!(
                "Badly formatted name parameter. Expected name query string parameter in form: ?name=[in|startswith]:[name1,name2|prefix]. Got: \"{n}\""
            )));
        }
    }
    if let Some(a) = qget(&qs, "associated").last() {
        let want = match a.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(PErr::bad(format!(
                    "Invalid query string parameters: 'associated' must be true or false. Got: {a}"
                )));
            }
        };
        let used: BTreeSet<&str> = st
            .providers
            .values()
            .flat_map(|p| p.traits.iter().map(String::as_str))
            .collect();
        traits.retain(|t| used.contains(t.as_str()) == want);
    }
    Ok(cached(
        json_resp(200, json!({"traits": traits})),
        ctx.mv,
        None,
    ))
}

async fn trait_show(AxState(svc): St, ctx: Ctx, Path(name): Path<String>) -> R {
    need(ctx.mv, 6)?;
    let st = svc.lock().await;
    if st.trait_exists(&name) {
        Ok(cached(no_content(), ctx.mv, None))
    } else {
        Err(PErr::not_found(format!("No such trait(s): {name}")))
    }
}

async fn trait_put(AxState(svc): St, ctx: Ctx, Path(name): Path<String>) -> R {
    need(ctx.mv, 6)?;
    let loc = format!("{}/traits/{name}", prefix(&svc));
    let mut st = svc.lock().await;
    if st.trait_exists(&name) {
        return Ok(with_location(
            &svc,
            cached(no_content(), ctx.mv, None),
            &loc,
        ));
    }
    if !names::valid_custom_name(&name) {
        return Err(PErr::bad(
            "The trait is invalid. A valid trait must be no longer than 255 characters, start with the prefix \"CUSTOM_\" and use following characters: \"A\"-\"Z\", \"0\"-\"9\" and \"_\"",
        ));
    }
    let mut ch = state::Changes::default();
    ch.traits.insert(name.clone(), true);
    svc.commit(&mut st, ch).await?;
    Ok(with_location(
        &svc,
        cached(StatusCode::CREATED.into_response(), ctx.mv, None),
        &loc,
    ))
}

async fn trait_delete(AxState(svc): St, ctx: Ctx, Path(name): Path<String>) -> R {
    need(ctx.mv, 6)?;
    let mut st = svc.lock().await;
    if names::is_standard_trait(&name) {
        return Err(PErr::bad(format!("Cannot delete standard trait {name}.")));
    }
    if !st.custom_traits.contains(&name) {
        return Err(PErr::not_found(format!("No such trait(s): {name}")));
    }
    if st.providers.values().any(|p| p.traits.contains(&name)) {
        return Err(PErr::conflict(format!(
            "The trait {name} is in use by a resource provider."
        )));
    }
    let mut ch = state::Changes::default();
    ch.traits.insert(name, false);
    svc.commit(&mut st, ch).await?;
    Ok(no_content())
}

// ---- allocations ------------------------------------------------------------------

fn consumer_uuid(s: &str) -> Result<String, PErr> {
    norm_uuid(s).ok_or_else(|| PErr::bad(format!("Malformed consumer_uuid: {s}")))
}

/// `{"resources": {RC: n}}` entries keyed by provider (1.12+ dict format).
fn parse_alloc_dict(v: &Value, st: &State) -> Result<AllocMap, PErr> {
    let m = obj(v, "allocations")?;
    let mut out = AllocMap::new();
    for (rp, e) in m {
        let rp_u = norm_uuid(rp).ok_or_else(|| {
            PErr::bad(format!(
                "JSON does not validate: '{rp}' is not a valid uuid"
            ))
        })?;
        let em = obj(e, "allocation")?;
        only_keys(em, &["resources", "generation"])?;
        let res = parse_alloc_resources(req_key(em, "resources")?, st)?;
        out.insert(rp_u, res);
    }
    Ok(out)
}

fn parse_alloc_resources(v: &Value, st: &State) -> Result<BTreeMap<String, u64>, PErr> {
    let m = obj(v, "resources")?;
    if m.is_empty() {
        return Err(PErr::bad(
            "JSON does not validate: {} does not have enough properties",
        ));
    }
    let mut out = BTreeMap::new();
    for (rc, n) in m {
        if !names::valid_name_chars(rc) {
            return Err(PErr::bad(format!(
                "JSON does not validate: '{rc}' does not match any of the regexes"
            )));
        }
        let n = as_uint(n, rc)?;
        if n < 1 {
            return Err(PErr::bad(format!(
                "JSON does not validate: 0 is less than the minimum of 1 ({rc})"
            )));
        }
        if !st.rc_exists(rc) {
            return Err(PErr::bad(format!(
                "Unable to allocate inventory: No such resource class {rc}."
            )));
        }
        out.insert(rc.clone(), n);
    }
    Ok(out)
}

/// One consumer's write from a 1.12+ style body (PUT or one POST entry).
fn parse_consumer_write(
    consumer: String,
    m: &Map<String, Value>,
    mv: Mv,
    st: &State,
    post: bool,
) -> Result<ConsumerWrite, PErr> {
    let mut allowed = vec!["allocations", "project_id", "user_id"];
    if mv.at_least(28) {
        allowed.push("consumer_generation");
    }
    if mv.at_least(34) {
        allowed.push("mappings");
    }
    if mv.at_least(38) {
        allowed.push("consumer_type");
    }
    only_keys(m, &allowed)?;
    let allocs = parse_alloc_dict(req_key(m, "allocations")?, st)?;
    let (project, user) = ids(m, mv.at_least(8) || post)?;
    let generation = if mv.at_least(28) {
        Some(match req_key(m, "consumer_generation")? {
            Value::Null => None,
            g => Some(as_uint(g, "consumer_generation")?),
        })
    } else {
        None
    };
    let consumer_type = if mv.at_least(38) {
        let t = as_str(req_key(m, "consumer_type")?, "consumer_type")?;
        if !names::valid_name_chars(t) {
            return Err(PErr::bad(format!(
                "JSON does not validate: '{t}' does not match '^[A-Z0-9_]+$'"
            )));
        }
        Some(t.to_string())
    } else {
        None
    };
    Ok(ConsumerWrite {
        consumer,
        project,
        user,
        consumer_type,
        allocs,
        generation,
    })
}

fn ids(m: &Map<String, Value>, required: bool) -> Result<(String, String), PErr> {
    let get = |k: &str| -> Result<Option<String>, PErr> {
        match m.get(k) {
            None => {
                if required {
                    Err(PErr::bad(format!(
                        "JSON does not validate: '{k}' is a required property"
                    )))
                } else {
                    Ok(None)
                }
            }
            Some(v) => {
                let s = as_str(v, k)?;
                if s.is_empty() || s.len() > 255 {
                    return Err(PErr::bad(format!(
                        "JSON does not validate: {k} must be 1 to 255 characters"
                    )));
                }
                Ok(Some(s.to_string()))
            }
        }
    };
    let p = get("project_id")?;
    let u = get("user_id")?;
    Ok((
        p.unwrap_or_else(|| INCOMPLETE_CONSUMER.to_string()),
        u.unwrap_or_else(|| INCOMPLETE_CONSUMER.to_string()),
    ))
}

async fn alloc_show(AxState(svc): St, ctx: Ctx, Path(consumer): Path<String>) -> R {
    let mv = ctx.mv;
    let st = svc.lock().await;
    let c = norm_uuid(&consumer)
        .and_then(|u| st.consumers.get(&u))
        .or_else(|| st.consumers.get(&consumer));
    let mut out = Map::new();
    let mut v = json!({});
    let mut modified = None;
    if let Some(c) = c {
        for (rp, res) in &c.allocations {
            let g = st.providers.get(rp).map_or(0, |p| p.generation);
            out.insert(rp.clone(), json!({"generation": g, "resources": res}));
        }
        if mv.at_least(12) && !c.allocations.is_empty() {
            v["project_id"] = json!(c.project);
            v["user_id"] = json!(c.user);
            if mv.at_least(28) {
                v["consumer_generation"] = json!(c.generation);
            }
            if mv.at_least(38) {
                v["consumer_type"] = json!(c.consumer_type.as_deref().unwrap_or("unknown"));
            }
        }
        modified = Some(c.updated_at);
    }
    v["allocations"] = Value::Object(out);
    Ok(cached(json_resp(200, v), mv, modified))
}

async fn alloc_put(AxState(svc): St, ctx: Ctx, Path(consumer): Path<String>, body: Bytes) -> R {
    let mv = ctx.mv;
    let consumer = consumer_uuid(&consumer)?;
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    let w = {
        let st = svc.lock().await;
        if mv.at_least(12) {
            parse_consumer_write(consumer, m, mv, &st, false)?
        } else {
            only_keys(m, &["allocations", "project_id", "user_id"])?;
            let arr = req_key(m, "allocations")?.as_array().ok_or_else(|| {
                PErr::bad("JSON does not validate: allocations is not of type 'array'")
            })?;
            if arr.is_empty() {
                return Err(PErr::bad(
                    "JSON does not validate: [] is too short (allocations)",
                ));
            }
            let mut allocs = AllocMap::new();
            for a in arr {
                let am = obj(a, "allocation")?;
                only_keys(am, &["resource_provider", "resources"])?;
                let rpm = obj(req_key(am, "resource_provider")?, "resource_provider")?;
                let rp = as_str(req_key(rpm, "uuid")?, "uuid")?;
                let rp = norm_uuid(rp).ok_or_else(|| {
                    PErr::bad(format!("JSON does not validate: '{rp}' is not a 'uuid'"))
                })?;
                let res = parse_alloc_resources(req_key(am, "resources")?, &st)?;
                allocs.insert(rp, res);
            }
            let (project, user) = ids(m, mv.at_least(8))?;
            ConsumerWrite {
                consumer,
                project,
                user,
                consumer_type: None,
                allocs,
                generation: None,
            }
        }
    };
    svc.write_allocations(vec![w]).await?;
    Ok(no_content())
}

async fn alloc_post(AxState(svc): St, ctx: Ctx, body: Bytes) -> R {
    need(ctx.mv, 13)?;
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    let mut writes = Vec::new();
    {
        let st = svc.lock().await;
        for (c, e) in m {
            let cu = norm_uuid(c).ok_or_else(|| {
                PErr::bad(format!(
                    "JSON does not validate: '{c}' is not a valid consumer uuid"
                ))
            })?;
            let em = obj(e, "consumer allocations")?;
            writes.push(parse_consumer_write(cu, em, ctx.mv, &st, true)?);
        }
    }
    if writes.is_empty() {
        return Err(PErr::bad(
            "JSON does not validate: {} does not have enough properties",
        ));
    }
    svc.write_allocations(writes).await?;
    Ok(no_content())
}

async fn alloc_delete(AxState(svc): St, _ctx: Ctx, Path(consumer): Path<String>) -> R {
    let cu = norm_uuid(&consumer).unwrap_or(consumer.clone());
    let c = {
        let st = svc.lock().await;
        st.consumers.get(&cu).cloned()
    };
    let Some(c) = c.filter(|c| !c.allocations.is_empty()) else {
        return Err(PErr::not_found(format!(
            "No allocations for consumer '{consumer}'"
        )));
    };
    svc.write_allocations(vec![ConsumerWrite {
        consumer: c.uuid,
        project: c.project,
        user: c.user,
        consumer_type: None,
        allocs: AllocMap::new(),
        generation: None,
    }])
    .await?;
    Ok(no_content())
}

// ---- allocation candidates -----------------------------------------------------------

/// Splits `resources2` / `required_FOO` into (base, suffix).
fn split_suffix<'a>(key: &'a str, base: &str) -> Option<&'a str> {
    let rest = key.strip_prefix(base)?;
    if rest.is_empty() {
        return Some("");
    }
    let ok = !rest.is_empty()
        && rest.len() <= 65
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(rest)
}

async fn candidates(AxState(svc): St, ctx: Ctx, RawQuery(q): RawQuery) -> R {
    let mv = ctx.mv;
    need(mv, 10)?;
    let qs = parse_qs(q);
    let st = svc.lock().await;
    let mut query = Query::default();
    let mut suffixes: BTreeSet<String> = BTreeSet::new();
    let mut requested_rcs: BTreeSet<String> = BTreeSet::new();
    // Gather per-group params; every group is merged into one request
    // that a single provider must satisfy.
    let mut seen_resources = false;
    for (k, v) in &qs {
        let grouped = mv.at_least(25);
        let group = |base: &str| -> Option<String> {
            let s = split_suffix(k, base)?;
            if !s.is_empty() {
                if !grouped {
                    return None;
                }
                let s2 = s.trim_start_matches('_');
                if !mv.at_least(33) && !s2.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            Some(s.to_string())
        };
        if k == "limit" {
            if mv.at_least(16) {
                let l: usize = v.parse().ok().filter(|l| *l > 0).ok_or_else(|| {
                    PErr::bad(format!(
                        "Invalid query string parameters: limit must be a positive integer. Got: {v}"
                    ))
                })?;
                query.limit = Some(l);
                continue;
            }
        } else if k == "group_policy" {
            if mv.at_least(25) {
                if v != "none" && v != "isolate" {
                    return Err(PErr::bad(format!(
                        "Invalid query string parameters: group_policy must be 'none' or 'isolate'. Got: {v}"
                    )));
                }
                continue;
            }
        } else if k == "root_required" {
            if mv.at_least(35) {
                let (a, f) = parse_required(&[v.as_str()], mv, &st, "root_required")?;
                query.root_required.extend(a);
                query.root_forbidden.extend(f);
                continue;
            }
        } else if k == "same_subtree" {
            if mv.at_least(36) {
                continue;
            }
        } else if let Some(s) = group("resources") {
            let r = parse_resources(v, &st)?;
            seen_resources = true;
            for (rc, n) in r {
                requested_rcs.insert(rc.clone());
                *query.resources.entry(rc).or_default() += n;
            }
            suffixes.insert(s);
            continue;
        } else if group("required").is_some() {
            if mv.at_least(17) {
                let (a, f) = parse_required(&[v.as_str()], mv, &st, "required")?;
                query.required.extend(a);
                query.forbidden.extend(f);
                continue;
            }
        } else if group("member_of").is_some() {
            if mv.at_least(21) {
                let (a, f) = parse_member_of(&[v.as_str()], Mv(mv.0.max(24)))?;
                query.member_of.extend(a);
                query.forbidden_aggs.extend(f);
                continue;
            }
        } else if group("in_tree").is_some() && mv.at_least(31) {
            let t = norm_uuid(v).ok_or_else(|| {
                PErr::bad(format!(
                    "Invalid query string parameters: Expected 'in_tree' parameter to be a format of uuid. Got: {v}"
                ))
            })?;
            if query.in_tree.is_none() {
                query.in_tree = Some(t);
            }
            continue;
        }
        return Err(PErr::bad(format!(
            "Invalid query string parameters: Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    if !seen_resources {
        return Err(PErr::bad(if mv.at_least(25) {
            "Invalid query string parameters: There must be at least one resources or resources[$S] parameter."
        } else {
            "Invalid query string parameters: 'resources' is a required property"
        }));
    }
    let cands = match &query.in_tree {
        Some(t) if !st.providers.contains_key(t) => Vec::new(),
        _ => st.candidates(&query),
    };
    // Tree facts for the summaries, then render without holding the lock.
    let trees: Vec<(Option<String>, Option<String>)> = cands
        .iter()
        .map(|c| {
            let p = st.providers.get(&c.provider);
            (p.and_then(|p| p.parent.clone()), p.map(|p| p.root.clone()))
        })
        .collect();
    drop(st);
    if mv.at_least(12) {
        // The common case is rendered straight into the body: with 1,000
        // providers it is ~half a megabyte, and building a Value tree first
        // costs more than the candidate search itself.
        let body = render_candidates(&cands, &trees, &suffixes, &requested_rcs, mv);
        let mut r = (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        r = cached(r, mv, None);
        return Ok(r);
    }
    let mut reqs = Vec::new();
    let mut summaries = Map::new();
    for (c, (parent, root)) in cands.iter().zip(&trees) {
        reqs.push(json!({"allocations": [{
            "resource_provider": {"uuid": c.provider},
            "resources": c.allocations,
        }]}));
        let mut res = Map::new();
        for (rc, (cap, used)) in &c.summary {
            if mv.at_least(27) || requested_rcs.contains(rc) {
                res.insert(rc.clone(), json!({"capacity": cap, "used": used}));
            }
        }
        let _ = (parent, root);
        summaries.insert(c.provider.clone(), json!({"resources": res}));
    }
    Ok(cached(
        json_resp(
            200,
            json!({"allocation_requests": reqs, "provider_summaries": summaries}),
        ),
        mv,
        None,
    ))
}

/// A JSON string literal.
fn js(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

/// `{"allocation_requests": [...], "provider_summaries": {...}}` for 1.12+.
fn render_candidates(
    cands: &[crate::Candidate],
    trees: &[(Option<String>, Option<String>)],
    suffixes: &BTreeSet<String>,
    requested_rcs: &BTreeSet<String>,
    mv: Mv,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 + cands.len() * 480);
    out.push_str("{\"allocation_requests\": [");
    for (n, c) in cands.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"allocations\": {");
        js(&mut out, &c.provider);
        out.push_str(": {\"resources\": {");
        for (k, (rc, amount)) in c.allocations.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            js(&mut out, rc);
            let _ = write!(out, ": {amount}");
        }
        out.push_str("}}}");
        if mv.at_least(34) {
            out.push_str(", \"mappings\": {");
            for (k, sfx) in suffixes.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                js(&mut out, sfx);
                out.push_str(": [");
                js(&mut out, &c.provider);
                out.push(']');
            }
            out.push('}');
        }
        out.push('}');
    }
    out.push_str("], \"provider_summaries\": {");
    for (n, (c, (parent, root))) in cands.iter().zip(trees).enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        js(&mut out, &c.provider);
        out.push_str(": {\"resources\": {");
        let mut first = true;
        for (rc, (cap, used)) in &c.summary {
            if !(mv.at_least(27) || requested_rcs.contains(rc)) {
                continue;
            }
            if !first {
                out.push_str(", ");
            }
            first = false;
            js(&mut out, rc);
            let _ = write!(out, ": {{\"capacity\": {cap}, \"used\": {used}}}");
        }
        out.push('}');
        if mv.at_least(17) {
            out.push_str(", \"traits\": [");
            for (k, t) in c.traits.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                js(&mut out, t);
            }
            out.push(']');
        }
        if mv.at_least(29) {
            out.push_str(", \"parent_provider_uuid\": ");
            match parent {
                Some(p) => js(&mut out, p),
                None => out.push_str("null"),
            }
            out.push_str(", \"root_provider_uuid\": ");
            match root {
                Some(r) => js(&mut out, r),
                None => out.push_str("null"),
            }
        }
        out.push('}');
    }
    out.push_str("}}");
    out
}

// ---- usages ---------------------------------------------------------------------------

async fn usages(AxState(svc): St, ctx: Ctx, RawQuery(q): RawQuery) -> R {
    let mv = ctx.mv;
    need(mv, 9)?;
    let qs = parse_qs(q);
    for (k, _) in &qs {
        let ok = k == "project_id" || k == "user_id" || (k == "consumer_type" && mv.at_least(38));
        if !ok {
            return Err(PErr::bad(format!(
                "Invalid query string parameters: Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    let project = qget(&qs, "project_id")
        .last()
        .map(|s| s.to_string())
        .ok_or_else(|| {
            PErr::bad("Invalid query string parameters: 'project_id' is a required property")
        })?;
    let user = qget(&qs, "user_id").last().map(|s| s.to_string());
    let ctype = qget(&qs, "consumer_type").last().map(|s| s.to_string());
    let st = svc.lock().await;
    let consumers = st
        .consumers
        .values()
        .filter(|c| c.project == project && user.as_ref().is_none_or(|u| &c.user == u));
    if !mv.at_least(38) {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for c in consumers {
            for res in c.allocations.values() {
                for (rc, n) in res {
                    *out.entry(rc.clone()).or_default() += n;
                }
            }
        }
        return Ok(cached(json_resp(200, json!({"usages": out})), mv, None));
    }
    let mut groups: BTreeMap<String, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for c in consumers {
        let t = c.consumer_type.clone().unwrap_or_else(|| "unknown".into());
        let key = match ctype.as_deref() {
            None => t,
            Some("all") => "all".into(),
            Some(want) if want == t => t,
            Some(_) => continue,
        };
        let e = groups.entry(key).or_default();
        e.0 += 1;
        for res in c.allocations.values() {
            for (rc, n) in res {
                *e.1.entry(rc.clone()).or_default() += n;
            }
        }
    }
    let mut out = Map::new();
    for (k, (count, res)) in groups {
        let mut v = json!({"consumer_count": count});
        for (rc, n) in res {
            v[rc] = json!(n);
        }
        out.insert(k, v);
    }
    Ok(cached(json_resp(200, json!({"usages": out})), mv, None))
}

// ---- reshaper ---------------------------------------------------------------------------

async fn reshaper(AxState(svc): St, ctx: Ctx, body: Bytes) -> R {
    let mv = ctx.mv;
    need(mv, 30)?;
    let v = body_json(&body)?;
    let m = obj(&v, "body")?;
    only_keys(m, &["inventories", "allocations"])?;
    let invs_m = obj(req_key(m, "inventories")?, "inventories")?;
    let allocs_m = obj(req_key(m, "allocations")?, "allocations")?;
    let mut st = svc.lock().await;
    let mut ch = state::Changes::default();
    let mut reshaped = Vec::new();
    for (rp, e) in invs_m {
        let em = obj(e, "inventories entry")?;
        only_keys(em, &["inventories", "resource_provider_generation"])?;
        let g = gen_of(em)?;
        let p = st
            .providers
            .get(rp)
            .ok_or_else(|| PErr::bad(format!("Resource provider {rp} in inventories not found")))?;
        if p.generation != g {
            return Err(PErr::concurrent(format!(
                "resource provider generation conflict for provider {rp}: actual: {}, given: {g}",
                p.generation
            )));
        }
        let mut invs = BTreeMap::new();
        for (rc, iv) in obj(req_key(em, "inventories")?, "inventories")? {
            if !st.rc_exists(rc) {
                return Err(PErr::bad(format!("No such resource class {rc}.")));
            }
            let inv = parse_inventory(rc, iv, &[])?;
            check_inventory(rc, &inv, mv)?;
            invs.insert(rc.clone(), inv);
        }
        let mut np = p.clone();
        if np.inventories != invs {
            np.inventories = invs;
            np.bump();
            ch.put_provider(np);
        }
        reshaped.push(rp.clone());
    }
    let mut writes = Vec::new();
    for (c, e) in allocs_m {
        let cu = norm_uuid(c).ok_or_else(|| PErr::bad(format!("Malformed consumer_uuid: {c}")))?;
        let em = obj(e, "consumer allocations")?;
        // Reshaper allocations always carry consumer_generation.
        writes.push(parse_consumer_write(cu, em, Mv(mv.0.max(28)), &st, true)?);
    }
    st.plan_allocations(&writes, &mut ch)?;
    // Afterwards, every allocation must still have inventory to draw on.
    for rp in &reshaped {
        let p = match ch.providers.get(rp) {
            Some(Some(p)) => p.clone(),
            _ => st.provider(rp)?.clone(),
        };
        for c in st.consumers.values() {
            let allocs = match ch.consumers.get(&c.uuid) {
                Some(Some(nc)) => &nc.allocations,
                Some(None) => continue,
                None => &c.allocations,
            };
            if let Some(res) = allocs.get(rp) {
                for rc in res.keys() {
                    if !p.inventories.contains_key(rc) {
                        return Err(PErr::new(
                            409,
                            format!(
                                "Unable to reshape: Inventory for '{rc}' on resource provider '{rp}' in use."
                            ),
                            CODE_INUSE,
                        ));
                    }
                }
            }
        }
    }
    svc.commit(&mut st, ch).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("openstack-api-version", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn version_parsing() {
        assert_eq!(parse_version(&HeaderMap::new()).unwrap(), Mv(0));
        assert_eq!(parse_version(&hdr("placement 1.20")).unwrap(), Mv(20));
        assert_eq!(parse_version(&hdr("placement latest")).unwrap(), Mv(39));
        assert_eq!(
            parse_version(&hdr("compute 2.1, placement 1.5")).unwrap(),
            Mv(5)
        );
        assert_eq!(parse_version(&hdr("compute 2.60")).unwrap(), Mv(0));
        assert_eq!(
            parse_version(&hdr("placement 1.40")).unwrap_err().status,
            406
        );
        assert_eq!(
            parse_version(&hdr("placement 2.0")).unwrap_err().status,
            406
        );
        assert_eq!(
            parse_version(&hdr("placement 1.x")).unwrap_err().status,
            400
        );
    }

    #[test]
    fn uuids_and_queries() {
        assert_eq!(
            norm_uuid("0123456789ABCDEF0123456789abcdef").unwrap(),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        assert!(norm_uuid("nope").is_none());
        let q = parse_qs(Some(
            "resources=VCPU%3A1%2CMEMORY_MB:64&required=!A&x".into(),
        ));
        assert_eq!(q[0].1, "VCPU:1,MEMORY_MB:64");
        assert_eq!(q[1].1, "!A");
        assert_eq!(q[2].0, "x");
        assert_eq!(split_suffix("resources", "resources"), Some(""));
        assert_eq!(split_suffix("resources1", "resources"), Some("1"));
        assert_eq!(split_suffix("resources_X", "resources"), Some("_X"));
        assert_eq!(split_suffix("resources!", "resources"), None);
    }
}
