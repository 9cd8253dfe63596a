//! Metadata definitions (`/v2/metadefs`): namespaces with resource-type
//! associations, properties, objects and tags. Each namespace is one JSON
//! document. Resource types are Glance's built-in set and those created by
//! associating a namespace with a new name (kept as documents, as Glance
//! keeps them in their table after the association goes).
use crate::ImageService;
use crate::error::{GResult, GlanceError};
use crate::http::Caller;
use crate::model::{bad, ts};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use ferro_common::Error;
use ferro_db::entity::image::metadef;
use ferro_db::{db_err, now_micros};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, QueryOrder, Set};
use serde_json::{Map, Value, json};
use std::sync::Arc;

type St = State<Arc<ImageService>>;
type J = axum::Json<Value>;

pub const RESOURCE_TYPES: &[&str] = &[
    "OS::Glance::Image",
    "OS::Cinder::Volume",
    "OS::Nova::Flavor",
    "OS::Nova::Aggregate",
    "OS::Nova::Server",
    "OS::Trove::Instance",
];

pub fn router() -> Router<Arc<ImageService>> {
    Router::new()
        .route("/v2/metadefs/resource_types", get(resource_types))
        .route("/v2/metadefs/namespaces", get(ns_list).post(ns_create))
        .route(
            "/v2/metadefs/namespaces/{ns}",
            get(ns_show).put(ns_update).delete(ns_delete),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/resource_types",
            get(rt_list).post(rt_add),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/resource_types/{rt}",
            axum::routing::delete(rt_remove),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/properties",
            get(prop_list).post(prop_create).delete(prop_clear),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/properties/{name}",
            get(prop_show).put(prop_update).delete(prop_delete),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/objects",
            get(obj_list).post(obj_create).delete(obj_clear),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/objects/{name}",
            get(obj_show).put(obj_update).delete(obj_delete),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/tags",
            get(tag_list).post(tags_create).delete(tag_clear),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/tags/{name}",
            get(tag_show)
                .post(tag_create)
                .put(tag_update)
                .delete(tag_delete),
        )
}

/// Resource types made by associations (`{name, created_at, updated_at}`).
const CREATED_TYPES: &str = "glance_metadef_resource_type";

async fn resource_types(st: St, caller: Caller) -> GResult<J> {
    caller.check(&st.0, "get_metadefs", &json!({}))?;
    let now = ts(0);
    let mut out: Vec<Value> = RESOURCE_TYPES
        .iter()
        .map(|n| json!({"name": n, "created_at": now, "updated_at": now}))
        .collect();
    let mut created: Vec<Value> =
        st.0.db
            .docs_load(CREATED_TYPES)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
    created.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
    out.extend(created);
    Ok(axum::Json(json!({"resource_types": out})))
}

/// Records resource type `name` if it is neither built in nor recorded
/// (Glance creates it with its first association).
async fn ensure_resource_type(svc: &ImageService, name: &str) -> Result<(), Error> {
    if RESOURCE_TYPES.contains(&name)
        || svc
            .db
            .docs_load(CREATED_TYPES)
            .await?
            .iter()
            .any(|(id, _)| id == name)
    {
        return Ok(());
    }
    let now = ts(now_micros());
    svc.db
        .docs_apply(vec![ferro_db::docs::DocOp::put(
            CREATED_TYPES,
            name,
            json!({"name": name, "created_at": now, "updated_at": now}),
        )])
        .await
}

fn parse(body: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad("Body must be a JSON object.")),
    }
}

fn name_of(m: &Map<String, Value>, key: &str) -> Result<String, Error> {
    m.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.chars().count() <= 80)
        .map(str::to_string)
        .ok_or_else(|| bad(format!("'{key}' is required (at most 80 characters).")))
}

struct Ns {
    row: metadef::Model,
    /// The namespace document without its collections.
    doc: Map<String, Value>,
    rta: Vec<Value>,
    objects: Vec<Value>,
    tags: Vec<Value>,
    props: Map<String, Value>,
}

