//! Resource filters (3.33): `/v3/resource_filters`, the list filters
//! users may give for each resource.
use super::{Query, ok};
use crate::error::{CResult, CinderError};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new().route("/v3/resource_filters", get(resource_filters))
}

/// The list filters each resource accepts from users (Cinder's
/// `resource_filters.json`); admins may filter on any field.
pub const RESOURCE_FILTERS: [(&str, &[&str]); 9] = [
    (
        "volume",
        &[
            "name",
            "status",
            "metadata",
            "bootable",
            "migration_status",
            "availability_zone",
            "group_id",
            "size",
            "created_at",
            "updated_at",
            "consumes_quota",
        ],
    ),
    ("backup", &["name", "status", "volume_id"]),
    (
        "snapshot",
        &[
            "name",
            "status",
            "volume_id",
            "metadata",
            "availability_zone",
            "consumes_quota",
        ],
    ),
    ("group", &["name"]),
    ("group_snapshot", &["name", "status", "group_id"]),
    (
        "attachment",
        &["volume_id", "status", "instance_id", "attach_status"],
    ),
    (
        "message",
        &[
            "resource_uuid",
            "resource_type",
            "event_id",
            "request_id",
            "message_level",
        ],
    ),
    ("pool", &["name", "volume_type"]),
    ("volume_type", &["is_public", "extra_specs"]),
];

/// The user filters of one resource.
pub fn resource_filters_of(resource: &str) -> &'static [&'static str] {
    RESOURCE_FILTERS
        .iter()
        .find(|(r, _)| *r == resource)
        .map(|(_, f)| *f)
        .unwrap_or(&[])
}

async fn resource_filters(_c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    if !mv.at_least(33) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    let want = q.get("resource");
    let list: Vec<Value> = RESOURCE_FILTERS
        .iter()
        .filter(|(r, _)| want.is_none_or(|w| w == *r))
        .map(|(r, f)| json!({"resource": r, "filters": f}))
        .collect();
    Ok(ok(json!({"resource_filters": list})))
}
