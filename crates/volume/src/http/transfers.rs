//! Volume transfers (`/v3/os-volume-transfer`): the owner offers an
//! available volume (`awaiting-transfer`) and hands the one-time
//! `auth_key` over; another project accepts with it and becomes the owner
//! of the volume and its snapshots. Only a hash of the key is kept.
use super::{Body, Query, St, accepted, accepted_empty, body_obj, list_params, ok, paginate};
use crate::error::{CResult, CinderError};
use crate::store::{Kind, Obj, b, i, new_id, now, s};
use crate::views::Mv;
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
        // The same resource under its 3.55 name, which also carries
        // `no_snapshots`.
        .route("/v3/volume-transfers", get(list_v355).post(create_v355))
        .route("/v3/volume-transfers/detail", get(detail_v355))
        .route(
            "/v3/volume-transfers/{id}",
            get(show_v355).delete(delete_v355),
        )
        .route("/v3/volume-transfers/{id}/accept", post(accept_v355))
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

fn view(svc: &VolumeService, mv: Mv, t: &Obj, detail: bool) -> Value {
    let mut o = json!({"id": s(t, "id"), "name": t.get("name").cloned().unwrap_or(Value::Null),
        "volume_id": s(t, "volume_id"), "links": links(svc, s(t, "id"))});
    if detail {
        o["created_at"] = json!(s(t, "created_at"));
        if mv.at_least(55) {
            o["no_snapshots"] = json!(b(t, "no_snapshots"));
        }
        if mv.at_least(57) {
            o["source_project_id"] = json!(s(t, "project_id"));
            o["destination_project_id"] = t
                .get("destination_project_id")
                .cloned()
                .unwrap_or(Value::Null);
            o["accepted"] = json!(b(t, "accepted"));
        }
    }
    o
}

fn mine(c: &Caller, t: &Obj) -> bool {
    c.owns(t)
}

const SORT_KEYS: [&str; 4] = ["id", "name", "created_at", "volume_id"];

async fn list_impl(
    svc: &VolumeService,
    c: &Caller,
    mv: Mv,
    q: &Query,
    detail: bool,
    coll: &str,
) -> CResult<Response> {
    let st = svc.store.read();
    let all = c.admin
        && q.get("all_tenants")
            .is_some_and(|v| !matches!(v, "0" | "false" | "False"));
    let items: Vec<Arc<Obj>> = st
        .iter(Kind::Transfer)
        .filter(|t| s(t, "project_id") == c.project || all)
        .filter(|t| {
            q.0.iter().all(|(k, v)| match k.as_str() {
                "name" | "display_name" => s(t, "name") == v,
                "volume_id" => s(t, "volume_id") == v,
                _ => true,
            })
        })
        .cloned()
        .collect();
    // Paging and sorting from 3.59; before, every transfer, oldest first.
    let (page, links) = if mv.at_least(59) {
        let p = list_params(q, &SORT_KEYS)?;
        let path = if detail {
            format!("{coll}/detail")
        } else {
            coll.to_string()
        };
        paginate(svc, items, &p, &path, q)?
    } else {
        // Before 3.59: oldest first, with only `limit`/`offset` applied.
        let mut items = items;
        items.sort_by(|a, b| {
            (s(a, "created_at"), s(a, "id")).cmp(&(s(b, "created_at"), s(b, "id")))
        });
        let num = |k: &str| q.get(k).and_then(|x| x.parse::<usize>().ok());
        let items = items
            .into_iter()
            .skip(num("offset").unwrap_or(0))
            .take(num("limit").unwrap_or(usize::MAX))
            .collect();
        (items, None)
    };
    let mut body =
        json!({"transfers": page.iter().map(|t| view(svc, mv, t, detail)).collect::<Vec<_>>()});
    if let Some(l) = links {
        body["transfers_links"] = l;
    }
    Ok(ok(body))
}

async fn list(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    list_impl(&svc, &c, mv, &q, false, "os-volume-transfer").await
}

async fn detail(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    list_impl(&svc, &c, mv, &q, true, "os-volume-transfer").await
}

async fn show(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    let st = svc.store.read();
    let t = st
        .get(Kind::Transfer, &id)
        .filter(|t| mine(&c, t))
        .ok_or_else(|| not_found(&id))?;
    Ok(ok(json!({"transfer": view(&svc, mv, t, true)})))
}

// `/v3/volume-transfers` is routed at every microversion (as upstream);
// only it takes `no_snapshots`, from 3.55.

async fn list_v355(st: St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    list_impl(&st.0, &c, mv, &q, false, "volume-transfers").await
}

async fn detail_v355(st: St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    list_impl(&st.0, &c, mv, &q, true, "volume-transfers").await
}

async fn show_v355(st: St, c: Caller, mv: Mv, id: Path<String>) -> CResult<Response> {
    show(st, c, mv, id).await
}

async fn create_v355(st: St, c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    create_impl(st, c, mv, body, mv.at_least(55)).await
}

async fn delete_v355(st: St, c: Caller, id: Path<String>) -> CResult<Response> {
    delete(st, c, id).await
}

async fn accept_v355(st: St, c: Caller, mv: Mv, id: Path<String>, body: Body) -> CResult<Response> {
    accept(st, c, mv, id, body).await
}

async fn create(st: St, c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    create_impl(st, c, mv, body, false).await
}

async fn create_impl(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    body: Value,
    snapshots_option: bool,
) -> CResult<Response> {
    c.require_writer("volume:create_transfer")?;
    let req = body_obj(&body, "transfer")?.clone();
    if let Some(k) = req.keys().find(|k| {
        let allowed = matches!(k.as_str(), "volume_id" | "name")
            || (snapshots_option && *k == "no_snapshots");
        !allowed
    }) {
        return Err(CinderError::bad(format!(
            "Invalid input for field/attribute transfer. Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    // `no_snapshots` (3.55): hand over the volume alone, its snapshots stay.
    let no_snapshots = match req.get("no_snapshots") {
        Some(v) if snapshots_option => super::truthy(v)
            .ok_or_else(|| CinderError::bad(format!("Invalid value '{v}' for no_snapshots.")))?,
        _ => false,
    };
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
            if !no_snapshots
                && let Some(x) = tx
                    .st
                    .snapshots_of(&vol)
                    .find(|x| s(x, "status") != "available")
            {
                return Err(CinderError::bad(format!(
                    "Invalid snapshot: snapshot {} status must be available, but is {}.",
                    s(x, "id"),
                    s(x, "status")
                )));
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
            t.insert("no_snapshots".into(), json!(no_snapshots));
            t.insert("accepted".into(), json!(false));
            t.insert("destination_project_id".into(), Value::Null);
            t.insert("created_at".into(), json!(now()));
            tx.put(Kind::Transfer, t.clone());
            Ok(t)
        })
        .await?;
    let mut v = view(&svc, mv, &t, true);
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
    mv: Mv,
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
            let snaps: Vec<Obj> = if b(&t, "no_snapshots") {
                Vec::new()
            } else {
                tx.st.snapshots_of(&vol).map(|x| (**x).clone()).collect()
            };
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
    Ok(accepted(json!({"transfer": view(&svc, mv, &t, false)})))
}