impl Ns {
    /// Splits a stored body into the document and its typed collections
    /// (a malformed collection reads as empty).
    fn new(row: metadef::Model, mut doc: Map<String, Value>) -> Ns {
        let mut list = |k: &str| match doc.remove(k) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let rta = list("resource_type_associations");
        let objects = list("objects");
        let tags = list("tags");
        let props = match doc.remove("properties") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Ns {
            row,
            doc,
            rta,
            objects,
            tags,
            props,
        }
    }
    fn from_body(row: metadef::Model) -> Ns {
        let doc = serde_json::from_str::<Value>(&row.body)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        Ns::new(row, doc)
    }
    /// The whole document, as stored.
    fn body(&self) -> Map<String, Value> {
        let mut d = self.doc.clone();
        d.insert(
            "resource_type_associations".into(),
            Value::Array(self.rta.clone()),
        );
        d.insert("objects".into(), Value::Array(self.objects.clone()));
        d.insert("tags".into(), Value::Array(self.tags.clone()));
        d.insert("properties".into(), Value::Object(self.props.clone()));
        d
    }
    fn view(&self) -> Value {
        let mut v = Value::Object(self.body());
        v["namespace"] = json!(self.row.namespace);
        v["visibility"] = json!(self.row.visibility);
        v["owner"] = json!(self.row.owner);
        v["self"] = json!(format!("/v2/metadefs/namespaces/{}", self.row.namespace));
        v["schema"] = json!("/v2/schemas/metadefs/namespace");
        if let Value::Object(o) = &mut v {
            for k in ["resource_type_associations", "objects", "tags"] {
                if o.get(k)
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.is_empty())
                {
                    o.remove(k);
                }
            }
            if o.get("properties")
                .and_then(Value::as_object)
                .is_some_and(|m| m.is_empty())
            {
                o.remove("properties");
            }
        }
        v
    }
}

async fn load(svc: &ImageService, caller: &Caller, ns: &str) -> Result<Ns, Error> {
    let row = metadef::Entity::find_by_id(ns.to_string())
        .one(&svc.db.conn)
        .await
        .map_err(db_err)?;
    let row = row
        .filter(|r| {
            r.visibility == "public"
                || caller.admin(svc)
                || r.owner.as_deref() == caller.0.project_id()
        })
        .ok_or_else(|| {
            Error::not_found_msg(format!("Metadata definition namespace={ns} was not found."))
        })?;
    Ok(Ns::from_body(row))
}

async fn store(svc: &ImageService, ns: &mut Ns) -> Result<(), Error> {
    ns.doc.insert("updated_at".into(), json!(ts(now_micros())));
    let mut am = ns.row.clone().into_active_model();
    am.body = Set(Value::Object(ns.body()).to_string());
    am.visibility = Set(ns.row.visibility.clone());
    am.update(&svc.db.conn).await.map_err(db_err)?;
    Ok(())
}

fn stamp(mut v: Map<String, Value>) -> Value {
    let now = ts(now_micros());
    v.entry("created_at").or_insert(json!(now));
    v.insert("updated_at".into(), json!(now));
    Value::Object(v)
}

fn admin(svc: &ImageService, caller: &Caller) -> Result<(), Error> {
    caller.check(svc, "manage_metadefs", &json!({}))
}

async fn ns_list(st: St, caller: Caller) -> GResult<J> {
    let svc = &st.0;
    caller.check(svc, "get_metadefs", &json!({}))?;
    let rows = metadef::Entity::find()
        .order_by_desc(metadef::Column::CreatedAt)
        .all(&svc.db.conn)
        .await
        .map_err(db_err)?;
    let mut out = Vec::new();
    for r in rows {
        if r.visibility == "public"
            || caller.admin(svc)
            || r.owner.as_deref() == caller.0.project_id()
        {
            out.push(Ns::from_body(r).view());
        }
    }
    Ok(axum::Json(
        json!({"namespaces": out, "first": "/v2/metadefs/namespaces", "schema": "/v2/schemas/metadefs/namespaces"}),
    ))
}

