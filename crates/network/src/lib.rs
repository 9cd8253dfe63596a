//! The Networking service (Neutron v2.0) at `/networking/v2.0`: networks,
//! subnets with IPAM, ports, routers, floating IPs, security groups, subnet
//! pools, RBAC, quotas, tags and agents. The API records desired state; the
//! network agent converges each host's data plane to it through the
//! `HostNet` trait (`FakeHostNet` here; the Linux data plane later).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod agent;
pub mod error;
pub mod hostnet;
pub mod hosts;
pub mod http;
pub mod ipam;
pub mod nova;
pub mod query;
pub mod store;

use error::{NResult, NeutronError};
use ferro_auth::{RequestContext, TokenValidator};
use ferro_common::Error;
use ferro_config::Config;
use ferro_db::Db;
use serde_json::{Value, json};
use std::sync::Arc;
use store::{Kind, Obj, State, Store, b, s};

pub struct NetworkService {
    pub db: Db,
    pub cfg: Config,
    pub validator: Arc<dyn TokenValidator>,
    pub store: Store,
    /// `<public_url>/networking`
    pub base_url: String,
    pub hostnet: Arc<dyn hostnet::HostNet>,
    /// Wakes the agent after a change it may have to apply.
    pub changed: Arc<tokio::sync::Notify>,
    /// One convergence worker per host with a live network agent.
    pub(crate) workers: hosts::Workers,
    /// This host's name (agents report under it).
    pub host: String,
    /// Compute, told when a guest's port goes ACTIVE or DOWN (Neutron's
    /// Nova notifier: `network-vif-plugged`, `network-vif-unplugged`).
    compute: std::sync::OnceLock<Arc<dyn ComputeNotifier>>,
}

/// One of Nova's external events about a server's port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifEvent {
    /// `network-vif-plugged` or `network-vif-unplugged`.
    pub name: &'static str,
    pub server: String,
    pub port: String,
}

/// What Networking tells Compute (Nova's `os-server-external-events`).
#[async_trait::async_trait]
pub trait ComputeNotifier: Send + Sync {
    async fn vif_events(&self, events: Vec<VifEvent>);
}

impl NetworkService {
    /// Loads the state, creates the `public` network at first start and
    /// starts this host's network agent.
    pub async fn start(
        db: Db,
        cfg: Config,
        validator: Arc<dyn TokenValidator>,
        admin_project: &str,
        hostnet: Arc<dyn hostnet::HostNet>,
    ) -> Result<Arc<Self>, Error> {
        let store = Store::load(&db).await?;
        let host = cfg.compute.host_name();
        let svc = Arc::new(NetworkService {
            base_url: format!("{}/networking", cfg.public_url()),
            db,
            cfg,
            validator,
            store,
            hostnet,
            changed: Arc::new(tokio::sync::Notify::new()),
            workers: hosts::Workers::default(),
            host,
            compute: std::sync::OnceLock::new(),
        });
        if svc.cfg.network.bootstrap_public_network
            && svc.db.docs_load("neutron_marker").await?.is_empty()
        {
            http::networks::bootstrap_public(&svc, admin_project)
                .await
                .map_err(|e| {
                    Error::internal(format!("creating the public network: {}", e.message))
                })?;
            svc.db
                .docs_apply(vec![ferro_db::docs::DocOp::put(
                    "neutron_marker",
                    "public_network",
                    json!(true),
                )])
                .await?;
        }
        agent::start(svc.clone()).await?;
        Ok(svc)
    }

    pub fn notify(&self) {
        self.changed.notify_one();
    }

    /// Connects Compute, for the events of its guests' ports.
    pub fn set_compute(&self, c: Arc<dyn ComputeNotifier>) {
        let _ = self.compute.set(c);
    }

    pub(crate) fn compute(&self) -> Option<&Arc<dyn ComputeNotifier>> {
        self.compute.get()
    }

    /// The configured default quota of `resource`.
    pub fn default_quota(&self, resource: &str) -> i64 {
        let n = &self.cfg.network;
        match resource {
            "network" => n.quota_network,
            "subnet" => n.quota_subnet,
            "port" => n.quota_port,
            "router" => n.quota_router,
            "floatingip" => n.quota_floatingip,
            "security_group" => n.quota_security_group,
            "security_group_rule" => n.quota_security_group_rule,
            "rbac_policy" => n.quota_rbac_policy,
            "subnetpool" => n.quota_subnetpool,
            _ => -1,
        }
    }

