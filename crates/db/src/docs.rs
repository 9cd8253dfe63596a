//! A write-through document store over the `doc` table: `load` reads every
//! document of a kind at start-up; `apply` writes a batch of puts and
//! deletes in one transaction, so a multi-document change (an instance and
//! its quota usage, a consumer's allocations) is all-or-nothing.
use crate::entity::doc::doc;
use crate::{Db, db_err, now_micros};
use ferro_common::Error;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde_json::Value;

/// One change in a batch.
#[derive(Clone, Debug)]
pub enum DocOp {
    Put {
        kind: &'static str,
        id: String,
        body: Value,
    },
    Delete {
        kind: &'static str,
        id: String,
    },
}

impl DocOp {
    pub fn put(kind: &'static str, id: impl Into<String>, body: Value) -> DocOp {
        DocOp::Put {
            kind,
            id: id.into(),
            body,
        }
    }
    pub fn delete(kind: &'static str, id: impl Into<String>) -> DocOp {
        DocOp::Delete {
            kind,
            id: id.into(),
        }
    }
}

/// The error for a stored document that cannot be read.
pub fn undecodable(kind: &str, id: &str, e: &dyn std::fmt::Display) -> Error {
    Error::internal(format!(
        "the stored {kind} document {id} cannot be read ({e}); start-up stops rather than lose it. Repair or remove that row of the doc table (kind {kind:?}, id {id:?})"
    ))
}

impl Db {
    /// Every document of `kind`, as (id, body); an unreadable one is an
    /// error that names it.
    pub async fn docs_load(&self, kind: &str) -> Result<Vec<(String, Value)>, Error> {
        let rows = doc::Entity::find()
            .filter(doc::Column::Kind.eq(kind))
            .all(&self.conn)
            .await
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            // A document that cannot be read stops start-up: skipping it
            // would make its resource vanish (and, for a port, free its
            // addresses for someone else).
            let v = serde_json::from_str(&r.body).map_err(|e| undecodable(kind, &r.id, &e))?;
            out.push((r.id, v));
        }
        Ok(out)
    }

    /// Applies `ops` in one transaction.
    pub async fn docs_apply(&self, ops: Vec<DocOp>) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let now = now_micros();
        let txn = self.conn.begin().await.map_err(db_err)?;
        for op in ops {
            match op {
                DocOp::Put { kind, id, body } => {
                    let am = doc::ActiveModel {
                        kind: Set(kind.to_string()),
                        id: Set(id),
                        body: Set(body.to_string()),
                        updated_at: Set(now),
                    };
                    doc::Entity::insert(am)
                        .on_conflict(
                            OnConflict::columns([doc::Column::Kind, doc::Column::Id])
                                .update_columns([doc::Column::Body, doc::Column::UpdatedAt])
                                .to_owned(),
                        )
                        .exec_without_returning(&txn)
                        .await
                        .map_err(db_err)?;
                }
                DocOp::Delete { kind, id } => {
                    doc::Entity::delete_many()
                        .filter(doc::Column::Kind.eq(kind))
                        .filter(doc::Column::Id.eq(id))
                        .exec(&txn)
                        .await
                        .map_err(db_err)?;
                }
            }
        }
        txn.commit().await.map_err(db_err)
    }
}
