//! Who asks: the authenticated, project-scoped caller of a Compute request,
//! the microversion it negotiated, and the policy questions the service
//! layer asks about it. Handlers build one from the request
//! (`http::request`); the service layer decides with it.
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use ferro_auth::RequestContext;
use serde_json::json;

/// The negotiated microversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mv(pub u16, pub u16);

impl Mv {
    pub fn at_least(&self, minor: u16) -> bool {
        self.1 >= minor
    }
}

/// The authenticated, project-scoped caller and the negotiated version.
pub struct Caller {
    pub ctx: RequestContext,
    pub mv: Mv,
    pub request_id: String,
}

impl Caller {
    pub fn project(&self) -> String {
        self.ctx.project_id().unwrap_or_default().to_string()
    }
    pub fn user(&self) -> String {
        self.ctx.token.user.id.clone()
    }
    pub fn token(&self) -> &str {
        &self.ctx.auth_token
    }
    /// Whom background work started by this request acts for.
    pub fn acting(&self) -> ferro_auth::Acting {
        ferro_auth::Acting::of(&self.ctx.token)
    }
    pub fn is_admin(&self, svc: &ComputeService) -> bool {
        svc.policy
            .enforce("context_is_admin", &json!({}), &self.ctx.creds)
    }
    /// Admin-only APIs.
    pub fn require_admin(&self, svc: &ComputeService, rule: &str) -> NResult<()> {
        if self.is_admin(svc) {
            Ok(())
        } else {
            Err(NovaError::forbidden(format!(
                "Policy doesn't allow {rule} to be performed."
            )))
        }
    }
    /// A member of `project` (or an admin) may change its resources.
    pub fn require_member(&self, svc: &ComputeService, project: &str, rule: &str) -> NResult<()> {
        if svc.policy.enforce(
            "project_member_or_admin",
            &json!({"project_id": project}),
            &self.ctx.creds,
        ) {
            Ok(())
        } else {
            Err(NovaError::forbidden(format!(
                "Policy doesn't allow {rule} to be performed."
            )))
        }
    }
}
