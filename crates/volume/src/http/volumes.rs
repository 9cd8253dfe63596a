//! `/v3/volumes`: create (blank, from snapshot, clone, from image), list
//! and detail with filters and paging, show, update, delete (cascade),
//! metadata, and the `action` verbs.
use super::metadata::{
    meta_get, meta_item_del, meta_item_get, meta_item_put, meta_merge, meta_replace,
};
use super::{
    Body, ListParams, Query, St, accepted, accepted_empty, body_obj, check_metadata, list_params,
    ok, paginate, parse_metadata_filter, uuid_like,
};
use crate::error::{CResult, CinderError};
use crate::flows;
use crate::store::{Kind, Obj, State, b, i, new_id, now, s};
use crate::views::{self, Mv};
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route(
            "/v3/volumes",
            get(list).post(create).delete(no_id).put(no_id),
        )
        .route("/v3/volumes/detail", get(detail))
        .route("/v3/volumes/summary", get(summary))
        .route("/v3/volumes/{id}", get(show).put(update).delete(delete))
        .route(
            "/v3/volumes/{id}/metadata",
            get(meta_get::<false>)
                .post(meta_merge::<false>)
                .put(meta_replace::<false>),
        )
        .route(
            "/v3/volumes/{id}/metadata/{key}",
            get(meta_item_get::<false>)
                .put(meta_item_put::<false>)
                .delete(meta_item_del::<false>),
        )
        .route("/v3/volumes/{id}/action", post(super::attachments::action))
}

async fn no_id() -> CinderError {
    CinderError::not_found("The resource could not be found.")
}

/// The volume if the caller may see it (404 otherwise).
pub fn find(st: &State, c: &Caller, id: &str) -> CResult<Arc<Obj>> {
    st.get(Kind::Volume, id)
        .filter(|v| c.owns(v))
        .cloned()
        .ok_or_else(|| CinderError::volume_not_found(id))
}

const SORT_KEYS: [&str; 8] = [
    "id",
    "name",
    "status",
    "size",
    "created_at",
    "updated_at",
    "availability_zone",
    "bootable",
];

