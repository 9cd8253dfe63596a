//! Image v2 routes under `/image`.
use crate::ImageService;
use crate::error::{GResult, GlanceError};
use crate::model::{self, BASE, READ_ONLY, bad, check_value, props, set_value, tags, view};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use ferro_auth::RequestContext;
use ferro_common::Error;
use ferro_db::entity::image::{image, member};
use ferro_db::{db_err, now_micros};
use futures_util::StreamExt;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde_json::{Value, json};
use std::sync::Arc;

pub(crate) type St = State<Arc<ImageService>>;

/// The authenticated caller (from `X-Auth-Token`).
pub struct Caller(pub RequestContext);

impl FromRequestParts<Arc<ImageService>> for Caller {
    type Rejection = GlanceError;
    async fn from_request_parts(
        parts: &mut Parts,
        svc: &Arc<ImageService>,
    ) -> Result<Self, GlanceError> {
        let unauth = || {
            GlanceError(Error::unauthorized(
                "This server could not verify that you are authorized to access the document you requested.",
            ))
        };
        let tok = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .ok_or_else(unauth)?;
        let vt = svc
            .validator
            .validate(tok, false)
            .await
            .map_err(|e| match e {
                Error::Internal { .. } => GlanceError(e),
                _ => unauth(),
            })?;
        if vt.project.is_none() {
            return Err(GlanceError(Error::forbidden(
                "Image API calls need a project-scoped token.",
            )));
        }
        Ok(Caller(RequestContext::new(vt, tok.to_string())))
    }
}

impl Caller {
    pub(crate) fn project(&self) -> String {
        self.0.project_id().unwrap_or_default().to_string()
    }
    pub(crate) fn admin(&self, svc: &ImageService) -> bool {
        svc.policy
            .enforce("context_is_admin", &json!({}), &self.0.creds)
    }
    pub(crate) fn check(
        &self,
        svc: &ImageService,
        rule: &str,
        target: &Value,
    ) -> Result<(), Error> {
        if svc.policy.enforce(rule, target, &self.0.creds) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "You are not authorized to complete {rule} action."
            )))
        }
    }
}

pub(crate) fn target(img: &image::Model) -> Value {
    json!({"owner": img.owner, "visibility": img.visibility, "image_id": img.id})
}

pub fn router() -> Router<Arc<ImageService>> {
    Router::new()
        .route("/v2/images", get(list).post(create))
        .route("/v2/images/", get(not_found).delete(not_found))
        .route("/v2/images/{id}", get(show).patch(update).delete(remove))
        .route("/v2/images/{id}/file", put(upload).get(download))
        .route("/v2/images/{id}/stage", put(crate::import::stage))
        .route("/v2/images/{id}/import", post(crate::import::import))
        .route(
            "/v2/stores/{store}/{id}",
            axum::routing::delete(crate::import::delete_from_store),
        )
        .route("/v2/info/stores", get(crate::import::info_stores))
        .route(
            "/v2/info/stores/detail",
            get(crate::import::info_stores_detail),
        )
        .route("/v2/images/{id}/actions/deactivate", post(deactivate))
        .route("/v2/images/{id}/actions/reactivate", post(reactivate))
        .route(
            "/v2/images/{id}/tags/{tag}",
            put(tag_add).delete(tag_remove),
        )
        .route(
            "/v2/images/{id}/members",
            get(members_list).post(member_add),
        )
        .route(
            "/v2/images/{id}/members/{member}",
            get(member_show).put(member_update).delete(member_remove),
        )
        .route("/v2/images/{id}/tasks", get(image_tasks))
        .route("/v2/schemas/{kind}", get(schema))
        .route("/v2/schemas/metadefs/{kind}", get(metadef_schema))
        .route("/v2/info/import", get(info_import))
        .route("/v2/info/usage", get(info_usage))
        .route("/v2/tasks", get(tasks_list).post(task_create))
        .merge(crate::metadefs::router())
}

async fn not_found() -> GlanceError {
    GlanceError(Error::not_found_msg("The resource could not be found."))
}

async fn schema(Path(kind): Path<String>) -> GResult<axum::Json<Value>> {
    let doc = match kind.as_str() {
        "image" => crate::schemas::image(),
        "images" => crate::schemas::images(),
        "member" => crate::schemas::member(),
        "members" => crate::schemas::members(),
        "task" => crate::schemas::task(),
        "tasks" => crate::schemas::tasks(),
        _ => return Err(GlanceError(Error::not_found_msg("No such schema."))),
    };
    Ok(axum::Json(doc))
}

async fn metadef_schema(Path(kind): Path<String>) -> GResult<axum::Json<Value>> {
    crate::schemas::metadef(&kind)
        .map(axum::Json)
        .ok_or_else(|| GlanceError(Error::not_found_msg("No such schema.")))
}

async fn info_import(st: St) -> axum::Json<Value> {
    axum::Json(
        json!({"import-methods": {"description": "Import methods available.", "type": "array",
                                         "value": st.0.cfg.image.import_methods}}),
    )
}

async fn info_usage(st: St, caller: Caller) -> GResult<axum::Json<Value>> {
    let svc = &st.0;
    let mine = image::Entity::find()
        .filter(image::Column::Owner.eq(caller.project()))
        .all(svc.db.conn_ref())
        .await
        .map_err(db_err)?;
    let total: i64 = mine.iter().filter_map(|i| i.size).sum();
    let staging = mine
        .iter()
        .filter(|i| i.status == "uploading" || i.status == "importing")
        .count();
    let q = &svc.cfg.image;
    Ok(axum::Json(json!({"usage": {
        "image_size_total": {"limit": q.image_size_quota, "usage": total},
        "image_count_total": {"limit": q.image_count_quota, "usage": mine.len()},
        "image_stage_total": {"limit": -1, "usage": 0},
        "image_count_uploading": {"limit": -1, "usage": staging},
    }})))
}

