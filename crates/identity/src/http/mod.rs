//! Identity v3 routes. Handlers parse and render; `IdentityService` decides.

pub mod app_creds;
pub mod assignments;
pub mod auth;
pub mod catalog;
pub mod credentials;
pub mod domains;
pub mod ep_filter;
pub mod extensions;
pub mod groups;
pub mod limits;
pub mod policies;
pub mod projects;
pub mod roles;
pub mod trusts;
pub mod users;

use crate::IdentityService;
use crate::error::KsError;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post};
use ferro_auth::RequestContext;
use ferro_common::Error;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub type State = axum::extract::State<Arc<IdentityService>>;
pub type Query = axum::extract::Query<HashMap<String, String>>;

/// The authenticated caller (from `X-Auth-Token`); 401 when missing/invalid.
pub struct Caller(pub RequestContext);

impl FromRequestParts<Arc<IdentityService>> for Caller {
    type Rejection = KsError;
    async fn from_request_parts(
        parts: &mut Parts,
        svc: &Arc<IdentityService>,
    ) -> Result<Self, KsError> {
        let tok = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| KsError(crate::tokens::auth_failed()))?;
        let vt = svc.validate_token(tok, false).await.map_err(|e| match e {
            Error::Internal { .. } | Error::Unavailable { .. } => KsError(e),
            _ => KsError(crate::tokens::auth_failed()),
        })?;
        Ok(Caller(RequestContext::new(vt, tok.to_string())))
    }
}

impl Caller {
    pub fn authorize(
        &self,
        svc: &IdentityService,
        rule: &str,
        target: &Value,
    ) -> Result<(), Error> {
        self.0.authorize(&svc.policy, rule, target)
    }
}

