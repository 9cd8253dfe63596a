//! Keystone's JSON views of identity rows (wire types stay separate from the
//! database rows).
use crate::util::json_map;
use ferro_db::entity::identity::*;
use ferro_db::micros_to_time;
use serde_json::{Map, Value, json};

fn merge(mut base: Map<String, Value>, extra: &str) -> Value {
    for (k, v) in json_map(extra) {
        base.entry(k).or_insert(v);
    }
    Value::Object(base)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub fn link(base: &str, path: &str) -> Value {
    json!({ "self": format!("{base}/{path}") })
}

pub fn domain(base: &str, d: &project::Model, tags: &[String]) -> Value {
    merge(
        obj(json!({
            "id": d.id, "name": d.name, "description": d.description,
            "enabled": d.enabled, "tags": tags, "options": Value::Object(json_map(&d.options)),
            "links": link(base, &format!("domains/{}", d.id)),
        })),
        &d.extra,
    )
}

pub fn project(base: &str, p: &project::Model, tags: &[String]) -> Value {
    merge(
        obj(json!({
            "id": p.id, "name": p.name, "domain_id": p.domain_id,
            "description": p.description,
            "enabled": p.enabled, "parent_id": p.parent_id, "is_domain": p.is_domain, "tags": tags,
            "options": Value::Object(json_map(&p.options)),
            "links": link(base, &format!("projects/{}", p.id)),
        })),
        &p.extra,
    )
}

/// Domains seen through the projects API (`is_domain=true`).
pub fn domain_as_project(base: &str, d: &project::Model, tags: &[String]) -> Value {
    let mut v = project(base, d, tags);
    v["domain_id"] = Value::Null;
    v["parent_id"] = Value::Null;
    v
}

pub fn user(base: &str, u: &user::Model) -> Value {
    let mut m = obj(json!({
        "id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
        "password_expires_at": u.password_expires_at.map(|t| ferro_common::time::keystone_token_time(&micros_to_time(t))),
        "options": Value::Object(json_map(&u.options)),
        "links": link(base, &format!("users/{}", u.id)),
    }));
    if let Some(p) = &u.default_project_id {
        m.insert("default_project_id".into(), json!(p));
    }
    merge(m, &u.extra)
}

pub fn group(base: &str, g: &group::Model) -> Value {
    merge(
        obj(json!({
            "id": g.id, "name": g.name, "domain_id": g.domain_id,
            "description": g.description,
            "links": link(base, &format!("groups/{}", g.id)),
        })),
        &g.extra,
    )
}

pub fn role(base: &str, r: &role::Model) -> Value {
    merge(
        obj(json!({
            "id": r.id, "name": r.name,
            "domain_id": if r.domain_id == NULL_DOMAIN { Value::Null } else { json!(r.domain_id) },
            "description": r.description,
            "options": Value::Object(json_map(&r.options)),
            "links": link(base, &format!("roles/{}", r.id)),
        })),
        &r.extra,
    )
}

pub fn service(base: &str, s: &service::Model) -> Value {
    merge(
        obj(
            json!({"id": s.id, "type": s.service_type, "enabled": s.enabled,
                   "links": link(base, &format!("services/{}", s.id))}),
        ),
        &s.extra,
    )
}

pub fn endpoint(base: &str, e: &endpoint::Model) -> Value {
    merge(
        obj(
            json!({"id": e.id, "service_id": e.service_id, "interface": e.interface, "url": e.url,
                   "region_id": e.region_id, "region": e.region_id, "enabled": e.enabled,
                   "links": link(base, &format!("endpoints/{}", e.id))}),
        ),
        &e.extra,
    )
}

pub fn region(base: &str, r: &region::Model) -> Value {
    merge(
        obj(
            json!({"id": r.id, "description": r.description.clone().unwrap_or_default(),
                   "parent_region_id": r.parent_region_id,
                   "links": link(base, &format!("regions/{}", r.id))}),
        ),
        &r.extra,
    )
}

/// `{"<key>": [...], "links": {...}}`, with `truncated` when capped.
pub fn list(base: &str, path: &str, key: &str, items: Vec<Value>, truncated: bool) -> Value {
    let mut v = json!({
        key: items,
        "links": {"self": format!("{base}/{path}"), "previous": null, "next": null},
    });
    if truncated {
        v["truncated"] = json!(true);
    }
    v
}
