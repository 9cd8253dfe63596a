//! OS-EP-FILTER: endpoint groups (filters on an endpoint's service,
//! region and interface), and the projects each endpoint or endpoint group
//! is associated with. A project with any association sees in its catalog
//! only the endpoints associated with it, directly or through a group, as
//! Keystone's SQL catalog filters `get_v3_catalog`; a project with none sees
//! every endpoint. Associations are JSON documents, like the groups.
use super::extensions::{admin, doc_delete, doc_get, doc_list, doc_put};
use super::{Caller, State};
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
use sea_orm::EntityTrait;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

/// Project-endpoint associations: `<project>:<endpoint>`.
const PROJECT_EP: &str = "project_endpoint";
/// Endpoint group-project associations: `<group>:<project>`.
const PROJECT_EPG: &str = "project_endpoint_group";

fn ep_key(project: &str, endpoint: &str) -> String {
    format!("{project}:{endpoint}")
}
fn epg_key(group: &str, project: &str) -> String {
    format!("{group}:{project}")
}
fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

const EPG: &str = "endpoint_group";

fn epg_fields(m: &Map<String, Value>, doc: &mut Map<String, Value>) -> Result<(), Error> {
    if let Some(n) = opt_name(m, "name", 255)? {
        doc.insert("name".into(), json!(n));
    }
    if let Some(d) = opt_str(m, "description", 65_535, true)? {
        doc.insert("description".into(), json!(d));
    }
    if let Some(f) = m.get("filters") {
        let Value::Object(f) = f else {
            return Err(invalid_type("filters", "object"));
        };
        for k in f.keys() {
            if !["service_id", "region_id", "interface"].contains(&k.as_str()) {
                return Err(invalid("filters", &format!("'{k}' is not a valid filter.")));
            }
        }
        doc.insert("filters".into(), Value::Object(f.clone()));
    }
    Ok(())
}

pub async fn epg_create(
    st: State,
    caller: Caller,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "endpoint_group")?;
    req_name(m, "name", 255)?;
    if !m.contains_key("filters") {
        return Err(KsError(Error::validation(
            "'filters' is a required property",
        )));
    }
    let id = ferro_common::new_hex_id();
    let mut doc = Map::new();
    doc.insert("id".into(), json!(id));
    // Keystone's endpoint_group.description column: null unless given.
    doc.insert("description".into(), Value::Null);
    epg_fields(m, &mut doc)?;
    doc.insert(
        "links".into(),
        json!({"self": format!("{}/OS-EP-FILTER/endpoint_groups/{id}", svc.v3_url())}),
    );
    doc_put(svc, EPG, &id, &doc).await?;
    Ok((StatusCode::CREATED, Json(json!({"endpoint_group": doc}))))
}

pub async fn epg_list(st: State, caller: Caller) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let items = doc_list(svc, EPG)
        .await?
        .into_iter()
        .map(Value::Object)
        .collect();
    Ok(Json(crate::views::list(
        &svc.v3_url(),
        "OS-EP-FILTER/endpoint_groups",
        "endpoint_groups",
        items,
        false,
    )))
}

pub async fn epg_show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let d = doc_get(svc, EPG, &id)
        .await?
        .ok_or_else(|| Error::not_found("endpoint group", &id))?;
    Ok(Json(json!({"endpoint_group": d})))
}

pub async fn epg_check(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    doc_get(svc, EPG, &id)
        .await?
        .ok_or_else(|| Error::not_found("endpoint group", &id))?;
    Ok(StatusCode::OK)
}

pub async fn epg_update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut d = doc_get(svc, EPG, &id)
        .await?
        .ok_or_else(|| Error::not_found("endpoint group", &id))?;
    let body = parse_body(&body)?;
    epg_fields(wrapped(&body, "endpoint_group")?, &mut d)?;
    doc_put(svc, EPG, &id, &d).await?;
    svc.invalidate();
    Ok(Json(json!({"endpoint_group": d})))
}

