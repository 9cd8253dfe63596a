//! `/v3/roles` (global and domain-specific) and implied roles.
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
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde_json::{Value, json};

const KNOWN: &[&str] = &["id", "name", "domain_id", "description", "options", "links"];
const ROLE_OPTIONS: &[(&str, &str)] = &[("immutable", "bool")];

fn rule_name(r: &role::Model) -> &'static str {
    if r.domain_id == NULL_DOMAIN {
        "role"
    } else {
        "domain_role"
    }
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let domain = q.0.get("domain_id");
    caller.authorize(
        svc,
        if domain.is_some() {
            "identity:list_domain_roles"
        } else {
            "identity:list_roles"
        },
        &json!({}),
    )?;
    let mut sel = role::Entity::find().order_by_asc(role::Column::Name);
    sel = sel.filter(role::Column::DomainId.eq(domain.map(String::as_str).unwrap_or(NULL_DOMAIN)));
    if let Some(n) = q.0.get("name") {
        sel = sel.filter(role::Column::Name.eq(n.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let base = svc.v3_url();
    Ok(Json(views::list(
        &base,
        "roles",
        "roles",
        rows.iter().map(|r| views::role(&base, r)).collect(),
        false,
    )))
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "role")?;
    let domain_id = opt_id(m, "domain_id")?.flatten();
    caller.authorize(
        svc,
        if domain_id.is_some() {
            "identity:create_domain_role"
        } else {
            "identity:create_role"
        },
        &json!({"target": {"role": {"domain_id": domain_id}}}),
    )?;
    let name = req_name(m, "name", 255)?;
    if let Some(d) = &domain_id {
        svc.domain_get(d)
            .await
            .map_err(|_| Error::validation(format!("Could not find domain: {d}.")))?;
    }
    let options = validate_options(m, ROLE_OPTIONS)?
        .map(crate::util::without_nulls)
        .unwrap_or_default();
    let row = role::Model {
        id: ferro_common::new_hex_id(),
        name: name.clone(),
        domain_id: domain_id.unwrap_or_else(|| NULL_DOMAIN.into()),
        description: opt_str(m, "description", 255, true)?.flatten(),
        options: json_string(&options),
        extra: json_string(&extra_of(m, KNOWN)),
    };
    row.clone().into_active_model().insert(svc.conn()).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict(format!("Conflict occurred attempting to store role - Duplicate entry found with name {name}."))
        } else {
            db_err(e)
        }
    })?;
    svc.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(json!({"role": views::role(&svc.v3_url(), &row)})),
    ))
}

pub async fn show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let r = svc.role_get(&id).await;
    let rule = if r.as_ref().is_ok_and(|r| r.domain_id != NULL_DOMAIN) {
        "identity:get_domain_role"
    } else {
        "identity:get_role"
    };
    caller.authorize(svc, rule, &json!({}))?;
    Ok(Json(json!({"role": views::role(&svc.v3_url(), &r?)})))
}

fn immutable(r: &role::Model) -> bool {
    json_map(&r.options)
        .get("immutable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub async fn update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "role")?;
    let r = svc.role_get(&id).await?;
    caller.authorize(
        svc,
        &format!("identity:update_{}", rule_name(&r)),
        &json!({}),
    )?;
    if m.get("domain_id")
        .is_some_and(|d| d.as_str().unwrap_or(NULL_DOMAIN) != r.domain_id)
    {
        return Err(KsError(Error::validation(
            "Update of `domain_id` is not allowed.",
        )));
    }
    let opts = validate_options(m, ROLE_OPTIONS)?;
    if immutable(&r)
        && !opts
            .as_ref()
            .is_some_and(|o| o.get("immutable") == Some(&Value::Bool(false)))
    {
        return Err(KsError(Error::forbidden(format!(
            "Role {id} is immutable."
        ))));
    }
    let mut am = r.clone().into_active_model();
    if let Some(n) = opt_name(m, "name", 255)? {
        am.name = Set(n);
    }
    if let Some(d) = opt_str(m, "description", 255, true)? {
        am.description = Set(d);
    }
    if let Some(o) = opts {
        am.options = Set(merge_json(&r.options, o));
    }
    let mut extra = json_map(&r.extra);
    extra.extend(extra_of(m, KNOWN));
    am.extra = Set(json_string(&extra));
    let row = am.update(svc.conn()).await.map_err(|e| {
        if ferro_db::is_unique_violation(&e) {
            Error::conflict("Conflict occurred attempting to store role - Duplicate entry.")
        } else {
            db_err(e)
        }
    })?;
    svc.invalidate();
    Ok(Json(json!({"role": views::role(&svc.v3_url(), &row)})))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    let r = svc.role_get(&id).await?;
    caller.authorize(
        svc,
        &format!("identity:delete_{}", rule_name(&r)),
        &json!({}),
    )?;
    if immutable(&r) {
        return Err(KsError(Error::forbidden(format!(
            "Role {id} is immutable."
        ))));
    }
    let txn = svc.conn().begin().await.map_err(db_err)?;
    assignment::Entity::delete_many()
        .filter(assignment::Column::RoleId.eq(id.as_str()))
        .exec(&txn)
        .await
        .map_err(db_err)?;
    implied_role::Entity::delete_many()
        .filter(
            Condition::any()
                .add(implied_role::Column::PriorRoleId.eq(id.as_str()))
                .add(implied_role::Column::ImpliedRoleId.eq(id.as_str())),
        )
        .exec(&txn)
        .await
        .map_err(db_err)?;
    role::Entity::delete_by_id(id.clone())
        .exec(&txn)
        .await
        .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    svc.revoke(RevEvent {
        role_id: Some(id),
        ..Default::default()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn brief(base: &str, r: &role::Model) -> Value {
    json!({"id": r.id, "name": r.name, "links": views::link(base, &format!("roles/{}", r.id))})
}

async fn pair(
    svc: &crate::IdentityService,
    p: &str,
    i: &str,
) -> Result<(role::Model, role::Model, bool), Error> {
    let prior = svc.role_get(p).await?;
    let implied = svc.role_get(i).await?;
    let exists = implied_role::Entity::find_by_id((p.to_string(), i.to_string()))
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .is_some();
    Ok((prior, implied, exists))
}

pub async fn implies_create(
    st: State,
    caller: Caller,
    Path((p, i)): Path<(String, String)>,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    caller.authorize(svc, "identity:create_implied_role", &json!({}))?;
    let (prior, implied, exists) = pair(svc, &p, &i).await?;
    if prior.domain_id == NULL_DOMAIN && implied.domain_id != NULL_DOMAIN {
        return Err(KsError(Error::forbidden(
            "A global role cannot imply a domain-specific role.",
        )));
    }
    if p == i {
        return Err(KsError(Error::validation("A role cannot imply itself.")));
    }
    // Refuse cycles: `implied` must not (transitively) imply `prior`.
    let reach = svc
        .expand_implied([i.clone()].into_iter().collect())
        .await?;
    if reach.contains(&p) {
        return Err(KsError(Error::forbidden(
            "Implied role rules cannot form a cycle.",
        )));
    }
    if !exists {
        implied_role::ActiveModel {
            prior_role_id: Set(p.clone()),
            implied_role_id: Set(i.clone()),
        }
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
        svc.invalidate();
    }
    let base = svc.v3_url();
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"role_inference": {"prior_role": brief(&base, &prior), "implies": brief(&base, &implied)},
                    "links": {"self": format!("{base}/roles/{p}/implies/{i}")}}),
        ),
    ))
}