async fn ns_create(st: St, caller: Caller, body: Bytes) -> GResult<(StatusCode, J)> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let m = parse(&body)?;
    let name = name_of(&m, "namespace")?;
    let visibility = m
        .get("visibility")
        .and_then(Value::as_str)
        .unwrap_or("private")
        .to_string();
    if !matches!(visibility.as_str(), "public" | "private") {
        return Err(GlanceError(bad("visibility must be public or private.")));
    }
    let mut doc = Map::new();
    for k in ["display_name", "description"] {
        if let Some(v) = m.get(k) {
            doc.insert(k.into(), v.clone());
        }
    }
    doc.insert(
        "protected".into(),
        json!(m.get("protected").and_then(Value::as_bool).unwrap_or(false)),
    );
    let now = ts(now_micros());
    doc.insert("created_at".into(), json!(now));
    doc.insert("updated_at".into(), json!(now));
    let rts: Vec<Value> = m
        .get("resource_type_associations")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_object().cloned())
                .map(stamp)
                .collect()
        })
        .unwrap_or_default();
    doc.insert("resource_type_associations".into(), json!(rts));
    doc.insert(
        "properties".into(),
        m.get("properties")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or(json!({})),
    );
    doc.insert(
        "objects".into(),
        m.get("objects")
            .cloned()
            .filter(Value::is_array)
            .unwrap_or(json!([])),
    );
    doc.insert(
        "tags".into(),
        m.get("tags")
            .cloned()
            .filter(Value::is_array)
            .unwrap_or(json!([])),
    );
    let row = metadef::Model {
        namespace: name.clone(),
        owner: caller.0.project_id().map(str::to_string),
        visibility,
        created_at: now_micros(),
        body: Value::Object(doc.clone()).to_string(),
    };
    row.clone()
        .into_active_model()
        .insert(&svc.db.conn)
        .await
        .map_err(|e| {
            if ferro_db::is_unique_violation(&e) {
                Error::conflict(format!("Namespace {name} already exists."))
            } else {
                db_err(e)
            }
        })?;
    Ok((StatusCode::CREATED, axum::Json(Ns::new(row, doc).view())))
}

async fn ns_show(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<J> {
    Ok(axum::Json(load(&st.0, &caller, &ns).await?.view()))
}

async fn ns_update(st: St, caller: Caller, Path(ns): Path<String>, body: Bytes) -> GResult<J> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let m = parse(&body)?;
    if let Some(new) = m.get("namespace").and_then(Value::as_str)
        && new != ns
    {
        return Err(GlanceError(Error::forbidden(
            "Renaming a namespace is not supported.",
        )));
    }
    for k in ["display_name", "description"] {
        if let Some(v) = m.get(k) {
            n.doc.insert(k.into(), v.clone());
        }
    }
    if let Some(p) = m.get("protected").and_then(Value::as_bool) {
        n.doc.insert("protected".into(), json!(p));
    }
    if let Some(v) = m.get("visibility").and_then(Value::as_str) {
        if !matches!(v, "public" | "private") {
            return Err(GlanceError(bad("visibility must be public or private.")));
        }
        n.row.visibility = v.to_string();
    }
    store(svc, &mut n).await?;
    Ok(axum::Json(n.view()))
}

async fn ns_delete(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let n = load(svc, &caller, &ns).await?;
    if n.doc
        .get("protected")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(GlanceError(Error::forbidden(format!(
            "Namespace {ns} is protected and cannot be deleted."
        ))));
    }
    metadef::Entity::delete_by_id(ns)
        .exec(&svc.db.conn)
        .await
        .map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rt_list(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<J> {
    let n = load(&st.0, &caller, &ns).await?;
    Ok(axum::Json(
        json!({"resource_type_associations": n.rta.clone()}),
    ))
}

async fn rt_add(
    st: St,
    caller: Caller,
    Path(ns): Path<String>,
    body: Bytes,
) -> GResult<(StatusCode, J)> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let m = parse(&body)?;
    let name = name_of(&m, "name")?;
    if n.rta.iter().any(|r| r["name"] == name.as_str()) {
        return Err(GlanceError(Error::conflict(format!(
            "The metadata definition resource-type association of resource-type={name} to namespace={ns} already exists."
        ))));
    }
    ensure_resource_type(svc, &name).await?;
    let item = stamp(m);
    n.rta.push(item.clone());
    store(svc, &mut n).await?;
    Ok((StatusCode::CREATED, axum::Json(item)))
}