    /// `project`'s limit for `resource`.
    pub fn quota_limit(&self, st: &State, project: &str, resource: &str) -> i64 {
        st.get(Kind::Quota, project)
            .and_then(|q| q.get(resource))
            .and_then(Value::as_i64)
            .unwrap_or_else(|| self.default_quota(resource))
    }

    /// 409 `OverQuota` when `project` may not have `n` more of `k`.
    pub fn check_quota(&self, st: &State, project: &str, k: Kind, n: i64) -> NResult<()> {
        let Some(res) = k.quota_name() else {
            return Ok(());
        };
        let limit = self.quota_limit(st, project, res);
        if limit >= 0 && st.count(project, k) + n > limit {
            return Err(NeutronError::conflict(
                "OverQuota",
                format!("Quota exceeded for resources: ['{res}']."),
            ));
        }
        Ok(())
    }
}

/// The authenticated caller.
pub struct Caller {
    pub ctx: RequestContext,
    pub admin: bool,
    pub project: String,
}

impl Caller {
    pub fn token(&self) -> &str {
        &self.ctx.auth_token
    }
    pub fn owns(&self, o: &Obj) -> bool {
        self.admin || s(o, "project_id") == self.project
    }
    /// Whether the caller may act on resources of `project`.
    pub fn may_own(&self, project: &str) -> bool {
        self.admin || project == self.project
    }
    /// Whether the caller holds a role that may change things (not just `reader`).
    pub fn writer(&self) -> bool {
        self.admin || self.ctx.token.has_role("member")
    }
}

/// Network visibility: owner, admin, shared, external, or an RBAC grant.
pub fn net_visible(st: &State, c: &Caller, net: &Obj) -> bool {
    c.owns(net)
        || b(net, "shared")
        || b(net, "router:external")
        || rbac_grants(st, "network", s(net, "id"), &c.project, None)
}

/// Whether an RBAC policy grants `project` `action` (any action when None) on the object.
pub fn rbac_grants(
    st: &State,
    otype: &str,
    oid: &str,
    project: &str,
    action: Option<&str>,
) -> bool {
    st.iter(Kind::Rbac).any(|r| {
        s(r, "object_type") == otype
            && s(r, "object_id") == oid
            && (s(r, "target_tenant") == project || s(r, "target_tenant") == "*")
            && action.is_none_or(|a| s(r, "action") == a)
    })
}

/// Whether the network is shared with `project` (flag or `access_as_shared` grant).
pub fn net_shared_with(st: &State, net: &Obj, project: &str) -> bool {
    b(net, "shared")
        || rbac_grants(
            st,
            "network",
            s(net, "id"),
            project,
            Some("access_as_shared"),
        )
}

pub fn subnet_visible(st: &State, c: &Caller, sub: &Obj) -> bool {
    c.owns(sub)
        || st
            .get(Kind::Network, s(sub, "network_id"))
            .is_some_and(|n| net_visible(st, c, n))
}

pub fn port_visible(st: &State, c: &Caller, p: &Obj) -> bool {
    c.owns(p)
        || st
            .get(Kind::Network, s(p, "network_id"))
            .is_some_and(|n| c.owns(n))
}

/// The request body's `key` object (400 when absent or not an object).
pub fn body_obj(v: &Value, key: &str) -> NResult<Obj> {
    match v.get(key) {
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(_) => Err(NeutronError::bad(format!(
            "Invalid input for {key}. Reason: must be a dictionary."
        ))),
        None => Err(NeutronError::bad(format!(
            "Resource body required: unable to find '{key}' in request body"
        ))),
    }
}

/// 400 for attributes the resource does not have.
pub fn only_known(o: &Obj, known: &[&str]) -> NResult<()> {
    let bad: Vec<&str> = o
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(NeutronError::bad(format!(
            "Unrecognized attribute(s) '{}'",
            bad.join(", ")
        )))
    }
}

