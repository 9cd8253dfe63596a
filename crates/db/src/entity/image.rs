//! Image (Glance) tables.
#![allow(clippy::module_inception)]
#![allow(clippy::derive_partial_eq_without_eq)]

pub mod image {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "image")]
    pub struct Model {
        #[sea_orm(
            primary_key,
            auto_increment = false,
            column_type = "String(StringLen::N(36))"
        )]
        pub id: String,
        #[sea_orm(nullable)]
        pub name: Option<String>,
        #[sea_orm(indexed)]
        pub status: String,
        #[sea_orm(indexed)]
        pub visibility: String,
        pub protected: bool,
        pub os_hidden: bool,
        #[sea_orm(nullable, indexed)]
        pub owner: Option<String>,
        #[sea_orm(nullable)]
        pub disk_format: Option<String>,
        #[sea_orm(nullable)]
        pub container_format: Option<String>,
        #[sea_orm(nullable)]
        pub size: Option<i64>,
        #[sea_orm(nullable)]
        pub virtual_size: Option<i64>,
        #[sea_orm(nullable)]
        pub checksum: Option<String>,
        #[sea_orm(nullable)]
        pub os_hash_algo: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub os_hash_value: Option<String>,
        pub min_disk: i64,
        pub min_ram: i64,
        pub created_at: i64,
        #[sea_orm(indexed)]
        pub updated_at: i64,
        /// Extra properties, a JSON object of strings.
        #[sea_orm(column_type = "Text")]
        pub properties: String,
        /// JSON list of tags.
        #[sea_orm(column_type = "Text")]
        pub tags: String,
        /// Store object key of the active data (and of staged data while importing).
        #[sea_orm(nullable)]
        pub location: Option<String>,
        #[sea_orm(nullable)]
        pub staged: Option<String>,
        /// JSON list of store names holding the data.
        #[sea_orm(column_type = "Text")]
        pub stores: String,
        /// Optimistic concurrency for status transitions.
        pub generation: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod member {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "image_member")]
    pub struct Model {
        #[sea_orm(
            primary_key,
            auto_increment = false,
            column_type = "String(StringLen::N(36))"
        )]
        pub image_id: String,
        #[sea_orm(
            primary_key,
            auto_increment = false,
            indexed,
            column_type = "String(StringLen::N(64))"
        )]
        pub member_id: String,
        pub status: String,
        pub created_at: i64,
        pub updated_at: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

/// A metadata-definition namespace with its resource-type associations,
/// properties, objects and tags, kept as one JSON document.
pub mod metadef {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "image_metadef_namespace")]
    pub struct Model {
        #[sea_orm(
            primary_key,
            auto_increment = false,
            column_type = "String(StringLen::N(80))"
        )]
        pub namespace: String,
        #[sea_orm(nullable)]
        pub owner: Option<String>,
        pub visibility: String,
        pub created_at: i64,
        #[sea_orm(column_type = "Text")]
        pub body: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}
