//! Identity (Keystone) tables. Domains are projects with `is_domain = true`
//! and `domain_id = ROOT_DOMAIN`, as in Keystone, so one unique key
//! (domain_id, name) covers both. Global roles use `domain_id = NULL_DOMAIN`.
#![allow(clippy::derive_partial_eq_without_eq)]

/// `domain_id` of rows that are domains (Keystone's value).
pub const ROOT_DOMAIN: &str = "<<keystone.domain.root>>";
/// `domain_id` of global roles (Keystone's value), so the unique key works.
pub const NULL_DOMAIN: &str = "<<null>>";

macro_rules! entity_boilerplate {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod project {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_project")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique_key = "domain_name")]
        pub name: String,
        #[sea_orm(unique_key = "domain_name", indexed)]
        pub domain_id: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        pub enabled: bool,
        #[sea_orm(nullable, indexed)]
        pub parent_id: Option<String>,
        pub is_domain: bool,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
        #[sea_orm(column_type = "Text")]
        pub options: String,
    }
    entity_boilerplate!();
}

pub mod project_tag {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_project_tag")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
    }
    entity_boilerplate!();
}

pub mod user {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_user")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique_key = "domain_name", indexed)]
        pub domain_id: String,
        #[sea_orm(unique_key = "domain_name")]
        pub name: String,
        pub enabled: bool,
        #[sea_orm(nullable)]
        pub password_hash: Option<String>,
        #[sea_orm(nullable)]
        pub password_created_at: Option<i64>,
        #[sea_orm(nullable)]
        pub password_expires_at: Option<i64>,
        #[sea_orm(nullable)]
        pub default_project_id: Option<String>,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
        #[sea_orm(column_type = "Text")]
        pub options: String,
        pub created_at: i64,
        #[sea_orm(nullable)]
        pub last_active_at: Option<i64>,
        /// Consecutive failed password authentications (lockout), since M0002.
        #[sea_orm(default_value = 0)]
        pub failed_auth_count: i64,
        #[sea_orm(nullable)]
        pub failed_auth_at: Option<i64>,
    }
    entity_boilerplate!();
}

pub mod password_history {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_password_history")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(indexed)]
        pub user_id: String,
        pub password_hash: String,
        pub created_at: i64,
    }
    entity_boilerplate!();
}

pub mod group {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_group")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique_key = "domain_name", indexed)]
        pub domain_id: String,
        #[sea_orm(unique_key = "domain_name")]
        pub name: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
    }
    entity_boilerplate!();
}

pub mod user_group {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_user_group")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false, indexed)]
        pub group_id: String,
    }
    entity_boilerplate!();
}

pub mod role {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_role")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique_key = "domain_name")]
        pub name: String,
        #[sea_orm(unique_key = "domain_name")]
        pub domain_id: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        #[sea_orm(column_type = "Text")]
        pub options: String,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
    }
    entity_boilerplate!();
}

pub mod implied_role {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_implied_role")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub prior_role_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub implied_role_id: String,
    }
    entity_boilerplate!();
}

/// A role grant. `kind` is Keystone's type: UserProject, GroupProject,
/// UserDomain, GroupDomain, UserSystem, GroupSystem; system grants use
/// `target_id = "system"`.
pub mod assignment {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_assignment")]
    pub struct Model {
        #[sea_orm(
            primary_key,
            auto_increment = false,
            column_type = "String(StringLen::N(16))"
        )]
        pub kind: String,
        #[sea_orm(
            primary_key,
            auto_increment = false,
            indexed,
            column_type = "String(StringLen::N(64))"
        )]
        pub actor_id: String,
        #[sea_orm(
            primary_key,
            auto_increment = false,
            indexed,
            column_type = "String(StringLen::N(64))"
        )]
        pub target_id: String,
        #[sea_orm(
            primary_key,
            auto_increment = false,
            indexed,
            column_type = "String(StringLen::N(64))"
        )]
        pub role_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub inherited: bool,
    }
    entity_boilerplate!();
}

pub mod service {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_service")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_name = "type")]
        pub service_type: String,
        pub enabled: bool,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
    }
    entity_boilerplate!();
}

pub mod endpoint {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_endpoint")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(indexed)]
        pub service_id: String,
        pub interface: String,
        #[sea_orm(column_type = "Text")]
        pub url: String,
        #[sea_orm(nullable)]
        pub region_id: Option<String>,
        pub enabled: bool,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
    }
    entity_boilerplate!();
}

