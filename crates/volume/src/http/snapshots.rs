//! `/v3/snapshots`: create (from an available volume, or an in-use one
//! with `force`), list/detail with filters and paging, show, update,
//! delete, metadata, and the admin actions.
use super::metadata::{
    meta_get, meta_item_del, meta_item_get, meta_item_put, meta_merge, meta_replace,
};
use super::{
    Body, Query, St, accepted, accepted_empty, body_obj, check_metadata, list_params, ok, paginate,
    parse_metadata_filter,
};
use crate::error::{CResult, CinderError};
use crate::flows;
use crate::store::{Kind, Obj, State, i, new_id, now, s};
use crate::views::{self, Mv};
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/snapshots", get(list).post(create))
        .route("/v3/snapshots/detail", get(detail))
        .route("/v3/snapshots/{id}", get(show).put(update).delete(delete))
        .route(
            "/v3/snapshots/{id}/metadata",
            get(meta_get::<true>)
                .post(meta_merge::<true>)
                .put(meta_replace::<true>),
        )
        .route(
            "/v3/snapshots/{id}/metadata/{key}",
            get(meta_item_get::<true>)
                .put(meta_item_put::<true>)
                .delete(meta_item_del::<true>),
        )
        .route("/v3/snapshots/{id}/action", post(action))
}

fn find(st: &State, c: &Caller, id: &str) -> CResult<Arc<Obj>> {
    st.get(Kind::Snapshot, id)
        .filter(|x| c.owns(x))
        .cloned()
        .ok_or_else(|| CinderError::snapshot_not_found(id))
}

const SORT_KEYS: [&str; 6] = ["id", "name", "status", "size", "created_at", "updated_at"];

async fn list_impl(
    svc: &VolumeService,
    c: &Caller,
    mv: Mv,
    q: &Query,
    detail: bool,
) -> CResult<Response> {
    let p = list_params(q, &SORT_KEYS)?;
    let st = svc.store.read();
    let mut items = Vec::new();
    'outer: for x in st.iter(Kind::Snapshot) {
        let mine = s(x, "project_id") == c.project;
        if !(mine || (c.admin && p.all_tenants)) {
            continue;
        }
        for (k, want) in &p.filters {
            let pass = match k.as_str() {
                "name" | "display_name" => s(x, "name") == want,
                "status" => s(x, "status") == want,
                "volume_id" => s(x, "volume_id") == want,
                "project_id" => s(x, "project_id") == want,
                "metadata" => {
                    let m = parse_metadata_filter(want)?;
                    let have = x.get("metadata").and_then(Value::as_object);
                    m.iter()
                        .all(|(mk, mv)| have.and_then(|h| h.get(mk)) == Some(mv))
                }
                "name~" if mv.at_least(34) => s(x, "name").contains(want.as_str()),
                // Every snapshot here counts against its project's quota.
                "use_quota" | "consumes_quota" if !mv.at_least(65) => true,
                "use_quota" | "consumes_quota" => super::truthy(&json!(want)) == Some(true),
                "availability_zone" => *want == svc.cfg.volume.default_availability_zone,
                "group_snapshot_id" => s(x, "group_snapshot_id") == want,
                _ if c.admin => true,
                other => {
                    return Err(CinderError::bad(format!(
                        "Invalid input received: Invalid filters {other} are found in query options."
                    )));
                }
            };
            if !pass {
                continue 'outer;
            }
        }
        items.push(x.clone());
    }
    let count = items.len();
    let path = if detail {
        "snapshots/detail"
    } else {
        "snapshots"
    };
    let (page, links) = paginate(svc, items, &p, path, q)?;
    let mut body = json!({"snapshots": page.iter().map(|x| views::snapshot(mv, x, detail)).collect::<Vec<_>>()});
    if let Some(l) = links {
        body["snapshots_links"] = l;
    }
    if p.with_count && mv.at_least(45) {
        body["count"] = json!(count);
    }
    Ok(ok(body))
}

async fn list(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    list_impl(&svc, &c, mv, &q, false).await
}

