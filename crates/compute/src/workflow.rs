//! The context every Compute workflow (saga) step runs in, and the test
//! hook that fails or hangs a named step. The executor that registers the
//! sagas is built in `lib.rs`.
use crate::ComputeService;
use std::sync::{Arc, Weak};

pub struct Ctx {
    pub(crate) svc: Weak<ComputeService>,
}

impl Ctx {
    pub(crate) fn svc(&self) -> Result<Arc<ComputeService>, String> {
        self.svc
            .upgrade()
            .ok_or_else(|| "compute service stopped".to_string())
    }
}

/// The test hook: fail or hang at a named step.
pub(crate) async fn inject(svc: &ComputeService, step: &str) -> Result<(), String> {
    let Some(spec) = svc.cfg.compute.fault_injection.as_deref() else {
        return Ok(());
    };
    for item in spec.split(',') {
        match item.trim().split_once(':') {
            Some((s, "fail")) if s == step => {
                return Err(format!("injected failure at {step}"));
            }
            Some((s, "hang")) if s == step => {
                tracing::warn!(step, "fault injection: hanging (kill the process now)");
                std::future::pending::<()>().await;
            }
            _ => {}
        }
    }
    Ok(())
}
