//! Embedded migrations, run by `ferrostack db upgrade` and at start-up.
use crate::entity::identity as id;
use crate::entity::image as img;
use sea_orm::{ConnectionTrait, EntityTrait, Schema};
use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Identity),
            Box::new(M0002UserLockout),
            Box::new(M0003Image),
            Box::new(M0004Saga),
            Box::new(M0005Docs),
            Box::new(M0006NullDescriptions),
        ]
    }
}

/// Creates `entity`'s table and its indexes (composite unique keys included).
async fn create<E: EntityTrait>(manager: &SchemaManager<'_>, entity: E) -> Result<(), DbErr> {
    let schema = Schema::new(manager.get_database_backend());
    manager
        .create_table(
            schema
                .create_table_from_entity(entity)
                .if_not_exists()
                .to_owned(),
        )
        .await?;
    for idx in schema.create_index_from_entity(entity) {
        manager.get_connection().execute(&idx).await?;
    }
    Ok(())
}

pub struct M0001Identity;

impl MigrationName for M0001Identity {
    fn name(&self) -> &str {
        "m20261123_000001_identity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Identity {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create(m, id::project::Entity).await?;
        create(m, id::project_tag::Entity).await?;
        create(m, id::user::Entity).await?;
        create(m, id::group::Entity).await?;
        create(m, id::user_group::Entity).await?;
        create(m, id::role::Entity).await?;
        create(m, id::implied_role::Entity).await?;
        create(m, id::assignment::Entity).await?;
        create(m, id::service::Entity).await?;
        create(m, id::endpoint::Entity).await?;
        create(m, id::region::Entity).await?;
        create(m, id::credential::Entity).await?;
        create(m, id::app_cred::Entity).await?;
        create(m, id::registered_limit::Entity).await?;
        create(m, id::limit::Entity).await?;
        create(m, id::revocation_event::Entity).await?;
        create(m, id::trust::Entity).await?;
        create(m, id::policy::Entity).await?;
        create(m, id::password_history::Entity).await?;
        create(m, id::access_rule::Entity).await?;
        create(m, id::document::Entity).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        macro_rules! drop {
            ($($e:path),*) => { $( m.drop_table(Table::drop().table($e).if_exists().to_owned()).await?; )* };
        }
        drop!(
            id::project::Entity,
            id::project_tag::Entity,
            id::user::Entity,
            id::group::Entity,
            id::user_group::Entity,
            id::role::Entity,
            id::implied_role::Entity,
            id::assignment::Entity,
            id::service::Entity,
            id::endpoint::Entity,
            id::region::Entity,
            id::credential::Entity,
            id::app_cred::Entity,
            id::registered_limit::Entity,
            id::limit::Entity,
            id::revocation_event::Entity,
            id::trust::Entity,
            id::policy::Entity,
            id::password_history::Entity,
            id::access_rule::Entity,
            id::document::Entity
        );
        Ok(())
    }
}

/// Lockout bookkeeping on users. M0001 builds tables from the current
/// entities, so a database created by it already has these columns: add
/// them only where missing.
pub struct M0002UserLockout;

impl MigrationName for M0002UserLockout {
    fn name(&self) -> &str {
        "m20261123_000002_user_lockout"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002UserLockout {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let table = "identity_user";
        if !m.has_column(table, "failed_auth_count").await? {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .add_column(
                        ColumnDef::new(Alias::new("failed_auth_count"))
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        }
        if !m.has_column(table, "failed_auth_at").await? {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .add_column(
                        ColumnDef::new(Alias::new("failed_auth_at"))
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

/// Image service tables.
pub struct M0003Image;

impl MigrationName for M0003Image {
    fn name(&self) -> &str {
        "m20261123_000003_image"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0003Image {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create(m, img::image::Entity).await?;
        create(m, img::member::Entity).await?;
        create(m, img::metadef::Entity).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(img::member::Entity)
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.drop_table(
            Table::drop()
                .table(img::image::Entity)
                .if_exists()
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

/// The saga log.
pub struct M0004Saga;

impl MigrationName for M0004Saga {
    fn name(&self) -> &str {
        "m20261123_000004_saga"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0004Saga {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create(m, crate::entity::saga::saga::Entity).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(crate::entity::saga::saga::Entity)
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

/// The document store (Placement, Compute).
pub struct M0005Docs;

impl MigrationName for M0005Docs {
    fn name(&self) -> &str {
        "m20261123_000005_docs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0005Docs {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create(m, crate::entity::doc::doc::Entity).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(crate::entity::doc::doc::Entity)
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

/// Projects, domains and groups now keep an explicit `description: null`
/// apart from an omitted one (`""`), as Keystone does. Rows written before
/// stored NULL for an omitted description: they read `""` again.
pub struct M0006NullDescriptions;

impl MigrationName for M0006NullDescriptions {
    fn name(&self) -> &str {
        "m20261208_000006_null_descriptions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0006NullDescriptions {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["identity_project", "identity_group"] {
            m.exec_stmt(
                Query::update()
                    .table(Alias::new(table))
                    .value(Alias::new("description"), "")
                    .and_where(Expr::col(Alias::new("description")).is_null())
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
