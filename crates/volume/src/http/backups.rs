//! Backups: `/v3/backups`.
//!
//! No cinder-backup service runs here: the collection is empty and every
//! request that needs the service answers as Cinder does without one.
use super::ok;
use crate::error::{CResult, CinderError};
use crate::{Caller, VolumeService};
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/backups", get(backups_list).post(backup_create))
        .route("/v3/backups/detail", get(backups_list))
        .route(
            "/v3/backups/import_record",
            axum::routing::post(backup_create),
        )
        .route(
            "/v3/backups/{id}",
            get(backup_item).put(backup_item).delete(backup_item),
        )
        .route(
            "/v3/backups/{id}/{action}",
            get(backup_item2).post(backup_item2),
        )
}

fn no_backup_service() -> CinderError {
    CinderError::not_found("Service cinder-backup could not be found.")
}

async fn backups_list(_c: Caller) -> CResult<Response> {
    Ok(ok(json!({"backups": []})))
}

async fn backup_item(_c: Caller, Path(id): Path<String>) -> CResult<Response> {
    Err(CinderError::not_found(format!(
        "Backup {id} could not be found."
    )))
}

async fn backup_create(c: Caller) -> CResult<Response> {
    c.require_writer("backup:create")?;
    Err(no_backup_service())
}

async fn backup_item2(_c: Caller, Path((id, _a)): Path<(String, String)>) -> CResult<Response> {
    Err(CinderError::not_found(format!(
        "Backup {id} could not be found."
    )))
}
