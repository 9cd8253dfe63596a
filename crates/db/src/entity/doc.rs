//! JSON documents keyed by (kind, id): the persistence of services whose
//! state lives in memory behind one writer (Placement, Compute) and is
//! written through on every change (docs/adr/0007-document-store.md).
#![allow(clippy::module_inception)]

pub mod doc {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "doc")]
    pub struct Model {
        #[sea_orm(
            primary_key,
            auto_increment = false,
            column_type = "String(StringLen::N(32))"
        )]
        pub kind: String,
        #[sea_orm(
            primary_key,
            auto_increment = false,
            column_type = "String(StringLen::N(255))"
        )]
        pub id: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub updated_at: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}
