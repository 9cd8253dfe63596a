//! The volume manager's workflows as sagas (DESIGN.md §5). The API writes
//! the record in its transitional status (`creating`, `deleting`,
//! `extending`...), starts the saga and answers 202; the saga does the
//! backend work step by step, each step with an undo, its progress in the
//! saga log. A failed saga is unwound and the record lands in upstream's
//! failure status (`error`, `error_deleting`, `error_extending`, or back
//! to where it was for upload-to-image). At start-up `recover` resumes or
//! unwinds what a crash interrupted.
use crate::VolumeService;
use crate::backend::{ImageAccess, ImageDestination};
use crate::store::{Kind, Obj, s};
use ferro_saga::{DbSagaLog, Executor, SagaDef, SagaError, Step, Typed, TypedStep};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Arc, Weak};

pub struct Ctx {
    svc: Weak<VolumeService>,
}

impl Ctx {
    fn svc(&self) -> Result<Arc<VolumeService>, String> {
        self.svc
            .upgrade()
            .ok_or_else(|| "service stopped".to_string())
    }
}

pub const CREATE: &str = "volume_create";
pub const DELETE: &str = "volume_delete";
pub const EXTEND: &str = "volume_extend";
pub const REVERT: &str = "volume_revert";
pub const UPLOAD: &str = "volume_upload";
pub const SNAP_CREATE: &str = "snapshot_create";
pub const SNAP_DELETE: &str = "snapshot_delete";
pub const REIMAGE: &str = "volume_reimage";

/// One step, named `<saga>.<what>`; `run_step`/`undo_step` dispatch on it.
struct S(&'static str);

/// What a volume workflow knows, as its saga log keeps it. Each workflow
/// uses the fields it needs; the API sets them when it starts one.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FlowState {
    /// The volume (or, for snapshot workflows, the snapshot).
    pub id: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub image_metadata: Option<Value>,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub previous_status: Option<String>,
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// Snapshots deleted with the volume (cascade).
    #[serde(default)]
    pub snapshots: Vec<String>,
    #[serde(default)]
    pub source_volid: Option<String>,
    /// The volume a snapshot is of.
    #[serde(default)]
    pub volume_id: Option<String>,
    /// A file of this host the workflow made (an image download, an upload).
    #[serde(default)]
    pub tmp: Option<String>,
    /// Whom the workflow acts for when it calls the Image service.
    #[serde(default)]
    pub acting: Option<ferro_auth::Acting>,
}

#[async_trait::async_trait]
impl TypedStep<Ctx, FlowState> for S {
    fn name(&self) -> &'static str {
        self.0
    }
    async fn run(&self, ctx: &Ctx, state: &mut FlowState) -> Result<(), String> {
        let svc = ctx.svc()?;
        inject(&svc, self.0).await?;
        run_step(&svc, self.0, state).await
    }
    async fn undo(&self, ctx: &Ctx, state: &FlowState) -> Result<(), String> {
        undo_step(&ctx.svc()?, self.0, state).await
    }
}

pub fn executor(svc: Arc<VolumeService>) -> Executor<Ctx> {
    let log = Arc::new(DbSagaLog { db: svc.db.clone() });
    let mut ex = Executor::new(
        log,
        Arc::new(Ctx {
            svc: Arc::downgrade(&svc),
        }),
    );
    let defs: [(&'static str, Vec<&'static str>); 8] = [
        (
            REIMAGE,
            vec!["reimage.fetch_image", "reimage.backend", "reimage.finish"],
        ),
        (
            CREATE,
            vec![
                "create.schedule",
                "create.fetch_image",
                "create.backend",
                "create.finish",
            ],
        ),
        (DELETE, vec!["delete.backend", "delete.forget"]),
        (
            EXTEND,
            vec!["extend.backend", "extend.finish", "extend.notify"],
        ),
        (REVERT, vec!["revert.backend", "revert.finish"]),
        (UPLOAD, vec!["upload.copy", "upload.send", "upload.finish"]),
        (
            SNAP_CREATE,
            vec!["snapshot_create.backend", "snapshot_create.finish"],
        ),
        (
            SNAP_DELETE,
            vec!["snapshot_delete.backend", "snapshot_delete.forget"],
        ),
    ];
    for (name, steps) in defs {
        ex.register(SagaDef {
            name,
            steps: steps
                .into_iter()
                .map(|n| Box::new(Typed::new(S(n))) as Box<dyn Step<Ctx>>)
                .collect(),
        });
    }
    ex
}

