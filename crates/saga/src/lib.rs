//! Durable multi-step workflows (DESIGN.md §5): a saga is a list of steps,
//! each with an undo. Progress is written to a [`SagaLog`] before and after
//! every step, so after a crash [`Executor::recover`] resumes a saga that was
//! going forward (re-running the step in flight, which must be idempotent) or
//! finishes unwinding one that had failed. On a step failure the completed
//! steps are undone in reverse order.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod log;

pub use log::{DbSagaLog, MemSagaLog, SagaLog, SagaRecord, SagaStatus};

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// A step failed and the saga was unwound; the message says why.
    #[error("{step} failed: {message}")]
    StepFailed { step: String, message: String },
    /// Unwinding itself failed: the saga is left `stuck` for an operator.
    #[error("undo of {step} failed: {message}")]
    UndoFailed { step: String, message: String },
    #[error("unknown saga {0}")]
    Unknown(String),
    #[error("saga log")]
    Log(#[source] ferro_common::Error),
}

/// One step. `run` may change `state` (the saga's typed progress, as JSON);
/// `undo` sees the state as it was after `run` succeeded.
#[async_trait::async_trait]
pub trait Step<C: Send + Sync>: Send + Sync {
    fn name(&self) -> &'static str;
    async fn run(&self, ctx: &C, state: &mut Value) -> Result<(), String>;
    async fn undo(&self, ctx: &C, state: &Value) -> Result<(), String>;
}

/// A step over a typed saga state `S`: the log stores `S` as JSON, and
/// [`Typed`] decodes it before the step and encodes it after, so a step
/// never reads a field by its name. A state that does not decode fails the
/// step with a message naming the saga's state type.
#[async_trait::async_trait]
pub trait TypedStep<C: Send + Sync, S>: Send + Sync {
    fn name(&self) -> &'static str;
    async fn run(&self, ctx: &C, state: &mut S) -> Result<(), String>;
    async fn undo(&self, ctx: &C, state: &S) -> Result<(), String>;
}

/// Adapts a [`TypedStep`] to the executor's [`Step`].
pub struct Typed<T, S>(pub T, std::marker::PhantomData<fn() -> S>);

impl<T, S> Typed<T, S> {
    pub fn new(step: T) -> Self {
        Typed(step, std::marker::PhantomData)
    }
}

fn decode<S: serde::de::DeserializeOwned>(state: &Value) -> Result<S, String> {
    serde_json::from_value(state.clone()).map_err(|e| {
        format!(
            "saga state {} cannot be read: {e}",
            std::any::type_name::<S>()
        )
    })
}

#[async_trait::async_trait]
impl<C, S, T> Step<C> for Typed<T, S>
where
    C: Send + Sync,
    S: serde::Serialize + serde::de::DeserializeOwned + Send + Sync,
    T: TypedStep<C, S>,
{
    fn name(&self) -> &'static str {
        self.0.name()
    }
    async fn run(&self, ctx: &C, state: &mut Value) -> Result<(), String> {
        let mut s: S = decode(state)?;
        self.0.run(ctx, &mut s).await?;
        *state = serde_json::to_value(&s).map_err(|e| e.to_string())?;
        Ok(())
    }
    async fn undo(&self, ctx: &C, state: &Value) -> Result<(), String> {
        let s: S = decode(state)?;
        self.0.undo(ctx, &s).await
    }
}

/// A named list of steps over a context `C` (the narrow services it may use).
pub struct SagaDef<C: Send + Sync> {
    pub name: &'static str,
    pub steps: Vec<Box<dyn Step<C>>>,
}

pub struct Executor<C: Send + Sync> {
    log: Arc<dyn SagaLog>,
    ctx: Arc<C>,
    defs: HashMap<&'static str, Arc<SagaDef<C>>>,
    /// Sagas this executor is driving now: recovery leaves them alone.
    driving: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Marks a saga as driven by this executor while it lives.
struct Driving {
    set: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    id: String,
}

impl Driving {
    /// None when the saga is already being driven here.
    fn claim(
        set: &Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
        id: &str,
    ) -> Option<Driving> {
        let fresh = set
            .lock()
            .map(|mut s| s.insert(id.to_string()))
            .unwrap_or(true);
        fresh.then(|| Driving {
            set: set.clone(),
            id: id.to_string(),
        })
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.id);
        }
    }
}