pub async fn epg_delete(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    doc_get(svc, EPG, &id)
        .await?
        .ok_or_else(|| Error::not_found("endpoint group", &id))?;
    doc_delete(svc, EPG, &id).await?;
    // Its project associations go with it.
    for a in doc_list(svc, PROJECT_EPG).await? {
        if a.get("endpoint_group_id").and_then(Value::as_str) == Some(id.as_str()) {
            doc_delete(svc, PROJECT_EPG, &epg_key(&id, str_of(&a, "project_id"))).await?;
        }
    }
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

// ---- associations --------------------------------------------------------

async fn endpoint_row(svc: &crate::IdentityService, id: &str) -> Result<endpoint::Model, Error> {
    endpoint::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("endpoint", id))
}

async fn project_view(svc: &crate::IdentityService, id: &str) -> Result<Option<Value>, Error> {
    let Some(p) = svc.project_row(id).await? else {
        return Ok(None);
    };
    let tags = super::projects::tags_of(svc, id).await?;
    Ok(Some(super::projects::view(svc, &p, &tags)))
}

async fn require_project(svc: &crate::IdentityService, id: &str) -> Result<(), Error> {
    match svc.project_row(id).await? {
        Some(_) => Ok(()),
        None => Err(Error::not_found("project", id)),
    }
}

async fn require_group(
    svc: &crate::IdentityService,
    id: &str,
) -> Result<Map<String, Value>, Error> {
    doc_get(svc, EPG, id)
        .await?
        .ok_or_else(|| Error::not_found("endpoint group", id))
}

/// Whether endpoint `e` matches every filter of `group`.
fn matches(group: &Map<String, Value>, e: &endpoint::Model) -> bool {
    let Some(Value::Object(f)) = group.get("filters") else {
        return true;
    };
    f.iter().all(|(k, v)| {
        let have = match k.as_str() {
            "service_id" => e.service_id.as_str(),
            "region_id" => e.region_id.as_deref().unwrap_or(""),
            "interface" => e.interface.as_str(),
            _ => return false,
        };
        v.as_str() == Some(have)
    })
}

/// For each project with any association, the ids of the endpoints it is
/// associated with, directly or through its endpoint groups (Keystone's
/// `list_endpoints_for_project`). Endpoints since deleted are left out.
pub async fn project_endpoints(
    svc: &crate::IdentityService,
) -> Result<HashMap<String, HashSet<String>>, Error> {
    let endpoints = all_endpoints(svc).await?;
    project_endpoints_of(svc, &endpoints).await
}

async fn all_endpoints(svc: &crate::IdentityService) -> Result<Vec<endpoint::Model>, Error> {
    endpoint::Entity::find()
        .all(svc.conn())
        .await
        .map_err(db_err)
}

/// `project_endpoints` over endpoints already read.
async fn project_endpoints_of(
    svc: &crate::IdentityService,
    endpoints: &[endpoint::Model],
) -> Result<HashMap<String, HashSet<String>>, Error> {
    let ids: HashSet<&str> = endpoints.iter().map(|e| e.id.as_str()).collect();
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    for a in doc_list(svc, PROJECT_EP).await? {
        let e = str_of(&a, "endpoint_id");
        if ids.contains(e) {
            out.entry(str_of(&a, "project_id").to_string())
                .or_default()
                .insert(e.to_string());
        }
    }
    let groups: HashMap<String, Map<String, Value>> = doc_list(svc, EPG)
        .await?
        .into_iter()
        .map(|g| (str_of(&g, "id").to_string(), g))
        .collect();
    for a in doc_list(svc, PROJECT_EPG).await? {
        let Some(g) = groups.get(str_of(&a, "endpoint_group_id")) else {
            continue;
        };
        let set = out.entry(str_of(&a, "project_id").to_string()).or_default();
        set.extend(
            endpoints
                .iter()
                .filter(|e| matches(g, e))
                .map(|e| e.id.clone()),
        );
    }
    // Associations that leave a project no endpoint do not filter its
    // catalog (Keystone filters only when some endpoint is left).
    out.retain(|_, ids| !ids.is_empty());
    Ok(out)
}

