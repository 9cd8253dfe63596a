//! `/v3/projects` with hierarchy (parent_id), tags and enable/disable.
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
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

const KNOWN: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "description",
    "enabled",
    "parent_id",
    "is_domain",
    "tags",
    "options",
    "links",
];

pub fn validate_tags(v: Option<&Value>) -> Result<Vec<String>, Error> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Value::Array(items) = v else {
        return Err(invalid_type("tags", "array"));
    };
    if items.len() > 80 {
        return Err(invalid("tags", "too many tags (max 80)."));
    }
    let mut out: Vec<String> = Vec::new();
    for t in items {
        let s = t.as_str().ok_or_else(|| invalid_type("tags", "string"))?;
        validate_tag(s)?;
        if !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

fn validate_tag(s: &str) -> Result<(), Error> {
    if s.is_empty() || s.chars().count() > 255 || s.contains('/') || s.contains(',') {
        return Err(invalid(
            "tags",
            &format!("'{s}' is not a valid tag (1-255 characters, no '/' or ',')."),
        ));
    }
    Ok(())
}

pub async fn set_tags(c: &impl ConnectionTrait, id: &str, tags: &[String]) -> Result<(), Error> {
    project_tag::Entity::delete_many()
        .filter(project_tag::Column::ProjectId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    if !tags.is_empty() {
        let rows = tags.iter().map(|t| project_tag::ActiveModel {
            project_id: Set(id.to_string()),
            name: Set(t.clone()),
        });
        project_tag::Entity::insert_many(rows)
            .exec(c)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

pub async fn tags_of(svc: &crate::IdentityService, id: &str) -> Result<Vec<String>, Error> {
    Ok(tags_map(svc, vec![id.to_string()])
        .await?
        .remove(id)
        .unwrap_or_default())
}

/// Tags of many projects in one query.
pub async fn tags_map(
    svc: &crate::IdentityService,
    ids: Vec<String>,
) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows = project_tag::Entity::find()
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let wanted: HashSet<String> = ids.into_iter().collect();
    for r in rows.into_iter().filter(|r| wanted.contains(&r.project_id)) {
        out.entry(r.project_id).or_default().push(r.name);
    }
    Ok(out)
}

/// Removes a project row and what hangs off it (tags, grants on it).
pub async fn delete_project_rows(c: &impl ConnectionTrait, id: &str) -> Result<(), Error> {
    project_tag::Entity::delete_many()
        .filter(project_tag::Column::ProjectId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    assignment::Entity::delete_many()
        .filter(assignment::Column::TargetId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    limit::Entity::delete_many()
        .filter(limit::Column::ProjectId.eq(id))
        .exec(c)
        .await
        .map_err(db_err)?;
    project::Entity::delete_by_id(id.to_string())
        .exec(c)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(crate) fn view(svc: &crate::IdentityService, p: &project::Model, tags: &[String]) -> Value {
    if p.is_domain {
        views::domain_as_project(&svc.v3_url(), p, tags)
    } else {
        views::project(&svc.v3_url(), p, tags)
    }
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let target =
        json!({"target": {"domain_id": q.0.get("domain_id")}, "domain_id": q.0.get("domain_id")});
    caller.authorize(svc, "identity:list_projects", &target)?;
    let is_domain = q.0.get("is_domain").map(|v| query_bool(v)).unwrap_or(false);
    let mut sel = project::Entity::find()
        .filter(project::Column::IsDomain.eq(is_domain))
        .order_by_asc(project::Column::Name);
    if let Some(v) = q.0.get("domain_id") {
        sel = sel.filter(project::Column::DomainId.eq(v.as_str()));
    }
    if let Some(v) = q.0.get("name") {
        sel = sel.filter(project::Column::Name.eq(v.as_str()));
    }
    if let Some(v) = q.0.get("parent_id") {
        sel = sel.filter(project::Column::ParentId.eq(v.as_str()));
    }
    if let Some(v) = q.0.get("enabled") {
        sel = sel.filter(project::Column::Enabled.eq(query_bool(v)));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let tags = tags_map(svc, rows.iter().map(|r| r.id.clone()).collect()).await?;
    let split = |k: &str| -> Option<Vec<String>> {
        q.0.get(k)
            .map(|v| v.split(',').map(str::to_string).collect())
    };
    let (all, any, not_all, not_any) = (
        split("tags"),
        split("tags-any"),
        split("not-tags"),
        split("not-tags-any"),
    );
    let empty = Vec::new();
    let items = rows
        .iter()
        .filter(|p| {
            let t = tags.get(&p.id).unwrap_or(&empty);
            all.as_ref().is_none_or(|w| w.iter().all(|x| t.contains(x)))
                && any.as_ref().is_none_or(|w| w.iter().any(|x| t.contains(x)))
                && not_all
                    .as_ref()
                    .is_none_or(|w| !w.iter().all(|x| t.contains(x)))
                && not_any
                    .as_ref()
                    .is_none_or(|w| !w.iter().any(|x| t.contains(x)))
        })
        .map(|p| view(svc, p, tags.get(&p.id).unwrap_or(&empty)))
        .collect();
    Ok(Json(views::list(
        &svc.v3_url(),
        "projects",
        "projects",
        items,
        false,
    )))
}

async fn parse_parent_and_domain(
    svc: &crate::IdentityService,
    caller: &Caller,
    m: &serde_json::Map<String, Value>,
) -> Result<(String, String), Error> {
    let domain_id = opt_id(m, "domain_id")?.flatten();
    let parent_id = opt_id(m, "parent_id")?.flatten();
    let parent = match &parent_id {
        Some(pid) => Some(
            svc.project_row(pid)
                .await?
                .ok_or_else(|| Error::not_found("project", pid))?,
        ),
        None => None,
    };
    let domain_id = match (domain_id, &parent) {
        (Some(d), _) => d,
        (None, Some(p)) if p.is_domain => p.id.clone(),
        (None, Some(p)) => p.domain_id.clone(),
        (None, None) => caller
            .0
            .token
            .domain
            .as_ref()
            .map(|d| d.id.clone())
            .unwrap_or_else(|| "default".into()),
    };
    svc.domain_get(&domain_id)
        .await
        .map_err(|_| Error::validation(format!("Could not find domain: {domain_id}.")))?;
    let parent_id = match parent {
        Some(p) => {
            let pdom = if p.is_domain {
                p.id.clone()
            } else {
                p.domain_id.clone()
            };
            if pdom != domain_id {
                return Err(Error::validation(
                    "Cannot create project, the parent is in a different domain.",
                ));
            }
            p.id
        }
        None => domain_id.clone(),
    };
    Ok((domain_id, parent_id))
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "project")?;
    let is_domain = opt_bool(m, "is_domain")?.unwrap_or(false);
    let name = req_name(m, "name", 64)?;
    let (domain_id, parent_id) = if is_domain {
        (ROOT_DOMAIN.to_string(), String::new())
    } else {
        parse_parent_and_domain(svc, &caller, m).await?
    };
    caller.authorize(
        svc,
        "identity:create_project",
        &json!({"target": {"project": {"domain_id": domain_id}}}),
    )?;
    if !is_domain
        && let Some(parent) = svc.project_row(&parent_id).await?
        && !parent.enabled
        && !parent.is_domain
    {
        return Err(KsError(Error::forbidden(
            "Cannot create project, since its parent is disabled.",
        )));
    }
    let tags = validate_tags(m.get("tags"))?;
    let options = validate_options(m, super::domains::PROJECT_OPTIONS)?
        .map(crate::util::without_nulls)
        .unwrap_or_default();
    let row = project::Model {
        id: ferro_common::new_hex_id(),
        name,
        domain_id,
        description: crate::util::description_on_create(m)?,
        enabled: opt_bool(m, "enabled")?.unwrap_or(true),
        parent_id: if is_domain { None } else { Some(parent_id) },
        is_domain,
        extra: json_string(&extra_of(m, KNOWN)),
        options: json_string(&options),
    };
    super::domains::insert_project(svc, row.clone(), &tags, "project").await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"project": view(svc, &row, &tags)})),
    ))
}

pub async fn show(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    q: Query,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let p = svc.project_row(&id).await?;
    let target = json!({"target": {"project": {"id": id, "domain_id": p.as_ref().map(|p| p.domain_id.clone())}}});
    caller.authorize(svc, "identity:get_project", &target)?;
    let p = p.ok_or_else(|| Error::not_found("project", &id))?;
    let tags = tags_of(svc, &id).await?;
    let mut v = view(svc, &p, &tags);
    let flag = |k: &str| q.0.get(k).is_some_and(|v| query_bool(v));
    if flag("parents_as_ids") || flag("parents_as_list") {
        let all_ancestors = svc.project_ancestors(&p).await?;
        let ancestors: Vec<&project::Model> =
            all_ancestors.iter().filter(|a| !a.is_domain).collect();
        if flag("parents_as_list") {
            v["parents"] = json!(
                ancestors
                    .iter()
                    .map(|a| json!({"project": view(svc, a, &[])}))
                    .collect::<Vec<_>>()
            );
        } else {
            // nested {parent: {grandparent: null}}, up to and including the
            // domain, as Keystone's `list_project_parents` (not its root).
            let mut nested = Value::Null;
            for a in all_ancestors.iter().rev().filter(|a| a.id != ROOT_DOMAIN) {
                nested = json!({ a.id.clone(): nested });
            }
            v["parents"] = nested;
        }
    }
    if flag("subtree_as_ids") || flag("subtree_as_list") {
        let all = project::Entity::find()
            .filter(project::Column::DomainId.eq(p.domain_id.as_str()))
            .all(svc.conn())
            .await
            .map_err(db_err)?;
        if flag("subtree_as_list") {
            let mut out = Vec::new();
            let mut stack = vec![p.id.clone()];
            while let Some(cur) = stack.pop() {
                for c in all
                    .iter()
                    .filter(|c| c.parent_id.as_deref() == Some(cur.as_str()))
                {
                    out.push(json!({"project": view(svc, c, &[])}));
                    stack.push(c.id.clone());
                }
            }
            v["subtree"] = json!(out);
        } else {
            fn subtree(all: &[project::Model], id: &str, depth: usize) -> Value {
                let kids: serde_json::Map<String, Value> = all
                    .iter()
                    .filter(|c| c.parent_id.as_deref() == Some(id) && depth < 64)
                    .map(|c| (c.id.clone(), subtree(all, &c.id, depth + 1)))
                    .collect();
                if kids.is_empty() {
                    Value::Null
                } else {
                    Value::Object(kids)
                }
            }
            v["subtree"] = subtree(&all, &p.id, 0);
        }
    }
    Ok(Json(json!({ "project": v })))
}

pub async fn update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "project")?;
    let p = svc
        .project_row(&id)
        .await?
        .ok_or_else(|| Error::not_found("project", &id));
    let target = json!({"target": {"project": {"id": id, "domain_id": p.as_ref().ok().map(|p| p.domain_id.clone())}}});
    caller.authorize(svc, "identity:update_project", &target)?;
    let p = p?;
    if let Some(d) = m.get("domain_id")
        && d.as_str() != Some(p.domain_id.as_str())
    {
        return Err(KsError(Error::validation(
            "Update of `domain_id` is not allowed.",
        )));
    }
    if let Some(pid) = m.get("parent_id")
        && pid.as_str() != p.parent_id.as_deref()
    {
        return Err(KsError(Error::forbidden(
            "Update of `parent_id` is not allowed.",
        )));
    }
    if m.get("is_domain")
        .is_some_and(|v| v.as_bool() != Some(false))
    {
        return Err(KsError(Error::validation(
            "Update of `is_domain` is not allowed.",
        )));
    }
    let mut am = p.clone().into_active_model();
    if let Some(n) = opt_name(m, "name", 64)? {
        am.name = Set(n);
    }
    if let Some(d) = opt_str(m, "description", 65_535, true)? {
        am.description = Set(d);
    }
    let enabled = opt_bool(m, "enabled")?;
    if let Some(e) = enabled {
        if e && !p.enabled {
            for a in svc.project_ancestors(&p).await? {
                if !a.is_domain && !a.enabled {
                    return Err(KsError(Error::forbidden(
                        "Cannot enable project, since its parent is disabled.",
                    )));
                }
            }
        }
        am.enabled = Set(e);
    }
    if let Some(opts) = validate_options(m, super::domains::PROJECT_OPTIONS)? {
        am.options = Set(merge_json(&p.options, opts));
    }
    let mut extra = json_map(&p.extra);
    extra.extend(extra_of(m, KNOWN));
    am.extra = Set(json_string(&extra));
    let new_tags = match m.get("tags") {
        Some(t) => Some(validate_tags(Some(t))?),
        None => None,
    };
    let txn = svc.conn().begin().await.map_err(db_err)?;
    let row = am.update(&txn).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict(
                "Conflict occurred attempting to store project - Duplicate entry found with name.",
            )
        } else {
            db_err(e)
        }
    })?;
    if let Some(t) = &new_tags {
        set_tags(&txn, &id, t).await?;
    }
    txn.commit().await.map_err(db_err)?;
    svc.invalidate();
    if p.enabled && enabled == Some(false) {
        svc.revoke(RevEvent {
            project_id: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    }
    let tags = tags_of(svc, &id).await?;
    Ok(Json(json!({"project": view(svc, &row, &tags)})))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    let p = svc
        .project_row(&id)
        .await?
        .ok_or_else(|| Error::not_found("project", &id));
    let target = json!({"target": {"project": {"id": id, "domain_id": p.as_ref().ok().map(|p| p.domain_id.clone())}}});
    caller.authorize(svc, "identity:delete_project", &target)?;
    if p?.is_domain {
        // A project acting as a domain is deleted as a domain.
        super::domains::delete_domain(svc, &id).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let children = project::Entity::find()
        .filter(project::Column::ParentId.eq(id.as_str()))
        .one(svc.conn())
        .await
        .map_err(db_err)?;
    if children.is_some() {
        return Err(KsError(Error::forbidden(format!(
            "Cannot delete the project {id} since it is not a leaf in the hierarchy. Use the cascade option if you want to delete a whole subtree."
        ))));
    }
    let txn = svc.conn().begin().await.map_err(db_err)?;
    delete_project_rows(&txn, &id).await?;
    txn.commit().await.map_err(db_err)?;
    svc.revoke(RevEvent {
        project_id: Some(id),
        ..Default::default()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_target(
    svc: &crate::IdentityService,
    id: &str,
) -> Result<(Value, Result<project::Model, Error>), Error> {
    let p = svc.project_get(id).await;
    let t = json!({"target": {"project": {"id": id, "domain_id": p.as_ref().ok().map(|p| p.domain_id.clone())}}});
    Ok((t, p))
}

pub async fn tags_list(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let (t, p) = tag_target(svc, &id).await?;
    caller.authorize(svc, "identity:list_project_tags", &t)?;
    p?;
    Ok(Json(tags_body(svc, &id, tags_of(svc, &id).await?)))
}

/// Keystone's tags document: the list and a link to it.
fn tags_body(svc: &crate::IdentityService, id: &str, tags: Vec<String>) -> Value {
    json!({"tags": tags, "links": {"self": format!("{}/projects/{id}/tags", svc.v3_url())}})
}

pub async fn tags_replace(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let (t, p) = tag_target(svc, &id).await?;
    caller.authorize(svc, "identity:update_project_tags", &t)?;
    p?;
    let body = parse_body(&body)?;
    let tags = validate_tags(Some(body.get("tags").unwrap_or(&Value::Null)))?;
    set_tags(svc.conn(), &id, &tags).await?;
    svc.invalidate();
    Ok(Json(tags_body(svc, &id, tags)))
}

pub async fn tags_clear(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    let (t, p) = tag_target(svc, &id).await?;
    caller.authorize(svc, "identity:delete_project_tags", &t)?;
    p?;
    set_tags(svc.conn(), &id, &[]).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tag_check(
    st: State,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    let (t, p) = tag_target(svc, &id).await?;
    caller.authorize(svc, "identity:get_project_tag", &t)?;
    p?;
    if tags_of(svc, &id).await?.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(KsError(Error::not_found("tag", tag)))
    }
}

pub async fn tag_add(
    st: State,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    let (t, p) = tag_target(svc, &id).await?;
    caller.authorize(svc, "identity:create_project_tag", &t)?;
    p?;
    validate_tag(&tag)?;
    let mut tags = tags_of(svc, &id).await?;
    if !tags.contains(&tag) {
        if tags.len() >= 80 {
            return Err(KsError(invalid("tags", "too many tags (max 80).")));
        }
        tags.push(tag);
        set_tags(svc.conn(), &id, &tags).await?;
    }
    Ok(StatusCode::CREATED)
}

pub async fn tag_remove(
    st: State,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    let (t, p) = tag_target(svc, &id).await?;
    caller.authorize(svc, "identity:delete_project_tag", &t)?;
    p?;
    let mut tags = tags_of(svc, &id).await?;
    if !tags.contains(&tag) {
        return Err(KsError(Error::not_found("tag", tag)));
    }
    tags.retain(|x| *x != tag);
    set_tags(svc.conn(), &id, &tags).await?;
    Ok(StatusCode::NO_CONTENT)
}