pub(crate) trait ConnRef {
    fn conn_ref(&self) -> &sea_orm::DatabaseConnection;
}
impl ConnRef for ferro_db::Db {
    fn conn_ref(&self) -> &sea_orm::DatabaseConnection {
        &self.conn
    }
}

// ---- lookups and visibility ---------------------------------------------

pub(crate) async fn load(svc: &ImageService, id: &str) -> Result<image::Model, Error> {
    let row = image::Entity::find_by_id(id.to_string())
        .one(svc.db.conn_ref())
        .await
        .map_err(db_err)?;
    match row {
        Some(i) if i.status != "deleted" => Ok(i),
        _ => Err(Error::not_found_msg(format!("No image found with ID {id}"))),
    }
}

async fn member_of(
    svc: &ImageService,
    image_id: &str,
    project: &str,
) -> Result<Option<member::Model>, Error> {
    member::Entity::find_by_id((image_id.to_string(), project.to_string()))
        .one(svc.db.conn_ref())
        .await
        .map_err(db_err)
}

/// The image if the caller may see it; invisible images are 404, as Glance.
pub(crate) async fn visible(
    svc: &ImageService,
    caller: &Caller,
    id: &str,
) -> Result<image::Model, Error> {
    let img = load(svc, id).await?;
    caller.check(svc, "get_image", &target(&img))?;
    let p = caller.project();
    let ok = caller.admin(svc)
        || img.owner.as_deref() == Some(p.as_str())
        || img.visibility == "public"
        || img.visibility == "community"
        || (img.visibility == "shared" && member_of(svc, id, &p).await?.is_some());
    if ok {
        Ok(img)
    } else {
        Err(Error::not_found_msg(format!("No image found with ID {id}")))
    }
}

/// Saves `new` if nobody changed the row since `old` was read.
pub(crate) async fn save(
    svc: &ImageService,
    old: &image::Model,
    mut new: image::Model,
) -> Result<image::Model, Error> {
    new.generation = old.generation + 1;
    new.updated_at = now_micros().max(old.updated_at);
    let res = image::Entity::update_many()
        .set(new.clone().into_active_model().reset_all())
        .filter(image::Column::Id.eq(old.id.as_str()))
        .filter(image::Column::Generation.eq(old.generation))
        .exec(svc.db.conn_ref())
        .await
        .map_err(db_err)?;
    if res.rows_affected == 1 {
        svc.bump();
        Ok(new)
    } else {
        Err(Error::conflict(format!(
            "Image {} was changed by another request; retry.",
            old.id
        )))
    }
}

// ---- create / show / list / update / delete -----------------------------

fn reserved(key: &str) -> bool {
    key.starts_with("os_glance") || matches!(key, "location" | "deleted" | "deleted_at")
}

async fn create(st: St, caller: Caller, headers: HeaderMap, body: Bytes) -> GResult<Response> {
    let svc = &st.0;
    let v: Value = serde_json::from_slice(&body).map_err(|_| bad("Body must be a JSON object."))?;
    let Value::Object(m) = v else {
        return Err(GlanceError(bad("Body must be a JSON object.")));
    };
    for k in m.keys() {
        if reserved(k) {
            return Err(GlanceError(Error::forbidden(format!(
                "Attribute '{k}' is reserved."
            ))));
        }
        if READ_ONLY.contains(&k.as_str()) && k != "id" {
            return Err(GlanceError(Error::forbidden(format!(
                "Attribute '{k}' is read-only."
            ))));
        }
    }
    let id = match m.get("id") {
        None | Some(Value::Null) => ferro_common::new_uuid(),
        Some(Value::String(s)) if uuid_like(s) => s.to_lowercase(),
        Some(_) => return Err(GlanceError(bad("Invalid value for 'id': must be a UUID."))),
    };
    let now = now_micros();
    let mut img = image::Model {
        id: id.clone(),
        name: None,
        status: "queued".into(),
        visibility: "shared".into(),
        protected: false,
        os_hidden: false,
        owner: Some(caller.project()),
        disk_format: None,
        container_format: None,
        size: None,
        virtual_size: None,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        min_disk: 0,
        min_ram: 0,
        created_at: now,
        updated_at: now,
        properties: "{}".into(),
        tags: "[]".into(),
        location: None,
        staged: None,
        stores: "[]".into(),
        generation: 1,
    };
    for (k, val) in &m {
        if k == "id" {
            continue;
        }
        check_value(k, val)?;
        set_value(&mut img, k, val);
    }
    caller.check(svc, "add_image", &target(&img))?;
    if img.owner.as_deref() != Some(caller.project().as_str()) {
        caller.check(svc, "set_image_owner", &target(&img))?;
    }
    match img.visibility.as_str() {
        "public" => caller.check(svc, "publicize_image", &target(&img))?,
        "community" => caller.check(svc, "communitize_image", &target(&img))?,
        _ => {}
    }
    let quota = svc.cfg.image.image_count_quota;
    if quota >= 0 {
        let n = image::Entity::find()
            .filter(image::Column::Owner.eq(img.owner.clone()))
            .all(svc.db.conn_ref())
            .await
            .map_err(db_err)?
            .len();
        if n as i64 >= quota {
            return Err(GlanceError(Error::TooLarge {
                message: format!("Maximum number of images ({quota}) exceeded."),
            }));
        }
    }
    img.clone()
        .into_active_model()
        .insert(svc.db.conn_ref())
        .await
        .map_err(|e| {
            if ferro_db::is_unique_violation(&e) {
                Error::conflict(format!("Image with identifier {id} already exists!"))
            } else {
                db_err(e)
            }
        })?;
    svc.bump();
    let mut resp = (StatusCode::CREATED, axum::Json(view(&img))).into_response();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    if let Ok(v) = HeaderValue::from_str(&format!("http://{host}/image/v2/images/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&svc.cfg.image.import_methods.join(",")) {
        resp.headers_mut()
            .insert("openstack-image-import-methods", v);
    }
    Ok(resp)
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

async fn show(st: St, caller: Caller, Path(id): Path<String>) -> GResult<axum::Json<Value>> {
    Ok(axum::Json(view(&visible(&st.0, &caller, &id).await?)))
}

/// One parsed list query.
struct ListQuery {
    pairs: Vec<(String, String)>,
}

impl ListQuery {
    fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, b)| b.as_str())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(a, _)| a == k)
            .map(|(_, b)| b.as_str())
            .collect()
    }
}