/// A time comparison filter: `[op:]ISO-8601`, several joined by commas.
pub fn time_filter(have: Option<&str>, want: &str) -> CResult<bool> {
    for part in want.split(',').filter(|x| !x.is_empty()) {
        let (op, at) = match part.split_once(':') {
            Some((op @ ("gt" | "gte" | "lt" | "lte" | "eq" | "neq"), rest)) => (op, rest),
            _ => {
                return Err(CinderError::bad(format!(
                    "Invalid input received: Invalid time comparison operator in {part}: use gt, gte, lt, lte, eq or neq."
                )));
            }
        };
        let at = parse_time(at).ok_or_else(|| {
            CinderError::bad(format!(
                "Invalid input received: Invalid time format {part}: expected ISO 8601"
            ))
        })?;
        let Some(have) = have.and_then(parse_time) else {
            return Ok(false);
        };
        let ok = match op {
            "gt" => have > at,
            "gte" => have >= at,
            "lt" => have < at,
            "lte" => have <= at,
            "neq" => have != at,
            _ => have == at,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn parse_time(x: &str) -> Option<chrono::NaiveDateTime> {
    let x = x.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(x) {
        return Some(t.naive_utc());
    }
    let x = x.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(x, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(x, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(x, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// Volume filters users may give: Cinder's configured ones and the old
/// spellings and extras it also takes.
fn user_filter(k: &str) -> bool {
    super::resource_filters::resource_filters_of("volume").contains(&k)
        || matches!(k, "glance_metadata" | "display_name" | "volume_type")
}

/// Whether `v` passes one filter (`name~` is a substring match, 3.34;
/// `created_at`/`updated_at` take `gt:`, `gte:`, `lt:`, `lte:`, `eq:` and
/// `neq:` comparisons from 3.60).
fn matches(v: &Obj, k: &str, want: &str, mv: Mv) -> CResult<bool> {
    if matches!(k, "created_at" | "updated_at") {
        // Before 3.60 Cinder drops these filters.
        if !mv.at_least(60) {
            return Ok(true);
        }
        return time_filter(v.get(k).and_then(Value::as_str), want);
    }
    if k == "consumes_quota" {
        // Before 3.65 Cinder drops this filter.
        if !mv.at_least(65) {
            return Ok(true);
        }
        // Every volume here counts against its project's quota.
        return Ok(super::truthy(&json!(want)) == Some(true));
    }
    let (field, like) = match k.strip_suffix('~') {
        Some(f) => (f, true),
        None => (k, false),
    };
    let field = if field == "display_name" {
        "name"
    } else {
        field
    };
    Ok(match field {
        "metadata" | "glance_metadata" => {
            let m = parse_metadata_filter(want)?;
            let key = if field == "metadata" {
                "metadata"
            } else {
                "volume_image_metadata"
            };
            let have = v.get(key).and_then(Value::as_object);
            m.iter()
                .all(|(mk, mv)| have.and_then(|h| h.get(mk)) == Some(mv))
        }
        "bootable" => {
            let w = matches!(want.to_ascii_lowercase().as_str(), "true" | "1" | "yes");
            b(v, "bootable") == w
        }
        "size" => want.parse::<i64>().is_ok_and(|n| n == i(v, "size")),
        "project_id" | "tenant_id" => s(v, "project_id") == want,
        "volume_type" => s(v, "volume_type") == want || s(v, "volume_type_id") == want,
        f => {
            let have = match v.get(f) {
                Some(Value::String(x)) => x.clone(),
                Some(Value::Null) | None => String::new(),
                Some(o) => o.to_string(),
            };
            if like {
                have.contains(want)
            } else {
                have == want
            }
        }
    })
}

fn select(st: &State, c: &Caller, p: &ListParams, mv: Mv) -> CResult<Vec<Arc<Obj>>> {
    let mut filters: Vec<(String, String)> = Vec::new();
    for (k, v) in &p.filters {
        let base = k.trim_end_matches('~');
        if !c.admin && !user_filter(base) {
            return Err(CinderError::bad(format!(
                "Invalid input received: Invalid filters {k} are found in query options."
            )));
        }
        if k.ends_with('~') && !mv.at_least(34) {
            return Err(CinderError::bad(format!(
                "Invalid input received: Invalid filters {k} are found in query options."
            )));
        }
        filters.push((k.clone(), v.clone()));
    }
    let mut out = Vec::new();
    for v in st.iter(Kind::Volume) {
        let mine = s(v, "project_id") == c.project;
        if !(mine || (c.admin && (p.all_tenants || filters.iter().any(|(k, _)| k == "project_id"))))
        {
            continue;
        }
        let mut ok_ = true;
        for (k, want) in &filters {
            if !matches(v, k, want, mv)? {
                ok_ = false;
                break;
            }
        }
        if ok_ {
            out.push(v.clone());
        }
    }
    Ok(out)
}

async fn list_impl(
    svc: &Arc<VolumeService>,
    c: &Caller,
    mv: Mv,
    q: &Query,
    detail: bool,
) -> CResult<Response> {
    let p = list_params(q, &SORT_KEYS)?;
    let st = svc.store.read();
    let all = select(&st, c, &p, mv)?;
    let count = all.len();
    let path = if detail { "volumes/detail" } else { "volumes" };
    let (page, links) = paginate(svc, all, &p, path, q)?;
    let items: Vec<Value> = page
        .iter()
        .map(|v| {
            if detail {
                views::volume_detail(svc, &st, c, mv, v)
            } else {
                views::volume_summary(svc, v)
            }
        })
        .collect();
    let mut body = json!({ "volumes": items });
    if let Some(l) = links {
        body["volumes_links"] = l;
    }
    if p.with_count && mv.at_least(45) {
        body["count"] = json!(count);
    }
    Ok(ok(body))
}

async fn list(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    list_impl(&svc, &c, mv, &q, false).await
}

async fn detail(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    list_impl(&svc, &c, mv, &q, true).await
}

async fn summary(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    if !mv.at_least(12) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    let p = list_params(&q, &SORT_KEYS)?;
    let st = svc.store.read();
    let all = select(&st, &c, &p, mv)?;
    let size: i64 = all.iter().map(|v| i(v, "size")).sum();
    let mut body = json!({"volume-summary": {"total_size": size, "total_count": all.len()}});
    if mv.at_least(36) {
        let mut meta: Map<String, Value> = Map::new();
        for v in &all {
            if let Some(m) = v.get("metadata").and_then(Value::as_object) {
                for (k, x) in m {
                    let e = meta.entry(k.clone()).or_insert_with(|| json!([]));
                    if let Some(a) = e.as_array_mut()
                        && !a.contains(x)
                    {
                        a.push(x.clone());
                    }
                }
            }
        }
        body["volume-summary"]["metadata"] = Value::Object(meta);
    }
    Ok(ok(body))
}

async fn show(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    let st = svc.store.read();
    let v = find(&st, &c, &id)?;
    Ok(ok(
        json!({"volume": views::volume_detail(&svc, &st, &c, mv, &v)}),
    ))
}

/// A size field: an integer (or a string of digits) of at least 1.
fn parse_size(v: &Value) -> CResult<i64> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(x) => x.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(CinderError::bad(format!(
            "Invalid input for field/attribute size. Value: {v}. size must be an integer and greater than 0"
        ))),
    }
}

fn opt_str(o: &Map<String, Value>, k: &str) -> CResult<Option<String>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(x)) => Ok(Some(x.clone())),
        Some(other) => Err(CinderError::bad(format!(
            "Invalid input for field/attribute {k}. Value: {other}. It is not a string"
        ))),
    }
}

fn check_len(name: &str, v: &Option<String>, max: usize) -> CResult<()> {
    if let Some(x) = v
        && x.chars().count() > max
    {
        return Err(CinderError::bad(format!(
            "Invalid input for field/attribute {name}. {name} has more than {max} characters."
        )));
    }
    Ok(())
}

async fn create(AxState(svc): St, c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    c.require_writer("volume:create")?;
    let req = body_obj(&body, "volume")?.clone();
    if mv.at_least(53) {
        check_known(&req, CREATE_KEYS)?;
    }
    if let Some(top) = body.as_object()
        && let Some(k) = top
            .keys()
            .find(|k| !matches!(k.as_str(), "volume" | "OS-SCH-HNT:scheduler_hints"))
    {
        return Err(CinderError::bad(format!(
            "Invalid input for field/attribute {k}. Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let name = match opt_str(&req, "name")? {
        Some(n) => Some(n),
        None => opt_str(&req, "display_name")?,
    };
    let description = match opt_str(&req, "description")? {
        Some(n) => Some(n),
        None => opt_str(&req, "display_description")?,
    };
    check_len("name", &name, 255)?;
    check_len("description", &description, 255)?;
    let metadata = match req.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(m) => check_metadata(m)?,
    };
    let mut snapshot_id = opt_str(&req, "snapshot_id")?;
    let source_volid = opt_str(&req, "source_volid")?;
    let image_ref = match opt_str(&req, "imageRef")? {
        Some(x) => Some(x),
        None => opt_str(&req, "image_id")?,
    };
    if [&snapshot_id, &source_volid, &image_ref]
        .iter()
        .filter(|x| x.is_some())
        .count()
        > 1
    {
        return Err(CinderError::bad(
            "Invalid input received: only one of snapshot_id, source_volid or imageRef may be given.",
        ));
    }
    // The request parameter was removed upstream: multiattach comes from
    // the volume type's `multiattach: <is> True`.
    let multiattach_asked = match req.get("multiattach") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(x)) => *x,
        Some(Value::String(x)) => matches!(x.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        Some(_) => return Err(CinderError::bad("Invalid value for multiattach.")),
    };
    if multiattach_asked {
        return Err(CinderError::bad(
            "multiattach parameter has been removed. The default behavior is to use multiattach enabled volume types. Contact your administrator to create a multiattach enabled volume type and use it to create multiattach volumes.",
        ));
    }
    // No backup service runs here, so no backup can be found (3.47).
    if let Some(x) = req.get("backup_id").filter(|x| !x.is_null()) {
        return Err(CinderError::not_found(format!(
            "Backup {} could not be found.",
            x.as_str().unwrap_or_default()
        )));
    }
    let size_given = match req.get("size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_size(v)?),
    };
    // Image (outside the store's write: it is another service).
    let mut image: Option<Value> = None;
    if let Some(img) = &image_ref {
        let got = svc
            .images
            .get(c.token(), img)
            .await
            .map_err(CinderError::from)?;
        let Some(doc) = got.filter(|d| d["status"] == "active") else {
            return Err(CinderError::bad(format!(
                "Invalid input received: Invalid image identifier or unable to access requested image. (image {img})"
            )));
        };
        // A Compute snapshot of a volume-backed server (3.46): the image
        // names the volume snapshot to create from.
        match nova_image_snapshot(&doc) {
            Some(sid) if mv.at_least(46) => {
                let st = svc.store.read();
                if st.get(Kind::Snapshot, &sid).filter(|x| c.owns(x)).is_none() {
                    return Err(CinderError::not_found(format!(
                        "Nova specific image is found, but boot volume snapshot id:{sid} not found."
                    )));
                }
                snapshot_id = Some(sid);
            }
            _ => image = Some(doc),
        }
    }
    let az_default = svc.cfg.volume.default_availability_zone.clone();
    let az = match opt_str(&req, "availability_zone")? {
        None => az_default.clone(),
        Some(z) if z == az_default => z,
        Some(z) => {
            return Err(CinderError::bad(format!(
                "Invalid input received: Availability zone '{z}' is invalid."
            )));
        }
    };
    let vtype_req = opt_str(&req, "volume_type")?;
    let group_id = if mv.at_least(13) {
        opt_str(&req, "group_id")?
    } else {
        None
    };
    let project = c.project.clone();
    let user = c.user().to_string();
    let svc2 = svc.clone();
    let image2 = image.clone();
    let c2 = c.clone();
    let vol = svc
        .store
        .write(move |tx| {
            let c = &c2;
            let st = &tx.st;
            // Sources.
            let mut src_size = None;
            let mut src_type = None;
            if let Some(sid) = &snapshot_id {
                let sn = st
                    .get(Kind::Snapshot, sid)
                    .filter(|x| c.owns(x))
                    .ok_or_else(|| CinderError::snapshot_not_found(sid))?;
                if s(sn, "status") != "available" {
                    return Err(CinderError::bad("Invalid snapshot: Originating snapshot status must be one of 'available' values".to_string()));
                }
                src_size = Some(i(sn, "size"));
                src_type = st
                    .get(Kind::Volume, s(sn, "volume_id"))
                    .map(|v| s(v, "volume_type").to_string());
            }
            if let Some(vid) = &source_volid {
                let sv = st
                    .get(Kind::Volume, vid)
                    .filter(|x| c.owns(x))
                    .ok_or_else(|| CinderError::volume_not_found(vid))?;
                if !matches!(s(sv, "status"), "available" | "in-use") {
                    return Err(CinderError::invalid(
                        "volume",
                        format!(
                            "Unable to create volume from source volume {vid} in status {}",
                            s(sv, "status")
                        ),
                    ));
                }
                src_size = Some(i(sv, "size"));
                src_type = Some(s(sv, "volume_type").to_string());
            }
            let size = match (size_given, src_size) {
                (Some(n), Some(m)) if n < m => {
                    return Err(CinderError::bad(format!(
                        "Invalid input received: Volume size '{n}'GB cannot be smaller than the snapshot or source volume size '{m}'GB."
                    )));
                }
                (Some(n), _) => n,
                (None, Some(m)) => m,
                (None, None) => {
                    return Err(CinderError::bad(
                        "Invalid input received: size must be an integer and greater than 0",
                    ));
                }
            };
            if let Some(img) = &image2 {
                let need = image_needs_gb(img);
                if need > size {
                    return Err(CinderError::bad(format!(
                        "Invalid input received: Image {} is larger than the volume ({size} GB): it needs {need} GB.",
                        img["id"].as_str().unwrap_or_default(),
                    )));
                }
            }
            // Type: asked for, else the source's, else the default.
            let vtype = match vtype_req.as_deref().or(src_type.as_deref()) {
                Some(t) if !t.is_empty() => st
                    .volume_type(t)
                    .filter(|x| type_usable(x, c))
                    .cloned()
                    .ok_or_else(|| {
                        if uuid_like(t) {
                            CinderError::not_found(format!("Volume type {t} could not be found."))
                        } else {
                            CinderError::not_found(format!(
                                "Volume type with name {t} could not be found."
                            ))
                        }
                    })?,
                _ => svc2
                    .default_type(st, &project)
                    .ok_or_else(|| CinderError::internal("no default volume type"))?,
            };
            if vtype.get("encryption").is_some_and(Value::is_object) {
                return Err(CinderError::bad(format!(
                    "Invalid volume type: volume type {} is encrypted, and encrypted volumes need a key manager, which this cloud does not run.",
                    s(&vtype, "name")
                )));
            }
            let tname = s(&vtype, "name").to_string();
            let multiattach = spec_is_true(&vtype, "multiattach");
            if let Some(zones) = type_zones(&vtype)
                && !zones.contains(&az)
            {
                return Err(CinderError::bad(format!(
                    "Invalid input received: The availability zone {az} is not one of the volume type's availability zones ({}).",
                    zones.join(", ")
                )));
            }
            if let Some(g) = &group_id {
                let grp = st
                    .get(Kind::Group, g)
                    .filter(|x| c.owns(x))
                    .ok_or_else(|| CinderError::not_found(format!("Group {g} could not be found.")))?;
                if s(grp, "status") != "available" {
                    return Err(CinderError::bad(format!(
                        "Invalid group: group {g} status must be available."
                    )));
                }
                let ok_type = grp
                    .get("volume_types")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|t| t.as_str() == Some(s(&vtype, "id"))));
                if !ok_type {
                    return Err(CinderError::bad(format!(
                        "Invalid input received: Volume type {tname} is not supported by group {g}."
                    )));
                }
            }
            svc2.check_quota(st, &project, &tname, 1, 0, size)?;
            let id = new_id();
            let t = now();
            let mut v = Obj::new();
            v.insert("id".into(), json!(id));
            v.insert("name".into(), json!(name));
            v.insert("description".into(), json!(description));
            v.insert("size".into(), json!(size));
            v.insert("status".into(), json!("creating"));
            v.insert("availability_zone".into(), json!(az));
            v.insert("project_id".into(), json!(project));
            v.insert("user_id".into(), json!(user));
            v.insert("metadata".into(), Value::Object(metadata));
            v.insert("admin_metadata".into(), json!({}));
            v.insert("bootable".into(), json!(false));
            v.insert("multiattach".into(), json!(multiattach));
            v.insert("snapshot_id".into(), json!(snapshot_id));
            v.insert("source_volid".into(), json!(source_volid));
            v.insert("volume_type".into(), json!(tname));
            v.insert("volume_type_id".into(), json!(s(&vtype, "id")));
            v.insert("created_at".into(), json!(t));
            v.insert("updated_at".into(), Value::Null);
            v.insert("replication_status".into(), json!("disabled"));
            v.insert("group_id".into(), json!(group_id));
            if let Some(img) = &image2 {
                v.insert("bootable".into(), json!(false));
                v.insert("volume_image_metadata".into(), image_metadata(img));
            }
            // Bootable sources make bootable volumes.
            if let Some(sid) = &snapshot_id
                && let Some(src) = st
                    .get(Kind::Snapshot, sid)
                    .and_then(|sn| st.get(Kind::Volume, s(sn, "volume_id")))
            {
                copy_boot_fields(src, &mut v);
            }
            if let Some(vid) = &source_volid
                && let Some(src) = st.get(Kind::Volume, vid)
            {
                copy_boot_fields(src, &mut v);
            }
            tx.put(Kind::Volume, v.clone());
            Ok(v)
        })
        .await?;
    let id = s(&vol, "id").to_string();
    let mut state = json!({"id": id, "size": i(&vol, "size")});
    if let Some(x) = vol.get("snapshot_id").and_then(Value::as_str) {
        state["snapshot_id"] = json!(x);
    }
    if let Some(x) = vol.get("source_volid").and_then(Value::as_str) {
        state["source_volid"] = json!(x);
    }
    if let Some(img) = &image {
        state["image_id"] = img["id"].clone();
        state["acting"] = c.acting();
    }
    flows::spawn(&svc, flows::CREATE, state);
    let st = svc.store.read();
    Ok(accepted(
        json!({"volume": views::volume_view(&svc, &st, &c, mv, &vol, views::VolView::Create)}),
    ))
}

/// What a volume create may carry from 3.53 (unknown keys are 400).
const CREATE_KEYS: &[&str] = &[
    "name",
    "description",
    "display_name",
    "display_description",
    "volume_type",
    "metadata",
    "snapshot_id",
    "source_volid",
    "consistencygroup_id",
    "size",
    "availability_zone",
    "multiattach",
    "image_id",
    "imageRef",
    "group_id",
    "backup_id",
];

const UPDATE_KEYS: &[&str] = &[
    "name",
    "description",
    "display_name",
    "display_description",
    "metadata",
];

fn check_known(req: &Map<String, Value>, known: &[&str]) -> CResult<()> {
    match req.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(CinderError::bad(format!(
            "Invalid input for field/attribute volume. Additional properties are not allowed ('{k}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

/// An extra spec set to exactly `<is> True` (as Cinder matches
/// `multiattach` and `replication_enabled`).
pub fn spec_is_true(t: &Obj, key: &str) -> bool {
    t.get("extra_specs")
        .and_then(|e| e.get(key))
        .and_then(Value::as_str)
        .is_some_and(|v| v == "<is> True")
}

/// The zones a type restricts its volumes to (`RESKEY:availability_zones`, 3.52).
pub fn type_zones(t: &Obj) -> Option<Vec<String>> {
    let z = t
        .get("extra_specs")
        .and_then(|e| e.get("RESKEY:availability_zones"))
        .and_then(Value::as_str)?;
    let zones: Vec<String> = z
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    (!zones.is_empty()).then_some(zones)
}

/// The volume snapshot a Compute instance snapshot image points at: its
/// `block_device_mapping` (a JSON list, or a string of one) has a boot
/// entry with `source_type: snapshot`.
fn nova_image_snapshot(img: &Value) -> Option<String> {
    let bdm = img.get("block_device_mapping")?;
    let list: Value = match bdm {
        Value::String(x) => serde_json::from_str(x).ok()?,
        other => other.clone(),
    };
    list.as_array()?
        .iter()
        .find(|b| {
            b.get("source_type").and_then(Value::as_str) == Some("snapshot")
                && b.get("boot_index").and_then(Value::as_i64) == Some(0)
        })
        .and_then(|b| b.get("snapshot_id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn copy_boot_fields(src: &Obj, v: &mut Obj) {
    if b(src, "bootable") {
        v.insert("bootable".into(), json!(true));
    }
    if let Some(m) = src.get("volume_image_metadata").filter(|m| m.is_object()) {
        v.insert("volume_image_metadata".into(), m.clone());
    }
}

/// The GiB a volume needs to hold an image: its data or virtual size,
/// whichever is larger, and at least its `min_disk`.
pub fn image_needs_gb(img: &Value) -> i64 {
    const GIB: f64 = (1u64 << 30) as f64;
    let bytes = img["size"].as_f64().unwrap_or(0.0);
    let vsize = img["virtual_size"].as_f64().unwrap_or(0.0);
    let need = (bytes.max(vsize) / GIB).ceil() as i64;
    need.max(img["min_disk"].as_i64().unwrap_or(0))
}

/// `volume_image_metadata` as Cinder records it from the image.
pub fn image_metadata(img: &Value) -> Value {
    let mut m = Map::new();
    let str_of = |v: &Value| match v {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    m.insert("image_id".into(), json!(str_of(&img["id"])));
    m.insert("image_name".into(), json!(str_of(&img["name"])));
    for k in [
        "checksum",
        "container_format",
        "disk_format",
        "min_disk",
        "min_ram",
        "size",
    ] {
        if let Some(x) = img.get(k).filter(|x| !x.is_null()) {
            m.insert(k.into(), json!(str_of(x)));
        }
    }
    if let Some(o) = img.as_object() {
        const CORE: [&str; 22] = [
            "id",
            "name",
            "checksum",
            "container_format",
            "disk_format",
            "min_disk",
            "min_ram",
            "size",
            "status",
            "visibility",
            "protected",
            "owner",
            "created_at",
            "updated_at",
            "tags",
            "self",
            "file",
            "schema",
            "virtual_size",
            "os_hash_algo",
            "os_hash_value",
            "locations",
        ];
        for (k, x) in o {
            if !CORE.contains(&k.as_str()) && !k.starts_with("os_") && x.is_string() {
                m.insert(k.clone(), x.clone());
            }
        }
    }
    Value::Object(m)
}

/// Public types, or private ones the caller's project was given.
pub fn type_usable(t: &Obj, c: &Caller) -> bool {
    c.admin
        || b(t, "is_public")
        || t.get("projects")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|p| p.as_str() == Some(c.project.as_str())))
}

async fn update(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_writer("volume:update")?;
    let req = body_obj(&body, "volume")?.clone();
    check_known(&req, UPDATE_KEYS)?;
    if mv.at_least(53) && !UPDATE_KEYS.iter().any(|k| req.contains_key(*k)) {
        return Err(CinderError::bad(
            "Invalid input for field/attribute volume. At least one of name, description, display_name, display_description or metadata is required.",
        ));
    }
    let name = match opt_str(&req, "name")? {
        Some(n) => Some(n),
        None => opt_str(&req, "display_name")?,
    };
    let description = match opt_str(&req, "description")? {
        Some(n) => Some(n),
        None => opt_str(&req, "display_description")?,
    };
    check_len("name", &name, 255)?;
    check_len("description", &description, 255)?;
    let metadata = match req.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m) => Some(check_metadata(m)?),
    };
    let st0 = svc.store.read();
    find(&st0, &c, &id)?;
    let v = svc
        .store
        .update(Kind::Volume, &id, |v| {
            if req.contains_key("name") || req.contains_key("display_name") {
                v.insert("name".into(), json!(name));
            }
            if req.contains_key("description") || req.contains_key("display_description") {
                v.insert("description".into(), json!(description));
            }
            if let Some(m) = metadata {
                v.insert("metadata".into(), Value::Object(m));
            }
            Ok(())
        })
        .await?;
    let st = svc.store.read();
    Ok(ok(
        json!({"volume": views::volume_view(&svc, &st, &c, mv, &v, views::VolView::Update)}),
    ))
}

async fn delete(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    q: Query,
) -> CResult<Response> {
    c.require_writer("volume:delete")?;
    let truthy = |k: &str| {
        q.get(k)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
    };
    let cascade = truthy("cascade");
    let force = truthy("force");
    if force {
        c.require_admin("volume:force_delete")?;
    }
    start_delete(&svc, &c, &id, cascade, force).await?;
    Ok(accepted_empty())
}

/// Checks a volume may be deleted, marks it (and with cascade its
/// snapshots) `deleting`, and starts the delete saga.
pub async fn start_delete(
    svc: &Arc<VolumeService>,
    c: &Caller,
    id: &str,
    cascade: bool,
    force: bool,
) -> CResult<()> {
    let snaps = svc
        .store
        .write(|tx| {
            let v = find(&tx.st, c, id)?;
            let status = s(&v, "status");
            let attached = tx
                .st
                .attachments_of(id)
                .any(|a| s(a, "attach_status") != "detached");
            let ok_status = [
                "available",
                "error",
                "error_restoring",
                "error_extending",
                "error_managing",
            ];
            if !force && (!ok_status.contains(&status) || attached) {
                return Err(CinderError::invalid(
                    "volume",
                    format!(
                        "Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer. (status: {status})"
                    ),
                ));
            }
            if !s(&v, "group_id").is_empty() && !force {
                return Err(CinderError::invalid(
                    "volume",
                    "Volume belongs to a group: remove it from the group, or delete the group with its volumes.",
                ));
            }
            let snaps: Vec<Obj> = tx.st.snapshots_of(id).map(|x| (**x).clone()).collect();
            if !snaps.is_empty() && !cascade {
                return Err(CinderError::invalid(
                    "volume",
                    "Volume still has 1 dependent snapshots.".replace(
                        "1",
                        &snaps.len().to_string(),
                    ),
                ));
            }
            if cascade
                && let Some(bad) = snaps
                    .iter()
                    .find(|x| !matches!(s(x, "status"), "available" | "error"))
            {
                return Err(CinderError::invalid(
                    "volume",
                    format!("Snapshot {} is in status {}.", s(bad, "id"), s(bad, "status")),
                ));
            }
            let mut v = (*v).clone();
            v.insert("status".into(), json!("deleting"));
            v.insert("updated_at".into(), json!(now()));
            tx.put(Kind::Volume, v);
            for mut x in snaps.clone() {
                x.insert("status".into(), json!("deleting"));
                tx.put(Kind::Snapshot, x);
            }
            Ok(snaps)
        })
        .await?;
    let snap_ids: Vec<&str> = snaps.iter().map(|x| s(x, "id")).collect();
    flows::spawn(svc, flows::DELETE, json!({"id": id, "snapshots": snap_ids}));
    Ok(())
}
