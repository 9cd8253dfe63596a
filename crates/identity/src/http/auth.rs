//! `/v3/auth/*`: token issue (password, token, application_credential),
//! validate/check/revoke, and the auth catalog/projects/domains/system.
use super::{Caller, Query, State};
use crate::error::{KsError, KsResult};
use crate::tokens::{AuthResult, RequestedScope, RevEvent, auth_failed, verify_secret};
use crate::util::{parse_body, query_bool};
use crate::views;
use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferro_common::Error;
use ferro_db::db_err;
use ferro_db::entity::identity::*;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Map, Value, json};

pub async fn version(st: State) -> Json<Value> {
    Json(json!({"version": crate::http::auth::version_doc(&st.0.base_url)}))
}

pub fn version_doc(base: &str) -> Value {
    json!({
        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

fn obj<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, Error> {
    v.as_object()
        .ok_or_else(|| crate::util::invalid_type(field, "object"))
}

fn str_field<'a>(m: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Error> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 255 => Ok(Some(s)),
        Some(Value::String(_)) => Err(crate::util::invalid(field, "is too long")),
        Some(_) => Err(crate::util::invalid_type(field, "string")),
    }
}

/// `{"id"}` or `{"name"}` of a domain reference, resolved to an id.
async fn domain_id_of(
    svc: &crate::IdentityService,
    d: &Value,
    unauth: bool,
) -> Result<String, Error> {
    let m = obj(d, "domain")?;
    let fail = |e: Error| if unauth { auth_failed() } else { e };
    if let Some(id) = str_field(m, "id")? {
        let dom = svc.domain_get(id).await.map_err(fail)?;
        if unauth && !dom.enabled {
            return Err(auth_failed());
        }
        return Ok(dom.id);
    }
    if let Some(name) = str_field(m, "name")? {
        let dom = svc.domain_by_name(name).await.map_err(fail)?;
        if unauth && !dom.enabled {
            return Err(auth_failed());
        }
        return Ok(dom.id);
    }
    Err(Error::validation("Expecting to find id or name in domain."))
}

async fn user_of(
    svc: &crate::IdentityService,
    u: &Map<String, Value>,
) -> Result<user::Model, Error> {
    if let Some(id) = str_field(u, "id")? {
        return svc.user_get(id).await.map_err(|_| auth_failed());
    }
    let name = str_field(u, "name")?
        .ok_or_else(|| Error::validation("Expecting to find id or name in user."))?;
    let dom = u
        .get("domain")
        .ok_or_else(|| Error::validation("Expecting to find domain in user."))?;
    let did = domain_id_of(svc, dom, true).await?;
    svc.user_by_name(&did, name)
        .await
        .map_err(|_| auth_failed())
}

async fn check_user_enabled(svc: &crate::IdentityService, u: &user::Model) -> Result<(), Error> {
    let d = svc
        .domain_get(&u.domain_id)
        .await
        .map_err(|_| auth_failed())?;
    if !u.enabled || !d.enabled {
        return Err(auth_failed());
    }
    Ok(())
}

async fn authenticate(
    svc: &crate::IdentityService,
    identity: &Map<String, Value>,
) -> Result<AuthResult, Error> {
    let methods: Vec<String> = match identity.get("methods") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|m| {
                m.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| crate::util::invalid_type("methods", "string"))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => {
            return Err(Error::validation(
                "Invalid input for field 'identity/methods': [] is too short",
            ));
        }
        Some(_) => return Err(crate::util::invalid_type("methods", "array")),
        None => return Err(Error::validation("'methods' is a required property")),
    };
    for m in &methods {
        if !["password", "token", "application_credential"].contains(&m.as_str()) {
            return Err(auth_failed());
        }
        if !identity.contains_key(m) {
            return Err(Error::validation(format!(
                "Expecting to find {m} in identity."
            )));
        }
    }
    if methods.iter().any(|m| m == "password") {
        let pw = obj(&identity["password"], "password")?;
        let u = pw
            .get("user")
            .ok_or_else(|| Error::validation("Expecting to find user in password."))?;
        let u = obj(u, "user")?;
        let secret = match u.get("password") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => return Err(auth_failed()),
            Some(_) => return Err(crate::util::invalid_type("password", "string")),
        };
        let user = user_of(svc, u).await?;
        svc.check_lockout(&user)?;
        let hash = user.password_hash.clone().ok_or_else(auth_failed)?;
        if secret.len() > svc.cfg.identity.max_password_length || !verify_secret(secret, hash).await
        {
            svc.record_auth_failure(&user).await?;
            return Err(auth_failed());
        }
        check_user_enabled(svc, &user).await?;
        svc.record_auth_success(&user).await?;
        if user
            .password_expires_at
            .is_some_and(|t| t <= ferro_db::now_micros())
        {
            return Err(Error::unauthorized(format!(
                "The password is expired and needs to be changed for user: {}.",
                user.id
            )));
        }
        return Ok(AuthResult {
            user_id: user.id.clone(),
            default_project_id: user.default_project_id.clone(),
            methods,
            expires_at: None,
            audit_parent: None,
            app_cred: None,
            from_token: None,
        });
    }
    if methods.iter().any(|m| m == "application_credential") {
        let ac = obj(
            &identity["application_credential"],
            "application_credential",
        )?;
        let secret = str_field(ac, "secret")?
            .ok_or_else(auth_failed)?
            .to_string();
        let cred = if let Some(id) = str_field(ac, "id")? {
            app_cred::Entity::find_by_id(id.to_string())
                .one(svc.conn())
                .await
                .map_err(db_err)?
        } else {
            let name = str_field(ac, "name")?.ok_or_else(|| {
                Error::validation("Expecting to find id or name in application_credential.")
            })?;
            let u = ac.get("user").ok_or_else(|| {
                Error::validation("Expecting to find user in application_credential.")
            })?;
            let user = user_of(svc, obj(u, "user")?).await?;
            app_cred::Entity::find()
                .filter(app_cred::Column::UserId.eq(user.id))
                .filter(app_cred::Column::Name.eq(name))
                .one(svc.conn())
                .await
                .map_err(db_err)?
        }
        .ok_or_else(auth_failed)?;
        if cred.expires_at.is_some_and(|t| t <= ferro_db::now_micros())
            || !verify_secret(secret, cred.secret_hash.clone()).await
        {
            return Err(auth_failed());
        }
        let user = svc
            .user_get(&cred.user_id)
            .await
            .map_err(|_| auth_failed())?;
        check_user_enabled(svc, &user).await?;
        return Ok(AuthResult {
            user_id: user.id.clone(),
            default_project_id: user.default_project_id.clone(),
            methods,
            expires_at: None,
            audit_parent: None,
            app_cred: Some(cred),
            from_token: None,
        });
    }
    // token method: re-scope an existing token.
    let t = obj(&identity["token"], "token")?;
    let id =
        str_field(t, "id")?.ok_or_else(|| Error::validation("Expecting to find id in token."))?;
    let vt = svc.validate_token(id, false).await.map_err(|e| match e {
        Error::Internal { .. } => e,
        _ => Error::not_found_msg(format!("Could not find token: {id}.")),
    })?;
    if vt.app_cred_id.is_some() || vt.trust.is_some() {
        return Err(Error::forbidden(
            "Tokens from application credentials or trusts cannot be rescoped.",
        ));
    }
    let mut all = vt.payload.methods.clone();
    for m in methods {
        if !all.contains(&m) {
            all.push(m);
        }
    }
    Ok(AuthResult {
        user_id: vt.user.id.clone(),
        default_project_id: None,
        methods: all,
        expires_at: Some(vt.payload.expires_at),
        audit_parent: vt.payload.audit_ids.last().cloned(),
        app_cred: None,
        from_token: Some(vt),
    })
}

