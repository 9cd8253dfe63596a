//! Wire views of the stored documents, as Cinder's view builders render
//! them for the negotiated microversion and the caller's role.
use crate::store::{Obj, State, b, i, s};
use crate::{Caller, VolumeService};
use serde_json::{Map, Value, json};

/// The negotiated microversion (3.x).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mv(pub u16);

impl Mv {
    pub fn at_least(self, minor: u16) -> bool {
        self.0 >= minor
    }
}

pub fn links(svc: &VolumeService, project: &str, coll: &str, id: &str) -> Value {
    json!([
        {"href": format!("{}/v3/{project}/{coll}/{id}", svc.base_url), "rel": "self"},
        {"href": format!("{}/{project}/{coll}/{id}", svc.base_url), "rel": "bookmark"},
    ])
}

fn null_or(o: &Obj, k: &str) -> Value {
    match o.get(k) {
        Some(Value::String(x)) if !x.is_empty() => json!(x),
        _ => Value::Null,
    }
}

/// The `attachments` list of a volume: its attached (or attaching)
/// attachment records, as the volume show renders them.
pub fn volume_attachments(st: &State, vol: &Obj) -> Vec<Value> {
    st.attachments_of(s(vol, "id"))
        .filter(|a| s(a, "attach_status") == "attached")
        .map(|a| {
            json!({
                "server_id": null_or(a, "instance_uuid"),
                "attachment_id": s(a, "id"),
                "attached_at": a.get("attach_time").cloned().unwrap_or(Value::Null),
                "host_name": null_or(a, "attached_host"),
                "volume_id": s(vol, "id"),
                "device": null_or(a, "mountpoint"),
                "id": s(vol, "id"),
            })
        })
        .collect()
}

pub fn volume_summary(svc: &VolumeService, v: &Obj) -> Value {
    json!({"id": s(v, "id"), "name": null_or(v, "name"),
           "links": links(svc, s(v, "project_id"), "volumes", s(v, "id"))})
}

/// Which response a volume is rendered for: show and list-detail carry the
/// extension attributes; create and update responses do not (and update
/// never carries the microversioned fields).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum VolView {
    Show,
    Create,
    Update,
}

pub fn volume_detail(svc: &VolumeService, st: &State, c: &Caller, mv: Mv, v: &Obj) -> Value {
    volume_view(svc, st, c, mv, v, VolView::Show)
}

pub fn volume_view(
    svc: &VolumeService,
    st: &State,
    c: &Caller,
    mv: Mv,
    v: &Obj,
    view: VolView,
) -> Value {
    let show = view == VolView::Show;
    let mv = if view == VolView::Update { Mv(0) } else { mv };
    let id = s(v, "id");
    let mut o = Map::new();
    let mut put = |k: &str, x: Value| {
        o.insert(k.to_string(), x);
    };
    put("id", json!(id));
    put("name", null_or(v, "name"));
    put(
        "description",
        v.get("description").cloned().unwrap_or(Value::Null),
    );
    put("size", json!(i(v, "size")));
    put("status", json!(s(v, "status")));
    put("availability_zone", json!(s(v, "availability_zone")));
    put("attachments", Value::Array(volume_attachments(st, v)));
    put("links", links(svc, s(v, "project_id"), "volumes", id));
    put("encrypted", json!(false));
    put(
        "updated_at",
        v.get("updated_at").cloned().unwrap_or(Value::Null),
    );
    put("created_at", json!(s(v, "created_at")));
    put("replication_status", null_or(v, "replication_status"));
    put("migration_status", null_or(v, "migration_status"));
    put("user_id", json!(s(v, "user_id")));
    // Cinder shows the admin metadata it manages (readonly, attached_mode) among the metadata.
    let mut meta = v
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(am) = v.get("admin_metadata").and_then(Value::as_object) {
        for k in ["readonly", "attached_mode"] {
            if let Some(x) = am.get(k) {
                meta.insert(k.into(), x.clone());
            }
        }
    }
    put("metadata", Value::Object(meta));
    put("multiattach", json!(b(v, "multiattach")));
    put("consistencygroup_id", Value::Null);
    put(
        "bootable",
        json!(if b(v, "bootable") { "true" } else { "false" }),
    );
    put("volume_type", null_or(v, "volume_type"));
    put("snapshot_id", null_or(v, "snapshot_id"));
    put("source_volid", null_or(v, "source_volid"));
    if show {
        put("os-vol-tenant-attr:tenant_id", json!(s(v, "project_id")));
    }
    if show && let Some(m) = v.get("volume_image_metadata").filter(|m| m.is_object()) {
        put("volume_image_metadata", m.clone());
    }
    if show && c.admin {
        put("os-vol-host-attr:host", json!(svc.pool_host()));
        put("os-vol-mig-status-attr:migstat", Value::Null);
        put("os-vol-mig-status-attr:name_id", Value::Null);
    }
    if mv.at_least(13) {
        put("group_id", null_or(v, "group_id"));
    }
    if mv.at_least(21) {
        put("provider_id", Value::Null);
    }
    if mv.at_least(48) {
        put("service_uuid", json!(svc_uuid(svc)));
        put("shared_targets", json!(false));
    }
    if mv.at_least(61) && c.admin {
        put("cluster_name", Value::Null);
    }
    if mv.at_least(63) {
        put("volume_type_id", null_or(v, "volume_type_id"));
    }
    if mv.at_least(64) {
        put("encryption_key_id", Value::Null);
    }
    if mv.at_least(65) {
        put("consumes_quota", json!(true));
    }
    if mv.at_least(69) {
        // From 3.69 `shared_targets` is tri-state; file exports are not shared.
        put("shared_targets", json!(false));
    }
    Value::Object(o)
}

