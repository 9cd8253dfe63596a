//! Image wire rules: the attributes Glance knows, validation of create and
//! patch values, and the JSON view.
use ferro_common::Error;
use ferro_db::entity::image::image;
use serde_json::{Map, Value, json};

pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
pub const VISIBILITIES: &[&str] = &["public", "private", "shared", "community"];

/// Attributes a client may never set.
pub const READ_ONLY: &[&str] = &[
    "checksum",
    "created_at",
    "size",
    "status",
    "updated_at",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "os_hash_algo",
    "os_hash_value",
    "id",
    "stores",
    "location",
];
/// Attributes that are columns (everything else is an extra property).
pub const BASE: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "owner",
    "disk_format",
    "container_format",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "min_disk",
    "min_ram",
    "created_at",
    "updated_at",
    "tags",
    "self",
    "file",
    "schema",
    "locations",
    "direct_url",
    "stores",
];

/// Glance's timestamp spelling: `2026-11-23T10:00:00Z`.
pub fn ts(us: i64) -> String {
    ferro_common::time::iso_seconds(&ferro_db::micros_to_time(us))
}

/// Extra properties kept for the server's own use and never shown (as
/// Glance hides `os_glance_stage_host`).
pub const HIDDEN: &[&str] = &[IMPORT_MUST_SUCCEED, IMPORT_STORES, IMPORT_URI];
/// The running web-download's source URI.
pub const IMPORT_URI: &str = "os_glance_import_uri";
/// The running import's `all_stores_must_succeed`, so a restart resumes it alike.
pub const IMPORT_MUST_SUCCEED: &str = "os_glance_import_must_succeed";
/// Every store the running import writes to (what a failure undoes).
pub const IMPORT_STORES: &str = "os_glance_import_stores";

/// One copy of an image's data: the store id and the object key in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub store: String,
    pub key: String,
}

/// Where the image's data is. The `stores` column holds
/// `[{"store": id, "key": key}]`; rows written before there were several
/// stores hold `["file"]` with the key in `location`.
pub fn locations(m: &image::Model) -> Vec<Location> {
    let v: Vec<Value> = serde_json::from_str(&m.stores).unwrap_or_default();
    v.iter()
        .filter_map(|e| match e {
            Value::String(s) => m.location.clone().map(|key| Location {
                store: s.clone(),
                key,
            }),
            Value::Object(o) => Some(Location {
                store: o.get("store")?.as_str()?.to_string(),
                key: o.get("key")?.as_str()?.to_string(),
            }),
            _ => None,
        })
        .collect()
}

/// Records where the data is, in the order given (`ImageService::ordered`),
/// one copy per store; the first copy's key is also `location`.
pub fn set_locations(m: &mut image::Model, mut locs: Vec<Location>) {
    let mut seen = std::collections::HashSet::new();
    locs.retain(|l| seen.insert(l.store.clone()));
    m.location = locs.first().map(|l| l.key.clone());
    m.stores = Value::Array(
        locs.iter()
            .map(|l| json!({"store": l.store, "key": l.key}))
            .collect(),
    )
    .to_string();
}

