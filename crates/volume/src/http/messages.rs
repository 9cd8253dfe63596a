//! User messages (`/v3/messages`, 3.3+): why an asynchronous operation
//! failed, told to the project that asked for it (Cinder's message API;
//! Cinder's event ids and wording). Kept for 30 days.
use super::{Query, St, list_params, ok, paginate};
use crate::error::{CResult, CinderError};
use crate::store::{Kind, Obj, new_id, now, s};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/messages", get(list))
        .route("/v3/messages/{id}", get(show).delete(delete))
}

const KEEP_DAYS: i64 = 30;

/// Records why creating volume `id` failed, for its project.
pub async fn record_create_failure(svc: &VolumeService, id: &str, why: &str) {
    let Some(project) = svc
        .store
        .read()
        .get(Kind::Volume, id)
        .map(|v| s(v, "project_id").to_string())
    else {
        return;
    };
    // Cinder's message_field: action 001 (schedule allocate volume), detail
    // 006 (no weighted backend) or 001 (unknown error).
    let (detail, text) = if why.contains("No valid backend") {
        ("006", "Could not find any available weighted backend.")
    } else if why.contains("image") {
        ("005", "Failed to copy image to volume.")
    } else {
        ("001", "An unknown error occurred.")
    };
    let action = if detail == "005" { "002" } else { "001" };
    let verb = if action == "002" {
        "copy image to volume"
    } else {
        "schedule allocate volume"
    };
    let t = chrono::Utc::now();
    let until = (t + chrono::Duration::days(KEEP_DAYS))
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    let mut m = Obj::new();
    m.insert("id".into(), json!(new_id()));
    m.insert("project_id".into(), json!(project));
    m.insert("request_id".into(), json!(ferro_common::new_request_id()));
    m.insert("resource_type".into(), json!("VOLUME"));
    m.insert("resource_uuid".into(), json!(id));
    m.insert(
        "event_id".into(),
        json!(format!("VOLUME_VOLUME_{action}_{detail}")),
    );
    m.insert("message_level".into(), json!("ERROR"));
    m.insert("user_message".into(), json!(format!("{verb}: {text}")));
    m.insert("created_at".into(), json!(now()));
    m.insert("guaranteed_until".into(), json!(until));
    let r = svc
        .store
        .write(|tx| {
            tx.put(Kind::Message, m);
            Ok(())
        })
        .await;
    if let Err(e) = r {
        tracing::warn!("recording a user message: {}", e.message);
    }
}

fn view(svc: &VolumeService, m: &Obj) -> Value {
    let id = s(m, "id");
    json!({
        "id": id,
        "request_id": s(m, "request_id"),
        "message_level": s(m, "message_level"),
        "event_id": s(m, "event_id"),
        "user_message": s(m, "user_message"),
        "resource_type": s(m, "resource_type"),
        "resource_uuid": s(m, "resource_uuid"),
        "created_at": s(m, "created_at"),
        "guaranteed_until": s(m, "guaranteed_until"),
        "links": [{"href": format!("{}/v3/messages/{id}", svc.base_url), "rel": "self"},
                  {"href": format!("{}/messages/{id}", svc.base_url), "rel": "bookmark"}],
    })
}

fn need_3(mv: Mv) -> CResult<()> {
    if mv.at_least(3) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

fn not_found(id: &str) -> CinderError {
    CinderError::not_found(format!("Message {id} could not be found."))
}

/// Expired messages are not shown (and are dropped on the next delete).
fn live(m: &Obj) -> bool {
    s(m, "guaranteed_until") > now().as_str()
}

async fn list(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    need_3(mv)?;
    let p = list_params(
        &q,
        &[
            "id",
            "created_at",
            "event_id",
            "resource_type",
            "message_level",
            "request_id",
        ],
    )?;
    let st = svc.store.read();
    let items: Vec<_> = st
        .iter(Kind::Message)
        .filter(|m| live(m) && (s(m, "project_id") == c.project || (c.admin && p.all_tenants)))
        .filter(|m| {
            p.filters
                .iter()
                .all(|(k, v)| m.get(k).and_then(Value::as_str).is_none_or(|x| x == v))
        })
        .cloned()
        .collect();
    let (page, links) = if mv.at_least(5) {
        paginate(&svc, items, &p, "messages", &q)?
    } else {
        let mut all = items;
        all.sort_by(|a, b| s(b, "created_at").cmp(s(a, "created_at")));
        (all, None)
    };
    let mut body = json!({"messages": page.iter().map(|m| view(&svc, m)).collect::<Vec<_>>()});
    if let Some(l) = links {
        body["messages_links"] = l;
    }
    Ok(ok(body))
}

async fn show(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    need_3(mv)?;
    let st = svc.store.read();
    let m = st
        .get(Kind::Message, &id)
        .filter(|m| live(m) && c.owns(m))
        .ok_or_else(|| not_found(&id))?;
    Ok(ok(json!({"message": view(&svc, m)})))
}

async fn delete(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    need_3(mv)?;
    c.require_writer("message:delete")?;
    svc.store
        .write(|tx| {
            tx.get(Kind::Message, &id)
                .filter(|m| c.owns(m))
                .ok_or_else(|| not_found(&id))?;
            tx.del(Kind::Message, &id);
            let expired: Vec<String> = tx
                .st
                .iter(Kind::Message)
                .filter(|m| !live(m))
                .map(|m| s(m, "id").to_string())
                .collect();
            for e in expired {
                tx.del(Kind::Message, &e);
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
