//! Volume transfers (`/v3/os-volume-transfer`): the owner offers an
//! available volume (`awaiting-transfer`) and hands the one-time
//! `auth_key` over; another project accepts with it and becomes the owner
//! of the volume and its snapshots. Only a hash of the key is kept.
use super::{Body, Query, St, accepted, accepted_empty, body_obj, ok};
use crate::error::{CResult, CinderError};
use crate::store::{Kind, Obj, i, new_id, now, s};
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/os-volume-transfer", get(list).post(create))
        .route("/v3/os-volume-transfer/detail", get(detail))
        .route("/v3/os-volume-transfer/{id}", get(show).delete(delete))
        .route("/v3/os-volume-transfer/{id}/accept", post(accept))
}

fn not_found(id: &str) -> CinderError {
    CinderError::not_found(format!("Transfer {id} could not be found."))
}

fn hash(salt: &str, key: &str) -> String {
    let d = sha2::Sha256::digest(format!("{salt}{key}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn links(svc: &VolumeService, id: &str) -> Value {
    json!([{"href": format!("{}/v3/os-volume-transfer/{id}", svc.base_url), "rel": "self"},
           {"href": format!("{}/os-volume-transfer/{id}", svc.base_url), "rel": "bookmark"}])
}

fn view(svc: &VolumeService, t: &Obj, detail: bool) -> Value {
    let mut o = json!({"id": s(t, "id"), "name": t.get("name").cloned().unwrap_or(Value::Null),
        "volume_id": s(t, "volume_id"), "links": links(svc, s(t, "id"))});
    if detail {
        o["created_at"] = json!(s(t, "created_at"));
    }
    o
}

fn mine(c: &Caller, t: &Obj) -> bool {
    c.owns(t)
}

async fn list_impl(svc: &VolumeService, c: &Caller, q: &Query, detail: bool) -> CResult<Response> {
    let st = svc.store.read();
    let all = c.admin
        && q.get("all_tenants")
            .is_some_and(|v| !matches!(v, "0" | "false" | "False"));
    let items: Vec<Value> = st
        .iter(Kind::Transfer)
        .filter(|t| s(t, "project_id") == c.project || all)
        .map(|t| view(svc, t, detail))
        .collect();
    Ok(ok(json!({"transfers": items})))
}

async fn list(AxState(svc): St, c: Caller, q: Query) -> CResult<Response> {
    list_impl(&svc, &c, &q, false).await
}

async fn detail(AxState(svc): St, c: Caller, q: Query) -> CResult<Response> {
    list_impl(&svc, &c, &q, true).await
}

async fn show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    let st = svc.store.read();
    let t = st
        .get(Kind::Transfer, &id)
        .filter(|t| mine(&c, t))
        .ok_or_else(|| not_found(&id))?;
    Ok(ok(json!({"transfer": view(&svc, t, true)})))
}

async fn create(AxState(svc): St, c: Caller, Body(body): Body) -> CResult<Response> {
    c.require_writer("volume:create_transfer")?;
    let req = body_obj(&body, "transfer")?.clone();
    let vol = req
        .get("volume_id")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad("Incorrect request body format: volume_id is required"))?
        .to_string();
    let name = match req.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if n.chars().count() <= 255 => Some(n.clone()),
        Some(_) => return Err(CinderError::bad("Invalid transfer name.")),
    };
    let key: String = (0..16)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
        .collect();
    let salt: String = (0..16)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
        .collect();
    let t = svc
        .store
        .write(|tx| {
            let mut v = tx
                .get(Kind::Volume, &vol)
                .filter(|v| c.owns(v))
                .ok_or_else(|| CinderError::volume_not_found(&vol))?;
            if s(&v, "status") != "available" {
                return Err(CinderError::invalid(
                    "volume",
                    format!("status must be available, but is {}", s(&v, "status")),
                ));
            }
            v.insert("status".into(), json!("awaiting-transfer"));
            tx.put(Kind::Volume, v.clone());
            let mut t = Obj::new();
            t.insert("id".into(), json!(new_id()));
            t.insert("volume_id".into(), json!(vol));
            t.insert("name".into(), json!(name));
            t.insert("salt".into(), json!(salt));
            t.insert("crypt_hash".into(), json!(hash(&salt, &key)));
            t.insert("project_id".into(), json!(s(&v, "project_id")));
            t.insert("created_at".into(), json!(now()));
            tx.put(Kind::Transfer, t.clone());
            Ok(t)
        })
        .await?;
    let mut v = view(&svc, &t, true);
    v["auth_key"] = json!(key);
    Ok(accepted(json!({"transfer": v})))
}

async fn delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    c.require_writer("volume:delete_transfer")?;
    svc.store
        .write(|tx| {
            let t = tx
                .get(Kind::Transfer, &id)
                .filter(|t| mine(&c, t))
                .ok_or_else(|| not_found(&id))?;
            if let Some(mut v) = tx.get(Kind::Volume, s(&t, "volume_id"))
                && s(&v, "status") == "awaiting-transfer"
            {
                v.insert("status".into(), json!("available"));
                tx.put(Kind::Volume, v);
            }
            tx.del(Kind::Transfer, &id);
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}

async fn accept(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_writer("volume:accept_transfer")?;
    let key = body_obj(&body, "accept")?
        .get("auth_key")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad("Incorrect request body format: auth_key is required"))?
        .to_string();
    let user = c.user().to_string();
    let project = c.project.clone();
    let svc2 = svc.clone();
    let t = svc
        .store
        .write(|tx| {
            let t = tx.get(Kind::Transfer, &id).ok_or_else(|| not_found(&id))?;
            if hash(s(&t, "salt"), &key) != s(&t, "crypt_hash") {
                return Err(CinderError::bad(format!(
                    "Invalid auth key: Attempt to transfer {id} with invalid auth key."
                )));
            }
            let vol = s(&t, "volume_id").to_string();
            let mut v = tx
                .get(Kind::Volume, &vol)
                .ok_or_else(|| CinderError::volume_not_found(&vol))?;
            let snaps: Vec<Obj> = tx.st.snapshots_of(&vol).map(|x| (**x).clone()).collect();
            let snap_gb: i64 = snaps.iter().map(|x| i(x, "size")).sum();
            svc2.check_quota(
                &tx.st,
                &project,
                s(&v, "volume_type"),
                1,
                snaps.len() as i64,
                i(&v, "size") + snap_gb,
            )?;
            v.insert("project_id".into(), json!(project));
            v.insert("user_id".into(), json!(user));
            v.insert("status".into(), json!("available"));
            v.insert("updated_at".into(), json!(now()));
            tx.put(Kind::Volume, v);
            for mut x in snaps {
                x.insert("project_id".into(), json!(project));
                x.insert("user_id".into(), json!(user));
                tx.put(Kind::Snapshot, x);
            }
            tx.del(Kind::Transfer, &id);
            Ok(t)
        })
        .await?;
    Ok(accepted(json!({"transfer": view(&svc, &t, false)})))
}