/// The test hook (`volume.fault_injection`): fail or hang at a named step.
async fn inject(svc: &VolumeService, step: &str) -> Result<(), String> {
    let Some(spec) = svc.cfg.volume.fault_injection.as_deref() else {
        return Ok(());
    };
    for item in spec.split(',') {
        match item.trim().rsplit_once(':') {
            Some((st, "fail")) if st == step => {
                return Err(format!("injected failure at {step}"));
            }
            Some((st, "hang")) if st == step => {
                tracing::warn!(step, "fault injection: hanging (kill the process now)");
                std::future::pending::<()>().await;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A token for the user the workflow acts for, made when a step needs one
/// (never stored: the saga keeps only the user and project).
async fn token_for(svc: &VolumeService, state: &FlowState) -> Result<String, String> {
    let who = state
        .acting
        .as_ref()
        .ok_or("the workflow does not say whom it acts for")?;
    svc.validator
        .token_for(who)
        .await
        .map_err(|e| e.to_string())
}

/// The Image service as the volume agent reaches it, with a token minted
/// now for whom the workflow acts (it travels in the request and is never
/// stored).
async fn image_access(svc: &VolumeService, state: &FlowState) -> Result<ImageAccess, String> {
    Ok(ImageAccess {
        endpoint: format!("{}/image", svc.cfg.public_url()),
        token: token_for(svc, state).await?,
    })
}

fn size(state: &FlowState) -> u64 {
    state.size.unwrap_or(1)
}

/// Sets fields of a record (if it still exists).
async fn set(svc: &VolumeService, k: Kind, id: &str, fields: Value) -> Result<(), String> {
    let r = svc
        .store
        .update(k, id, |o| {
            if let Value::Object(f) = &fields {
                for (a, b) in f {
                    o.insert(a.clone(), b.clone());
                }
            }
            Ok(())
        })
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e.message),
    }
}

async fn run_step(
    svc: &Arc<VolumeService>,
    step: &str,
    state: &mut FlowState,
) -> Result<(), String> {
    let b = &svc.backend;
    let id = state.id.as_str().to_string();
    match step {
        "create.schedule" => schedule(svc, state).await,
        // The agent downloads the image itself (`create.backend`); kept
        // for workflows persisted before it did.
        "create.fetch_image" | "reimage.fetch_image" => Ok(()),
        "create.backend" => {
            let n = size(state);
            if let Some(image) = state.image_id.clone() {
                let images = image_access(svc, state).await?;
                b.create_from_image(&id, &image, images, n).await
            } else if let Some(snap) = state.snapshot_id.as_deref() {
                b.create_from_snapshot(snap, &id, n).await
            } else if let Some(src) = state.source_volid.as_deref() {
                b.clone_volume(src, &id, n).await
            } else {
                b.create(&id, n).await
            }
        }
        "create.finish" => {
            if let Some(tmp) = state.tmp.as_deref() {
                let _ = tokio::fs::remove_file(tmp).await;
            }
            let mut f = json!({"status": "available"});
            if state.image_id.is_some() {
                f["bootable"] = json!(true);
            }
            set(svc, Kind::Volume, &id, f).await
        }
        // os-reimage (3.68): the image replaces the volume's content.
        "reimage.backend" => {
            let image = state.image_id.clone().unwrap_or_default();
            let images = image_access(svc, state).await?;
            b.create_from_image(&id, &image, images, size(state)).await
        }
        "reimage.finish" => {
            if let Some(tmp) = state.tmp.as_deref() {
                let _ = tokio::fs::remove_file(tmp).await;
            }
            let meta = state.image_metadata.clone().unwrap_or(Value::Null);
            set(
                svc,
                Kind::Volume,
                &id,
                json!({"status": state.previous_status.as_deref().unwrap_or_default(), "bootable": true,
                       "volume_image_metadata": meta, "updated_at": crate::store::now()}),
            )
            .await
        }
        "delete.backend" => {
            // With cascade, its snapshots go first.
            for x in &state.snapshots {
                b.delete_snapshot(x).await?;
            }
            b.delete(&id).await
        }
        "delete.forget" => svc
            .store
            .write(|tx| {
                tx.del(Kind::Volume, &id);
                let atts: Vec<String> = tx
                    .st
                    .attachments_of(&id)
                    .map(|a| s(a, "id").to_string())
                    .collect();
                for a in atts {
                    tx.del(Kind::Attachment, &a);
                }
                // With cascade, the snapshots went with it.
                let snaps: Vec<String> = tx
                    .st
                    .snapshots_of(&id)
                    .map(|x| s(x, "id").to_string())
                    .collect();
                for x in snaps {
                    tx.del(Kind::Snapshot, &x);
                }
                Ok(())
            })
            .await
            .map_err(|e| e.message),
        "extend.backend" => {
            let here = b.extend(&id, size(state)).await?;
            // Held open: only a running guest may, and its hypervisor grows
            // it when told (`extend.notify`).
            if !here && state.previous_status.as_deref() != Some("in-use") {
                return Err(format!("volume {id} is held open by a process"));
            }
            Ok(())
        }
        "extend.finish" => {
            set(
                svc,
                Kind::Volume,
                &id,
                json!({"status": state.previous_status.as_deref().unwrap_or_default(), "size": size(state)}),
            )
            .await
        }
        // An attached volume's servers learn of the new size (Nova's
        // `volume-extended`); as upstream, a failure there is only logged.
        "extend.notify" => {
            if state.previous_status.as_deref().unwrap_or_default() != "in-use" {
                return Ok(());
            }
            let Some(compute) = svc.compute().cloned() else {
                return Ok(());
            };
            let servers: Vec<String> = svc
                .store
                .read()
                .attachments_of(&id)
                .filter(|a| s(a, "attach_status") == "attached")
                .map(|a| s(a, "instance_uuid").to_string())
                .filter(|x| !x.is_empty())
                .collect();
            for server in servers {
                if let Err(e) = compute.volume_extended(&server, &id).await {
                    tracing::warn!(volume = %id, server, "volume-extended event: {}", e.log_message());
                }
            }
            Ok(())
        }
        "revert.backend" => b.revert_to_snapshot(&id, state.snapshot_id.as_deref().unwrap_or_default()).await,
        "revert.finish" => {
            set(svc, Kind::Volume, &id, json!({"status": "available"})).await?;
            set(
                svc,
                Kind::Snapshot,
                state.snapshot_id.as_deref().unwrap_or_default(),
                json!({"status": "available"}),
            )
            .await
        }
        // The agent copies the volume out and uploads it itself.
        "upload.copy" => {
            let images = image_access(svc, state).await?;
            let dest = ImageDestination {
                image_id: state.image_id.clone().unwrap_or_default(),
                endpoint: images.endpoint,
                token: images.token,
            };
            b.upload_to_image(&id, state.disk_format.as_deref().unwrap_or_default(), dest)
                .await
        }
        // Kept for workflows persisted before the agent uploaded.
        "upload.send" => Ok(()),
        "upload.finish" => {
            let _ = tokio::fs::remove_file(state.tmp.as_deref().unwrap_or_default()).await;
            set(
                svc,
                Kind::Volume,
                &id,
                json!({"status": state.previous_status.as_deref().unwrap_or_default()}),
            )
            .await
        }
        "snapshot_create.backend" => snapshot_backend(svc, state, &id).await,
        "snapshot_create.finish" => {
            set(
                svc,
                Kind::Snapshot,
                &id,
                json!({"status": "available", "progress": "100%"}),
            )
            .await
        }
        "snapshot_delete.backend" => b.delete_snapshot(&id).await,
        "snapshot_delete.forget" => svc
            .store
            .write(|tx| {
                tx.del(Kind::Snapshot, &id);
                Ok(())
            })
            .await
            .map_err(|e| e.message),
        other => Err(format!("unknown step {other}")),
    }
}

/// Whether the backend satisfies a volume type's extra specs.
pub fn type_fits(svc: &VolumeService, t: &crate::store::Obj) -> Result<(), String> {
    let specs = t
        .get("extra_specs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    specs_fit(svc, &specs)
}

fn specs_fit(svc: &VolumeService, specs: &serde_json::Map<String, Value>) -> Result<(), String> {
    let b = &svc.backend;
    for (k, want) in specs {
        let key = k.strip_prefix("capabilities:").unwrap_or(k);
        let have = match key {
            "volume_backend_name" => b.name(),
            "storage_protocol" => b.protocol(),
            "vendor_name" => b.vendor(),
            _ => continue,
        };
        let want = want.as_str().unwrap_or_default();
        let want = want.strip_prefix("<is> ").unwrap_or(want);
        if !have.eq_ignore_ascii_case(want) {
            return Err(format!(
                "No valid backend was found. The backend's {key} is {have}, the volume type asks for {want}."
            ));
        }
    }
    Ok(())
}

/// The volume scheduler: the backend must satisfy the type's extra specs
/// (`volume_backend_name`, `storage_protocol`, `vendor_name`, also with a
/// `capabilities:` prefix) and have room for the volume.
async fn schedule(svc: &Arc<VolumeService>, state: &FlowState) -> Result<(), String> {
    let id = state.id.as_str();
    let specs = {
        let snap = svc.store.read();
        let tid = snap
            .get(Kind::Volume, id)
            .map(|v| s(v, "volume_type_id").to_string())
            .unwrap_or_default();
        snap.get(Kind::VolumeType, &tid)
            .and_then(|t| t.get("extra_specs").and_then(Value::as_object).cloned())
            .unwrap_or_default()
    };
    specs_fit(svc, &specs)?;
    // The volume being created is already among the records counted.
    let (_, free) = svc.headroom().await;
    if free < 0.0 {
        return Err(format!(
            "No valid backend was found. Insufficient free space for volume creation (requested {} GB, {} GB short).",
            size(state),
            -free
        ));
    }
    Ok(())
}

async fn undo_step(svc: &Arc<VolumeService>, step: &str, state: &FlowState) -> Result<(), String> {
    let id = state.id.as_str();
    match step {
        "create.fetch_image" | "reimage.fetch_image" | "upload.copy" => {
            if let Some(tmp) = state.tmp.as_deref() {
                match tokio::fs::remove_file(tmp).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e.to_string());
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        "create.backend" => svc.backend.delete(id).await,
        "snapshot_create.backend" => svc.backend.delete_snapshot(id).await,
        // Nothing to give back: the data was already written or removed.
        _ => Ok(()),
    }
}

/// What a failed saga leaves the record as.
async fn on_failure(svc: &Arc<VolumeService>, name: &str, state: &FlowState, why: &str) {
    let id = state.id.as_str();
    let r = match name {
        CREATE => {
            crate::http::messages::record_create_failure(svc, id, why).await;
            set(svc, Kind::Volume, id, json!({"status": "error"})).await
        }
        DELETE => set(svc, Kind::Volume, id, json!({"status": "error_deleting"})).await,
        EXTEND => set(svc, Kind::Volume, id, json!({"status": "error_extending"})).await,
        REVERT => {
            let _ = set(
                svc,
                Kind::Snapshot,
                state.snapshot_id.as_deref().unwrap_or_default(),
                json!({"status": "available"}),
            )
            .await;
            set(svc, Kind::Volume, id, json!({"status": "error"})).await
        }
        UPLOAD => {
            match token_for(svc, state).await {
                Ok(token) => {
                    if let Err(e) = svc
                        .images
                        .delete(&token, state.image_id.as_deref().unwrap_or_default())
                        .await
                    {
                        tracing::warn!(
                            image = state.image_id.as_deref().unwrap_or_default(),
                            "the image of a failed upload was not deleted: {}",
                            e.log_message()
                        );
                    }
                }
                Err(e) => tracing::warn!(
                    image = state.image_id.as_deref().unwrap_or_default(),
                    "the image of a failed upload was not deleted: {e}"
                ),
            }
            set(
                svc,
                Kind::Volume,
                id,
                json!({"status": state.previous_status.as_deref().unwrap_or_default()}),
            )
            .await
        }
        REIMAGE => set(svc, Kind::Volume, id, json!({"status": "error"})).await,
        SNAP_CREATE => set(svc, Kind::Snapshot, id, json!({"status": "error"})).await,
        SNAP_DELETE => set(svc, Kind::Snapshot, id, json!({"status": "error_deleting"})).await,
        _ => Ok(()),
    };
    tracing::warn!(saga = name, id, %why, "block storage workflow failed");
    if let Err(e) = r {
        tracing::error!(saga = name, id, "recording the failure: {e}");
    }
}

/// A snapshot's data: copied by the backend, or, for a file volume a
/// server holds attached (an in-use snapshot), by that server's hypervisor
/// at a point in time while the guest runs on.
async fn snapshot_backend(
    svc: &VolumeService,
    state: &FlowState,
    snap: &str,
) -> crate::backend::BResult<()> {
    let vol = state.volume_id.as_deref().unwrap_or_default();
    let server = svc
        .store
        .read()
        .attachments_of(vol)
        .filter(|a| s(a, "attach_status") == "attached")
        .map(|a| s(a, "instance_uuid").to_string())
        .find(|x| !x.is_empty());
    let file = match server {
        Some(_) => svc.backend.snapshot_file(snap).await?,
        None => None,
    };
    match (svc.compute(), file, server) {
        (Some(compute), Some((file, format)), Some(server)) => compute
            .snapshot_attached(&server, vol, snap, &file, &format)
            .await
            .map_err(|e| e.log_message()),
        _ => svc.backend.create_snapshot(vol, snap).await,
    }
}

/// Runs saga `name` for the volume or snapshot `state.id` in the
/// background. `state` is the JSON the API built; it must read as a
/// [`FlowState`].
pub fn spawn(svc: &Arc<VolumeService>, name: &'static str, state: Value) {
    let svc = svc.clone();
    tokio::spawn(async move {
        let Some(ex) = svc.sagas.get() else {
            return;
        };
        let state: FlowState = match serde_json::from_value(state.clone()) {
            Ok(s) => s,
            Err(e) => {
                // Never leave the record in its transitional status.
                let why = format!("workflow state not understood: {e}");
                tracing::error!(saga = name, "{why}");
                let id = state["id"].as_str().unwrap_or_default().to_string();
                let bare = FlowState {
                    id,
                    ..Default::default()
                };
                on_failure(&svc, name, &bare, &why).await;
                return;
            }
        };
        let saga_id = format!("{name}:{}:{}", state.id, crate::store::new_id());
        if let Err(e) = ex.run_typed(name, &saga_id, &state).await {
            on_failure(&svc, name, &state, &e.to_string()).await;
        }
    });
}

/// Start-up: finishes interrupted sagas, then fails records whose
/// transitional status has no saga behind it any more.
pub async fn recover(svc: &Arc<VolumeService>) -> Result<(), ferro_common::Error> {
    if let Some(ex) = svc.sagas.get() {
        let done = ex
            .recover()
            .await
            .map_err(|e| ferro_common::Error::internal(e.to_string()))?;
        for (saga_id, r) in done {
            let mut parts = saga_id.splitn(3, ':');
            let (Some(name), Some(id)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let Err(e) = r {
                let why = match &e {
                    SagaError::StepFailed { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                let name: &'static str = match name {
                    CREATE => CREATE,
                    DELETE => DELETE,
                    EXTEND => EXTEND,
                    REVERT => REVERT,
                    UPLOAD => UPLOAD,
                    SNAP_CREATE => SNAP_CREATE,
                    SNAP_DELETE => SNAP_DELETE,
                    REIMAGE => REIMAGE,
                    _ => continue,
                };
                let mut state = FlowState {
                    id: id.to_string(),
                    ..Default::default()
                };
                if let Some(v) = svc.store.read().get(Kind::Volume, id) {
                    state.previous_status = Some(prev_or_available(v).to_string());
                }
                on_failure(svc, name, &state, &why).await;
            }
        }
    }
    // Whatever is still in flight had no saga: its request died with the process.
    let stale = |o: &Obj, sts: &[&str]| sts.contains(&s(o, "status"));
    let snap = svc.store.read();
    for v in snap.iter(Kind::Volume) {
        let fix = match s(v, "status") {
            "creating" | "downloading" => Some("error"),
            "deleting" => Some("error_deleting"),
            "extending" => Some("error_extending"),
            "reverting" => Some("error"),
            "uploading" => Some(prev_or_available(v)),
            _ => None,
        };
        if let Some(to) = fix {
            let _ = set(svc, Kind::Volume, s(v, "id"), json!({"status": to})).await;
        }
    }
    for x in snap.iter(Kind::Snapshot) {
        if stale(x, &["creating"]) {
            let _ = set(svc, Kind::Snapshot, s(x, "id"), json!({"status": "error"})).await;
        } else if stale(x, &["deleting"]) {
            let _ = set(
                svc,
                Kind::Snapshot,
                s(x, "id"),
                json!({"status": "error_deleting"}),
            )
            .await;
        }
    }
    Ok(())
}

fn prev_or_available(v: &Obj) -> &str {
    match s(v, "previous_status") {
        "" => "available",
        p => p,
    }
}