pub fn props(m: &image::Model) -> Map<String, Value> {
    serde_json::from_str::<Value>(&m.properties)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

pub fn tags(m: &image::Model) -> Vec<String> {
    serde_json::from_str(&m.tags).unwrap_or_default()
}

pub fn view(m: &image::Model) -> Value {
    let mut v = json!({
        "id": m.id, "name": m.name, "status": m.status, "visibility": m.visibility, "protected": m.protected,
        "os_hidden": m.os_hidden, "owner": m.owner, "disk_format": m.disk_format,
        "container_format": m.container_format, "size": m.size, "virtual_size": m.virtual_size,
        "checksum": m.checksum, "os_hash_algo": m.os_hash_algo, "os_hash_value": m.os_hash_value,
        "min_disk": m.min_disk, "min_ram": m.min_ram, "created_at": ts(m.created_at), "updated_at": ts(m.updated_at),
        "tags": tags(m), "self": format!("/v2/images/{}", m.id), "file": format!("/v2/images/{}/file", m.id),
        "schema": "/v2/schemas/image",
    });
    let stores: Vec<String> = locations(m).into_iter().map(|l| l.store).collect();
    if !stores.is_empty() {
        v["stores"] = json!(stores.join(","));
    }
    if let Value::Object(o) = &mut v {
        for (k, val) in props(m) {
            if !HIDDEN.contains(&k.as_str()) {
                o.entry(k).or_insert(val);
            }
        }
    }
    v
}

pub fn bad(msg: impl Into<String>) -> Error {
    Error::validation(msg)
}

/// Checks one settable attribute's value (create and patch share this).
pub fn check_value(key: &str, v: &Value) -> Result<(), Error> {
    let ok = match key {
        "name" => v.is_null() || v.as_str().is_some_and(|s| s.chars().count() <= 255),
        "visibility" => v.as_str().is_some_and(|s| VISIBILITIES.contains(&s)),
        "protected" | "os_hidden" => v.is_boolean(),
        "disk_format" => v.is_null() || v.as_str().is_some_and(|s| DISK_FORMATS.contains(&s)),
        "container_format" => {
            v.is_null() || v.as_str().is_some_and(|s| CONTAINER_FORMATS.contains(&s))
        }
        "min_disk" | "min_ram" => v
            .as_i64()
            .is_some_and(|n| (0..=i64::from(i32::MAX)).contains(&n)),
        "owner" => v.is_null() || v.as_str().is_some_and(|s| s.len() <= 255),
        "tags" => v.as_array().is_some_and(|a| {
            a.len() <= 128
                && a.iter()
                    .all(|t| t.as_str().is_some_and(|s| s.chars().count() <= 255))
        }),
        "locations" | "direct_url" => false,
        _ => {
            // extra properties: string values, keys of at most 255 characters
            key.chars().count() <= 255 && (v.is_string() || v.is_null())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(bad(format!("Invalid value for '{key}': {v}")))
    }
}

/// Sets an attribute on the row (value already checked).
pub fn set_value(m: &mut image::Model, key: &str, v: &Value) {
    let s = || v.as_str().map(str::to_string);
    match key {
        "name" => m.name = s(),
        "visibility" => m.visibility = s().unwrap_or_else(|| "shared".into()),
        "protected" => m.protected = v.as_bool().unwrap_or(false),
        "os_hidden" => m.os_hidden = v.as_bool().unwrap_or(false),
        "disk_format" => m.disk_format = s(),
        "container_format" => m.container_format = s(),
        "min_disk" => m.min_disk = v.as_i64().unwrap_or(0),
        "min_ram" => m.min_ram = v.as_i64().unwrap_or(0),
        "owner" => m.owner = s(),
        "tags" => {
            let mut t: Vec<String> = Vec::new();
            for x in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !t.iter().any(|y| y == x) {
                    t.push(x.to_string());
                }
            }
            m.tags = json!(t).to_string();
        }
        _ => {
            let mut p = props(m);
            if v.is_null() {
                p.remove(key);
            } else {
                p.insert(key.to_string(), v.clone());
            }
            m.properties = Value::Object(p).to_string();
        }
    }
}

pub fn remove_value(m: &mut image::Model, key: &str) -> Result<(), Error> {
    match key {
        "name" | "disk_format" | "container_format" => set_value(m, key, &Value::Null),
        k if BASE.contains(&k) => {
            return Err(Error::forbidden(format!(
                "Properties {k} must be set prior to saving data."
            )));
        }
        _ => {
            let mut p = props(m);
            if p.remove(key).is_none() {
                return Err(Error::conflict(format!("Property {key} does not exist.")));
            }
            m.properties = Value::Object(p).to_string();
        }
    }
    Ok(())
}
