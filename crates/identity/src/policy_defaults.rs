//! Keystone's default policy rules (keystone/common/policies/*.py, the
//! secure-RBAC defaults: admin is admin everywhere, readers read, domain
//! readers read their domain, users see themselves).

const ADMIN_OR_SYSTEM_READER: &str = "rule:admin_required or (role:reader and system_scope:all)";

pub fn defaults() -> Vec<(&'static str, String)> {
    let asr = ADMIN_OR_SYSTEM_READER;
    let admin = "rule:admin_required".to_string();
    let mut v: Vec<(&'static str, String)> = vec![
        ("admin_required", "role:admin or is_admin:1".into()),
        ("service_role", "role:service".into()),
        ("service_or_admin", "rule:admin_required or rule:service_role".into()),
        ("owner", "user_id:%(user_id)s".into()),
        ("admin_or_owner", "rule:admin_required or rule:owner".into()),
        ("token_subject", "user_id:%(target.token.user_id)s".into()),
        ("admin_or_token_subject", "rule:admin_required or rule:token_subject".into()),
        ("service_admin_or_token_subject", "rule:service_or_admin or rule:token_subject".into()),
        ("default", admin.clone()),
        // tokens
        ("identity:validate_token", format!("rule:service_admin_or_token_subject or ({asr})")),
        ("identity:check_token", format!("rule:admin_or_token_subject or ({asr})")),
        ("identity:revoke_token", "rule:admin_or_token_subject".into()),
        ("identity:list_revoke_events", "rule:service_or_admin".into()),
        // domains
        (
            "identity:get_domain",
            format!("{asr} or token.domain.id:%(target.domain.id)s or token.project.domain.id:%(target.domain.id)s"),
        ),
        ("identity:list_domains", asr.into()),
        // projects
        (
            "identity:get_project",
            format!("{asr} or (role:reader and domain_id:%(target.project.domain_id)s) or project_id:%(target.project.id)s"),
        ),
        ("identity:list_projects", format!("{asr} or (role:reader and domain_id:%(target.domain_id)s)")),
        (
            "identity:list_user_projects",
            format!("{asr} or (role:reader and domain_id:%(target.user.domain_id)s) or user_id:%(target.user.id)s"),
        ),
        (
            "identity:get_project_tag",
            format!("{asr} or (role:reader and domain_id:%(target.project.domain_id)s) or project_id:%(target.project.id)s"),
        ),
        (
            "identity:list_project_tags",
            format!("{asr} or (role:reader and domain_id:%(target.project.domain_id)s) or project_id:%(target.project.id)s"),
        ),
        // users
        (
            "identity:get_user",
            format!("{asr} or (role:reader and token.domain.id:%(target.user.domain_id)s) or user_id:%(target.user.id)s"),
        ),
        ("identity:list_users", format!("{asr} or (role:reader and domain_id:%(target.domain_id)s)")),
        (
            "identity:list_groups_for_user",
            format!("{asr} or (role:reader and domain_id:%(target.user.domain_id)s) or user_id:%(user_id)s"),
        ),
        // groups
        ("identity:get_group", format!("{asr} or (role:reader and domain_id:%(target.group.domain_id)s)")),
        ("identity:list_groups", format!("{asr} or (role:reader and domain_id:%(target.group.domain_id)s)")),
        ("identity:list_users_in_group", format!("{asr} or (role:reader and domain_id:%(target.group.domain_id)s)")),
        ("identity:check_user_in_group", format!("{asr} or (role:reader and domain_id:%(target.group.domain_id)s)")),
        // roles
        ("identity:get_role", asr.into()),
        ("identity:list_roles", asr.into()),
        ("identity:get_domain_role", asr.into()),
        ("identity:list_domain_roles", asr.into()),
        ("identity:list_implied_roles", asr.into()),
        ("identity:get_implied_role", asr.into()),
        ("identity:check_implied_role", asr.into()),
        ("identity:list_role_inference_rules", asr.into()),
        ("identity:list_role_assignments", format!("{asr} or (role:reader and domain_id:%(target.domain_id)s)")),
        ("identity:list_grants", asr.into()),
        ("identity:check_grant", asr.into()),
        ("identity:list_system_grants", asr.into()),
        ("identity:check_system_grant", asr.into()),
        // catalog
        ("identity:get_service", asr.into()),
        ("identity:list_services", asr.into()),
        ("identity:get_endpoint", asr.into()),
        ("identity:list_endpoints", asr.into()),
        ("identity:get_region", "".into()),
        ("identity:list_regions", "".into()),
        // credentials
        ("identity:get_credential", format!("{asr} or user_id:%(target.credential.user_id)s")),
        ("identity:list_credentials", format!("{asr} or user_id:%(target.credential.user_id)s")),
        ("identity:create_credential", "rule:admin_required or user_id:%(target.credential.user_id)s".into()),
        ("identity:update_credential", "rule:admin_required or user_id:%(target.credential.user_id)s".into()),
        ("identity:delete_credential", "rule:admin_required or user_id:%(target.credential.user_id)s".into()),
        // application credentials and access rules
        ("identity:get_application_credential", format!("{asr} or rule:owner")),
        ("identity:list_application_credentials", format!("{asr} or rule:owner")),
        ("identity:create_application_credential", "user_id:%(user_id)s".into()),
        ("identity:delete_application_credential", "rule:admin_required or rule:owner".into()),
        ("identity:get_access_rule", format!("{asr} or user_id:%(target.user.id)s")),
        ("identity:list_access_rules", format!("{asr} or user_id:%(target.user.id)s")),
        ("identity:delete_access_rule", "rule:admin_required or user_id:%(target.user.id)s".into()),
        // limits
        ("identity:get_registered_limit", "".into()),
        ("identity:list_registered_limits", "".into()),
        ("identity:get_limit_model", "".into()),
        (
            "identity:get_limit",
            format!("{asr} or project_id:%(target.limit.project_id)s or domain_id:%(target.limit.domain_id)s"),
        ),
        ("identity:list_limits", "".into()),
        // policies
        ("identity:get_policy", asr.into()),
        ("identity:list_policies", asr.into()),
        // trusts
        ("identity:create_trust", "user_id:%(trust.trustor_user_id)s".into()),
        ("identity:list_trusts", asr.into()),
        ("identity:list_trusts_for_trustor", format!("{asr} or user_id:%(target.trust.trustor_user_id)s")),
        ("identity:list_trusts_for_trustee", format!("{asr} or user_id:%(target.trust.trustee_user_id)s")),
        (
            "identity:get_trust",
            format!("{asr} or user_id:%(target.trust.trustor_user_id)s or user_id:%(target.trust.trustee_user_id)s"),
        ),
        ("identity:delete_trust", "rule:admin_required or user_id:%(target.trust.trustor_user_id)s".into()),
        ("identity:list_roles_for_trust", "rule:admin_required or user_id:%(target.trust.trustor_user_id)s or user_id:%(target.trust.trustee_user_id)s".into()),
        ("identity:get_role_for_trust", "rule:admin_required or user_id:%(target.trust.trustor_user_id)s or user_id:%(target.trust.trustee_user_id)s".into()),
    ];
    // Everything that changes identity data: admin only.
    for name in [
        "identity:create_domain",
        "identity:update_domain",
        "identity:delete_domain",
        "identity:create_project",
        "identity:update_project",
        "identity:delete_project",
        "identity:update_project_tags",
        "identity:create_project_tag",
        "identity:delete_project_tags",
        "identity:delete_project_tag",
        "identity:create_user",
        "identity:update_user",
        "identity:delete_user",
        "identity:create_group",
        "identity:update_group",
        "identity:delete_group",
        "identity:add_user_to_group",
        "identity:remove_user_from_group",
        "identity:create_role",
        "identity:update_role",
        "identity:delete_role",
        "identity:create_domain_role",
        "identity:update_domain_role",
        "identity:delete_domain_role",
        "identity:create_implied_role",
        "identity:delete_implied_role",
        "identity:create_grant",
        "identity:revoke_grant",
        "identity:create_system_grant",
        "identity:revoke_system_grant",
        "identity:create_service",
        "identity:update_service",
        "identity:delete_service",
        "identity:create_endpoint",
        "identity:update_endpoint",
        "identity:delete_endpoint",
        "identity:create_region",
        "identity:update_region",
        "identity:delete_region",
        "identity:create_registered_limits",
        "identity:update_registered_limit",
        "identity:delete_registered_limit",
        "identity:create_limits",
        "identity:update_limit",
        "identity:delete_limit",
        "identity:create_policy",
        "identity:update_policy",
        "identity:delete_policy",
    ] {
        v.push((name, admin.clone()));
    }
    v
}

/// The policy engine loaded with these defaults.
pub fn policy() -> Result<ferro_auth::Policy, ferro_auth::policy::ParseError> {
    let d = defaults();
    ferro_auth::Policy::from_defaults(d.iter().map(|(k, v)| (*k, v.as_str())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_parse() {
        super::policy().unwrap();
    }
}
