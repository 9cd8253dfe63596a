//! The JSON-schema documents Glance serves under `/v2/schemas/...`.
use crate::model::{CONTAINER_FORMATS, DISK_FORMATS};
use serde_json::{Value, json};

fn with_null(first: &[&str], all: &[&str]) -> Vec<Value> {
    // `raw`/`bare` first: clients and Tempest take the first entries.
    let mut out = vec![Value::Null];
    for f in first.iter().chain(all.iter()) {
        if !out.iter().any(|v| v.as_str() == Some(*f)) {
            out.push(json!(f));
        }
    }
    out
}

pub fn image() -> Value {
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "links": [
            {"href": "{self}", "rel": "self"},
            {"href": "{file}", "rel": "enclosure"},
            {"href": "{schema}", "rel": "describedby"}
        ],
        "properties": {
            "id": {"type": "string", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$", "description": "An identifier for the image"},
            "name": {"type": ["null", "string"], "maxLength": 255, "description": "Descriptive name for the image"},
            "status": {"type": "string", "readOnly": true, "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"]},
            "visibility": {"type": "string", "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean"},
            "os_hidden": {"type": "boolean"},
            "checksum": {"type": ["null", "string"], "readOnly": true, "maxLength": 32},
            "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "maxLength": 64},
            "os_hash_value": {"type": ["null", "string"], "readOnly": true, "maxLength": 128},
            "owner": {"type": ["null", "string"], "maxLength": 255},
            "size": {"type": ["null", "integer"], "readOnly": true},
            "virtual_size": {"type": ["null", "integer"], "readOnly": true},
            "container_format": {"type": ["null", "string"], "enum": with_null(&["bare", "ovf", "ova"], CONTAINER_FORMATS)},
            "disk_format": {"type": ["null", "string"], "enum": with_null(&["raw", "qcow2"], DISK_FORMATS)},
            "created_at": {"type": "string", "readOnly": true},
            "updated_at": {"type": "string", "readOnly": true},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
            "direct_url": {"type": "string", "readOnly": true},
            "min_ram": {"type": "integer"},
            "min_disk": {"type": "integer"},
            "self": {"type": "string", "readOnly": true},
            "file": {"type": "string", "readOnly": true},
            "stores": {"type": "string", "readOnly": true},
            "schema": {"type": "string", "readOnly": true},
            "locations": {"type": "array"},
            "kernel_id": {"type": ["null", "string"], "is_base": false},
            "ramdisk_id": {"type": ["null", "string"], "is_base": false},
            "instance_uuid": {"type": "string", "is_base": false},
            "architecture": {"type": "string", "is_base": false},
            "os_distro": {"type": "string", "is_base": false},
            "os_version": {"type": "string", "is_base": false},
        }
    })
}

fn collection(name: &str, item_key: &str, item: Value) -> Value {
    json!({
        "name": name,
        "properties": {
            item_key: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"href": "{first}", "rel": "first"},
            {"href": "{next}", "rel": "next"},
            {"href": "{schema}", "rel": "describedby"}
        ]
    })
}

pub fn images() -> Value {
    collection("images", "images", image())
}

pub fn member() -> Value {
    json!({
        "name": "member",
        "properties": {
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "image_id": {"type": "string"},
            "member_id": {"type": "string"},
            "schema": {"type": "string", "readOnly": true},
            "status": {"type": "string", "enum": ["pending", "accepted", "rejected"]},
        }
    })
}

pub fn members() -> Value {
    json!({"name": "members", "properties": {"members": {"type": "array", "items": member()}, "schema": {"type": "string"}},
           "links": [{"href": "{schema}", "rel": "describedby"}]})
}

pub fn task() -> Value {
    json!({"name": "task", "properties": {
        "id": {"type": "string"}, "type": {"type": "string", "enum": ["import"]},
        "status": {"type": "string", "enum": ["pending", "processing", "success", "failure"]},
        "input": {"type": ["null", "object"]}, "result": {"type": ["null", "object"]},
        "owner": {"type": "string"}, "message": {"type": "string"}, "expires_at": {"type": ["null", "string"]},
        "created_at": {"type": "string"}, "updated_at": {"type": "string"},
        "self": {"type": "string"}, "schema": {"type": "string"}}})
}

pub fn tasks() -> Value {
    collection("tasks", "tasks", task())
}

/// `/v2/schemas/metadefs/{kind}`.
pub fn metadef(kind: &str) -> Option<Value> {
    let (name, plural_of) = match kind {
        "namespace" => ("namespace", None),
        "namespaces" => ("namespaces", Some("namespace")),
        "resource_type" => ("resource_type_association", None),
        "resource_types" => (
            "resource_type_associations",
            Some("resource_type_association"),
        ),
        "object" => ("object", None),
        "objects" => ("objects", Some("object")),
        "property" => ("property", None),
        "properties" => ("properties", Some("property")),
        "tag" => ("tag", None),
        "tags" => ("tags", Some("tag")),
        _ => return None,
    };
    let item = json!({"name": plural_of.unwrap_or(name), "type": "object", "properties": {
        "name": {"type": "string", "maxLength": 80}, "created_at": {"type": "string", "readOnly": true},
        "updated_at": {"type": "string", "readOnly": true}}});
    Some(match plural_of {
        Some(_) => {
            json!({"name": name, "properties": {name: {"type": "array", "items": item}, "first": {"type": "string"},
                          "next": {"type": "string"}, "schema": {"type": "string"}},
                          "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"}, {"rel": "describedby", "href": "{schema}"}]})
        }
        None => {
            let mut v = item;
            v["name"] = json!(name);
            v["additionalProperties"] = json!(false);
            v
        }
    })
}