pub fn router() -> Router<Arc<IdentityService>> {
    use axum::routing::put;
    let r = Router::new()
        .route("/v3", get(auth::version))
        .route("/v3/", get(auth::version))
        .route(
            "/v3/auth/tokens",
            post(auth::token_issue)
                .get(auth::token_validate)
                .head(auth::token_check)
                .delete(auth::token_revoke),
        )
        .route("/v3/auth/catalog", get(auth::auth_catalog))
        .route("/v3/auth/projects", get(auth::auth_projects))
        .route("/v3/auth/domains", get(auth::auth_domains))
        .route("/v3/auth/system", get(auth::auth_system))
        .route("/v3/domains", get(domains::list).post(domains::create))
        .route(
            "/v3/domains/{id}",
            get(domains::show)
                .patch(domains::update)
                .delete(domains::remove),
        )
        .route("/v3/projects", get(projects::list).post(projects::create))
        .route(
            "/v3/projects/{id}",
            get(projects::show)
                .patch(projects::update)
                .delete(projects::remove),
        )
        .route(
            "/v3/projects/{id}/tags",
            get(projects::tags_list)
                .put(projects::tags_replace)
                .delete(projects::tags_clear),
        )
        .route(
            "/v3/projects/{id}/tags/{tag}",
            get(projects::tag_check)
                .head(projects::tag_check)
                .put(projects::tag_add)
                .delete(projects::tag_remove),
        )
        .route("/v3/users", get(users::list).post(users::create))
        .route(
            "/v3/users/{id}",
            get(users::show).patch(users::update).delete(users::remove),
        )
        .route("/v3/users/{id}/password", post(users::change_password))
        .route("/v3/users/{id}/groups", get(users::groups))
        .route("/v3/users/{id}/projects", get(users::projects))
        .route("/v3/groups", get(groups::list).post(groups::create))
        .route(
            "/v3/groups/{id}",
            get(groups::show)
                .patch(groups::update)
                .delete(groups::remove),
        )
        .route("/v3/groups/{id}/users", get(groups::users))
        .route(
            "/v3/groups/{id}/users/{uid}",
            put(groups::add_user)
                .head(groups::check_user)
                .get(groups::check_user)
                .delete(groups::remove_user),
        )
        .route("/v3/roles", get(roles::list).post(roles::create))
        .route(
            "/v3/roles/{id}",
            get(roles::show).patch(roles::update).delete(roles::remove),
        )
        .route("/v3/roles/{id}/implies", get(roles::implies_list))
        .route(
            "/v3/roles/{id}/implies/{implied}",
            put(roles::implies_create)
                .get(roles::implies_show)
                .head(roles::implies_check)
                .delete(roles::implies_delete),
        )
        .route("/v3/role_inferences", get(roles::inferences))
        .route("/v3/OS-REVOKE/events", get(auth::revoke_events))
        .route("/v3/role_assignments", get(assignments::list))
        .route(
            "/v3/system/{actor}/{aid}/roles",
            get(assignments::system_list),
        )
        .route(
            "/v3/system/{actor}/{aid}/roles/{rid}",
            put(assignments::system_grant_route)
                .get(assignments::system_check)
                .head(assignments::system_check)
                .delete(assignments::system_revoke),
        )
        .route(
            "/v3/OS-INHERIT/{target}/{tid}/{actor}/{aid}/roles/inherited_to_projects",
            get(assignments::inherited_list),
        )
        .route(
            "/v3/OS-INHERIT/{target}/{tid}/{actor}/{aid}/roles/{rid}/inherited_to_projects",
            put(assignments::inherited_grant_route)
                .get(assignments::inherited_check)
                .head(assignments::inherited_check)
                .delete(assignments::inherited_revoke),
        )
        .route(
            "/v3/services",
            get(catalog::service_list).post(catalog::service_create),
        )
        .route(
            "/v3/services/{id}",
            get(catalog::service_show)
                .patch(catalog::service_update)
                .delete(catalog::service_delete),
        )
        .route(
            "/v3/endpoints",
            get(catalog::endpoint_list).post(catalog::endpoint_create),
        )
        .route(
            "/v3/endpoints/{id}",
            get(catalog::endpoint_show)
                .patch(catalog::endpoint_update)
                .delete(catalog::endpoint_delete),
        )
        .route(
            "/v3/regions",
            get(catalog::region_list).post(catalog::region_create),
        )
        .route(
            "/v3/regions/{id}",
            get(catalog::region_show)
                .patch(catalog::region_update)
                .delete(catalog::region_delete)
                .put(catalog::region_put),
        )
        .route(
            "/v3/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/v3/credentials/{id}",
            get(credentials::show)
                .patch(credentials::update)
                .delete(credentials::remove),
        )
        .route(
            "/v3/users/{id}/application_credentials",
            get(app_creds::list).post(app_creds::create),
        )
        .route(
            "/v3/users/{id}/application_credentials/{cid}",
            get(app_creds::show).delete(app_creds::remove),
        )
        .route(
            "/v3/users/{id}/access_rules",
            get(app_creds::access_rules_list),
        )
        .route(
            "/v3/users/{id}/access_rules/{rid}",
            get(app_creds::access_rule_show).delete(app_creds::access_rule_delete),
        )
        .route(
            "/v3/registered_limits",
            get(limits::registered_list).post(limits::registered_create),
        )
        .route(
            "/v3/registered_limits/{id}",
            get(limits::registered_show)
                .patch(limits::registered_update)
                .delete(limits::registered_delete),
        )
        .route("/v3/limits", get(limits::list).post(limits::create))
        .route("/v3/limits/model", get(limits::model))
        .route(
            "/v3/limits/{id}",
            get(limits::show)
                .patch(limits::update)
                .delete(limits::remove),
        )
        .route("/v3/policies", get(policies::list).post(policies::create))
        .route(
            "/v3/policies/{id}",
            get(policies::show)
                .patch(policies::update)
                .delete(policies::remove),
        )
        .route(
            "/v3/OS-TRUST/trusts",
            get(trusts::list).post(trusts::create),
        )
        .route(
            "/v3/OS-TRUST/trusts/{id}",
            get(trusts::show).delete(trusts::remove),
        )
        .route("/v3/OS-TRUST/trusts/{id}/roles", get(trusts::roles))
        .route(
            "/v3/OS-TRUST/trusts/{id}/roles/{rid}",
            get(trusts::role_check).head(trusts::role_check),
        )
        .route(
            "/v3/OS-TRUST/trusts/",
            get(trusts::list).post(trusts::create),
        )
        .route(
            "/v3/users/{id}/credentials/OS-EC2",
            get(credentials::ec2_list).post(credentials::ec2_create),
        )
        .route(
            "/v3/users/{id}/credentials/OS-EC2/{access}",
            get(credentials::ec2_show).delete(credentials::ec2_delete),
        )
        .route(
            "/v3/OS-OAUTH1/consumers",
            get(extensions::consumer_list).post(extensions::consumer_create),
        )
        .route(
            "/v3/OS-OAUTH1/consumers/{id}",
            get(extensions::consumer_show)
                .patch(extensions::consumer_update)
                .delete(extensions::consumer_delete),
        )
        .route(
            "/v3/OS-EP-FILTER/endpoint_groups",
            get(ep_filter::epg_list).post(ep_filter::epg_create),
        )
        .route(
            "/v3/OS-EP-FILTER/endpoint_groups/{id}",
            get(ep_filter::epg_show)
                .head(ep_filter::epg_check)
                .patch(ep_filter::epg_update)
                .delete(ep_filter::epg_delete),
        )
        .route(
            "/v3/OS-EP-FILTER/endpoint_groups/{id}/projects",
            get(ep_filter::group_projects_list),
        )
        .route(
            "/v3/OS-EP-FILTER/endpoint_groups/{id}/endpoints",
            get(ep_filter::group_endpoints_list),
        )
        .route(
            "/v3/OS-EP-FILTER/endpoint_groups/{id}/projects/{project_id}",
            get(ep_filter::group_project_show)
                .put(ep_filter::group_project_add)
                .delete(ep_filter::group_project_remove),
        )
        .route(
            "/v3/OS-EP-FILTER/projects/{project_id}/endpoints",
            get(ep_filter::project_endpoints_list),
        )
        .route(
            "/v3/OS-EP-FILTER/projects/{project_id}/endpoints/{endpoint_id}",
            get(ep_filter::project_endpoint_check)
                .put(ep_filter::project_endpoint_add)
                .delete(ep_filter::project_endpoint_remove),
        )
        .route(
            "/v3/OS-EP-FILTER/projects/{project_id}/endpoint_groups",
            get(ep_filter::project_groups_list),
        )
        .route(
            "/v3/OS-EP-FILTER/endpoints/{endpoint_id}/projects",
            get(ep_filter::endpoint_projects_list),
        )
        .route(
            "/v3/domains/{id}/config",
            get(extensions::config_get)
                .put(extensions::config_put)
                .patch(extensions::config_patch)
                .delete(extensions::config_delete),
        )
        .route(
            "/v3/domains/{id}/config/{group}",
            get(extensions::config_group_get)
                .patch(extensions::config_group_patch)
                .delete(extensions::config_group_delete),
        )
        .route(
            "/v3/domains/{id}/config/{group}/{option}",
            get(extensions::config_option_get)
                .patch(extensions::config_option_patch)
                .delete(extensions::config_option_delete),
        )
        .route(
            "/v3/domains/config/default",
            get(extensions::config_default),
        )
        .route(
            "/v3/domains/config/{group}/default",
            get(extensions::config_default_group),
        )
        .route(
            "/v3/domains/config/{group}/{option}/default",
            get(extensions::config_default_option),
        );
    assignments::grant_routes(r)
}