pub async fn implies_show(
    st: State,
    caller: Caller,
    Path((p, i)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:get_implied_role", &json!({}))?;
    let (prior, implied, exists) = pair(svc, &p, &i).await?;
    if !exists {
        return Err(KsError(Error::not_found_msg(format!(
            "{p} does not imply {i}."
        ))));
    }
    let base = svc.v3_url();
    Ok(Json(
        json!({"role_inference": {"prior_role": brief(&base, &prior), "implies": brief(&base, &implied)},
                   "links": {"self": format!("{base}/roles/{p}/implies/{i}")}}),
    ))
}

pub async fn implies_check(
    st: State,
    caller: Caller,
    Path((p, i)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:check_implied_role", &json!({}))?;
    match pair(svc, &p, &i).await? {
        (_, _, true) => Ok(StatusCode::NO_CONTENT),
        _ => Err(KsError(Error::not_found_msg(format!(
            "{p} does not imply {i}."
        )))),
    }
}

pub async fn implies_delete(
    st: State,
    caller: Caller,
    Path((p, i)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    caller.authorize(svc, "identity:delete_implied_role", &json!({}))?;
    match pair(svc, &p, &i).await? {
        (_, _, true) => {
            implied_role::Entity::delete_by_id((p, i))
                .exec(svc.conn())
                .await
                .map_err(db_err)?;
            svc.invalidate();
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(KsError(Error::not_found_msg(format!(
            "{p} does not imply {i}."
        )))),
    }
}

pub async fn implies_list(
    st: State,
    caller: Caller,
    Path(p): Path<String>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_implied_roles", &json!({}))?;
    let prior = svc.role_get(&p).await?;
    let rules = implied_role::Entity::find()
        .filter(implied_role::Column::PriorRoleId.eq(p.as_str()))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let base = svc.v3_url();
    let mut implies = Vec::new();
    for r in rules {
        if let Ok(role) = svc.role_get(&r.implied_role_id).await {
            implies.push(brief(&base, &role));
        }
    }
    Ok(Json(
        json!({"role_inference": {"prior_role": brief(&base, &prior), "implies": implies},
                   "links": {"self": format!("{base}/roles/{p}/implies")}}),
    ))
}

pub async fn inferences(st: State, caller: Caller) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_role_inference_rules", &json!({}))?;
    let rules = implied_role::Entity::find()
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let roles = role::Entity::find().all(svc.conn()).await.map_err(db_err)?;
    let by_id = |id: &str| roles.iter().find(|r| r.id == id);
    let base = svc.v3_url();
    let mut grouped: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for r in &rules {
        if let Some(i) = by_id(&r.implied_role_id) {
            grouped
                .entry(r.prior_role_id.clone())
                .or_default()
                .push(brief(&base, i));
        }
    }
    let items: Vec<Value> = grouped
        .into_iter()
        .filter_map(|(p, implies)| {
            by_id(&p).map(|prior| json!({"prior_role": brief(&base, prior), "implies": implies}))
        })
        .collect();
    Ok(Json(
        json!({"role_inferences": items, "links": {"self": format!("{base}/role_inferences"), "previous": null, "next": null}}),
    ))
}