fn parse_query(raw: Option<String>) -> ListQuery {
    let mut pairs = Vec::new();
    for part in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((urldecode(k), urldecode(v)));
    }
    ListQuery { pairs }
}

fn urldecode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
    "virtual_size",
    "min_disk",
    "min_ram",
    "owner",
    "visibility",
];

fn sort_value(img: &image::Model, key: &str) -> (u8, String, i64) {
    // (null-rank, text, number): NULLs sort first ascending, as SQL does.
    let s = |o: &Option<String>| match o {
        Some(v) => (1, v.clone(), 0),
        None => (0, String::new(), 0),
    };
    let n = |o: Option<i64>| match o {
        Some(v) => (1, String::new(), v),
        None => (0, String::new(), 0),
    };
    match key {
        "name" => s(&img.name),
        "status" => (1, img.status.clone(), 0),
        "container_format" => s(&img.container_format),
        "disk_format" => s(&img.disk_format),
        "owner" => s(&img.owner),
        "visibility" => (1, img.visibility.clone(), 0),
        "size" => n(img.size),
        "virtual_size" => n(img.virtual_size),
        "min_disk" => n(Some(img.min_disk)),
        "min_ram" => n(Some(img.min_ram)),
        "created_at" => n(Some(img.created_at)),
        "updated_at" => n(Some(img.updated_at)),
        _ => (1, img.id.clone(), 0),
    }
}

fn parse_sort(q: &ListQuery) -> Result<Vec<(String, bool)>, Error> {
    let mut out = Vec::new();
    if let Some(sort) = q.get("sort") {
        if q.get("sort_key").is_some() || q.get("sort_dir").is_some() {
            return Err(bad(
                "The 'sort' parameter cannot be combined with 'sort_key' or 'sort_dir'.",
            ));
        }
        for part in sort.split(',') {
            let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
            let desc = match d {
                "asc" => false,
                "desc" => true,
                _ => return Err(bad(format!("Invalid sort direction: {d}"))),
            };
            if !SORT_KEYS.contains(&k) {
                return Err(bad(format!("Invalid sort key: {k}")));
            }
            out.push((k.to_string(), desc));
        }
    } else {
        let keys = q.all("sort_key");
        let dirs = q.all("sort_dir");
        for (i, k) in keys.iter().enumerate() {
            if !SORT_KEYS.contains(k) {
                return Err(bad(format!("Invalid sort key: {k}")));
            }
            let d = dirs.get(i).or(dirs.first()).copied().unwrap_or("desc");
            let desc = match d {
                "asc" => false,
                "desc" => true,
                _ => return Err(bad(format!("Invalid sort direction: {d}"))),
            };
            out.push((k.to_string(), desc));
        }
        if keys.is_empty()
            && let Some(d) = dirs.first()
        {
            if !matches!(*d, "asc" | "desc") {
                return Err(bad(format!("Invalid sort direction: {d}")));
            }
            out.push(("created_at".into(), *d == "desc"));
        }
    }
    if out.is_empty() {
        out.push(("created_at".into(), true));
    }
    if !out.iter().any(|(k, _)| k == "id") {
        let desc = out.first().map(|(_, d)| *d).unwrap_or(true);
        out.push(("id".into(), desc));
    }
    Ok(out)
}

/// `op:value` filters (`in:a,b`, `gt:...`) as Glance accepts them.
fn op_match(actual: Option<String>, spec: &str, numeric: bool) -> Result<bool, Error> {
    let (op, val) = match spec.split_once(':') {
        Some((o, v)) if matches!(o, "in" | "eq" | "neq" | "gt" | "gte" | "lt" | "lte") => (o, v),
        _ => ("eq", spec),
    };
    let Some(a) = actual else { return Ok(false) };
    if op == "in" {
        return Ok(val.split(',').any(|x| x == a));
    }
    let cmp = if numeric {
        let x: i64 = val
            .parse()
            .map_err(|_| bad(format!("Invalid filter value {val}")))?;
        let y: i64 = a.parse().unwrap_or(0);
        y.cmp(&x)
    } else {
        a.as_str().cmp(val)
    };
    Ok(match op {
        "eq" => cmp.is_eq(),
        "neq" => cmp.is_ne(),
        "gt" => cmp.is_gt(),
        "gte" => cmp.is_ge(),
        "lt" => cmp.is_lt(),
        _ => cmp.is_le(),
    })
}

fn time_match(actual: i64, spec: &str) -> Result<bool, Error> {
    let (op, val) = spec
        .split_once(':')
        .ok_or_else(|| bad(format!("Invalid time filter {spec}")))?;
    let t = ferro_common::time::parse_time(val)
        .ok_or_else(|| bad(format!("Invalid time value {val}")))?
        .timestamp_micros();
    // Glance compares at second resolution.
    let a = actual / 1_000_000;
    let t = t / 1_000_000;
    Ok(match op {
        "eq" => a == t,
        "neq" => a != t,
        "gt" => a > t,
        "gte" => a >= t,
        "lt" => a < t,
        "lte" => a <= t,
        _ => return Err(bad(format!("Invalid time filter operator {op}"))),
    })
}

