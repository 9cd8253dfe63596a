//! Fault injection at every step: a failure unwinds everything done so far;
//! a "kill" mid-step (the task is aborted) is finished by recovery with a new
//! executor over the same persisted log, leaving no half-made resources.
#![allow(clippy::unwrap_used)]

use ferro_saga::{DbSagaLog, Executor, SagaDef, SagaError, SagaLog, SagaStatus, Step};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

const STEPS: [&str; 4] = ["quota", "claim", "port", "spawn"];

#[derive(Default)]
struct World {
    /// What the steps have made and not undone.
    made: Mutex<BTreeSet<String>>,
    fail_at: Mutex<Option<&'static str>>,
    /// A step that blocks forever (the process "dies" in it).
    hang_at: Mutex<Option<&'static str>>,
    entered: tokio::sync::Notify,
}

struct Make(&'static str);

#[async_trait::async_trait]
impl Step<World> for Make {
    fn name(&self) -> &'static str {
        self.0
    }
    async fn run(&self, w: &World, state: &mut Value) -> Result<(), String> {
        // idempotent: making it twice is the same as once
        w.made.lock().unwrap().insert(self.0.to_string());
        state[self.0] = json!(true);
        if *w.hang_at.lock().unwrap() == Some(self.0) {
            w.entered.notify_one();
            std::future::pending::<()>().await;
        }
        if *w.fail_at.lock().unwrap() == Some(self.0) {
            return Err(format!("{} exploded", self.0));
        }
        Ok(())
    }
    async fn undo(&self, w: &World, _state: &Value) -> Result<(), String> {
        w.made.lock().unwrap().remove(self.0);
        Ok(())
    }
}

fn def() -> SagaDef<World> {
    SagaDef {
        name: "server-create",
        steps: STEPS
            .iter()
            .map(|s| Box::new(Make(s)) as Box<dyn Step<World>>)
            .collect(),
    }
}

async fn db_log() -> (tempfile::TempDir, Arc<DbSagaLog>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let db = ferro_db::Db::connect(&url, 2).await.unwrap();
    db.upgrade().await.unwrap();
    (dir, Arc::new(DbSagaLog { db }))
}

#[tokio::test]
async fn success_runs_every_step() {
    let (_d, log) = db_log().await;
    let world = Arc::new(World::default());
    let mut ex = Executor::new(log.clone(), world.clone());
    ex.register(def());
    let state = ex.run("server-create", "s1", json!({})).await.unwrap();
    assert_eq!(
        state,
        json!({"quota": true, "claim": true, "port": true, "spawn": true})
    );
    assert_eq!(world.made.lock().unwrap().len(), 4);
    assert_eq!(
        log.get("s1").await.unwrap().unwrap().status,
        SagaStatus::Done
    );
}

#[tokio::test]
async fn a_failure_at_any_step_unwinds_everything() {
    for (i, at) in STEPS.iter().enumerate() {
        let (_d, log) = db_log().await;
        let world = Arc::new(World::default());
        *world.fail_at.lock().unwrap() = Some(at);
        let mut ex = Executor::new(log.clone(), world.clone());
        ex.register(def());
        match ex.run("server-create", "s", json!({})).await {
            Err(SagaError::StepFailed { step, message }) => {
                assert_eq!(step, *at);
                assert!(message.contains("exploded"));
            }
            other => panic!("step {i}: expected a failure, got {other:?}"),
        }
        // the failing step's own partial work is the step's to clean; every
        // completed step was undone
        let left: Vec<String> = world
            .made
            .lock()
            .unwrap()
            .iter()
            .filter(|m| *m != at)
            .cloned()
            .collect();
        assert!(left.is_empty(), "failure at {at} left {left:?}");
        let rec = log.get("s").await.unwrap().unwrap();
        assert_eq!(rec.status, SagaStatus::Failed);
        assert_eq!(rec.step, 0);
    }
}

#[tokio::test]
async fn a_kill_at_any_step_is_finished_by_recovery() {
    for at in STEPS {
        let (_d, log) = db_log().await;
        let world = Arc::new(World::default());
        *world.hang_at.lock().unwrap() = Some(at);
        let mut ex = Executor::new(log.clone() as Arc<dyn SagaLog>, world.clone());
        ex.register(def());
        let ex = Arc::new(ex);
        let ex2 = ex.clone();
        let task = tokio::spawn(async move { ex2.run("server-create", "s", json!({})).await });
        // bounded: a saga that fails before reaching the step must not hang the test
        tokio::time::timeout(std::time::Duration::from_secs(10), world.entered.notified())
            .await
            .expect("the saga reached the step");
        task.abort(); // the process dies inside `at`
        let _ = task.await;
        assert_eq!(
            log.get("s").await.unwrap().unwrap().status,
            SagaStatus::Running
        );

        // restart: a new executor over the same log finishes the saga
        *world.hang_at.lock().unwrap() = None;
        let mut fresh = Executor::new(log.clone() as Arc<dyn SagaLog>, world.clone());
        fresh.register(def());
        let recovered = fresh.recover().await.unwrap();
        assert_eq!(recovered.len(), 1);
        assert!(
            recovered[0].1.is_ok(),
            "recovery after a kill in {at}: {:?}",
            recovered[0].1
        );
        assert_eq!(
            log.get("s").await.unwrap().unwrap().status,
            SagaStatus::Done
        );
        assert_eq!(
            world.made.lock().unwrap().len(),
            4,
            "each resource made exactly once"
        );
        assert!(
            fresh.recover().await.unwrap().is_empty(),
            "nothing left to recover"
        );
    }
}

/// Recovery at start-up must not take over a saga this executor started
/// since (it would run its steps a second time, concurrently).
#[tokio::test]
async fn recovery_leaves_a_saga_driven_here_alone() {
    let (_d, log) = db_log().await;
    let world = Arc::new(World::default());
    *world.hang_at.lock().unwrap() = Some("port");
    let mut ex = Executor::new(log.clone(), world.clone());
    ex.register(def());
    let ex = Arc::new(ex);
    let ex2 = ex.clone();
    let running = tokio::spawn(async move { ex2.run("server-create", "s1", json!({})).await });
    world.entered.notified().await;
    let recovered = ex.recover().await.unwrap();
    assert!(
        recovered.is_empty(),
        "recovery drove a saga already running here: {:?}",
        recovered.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
    running.abort();
    // A new executor (the next process) does recover it.
    let world2 = Arc::new(World::default());
    let mut next = Executor::new(log.clone(), world2.clone());
    next.register(def());
    let recovered = next.recover().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert!(recovered[0].1.is_ok());
}
