//! `/v3/credentials` and the EC2 self-service API
//! (`/v3/users/{id}/credentials/OS-EC2`). Blobs are stored encrypted with the
//! credential key repository, as Keystone does.
use super::{Caller, Query, State};
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
use serde_json::{Value, json};
use sha2::Digest;

const KNOWN: &[&str] = &["id", "user_id", "project_id", "type", "blob", "links"];

impl crate::IdentityService {
    pub fn encrypt_blob(&self, blob: &str) -> String {
        self.cred_keys.encrypt(blob.as_bytes())
    }
    pub fn decrypt_blob(&self, enc: &str) -> String {
        self.cred_keys
            .decrypt(enc)
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

fn view(svc: &crate::IdentityService, c: &credential::Model) -> Value {
    let mut v = json!({"id": c.id, "user_id": c.user_id, "project_id": c.project_id, "type": c.cred_type,
                       "blob": svc.decrypt_blob(&c.encrypted_blob),
                       "links": {"self": format!("{}/credentials/{}", svc.v3_url(), c.id)}});
    for (k, x) in json_map(&c.extra) {
        v[k] = x;
    }
    v
}

/// EC2 credentials get the id Keystone gives them: sha256 of the access key.
fn ec2_id(access: &str) -> String {
    let d = sha2::Sha256::digest(access.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

async fn get(svc: &crate::IdentityService, id: &str) -> Result<credential::Model, Error> {
    credential::Entity::find_by_id(id.to_string())
        .one(svc.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("credential", id))
}

fn target(user_id: &str) -> Value {
    json!({"target": {"credential": {"user_id": user_id}}})
}

pub async fn list(st: State, caller: Caller, q: Query) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let mut sel = credential::Entity::find();
    let as_admin = svc
        .policy
        .enforce("identity:list_credentials", &target(""), &caller.0.creds);
    if !as_admin {
        // Non-admins see their own credentials only.
        sel = sel.filter(credential::Column::UserId.eq(caller.0.user_id()));
    }
    if let Some(u) = q.0.get("user_id") {
        sel = sel.filter(credential::Column::UserId.eq(u.as_str()));
    }
    if let Some(t) = q.0.get("type") {
        sel = sel.filter(credential::Column::CredType.eq(t.as_str()));
    }
    let rows = sel.all(svc.conn()).await.map_err(db_err)?;
    let items: Vec<Value> = rows.iter().map(|c| view(svc, c)).collect();
    Ok(Json(crate::views::list(
        &svc.v3_url(),
        "credentials",
        "credentials",
        items,
        false,
    )))
}

pub async fn create(st: State, caller: Caller, body: Bytes) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "credential")?;
    let user_id = opt_id(m, "user_id")?
        .flatten()
        .ok_or_else(|| Error::validation("'user_id' is a required property"))?;
    caller.authorize(svc, "identity:create_credential", &target(&user_id))?;
    let ty = req_name(m, "type", 255)?;
    let blob = opt_str(m, "blob", 65_535, false)?
        .flatten()
        .ok_or_else(|| Error::validation("'blob' is a required property"))?;
    let project_id = opt_id(m, "project_id")?.flatten();
    svc.user_get(&user_id)
        .await
        .map_err(|_| Error::validation(format!("Could not find user: {user_id}.")))?;
    let id = if ty == "ec2" {
        let parsed: Value =
            serde_json::from_str(&blob).map_err(|_| invalid("blob", "EC2 blobs must be JSON."))?;
        let access = parsed
            .get("access")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("blob", "EC2 blobs need 'access'."))?;
        if project_id.is_none() {
            return Err(KsError(Error::validation(
                "EC2 credentials need a project_id.",
            )));
        }
        ec2_id(access)
    } else {
        ferro_common::new_hex_id()
    };
    let row = credential::Model {
        id,
        user_id,
        project_id,
        cred_type: ty,
        encrypted_blob: svc.encrypt_blob(&blob),
        extra: json_string(&extra_of(m, KNOWN)),
    };
    row.clone()
        .into_active_model()
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"credential": view(svc, &row)})),
    ))
}

pub async fn show(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let c = get(svc, &id).await;
    caller.authorize(
        svc,
        "identity:get_credential",
        &target(c.as_ref().map(|c| c.user_id.as_str()).unwrap_or("")),
    )?;
    Ok(Json(json!({"credential": view(svc, &c?)})))
}

