//! `/v3/groups` and membership.
use super::{Caller, Query, State};
use crate::error::{KsError, KsResult};
use crate::util::*;
use crate::views;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use ferro_common::Error;
use ferro_db::db_err;
use ferro_db::entity::identity::*;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde_json::{Value, json};

const KNOWN: &[&str] = &["id", "name", "domain_id", "description", "links"];

pub async fn delete_group_rows(c: &impl ConnectionTrait, id: &str) -> Result<(), Error> {
    user_group::Entity::delete_many()
        .filter(user_group::Column::GroupId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    assignment::Entity::delete_many()
        .filter(assignment::Column::ActorId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    group::Entity::delete_by_id(id.to_string())
        .exec(c)
        .await
        .map_err(db_err)?;
    Ok(())
}

fn target(id: &str, g: &Result<group::Model, Error>) -> Value {
    json!({"target": {"group": {"id": id, "domain_id": g.as_ref().ok().map(|g| g.domain_id.clone())}}})
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let dom =
        q.0.get("domain_id")
            .cloned()
            .or_else(|| caller.0.token.domain.as_ref().map(|d| d.id.clone()));
    caller.authorize(
        svc,
        "identity:list_groups",
        &json!({"target": {"group": {"domain_id": dom}}}),
    )?;
    let mut sel = group::Entity::find().order_by_asc(group::Column::Name);
    if let Some(d) = q.0.get("domain_id") {
        sel = sel.filter(group::Column::DomainId.eq(d.as_str()));
    }
    if let Some(n) = q.0.get("name") {
        sel = sel.filter(group::Column::Name.eq(n.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(views::list(
        &base,
        "groups",
        "groups",
        rows.iter().map(|g| views::group(&base, g)).collect(),
        false,
    )))
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "group")?;
    let name = req_name(m, "name", 64)?;
    let domain_id = opt_id(m, "domain_id")?
        .flatten()
        .or_else(|| caller.0.token.domain.as_ref().map(|d| d.id.clone()))
        .unwrap_or_else(|| "default".into());
    caller.authorize(
        svc,
        "identity:create_group",
        &json!({"target": {"group": {"domain_id": domain_id}}}),
    )?;
    svc.domain_get(&domain_id)
        .await
        .map_err(|_| Error::validation(format!("Could not find domain: {domain_id}.")))?;
    let row = group::Model {
        id: ferro_common::new_hex_id(),
        domain_id,
        name: name.clone(),
        description: crate::util::description_on_create(m)?,
        extra: json_string(&extra_of(m, KNOWN)),
    };
    row.clone().into_active_model().insert(svc.conn()).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict(format!("Conflict occurred attempting to store group - Duplicate entry found with name {name}."))
        } else {
            db_err(e)
        }
    })?;
    svc.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(json!({"group": views::group(&svc.v3_url(), &row)})),
    ))
}

pub async fn show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let g = svc.group_get(&id).await;
    caller.authorize(svc, "identity:get_group", &target(&id, &g))?;
    Ok(Json(json!({"group": views::group(&svc.v3_url(), &g?)})))
}

pub async fn update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "group")?;
    let g = svc.group_get(&id).await;
    caller.authorize(svc, "identity:update_group", &target(&id, &g))?;
    let g = g?;
    if m.get("domain_id")
        .is_some_and(|d| d.as_str() != Some(g.domain_id.as_str()))
    {
        return Err(KsError(Error::validation(
            "Update of `domain_id` is not allowed.",
        )));
    }
    let mut am = g.clone().into_active_model();
    if let Some(n) = opt_name(m, "name", 64)? {
        am.name = Set(n);
    }
    if let Some(d) = opt_str(m, "description", 65_535, true)? {
        am.description = Set(d);
    }
    let mut extra = json_map(&g.extra);
    extra.extend(extra_of(m, KNOWN));
    am.extra = Set(json_string(&extra));
    let row = am.update(svc.conn()).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict("Conflict occurred attempting to store group - Duplicate entry.")
        } else {
            db_err(e)
        }
    })?;
    svc.invalidate();
    Ok(Json(json!({"group": views::group(&svc.v3_url(), &row)})))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    let g = svc.group_get(&id).await;
    caller.authorize(svc, "identity:delete_group", &target(&id, &g))?;
    g?;
    let txn = svc.conn().begin().await.map_err(db_err)?;
    delete_group_rows(&txn, &id).await?;
    txn.commit().await.map_err(db_err)?;
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn users(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    q: Query,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let g = svc.group_get(&id).await;
    caller.authorize(svc, "identity:list_users_in_group", &target(&id, &g))?;
    g?;
    let ids: Vec<String> = user_group::Entity::find()
        .filter(user_group::Column::GroupId.eq(id.as_str()))
        .all(svc.conn())
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    let mut sel = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .order_by_asc(user::Column::Name);
    if let Some(n) = q.0.get("name") {
        sel = sel.filter(user::Column::Name.eq(n.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(views::list(
        &base,
        &format!("groups/{id}/users"),
        "users",
        rows.iter().map(|u| views::user(&base, u)).collect(),
        false,
    )))
}

async fn membership(
    svc: &crate::IdentityService,
    gid: &str,
    uid: &str,
) -> Result<(group::Model, Option<user_group::Model>), Error> {
    let g = svc.group_get(gid).await?;
    svc.user_get(uid).await?;
    let m = user_group::Entity::find_by_id((uid.to_string(), gid.to_string()))
        .one(svc.conn())
        .await
        .map_err(db_err)?;
    Ok((g, m))
}

pub async fn add_user(
    st: State,
    caller: Caller,
    Path((gid, uid)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    let g = svc.group_get(&gid).await;
    caller.authorize(svc, "identity:add_user_to_group", &target(&gid, &g))?;
    let (_, m) = membership(svc, &gid, &uid).await?;
    if m.is_none() {
        user_group::ActiveModel {
            user_id: Set(uid),
            group_id: Set(gid),
        }
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
        svc.invalidate();
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn check_user(
    st: State,
    caller: Caller,
    Path((gid, uid)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    let g = svc.group_get(&gid).await;
    caller.authorize(svc, "identity:check_user_in_group", &target(&gid, &g))?;
    match membership(svc, &gid, &uid).await? {
        (_, Some(_)) => Ok(StatusCode::NO_CONTENT),
        _ => Err(KsError(Error::not_found_msg(format!(
            "User '{uid}' not found in group '{gid}'."
        )))),
    }
}

pub async fn remove_user(
    st: State,
    caller: Caller,
    Path((gid, uid)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    let g = svc.group_get(&gid).await;
    caller.authorize(svc, "identity:remove_user_from_group", &target(&gid, &g))?;
    match membership(svc, &gid, &uid).await? {
        (_, Some(m)) => {
            m.into_active_model()
                .delete(svc.conn())
                .await
                .map_err(db_err)?;
            svc.invalidate();
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(KsError(Error::not_found_msg(format!(
            "User '{uid}' not found in group '{gid}'."
        )))),
    }
}