async fn list(st: St, caller: Caller, RawQuery(raw): RawQuery) -> GResult<axum::Json<Value>> {
    let svc = &st.0;
    caller.check(svc, "get_images", &json!({}))?;
    let q = parse_query(raw.clone());
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad("limit param must be an integer"))?
            .min(1000) as usize,
        None => 25,
    };
    let sort = parse_sort(&q)?;
    if q.get("changes-since").is_some() {
        return Err(GlanceError(bad(
            "Invalid filter: changes-since is not supported in v2.",
        )));
    }
    let visibility = q.get("visibility");
    if let Some(v) = visibility
        && !matches!(v, "public" | "private" | "shared" | "community" | "all")
    {
        return Err(GlanceError(bad(format!("Invalid visibility value: {v}"))));
    }
    let member_status = q.get("member_status").unwrap_or("accepted");
    if !matches!(member_status, "pending" | "accepted" | "rejected" | "all") {
        return Err(GlanceError(bad(format!(
            "Invalid member_status value: {member_status}"
        ))));
    }
    let os_hidden = match q.get("os_hidden") {
        None => false,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(GlanceError(bad(format!("Invalid os_hidden value: {v}")))),
        },
    };
    let p = caller.project();
    let admin = caller.admin(svc);
    // Visibility, from the in-memory snapshot (no query per list call).
    let snap = svc.snapshot().await?;
    let shared_ids: std::collections::HashSet<&str> = snap
        .members
        .iter()
        .filter(|m| m.member_id == p && (member_status == "all" || m.status == member_status))
        .map(|m| m.image_id.as_str())
        .collect();
    let member_filter = q.get("member_status").is_some();
    let rows = snap.images.iter().filter(|img| {
        let own = img.owner.as_deref() == Some(p.as_str());
        let shared_with_me = img.visibility == "shared" && shared_ids.contains(img.id.as_str());
        let can_see = admin
            || own
            || img.visibility == "public"
            || img.visibility == "community"
            || shared_with_me;
        let wanted = match visibility {
            Some("all") => true,
            Some("shared") => {
                img.visibility == "shared"
                    && (if member_filter || !admin {
                        shared_with_me || (own && !member_filter)
                    } else {
                        true
                    })
            }
            Some(v) => img.visibility == v,
            None => img.visibility != "community" || own,
        };
        img.os_hidden == os_hidden && can_see && wanted
    });
    let tags_wanted = q.all("tag");
    let mut out = Vec::with_capacity(snap.images.len());
    'rows: for img in rows {
        for (k, v) in &q.pairs {
            let ok = match k.as_str() {
                "limit" | "marker" | "sort" | "sort_key" | "sort_dir" | "visibility"
                | "member_status" | "os_hidden" | "tag" => true,
                "name" => op_match(img.name.clone(), v, false)?,
                "id" => op_match(Some(img.id.clone()), v, false)?,
                "status" => op_match(Some(img.status.clone()), v, false)?,
                "owner" => op_match(img.owner.clone(), v, false)?,
                "container_format" => op_match(img.container_format.clone(), v, false)?,
                "disk_format" => op_match(img.disk_format.clone(), v, false)?,
                "checksum" => op_match(img.checksum.clone(), v, false)?,
                "os_hash_value" => op_match(img.os_hash_value.clone(), v, false)?,
                "protected" => match v.to_ascii_lowercase().as_str() {
                    "true" => img.protected,
                    "false" => !img.protected,
                    _ => return Err(GlanceError(bad(format!("Invalid protected value: {v}")))),
                },
                "size" => op_match(img.size.map(|n| n.to_string()), v, true)?,
                "virtual_size" => op_match(img.virtual_size.map(|n| n.to_string()), v, true)?,
                "min_ram" => op_match(Some(img.min_ram.to_string()), v, true)?,
                "min_disk" => op_match(Some(img.min_disk.to_string()), v, true)?,
                "created_at" => time_match(img.created_at, v)?,
                "updated_at" => time_match(img.updated_at, v)?,
                k if k.ends_with("_min") || k.ends_with("_max") => {
                    let col = &k[..k.len() - 4];
                    let bound: i64 = v
                        .parse()
                        .map_err(|_| bad(format!("Invalid value for {k}: {v}")))?;
                    let actual = match col {
                        "size" => img.size,
                        "virtual_size" => img.virtual_size,
                        "min_ram" => Some(img.min_ram),
                        "min_disk" => Some(img.min_disk),
                        _ => return Err(GlanceError(bad(format!("Invalid filter {k}")))),
                    };
                    match actual {
                        Some(a) if k.ends_with("_min") => a >= bound,
                        Some(a) => a <= bound,
                        None => false,
                    }
                }
                other if model::HIDDEN.contains(&other) => false,
                other => props(img).get(other).and_then(Value::as_str) == Some(v.as_str()),
            };
            if !ok {
                continue 'rows;
            }
        }
        if tags_wanted.is_empty() || {
            let t = tags(img);
            tags_wanted.iter().all(|w| t.iter().any(|x| x == w))
        } {
            out.push(img);
        }
    }
    out.sort_by(|a, b| {
        for (k, desc) in &sort {
            let o = sort_value(a, k).cmp(&sort_value(b, k));
            let o = if *desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    let start = match q.get("marker") {
        Some(m) => out
            .iter()
            .position(|i| i.id == m)
            .map(|i| i + 1)
            .ok_or_else(|| bad(format!("marker {m} could not be found.")))?,
        None => 0,
    };
    let page: Vec<&image::Model> = out.iter().skip(start).take(limit).copied().collect();
    let mut body = json!({
        "images": page.iter().map(|i| view(i)).collect::<Vec<_>>(),
        "schema": "/v2/schemas/images",
    });
    let base_q: Vec<String> = q
        .pairs
        .iter()
        .filter(|(k, _)| k != "marker")
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect();
    body["first"] = json!(if base_q.is_empty() {
        "/v2/images".to_string()
    } else {
        format!("/v2/images?{}", base_q.join("&"))
    });
    if page.len() == limit
        && limit > 0
        && start + limit < out.len()
        && let Some(last) = page.last()
    {
        let mut nq = base_q.clone();
        nq.push(format!("marker={}", last.id));
        body["next"] = json!(format!("/v2/images?{}", nq.join("&")));
    }
    Ok(axum::Json(body))
}

/// A JSON-patch operation, from either media type.
struct PatchOp {
    op: String,
    path: String,
    value: Option<Value>,
}

fn parse_patch(ct: &str, body: &[u8]) -> Result<(Vec<PatchOp>, bool), Error> {
    let v21 = ct.starts_with("application/openstack-images-v2.1-json-patch");
    let v20 = ct.starts_with("application/openstack-images-v2.0-json-patch");
    if !v21 && !v20 {
        return Err(Error::UnsupportedMediaType {
            message: "Content type not supported; use application/openstack-images-v2.1-json-patch"
                .into(),
        });
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| bad("Request body must be a JSON array of operations."))?;
    let Value::Array(items) = v else {
        return Err(bad("Request body must be a JSON array of operations."));
    };
    let mut ops = Vec::new();
    for it in items {
        let Value::Object(m) = it else {
            return Err(bad("Operations must be JSON objects."));
        };
        let (op, path) = if v21 {
            let op = m
                .get("op")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("Operation objects must contain 'op'."))?;
            let path = m
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("Operation objects must contain 'path'."))?;
            (op.to_string(), path.to_string())
        } else {
            let found: Vec<(&String, &Value)> = m
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "add" | "replace" | "remove"))
                .collect();
            if found.len() != 1 {
                return Err(bad(
                    "Operation objects must contain exactly one of add, replace, remove.",
                ));
            }
            let path = found[0]
                .1
                .as_str()
                .ok_or_else(|| bad("Operation paths must be strings."))?;
            (found[0].0.clone(), path.to_string())
        };
        if !matches!(op.as_str(), "add" | "replace" | "remove") {
            return Err(bad(format!("Invalid operation: {op}")));
        }
        let value = m.get("value").cloned();
        if op != "remove" && value.is_none() {
            return Err(bad("Operation objects must contain 'value'."));
        }
        ops.push(PatchOp { op, path, value });
    }
    Ok((ops, v20))
}