async fn requested_scope(
    svc: &crate::IdentityService,
    auth: &Map<String, Value>,
) -> Result<RequestedScope, Error> {
    let Some(scope) = auth.get("scope") else {
        return Ok(RequestedScope::None);
    };
    if scope.as_str() == Some("unscoped") {
        return Ok(RequestedScope::Unscoped);
    }
    let s = obj(scope, "scope")?;
    let present = ["project", "domain", "system", "OS-TRUST:trust"]
        .iter()
        .filter(|k| s.contains_key(**k))
        .count();
    if present > 1 {
        return Err(Error::validation(
            "Only one of project, domain, system or trust may be specified as scope.",
        ));
    }
    if let Some(p) = s.get("project") {
        let p = obj(p, "project")?;
        if let Some(id) = str_field(p, "id")? {
            return Ok(RequestedScope::Project(id.to_string()));
        }
        let name = str_field(p, "name")?
            .ok_or_else(|| Error::validation("Expecting to find id or name in project."))?;
        let d = p
            .get("domain")
            .ok_or_else(|| Error::validation("Expecting to find domain in project."))?;
        let did = domain_id_of(svc, d, true).await?;
        let proj = svc
            .project_by_name(&did, name)
            .await
            .map_err(|_| Error::unauthorized(format!("Could not find project: {name}.")))?;
        return Ok(RequestedScope::Project(proj.id));
    }
    if let Some(d) = s.get("domain") {
        return Ok(RequestedScope::Domain(domain_id_of(svc, d, true).await?));
    }
    if let Some(sys) = s.get("system") {
        let all = sys.get("all").and_then(Value::as_bool).unwrap_or(false);
        if !all {
            return Err(Error::validation(
                "Invalid input for field 'scope/system': only 'all' is supported.",
            ));
        }
        return Ok(RequestedScope::System);
    }
    if let Some(t) = s.get("OS-TRUST:trust") {
        let id = str_field(obj(t, "OS-TRUST:trust")?, "id")?
            .ok_or_else(|| Error::validation("Expecting to find id in trust."))?;
        return Ok(RequestedScope::Trust(id.to_string()));
    }
    Err(Error::validation("Invalid scope."))
}

