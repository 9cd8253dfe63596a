//! keystone-manage bootstrap's job, idempotent: default domain, roles with
//! implications, admin and service projects, the admin user and its grants,
//! the region and the catalog entries of every service this binary serves.
//! Also writes `clouds.yaml`, `openrc` and `admin-password`.

use crate::IdentityService;
use crate::resolve::SYSTEM_TARGET;
use crate::tokens::hash_secret;
use base64::Engine;
use ferro_common::Error;
use ferro_db::entity::identity::*;
use ferro_db::{db_err, now_micros};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use std::path::{Path, PathBuf};

/// A service in the catalog: `(type, name, path under the public URL)`.
pub type CatalogEntry = (&'static str, &'static str, &'static str);

pub struct BootstrapReport {
    /// `~/.config/openstack/clouds.yaml` when it was written too.
    pub user_clouds_yaml: Option<PathBuf>,
    pub admin_password_file: PathBuf,
    pub clouds_yaml: PathBuf,
    pub openrc: PathBuf,
}

/// Reads or creates the admin password: explicit > stored file > generated.
pub fn admin_password(data_dir: &Path, explicit: Option<&str>) -> Result<(String, bool), Error> {
    let file = data_dir.join("admin-password");
    if let Some(p) = explicit.filter(|p| !p.is_empty()) {
        write_private(&file, p)?;
        return Ok((p.to_string(), true));
    }
    if let Ok(p) = std::fs::read_to_string(&file)
        && !p.trim().is_empty()
    {
        return Ok((p.trim().to_string(), false));
    }
    let bytes: [u8; 18] = rand::random();
    let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&file, &p)?;
    Ok((p, true))
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    let mut f = opts
        .open(path)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

impl IdentityService {
    async fn ensure_project(
        &self,
        id: Option<&str>,
        name: &str,
        domain_id: &str,
        is_domain: bool,
        desc: &str,
    ) -> Result<String, Error> {
        let existing = project::Entity::find()
            .filter(project::Column::DomainId.eq(domain_id))
            .filter(project::Column::Name.eq(name))
            .one(self.conn())
            .await
            .map_err(db_err)?;
        if let Some(p) = existing {
            return Ok(p.id);
        }
        let id = id
            .map(str::to_string)
            .unwrap_or_else(ferro_common::new_hex_id);
        project::Model {
            id: id.clone(),
            name: name.into(),
            domain_id: domain_id.into(),
            description: Some(desc.into()),
            enabled: true,
            parent_id: if is_domain {
                None
            } else {
                Some(domain_id.into())
            },
            is_domain,
            extra: "{}".into(),
            options: "{}".into(),
        }
        .into_active_model()
        .insert(self.conn())
        .await
        .map_err(db_err)?;
        Ok(id)
    }

    async fn ensure_role(&self, name: &str) -> Result<String, Error> {
        let existing = role::Entity::find()
            .filter(role::Column::Name.eq(name))
            .filter(role::Column::DomainId.eq(NULL_DOMAIN))
            .one(self.conn())
            .await
            .map_err(db_err)?;
        if let Some(r) = existing {
            return Ok(r.id);
        }
        let id = ferro_common::new_hex_id();
        role::Model {
            id: id.clone(),
            name: name.into(),
            domain_id: NULL_DOMAIN.into(),
            description: None,
            options: r#"{"immutable": true}"#.into(),
            extra: "{}".into(),
        }
        .into_active_model()
        .insert(self.conn())
        .await
        .map_err(db_err)?;
        Ok(id)
    }

    async fn ensure_implied(&self, prior: &str, implied: &str) -> Result<(), Error> {
        if implied_role::Entity::find_by_id((prior.to_string(), implied.to_string()))
            .one(self.conn())
            .await
            .map_err(db_err)?
            .is_none()
        {
            implied_role::ActiveModel {
                prior_role_id: Set(prior.into()),
                implied_role_id: Set(implied.into()),
            }
            .insert(self.conn())
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn ensure_grant(
        &self,
        kind: &str,
        actor: &str,
        target: &str,
        role_id: &str,
    ) -> Result<(), Error> {
        let key = (
            kind.to_string(),
            actor.to_string(),
            target.to_string(),
            role_id.to_string(),
            false,
        );
        if assignment::Entity::find_by_id(key)
            .one(self.conn())
            .await
            .map_err(db_err)?
            .is_none()
        {
            assignment::ActiveModel {
                kind: Set(kind.into()),
                actor_id: Set(actor.into()),
                target_id: Set(target.into()),
                role_id: Set(role_id.into()),
                inherited: Set(false),
            }
            .insert(self.conn())
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn ensure_catalog_entry(
        &self,
        ty: &str,
        name: &str,
        url: &str,
        region_id: &str,
    ) -> Result<(), Error> {
        let svc = service::Entity::find()
            .filter(service::Column::ServiceType.eq(ty))
            .one(self.conn())
            .await
            .map_err(db_err)?;
        let service_id = match svc {
            Some(s) => s.id,
            None => {
                let id = ferro_common::new_hex_id();
                service::Model {
                    id: id.clone(),
                    service_type: ty.into(),
                    enabled: true,
                    extra: serde_json::json!({"name": name, "description": format!("ferrostack {name}")}).to_string(),
                }
                .into_active_model()
                .insert(self.conn())
                .await
                .map_err(db_err)?;
                id
            }
        };
        for iface in ["public", "internal", "admin"] {
            let ep = endpoint::Entity::find()
                .filter(endpoint::Column::ServiceId.eq(service_id.as_str()))
                .filter(endpoint::Column::Interface.eq(iface))
                .one(self.conn())
                .await
                .map_err(db_err)?;
            match ep {
                Some(e) if e.url == url => {}
                Some(e) => {
                    // The listener moved: keep the catalog pointing at it.
                    let mut am = e.into_active_model();
                    am.url = Set(url.into());
                    am.update(self.conn()).await.map_err(db_err)?;
                }
                None => {
                    endpoint::Model {
                        id: ferro_common::new_hex_id(),
                        service_id: service_id.clone(),
                        interface: iface.into(),
                        url: url.into(),
                        region_id: Some(region_id.into()),
                        enabled: true,
                        extra: "{}".into(),
                    }
                    .into_active_model()
                    .insert(self.conn())
                    .await
                    .map_err(db_err)?;
                }
            }
        }
        Ok(())
    }

    /// Creates or repairs everything a fresh cloud needs. `reset_password`
    /// sets the admin password even when the user exists.
    pub async fn bootstrap(
        &self,
        admin_password: &str,
        reset_password: bool,
        catalog: &[CatalogEntry],
    ) -> Result<(), Error> {
        let root = ROOT_DOMAIN;
        self.ensure_project(Some("default"), "Default", root, true, "The default domain")
            .await?;
        let admin_role = self.ensure_role("admin").await?;
        let member = self.ensure_role("member").await?;
        let reader = self.ensure_role("reader").await?;
        // Keystone 2024.2+ bootstraps `manager` between admin and member
        // (project managers: Nova's migration and host policies use it).
        let manager = self.ensure_role("manager").await?;
        self.ensure_role("service").await?;
        self.ensure_implied(&admin_role, &manager).await?;
        self.ensure_implied(&manager, &member).await?;
        self.ensure_implied(&admin_role, &member).await?;
        self.ensure_implied(&member, &reader).await?;
        let admin_project = self
            .ensure_project(
                None,
                "admin",
                "default",
                false,
                "Bootstrap project for initializing the cloud.",
            )
            .await?;
        self.ensure_project(
            None,
            "service",
            "default",
            false,
            "Project for service users.",
        )
        .await?;
        let existing = user::Entity::find()
            .filter(user::Column::DomainId.eq("default"))
            .filter(user::Column::Name.eq("admin"))
            .one(self.conn())
            .await
            .map_err(db_err)?;
        let rounds = self.cfg.identity.password_hash_rounds;
        let admin_id = match existing {
            Some(u) => {
                if reset_password {
                    let mut am = u.clone().into_active_model();
                    am.password_hash = Set(Some(hash_secret(admin_password.into(), rounds).await?));
                    am.password_created_at = Set(Some(now_micros()));
                    am.enabled = Set(true);
                    am.update(self.conn()).await.map_err(db_err)?;
                }
                u.id
            }
            None => {
                let id = ferro_common::new_hex_id();
                user::Model {
                    id: id.clone(),
                    domain_id: "default".into(),
                    name: "admin".into(),
                    enabled: true,
                    password_hash: Some(hash_secret(admin_password.into(), rounds).await?),
                    password_created_at: Some(now_micros()),
                    password_expires_at: None,
                    default_project_id: None,
                    extra: "{}".into(),
                    options: "{}".into(),
                    created_at: now_micros(),
                    last_active_at: None,
                    failed_auth_count: 0,
                    failed_auth_at: None,
                }
                .into_active_model()
                .insert(self.conn())
                .await
                .map_err(db_err)?;
                id
            }
        };
        self.ensure_grant("UserProject", &admin_id, &admin_project, &admin_role)
            .await?;
        self.ensure_grant("UserSystem", &admin_id, SYSTEM_TARGET, &admin_role)
            .await?;
        self.ensure_grant("UserDomain", &admin_id, "default", &admin_role)
            .await?;
        let region = self.cfg.identity.region.clone();
        if region::Entity::find_by_id(region.clone())
            .one(self.conn())
            .await
            .map_err(db_err)?
            .is_none()
        {
            region::Model {
                id: region.clone(),
                description: Some(String::new()),
                parent_region_id: None,
                extra: "{}".into(),
            }
            .into_active_model()
            .insert(self.conn())
            .await
            .map_err(db_err)?;
        }
        let public = self.cfg.public_url();
        for (ty, name, path) in catalog {
            self.ensure_catalog_entry(ty, name, &format!("{public}{path}"), &region)
                .await?;
        }
        self.invalidate();
        Ok(())
    }

    /// Writes `clouds.yaml` (cloud `ferrostack`) and `openrc` for the admin.
    pub fn write_client_files(
        &self,
        data_dir: &Path,
        password: &str,
    ) -> Result<BootstrapReport, Error> {
        let auth_url = format!("{}/v3", self.base_url);
        let region = &self.cfg.identity.region;
        let clouds = format!(
            "# Written by ferrostack; rewritten at every start.\nclouds:\n  ferrostack:\n    auth:\n      auth_url: {auth_url}\n      username: admin\n      password: \"{password}\"\n      project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: {region}\n    interface: public\n    identity_api_version: 3\n  ferrostack-system:\n    auth:\n      auth_url: {auth_url}\n      username: admin\n      password: \"{password}\"\n      system_scope: all\n      user_domain_name: Default\n    region_name: {region}\n    interface: public\n    identity_api_version: 3\n"
        );
        let openrc = format!(
            "# ferrostack admin credentials: source this file\nexport OS_AUTH_URL={auth_url}\nexport OS_AUTH_TYPE=password\nexport OS_USERNAME=admin\nexport OS_PASSWORD='{password}'\nexport OS_PROJECT_NAME=admin\nexport OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\nexport OS_IDENTITY_API_VERSION=3\nexport OS_REGION_NAME={region}\nexport OS_INTERFACE=public\n"
        );
        let clouds_yaml = data_dir.join("clouds.yaml");
        let openrc_path = data_dir.join("openrc");
        write_private(&clouds_yaml, &clouds)?;
        write_private(&openrc_path, &openrc)?;
        let mut user_clouds_yaml = None;
        if self.cfg.writes_user_clouds_yaml()
            && let Some(home) = std::env::var_os("HOME")
        {
            let dir = PathBuf::from(home).join(".config/openstack");
            let user_file = dir.join("clouds.yaml");
            let ours = std::fs::read_to_string(&user_file)
                .map(|t| t.starts_with("# Written by ferrostack"))
                .unwrap_or(true);
            if ours
                && std::fs::create_dir_all(&dir).is_ok()
                && write_private(&user_file, &clouds).is_ok()
            {
                user_clouds_yaml = Some(user_file);
            }
        }
        Ok(BootstrapReport {
            user_clouds_yaml,
            admin_password_file: data_dir.join("admin-password"),
            clouds_yaml,
            openrc: openrc_path,
        })
    }
}
