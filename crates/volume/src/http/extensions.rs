//! API extensions: `/v3/extensions`.
use super::ok;
use crate::error::CResult;
use crate::{Caller, VolumeService};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new().route("/v3/extensions", get(extensions))
}

/// What this service implements, as Cinder names its API extensions.
const EXTENSIONS: [(&str, &str, &str); 16] = [
    (
        "os-availability-zone",
        "AvailabilityZones",
        "Describe Availability Zones.",
    ),
    (
        "os-extended-snapshot-attributes",
        "ExtendedSnapshotAttributes",
        "Extended SnapshotAttributes support.",
    ),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    ("os-quota-sets", "Quotas", "Quota management support."),
    (
        "os-quota-class-sets",
        "QuotaClasses",
        "Quota classes management support.",
    ),
    ("os-services", "Services", "Services support."),
    (
        "os-snapshot-actions",
        "SnapshotActions",
        "Enable snapshot manager actions.",
    ),
    (
        "os-types-extra-specs",
        "TypesExtraSpecs",
        "Type extra specs support.",
    ),
    ("os-types-manage", "TypesManage", "Types manage support."),
    (
        "os-volume-actions",
        "VolumeActions",
        "Enable volume actions.",
    ),
    (
        "os-vol-host-attr",
        "VolumeHostAttribute",
        "Expose host as an attribute of a volume.",
    ),
    (
        "os-vol-image-meta",
        "VolumeImageMetadata",
        "Show image metadata associated with the volume.",
    ),
    (
        "os-vol-tenant-attr",
        "VolumeTenantAttribute",
        "Expose the internal project_id as an attribute of a volume.",
    ),
    (
        "os-volume-type-access",
        "VolumeTypeAccess",
        "Volume type access support.",
    ),
    ("qos-specs", "Qos_specs_manage", "QoS specs support."),
    ("os-admin-actions", "AdminActions", "Enable admin actions."),
];

async fn extensions(_c: Caller) -> CResult<Response> {
    let list: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(alias, name, d)| {
            json!({"alias": alias, "name": name, "description": d,
                   "updated": "2013-04-18T00:00:00+00:00", "links": []})
        })
        .collect();
    Ok(ok(json!({"extensions": list})))
}
