//! RBAC policies: `/v2.0/rbac-policies`.
use super::{Body, St, coll_url, created, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, new_id, s, standard, touch};
use crate::{Caller, NetworkService, body_obj, only_known, owner_of};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/rbac-policies", get(rbac_list).post(rbac_create))
        .route(
            "/v2.0/rbac-policies/{id}",
            get(rbac_show).put(rbac_update).delete(rbac_delete),
        )
}

const RBAC_ATTRS: &[&str] = &[
    "id",
    "object_type",
    "object_id",
    "action",
    "target_tenant",
    "target_project",
    "tenant_id",
    "project_id",
];

fn rbac_visible(c: &Caller, r: &Obj) -> bool {
    c.owns(r) || s(r, "target_tenant") == c.project
}

async fn rbac_create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    let mut o = body_obj(&body, "rbac_policy")?;
    only_known(
        &o,
        &[
            "object_type",
            "object_id",
            "action",
            "target_tenant",
            "target_project",
            "tenant_id",
            "project_id",
        ],
    )?;
    let out = svc
        .store
        .write(|tx| {
            let owner = owner_of(&c, &mut o)?;
            let otype = s(&o, "object_type").to_string();
            if otype != "network" {
                return Err(NeutronError::invalid(format!("Invalid input for object_type. Reason: '{otype}' is not in ['network']")));
            }
            let action = s(&o, "action").to_string();
            if !matches!(action.as_str(), "access_as_shared" | "access_as_external") {
                return Err(NeutronError::invalid(format!("Invalid input for action. Reason: '{action}' is not in ['access_as_external', 'access_as_shared']")));
            }
            let target = o.get("target_project").or(o.get("target_tenant")).and_then(Value::as_str).unwrap_or("").to_string();
            if target.is_empty() {
                return Err(NeutronError::bad("Failed to parse request. Required attribute 'target_tenant' not specified"));
            }
            if action == "access_as_external" && !c.admin {
                return Err(NeutronError::forbidden("create_rbac_policy:action"));
            }
            let oid = s(&o, "object_id").to_string();
            let net = tx.get(Kind::Network, &oid).filter(|n| c.owns(n)).ok_or_else(|| {
                NeutronError::new(404, "RbacPolicyNotFound", format!("RBAC policy on object {oid} not found"))
            })?;
            let dup = tx.st.iter(Kind::Rbac).any(|r| s(r, "object_id") == oid && s(r, "action") == action && s(r, "target_tenant") == target);
            if dup {
                return Err(NeutronError::conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values."));
            }
            svc.check_quota(&tx.st, &owner, Kind::Rbac, 1)?;
            let mut r = Obj::new();
            r.insert("id".into(), json!(new_id()));
            r.insert("object_type".into(), json!(otype));
            r.insert("object_id".into(), json!(oid));
            r.insert("action".into(), json!(action));
            r.insert("target_tenant".into(), json!(target));
            r.insert("target_project".into(), json!(target));
            standard(&mut r, &owner);
            r.remove("tags");
            r.remove("description");
            tx.put(Kind::Rbac, r.clone());
            if action == "access_as_shared" && target == "*" {
                let mut n = (*net).clone();
                n.insert("shared".into(), json!(true));
                touch(&mut n);
                tx.put(Kind::Network, n);
            }
            Ok(r)
        })
        .await?;
    svc.notify();
    Ok(created(json!({"rbac_policy": out})))
}

async fn rbac_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), RBAC_ATTRS)?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::Rbac)
        .filter(|r| rbac_visible(&c, r))
        .filter(|r| matches(r, &p, &[]))
        .cloned()
        .collect();
    Ok(ok(render(
        items,
        &p,
        "rbac_policies",
        &coll_url(&svc, "rbac-policies"),
    )?))
}

fn get_rbac(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::Rbac, id)
        .filter(|r| rbac_visible(c, r))
        .cloned()
        .ok_or_else(|| {
            NeutronError::new(
                404,
                "RbacPolicyNotFound",
                format!("RBAC policy of type network with ID {id} not found"),
            )
        })
}

async fn rbac_show(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let st = svc.store.read();
    Ok(ok(json!({"rbac_policy": get_rbac(&st, &c, &id)?})))
}

fn net_in_use_by(st: &NState, net: &str, project: &str) -> bool {
    st.ports_on(net).any(|p| {
        (project == "*" || s(p, "project_id") == project)
            && !s(p, "device_owner").starts_with("network:")
            && st
                .get(Kind::Network, net)
                .is_some_and(|n| s(n, "project_id") != s(p, "project_id"))
    })
}

async fn rbac_update(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let u = body_obj(&body, "rbac_policy")?;
    only_known(&u, &["target_tenant", "target_project"])?;
    let out = svc
        .store
        .write(|tx| {
            let r = get_rbac(&tx.st, &c, &id)?;
            if !c.owns(&r) {
                return Err(NeutronError::forbidden("update_rbac_policy"));
            }
            let t = u.get("target_project").or(u.get("target_tenant")).and_then(Value::as_str).unwrap_or("").to_string();
            if net_in_use_by(&tx.st, s(&r, "object_id"), s(&r, "target_tenant")) {
                return Err(NeutronError::conflict("RbacPolicyInUse", format!("RBAC policy on object {} cannot be removed because other objects depend on it.", s(&r, "object_id"))));
            }
            let mut o = (*r).clone();
            o.insert("target_tenant".into(), json!(t));
            o.insert("target_project".into(), json!(t));
            tx.put(Kind::Rbac, o.clone());
            Ok(o)
        })
        .await?;
    Ok(ok(json!({"rbac_policy": out})))
}

async fn rbac_delete(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    svc.store
        .write(|tx| {
            let r = get_rbac(&tx.st, &c, &id)?;
            if !c.owns(&r) {
                return Err(NeutronError::forbidden("delete_rbac_policy"));
            }
            let net = s(&r, "object_id").to_string();
            if net_in_use_by(&tx.st, &net, s(&r, "target_tenant")) {
                return Err(NeutronError::conflict("RbacPolicyInUse", format!("RBAC policy on object {net} cannot be removed because other objects depend on it.")));
            }
            tx.del(Kind::Rbac, &id);
            if s(&r, "target_tenant") == "*" && s(&r, "action") == "access_as_shared"
                && let Some(n) = tx.get(Kind::Network, &net)
            {
                let mut n = (*n).clone();
                n.insert("shared".into(), json!(false));
                touch(&mut n);
                tx.put(Kind::Network, n);
            }
            Ok(())
        })
        .await?;
    svc.notify();
    Ok(no_content())
}