pub mod region {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_region")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        #[sea_orm(nullable)]
        pub parent_region_id: Option<String>,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
    }
    entity_boilerplate!();
}

pub mod credential {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_credential")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(indexed)]
        pub user_id: String,
        #[sea_orm(nullable)]
        pub project_id: Option<String>,
        #[sea_orm(column_name = "type")]
        pub cred_type: String,
        /// Fernet-encrypted with the credential key (Keystone's credential keys).
        #[sea_orm(column_type = "Text")]
        pub encrypted_blob: String,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
    }
    entity_boilerplate!();
}

pub mod app_cred {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_application_credential")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique_key = "user_name")]
        pub name: String,
        pub secret_hash: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        #[sea_orm(unique_key = "user_name", indexed)]
        pub user_id: String,
        #[sea_orm(nullable)]
        pub project_id: Option<String>,
        #[sea_orm(nullable)]
        pub system: Option<String>,
        #[sea_orm(nullable)]
        pub expires_at: Option<i64>,
        pub unrestricted: bool,
        /// JSON list of `{"id", "name", "domain_id"}`.
        #[sea_orm(column_type = "Text")]
        pub roles: String,
        /// JSON list of access rules.
        #[sea_orm(column_type = "Text")]
        pub access_rules: String,
        pub created_at: i64,
    }
    entity_boilerplate!();
}

pub mod registered_limit {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_registered_limit")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub service_id: String,
        #[sea_orm(nullable)]
        pub region_id: Option<String>,
        pub resource_name: String,
        pub default_limit: i64,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
    }
    entity_boilerplate!();
}

pub mod limit {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_limit")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(nullable)]
        pub project_id: Option<String>,
        #[sea_orm(nullable)]
        pub domain_id: Option<String>,
        pub service_id: String,
        #[sea_orm(nullable)]
        pub region_id: Option<String>,
        pub resource_name: String,
        pub resource_limit: i64,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
    }
    entity_boilerplate!();
}

/// Keystone's revocation events: a token matching every non-null field,
/// issued at or before `issued_before`, is revoked.
pub mod revocation_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_revocation_event")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(nullable)]
        pub domain_id: Option<String>,
        #[sea_orm(nullable)]
        pub project_id: Option<String>,
        #[sea_orm(nullable)]
        pub user_id: Option<String>,
        #[sea_orm(nullable)]
        pub role_id: Option<String>,
        #[sea_orm(nullable)]
        pub trust_id: Option<String>,
        #[sea_orm(nullable)]
        pub consumer_id: Option<String>,
        #[sea_orm(nullable)]
        pub access_token_id: Option<String>,
        pub issued_before: i64,
        #[sea_orm(nullable)]
        pub expires_at: Option<i64>,
        #[sea_orm(indexed)]
        pub revoked_at: i64,
        #[sea_orm(nullable)]
        pub audit_id: Option<String>,
        #[sea_orm(nullable)]
        pub audit_chain_id: Option<String>,
    }
    entity_boilerplate!();
}

pub mod trust {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_trust")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(indexed)]
        pub trustor_user_id: String,
        #[sea_orm(indexed)]
        pub trustee_user_id: String,
        #[sea_orm(nullable)]
        pub project_id: Option<String>,
        pub impersonation: bool,
        #[sea_orm(nullable)]
        pub expires_at: Option<i64>,
        #[sea_orm(nullable)]
        pub remaining_uses: Option<i64>,
        /// JSON list of role ids.
        #[sea_orm(column_type = "Text")]
        pub roles: String,
        #[sea_orm(nullable)]
        pub redelegated_trust_id: Option<String>,
        #[sea_orm(nullable)]
        pub redelegation_count: Option<i64>,
        pub deleted: bool,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
    }
    entity_boilerplate!();
}

pub mod policy {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_policy")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_name = "type")]
        pub policy_type: String,
        #[sea_orm(column_type = "Text")]
        pub blob: String,
        #[sea_orm(column_type = "Text")]
        pub extra: String,
    }
    entity_boilerplate!();
}

pub mod access_rule {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_access_rule")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(indexed)]
        pub user_id: String,
        pub service: String,
        #[sea_orm(column_type = "Text")]
        pub path: String,
        pub method: String,
    }
    entity_boilerplate!();
}

/// Small documents without their own columns: OAuth1 consumers, endpoint
/// groups, domain configs (`kind` says which; `body` is the JSON).
pub mod document {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_document")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
    }
    entity_boilerplate!();
}