/// A stable id of this volume service (`service_uuid`).
pub fn svc_uuid(svc: &VolumeService) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, svc.host.as_bytes()).to_string()
}

/// A snapshot; `detail` (show, list-detail) adds the extended attributes.
pub fn snapshot(mv: Mv, x: &Obj, detail: bool) -> Value {
    let mut o = json!({
        "id": s(x, "id"),
        "name": null_or(x, "name"),
        "description": x.get("description").cloned().unwrap_or(Value::Null),
        "volume_id": s(x, "volume_id"),
        "status": s(x, "status"),
        "size": i(x, "size"),
        "metadata": x.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "created_at": s(x, "created_at"),
        "updated_at": x.get("updated_at").cloned().unwrap_or(Value::Null),
    });
    if detail {
        o["os-extended-snapshot-attributes:project_id"] = json!(s(x, "project_id"));
        o["os-extended-snapshot-attributes:progress"] =
            x.get("progress").cloned().unwrap_or_else(|| json!("0%"));
    }
    if mv.at_least(14) {
        o["group_snapshot_id"] = x.get("group_snapshot_id").cloned().unwrap_or(Value::Null);
    }
    if mv.at_least(41) {
        o["user_id"] = json!(s(x, "user_id"));
    }
    if mv.at_least(65) {
        o["consumes_quota"] = json!(true);
    }
    o
}

/// Which response a type is rendered for (create adds the access flag
/// and omits the QoS id; update omits both).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TypeView {
    Show,
    Create,
    Update,
}

pub fn volume_type(c: &Caller, t: &Obj) -> Value {
    volume_type_view(c, t, TypeView::Show)
}

pub fn volume_type_view(c: &Caller, t: &Obj, view: TypeView) -> Value {
    let mut o = json!({
        "id": s(t, "id"),
        "name": s(t, "name"),
        "description": t.get("description").cloned().unwrap_or(Value::Null),
        "is_public": b(t, "is_public"),
    });
    if view != TypeView::Update {
        o["os-volume-type-access:is_public"] = json!(b(t, "is_public"));
    }
    // Extra specs are for admins; from 3.x users see the user-visible ones.
    let specs = t
        .get("extra_specs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if c.admin {
        o["extra_specs"] = Value::Object(specs);
        if view == TypeView::Show {
            o["qos_specs_id"] = t.get("qos_specs_id").cloned().unwrap_or(Value::Null);
        }
    } else {
        let visible: Map<String, Value> = specs
            .into_iter()
            .filter(|(k, _)| USER_VISIBLE_SPECS.contains(&k.as_str()))
            .collect();
        o["extra_specs"] = Value::Object(visible);
    }
    o
}

/// Extra specs Cinder shows to non-admins (`volume_extension:types_extra_specs:read_sensitive`).
const USER_VISIBLE_SPECS: [&str; 3] = [
    "multiattach",
    "RESKEY:availability_zones",
    "replication_enabled",
];

pub fn attachment(a: &Obj, detail: bool) -> Value {
    let mut o = json!({
        "id": s(a, "id"),
        "status": s(a, "attach_status"),
        "instance": null_or(a, "instance_uuid"),
        "volume_id": s(a, "volume_id"),
    });
    if detail {
        o["attached_at"] = a.get("attach_time").cloned().unwrap_or(Value::Null);
        o["detached_at"] = a.get("detach_time").cloned().unwrap_or(Value::Null);
        o["attach_mode"] = json!(match s(a, "attach_mode") {
            "" => "null",
            m => m,
        });
        o["connection_info"] = a.get("connection_info").cloned().unwrap_or(Value::Null);
    }
    o
}