pub async fn update(
    st: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    let c = get(svc, &id).await;
    caller.authorize(
        svc,
        "identity:update_credential",
        &target(c.as_ref().map(|c| c.user_id.as_str()).unwrap_or("")),
    )?;
    let c = c?;
    let body = parse_body(&body)?;
    let m = wrapped(&body, "credential")?;
    let mut am = c.clone().into_active_model();
    if let Some(b) = opt_str(m, "blob", 65_535, false)?.flatten() {
        am.encrypted_blob = Set(svc.encrypt_blob(&b));
    }
    if let Some(t) = opt_name(m, "type", 255)? {
        am.cred_type = Set(t);
    }
    if let Some(p) = opt_id(m, "project_id")? {
        am.project_id = Set(p);
    }
    if let Some(u) = opt_id(m, "user_id")?.flatten() {
        am.user_id = Set(u);
    }
    let mut extra = json_map(&c.extra);
    extra.extend(extra_of(m, KNOWN));
    am.extra = Set(json_string(&extra));
    let row = am.update(svc.conn()).await.map_err(db_err)?;
    Ok(Json(json!({"credential": view(svc, &row)})))
}

pub async fn remove(st: State, caller: Caller, Path(id): Path<String>) -> KsResult<StatusCode> {
    let svc = &st.0;
    let c = get(svc, &id).await;
    caller.authorize(
        svc,
        "identity:delete_credential",
        &target(c.as_ref().map(|c| c.user_id.as_str()).unwrap_or("")),
    )?;
    c?;
    credential::Entity::delete_by_id(id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- OS-EC2 -------------------------------------------------------------

fn ec2_view(svc: &crate::IdentityService, c: &credential::Model) -> Value {
    let blob: Value =
        serde_json::from_str(&svc.decrypt_blob(&c.encrypted_blob)).unwrap_or(Value::Null);
    json!({"user_id": c.user_id, "tenant_id": c.project_id, "access": blob.get("access"), "secret": blob.get("secret"),
           "trust_id": blob.get("trust_id"),
           "links": {"self": format!("{}/users/{}/credentials/OS-EC2/{}", svc.v3_url(), c.user_id,
                                     blob.get("access").and_then(Value::as_str).unwrap_or(""))}})
}

fn ec2_authorize(svc: &crate::IdentityService, caller: &Caller, uid: &str) -> Result<(), Error> {
    caller.authorize(svc, "identity:get_credential", &target(uid))
}

pub async fn ec2_list(st: State, caller: Caller, Path(uid): Path<String>) -> KsResult<Json<Value>> {
    let svc = &st.0;
    ec2_authorize(svc, &caller, &uid)?;
    svc.user_get(&uid).await?;
    let rows = credential::Entity::find()
        .filter(credential::Column::UserId.eq(uid.as_str()))
        .filter(credential::Column::CredType.eq("ec2"))
        .all(svc.conn())
        .await
        .map_err(db_err)?;
    let items: Vec<Value> = rows.iter().map(|c| ec2_view(svc, c)).collect();
    Ok(Json(crate::views::list(
        &svc.v3_url(),
        &format!("users/{uid}/credentials/OS-EC2"),
        "credentials",
        items,
        false,
    )))
}

pub async fn ec2_create(
    st: State,
    caller: Caller,
    Path(uid): Path<String>,
    body: Bytes,
) -> KsResult<(StatusCode, Json<Value>)> {
    let svc = &st.0;
    ec2_authorize(svc, &caller, &uid)?;
    let body = parse_body(&body)?;
    let tenant = body
        .get("tenant_id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::validation("'tenant_id' is a required property"))?;
    svc.user_get(&uid).await?;
    svc.project_get(tenant).await?;
    let access = ferro_common::new_hex_id();
    let secret = ferro_common::new_hex_id();
    let blob = json!({"access": access, "secret": secret, "trust_id": null}).to_string();
    let row = credential::Model {
        id: ec2_id(&access),
        user_id: uid,
        project_id: Some(tenant.to_string()),
        cred_type: "ec2".into(),
        encrypted_blob: svc.encrypt_blob(&blob),
        extra: "{}".into(),
    };
    row.clone()
        .into_active_model()
        .insert(svc.conn())
        .await
        .map_err(db_err)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"credential": ec2_view(svc, &row)})),
    ))
}

async fn ec2_get(
    svc: &crate::IdentityService,
    uid: &str,
    access: &str,
) -> Result<credential::Model, Error> {
    match get(svc, &ec2_id(access)).await {
        Ok(c) if c.user_id == uid && c.cred_type == "ec2" => Ok(c),
        _ => Err(Error::not_found("credential", access)),
    }
}

pub async fn ec2_show(
    st: State,
    caller: Caller,
    Path((uid, access)): Path<(String, String)>,
) -> KsResult<Json<Value>> {
    let svc = &st.0;
    ec2_authorize(svc, &caller, &uid)?;
    Ok(Json(
        json!({"credential": ec2_view(svc, &ec2_get(svc, &uid, &access).await?)}),
    ))
}

pub async fn ec2_delete(
    st: State,
    caller: Caller,
    Path((uid, access)): Path<(String, String)>,
) -> KsResult<StatusCode> {
    let svc = &st.0;
    ec2_authorize(svc, &caller, &uid)?;
    let c = ec2_get(svc, &uid, &access).await?;
    credential::Entity::delete_by_id(c.id)
        .exec(svc.conn())
        .await
        .map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}
