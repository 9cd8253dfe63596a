//! `/v3/domains`. Domains are project rows with `is_domain = true`.
use super::projects::{set_tags, tags_map, validate_tags};
use super::{Caller, Query, State};
use crate::error::{KsError, KsResult};
use crate::tokens::RevEvent;
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
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde_json::{Value, json};

const KNOWN: &[&str] = &[
    "id",
    "name",
    "description",
    "enabled",
    "tags",
    "options",
    "links",
    "explicit_domain_id",
    // Keystone overwrites these for a domain and never shows them.
    "domain_id",
    "parent_id",
    "is_domain",
];
pub const PROJECT_OPTIONS: &[(&str, &str)] = &[("immutable", "bool")];

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_domains", &json!({}))?;
    let mut sel = project::Entity::find()
        .filter(project::Column::IsDomain.eq(true))
        .order_by_asc(project::Column::Name);
    if let Some(n) = q.0.get("name") {
        sel = sel.filter(project::Column::Name.eq(n.as_str()));
    }
    if let Some(e) = q.0.get("enabled") {
        sel = sel.filter(project::Column::Enabled.eq(query_bool(e)));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let tags = tags_map(svc, rows.iter().map(|r| r.id.clone()).collect()).await?;
    let base = svc.v3_url();
    let items = rows
        .iter()
        .map(|d| views::domain(&base, d, tags.get(&d.id).map(Vec::as_slice).unwrap_or(&[])))
        .collect();
    Ok(Json(views::list(&base, "domains", "domains", items, false)))
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_domain", &json!({}))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "domain")?;
    let name = req_name(m, "name", 64)?;
    let description = crate::util::description_on_create(m)?;
    let enabled = opt_bool(m, "enabled")?.unwrap_or(true);
    let tags = validate_tags(m.get("tags"))?;
    let options = validate_options(m, PROJECT_OPTIONS)?
        .map(crate::util::without_nulls)
        .unwrap_or_default();
    let id = match opt_str(m, "explicit_domain_id", 64, true)?.flatten() {
        Some(id) => id,
        None => ferro_common::new_hex_id(),
    };
    let row = project::Model {
        id,
        name,
        domain_id: ROOT_DOMAIN.into(),
        description,
        enabled,
        parent_id: None,
        is_domain: true,
        extra: json_string(&extra_of(m, KNOWN)),
        options: json_string(&options),
    };
    insert_project(svc, row.clone(), &tags, "domain").await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"domain": views::domain(&svc.v3_url(), &row, &tags)})),
    ))
}

/// Inserts a project/domain row and its tags in one transaction.
pub async fn insert_project(
    svc: &crate::IdentityService,
    row: project::Model,
    tags: &[String],
    kind: &str,
) -> Result<(), Error> {
    let txn = svc.conn().begin().await.map_err(db_err)?;
    row.clone().into_active_model().insert(&txn).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict(format!("Conflict occurred attempting to store {kind} - Duplicate entry found with name {}.", row.name))
        } else {
            db_err(e)
        }
    })?;
    set_tags(&txn, &row.id, tags).await?;
    txn.commit().await.map_err(db_err)?;
    svc.invalidate();
    Ok(())
}

pub async fn show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let d = svc.domain_get(&id).await;
    let target = json!({"target": {"domain": {"id": id}}});
    caller.authorize(svc, "identity:get_domain", &target)?;
    let d = d?;
    let tags = super::projects::tags_of(svc, &d.id).await?;
    Ok(Json(
        json!({"domain": views::domain(&svc.v3_url(), &d, &tags)}),
    ))
}

pub async fn update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(
        svc,
        "identity:update_domain",
        &json!({"target": {"domain": {"id": id}}}),
    )?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "domain")?;
    if m.contains_key("id") && m.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return Err(KsError(Error::validation("Cannot change Domain ID")));
    }
    let d = svc.domain_get(&id).await?;
    let was_enabled = d.enabled;
    let mut am = d.clone().into_active_model();
    if let Some(n) = opt_name(m, "name", 64)? {
        am.name = Set(n);
    }
    if let Some(desc) = opt_str(m, "description", 65_535, true)? {
        am.description = Set(desc);
    }
    let enabled = opt_bool(m, "enabled")?;
    if let Some(e) = enabled {
        am.enabled = Set(e);
    }
    if let Some(opts) = validate_options(m, PROJECT_OPTIONS)? {
        am.options = Set(merge_json(&d.options, opts));
    }
    let mut extra = json_map(&d.extra);
    extra.extend(extra_of(m, KNOWN));
    am.extra = Set(json_string(&extra));
    let new_tags = match m.get("tags") {
        Some(t) => Some(validate_tags(Some(t))?),
        None => None,
    };
    let txn = svc.conn().begin().await.map_err(db_err)?;
    let row = am.update(&txn).await.map_err(db_err)?;
    if let Some(t) = &new_tags {
        set_tags(&txn, &id, t).await?;
    }
    txn.commit().await.map_err(db_err)?;
    svc.invalidate();
    if was_enabled && enabled == Some(false) {
        svc.revoke(RevEvent {
            domain_id: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    }
    let tags = super::projects::tags_of(svc, &id).await?;
    Ok(Json(
        json!({"domain": views::domain(&svc.v3_url(), &row, &tags)}),
    ))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(
        svc,
        "identity:delete_domain",
        &json!({"target": {"domain": {"id": id}}}),
    )?;
    delete_domain(svc, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a disabled domain and everything it owns.
pub async fn delete_domain(svc: &crate::IdentityService, id: &str) -> Result<(), Error> {
    let id = id.to_string();
    let d = svc.domain_get(&id).await?;
    if d.enabled {
        return Err(Error::forbidden(
            "Cannot delete a domain that is enabled, please disable it first.",
        ));
    }
    // Everything owned by the domain goes with it, as in Keystone.
    let projects = project::Entity::find()
        .filter(project::Column::DomainId.eq(id.as_str()))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let users = user::Entity::find()
        .filter(user::Column::DomainId.eq(id.as_str()))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let groups = group::Entity::find()
        .filter(group::Column::DomainId.eq(id.as_str()))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let txn = svc.conn().begin().await.map_err(db_err)?;
    for p in &projects {
        super::projects::delete_project_rows(&txn, &p.id).await?;
    }
    for u in &users {
        super::users::delete_user_rows(&txn, &u.id).await?;
    }
    for g in &groups {
        super::groups::delete_group_rows(&txn, &g.id).await?;
    }
    role::Entity::delete_many()
        .filter(role::Column::DomainId.eq(id.as_str()))
        .exec(&txn)
        .await
        .map_err(db_err)?;
    super::projects::delete_project_rows(&txn, &id).await?;
    txn.commit().await.map_err(db_err)?;
    svc.revoke(RevEvent {
        domain_id: Some(id),
        ..Default::default()
    })
    .await?;
    Ok(())
}
