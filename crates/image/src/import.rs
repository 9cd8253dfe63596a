//! Interoperable image import and the stores (Glance's multistore API).
//!
//! `glance-direct` stages data (`PUT /v2/images/{id}/stage`), then imports
//! it into one or more stores; `web-download` (offered when configured: it
//! needs outbound access) fetches an `http://` URI that passes Glance's import
//! filtering into staging first; `copy-image` copies an active image's data
//! into more stores. Either runs as a background job whose progress lives
//! on the image itself (`os_glance_importing_to_stores`,
//! `os_glance_failed_import`, the `os_glance_import_task` lock and two hidden
//! properties), so a restart resumes it where it stopped; when
//! `all_stores_must_succeed` and a store fails, the copies this import made
//! are removed again. `/v2/info/stores` lists the stores and
//! `DELETE /v2/stores/{store}/{id}` drops one store's copy.

use crate::error::{GResult, GlanceError};
use crate::http::{
    Caller, ConnRef, Received, St, body_stream, content_length, load, read_any, receive, save,
    target, visible,
};
use crate::model::{self, IMPORT_MUST_SUCCEED, IMPORT_STORES, IMPORT_URI, Location, bad, props};
use crate::{Backend, ImageService};
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use ferro_common::Error;
use ferro_db::db_err;
use ferro_db::entity::image::image;
use futures_util::StreamExt;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::sync::Arc;

const TASK: &str = "os_glance_import_task";
const IMPORTING: &str = "os_glance_importing_to_stores";
const FAILED: &str = "os_glance_failed_import";

// ---- stores ---------------------------------------------------------------

fn store_view(svc: &ImageService, b: &Backend) -> Value {
    let mut v = json!({"id": b.id});
    if let Some(d) = &b.cfg.description {
        v["description"] = json!(d);
    }
    if b.id == svc.default_backend {
        v["default"] = json!("true");
    }
    if svc.backends.iter().any(|b| b.cfg.weight != 0) {
        v["weight"] = json!(b.cfg.weight);
    }
    v
}

/// `GET /v2/info/stores`
pub(crate) async fn info_stores(st: St, _caller: Caller) -> axum::Json<Value> {
    let svc = &st.0;
    let stores: Vec<Value> = svc.backends.iter().map(|b| store_view(svc, b)).collect();
    axum::Json(json!({ "stores": stores }))
}

/// `GET /v2/info/stores/detail` (admin): type, properties and weight too.
pub(crate) async fn info_stores_detail(st: St, caller: Caller) -> GResult<axum::Json<Value>> {
    let svc = &st.0;
    caller.check(svc, "stores_info_detail", &json!({}))?;
    let stores: Vec<Value> = svc
        .backends
        .iter()
        .map(|b| {
            let mut v = store_view(svc, b);
            let c = &b.cfg;
            v["type"] = json!(c.store);
            v["weight"] = json!(c.weight);
            v["properties"] = match c.store.as_str() {
                "file" => json!({
                    "data_dir": c.filesystem_store_datadir,
                    "chunk_size": 65536,
                    "thin_provisioning": false,
                }),
                "s3" => json!({
                    "s3_store_host": c.s3_store_host,
                    "s3_store_bucket": c.s3_store_bucket,
                    "s3_store_large_object_size": crate::s3::PART >> 20,
                    "s3_store_large_object_chunk_size": crate::s3::PART >> 20,
                    "s3_store_thread_pools": crate::s3::IN_FLIGHT,
                }),
                _ => json!({}),
            };
            v
        })
        .collect();
    Ok(axum::Json(json!({ "stores": stores })))
}