fn subject_response(token: &str, status: StatusCode, body: Option<bytes::Bytes>) -> Response {
    let mut resp = match body {
        Some(b) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            b,
        )
            .into_response(),
        None => status.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    resp
}

pub async fn token_issue(st: State, q: Query, body: Bytes) -> KsResult<Response> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let auth = crate::util::wrapped(&body, "auth")?;
    let identity = auth
        .get("identity")
        .ok_or_else(|| Error::validation("'identity' is a required property"))?;
    let identity = obj(identity, "identity")?;
    let scope = requested_scope(svc, auth).await?;
    let result = authenticate(svc, identity).await?;
    // A scoped token re-scoped without a new scope keeps its scope.
    let scope = match (scope, &result.from_token) {
        (RequestedScope::None, Some(vt)) => match (&vt.project, &vt.domain, vt.system) {
            (Some(p), _, _) => RequestedScope::Project(p.id.clone()),
            (_, Some(d), _) => RequestedScope::Domain(d.id.clone()),
            (_, _, true) => RequestedScope::System,
            _ => RequestedScope::Unscoped,
        },
        (s, _) => s,
    };
    let (token, vt) = svc.issue_token(result, scope).await?;
    let nocatalog = q.0.contains_key("nocatalog");
    let body = svc.render_token_bytes(&vt, !nocatalog).await?;
    Ok(subject_response(&token, StatusCode::CREATED, Some(body)))
}

fn subject_of(headers: &HeaderMap) -> Result<String, Error> {
    headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::validation("X-Subject-Token is required."))
}

async fn validate_subject(
    svc: &crate::IdentityService,
    caller: &Caller,
    headers: &HeaderMap,
    q: &Query,
) -> Result<(String, std::sync::Arc<ferro_auth::ValidatedToken>), Error> {
    let subject = subject_of(headers)?;
    let allow_expired = q.0.get("allow_expired").is_some_and(|v| query_bool(v));
    let vt = svc.validate_token(&subject, allow_expired).await?;
    let target =
        json!({"target": {"token": {"user_id": vt.user.id}}, "target.token.user_id": vt.user.id});
    caller.authorize(svc, "identity:validate_token", &target)?;
    Ok((subject, vt))
}

pub async fn token_validate(
    st: State,
    caller: Caller,
    headers: HeaderMap,
    q: Query,
) -> KsResult<Response> {
    let (subject, vt) = validate_subject(&st.0, &caller, &headers, &q).await?;
    let body =
        st.0.render_token_bytes(&vt, !q.0.contains_key("nocatalog"))
            .await?;
    Ok(subject_response(&subject, StatusCode::OK, Some(body)))
}

pub async fn token_check(
    st: State,
    caller: Caller,
    headers: HeaderMap,
    q: Query,
) -> KsResult<Response> {
    let (subject, _) = validate_subject(&st.0, &caller, &headers, &q).await?;
    Ok(subject_response(&subject, StatusCode::OK, None))
}