fn decode_path(p: &str) -> Result<String, Error> {
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| bad(format!("Invalid JSON pointer: {p}")))?;
    if rest.contains('/') {
        return Err(bad(format!(
            "Invalid JSON pointer for an image attribute: {p}"
        )));
    }
    Ok(rest.replace("~1", "/").replace("~0", "~"))
}

async fn update(
    st: St,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> GResult<Response> {
    let svc = &st.0;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (ops, v20) = match parse_patch(&ct, &body) {
        Ok(x) => x,
        Err(e @ Error::UnsupportedMediaType { .. }) => {
            let mut r = GlanceError(e).into_response();
            r.headers_mut().insert(
                "accept-patch",
                HeaderValue::from_static("application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch"),
            );
            return Ok(r);
        }
        Err(e) => return Err(GlanceError(e)),
    };
    let old = visible(svc, &caller, &id).await?;
    caller.check(svc, "modify_image", &target(&old))?;
    let mut img = old.clone();
    for op in ops {
        if op.path.starts_with("/locations") {
            return Err(GlanceError(Error::forbidden(
                "Image locations cannot be managed here.",
            )));
        }
        let key = decode_path(&op.path)?;
        if reserved(&key) {
            return Err(GlanceError(Error::forbidden(format!(
                "Attribute '{key}' is reserved."
            ))));
        }
        if READ_ONLY.contains(&key.as_str()) {
            return Err(GlanceError(Error::forbidden(format!(
                "Attribute '{key}' is read-only."
            ))));
        }
        let exists = BASE.contains(&key.as_str()) || props(&img).contains_key(&key);
        match op.op.as_str() {
            "remove" => model::remove_value(&mut img, &key)?,
            o => {
                let val = op.value.unwrap_or(Value::Null);
                if o == "replace"
                    && !BASE.contains(&key.as_str())
                    && !props(&img).contains_key(&key)
                {
                    return Err(GlanceError(Error::conflict(format!(
                        "Property {key} does not exist."
                    ))));
                }
                if o == "add"
                    && v20
                    && exists
                    && (!BASE.contains(&key.as_str()) || is_set(&img, &key))
                {
                    return Err(GlanceError(Error::conflict(format!(
                        "Property {key} already present."
                    ))));
                }
                check_value(&key, &val)?;
                match key.as_str() {
                    "owner" => caller.check(svc, "set_image_owner", &target(&img))?,
                    "visibility" if val.as_str() == Some("public") => {
                        caller.check(svc, "publicize_image", &target(&img))?
                    }
                    "visibility" if val.as_str() == Some("community") => {
                        caller.check(svc, "communitize_image", &target(&img))?
                    }
                    "disk_format" | "container_format"
                        if !matches!(img.status.as_str(), "queued" | "importing" | "uploading") =>
                    {
                        return Err(GlanceError(Error::forbidden(format!(
                            "Attribute {key} can be only replaced for a queued image."
                        ))));
                    }
                    _ => {}
                }
                set_value(&mut img, &key, &val);
            }
        }
    }
    let saved = save(svc, &old, img).await?;
    Ok(axum::Json(view(&saved)).into_response())
}

fn is_set(img: &image::Model, key: &str) -> bool {
    match key {
        "name" => img.name.is_some(),
        "disk_format" => img.disk_format.is_some(),
        "container_format" => img.container_format.is_some(),
        "owner" => img.owner.is_some(),
        _ => true,
    }
}

async fn remove(st: St, caller: Caller, Path(id): Path<String>) -> GResult<StatusCode> {
    let svc = &st.0;
    let mut img = visible(svc, &caller, &id).await?;
    // The row goes only as it was read, so the data removed below is all
    // there is (an import may record a copy meanwhile: then read it again).
    let mut attempts = 0;
    loop {
        caller.check(svc, "delete_image", &target(&img))?;
        if img.protected {
            return Err(GlanceError(Error::forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            ))));
        }
        let gone = image::Entity::delete_many()
            .filter(image::Column::Id.eq(id.as_str()))
            .filter(image::Column::Generation.eq(img.generation))
            .exec(svc.db.conn_ref())
            .await
            .map_err(db_err)?;
        if gone.rows_affected == 1 {
            break;
        }
        attempts += 1;
        if attempts == 20 {
            return Err(GlanceError(Error::conflict(format!(
                "Image {id} keeps changing; retry the delete."
            ))));
        }
        img = visible(svc, &caller, &id).await?;
    }
    member::Entity::delete_many()
        .filter(member::Column::ImageId.eq(id.as_str()))
        .exec(svc.db.conn_ref())
        .await
        .map_err(db_err)?;
    svc.bump();
    let staged = img
        .staged
        .iter()
        .map(|key| (svc.store.clone(), key.clone()));
    let copies = model::locations(&img)
        .into_iter()
        .filter_map(|l| Some((svc.backend(&l.store)?.store.clone(), l.key)));
    for (store, key) in staged.chain(copies) {
        if let Err(e) = store.delete(&key).await {
            tracing::warn!(image = %id, error = %e, "image data not removed from the store");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- data -----------------------------------------------------------------

/// What a streamed upload produced.
pub(crate) struct Received {
    pub key: String,
    pub size: u64,
    pub md5: String,
    pub sha512: String,
    pub virtual_size: Option<u64>,
}

/// Streams `body` into the store under `key`, hashing and inspecting as it
/// goes. Nothing is visible in the store unless everything checks out.
pub(crate) async fn receive(
    svc: &ImageService,
    store: &dyn crate::store::ImageStore,
    key: &str,
    mut body: impl futures_util::Stream<Item = Result<Bytes, Error>> + Unpin,
    declared_len: Option<u64>,
    disk_format: Option<&str>,
) -> Result<Received, Error> {
    let mut writer = store.writer(key).await.map_err(Error::internal)?;
    // The two digests run on their own threads, fed the same (refcounted)
    // chunks, so hashing uses both cores while this task reads and writes.
    let (md5_tx, md5_done) = digest_thread::<md5::Md5>();
    let (sha_tx, sha_done) = digest_thread::<sha2::Sha512>();
    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::new();
    let mut inspected: Option<crate::inspect::Inspection> = None;
    let cap = svc.cfg.image.image_size_cap;
    let check = |head: &[u8]| -> Result<crate::inspect::Inspection, Error> {
        let ins = crate::inspect::inspect(head).map_err(bad)?;
        // No bytes are no format: an empty image is a placeholder (Nova's
        // snapshot of a volume-backed server carries only properties).
        if let Some(df) = disk_format
            && svc.cfg.image.require_image_format_match
            && !head.is_empty()
        {
            crate::inspect::matches(df, ins.format).map_err(bad)?;
        }
        Ok(ins)
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > cap {
            return Err(Error::TooLarge {
                message: format!("Image exceeds the storage limit of {cap} bytes."),
            });
        }
        let hashing = |_| Error::internal("image hashing stopped");
        md5_tx.send(chunk.clone()).await.map_err(hashing)?;
        sha_tx.send(chunk.clone()).await.map_err(hashing)?;
        if inspected.is_none() {
            let want = crate::inspect::HEADER_BYTES - head.len();
            head.extend_from_slice(&chunk[..chunk.len().min(want)]);
            if head.len() >= crate::inspect::HEADER_BYTES {
                inspected = Some(check(&head)?);
            }
        }
        writer.write(chunk).await.map_err(Error::internal)?;
    }
    let ins = match inspected {
        Some(i) => i,
        None => check(&head)?,
    };
    if let Some(n) = declared_len
        && n != size
    {
        return Err(bad(format!(
            "Received {size} bytes, but the request declared {n}."
        )));
    }
    drop(md5_tx);
    drop(sha_tx);
    let md5 = md5_done.await.map_err(Error::internal)?;
    let sha512 = sha_done.await.map_err(Error::internal)?;
    writer.commit().await.map_err(Error::internal)?;
    let virtual_size = match ins.format {
        crate::inspect::Detected::Raw | crate::inspect::Detected::Iso => Some(size),
        _ => ins.virtual_size,
    };
    Ok(Received {
        key: key.to_string(),
        size,
        md5,
        sha512,
        virtual_size,
    })
}

/// A digest computed on a blocking thread from chunks sent to it.
fn digest_thread<D: sha2::Digest + Send + 'static>() -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<String>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    let done = tokio::task::spawn_blocking(move || {
        let mut d = D::new();
        while let Some(c) = rx.blocking_recv() {
            d.update(&c);
        }
        hex::encode(d.finalize())
    });
    (tx, done)
}