fn endpoints_view(svc: &crate::IdentityService, path: &str, eps: &[endpoint::Model]) -> Value {
    let base = svc.v3_url();
    views::list(
        &base,
        path,
        "endpoints",
        eps.iter().map(|e| views::endpoint(&base, e)).collect(),
        false,
    )
}

async fn projects_view(
    svc: &crate::IdentityService,
    path: &str,
    ids: impl Iterator<Item = String>,
) -> Result<Value, Error> {
    let mut items = Vec::new();
    for id in ids {
        if let Some(p) = project_view(svc, &id).await? {
            items.push(p);
        }
    }
    Ok(views::list(&svc.v3_url(), path, "projects", items, false))
}

/// Records an association (`kind`: project-endpoint or endpoint
/// group-project) once; a second one is Keystone's duplicate-entry 409.
async fn associate(
    svc: &crate::IdentityService,
    kind: &str,
    key: &str,
    doc: Value,
) -> KsResult<StatusCode> {
    if doc_get(svc, kind, key).await?.is_some() {
        return Err(KsError(Error::conflict(format!(
            "Conflict occurred attempting to store {kind} - Duplicate entry."
        ))));
    }
    let Value::Object(d) = doc else {
        return Err(KsError(Error::internal("an association is an object")));
    };
    doc_put(svc, kind, key, &d).await?;
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v3/OS-EP-FILTER/projects/{project_id}/endpoints/{endpoint_id}`
pub async fn project_endpoint_add(
    st: State,
    caller: Caller,
    Path((project, ep)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    endpoint_row(svc, &ep).await?;
    require_project(svc, &project).await?;
    associate(
        svc,
        PROJECT_EP,
        &ep_key(&project, &ep),
        json!({"project_id": project, "endpoint_id": ep}),
    )
    .await
}

fn not_in_project(ep: &str, project: &str) -> KsError {
    KsError(Error::not_found_msg(format!(
        "Endpoint {ep} not found in project {project}"
    )))
}

/// `GET`/`HEAD /v3/OS-EP-FILTER/projects/{project_id}/endpoints/{endpoint_id}`
pub async fn project_endpoint_check(
    st: State,
    caller: Caller,
    Path((project, ep)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    endpoint_row(svc, &ep).await?;
    require_project(svc, &project).await?;
    match doc_get(svc, PROJECT_EP, &ep_key(&project, &ep)).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(not_in_project(&ep, &project)),
    }
}

/// `DELETE /v3/OS-EP-FILTER/projects/{project_id}/endpoints/{endpoint_id}`
pub async fn project_endpoint_remove(
    st: State,
    caller: Caller,
    Path((project, ep)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let key = ep_key(&project, &ep);
    if doc_get(svc, PROJECT_EP, &key).await?.is_none() {
        return Err(not_in_project(&ep, &project));
    }
    doc_delete(svc, PROJECT_EP, &key).await?;
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v3/OS-EP-FILTER/projects/{project_id}/endpoints`: direct and
/// through the project's endpoint groups.
pub async fn project_endpoints_list(
    st: State,
    caller: Caller,
    Path(project): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    require_project(svc, &project).await?;
    let all = all_endpoints(svc).await?;
    let ids = project_endpoints_of(svc, &all)
        .await?
        .remove(&project)
        .unwrap_or_default();
    let eps: Vec<endpoint::Model> = all.into_iter().filter(|e| ids.contains(&e.id)).collect();
    Ok(Json(endpoints_view(
        svc,
        &format!("OS-EP-FILTER/projects/{project}/endpoints"),
        &eps,
    )))
}

/// `GET /v3/OS-EP-FILTER/endpoints/{endpoint_id}/projects`: direct
/// associations only, as Keystone.
pub async fn endpoint_projects_list(
    st: State,
    caller: Caller,
    Path(ep): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    endpoint_row(svc, &ep).await?;
    let ids = doc_list(svc, PROJECT_EP)
        .await?
        .into_iter()
        .filter(|a| str_of(a, "endpoint_id") == ep)
        .map(|a| str_of(&a, "project_id").to_string());
    Ok(Json(
        projects_view(svc, &format!("OS-EP-FILTER/endpoints/{ep}/projects"), ids).await?,
    ))
}

/// `GET /v3/OS-EP-FILTER/projects/{project_id}/endpoint_groups`
pub async fn project_groups_list(
    st: State,
    caller: Caller,
    Path(project): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut items = Vec::new();
    for a in doc_list(svc, PROJECT_EPG).await? {
        if str_of(&a, "project_id") == project
            && let Some(g) = doc_get(svc, EPG, str_of(&a, "endpoint_group_id")).await?
        {
            items.push(Value::Object(g));
        }
    }
    Ok(Json(views::list(
        &svc.v3_url(),
        &format!("OS-EP-FILTER/projects/{project}/endpoint_groups"),
        "endpoint_groups",
        items,
        false,
    )))
}

/// `GET /v3/OS-EP-FILTER/endpoint_groups/{id}/projects`
pub async fn group_projects_list(
    st: State,
    caller: Caller,
    Path(group): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let ids = doc_list(svc, PROJECT_EPG)
        .await?
        .into_iter()
        .filter(|a| str_of(a, "endpoint_group_id") == group)
        .map(|a| str_of(&a, "project_id").to_string());
    Ok(Json(
        projects_view(
            svc,
            &format!("OS-EP-FILTER/endpoint_groups/{group}/projects"),
            ids,
        )
        .await?,
    ))
}

/// `GET /v3/OS-EP-FILTER/endpoint_groups/{id}/endpoints`: the endpoints
/// its filters match.
pub async fn group_endpoints_list(
    st: State,
    caller: Caller,
    Path(group): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let g = require_group(svc, &group).await?;
    let eps: Vec<endpoint::Model> = all_endpoints(svc)
        .await?
        .into_iter()
        .filter(|e| matches(&g, e))
        .collect();
    Ok(Json(endpoints_view(
        svc,
        &format!("OS-EP-FILTER/endpoint_groups/{group}/endpoints"),
        &eps,
    )))
}

fn group_project_view(svc: &crate::IdentityService, group: &str, project: &str) -> Value {
    json!({"project_endpoint_group": {
        "endpoint_group_id": group, "project_id": project,
        "links": {"self": format!("{}/OS-EP-FILTER/endpoint_groups/{group}/projects/{project}",
                                  svc.v3_url())}}})
}

/// `PUT /v3/OS-EP-FILTER/endpoint_groups/{id}/projects/{project_id}`
pub async fn group_project_add(
    st: State,
    caller: Caller,
    Path((group, project)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    require_project(svc, &project).await?;
    require_group(svc, &group).await?;
    associate(
        svc,
        PROJECT_EPG,
        &epg_key(&group, &project),
        json!({"endpoint_group_id": group, "project_id": project}),
    )
    .await
}

fn group_not_in_project() -> KsError {
    KsError(Error::not_found_msg(
        "Endpoint Group Project Association not found",
    ))
}

/// `GET`/`HEAD /v3/OS-EP-FILTER/endpoint_groups/{id}/projects/{project_id}`
pub async fn group_project_show(
    st: State,
    caller: Caller,
    Path((group, project)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    require_project(svc, &project).await?;
    require_group(svc, &group).await?;
    match doc_get(svc, PROJECT_EPG, &epg_key(&group, &project)).await? {
        Some(_) => Ok(Json(group_project_view(svc, &group, &project))),
        None => Err(group_not_in_project()),
    }
}

/// `DELETE /v3/OS-EP-FILTER/endpoint_groups/{id}/projects/{project_id}`
pub async fn group_project_remove(
    st: State,
    caller: Caller,
    Path((group, project)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    require_project(svc, &project).await?;
    require_group(svc, &group).await?;
    let key = epg_key(&group, &project);
    if doc_get(svc, PROJECT_EPG, &key).await?.is_none() {
        return Err(group_not_in_project());
    }
    doc_delete(svc, PROJECT_EPG, &key).await?;
    svc.invalidate();
    Ok(StatusCode::NO_CONTENT)
}