async fn detail(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    list_impl(&svc, &c, mv, &q, true).await
}

async fn show(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    let st = svc.store.read();
    let x = find(&st, &c, &id)?;
    Ok(ok(json!({"snapshot": views::snapshot(mv, &x, true)})))
}

fn opt_text(o: &Map<String, Value>, keys: &[&str]) -> CResult<Option<Option<String>>> {
    for k in keys {
        match o.get(*k) {
            None => continue,
            Some(Value::Null) => return Ok(Some(None)),
            Some(Value::String(x)) if x.chars().count() <= 255 => {
                return Ok(Some(Some(x.clone())));
            }
            Some(Value::String(_)) => {
                return Err(CinderError::bad(format!(
                    "Invalid input for field/attribute {k}. It has more than 255 characters."
                )));
            }
            Some(other) => {
                return Err(CinderError::bad(format!(
                    "Invalid input for field/attribute {k}. Value: {other}. It is not a string"
                )));
            }
        }
    }
    Ok(None)
}

async fn create(AxState(svc): St, c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    c.require_writer("volume:create_snapshot")?;
    let req = body_obj(&body, "snapshot")?.clone();
    let vol = match req.get("volume_id") {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => {
            return Err(CinderError::volume_not_found("None"));
        }
        Some(other) => return Err(CinderError::volume_not_found(&other.to_string())),
    };
    let name = opt_text(&req, &["name", "display_name"])?.flatten();
    let description = opt_text(&req, &["description", "display_description"])?.flatten();
    let force = match req.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(x)) => *x,
        Some(Value::String(x)) => match x.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                return Err(CinderError::bad(format!("Invalid value '{x}' for force.")));
            }
        },
        Some(_) => return Err(CinderError::bad("Invalid value for force.")),
    };
    // From 3.66 in-use volumes are snapshotted without `force`; a true
    // `force` is ignored for compatibility, a false one is refused.
    let in_use_ok = force || mv.at_least(66);
    if mv.at_least(66) && req.get("force").is_some_and(|v| !v.is_null()) && !force {
        return Err(CinderError::bad(
            "Since microversion 3.66 the 'force' flag is invalid for this request. For backward compatability, however, when the 'force' flag is passed with a value evaluating to True, it is silently ignored.",
        ));
    }
    let metadata = match req.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(m) => check_metadata(m)?,
    };
    let user = c.user().to_string();
    let svc2 = svc.clone();
    let x = svc
        .store
        .write(|tx| {
            let v = tx
                .st
                .get(Kind::Volume, &vol)
                .filter(|v| c.owns(v))
                .cloned()
                .ok_or_else(|| CinderError::volume_not_found(&vol))?;
            let status = s(&v, "status");
            if !(status == "available" || (status == "in-use" && in_use_ok)) {
                return Err(CinderError::invalid(
                    "volume",
                    if status == "in-use" {
                        "Volume in-use cannot be snapshotted without force.".to_string()
                    } else {
                        format!("Volume {vol} status must be available, but current status is: {status}.")
                    },
                ));
            }
            let size = i(&v, "size");
            svc2.check_quota(&tx.st, s(&v, "project_id"), s(&v, "volume_type"), 0, 1, size)?;
            let mut x = Obj::new();
            x.insert("id".into(), json!(new_id()));
            x.insert("volume_id".into(), json!(vol));
            x.insert("name".into(), json!(name));
            x.insert("description".into(), json!(description));
            x.insert("status".into(), json!("creating"));
            x.insert("progress".into(), json!("0%"));
            x.insert("size".into(), json!(size));
            x.insert("metadata".into(), Value::Object(metadata));
            x.insert("project_id".into(), json!(s(&v, "project_id")));
            x.insert("user_id".into(), json!(user));
            x.insert("created_at".into(), json!(now()));
            x.insert("updated_at".into(), Value::Null);
            tx.put(Kind::Snapshot, x.clone());
            Ok(x)
        })
        .await?;
    flows::spawn(
        &svc,
        flows::SNAP_CREATE,
        json!({"id": s(&x, "id"), "volume_id": vol}),
    );
    Ok(accepted(
        json!({"snapshot": views::snapshot(mv, &x, false)}),
    ))
}