async fn rt_remove(
    st: St,
    caller: Caller,
    Path((ns, rt)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let before = n.rta.len();
    n.rta.retain(|r| r["name"] != rt.as_str());
    if n.rta.len() == before {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Resource type {rt} is not associated."
        ))));
    }
    store(svc, &mut n).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prop_list(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<J> {
    let n = load(&st.0, &caller, &ns).await?;
    Ok(axum::Json(json!({"properties": n.props.clone()})))
}

fn prop_body(m: Map<String, Value>) -> Result<(String, Value), Error> {
    let name = name_of(&m, "name")?;
    if m.get("title").and_then(Value::as_str).is_none()
        || m.get("type").and_then(Value::as_str).is_none()
    {
        return Err(bad("Properties need a 'title' and a 'type'."));
    }
    Ok((name, Value::Object(m)))
}

async fn prop_create(
    st: St,
    caller: Caller,
    Path(ns): Path<String>,
    body: Bytes,
) -> GResult<(StatusCode, J)> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let (name, v) = prop_body(parse(&body)?)?;
    if n.props.contains_key(&name) {
        return Err(GlanceError(Error::conflict(format!(
            "Property {name} already exists."
        ))));
    }
    n.props.insert(name, v.clone());
    store(svc, &mut n).await?;
    Ok((StatusCode::CREATED, axum::Json(v)))
}

async fn prop_show(st: St, caller: Caller, Path((ns, name)): Path<(String, String)>) -> GResult<J> {
    let n = load(&st.0, &caller, &ns).await?;
    n.props
        .get(&name)
        .cloned()
        .map(axum::Json)
        .ok_or_else(|| GlanceError(Error::not_found_msg(format!("Property {name} not found."))))
}

async fn prop_update(
    st: St,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> GResult<J> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    if !n.props.contains_key(&name) {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Property {name} not found."
        ))));
    }
    let (new_name, v) = prop_body(parse(&body)?)?;
    n.props.remove(&name);
    n.props.insert(new_name, v.clone());
    store(svc, &mut n).await?;
    Ok(axum::Json(v))
}

async fn prop_delete(
    st: St,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    if n.props.remove(&name).is_none() {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Property {name} not found."
        ))));
    }
    store(svc, &mut n).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prop_clear(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    n.props.clear();
    store(svc, &mut n).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn obj_view(ns: &str, mut v: Value) -> Value {
    let name = v["name"].as_str().unwrap_or_default().to_string();
    v["self"] = json!(format!("/v2/metadefs/namespaces/{ns}/objects/{name}"));
    v["schema"] = json!("/v2/schemas/metadefs/object");
    v
}

async fn obj_list(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<J> {
    let n = load(&st.0, &caller, &ns).await?;
    let objs: Vec<Value> = n
        .objects
        .iter()
        .cloned()
        .map(|o| obj_view(&ns, o))
        .collect();
    Ok(axum::Json(
        json!({"objects": objs, "schema": "v2/schemas/metadefs/objects"}),
    ))
}

fn obj_body(m: Map<String, Value>) -> Result<(String, Value), Error> {
    let name = name_of(&m, "name")?;
    let mut m = m;
    m.entry("required").or_insert(json!([]));
    m.entry("properties").or_insert(json!({}));
    Ok((name, stamp(m)))
}

async fn obj_create(
    st: St,
    caller: Caller,
    Path(ns): Path<String>,
    body: Bytes,
) -> GResult<(StatusCode, J)> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let (name, v) = obj_body(parse(&body)?)?;
    if n.objects.iter().any(|o| o["name"] == name.as_str()) {
        return Err(GlanceError(Error::conflict(format!(
            "Object {name} already exists."
        ))));
    }
    n.objects.push(v.clone());
    store(svc, &mut n).await?;
    Ok((StatusCode::CREATED, axum::Json(obj_view(&ns, v))))
}

async fn obj_show(st: St, caller: Caller, Path((ns, name)): Path<(String, String)>) -> GResult<J> {
    let n = load(&st.0, &caller, &ns).await?;
    let o = n
        .objects
        .iter()
        .find(|o| o["name"] == name.as_str())
        .cloned();
    o.map(|o| axum::Json(obj_view(&ns, o)))
        .ok_or_else(|| GlanceError(Error::not_found_msg(format!("Object {name} not found."))))
}

async fn obj_update(
    st: St,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> GResult<J> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let Some(pos) = n.objects.iter().position(|o| o["name"] == name.as_str()) else {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Object {name} not found."
        ))));
    };
    let (_, mut v) = obj_body(parse(&body)?)?;
    v["created_at"] = n.objects[pos]["created_at"].clone();
    n.objects[pos] = v.clone();
    store(svc, &mut n).await?;
    Ok(axum::Json(obj_view(&ns, v)))
}