pub(crate) fn body_stream(
    body: Body,
) -> impl futures_util::Stream<Item = Result<Bytes, Error>> + Unpin {
    body.into_data_stream()
        .map(|r| r.map_err(|e| bad(format!("Error reading the image data: {e}"))))
}

pub(crate) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn size_quota(svc: &ImageService, owner: Option<&str>, adding: u64) -> Result<(), Error> {
    let quota = svc.cfg.image.image_size_quota;
    if quota < 0 {
        return Ok(());
    }
    let used: i64 = image::Entity::find()
        .filter(image::Column::Owner.eq(owner))
        .all(svc.db.conn_ref())
        .await
        .map_err(db_err)?
        .iter()
        .filter_map(|i| i.size)
        .sum();
    if used + adding as i64 > quota {
        return Err(Error::TooLarge {
            message: format!("Image size quota of {quota} bytes exceeded."),
        });
    }
    Ok(())
}

async fn upload(
    st: St,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> GResult<StatusCode> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "upload_image", &target(&img))?;
    if img.status != "queued" {
        return Err(GlanceError(Error::conflict(format!(
            "Image status transition from {} to saving is not allowed",
            img.status
        ))));
    }
    if img.disk_format.is_none() || img.container_format.is_none() {
        return Err(GlanceError(bad(
            "Properties disk_format, container_format must be set prior to saving data.",
        )));
    }
    if let Some(n) = content_length(&headers) {
        size_quota(svc, img.owner.as_deref(), n).await?;
    }
    let backend = match headers.get("x-image-meta-store") {
        None => svc.default_backend.as_str(),
        Some(v) => v.to_str().unwrap_or(""),
    };
    let Some(backend) = svc.backend(backend) else {
        return Err(GlanceError(bad(format!(
            "Store for identifier {backend} not found"
        ))));
    };
    // queued -> saving, guarded: a concurrent upload loses with 409.
    let mut saving = img.clone();
    saving.status = "saving".into();
    let saving = save(svc, &img, saving).await?;
    let key = format!("{id}-{}", ferro_common::new_hex_id());
    match receive(
        svc,
        backend.store.as_ref(),
        &key,
        body_stream(body),
        content_length(&headers),
        saving.disk_format.as_deref(),
    )
    .await
    {
        Ok(r) => {
            let mut active = saving.clone();
            active.status = "active".into();
            active.size = Some(r.size as i64);
            active.virtual_size = r.virtual_size.map(|v| v as i64);
            active.checksum = Some(r.md5);
            active.os_hash_algo = Some("sha512".into());
            active.os_hash_value = Some(r.sha512);
            model::set_locations(
                &mut active,
                vec![model::Location {
                    store: backend.id.clone(),
                    key: r.key.clone(),
                }],
            );
            match save(svc, &saving, active).await {
                Ok(_) => Ok(StatusCode::NO_CONTENT),
                Err(e) => {
                    // deleted or changed while uploading: drop the data
                    let _ = backend.store.delete(&r.key).await;
                    Err(GlanceError(e))
                }
            }
        }
        Err(e) => {
            // Back to queued so the upload can be retried; no data was kept.
            if let Ok(cur) = load(svc, &id).await
                && cur.status == "saving"
            {
                let mut q = cur.clone();
                q.status = "queued".into();
                let _ = save(svc, &cur, q).await;
            }
            Err(GlanceError(e))
        }
    }
}

