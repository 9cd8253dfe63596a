//! Where saga progress is persisted: the database (the controller's source of
//! truth) or memory (unit tests).
use ferro_common::Error;
use ferro_db::entity::saga::saga;
use ferro_db::{db_err, now_micros};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SagaStatus {
    Running,
    Unwinding,
    Done,
    Failed,
    /// An undo failed: needs an operator.
    Stuck,
}

impl SagaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "running",
            SagaStatus::Unwinding => "unwinding",
            SagaStatus::Done => "done",
            SagaStatus::Failed => "failed",
            SagaStatus::Stuck => "stuck",
        }
    }
    pub fn parse(s: &str) -> SagaStatus {
        match s {
            "running" => SagaStatus::Running,
            "unwinding" => SagaStatus::Unwinding,
            "done" => SagaStatus::Done,
            "failed" => SagaStatus::Failed,
            _ => SagaStatus::Stuck,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SagaRecord {
    pub id: String,
    pub name: String,
    /// Number of completed steps.
    pub step: usize,
    pub status: SagaStatus,
    pub state: Value,
    pub error: Option<String>,
}

#[async_trait::async_trait]
pub trait SagaLog: Send + Sync {
    async fn create(&self, rec: &SagaRecord) -> Result<(), Error>;
    async fn save(&self, rec: &SagaRecord) -> Result<(), Error>;
    async fn get(&self, id: &str) -> Result<Option<SagaRecord>, Error>;
    /// Running or unwinding sagas.
    async fn unfinished(&self) -> Result<Vec<SagaRecord>, Error>;
}

#[derive(Default)]
pub struct MemSagaLog {
    recs: Mutex<BTreeMap<String, SagaRecord>>,
}

#[async_trait::async_trait]
impl SagaLog for MemSagaLog {
    async fn create(&self, rec: &SagaRecord) -> Result<(), Error> {
        let mut m = self
            .recs
            .lock()
            .map_err(|_| Error::internal("saga log poisoned"))?;
        if m.contains_key(&rec.id) {
            return Err(Error::conflict(format!("saga {} exists", rec.id)));
        }
        m.insert(rec.id.clone(), rec.clone());
        Ok(())
    }
    async fn save(&self, rec: &SagaRecord) -> Result<(), Error> {
        self.recs
            .lock()
            .map_err(|_| Error::internal("saga log poisoned"))?
            .insert(rec.id.clone(), rec.clone());
        Ok(())
    }
    async fn get(&self, id: &str) -> Result<Option<SagaRecord>, Error> {
        Ok(self
            .recs
            .lock()
            .map_err(|_| Error::internal("saga log poisoned"))?
            .get(id)
            .cloned())
    }
    async fn unfinished(&self) -> Result<Vec<SagaRecord>, Error> {
        Ok(self
            .recs
            .lock()
            .map_err(|_| Error::internal("saga log poisoned"))?
            .values()
            .filter(|r| matches!(r.status, SagaStatus::Running | SagaStatus::Unwinding))
            .cloned()
            .collect())
    }
}

/// The `saga` table.
pub struct DbSagaLog {
    pub db: ferro_db::Db,
}

/// A saga row; a state that cannot be read is an error naming the saga
/// (recovering it from nothing would run its steps on made-up state).
fn to_rec(m: saga::Model) -> Result<SagaRecord, Error> {
    let state: Value = serde_json::from_str(&m.state)
        .map_err(|e| ferro_db::docs::undecodable(&format!("saga {}", m.name), &m.id, &e))?;
    Ok(SagaRecord {
        id: m.id,
        name: m.name,
        step: usize::try_from(m.step).unwrap_or(0),
        status: SagaStatus::parse(&m.status),
        state,
        error: m.error,
    })
}

#[async_trait::async_trait]
impl SagaLog for DbSagaLog {
    async fn create(&self, rec: &SagaRecord) -> Result<(), Error> {
        let now = now_micros();
        saga::Model {
            id: rec.id.clone(),
            name: rec.name.clone(),
            step: rec.step as i64,
            status: rec.status.as_str().into(),
            state: rec.state.to_string(),
            error: rec.error.clone(),
            created_at: now,
            updated_at: now,
        }
        .into_active_model()
        .insert(&self.db.conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }
    async fn save(&self, rec: &SagaRecord) -> Result<(), Error> {
        let am = saga::ActiveModel {
            id: Set(rec.id.clone()),
            step: Set(rec.step as i64),
            status: Set(rec.status.as_str().into()),
            state: Set(rec.state.to_string()),
            error: Set(rec.error.clone()),
            updated_at: Set(now_micros()),
            ..Default::default()
        };
        am.update(&self.db.conn).await.map_err(db_err)?;
        Ok(())
    }
    async fn get(&self, id: &str) -> Result<Option<SagaRecord>, Error> {
        saga::Entity::find_by_id(id.to_string())
            .one(&self.db.conn)
            .await
            .map_err(db_err)?
            .map(to_rec)
            .transpose()
    }
    async fn unfinished(&self) -> Result<Vec<SagaRecord>, Error> {
        saga::Entity::find()
            .filter(saga::Column::Status.is_in(["running", "unwinding"]))
            .all(&self.db.conn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_rec)
            .collect()
    }
}
