//! Quotas: `/v2.0/quotas`, with each project's defaults and usage details.
use super::{Body, St, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::store::{Kind, Obj, State as NState, s};
use crate::{Caller, NetworkService, body_obj};
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/quotas", get(quota_list))
        .route(
            "/v2.0/quotas/{project}",
            get(quota_show).put(quota_update).delete(quota_delete),
        )
        .route("/v2.0/quotas/{project}/default", get(quota_default))
        .route("/v2.0/quotas/{project}/details", get(quota_details))
}

const QUOTA_RES: [&str; 9] = [
    "network",
    "subnet",
    "port",
    "router",
    "floatingip",
    "security_group",
    "security_group_rule",
    "rbac_policy",
    "subnetpool",
];

fn kind_of(res: &str) -> Option<Kind> {
    Some(match res {
        "network" => Kind::Network,
        "subnet" => Kind::Subnet,
        "port" => Kind::Port,
        "router" => Kind::Router,
        "floatingip" => Kind::FloatingIp,
        "security_group" => Kind::SecurityGroup,
        "security_group_rule" => Kind::SecurityGroupRule,
        "rbac_policy" => Kind::Rbac,
        "subnetpool" => Kind::SubnetPool,
        _ => return None,
    })
}

fn quota_doc(svc: &NetworkService, st: &NState, project: &str) -> Value {
    let mut o = Obj::new();
    for r in QUOTA_RES {
        o.insert(r.into(), json!(svc.quota_limit(st, project, r)));
    }
    Value::Object(o)
}

fn may_see_quota(c: &Caller, project: &str) -> NResult<()> {
    if c.admin || c.project == project {
        Ok(())
    } else {
        Err(NeutronError::forbidden("get_quota"))
    }
}

async fn quota_list(State(svc): St, c: Caller) -> NResult<Response> {
    if !c.admin {
        return Err(NeutronError::forbidden("get_quota"));
    }
    let st = svc.store.read();
    let list: Vec<Value> = st
        .iter(Kind::Quota)
        .map(|q| {
            let p = s(q, "project_id").to_string();
            let mut d = quota_doc(&svc, &st, &p);
            d["project_id"] = json!(p);
            d["tenant_id"] = json!(p);
            d
        })
        .collect();
    Ok(ok(json!({"quotas": list})))
}

async fn quota_show(State(svc): St, c: Caller, Path(project): Path<String>) -> NResult<Response> {
    may_see_quota(&c, &project)?;
    let st = svc.store.read();
    Ok(ok(json!({"quota": quota_doc(&svc, &st, &project)})))
}

async fn quota_default(
    State(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> NResult<Response> {
    may_see_quota(&c, &project)?;
    let mut o = Obj::new();
    for r in QUOTA_RES {
        o.insert(r.into(), json!(svc.default_quota(r)));
    }
    Ok(ok(json!({"quota": o})))
}

async fn quota_details(
    State(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> NResult<Response> {
    may_see_quota(&c, &project)?;
    let st = svc.store.read();
    let mut o = Obj::new();
    for r in QUOTA_RES {
        let used = kind_of(r).map(|k| st.count(&project, k)).unwrap_or(0);
        o.insert(
            r.into(),
            json!({"limit": svc.quota_limit(&st, &project, r), "used": used, "reserved": 0}),
        );
    }
    Ok(ok(json!({"quota": o})))
}

async fn quota_update(
    State(svc): St,
    c: Caller,
    Path(project): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    if !c.admin {
        return Err(NeutronError::forbidden("update_quota"));
    }
    let u = body_obj(&body, "quota")?;
    let mut vals = Vec::new();
    for (k, v) in &u {
        if !QUOTA_RES.contains(&k.as_str()) {
            return Err(NeutronError::bad(format!(
                "Unrecognized attribute(s) '{k}'"
            )));
        }
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
            .filter(|n| *n >= -1)
            .ok_or_else(|| {
                NeutronError::invalid(format!("'{v}' is not a valid quota limit for {k}"))
            })?;
        vals.push((k.clone(), n));
    }
    let out = svc
        .store
        .write(|tx| {
            let mut q: Obj = tx
                .get(Kind::Quota, &project)
                .map(|q| (*q).clone())
                .unwrap_or_default();
            q.insert("id".into(), json!(project));
            q.insert("project_id".into(), json!(project));
            for (k, n) in &vals {
                q.insert(k.clone(), json!(n));
            }
            tx.put(Kind::Quota, q);
            Ok(quota_doc(&svc, &tx.st, &project))
        })
        .await?;
    Ok(ok(json!({"quota": out})))
}

async fn quota_delete(State(svc): St, c: Caller, Path(project): Path<String>) -> NResult<Response> {
    if !c.admin {
        return Err(NeutronError::forbidden("delete_quota"));
    }
    svc.store
        .write(|tx| {
            if tx.get(Kind::Quota, &project).is_some() {
                tx.del(Kind::Quota, &project);
            }
            Ok(())
        })
        .await?;
    Ok(no_content())
}
