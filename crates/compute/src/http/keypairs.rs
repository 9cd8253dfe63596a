//! `os-keypairs`: list, create or import (ssh and x509), show and delete a user's keypairs.
use super::request::{Caller, St, body, first, json_resp, paging, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::Keypair;
use crate::ops;
use crate::state::{Rec, iso_z, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferro_common::Error;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-keypairs", get(keypairs_list).post(keypair_create))
        .route(
            "/os-keypairs/{name}",
            get(keypair_show).delete(keypair_delete),
        )
}

fn kp_view(k: &Keypair, c: &Caller, full: bool) -> Value {
    let mut v = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if c.mv.at_least(2) {
        v["type"] = json!(k.kind);
    }
    if full {
        v["user_id"] = json!(k.user_id);
        v["created_at"] = json!(iso_z(&k.created_at));
        v["deleted"] = json!(false);
        v["deleted_at"] = Value::Null;
        v["updated_at"] = Value::Null;
        v["id"] = json!(k.id);
    }
    v
}

fn target_user(
    svc: &ComputeService,
    c: &Caller,
    q: &BTreeMap<String, Vec<String>>,
) -> NResult<String> {
    match first(q, "user_id") {
        Some(u) if c.mv.at_least(10) && u != c.user() => {
            c.require_admin(svc, "os_compute_api:os-keypairs:index")?;
            Ok(u.to_string())
        }
        _ => Ok(c.user()),
    }
}

async fn keypairs_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    let q = query(raw);
    let user = target_user(&svc, &c, &q)?;
    let (limit, marker) = if c.mv.at_least(35) {
        paging(&q)?
    } else {
        (None, None)
    };
    let st = svc.state.read();
    let mut list: Vec<&Keypair> = st.keypairs.values().filter(|k| k.user_id == user).collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(m) = &marker {
        let pos = list
            .iter()
            .position(|k| &k.name == m)
            .ok_or_else(|| NovaError::bad(format!("marker [{m}] not found")))?;
        list.drain(..=pos);
    }
    let total = list.len();
    if let Some(l) = limit {
        list.truncate(l);
    }
    let mut out = json!({"keypairs": list.iter().map(|k| json!({"keypair": kp_view(k, &c, false)})).collect::<Vec<_>>()});
    if let (Some(l), Some(last)) = (limit, list.last())
        && total > l
    {
        out["keypairs_links"] = json!([{"rel": "next", "href": format!("{}/v2.1/os-keypairs?limit={l}&marker={}", svc.base_url, last.name)}]);
    }
    Ok(json_resp(StatusCode::OK, out))
}

async fn keypair_create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    let b = body(&raw)?;
    let o = b.get("keypair").and_then(Value::as_object).ok_or_else(|| {
        NovaError::bad(
            "Invalid input for field/attribute keypair. 'keypair' is a required property",
        )
    })?;
    for k in o.keys() {
        let ok = matches!(k.as_str(), "name" | "public_key")
            || (k == "type" && c.mv.at_least(2))
            || (k == "user_id" && c.mv.at_least(10));
        if !ok {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute keypair. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))?
        .to_string();
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.trim() == name
        && name.chars().all(|ch| {
            ch.is_ascii_alphanumeric()
                || " _-".contains(ch)
                || (c.mv.at_least(92) && "@.".contains(ch))
        });
    if !valid {
        return Err(NovaError::bad(
            "Keypair data is invalid: Keypair name contains unsafe characters",
        ));
    }
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ssh")
        .to_string();
    if kind != "ssh" && kind != "x509" {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute type. Value: {kind}. '{kind}' is not one of ['ssh', 'x509']"
        )));
    }
    let user = match o.get("user_id").and_then(Value::as_str) {
        Some(u) if u != c.user() => {
            c.require_admin(&svc, "os_compute_api:os-keypairs:create")?;
            u.to_string()
        }
        _ => c.user(),
    };
    let (public_key, private_key, fingerprint) = match o.get("public_key") {
        Some(Value::String(pk)) => {
            let fp = if kind == "x509" {
                crate::keys::x509_fingerprint(pk)
            } else {
                crate::keys::ssh_fingerprint(pk)
            };
            let fp = fp.ok_or_else(|| {
                NovaError::bad("Keypair data is invalid: failed to generate fingerprint")
            })?;
            (pk.trim().to_string(), None, fp)
        }
        Some(_) => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute public_key.",
            ));
        }
        None => {
            if c.mv.at_least(92) {
                return Err(NovaError::bad(
                    "Invalid input for field/attribute keypair. 'public_key' is a required property",
                ));
            }
            let (p, k, f) = if kind == "x509" {
                crate::keys::generate_x509(&name)
            } else {
                crate::keys::generate_ssh("Generated-by-Nova")
            };
            (p, Some(k), f)
        }
    };
    let k = svc
        .state
        .write(|st| {
            if st.keypairs.contains_key(&(user.clone(), name.clone())) {
                return Err(Error::conflict(format!(
                    "Key pair '{name}' already exists."
                )));
            }
            let lim = ops::quota_limits(st, &c.project(), Some(&user))
                .get("key_pairs")
                .copied()
                .unwrap_or(-1);
            let used = st.keypairs.keys().filter(|(u, _)| u == &user).count() as i64;
            if lim >= 0 && used + 1 > lim {
                return Err(Error::forbidden("Quota exceeded, too many key pairs."));
            }
            let k = Keypair {
                name: name.clone(),
                user_id: user.clone(),
                public_key: public_key.clone(),
                fingerprint: fingerprint.clone(),
                kind: kind.clone(),
                created_at: now(),
                id: st.next_seq(&[]),
            };
            Ok((k.clone(), vec![Rec::Keypair(k)]))
        })
        .await?;
    let mut v = kp_view(&k, &c, false);
    v["user_id"] = json!(k.user_id);
    if let Some(p) = private_key {
        v["private_key"] = json!(p);
    }
    let code = if c.mv.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_resp(code, json!({"keypair": v})))
}

async fn keypair_show(
    AxState(svc): St,
    c: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    let user = target_user(&svc, &c, &query(raw))?;
    let st = svc.state.read();
    let k = st
        .keypairs
        .get(&(user, name.clone()))
        .ok_or_else(|| NovaError::not_found(format!("Keypair {name} not found for user")))?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"keypair": kp_view(k, &c, true)}),
    ))
}

async fn keypair_delete(
    AxState(svc): St,
    c: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    let user = target_user(&svc, &c, &query(raw))?;
    svc.state
        .write(|st| {
            if !st.keypairs.contains_key(&(user.clone(), name.clone())) {
                return Err(Error::not_found_msg(format!(
                    "Keypair {name} not found for user"
                )));
            }
            Ok(((), vec![Rec::DelKeypair(user.clone(), name.clone())]))
        })
        .await?;
    Ok(if c.mv.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    }
    .into_response())
}
