//! Routes under `/networking`: version discovery, `/v2.0` resources,
//! extensions, and the generic tag sub-resource.
pub mod address_scopes;
pub mod agents;
pub mod ip_availability;
pub mod networks;
pub mod ports;
pub mod quotas;
pub mod rbac;
pub mod routers;
pub mod scheduling;
pub mod secgroups;
pub mod service_providers;
pub mod subnetpools;
pub mod subnets;

use crate::error::{NResult, NeutronError};
use crate::store::{Kind, Obj, State as NState, b, touch};
use crate::{Caller, NetworkService, net_visible};
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use std::sync::Arc;

pub type St = State<Arc<NetworkService>>;

impl FromRequestParts<Arc<NetworkService>> for Caller {
    type Rejection = NeutronError;
    async fn from_request_parts(
        parts: &mut Parts,
        svc: &Arc<NetworkService>,
    ) -> Result<Self, NeutronError> {
        let (ctx, admin, project) =
            ferro_auth::project_caller(svc.validator.as_ref(), &parts.headers)
                .await
                .map_err(|e| match e {
                    ferro_auth::CallerError::Unauthenticated => {
                        NeutronError::new(401, "HTTPUnauthorized", "unauthorized")
                    }
                    ferro_auth::CallerError::ProjectScopeRequired => {
                        NeutronError::forbidden("project scope required")
                    }
                    ferro_auth::CallerError::Internal(e) => NeutronError::from(e),
                })?;
        Ok(Caller {
            ctx,
            admin,
            project,
        })
    }
}