pub async fn token_revoke(st: State, caller: Caller, headers: HeaderMap) -> KsResult<StatusCode> {
    let svc = &st.0;
    let subject = subject_of(&headers)?;
    let vt = svc.validate_token(&subject, false).await?;
    let target = json!({"target": {"token": {"user_id": vt.user.id}}});
    caller.authorize(svc, "identity:revoke_token", &target)?;
    svc.revoke(RevEvent {
        audit_id: vt.payload.audit_ids.first().cloned(),
        ..Default::default()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn auth_catalog(st: State, caller: Caller) -> KsResult<Json<Value>> {
    let t = &caller.0.token;
    if t.project.is_none() && t.domain.is_none() && !t.system {
        return Err(KsError(Error::forbidden(
            "A scoped token is required to get a catalog.",
        )));
    }
    let cat =
        st.0.catalog_for(t.project.as_ref().map(|p| p.id.as_str()))
            .await?;
    Ok(Json(
        json!({"catalog": *cat, "links": {"self": format!("{}/auth/catalog", st.0.v3_url()), "previous": null, "next": null}}),
    ))
}

/// Projects the caller's user has a role on (directly, via groups or inheritance).
pub async fn auth_projects(st: State, caller: Caller) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let projects = crate::http::users::projects_of_user(svc, caller.0.user_id()).await?;
    let base = svc.v3_url();
    let items = projects
        .iter()
        .filter(|p| p.enabled)
        .map(|p| views::project(&base, p, &[]))
        .collect();
    Ok(Json(views::list(
        &base,
        "auth/projects",
        "projects",
        items,
        false,
    )))
}

pub async fn auth_domains(st: State, caller: Caller) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let uid = caller.0.user_id().to_string();
    let mut actors = vec![uid.clone()];
    actors.extend(svc.user_group_ids(&uid).await?);
    let rows = assignment::Entity::find()
        .filter(assignment::Column::ActorId.is_in(actors))
        .filter(assignment::Column::Kind.is_in(["UserDomain", "GroupDomain"]))
        .filter(assignment::Column::Inherited.eq(false))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let mut ids: Vec<String> = rows.into_iter().map(|a| a.target_id).collect();
    ids.sort();
    ids.dedup();
    let base = svc.v3_url();
    let mut items = Vec::new();
    for id in ids {
        if let Ok(d) = svc.domain_get(&id).await
            && d.enabled
        {
            items.push(views::domain(&base, &d, &[]));
        }
    }
    Ok(Json(views::list(
        &base,
        "auth/domains",
        "domains",
        items,
        false,
    )))
}

pub async fn auth_system(st: State, caller: Caller) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let roles = svc.system_role_ids(caller.0.user_id()).await?;
    let system: Vec<Value> = if roles.is_empty() {
        vec![]
    } else {
        vec![json!({"all": true})]
    };
    Ok(Json(
        json!({"system": system, "links": {"self": format!("{}/auth/system", svc.v3_url()), "previous": null, "next": null}}),
    ))
}

/// `GET /v3/OS-REVOKE/events[?since=...]`: the revocation events in force.
pub async fn revoke_events(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    caller.authorize(svc, "identity:list_revoke_events", &json!({}))?;
    let since = match q.0.get("since") {
        Some(s) => Some(
            ferro_common::time::parse_time(s)
                .ok_or_else(|| {
                    Error::validation("Invalid since: it must be an ISO 8601 timestamp.")
                })?
                .timestamp_micros(),
        ),
        None => None,
    };
    let mut sel = revocation_event::Entity::find();
    if let Some(t) = since {
        sel = sel.filter(revocation_event::Column::RevokedAt.gte(t));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let t = |us: i64| ferro_common::time::keystone_token_time(&ferro_db::micros_to_time(us));
    let events: Vec<Value> = rows
        .iter()
        .map(|e| {
            let mut v = json!({"issued_before": t(e.issued_before), "revoked_at": t(e.revoked_at)});
            for (k, val) in [
                ("user_id", &e.user_id),
                ("project_id", &e.project_id),
                ("domain_id", &e.domain_id),
                ("role_id", &e.role_id),
                ("OS-TRUST:trust_id", &e.trust_id),
                ("audit_id", &e.audit_id),
                ("audit_chain_id", &e.audit_chain_id),
            ] {
                if let Some(x) = val {
                    v[k] = json!(x);
                }
            }
            v
        })
        .collect();
    Ok(Json(
        json!({"events": events, "links": {"self": format!("{}/OS-REVOKE/events", svc.v3_url()), "previous": null, "next": null}}),
    ))
}