/// `DELETE /v2/stores/{store}/{id}`: removes one store's copy of an active
/// image; the last copy stays (delete the image instead), as Glance.
pub(crate) async fn delete_from_store(
    st: St,
    caller: Caller,
    Path((store, id)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let svc = &st.0;
    let Some(backend) = svc.backend(&store) else {
        return Err(GlanceError(Error::conflict(format!(
            "The selected store {store} is not available on this node."
        ))));
    };
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "delete_image_location", &target(&img))?;
    if img.status != "active" {
        return Err(GlanceError(Error::conflict(
            "It's not allowed to remove image data from store if image status is not 'active'",
        )));
    }
    if props(&img).contains_key(TASK) {
        return Err(GlanceError(Error::conflict(format!(
            "Image {id} is being imported or copied; retry when that has finished."
        ))));
    }
    let copies = model::locations(&img);
    if copies.len() == 1 {
        return Err(GlanceError(Error::forbidden(
            "Cannot delete image data from the only store containing it. Consider deleting \
             the image instead if you want to remove all image data",
        )));
    }
    let Some(gone) = copies.iter().find(|l| l.store == store).cloned() else {
        return Err(GlanceError(Error::not_found_msg(format!(
            "Image {id} is not stored in store {store}."
        ))));
    };
    let mut next = img.clone();
    model::set_locations(
        &mut next,
        copies.into_iter().filter(|l| l.store != store).collect(),
    );
    save(svc, &img, next).await?;
    if let Err(e) = backend.store.delete(&gone.key).await {
        tracing::warn!(image = %id, store = %store, error = %e, "image data not removed from the store");
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- staging and import -----------------------------------------------------

fn method_enabled(svc: &ImageService, method: &str) -> bool {
    svc.cfg.image.import_methods.iter().any(|m| m == method)
}

/// `PUT /v2/images/{id}/stage`: the data goes to the default store,
/// inspected for safety now and for the declared format at import.
pub(crate) async fn stage(
    st: St,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> GResult<StatusCode> {
    let svc = &st.0;
    if !method_enabled(svc, "glance-direct") {
        return Err(GlanceError(Error::not_found_msg(
            "glance-direct import is not enabled.",
        )));
    }
    let img = visible(svc, &caller, &id).await?;
    caller.check(svc, "upload_image", &target(&img))?;
    if img.status != "queued" {
        return Err(GlanceError(Error::conflict(format!(
            "Image status transition from {} to uploading is not allowed",
            img.status
        ))));
    }
    let key = format!("staging-{id}-{}", ferro_common::new_hex_id());
    let r = receive(
        svc,
        svc.store.as_ref(),
        &key,
        body_stream(body),
        content_length(&headers),
        None,
    )
    .await?;
    let mut up = img.clone();
    up.status = "uploading".into();
    up.size = Some(r.size as i64);
    up.staged = Some(r.key.clone());
    if let Err(e) = save(svc, &img, up).await {
        let _ = svc.store.delete(&r.key).await;
        return Err(GlanceError(e));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The stores a request names, as Glance's `get_stores_from_request`:
/// `all_stores`, else `stores`, else the `X-Image-Meta-Store` header, else
/// the default store. An unknown store is 409.
fn requested_stores(
    svc: &ImageService,
    v: &Value,
    headers: &HeaderMap,
) -> Result<Vec<String>, Error> {
    let header = headers
        .get("x-image-meta-store")
        .map(|h| h.to_str().unwrap_or("").to_string());
    let mut stores: Vec<String> = if v.get("all_stores") == Some(&Value::Bool(true)) {
        if v.get("stores").is_some() || header.is_some() {
            return Err(bad(
                "All_stores parameter can't be used with x-image-meta-store header or stores parameter",
            ));
        }
        svc.backends.iter().map(|b| b.id.clone()).collect()
    } else if let Some(s) = v.get("stores") {
        if header.is_some() {
            return Err(bad(
                "Stores parameter and x-image-meta-store header can't be both specified",
            ));
        }
        s.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
            })
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad("'stores' must be a non-empty list of store ids."))?
    } else {
        vec![header.unwrap_or_else(|| svc.default_backend.clone())]
    };
    if let Some(unknown) = stores.iter().find(|s| svc.backend(s).is_none()) {
        return Err(Error::conflict(format!(
            "Unknown scheme '{unknown}' found in URI"
        )));
    }
    stores.sort();
    stores.dedup();
    Ok(stores)
}

fn listed(p: &serde_json::Map<String, Value>, key: &str) -> Vec<String> {
    p.get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `POST /v2/images/{id}/import`
pub(crate) async fn import(
    st: St,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> GResult<StatusCode> {
    let svc = st.0.clone();
    let v: Value = serde_json::from_slice(&body).map_err(|_| bad("Body must be a JSON object."))?;
    let method = v
        .get("method")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Import request requires a 'method' with a 'name'."))?;
    for k in ["all_stores", "all_stores_must_succeed"] {
        if v.get(k).is_some_and(|x| !x.is_boolean()) {
            return Err(GlanceError(bad(format!(
                "'{k}' must be boolean value only"
            ))));
        }
    }
    if !method_enabled(&svc, method) {
        return Err(GlanceError(bad(format!(
            "Unknown import method name '{method}'."
        ))));
    }
    let must = v.get("all_stores_must_succeed") != Some(&Value::Bool(false));
    let img = visible(&svc, &caller, &id).await?;
    let copying = method == "copy-image";
    caller.check(
        &svc,
        if copying {
            "copy_image"
        } else {
            "modify_image"
        },
        &target(&img),
    )?;
    let conflict = |m: &str| Err(GlanceError(Error::conflict(m)));
    if img.status == "active" && !copying {
        return conflict("Image with status active cannot be target for import");
    }
    if img.status != "active" && copying {
        return conflict("Only images with status active can be targeted for copying");
    }
    if method == "glance-direct" && img.status != "uploading" {
        return conflict("Image needs to be staged before 'glance-direct' method can be used");
    }
    let raw_uri = v["method"].get("uri").and_then(Value::as_str);
    let mut uri = None;
    if method == "web-download" {
        if img.status != "queued" {
            return conflict("Image needs to be in 'queued' state to use 'web-download' method");
        }
        match raw_uri.and_then(|u| reqwest::Url::parse(u).ok()) {
            Some(u) if passes_filtering(&svc, &u) => uri = Some(u.to_string()),
            _ => {
                return Err(GlanceError(bad(format!(
                    "URI for web-download does not pass filtering: {}",
                    raw_uri.unwrap_or("")
                ))));
            }
        }
    } else if raw_uri.is_some() {
        return Err(GlanceError(bad(format!(
            "The 'uri' is only used by the 'web-download' method, not '{method}'."
        ))));
    }
    if img.container_format.is_none() {
        return conflict("'container_format' needs to be set before import");
    }
    if img.disk_format.is_none() {
        return conflict("'disk_format' needs to be set before import");
    }
    let mut p = props(&img);
    if p.get(TASK)
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
    {
        return conflict(&format!(
            "New operation on image '{id}' is not permitted as prior operation is still in progress"
        ));
    }
    let mut stores = requested_stores(&svc, &v, &headers)?;
    if copying {
        let have: Vec<String> = model::locations(&img)
            .into_iter()
            .map(|l| l.store)
            .collect();
        if v.get("all_stores") == Some(&Value::Bool(true)) {
            stores.retain(|s| !have.contains(s));
        } else if let Some(s) = stores.iter().find(|s| have.contains(s)) {
            return Err(GlanceError(bad(format!(
                "Image is already present at store '{s}'"
            ))));
        }
    }
    let mut next = img.clone();
    p.insert(IMPORTING.into(), json!(stores.join(",")));
    p.insert(FAILED.into(), json!(""));
    if stores.is_empty() {
        // copy-image to all stores when every store has it: nothing to do.
        next.properties = Value::Object(p).to_string();
        save(&svc, &img, next).await?;
        return Ok(StatusCode::ACCEPTED);
    }
    p.insert(TASK.into(), json!(ferro_common::new_uuid()));
    p.insert(IMPORT_MUST_SUCCEED.into(), json!(must.to_string()));
    p.insert(IMPORT_STORES.into(), json!(stores.join(",")));
    if let Some(u) = uri {
        p.insert(IMPORT_URI.into(), json!(u));
    }
    next.properties = Value::Object(p).to_string();
    if !copying {
        next.status = "importing".into();
    }
    save(&svc, &img, next).await?;
    tokio::spawn(async move {
        if let Err(e) = run_import(&svc, &id).await {
            tracing::warn!(image = %id, error = %e.log_message(), "image import failed");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

/// Loads, changes and saves the image, retrying when another request
/// changed it in between.
async fn mutate(
    svc: &ImageService,
    id: &str,
    mut f: impl FnMut(&mut image::Model) -> Result<(), Error>,
) -> Result<image::Model, Error> {
    let mut last = Error::conflict(format!("Image {id} keeps changing."));
    for _ in 0..20 {
        let cur = load(svc, id).await?;
        let mut next = cur.clone();
        f(&mut next)?;
        match save(svc, &cur, next).await {
            Ok(m) => return Ok(m),
            Err(e) if e.status() == 409 => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// One store's copy: from the staged data (glance-direct, checked against
/// the declared format) or from a store that has the image (copy-image,
/// checked against the image's hash).
async fn import_one(
    svc: &ImageService,
    img: &image::Model,
    copying: bool,
    store: &str,
    task: &str,
) -> Result<Received, Error> {
    let backend = svc
        .backend(store)
        .ok_or_else(|| Error::internal(format!("store {store} is not configured")))?;
    let source = if copying {
        read_any(svc, &model::locations(img), None).await
    } else {
        match &img.staged {
            Some(k) => svc.store.read(k, None).await,
            None => {
                return Err(Error::internal(format!(
                    "image {} has no staged data",
                    img.id
                )));
            }
        }
    }
    .map_err(|e| Error::internal(format!("reading image {} data: {e}", img.id)))?;
    let source = source.map(|r| r.map_err(|e| Error::internal(format!("reading image data: {e}"))));
    // One key per import and store: a resumed import overwrites what an
    // interrupted attempt wrote instead of leaving it behind.
    let key = format!("{}-{task}-{store}", img.id);
    let declared = if copying {
        None
    } else {
        img.disk_format.as_deref()
    };
    let r = receive(svc, backend.store.as_ref(), &key, source, None, declared).await?;
    if copying && img.os_hash_value.as_deref().is_some_and(|h| h != r.sha512) {
        let _ = backend.store.delete(&key).await;
        return Err(Error::internal(format!(
            "copy of image {} to {store} does not match its hash",
            img.id
        )));
    }
    Ok(r)
}

/// Runs (or, after a restart, resumes) the import the image's properties
/// describe: each remaining store in turn, progress saved after each. At
/// the end a glance-direct image is active if a store took it (queued if
/// none did, or one failed and all had to succeed), the staged data is
/// gone and the lock released.
pub async fn run_import(svc: &ImageService, id: &str) -> Result<(), Error> {
    let mut img = load(svc, id).await?;
    let copying = img.status == "active";
    let p = props(&img);
    let task = p.get(TASK).and_then(Value::as_str).map(String::from);
    let tag = task.clone().unwrap_or_else(ferro_common::new_hex_id);
    let must = p.get(IMPORT_MUST_SUCCEED).and_then(Value::as_str) != Some("false");
    let mut targets = listed(&p, IMPORTING);
    let mut ours = listed(&p, IMPORT_STORES);
    if !p.contains_key(IMPORT_STORES) && targets.is_empty() && !copying {
        // an import begun before imports named their stores
        targets = vec![svc.default_backend.clone()];
        ours = targets.clone();
    }
    // A store an interrupted attempt finished keeps its copy.
    let have: Vec<String> = model::locations(&img)
        .into_iter()
        .map(|l| l.store)
        .collect();
    targets.retain(|s| !have.contains(s));
    // Every save first checks the image still runs this import: an image
    // deleted (and its id reused) or a newer import stops this one.
    let still_ours = |m: &image::Model| match &task {
        Some(t) if props(m).get(TASK).and_then(Value::as_str) != Some(t.as_str()) => Err(
            Error::not_found_msg(format!("image {id} no longer runs this import")),
        ),
        _ => Ok(()),
    };
    let mut failed = listed(&p, FAILED);
    // web-download: fetch into staging first (once; a resumed import that
    // got that far has it staged already).
    if let Some(uri) = p.get(IMPORT_URI).and_then(Value::as_str)
        && !copying
        && img.staged.is_none()
    {
        match web_download(svc, id, uri, &tag).await {
            Ok(key) => {
                let staged = mutate(svc, id, |m| {
                    still_ours(m)?;
                    m.staged = Some(key.clone());
                    Ok(())
                })
                .await;
                match staged {
                    Ok(m) => img = m,
                    Err(e) => {
                        let _ = svc.store.delete(&key).await;
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(image = %id, error = %e.log_message(), "web-download failed");
                failed.append(&mut targets);
            }
        }
    }
    for store in &targets {
        let done = import_one(svc, &img, copying, store, &tag).await;
        if let Err(e) = &done {
            tracing::warn!(image = %id, store = %store, error = %e.log_message(), "import to store failed");
            failed.push(store.clone());
        }
        let saved = mutate(svc, id, |m| {
            still_ours(m)?;
            let mut p = props(m);
            let left: Vec<String> = listed(&p, IMPORTING)
                .into_iter()
                .filter(|s| s != store)
                .collect();
            p.insert(IMPORTING.into(), json!(left.join(",")));
            p.insert(FAILED.into(), json!(failed.join(",")));
            m.properties = Value::Object(p).to_string();
            if let Ok(r) = &done {
                let mut locs = model::locations(m);
                locs.push(Location {
                    store: store.clone(),
                    key: r.key.clone(),
                });
                model::set_locations(m, svc.ordered(locs));
                if !copying {
                    m.size = Some(r.size as i64);
                    m.virtual_size = r.virtual_size.map(|v| v as i64);
                    m.checksum = Some(r.md5.clone());
                    m.os_hash_algo = Some("sha512".into());
                    m.os_hash_value = Some(r.sha512.clone());
                }
            }
            Ok(())
        })
        .await;
        match saved {
            Ok(m) => img = m,
            Err(e) if e.status() == 404 => {
                // the image went away meanwhile: keep nothing of it
                if let (Ok(r), Some(b)) = (&done, svc.backend(store)) {
                    let _ = b.store.delete(&r.key).await;
                }
                if !copying && let Some(k) = &img.staged {
                    let _ = svc.store.delete(k).await;
                }
                return Err(e);
            }
            Err(e) => {
                // could not record it: undo this store and finish below
                tracing::warn!(image = %id, store = %store, error = %e.log_message(), "import progress not saved");
                if let (Ok(r), Some(b)) = (&done, svc.backend(store)) {
                    let _ = b.store.delete(&r.key).await;
                }
                if done.is_ok() {
                    failed.push(store.clone());
                }
                break;
            }
        }
        if done.is_err() && must {
            break;
        }
    }
    // The staged data goes first: a crash after this finds the stores done
    // (or the import undone) and only the final save left to redo.
    if !copying && let Some(k) = &img.staged {
        let _ = svc.store.delete(k).await;
    }
    let undo = must && failed.iter().any(|s| ours.contains(s));
    let mut dropped: Vec<Location> = Vec::new();
    let fin = mutate(svc, id, |m| {
        still_ours(m)?;
        let mut p = props(m);
        let before = model::locations(m);
        let mut locs = before.clone();
        if undo {
            locs.retain(|l| !ours.contains(&l.store));
        }
        if copying && locs.is_empty() {
            // never drop an active image's last copy (another store's copy
            // may have been deleted meanwhile)
            locs = before.clone();
        }
        dropped = before.into_iter().filter(|l| !locs.contains(l)).collect();
        model::set_locations(m, locs.clone());
        if !copying {
            m.staged = None;
            if locs.is_empty() {
                m.status = "queued".into();
                m.size = None;
                m.virtual_size = None;
                m.checksum = None;
                m.os_hash_algo = None;
                m.os_hash_value = None;
            } else {
                m.status = "active".into();
            }
        }
        p.insert(IMPORTING.into(), json!(""));
        p.insert(FAILED.into(), json!(failed.join(",")));
        for k in [TASK, IMPORT_MUST_SUCCEED, IMPORT_STORES, IMPORT_URI] {
            p.remove(k);
        }
        m.properties = Value::Object(p).to_string();
        Ok(())
    })
    .await;
    // `mutate` may run its closure more than once; `dropped` is the last run's.
    if fin.is_ok() {
        for l in dropped {
            if let Some(b) = svc.backend(&l.store) {
                let _ = b.store.delete(&l.key).await;
            }
        }
    }
    fin?;
    match failed.is_empty() {
        true => Ok(()),
        false => Err(Error::internal(format!(
            "image {id} was not imported to {}",
            failed.join(",")
        ))),
    }
}

/// Whether web-download may fetch `u`: Glance's import filtering applied to
/// the URL as the HTTP client parsed it (so what is checked is what is
/// connected to).
fn passes_filtering(svc: &ImageService, u: &reqwest::Url) -> bool {
    filtering_allows(&svc.cfg.image.import_filtering, u)
}

fn filtering_allows(f: &ferro_config::ImportFiltering, u: &reqwest::Url) -> bool {
    let host = u
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    f.allows(u.scheme(), &host, u.port())
}

/// Fetches a web-download URI into the staging store (hashed and inspected
/// for safety as any upload); redirects must pass the same filtering.
async fn web_download(svc: &ImageService, id: &str, uri: &str, tag: &str) -> Result<String, Error> {
    let url = reqwest::Url::parse(uri)
        .ok()
        .filter(|u| passes_filtering(svc, u))
        .ok_or_else(|| Error::internal("the web-download URI no longer passes filtering"))?;
    let filter = svc.cfg.image.import_filtering.clone();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::custom(move |a| {
            if a.previous().len() >= 10 {
                a.error("too many redirects")
            } else if filtering_allows(&filter, a.url()) {
                a.follow()
            } else {
                a.error("redirect target does not pass import filtering")
            }
        }))
        .build()
        .map_err(Error::internal)?;
    // Errors leave the URI out: it may carry credentials.
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| Error::internal(format!("web-download: {}", e.without_url())))?;
    if !resp.status().is_success() {
        return Err(Error::internal(format!(
            "web-download: HTTP {}",
            resp.status()
        )));
    }
    let declared = resp.content_length();
    let body = Box::pin(futures_util::stream::unfold(resp, |mut resp| async move {
        match resp.chunk().await {
            Ok(Some(c)) => Some((Ok(c), resp)),
            Ok(None) => None,
            Err(e) => Some((
                Err(Error::internal(format!(
                    "reading the download: {}",
                    e.without_url()
                ))),
                resp,
            )),
        }
    }));
    let key = format!("staging-{id}-{tag}");
    receive(svc, svc.store.as_ref(), &key, body, declared, None).await?;
    Ok(key)
}

/// Start-up recovery: uploads a crash interrupted go back to `queued`
/// (their partial data never became visible); imports and copies resume.
pub async fn recover(svc: Arc<ImageService>) -> Result<(), Error> {
    let stuck = image::Entity::find()
        .filter(
            Condition::any()
                .add(image::Column::Status.is_in(["saving", "importing"]))
                .add(
                    Condition::all()
                        .add(image::Column::Status.eq("active"))
                        .add(image::Column::Properties.contains(format!("\"{TASK}\""))),
                ),
        )
        .all(svc.db.conn_ref())
        .await
        .map_err(db_err)?;
    for img in stuck {
        if img.status == "active" && !props(&img).contains_key(TASK) {
            continue; // the text matched, but not as a property name
        }
        if img.status == "saving" {
            let mut q = img.clone();
            q.status = "queued".into();
            save(&svc, &img, q).await?;
            continue;
        }
        let svc = svc.clone();
        tokio::spawn(async move {
            if let Err(e) = run_import(&svc, &img.id).await {
                tracing::warn!(image = %img.id, error = %e.log_message(), "resumed import failed");
            }
        });
    }
    Ok(())
}