/// The data from the first store that has it.
pub(crate) async fn read_any(
    svc: &ImageService,
    copies: &[model::Location],
    range: Option<(u64, u64)>,
) -> Result<crate::store::ByteStream, crate::store::StoreError> {
    let mut last = crate::store::StoreError::NotFound("no store holds the image".into());
    for l in copies {
        let Some(b) = svc.backend(&l.store) else {
            continue;
        };
        match b.store.read(&l.key, range).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive range within `size`.
fn parse_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let spec = h.strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (size.saturating_sub(n), size - 1)
    } else {
        let s: u64 = a.parse().ok()?;
        let e: u64 = if b.is_empty() {
            size - 1
        } else {
            b.parse::<u64>().ok()?.min(size - 1)
        };
        (s, e)
    };
    (start <= end && start < size).then_some((start, end))
}

async fn download(
    st: St,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> GResult<Response> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "download_image", &target(&img))?;
    if img.status == "deactivated" && !caller.admin(svc) {
        return Err(GlanceError(Error::forbidden(
            "The requested image has been deactivated. Image data download is forbidden.",
        )));
    }
    let copies = model::locations(&img);
    let (false, Some(size)) = (copies.is_empty(), img.size) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let size = size as u64;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => match parse_range(r, size) {
            Some(x) => Some(x),
            None => {
                let mut resp = (StatusCode::RANGE_NOT_SATISFIABLE, "").into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
        },
        None => None,
    };
    let stream = read_any(svc, &copies, range)
        .await
        .map_err(|e| Error::internal(format!("reading image {id}: {e}")))?;
    let len = range.map(|(s, e)| e - s + 1).unwrap_or(size);
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Some(c) = &img.checksum
        && range.is_none()
        && let Ok(v) = HeaderValue::from_str(c)
    {
        h.insert("content-md5", v);
    }
    if let Some((s, e)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

async fn image_tasks(st: St, caller: Caller, Path(id): Path<String>) -> GResult<axum::Json<Value>> {
    visible(&st.0, &caller, &id).await?;
    Ok(axum::Json(json!({"tasks": []})))
}

async fn tasks_list(st: St, caller: Caller) -> GResult<axum::Json<Value>> {
    caller.check(&st.0, "tasks_api_access", &json!({}))?;
    Ok(axum::Json(
        json!({"tasks": [], "first": "/v2/tasks", "schema": "/v2/schemas/tasks"}),
    ))
}

/// Legacy tasks: only `import` from a URL existed, and this cloud has no
/// outbound network access, so every source URL fails import filtering.
async fn task_create(st: St, caller: Caller, body: Bytes) -> GResult<axum::Json<Value>> {
    caller.check(&st.0, "tasks_api_access", &json!({}))?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| bad("Body must be a JSON object."))?;
    if v.get("type").and_then(Value::as_str) != Some("import") {
        return Err(GlanceError(bad(
            "Invalid type value: only 'import' tasks exist.",
        )));
    }
    let from = v
        .get("input")
        .and_then(|i| i.get("import_from"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(GlanceError(bad(format!(
        "URI for legacy import task does not pass filtering: {from}"
    ))))
}

// ---- actions, tags, members -------------------------------------------------

async fn deactivate(st: St, caller: Caller, Path(id): Path<String>) -> GResult<StatusCode> {
    toggle_active(&st.0, &caller, &id, "deactivate", "active", "deactivated").await
}

async fn reactivate(st: St, caller: Caller, Path(id): Path<String>) -> GResult<StatusCode> {
    toggle_active(&st.0, &caller, &id, "reactivate", "deactivated", "active").await
}

/// `from → to`; already `to` is a no-op; any other status is 403, as Glance.
async fn toggle_active(
    svc: &ImageService,
    caller: &Caller,
    id: &str,
    action: &str,
    from: &str,
    to: &str,
) -> GResult<StatusCode> {
    let img = visible(svc, caller, id).await?;
    caller.check(svc, action, &target(&img))?;
    if img.status == to {
        return Ok(StatusCode::NO_CONTENT);
    }
    if img.status != from {
        return Err(GlanceError(Error::forbidden(format!(
            "Not allowed to {action} image in status '{}'",
            img.status
        ))));
    }
    let mut next = img.clone();
    next.status = to.into();
    save(svc, &img, next).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_add(
    st: St,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "modify_image", &target(&img))?;
    if tag.chars().count() > 255 {
        return Err(GlanceError(bad("Tags must be at most 255 characters.")));
    }
    let mut t = tags(&img);
    if !t.contains(&tag) {
        if t.len() >= 128 {
            return Err(GlanceError(Error::TooLarge {
                message: "Maximum number of tags (128) exceeded.".into(),
            }));
        }
        t.push(tag);
        let mut n = img.clone();
        n.tags = json!(t).to_string();
        save(svc, &img, n).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_remove(
    st: St,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "modify_image", &target(&img))?;
    let mut t = tags(&img);
    if !t.contains(&tag) {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Tag {tag} not found."
        ))));
    }
    t.retain(|x| *x != tag);
    let mut n = img.clone();
    n.tags = json!(t).to_string();
    save(svc, &img, n).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn member_view(m: &member::Model) -> Value {
    json!({"member_id": m.member_id, "image_id": m.image_id, "status": m.status,
           "created_at": model::ts(m.created_at), "updated_at": model::ts(m.updated_at), "schema": "/v2/schemas/member"})
}

