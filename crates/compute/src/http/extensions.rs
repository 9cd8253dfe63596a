//! `extensions`: the legacy extension list clients still read.
use super::request::{Caller, json_resp};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/extensions", get(extensions))
        .route("/extensions/{alias}", get(extension_show))
}

/// The v2.1 extension list (frozen upstream; kept for old clients).
const EXTENSIONS: &[(&str, &str)] = &[
    ("os-access-ips", "AccessIPs"),
    ("os-admin-actions", "AdminActions"),
    ("os-admin-password", "AdminPassword"),
    ("os-aggregates", "Aggregates"),
    ("os-assisted-volume-snapshots", "AssistedVolumeSnapshots"),
    ("os-attach-interfaces", "AttachInterfaces"),
    ("os-availability-zone", "AvailabilityZone"),
    ("os-block-device-mapping", "BlockDeviceMapping"),
    ("os-cells", "Cells"),
    ("os-certificates", "Certificates"),
    ("os-cloudpipe", "Cloudpipe"),
    ("os-config-drive", "ConfigDrive"),
    ("os-console-auth-tokens", "ConsoleAuthTokens"),
    ("os-console-output", "ConsoleOutput"),
    ("os-consoles", "Consoles"),
    ("os-create-backup", "CreateBackup"),
    ("os-deferred-delete", "DeferredDelete"),
    ("os-evacuate", "Evacuate"),
    ("os-extended-availability-zone", "ExtendedAvailabilityZone"),
    ("os-extended-server-attributes", "ExtendedServerAttributes"),
    ("os-extended-status", "ExtendedStatus"),
    ("os-extended-volumes", "ExtendedVolumes"),
    ("os-fixed-ips", "FixedIPs"),
    ("os-flavor-access", "FlavorAccess"),
    ("os-flavor-extra-specs", "FlavorExtraSpecs"),
    ("os-flavor-manage", "FlavorManage"),
    ("os-flavor-rxtx", "FlavorRxtx"),
    ("flavors", "Flavors"),
    ("os-floating-ip-dns", "FloatingIpDns"),
    ("os-floating-ip-pools", "FloatingIpPools"),
    ("os-floating-ips", "FloatingIps"),
    ("os-floating-ips-bulk", "FloatingIpsBulk"),
    ("os-fping", "Fping"),
    ("os-hide-server-addresses", "HideServerAddresses"),
    ("os-hosts", "Hosts"),
    ("os-hypervisors", "Hypervisors"),
    ("images", "Images"),
    ("os-image-metadata", "ImageMetadata"),
    ("os-instance-actions", "InstanceActions"),
    ("os-instance-usage-audit-log", "OSInstanceUsageAuditLog"),
    ("ips", "Ips"),
    ("os-keypairs", "Keypairs"),
    ("os-lock-server", "LockServer"),
    ("os-migrate-server", "MigrateServer"),
    ("os-migrations", "Migrations"),
    ("os-multinic", "Multinic"),
    ("os-multiple-create", "MultipleCreate"),
    ("os-networks", "Networks"),
    ("os-networks-associate", "NetworkAssociationSupport"),
    ("os-pause-server", "PauseServer"),
    ("os-personality", "Personality"),
    (
        "os-preserve-ephemeral-rebuild",
        "PreserveEphemeralOnRebuild",
    ),
    ("os-quota-class-sets", "QuotaClasses"),
    ("os-quota-sets", "Quotas"),
    ("os-remote-consoles", "RemoteConsoles"),
    ("os-rescue", "Rescue"),
    ("os-scheduler-hints", "SchedulerHints"),
    (
        "os-security-group-default-rules",
        "SecurityGroupDefaultRules",
    ),
    ("os-security-groups", "SecurityGroups"),
    ("os-server-diagnostics", "ServerDiagnostics"),
    ("os-server-external-events", "ServerExternalEvents"),
    ("os-server-groups", "ServerGroups"),
    ("os-server-password", "ServerPassword"),
    ("os-server-usage", "ServerUsage"),
    ("servers", "Servers"),
    ("os-services", "Services"),
    ("os-shelve", "Shelve"),
    ("os-simple-tenant-usage", "SimpleTenantUsage"),
    ("os-suspend-server", "SuspendServer"),
    ("os-tenant-networks", "OSTenantNetworks"),
    ("os-used-limits", "UsedLimits"),
    ("os-user-data", "UserData"),
    ("os-virtual-interfaces", "VirtualInterfaces"),
    ("os-volumes", "Volumes"),
    ("os-server-start-stop", "ServerStartStop"),
    ("os-server-tags", "ServerTags"),
    ("os-limits", "Limits"),
];

fn extension_view(alias: &str, name: &str) -> Value {
    json!({"alias": alias, "name": name, "description": name, "links": [],
        "namespace": "http://docs.openstack.org/compute/ext/fake_xml", "updated": "2014-12-03T00:00:00Z"})
}

async fn extensions(_c: Caller) -> NResult<Response> {
    Ok(json_resp(
        StatusCode::OK,
        json!({"extensions": EXTENSIONS.iter().map(|(a, n)| extension_view(a, n)).collect::<Vec<_>>()}),
    ))
}

async fn extension_show(_c: Caller, Path(alias): Path<String>) -> NResult<Response> {
    let (a, n) = EXTENSIONS
        .iter()
        .find(|(a, _)| *a == alias)
        .ok_or_else(|| NovaError::not_found(format!("Extension {alias} not found")))?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"extension": extension_view(a, n)}),
    ))
}