/// The owning project of a new resource: the caller's, or (admin only) the body's.
pub fn owner_of(c: &Caller, o: &mut Obj) -> NResult<String> {
    let t = o.remove("tenant_id");
    let p = o.remove("project_id");
    let ts = t.as_ref().and_then(Value::as_str);
    let ps = p.as_ref().and_then(Value::as_str);
    if let (Some(a), Some(b)) = (ts, ps)
        && a != b
    {
        return Err(NeutronError::bad(
            "'project_id' and 'tenant_id' do not match",
        ));
    }
    let want = ps.or(ts).unwrap_or(&c.project).to_string();
    if want != c.project && !c.admin {
        return Err(NeutronError::bad(
            "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges",
        ));
    }
    Ok(want)
}

/// Typed field checks shared by the resources.
pub mod check {
    use super::*;

    pub fn string(o: &Obj, k: &str, max: usize) -> NResult<()> {
        match o.get(k) {
            None => Ok(()),
            Some(Value::String(v)) if v.chars().count() <= max => Ok(()),
            Some(Value::String(v)) => Err(NeutronError::invalid(format!(
                "'{v}' exceeds maximum length of {max}"
            ))),
            Some(v) => Err(NeutronError::invalid(format!(
                "'{v}' is not a valid string"
            ))),
        }
    }
    /// Booleans, also `"true"`/`"false"` strings as Neutron converts them.
    pub fn boolean(o: &mut Obj, k: &str) -> NResult<()> {
        let v = match o.get(k) {
            None => return Ok(()),
            Some(Value::Bool(_)) => return Ok(()),
            Some(Value::String(x)) if x.eq_ignore_ascii_case("true") || x == "1" => true,
            Some(Value::String(x)) if x.eq_ignore_ascii_case("false") || x == "0" => false,
            Some(Value::Number(n)) if n.as_i64() == Some(1) => true,
            Some(Value::Number(n)) if n.as_i64() == Some(0) => false,
            Some(v) => {
                return Err(NeutronError::invalid(format!(
                    "Invalid input for {k}. Reason: '{v}' cannot be converted to boolean"
                )));
            }
        };
        o.insert(k.into(), Value::Bool(v));
        Ok(())
    }
    pub fn uuid(o: &Obj, k: &str) -> NResult<()> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(v)) if uuid::Uuid::parse_str(v).is_ok() => Ok(()),
            Some(v) => Err(NeutronError::invalid(format!(
                "Invalid input for {k}. Reason: '{}' is not a valid UUID",
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            ))),
        }
    }
    pub fn string_list(o: &Obj, k: &str) -> NResult<Vec<String>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_string).ok_or_else(|| {
                        NeutronError::invalid(format!(
                            "Invalid input for {k}. Reason: '{x}' is not a valid string"
                        ))
                    })
                })
                .collect(),
            Some(v) => Err(NeutronError::invalid(format!(
                "Invalid input for {k}. Reason: '{v}' is not a list"
            ))),
        }
    }
    /// Tags on create (`tag-ports-during-bulk-creation` and friends).
    pub fn tags(o: &mut Obj) -> NResult<()> {
        if o.contains_key("tags") {
            let t = string_list(o, "tags")?;
            for x in &t {
                if x.is_empty() || x.chars().count() > 255 || x.contains(',') {
                    return Err(NeutronError::bad(format!("Invalid tag '{x}'")));
                }
            }
            let mut u: Vec<String> = Vec::new();
            for x in t {
                if !u.contains(&x) {
                    u.push(x);
                }
            }
            o.insert("tags".into(), json!(u));
        }
        Ok(())
    }
}

/// `If-Match: revision_number=N` compare-and-swap (412 on mismatch).
pub fn check_revision(if_match: Option<&str>, o: &Obj) -> NResult<()> {
    let Some(h) = if_match else { return Ok(()) };
    let cur = o
        .get("revision_number")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    for part in h.split(',') {
        let part = part.trim();
        if let Some(n) = part.strip_prefix("revision_number=") {
            let want: i64 = n
                .trim()
                .parse()
                .map_err(|_| NeutronError::bad(format!("Invalid If-Match header {h}")))?;
            if want != cur {
                return Err(NeutronError::new(
                    412,
                    "RevisionNumberConstraintFailed",
                    format!("Constrained to {want}, but current revision is {cur}"),
                ));
            }
        }
    }
    Ok(())
}
