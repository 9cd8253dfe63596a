//! Who is calling: the validated token, turned into a [`RequestContext`] that
//! every service's handlers receive and policy checks read.

use crate::policy::Policy;
use crate::token::TokenPayload;
use ferro_common::Error;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DomainRef {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UserRef {
    pub id: String,
    pub name: String,
    pub domain: DomainRef,
    #[serde(skip)]
    pub password_expires_at: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProjectRef {
    pub id: String,
    pub name: String,
    pub domain: DomainRef,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct TrustRef {
    pub id: String,
    pub trustor_user_id: String,
    pub trustee_user_id: String,
    pub impersonation: bool,
}

/// A token that decrypted, is unexpired and unrevoked, and whose user, scope
/// and roles were resolved against identity data.
#[derive(Clone, Debug)]
pub struct ValidatedToken {
    pub payload: TokenPayload,
    pub user: UserRef,
    pub project: Option<ProjectRef>,
    pub domain: Option<DomainRef>,
    pub system: bool,
    pub roles: Vec<RoleRef>,
    pub is_admin_project: bool,
    pub app_cred_id: Option<String>,
    pub trust: Option<TrustRef>,
    /// `policy_creds()`, computed once per validated token.
    pub creds_cache: std::sync::OnceLock<Arc<Value>>,
    /// The rendered token body (with, without catalog), computed once: a
    /// validated token is immutable for the identity generation it was built in.
    pub body_cache: [std::sync::OnceLock<bytes::Bytes>; 2],
}

impl ValidatedToken {
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// The credentials dict oslo.policy checks read (keystone's
    /// `_build_policy_check_credentials` + token attributes).
    pub fn policy_creds(&self) -> Value {
        let roles: Vec<&str> = self.roles.iter().map(|r| r.name.as_str()).collect();
        let mut c = json!({
            "user_id": self.user.id,
            "user_domain_id": self.user.domain.id,
            "roles": roles,
            "is_admin": false,
            "is_admin_project": self.is_admin_project,
            "system_scope": if self.system { Value::from("all") } else { Value::Null },
            "project_id": self.project.as_ref().map(|p| p.id.clone()),
            "project_domain_id": self.project.as_ref().map(|p| p.domain.id.clone()),
            "domain_id": self.domain.as_ref().map(|d| d.id.clone()),
            "token": {
                "user_id": self.user.id,
                "is_admin_project": self.is_admin_project,
                "user": {"id": self.user.id, "domain": {"id": self.user.domain.id}},
                "domain": {"id": self.domain.as_ref().map(|d| d.id.clone())},
                "project": {
                    "id": self.project.as_ref().map(|p| p.id.clone()),
                    "domain": {"id": self.project.as_ref().map(|p| p.domain.id.clone())},
                },
                "system": {"all": self.system},
            },
        });
        if let Some(t) = &self.trust {
            c["trust_id"] = json!(t.id);
            c["trustor_id"] = json!(t.trustor_user_id);
            c["trustee_id"] = json!(t.trustee_user_id);
        }
        if let Some(a) = &self.app_cred_id {
            c["application_credential_id"] = json!(a);
        }
        c
    }
}

/// Validates tokens for any service; implemented by the identity service
/// (in-process Fernet + revocation cache, no database on the hot path).
#[async_trait::async_trait]
pub trait TokenValidator: Send + Sync {
    async fn validate(
        &self,
        token: &str,
        allow_expired: bool,
    ) -> Result<Arc<ValidatedToken>, Error>;
    /// A short-lived token for `who`, so that background work a user
    /// started (a build, a volume from an image) can call other services
    /// for that user after the request ended: what Nova does with a
    /// service token on the user's behalf. Such tokens are minted when a
    /// step needs one and never stored; the user's roles are checked again
    /// when the token is validated.
    async fn token_for(&self, who: &Acting) -> Result<String, Error> {
        Err(Error::internal(format!(
            "no token issuer to act for user {}",
            who.user_id
        )))
    }
}

/// Who a background step acts for: what a workflow keeps (in place of the
/// user's token) to reach other services later as that user.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Acting {
    pub user_id: String,
    /// The project the request was scoped to (None: system or domain scope).
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub system: bool,
}

impl Acting {
    pub fn of(token: &ValidatedToken) -> Acting {
        Acting {
            user_id: token.user.id.clone(),
            project_id: token.project.as_ref().map(|p| p.id.clone()),
            system: token.system,
        }
    }
}

/// What a request handler knows about its caller.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub token: Arc<ValidatedToken>,
    pub auth_token: String,
    pub creds: Arc<Value>,
}

impl RequestContext {
    pub fn new(token: Arc<ValidatedToken>, auth_token: String) -> Self {
        let creds = token
            .creds_cache
            .get_or_init(|| Arc::new(token.policy_creds()))
            .clone();
        RequestContext {
            token,
            auth_token,
            creds,
        }
    }
    pub fn user_id(&self) -> &str {
        &self.token.user.id
    }
    pub fn project_id(&self) -> Option<&str> {
        self.token.project.as_ref().map(|p| p.id.as_str())
    }
    pub fn is_admin(&self) -> bool {
        self.token.has_role("admin")
    }
    pub fn is_system(&self) -> bool {
        self.token.system
    }

    /// Enforces `rule` against `target`; 403 with oslo's message when denied.
    pub fn authorize(&self, policy: &Policy, rule: &str, target: &Value) -> Result<(), Error> {
        if policy.enforce(rule, target, &self.creds) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "You are not authorized to perform the requested action: {rule}."
            )))
        }
    }
}

/// Why a request carries no usable project-scoped caller.
#[derive(Debug)]
pub enum CallerError {
    /// No token, or one that does not validate (401).
    Unauthenticated,
    /// A valid token without a project, held by a non-admin (403).
    ProjectScopeRequired,
    /// The validator itself failed (500).
    Internal(Error),
}

/// The caller of a project-scoped service (Neutron, Cinder): the request's
/// `X-Auth-Token` validated, whether it holds `admin`, and its project (an
/// admin's unscoped or system token acts for no project: `""`).
pub async fn project_caller(
    validator: &dyn TokenValidator,
    headers: &http::HeaderMap,
) -> Result<(RequestContext, bool, String), CallerError> {
    let tok = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .ok_or(CallerError::Unauthenticated)?;
    let vt = validator.validate(tok, false).await.map_err(|e| match e {
        Error::Internal { .. } => CallerError::Internal(e),
        _ => CallerError::Unauthenticated,
    })?;
    let admin = vt.has_role("admin");
    let project = vt
        .project
        .as_ref()
        .map(|p| p.id.clone())
        .or_else(|| admin.then(String::new))
        .ok_or(CallerError::ProjectScopeRequired)?;
    Ok((RequestContext::new(vt, tok.to_string()), admin, project))
}
