//! Small Keystone extensions kept as JSON documents: OS-OAUTH1 consumers
//! and domain-specific configuration (OS-EP-FILTER is `ep_filter`).
use super::{Caller, State};
use crate::error::{KsError, KsResult};
use crate::util::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use ferro_common::Error;
use ferro_db::db_err;
use ferro_db::entity::identity::*;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde_json::{Map, Value, json};

pub(super) async fn doc_get(
    svc: &crate::IdentityService,
    kind: &str,
    id: &str,
) -> Result<Option<Map<String, Value>>, Error> {
    Ok(
        document::Entity::find_by_id((kind.to_string(), id.to_string()))
            .one(svc.conn())
            .await
            .map_err(db_err)?
            .map(|d| json_map(&d.body)),
    )
}

pub(super) async fn doc_put(
    svc: &crate::IdentityService,
    kind: &str,
    id: &str,
    body: &Map<String, Value>,
) -> Result<bool, Error> {
    let existing = document::Entity::find_by_id((kind.to_string(), id.to_string()))
        .one(svc.conn())
        .await
        .map_err(db_err)?;
    match existing {
        Some(d) => {
            let mut am = d.into_active_model();
            am.body = Set(json_string(body));
            am.update(svc.conn()).await.map_err(db_err)?;
            Ok(false)
        }
        None => {
            document::ActiveModel {
                kind: Set(kind.into()),
                id: Set(id.into()),
                body: Set(json_string(body)),
            }
            .insert(svc.conn())
            .await
            .map_err(db_err)?;
            Ok(true)
        }
    }
}

pub(super) async fn doc_delete(
    svc: &crate::IdentityService,
    kind: &str,
    id: &str,
) -> Result<(), Error> {
    document::Entity::delete_by_id((kind.to_string(), id.to_string()))
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(super) async fn doc_list(
    svc: &crate::IdentityService,
    kind: &str,
) -> Result<Vec<Map<String, Value>>, Error> {
    Ok(document::Entity::find()
        .filter(document::Column::Kind.eq(kind))
        .all(svc.conn())
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|d| json_map(&d.body))
        .collect())
}

pub(super) fn admin(svc: &crate::IdentityService, caller: &Caller) -> Result<(), Error> {
    caller.authorize(svc, "admin_required", &json!({}))
}

// ---- OS-OAUTH1 consumers ------------------------------------------------

const CONSUMER: &str = "oauth1_consumer";

pub async fn consumer_create(
    st: State,
    caller: Caller,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "consumer")?;
    let id = ferro_common::new_hex_id();
    let mut doc = extra_of(m, &["id", "secret", "links"]);
    doc.insert("id".into(), json!(id));
    doc.insert(
        "description".into(),
        json!(opt_str(m, "description", 65_535, true)?.flatten()),
    );
    doc.insert(
        "links".into(),
        json!({"self": format!("{}/OS-OAUTH1/consumers/{id}", svc.v3_url())}),
    );
    doc_put(svc, CONSUMER, &id, &doc).await?;
    let mut v = Value::Object(doc);
    v["secret"] = json!(ferro_common::new_hex_id());
    Ok((StatusCode::CREATED, Json(json!({"consumer": v}))))
}

pub async fn consumer_list(st: State, caller: Caller) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let items = doc_list(svc, CONSUMER)
        .await?
        .into_iter()
        .map(Value::Object)
        .collect();
    Ok(Json(crate::views::list(
        &svc.v3_url(),
        "OS-OAUTH1/consumers",
        "consumers",
        items,
        false,
    )))
}

pub async fn consumer_show(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let d = doc_get(svc, CONSUMER, &id)
        .await?
        .ok_or_else(|| Error::not_found("consumer", &id))?;
    Ok(Json(json!({"consumer": d})))
}

pub async fn consumer_update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut d = doc_get(svc, CONSUMER, &id)
        .await?
        .ok_or_else(|| Error::not_found("consumer", &id))?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "consumer")?;
    if m.contains_key("secret") {
        return Err(KsError(Error::validation("Cannot change consumer secret")));
    }
    d.extend(extra_of(m, &["id", "links"]));
    doc_put(svc, CONSUMER, &id, &d).await?;
    Ok(Json(json!({"consumer": d})))
}