impl<C: Send + Sync + 'static> Executor<C> {
    pub fn new(log: Arc<dyn SagaLog>, ctx: Arc<C>) -> Self {
        Executor {
            log,
            ctx,
            defs: HashMap::new(),
            driving: Arc::default(),
        }
    }

    pub fn register(&mut self, def: SagaDef<C>) {
        self.defs.insert(def.name, Arc::new(def));
    }

    /// Starts and runs a saga to its end; returns the final state or why it unwound.
    pub async fn run(&self, name: &str, id: &str, state: Value) -> Result<Value, SagaError> {
        let def = self
            .defs
            .get(name)
            .cloned()
            .ok_or_else(|| SagaError::Unknown(name.into()))?;
        let rec = SagaRecord {
            id: id.into(),
            name: name.into(),
            step: 0,
            status: SagaStatus::Running,
            state,
            error: None,
        };
        let _driving = Driving::claim(&self.driving, id);
        self.log.create(&rec).await.map_err(SagaError::Log)?;
        self.drive(&def, rec).await
    }

    /// [`Executor::run`] with a typed state.
    pub async fn run_typed<S>(&self, name: &str, id: &str, state: &S) -> Result<S, SagaError>
    where
        S: serde::Serialize + serde::de::DeserializeOwned,
    {
        let v = serde_json::to_value(state)
            .map_err(|e| SagaError::Log(ferro_common::Error::internal(e.to_string())))?;
        let out = self.run(name, id, v).await?;
        serde_json::from_value(out)
            .map_err(|e| SagaError::Log(ferro_common::Error::internal(e.to_string())))
    }

    /// Resumes every unfinished saga (call once at start-up); one this
    /// executor is already driving (started since) is left to it.
    pub async fn recover(&self) -> Result<Vec<(String, Result<Value, SagaError>)>, SagaError> {
        let mut out = Vec::new();
        for rec in self.log.unfinished().await.map_err(SagaError::Log)? {
            let Some(_driving) = Driving::claim(&self.driving, &rec.id) else {
                continue;
            };
            let Some(def) = self.defs.get(rec.name.as_str()).cloned() else {
                tracing::warn!(saga = %rec.id, name = %rec.name, "unfinished saga of an unknown kind");
                continue;
            };
            tracing::info!(saga = %rec.id, name = %rec.name, step = rec.step, status = ?rec.status, "recovering saga");
            let id = rec.id.clone();
            out.push((id, self.drive(&def, rec).await));
        }
        Ok(out)
    }

    async fn drive(&self, def: &SagaDef<C>, mut rec: SagaRecord) -> Result<Value, SagaError> {
        if rec.status == SagaStatus::Running {
            while rec.step < def.steps.len() {
                let step = &def.steps[rec.step];
                let mut next = rec.state.clone();
                match step.run(&self.ctx, &mut next).await {
                    Ok(()) => {
                        rec.state = next;
                        rec.step += 1;
                        self.log.save(&rec).await.map_err(SagaError::Log)?;
                    }
                    Err(message) => {
                        tracing::warn!(saga = %rec.id, step = step.name(), %message, "saga step failed; unwinding");
                        rec.status = SagaStatus::Unwinding;
                        rec.error = Some(format!("{} failed: {message}", step.name()));
                        self.log.save(&rec).await.map_err(SagaError::Log)?;
                        break;
                    }
                }
            }
            if rec.status == SagaStatus::Running {
                rec.status = SagaStatus::Done;
                self.log.save(&rec).await.map_err(SagaError::Log)?;
                return Ok(rec.state);
            }
        }
        if rec.status == SagaStatus::Unwinding {
            // `step` counts completed steps: undo them newest first.
            while rec.step > 0 {
                let step = &def.steps[rec.step - 1];
                if let Err(message) = step.undo(&self.ctx, &rec.state).await {
                    rec.status = SagaStatus::Stuck;
                    rec.error = Some(format!("undo of {} failed: {message}", step.name()));
                    self.log.save(&rec).await.map_err(SagaError::Log)?;
                    return Err(SagaError::UndoFailed {
                        step: step.name().into(),
                        message,
                    });
                }
                rec.step -= 1;
                self.log.save(&rec).await.map_err(SagaError::Log)?;
            }
            rec.status = SagaStatus::Failed;
            self.log.save(&rec).await.map_err(SagaError::Log)?;
            let error = rec.error.clone().unwrap_or_default();
            let (step, message) = error
                .split_once(" failed: ")
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap_or((String::new(), error));
            return Err(SagaError::StepFailed { step, message });
        }
        match rec.status {
            SagaStatus::Done => Ok(rec.state),
            _ => Err(SagaError::StepFailed {
                step: String::new(),
                message: rec.error.unwrap_or_default(),
            }),
        }
    }
}