async fn obj_delete(
    st: St,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let before = n.objects.len();
    n.objects.retain(|o| o["name"] != name.as_str());
    if n.objects.len() == before {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Object {name} not found."
        ))));
    }
    store(svc, &mut n).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn obj_clear(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    n.objects.clear();
    store(svc, &mut n).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_list(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<J> {
    let n = load(&st.0, &caller, &ns).await?;
    Ok(axum::Json(json!({"tags": n.tags.clone()})))
}

fn duplicate_tag(name: &str, ns: &str) -> GlanceError {
    GlanceError(Error::conflict(format!(
        "A metadata tag with name={name} already exists in namespace={ns}. (Please note that metadata tag names are case insensitive)."
    )))
}

fn same_tag(t: &Value, name: &str) -> bool {
    t["name"]
        .as_str()
        .is_some_and(|x| x.to_lowercase() == name.to_lowercase())
}

/// `POST .../tags {"tags": [...]}`: as Glance, the list replaces the
/// namespace's tags, or with `X-Openstack-Append: true` is added to them;
/// an empty list changes nothing. Names are unique regardless of case.
async fn tags_create(
    st: St,
    caller: Caller,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> GResult<(StatusCode, J)> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let m = parse(&body)?;
    let items = m
        .get("tags")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("'tags' must be an array."))?;
    let append = headers
        .get("x-openstack-append")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            matches!(
                v.to_lowercase().as_str(),
                "true" | "1" | "yes" | "on" | "y" | "t"
            )
        });
    let mut kept: Vec<Value> = if append { n.tags.clone() } else { Vec::new() };
    let mut names: Vec<Value> = Vec::new();
    for t in items {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty() && x.chars().count() <= 255)
            .ok_or_else(|| bad("Each tag needs a name (at most 255 characters)."))?;
        if kept.iter().any(|x| same_tag(x, name)) {
            return Err(duplicate_tag(name, &ns));
        }
        kept.push(stamp(
            json!({"name": name})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ));
        names.push(json!({"name": name}));
    }
    if !items.is_empty() {
        n.tags = kept;
        store(svc, &mut n).await?;
    }
    Ok((StatusCode::CREATED, axum::Json(json!({"tags": names}))))
}

async fn tag_clear(st: St, caller: Caller, Path(ns): Path<String>) -> GResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    n.tags.clear();
    store(svc, &mut n).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_show(st: St, caller: Caller, Path((ns, name)): Path<(String, String)>) -> GResult<J> {
    let n = load(&st.0, &caller, &ns).await?;
    let t = n.tags.iter().find(|t| t["name"] == name.as_str()).cloned();
    t.map(axum::Json)
        .ok_or_else(|| GlanceError(Error::not_found_msg(format!("Tag {name} not found."))))
}

async fn tag_create(
    st: St,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> GResult<(StatusCode, J)> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    if n.tags.iter().any(|t| same_tag(t, &name)) {
        return Err(duplicate_tag(&name, &ns));
    }
    let t = stamp(
        json!({"name": name})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    n.tags.push(t.clone());
    store(svc, &mut n).await?;
    Ok((StatusCode::CREATED, axum::Json(t)))
}

async fn tag_update(
    st: St,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> GResult<J> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let new = name_of(&parse(&body)?, "name")?;
    let Some(pos) = n.tags.iter().position(|t| t["name"] == name.as_str()) else {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Tag {name} not found."
        ))));
    };
    let mut t = n.tags[pos].clone();
    t["name"] = json!(new);
    t["updated_at"] = json!(ts(now_micros()));
    n.tags[pos] = t.clone();
    store(svc, &mut n).await?;
    Ok(axum::Json(t))
}

async fn tag_delete(
    st: St,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let svc = &st.0;
    admin(svc, &caller)?;
    let mut n = load(svc, &caller, &ns).await?;
    let before = n.tags.len();
    n.tags.retain(|t| t["name"] != name.as_str());
    if n.tags.len() == before {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Tag {name} not found."
        ))));
    }
    store(svc, &mut n).await?;
    Ok(StatusCode::NO_CONTENT)
}