/// The `If-Match` header.
pub struct IfMatch(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = NeutronError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NeutronError> {
        Ok(IfMatch(
            parts
                .headers
                .get("if-match")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}

/// A JSON body (400 with Neutron's shape when it does not parse).
pub struct Body(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = NeutronError;
    async fn from_request(req: axum::extract::Request, s: &S) -> Result<Self, NeutronError> {
        let bytes = axum::body::Bytes::from_request(req, s)
            .await
            .map_err(|e| NeutronError::bad(e.to_string()))?;
        if bytes.is_empty() {
            return Ok(Body(Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|_| NeutronError::bad("Malformed request body"))
    }
}

pub fn ok(v: impl serde::Serialize) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}
pub fn created(v: Value) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub fn router() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/", get(versions))
        .route("/v2.0", get(resources))
        .route("/v2.0/", get(resources))
        .route("/v2.0/extensions", get(extensions))
        .route("/v2.0/extensions/{alias}", get(extension))
        .merge(networks::routes())
        .merge(subnets::routes())
        .merge(ports::routes())
        .merge(routers::routes())
        .merge(secgroups::routes())
        .merge(quotas::routes())
        .merge(agents::routes())
        .merge(ip_availability::routes())
        .merge(rbac::routes())
        .merge(subnetpools::routes())
        .merge(address_scopes::routes())
        .merge(scheduling::routes())
        .merge(service_providers::routes())
        .route(
            "/v2.0/{res}/{id}/tags",
            get(tags_get)
                .post(tags_create)
                .put(tags_replace)
                .delete(tags_clear),
        )
        .route(
            "/v2.0/{res}/{id}/tags/{tag}",
            put(tag_add).get(tag_check).delete(tag_del),
        )
        .fallback(not_found)
}

async fn not_found() -> NeutronError {
    NeutronError::new(404, "HTTPNotFound", "The resource could not be found.")
}

fn version_doc(svc: &NetworkService) -> Value {
    json!({"id": "v2.0", "status": "CURRENT",
           "links": [{"href": format!("{}/v2.0/", svc.base_url), "rel": "self"}]})
}

async fn versions(State(svc): St) -> Response {
    ok(json!({"versions": [version_doc(&svc)]}))
}

const RESOURCES: [(&str, &str); 11] = [
    ("network", "networks"),
    ("subnet", "subnets"),
    ("port", "ports"),
    ("router", "routers"),
    ("floatingip", "floatingips"),
    ("security_group", "security-groups"),
    ("security_group_rule", "security-group-rules"),
    ("subnetpool", "subnetpools"),
    ("address_scope", "address-scopes"),
    ("quota", "quotas"),
    ("rbac_policy", "rbac-policies"),
];

async fn resources(State(svc): St, _c: Caller) -> Response {
    let list: Vec<Value> = RESOURCES
        .iter()
        .map(|(n, c)| {
            json!({"name": n, "collection": c,
                   "links": [{"href": format!("{}/v2.0/{c}", svc.base_url), "rel": "self"}]})
        })
        .collect();
    ok(json!({"resources": list}))
}

/// Every alias advertised here works (FEATURES.md §2.4).
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    (
        "address-scope",
        "Address scope",
        "Address scopes extension.",
    ),
    ("agent", "agent", "The agent management extension."),
    (
        "allowed-address-pairs",
        "Allowed Address Pairs",
        "Provides allowed address pairs",
    ),
    (
        "availability_zone",
        "Availability Zone",
        "The availability zone extension.",
    ),
    (
        "network_availability_zone",
        "Network Availability Zone",
        "Availability zone support for network.",
    ),
    (
        "router_availability_zone",
        "Router Availability Zone",
        "Availability zone support for router.",
    ),
    (
        "binding",
        "Port Binding",
        "Expose port bindings of a virtual port to external application",
    ),
    (
        "default-subnetpools",
        "Default Subnetpools",
        "Provides ability to mark and use a subnetpool as the default.",
    ),
    (
        "empty-string-filtering",
        "Empty String Filtering Extension",
        "Allow filtering by attributes with empty string value",
    ),
    (
        "external-net",
        "Neutron external network",
        "Adds external network attribute to network resource.",
    ),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
        "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway",
    ),
    (
        "extra_dhcp_opt",
        "Neutron Extra DHCP options",
        "Extra options configuration for DHCP. For example PXE boot options to DHCP clients can be specified (e.g. tftp-server, server-ip-address, bootfile-name)",
    ),
    (
        "dhcp_agent_scheduler",
        "DHCP Agent Scheduler",
        "Schedule networks among dhcp agents",
    ),
    (
        "l3_agent_scheduler",
        "L3 Agent Scheduler",
        "Schedule routers among l3 agents",
    ),
    (
        "extraroute",
        "Neutron Extra Route",
        "Extra routes configuration for L3 router",
    ),
    (
        "extraroute-atomic",
        "Atomically add/remove extra routes",
        "Edit extra routes of a router on server side by atomically adding/removing extra routes",
    ),
    (
        "filter-validation",
        "Filter parameters validation",
        "Provides validation on filter parameters.",
    ),
    (
        "fip-port-details",
        "Floating IP Port Details Extension",
        "Add port_details attribute to Floating IP resource",
    ),
    (
        "ip-substring-filtering",
        "IP address substring filtering",
        "Provides IP address substring filtering when listing ports",
    ),
    (
        "net-mtu",
        "Network MTU",
        "Provides MTU attribute for a network resource.",
    ),
    (
        "net-mtu-writable",
        "Network MTU (writable)",
        "Provides a writable MTU attribute for a network resource.",
    ),
    (
        "network-ip-availability",
        "Network IP Availability",
        "Provides IP availability data for each network and subnet.",
    ),
    (
        "pagination",
        "Pagination support",
        "Extension that indicates that pagination is enabled.",
    ),
    ("port-security", "Port Security", "Provides port security"),
    (
        "project-id",
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
    ),
    (
        "provider",
        "Provider Network",
        "Expose mapping of virtual networks to physical networks",
    ),
    (
        "quotas",
        "Quota management support",
        "Expose functions for quotas management per project",
    ),
    (
        "quota_details",
        "Quota details management support",
        "Expose functions for quotas usage statistics per project",
    ),
    (
        "rbac-policies",
        "RBAC Policies",
        "Allows creation and modification of policies that control tenant access to resources.",
    ),
    (
        "revision-if-match",
        "If-Match constraints based on revision_number",
        "Extension indicating that If-Match based on revision_number is supported.",
    ),
    (
        "router",
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.",
    ),
    (
        "security-group",
        "security-group",
        "The security groups extension.",
    ),
    (
        "service-type",
        "Neutron Service Type Management",
        "API for retrieving service providers for Neutron advanced services",
    ),
    (
        "sorting",
        "Sorting support",
        "Extension that indicates that sorting is enabled.",
    ),
    (
        "standard-attr-description",
        "standard-attr-description",
        "Extension to add descriptions to standard attributes",
    ),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    (
        "standard-attr-tag",
        "Tag support for resources with standard attribute: subnet, trunk, network_segment_range, router, network, policy, subnetpool, port, security_group, floatingip",
        "Enables to set tag on resources with standard attribute.",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
    ),
    (
        "stateful-security-group",
        "Stateful security group",
        "Extension of the security group resource to allow for stateless security groups",
    ),
    (
        "subnet-external-network",
        "Subnet External Network",
        "Provides subnet external network attribute",
    ),
    ("tag", "Tag support", "Enables to set tag on resources."),
    (
        "tag-ext",
        "Tag support for resources: subnet, subnetpool, port, router",
        "Extends tag support to more L2 and L3 resources.",
    ),
    (
        "subnet_allocation",
        "Subnet Allocation",
        "Enables allocation of subnets from a subnet pool",
    ),
    (
        "subnetpool-prefix-ops",
        "Subnet Pool Prefix Operations",
        "Provides support for adjusting the prefix list of subnet pools",
    ),
    (
        "tag-ports-during-bulk-creation",
        "Tag Ports During Bulk Creation",
        "Allow to tag ports during bulk creation",
    ),
];

fn ext_doc(e: &(&str, &str, &str)) -> Value {
    json!({"alias": e.0, "name": e.1, "description": e.2, "links": [],
           "updated": "2013-01-20T10:00:00-00:00"})
}

async fn extensions(_c: Caller) -> Response {
    ok(json!({"extensions": EXTENSIONS.iter().map(ext_doc).collect::<Vec<_>>()}))
}

async fn extension(_c: Caller, Path(alias): Path<String>) -> NResult<Response> {
    EXTENSIONS
        .iter()
        .find(|e| e.0 == alias)
        .map(|e| ok(json!({"extension": ext_doc(e)})))
        .ok_or_else(|| {
            NeutronError::new(
                404,
                "HTTPNotFound",
                format!("Extension with alias {alias} does not exist"),
            )
        })
}

// ---- tags ----

fn tag_kind(res: &str) -> Option<(Kind, &'static str)> {
    Some(match res {
        "networks" => (Kind::Network, "Network"),
        "subnets" => (Kind::Subnet, "Subnet"),
        "ports" => (Kind::Port, "Port"),
        "routers" => (Kind::Router, "Router"),
        "floatingips" => (Kind::FloatingIp, "Floating IP"),
        "security-groups" => (Kind::SecurityGroup, "Security Group"),
        "subnetpools" => (Kind::SubnetPool, "Subnet Pool"),
        _ => return None,
    })
}

fn check_tag(t: &str) -> NResult<()> {
    if t.is_empty() || t.chars().count() > 255 || t.contains(',') {
        return Err(NeutronError::bad(format!("Invalid tag '{t}'")));
    }
    Ok(())
}

/// Whether `c` can see `o` of kind `k` (for tags and generic lookups).
pub fn visible(st: &NState, c: &Caller, k: Kind, o: &Obj) -> bool {
    match k {
        Kind::Network => net_visible(st, c, o),
        Kind::Subnet => crate::subnet_visible(st, c, o),
        Kind::Port => crate::port_visible(st, c, o),
        Kind::SecurityGroup | Kind::SubnetPool | Kind::AddressScope => c.owns(o) || b(o, "shared"),
        _ => c.owns(o),
    }
}

/// Reads the tagged resource, checking the caller can see it.
fn tagged(svc: &NetworkService, c: &Caller, res: &str, id: &str) -> NResult<(Kind, Vec<String>)> {
    let (k, what) = tag_kind(res).ok_or_else(|| {
        NeutronError::new(404, "HTTPNotFound", "The resource could not be found.")
    })?;
    let st = svc.store.read();
    let o = st
        .get(k, id)
        .filter(|o| visible(&st, c, k, o))
        .ok_or_else(|| NeutronError::not_found(what, id))?;
    let tags = crate::store::arr(o, "tags")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    Ok((k, tags))
}

async fn set_tags(
    svc: &NetworkService,
    c: &Caller,
    res: &str,
    id: &str,
    f: impl FnOnce(&mut Vec<String>) -> NResult<()>,
) -> NResult<Vec<String>> {
    let (k, _) = tagged(svc, c, res, id)?;
    let out = svc
        .store
        .write(|tx| {
            let o = tx
                .get(k, id)
                .ok_or_else(|| NeutronError::not_found("Resource", id))?;
            if !c.owns(&o) {
                return Err(NeutronError::forbidden(&format!("update_{res}_tags")));
            }
            let mut tags: Vec<String> = crate::store::arr(&o, "tags")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            let before = tags.clone();
            f(&mut tags)?;
            if tags != before {
                let mut o = (*o).clone();
                o.insert("tags".into(), json!(tags));
                touch(&mut o);
                tx.put(k, o);
            }
            Ok(tags)
        })
        .await?;
    Ok(out)
}

async fn tags_get(
    State(svc): St,
    c: Caller,
    Path((res, id)): Path<(String, String)>,
) -> NResult<Response> {
    let (_, tags) = tagged(&svc, &c, &res, &id)?;
    Ok(ok(json!({"tags": tags})))
}

/// Neutron's per-resource tag limit (`tagging.MAX_TAGS_COUNT`).
const MAX_TAGS: usize = 50;

/// The `{"tags": [...]}` of a PUT or POST, as Neutron's `validate_tags`
/// and `validate_tags_limit` check it: a list of unique tags, 50 at most.
fn tags_body(res: &str, body: &Value) -> NResult<Vec<String>> {
    let list = body
        .get("tags")
        .ok_or_else(|| NeutronError::invalid("Invalid tags body"))?;
    let list = list
        .as_array()
        .ok_or_else(|| NeutronError::invalid(format!("'{list}' is not a list")))?;
    let mut tags: Vec<String> = Vec::with_capacity(list.len());
    let mut dups: Vec<String> = Vec::new();
    for t in list {
        let t = t
            .as_str()
            .ok_or_else(|| NeutronError::invalid(format!("'{t}' is not a valid string")))?;
        if tags.iter().any(|x| x == t) {
            if !dups.iter().any(|d| d == t) {
                dups.push(t.to_string());
            }
        } else {
            tags.push(t.to_string());
        }
    }
    if !dups.is_empty() {
        return Err(NeutronError::invalid(format!(
            "Duplicate items in the list: '{}'",
            dups.join(", ")
        )));
    }
    for t in &tags {
        check_tag(t)?;
    }
    if tags.len() > MAX_TAGS {
        // Neutron's BadRequest, named by the resource's singular.
        let what = match res {
            "policies" => "policy".to_string(),
            r => r.trim_end_matches('s').replace('-', "_"),
        };
        return Err(NeutronError::new(
            400,
            "BadRequest",
            format!(
                "Bad {what} request: The number of tags exceed the per-resource limit of {MAX_TAGS}."
            ),
        ));
    }
    Ok(tags)
}

async fn tags_replace(
    State(svc): St,
    c: Caller,
    Path((res, id)): Path<(String, String)>,
    Body(body): Body,
) -> NResult<Response> {
    let new = tags_body(&res, &body)?;
    let tags = set_tags(&svc, &c, &res, &id, |t| {
        *t = new;
        Ok(())
    })
    .await?;
    Ok(ok(json!({"tags": tags})))
}

/// `POST .../tags`: adds the tags the resource lacks (Neutron's
/// `create_tags`, idempotent) and answers 201 with the tags sent.
async fn tags_create(
    State(svc): St,
    c: Caller,
    Path((res, id)): Path<(String, String)>,
    Body(body): Body,
) -> NResult<Response> {
    let sent = tags_body(&res, &body)?;
    let add = sent.clone();
    set_tags(&svc, &c, &res, &id, |t| {
        for x in add {
            if !t.contains(&x) {
                t.push(x);
            }
        }
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(json!({"tags": sent}))).into_response())
}

async fn tags_clear(
    State(svc): St,
    c: Caller,
    Path((res, id)): Path<(String, String)>,
) -> NResult<Response> {
    set_tags(&svc, &c, &res, &id, |t| {
        t.clear();
        Ok(())
    })
    .await?;
    Ok(no_content())
}

async fn tag_add(
    State(svc): St,
    c: Caller,
    Path((res, id, tag)): Path<(String, String, String)>,
) -> NResult<Response> {
    check_tag(&tag)?;
    set_tags(&svc, &c, &res, &id, |t| {
        if !t.contains(&tag) {
            t.push(tag);
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn tag_check(
    State(svc): St,
    c: Caller,
    Path((res, id, tag)): Path<(String, String, String)>,
) -> NResult<Response> {
    let (_, tags) = tagged(&svc, &c, &res, &id)?;
    if tags.contains(&tag) {
        Ok(no_content())
    } else {
        Err(NeutronError::new(
            404,
            "TagNotFound",
            format!("Tag {tag} could not be found for resource {id}."),
        ))
    }
}

async fn tag_del(
    State(svc): St,
    c: Caller,
    Path((res, id, tag)): Path<(String, String, String)>,
) -> NResult<Response> {
    let id2 = id.clone();
    set_tags(&svc, &c, &res, &id, |t| {
        let n = t.len();
        t.retain(|x| *x != tag);
        if t.len() == n {
            return Err(NeutronError::new(
                404,
                "TagNotFound",
                format!("Tag {tag} could not be found for resource {id2}."),
            ));
        }
        Ok(())
    })
    .await?;
    Ok(no_content())
}

/// A create request: one `{singular: {...}}` or a bulk `{plural: [...]}`.
pub struct Creation {
    pub items: Vec<crate::store::Obj>,
    bulk: bool,
    singular: &'static str,
    plural: &'static str,
}

impl Creation {
    pub fn parse(body: &Value, singular: &'static str, plural: &'static str) -> NResult<Creation> {
        let (items, bulk) = match body.get(plural).and_then(Value::as_array) {
            Some(list) => (
                list.iter()
                    .map(|v| {
                        v.as_object().cloned().ok_or_else(|| {
                            NeutronError::bad(format!("Invalid {singular} in {plural}"))
                        })
                    })
                    .collect::<NResult<Vec<_>>>()?,
                true,
            ),
            None => (vec![crate::body_obj(body, singular)?], false),
        };
        Ok(Creation {
            items,
            bulk,
            singular,
            plural,
        })
    }
    /// 201 with the created resource(s) in the request's shape.
    pub fn respond(&self, out: Vec<crate::store::Obj>) -> Response {
        if self.bulk {
            created(json!({ self.plural: out }))
        } else {
            created(json!({ self.singular: out.into_iter().next() }))
        }
    }
}

/// DELETE of one resource: visible (else 404), allowed (else 403),
/// `If-Match` honoured, then `del` in the same transaction.
pub async fn delete_one(
    svc: &NetworkService,
    im: Option<&str>,
    rule: &str,
    get: impl FnOnce(&crate::store::State) -> NResult<Arc<crate::store::Obj>>,
    allowed: impl FnOnce(&crate::store::State, &crate::store::Obj) -> bool,
    del: impl FnOnce(&mut crate::store::Tx, &crate::store::Obj) -> NResult<()>,
) -> NResult<Response> {
    svc.store
        .write(|tx| {
            let o = get(&tx.st)?;
            if !allowed(&tx.st, &o) {
                return Err(NeutronError::forbidden(rule));
            }
            crate::check_revision(im, &o)?;
            del(tx, &o)
        })
        .await?;
    svc.notify();
    Ok(no_content())
}

/// The self URL of a collection (for pagination links).
pub fn coll_url(svc: &NetworkService, coll: &str) -> String {
    format!("{}/v2.0/{coll}", svc.base_url)
}
