//! Default volume types of projects (3.62): `/v3/default-types`.
use super::{Body, St, body_obj, ok};
use crate::error::{CResult, CinderError};
use crate::store::{Kind, Obj, s};
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
        .route("/v3/default-types", get(default_types))
        .route(
            "/v3/default-types/{project}",
            get(default_type_show)
                .put(default_type_set)
                .delete(default_type_unset),
        )
}

fn need_62(mv: Mv) -> CResult<()> {
    if mv.at_least(62) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

fn default_view(d: &Obj) -> Value {
    json!({"project_id": s(d, "project_id"), "volume_type_id": s(d, "volume_type_id")})
}

async fn default_types(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    need_62(mv)?;
    c.require_admin("volume_extension:default_get_all")?;
    let st = svc.store.read();
    let list: Vec<Value> = st
        .iter(Kind::Quota)
        .filter(|d| s(d, "id").starts_with("default_type:"))
        .map(|d| default_view(d))
        .collect();
    Ok(ok(json!({"default_types": list})))
}

async fn default_type_show(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(project): Path<String>,
) -> CResult<Response> {
    need_62(mv)?;
    c.require_admin("volume_extension:default_get")?;
    let st = svc.store.read();
    let d = st
        .get(Kind::Quota, &crate::project_default_key(&project))
        .ok_or_else(|| {
            CinderError::not_found(format!("Default type for project {project} not found."))
        })?;
    Ok(ok(json!({"default_type": default_view(d)})))
}

async fn default_type_set(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(project): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need_62(mv)?;
    c.require_admin("volume_extension:default_set_or_update")?;
    let want = body_obj(&body, "default_type")?
        .get("volume_type")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
        .ok_or_else(|| {
            CinderError::bad(
                "Invalid input for field/attribute default_type: volume_type is required.",
            )
        })?
        .to_string();
    let d = svc
        .store
        .write(|tx| {
            let t = tx.st.volume_type(&want).cloned().ok_or_else(|| {
                CinderError::bad(format!("Volume type {want} could not be found."))
            })?;
            let key = crate::project_default_key(&project);
            let mut d = Obj::new();
            d.insert("id".into(), json!(key));
            d.insert("project_id".into(), json!(project));
            d.insert("volume_type_id".into(), json!(s(&t, "id")));
            tx.put_id(Kind::Quota, &key, d.clone());
            Ok(d)
        })
        .await?;
    Ok(ok(json!({"default_type": default_view(&d)})))
}

async fn default_type_unset(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(project): Path<String>,
) -> CResult<Response> {
    need_62(mv)?;
    c.require_admin("volume_extension:default_unset")?;
    svc.store
        .write(|tx| {
            tx.del(Kind::Quota, &crate::project_default_key(&project));
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