pub async fn consumer_delete(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    doc_get(svc, CONSUMER, &id)
        .await?
        .ok_or_else(|| Error::not_found("consumer", &id))?;
    doc_delete(svc, CONSUMER, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- domain-specific configuration --------------------------------------

const DOMAIN_CONFIG: &str = "domain_config";
const GROUPS: &[&str] = &["identity", "ldap"];

fn defaults() -> Map<String, Value> {
    let v = json!({
        "identity": {"driver": "sql", "list_limit": null},
        "ldap": {"url": "ldap://localhost", "user": null, "suffix": "cn=example,cn=com", "user_tree_dn": null,
                 "group_tree_dn": null, "page_size": 0, "use_tls": false, "query_scope": "one"},
    });
    v.as_object().cloned().unwrap_or_default()
}

fn check_config(c: &Map<String, Value>) -> Result<(), Error> {
    if c.is_empty() {
        return Err(Error::validation("Domain config is empty."));
    }
    for (g, opts) in c {
        if !GROUPS.contains(&g.as_str()) {
            return Err(Error::forbidden(format!(
                "Group {g} is not supported for domain specific configurations."
            )));
        }
        if !opts.is_object() {
            return Err(invalid_type(g, "object"));
        }
    }
    Ok(())
}

fn config_body(body: &Value) -> Result<Map<String, Value>, Error> {
    Ok(wrapped(body, "config")?.clone())
}

fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (g, opts) in from {
        let entry = into.entry(g.clone()).or_insert_with(|| json!({}));
        if let (Some(dst), Some(src)) = (entry.as_object_mut(), opts.as_object()) {
            for (k, v) in src {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

async fn domain_checked(
    svc: &crate::IdentityService,
    caller: &Caller,
    d: &str,
) -> Result<(), Error> {
    admin(svc, caller)?;
    svc.domain_get(d).await?;
    Ok(())
}

async fn config_of(svc: &crate::IdentityService, d: &str) -> Result<Map<String, Value>, Error> {
    doc_get(svc, DOMAIN_CONFIG, d)
        .await?
        .ok_or_else(|| Error::not_found_msg(format!("Could not find Domain Config: {d}.")))
}

pub async fn config_put(
    st: State,
    caller: Caller,
    Path(d): Path<String>,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    let c = config_body(&parse_body(&body)?)?;
    check_config(&c)?;
    let created = doc_put(svc, DOMAIN_CONFIG, &d, &c).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(json!({"config": c})),
    ))
}

pub async fn config_get(st: State, caller: Caller, Path(d): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    Ok(Json(json!({"config": config_of(svc, &d).await?})))
}

pub async fn config_patch(
    st: State,
    caller: Caller,
    Path(d): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    let patch = config_body(&parse_body(&body)?)?;
    check_config(&patch)?;
    let mut c = config_of(svc, &d).await?;
    merge(&mut c, &patch);
    doc_put(svc, DOMAIN_CONFIG, &d, &c).await?;
    Ok(Json(json!({"config": c})))
}

pub async fn config_delete(
    st: State,
    caller: Caller,
    Path(d): Path<String>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    config_of(svc, &d).await?;
    doc_delete(svc, DOMAIN_CONFIG, &d).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn group_of<'a>(c: &'a Map<String, Value>, g: &str) -> Result<&'a Map<String, Value>, Error> {
    c.get(g).and_then(Value::as_object).ok_or_else(|| {
        Error::not_found_msg(format!("Could not find group {g} in the domain config."))
    })
}

pub async fn config_group_get(
    st: State,
    caller: Caller,
    Path((d, g)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    let c = config_of(svc, &d).await?;
    Ok(Json(json!({"config": {g.clone(): group_of(&c, &g)?}})))
}

pub async fn config_group_patch(
    st: State,
    caller: Caller,
    Path((d, g)): Path<(String, String)>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    let patch = config_body(&parse_body(&body)?)?;
    check_config(&patch)?;
    if patch.keys().any(|k| *k != g) {
        return Err(KsError(Error::validation(
            "The config group in the body must match the URL.",
        )));
    }
    let mut c = config_of(svc, &d).await?;
    group_of(&c, &g)?;
    merge(&mut c, &patch);
    doc_put(svc, DOMAIN_CONFIG, &d, &c).await?;
    Ok(Json(json!({"config": c})))
}

pub async fn config_group_delete(
    st: State,
    caller: Caller,
    Path((d, g)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    let mut c = config_of(svc, &d).await?;
    group_of(&c, &g)?;
    c.remove(&g);
    doc_put(svc, DOMAIN_CONFIG, &d, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn config_option_get(
    st: State,
    caller: Caller,
    Path((d, g, o)): Path<(String, String, String)>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    let c = config_of(svc, &d).await?;
    let v = group_of(&c, &g)?
        .get(&o)
        .ok_or_else(|| Error::not_found_msg(format!("Could not find option {o} in group {g}.")))?;
    Ok(Json(json!({"config": {o: v}})))
}

pub async fn config_option_patch(
    st: State,
    caller: Caller,
    Path((d, g, o)): Path<(String, String, String)>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    let patch = config_body(&parse_body(&body)?)?;
    let val = patch
        .get(&o)
        .ok_or_else(|| Error::validation("The option in the body must match the URL."))?
        .clone();
    let mut c = config_of(svc, &d).await?;
    group_of(&c, &g)?;
    if let Some(grp) = c.get_mut(&g).and_then(Value::as_object_mut) {
        grp.insert(o, val);
    }
    doc_put(svc, DOMAIN_CONFIG, &d, &c).await?;
    Ok(Json(json!({"config": c})))
}

pub async fn config_option_delete(
    st: State,
    caller: Caller,
    Path((d, g, o)): Path<(String, String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    domain_checked(svc, &caller, &d).await?;
    let mut c = config_of(svc, &d).await?;
    let present = group_of(&c, &g)?.contains_key(&o);
    if !present {
        return Err(KsError(Error::not_found_msg(format!(
            "Could not find option {o} in group {g}."
        ))));
    }
    if let Some(grp) = c.get_mut(&g).and_then(Value::as_object_mut) {
        grp.remove(&o);
    }
    doc_put(svc, DOMAIN_CONFIG, &d, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn config_default(st: State, caller: Caller) -> KsResult<Json<Value>> {
    admin(&st.0, &caller)?;
    Ok(Json(json!({"config": defaults()})))
}

pub async fn config_default_group(
    st: State,
    caller: Caller,
    Path(g): Path<String>,
) -> KsResult<Json<Value>> {
    admin(&st.0, &caller)?;
    let d = defaults();
    Ok(Json(json!({"config": {g.clone(): group_of(&d, &g)?}})))
}

pub async fn config_default_option(
    st: State,
    caller: Caller,
    Path((g, o)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    admin(&st.0, &caller)?;
    let d = defaults();
    let v = group_of(&d, &g)?
        .get(&o)
        .ok_or_else(|| Error::not_found_msg(format!("Could not find option {o} in group {g}.")))?;
    Ok(Json(json!({"config": {o: v}})))
}