async fn members_list(
    st: St,
    caller: Caller,
    Path(id): Path<String>,
) -> GResult<axum::Json<Value>> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "get_members", &target(&img))?;
    if img.visibility != "shared" {
        return Err(GlanceError(Error::forbidden(
            "Only shared images have members.",
        )));
    }
    let mut sel = member::Entity::find().filter(member::Column::ImageId.eq(id.as_str()));
    let p = caller.project();
    if img.owner.as_deref() != Some(p.as_str()) && !caller.admin(svc) {
        sel = sel.filter(member::Column::MemberId.eq(p.as_str())); // a member sees itself only
    }
    let rows = sel
        .order_by_asc(member::Column::CreatedAt)
        .all(svc.db.conn_ref())
        .await
        .map_err(db_err)?;
    Ok(axum::Json(
        json!({"members": rows.iter().map(member_view).collect::<Vec<_>>(), "schema": "/v2/schemas/members"}),
    ))
}

async fn member_add(
    st: St,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> GResult<axum::Json<Value>> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "add_member", &target(&img))?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| bad("Body must be a JSON object."))?;
    let who = v
        .get("member")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or_else(|| bad("'member' is required."))?;
    if img.visibility != "shared" {
        return Err(GlanceError(Error::forbidden(format!(
            "Image members can only be added to shared images; this one is {}.",
            img.visibility
        ))));
    }
    if member_of(svc, &id, who).await?.is_some() {
        return Err(GlanceError(Error::conflict(format!(
            "Member {who} already has membership of image {id}."
        ))));
    }
    let now = now_micros();
    let m = member::Model {
        image_id: id.clone(),
        member_id: who.to_string(),
        status: "pending".into(),
        created_at: now,
        updated_at: now,
    };
    m.clone()
        .into_active_model()
        .insert(svc.db.conn_ref())
        .await
        .map_err(db_err)?;
    svc.bump();
    Ok(axum::Json(member_view(&m)))
}

async fn member_show(
    st: St,
    caller: Caller,
    Path((id, who)): Path<(String, String)>,
) -> GResult<axum::Json<Value>> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    let p = caller.project();
    let allowed = caller.admin(svc) || img.owner.as_deref() == Some(p.as_str()) || who == p;
    let m = member_of(svc, &id, &who)
        .await?
        .filter(|_| allowed)
        .ok_or_else(|| Error::not_found_msg(format!("Member {who} not found.")))?;
    Ok(axum::Json(member_view(&m)))
}

async fn member_update(
    st: St,
    caller: Caller,
    Path((id, who)): Path<(String, String)>,
    body: Bytes,
) -> GResult<axum::Json<Value>> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    let m = member_of(svc, &id, &who)
        .await?
        .ok_or_else(|| Error::not_found_msg(format!("Member {who} not found.")))?;
    caller.check(
        svc,
        "modify_member",
        &json!({"member_id": who, "owner": img.owner}),
    )?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| bad("Body must be a JSON object."))?;
    let status = v
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("'status' is required."))?;
    if !matches!(status, "pending" | "accepted" | "rejected") {
        return Err(GlanceError(bad(format!("Invalid status: {status}"))));
    }
    let mut am = m.clone().into_active_model();
    am.status = Set(status.to_string());
    am.updated_at = Set(now_micros());
    let saved = am.update(svc.db.conn_ref()).await.map_err(db_err)?;
    svc.bump();
    Ok(axum::Json(member_view(&saved)))
}

async fn member_remove(
    st: St,
    caller: Caller,
    Path((id, who)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let svc = &st.0;
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "delete_member", &target(&img))?;
    member_of(svc, &id, &who)
        .await?
        .ok_or_else(|| Error::not_found_msg(format!("Member {who} not found.")))?;
    member::Entity::delete_by_id((id, who))
        .exec(svc.db.conn_ref())
        .await
        .map_err(db_err)?;
    svc.bump();
    Ok(StatusCode::NO_CONTENT)
}