async fn update(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_writer("volume:update_snapshot")?;
    let req = body_obj(&body, "snapshot")?.clone();
    let name = opt_text(&req, &["name", "display_name"])?;
    let description = opt_text(&req, &["description", "display_description"])?;
    if name.is_none() && description.is_none() {
        return Err(CinderError::bad(
            "Invalid input received: one of name or description must be given",
        ));
    }
    {
        let st = svc.store.read();
        find(&st, &c, &id)?;
    }
    let x = svc
        .store
        .update(Kind::Snapshot, &id, |x| {
            if let Some(n) = name {
                x.insert("name".into(), json!(n));
            }
            if let Some(d) = description {
                x.insert("description".into(), json!(d));
            }
            Ok(())
        })
        .await?;
    Ok(ok(json!({"snapshot": views::snapshot(mv, &x, false)})))
}

async fn delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    c.require_writer("volume:delete_snapshot")?;
    start_delete(&svc, &c, &id, false).await?;
    Ok(accepted_empty())
}

async fn start_delete(svc: &Arc<VolumeService>, c: &Caller, id: &str, force: bool) -> CResult<()> {
    svc.store
        .write(|tx| {
            let x = find(&tx.st, c, id)?;
            let status = s(&x, "status");
            if !force && !s(&x, "group_snapshot_id").is_empty() {
                return Err(CinderError::invalid(
                    "snapshot",
                    "Snapshot is part of a group snapshot: delete the group snapshot.",
                ));
            }
            if !force && !matches!(status, "available" | "error") {
                return Err(CinderError::invalid(
                    "snapshot",
                    format!("Snapshot status must be available or error, but is {status}."),
                ));
            }
            // Volumes created from it keep their own copy: nothing depends on it.
            let mut x = (*x).clone();
            x.insert("status".into(), json!("deleting"));
            x.insert("updated_at".into(), json!(now()));
            tx.put(Kind::Snapshot, x);
            Ok(())
        })
        .await?;
    flows::spawn(svc, flows::SNAP_DELETE, json!({"id": id}));
    Ok(())
}

const SNAPSHOT_STATUSES: [&str; 9] = [
    "creating",
    "available",
    "deleting",
    "error",
    "error_deleting",
    "unmanaging",
    "backing-up",
    "restoring",
    "deleted",
];

async fn action(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    let Some((verb, arg)) = body.as_object().and_then(|o| o.iter().next()) else {
        return Err(CinderError::bad("Malformed request body"));
    };
    {
        let st = svc.store.read();
        find(&st, &c, &id)?;
    }
    match verb.as_str() {
        "os-reset_status" | "os-update_snapshot_status" => {
            if verb == "os-reset_status" {
                c.require_admin("volume_extension:snapshot_admin_actions:reset_status")?;
            } else {
                c.require_writer("snapshot_extension:snapshot_actions:update_snapshot_status")?;
            }
            let status = arg
                .get("status")
                .and_then(Value::as_str)
                .ok_or_else(|| CinderError::bad("'status' must be specified."))?
                .to_string();
            if !SNAPSHOT_STATUSES.contains(&status.as_str()) {
                return Err(CinderError::bad(format!(
                    "Must specify a valid status: {status}"
                )));
            }
            let progress = arg.get("progress").cloned();
            svc.store
                .update(Kind::Snapshot, &id, |x| {
                    x.insert("status".into(), json!(status));
                    if let Some(p) = progress {
                        x.insert("progress".into(), p);
                    }
                    Ok(())
                })
                .await?;
            Ok(accepted_empty())
        }
        "os-force_delete" => {
            c.require_admin("volume_extension:snapshot_admin_actions:force_delete")?;
            start_delete(&svc, &c, &id, true).await?;
            Ok(accepted_empty())
        }
        other => Err(CinderError::bad(format!(
            "There is no such action: {other}"
        ))),
    }
}
