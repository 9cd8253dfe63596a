//! The compute agent (nova-compute's job): consumes `compute.<host>` on the
//! bus, owns its instances (one task per instance, requests queued in
//! order), drives a `VirtDriver`, and heartbeats its host and resources to
//! the conductor. It never opens the database (DESIGN.md §3).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use base64::Engine;
use ferro_bus::{Bus, Envelope, Incoming, Target};
use ferro_virt::{GuestSpec, PowerState, VirtDriver, VirtError};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The bus topic agents consume (one server per host).
pub const TOPIC: &str = "compute";
/// Where heartbeats go.
pub const CONDUCTOR_TOPIC: &str = "conductor";

pub struct ComputeAgent {
    pub host: String,
    pub driver: Arc<dyn VirtDriver>,
    bus: Arc<dyn Bus>,
    report_interval: Duration,
}

impl ComputeAgent {
    pub fn new(
        bus: Arc<dyn Bus>,
        host: String,
        driver: Arc<dyn VirtDriver>,
        report_interval: Duration,
    ) -> Arc<ComputeAgent> {
        Arc::new(ComputeAgent {
            host,
            driver,
            bus,
            report_interval,
        })
    }

    /// Subscribes and runs until the bus closes; heartbeats meanwhile.
    pub async fn start(
        self: Arc<Self>,
    ) -> Result<tokio::task::JoinHandle<()>, ferro_bus::BusError> {
        let mut sub = self.bus.serve(TOPIC, &self.host).await?;
        let hb = self.clone();
        tokio::spawn(async move {
            loop {
                hb.report().await;
                tokio::time::sleep(hb.report_interval).await;
            }
        });
        let me = self.clone();
        Ok(tokio::spawn(async move {
            let mut queues: HashMap<String, mpsc::UnboundedSender<Incoming>> = HashMap::new();
            while let Some(msg) = sub.next().await {
                let uuid = msg
                    .envelope
                    .args
                    .get("uuid")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                match uuid {
                    Some(uuid) => {
                        queues.retain(|_, q| !q.is_closed());
                        let q = queues.entry(uuid.clone()).or_insert_with(|| {
                            let (tx, rx) = mpsc::unbounded_channel();
                            tokio::spawn(me.clone().instance_task(uuid, rx));
                            tx
                        });
                        if let Err(e) = q.send(msg) {
                            // The task just ended; serve this one inline.
                            me.handle(e.0).await;
                        }
                    }
                    None => me.handle(msg).await,
                }
            }
        }))
    }

    /// One instance's requests, strictly in order; ends when idle.
    async fn instance_task(
        self: Arc<Self>,
        uuid: String,
        mut rx: mpsc::UnboundedReceiver<Incoming>,
    ) {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            self.handle(msg).await;
        }
        tracing::debug!(instance = %uuid, "instance task idle; ended");
    }

    async fn handle(&self, msg: Incoming) {
        let rid = msg.envelope.request_id.clone().unwrap_or_default();
        let method = msg.envelope.method.clone();
        let span = tracing::info_span!("agent", host = %self.host, request_id = %rid, %method);
        let result = {
            let _g = span.enter();
            drop(_g);
            tracing::Instrument::instrument(self.dispatch(&msg.envelope), span).await
        };
        if let Err(e) = &result {
            tracing::warn!(host = %self.host, %method, "agent call failed: {e}");
        }
        msg.reply(result).await;
    }

    async fn dispatch(&self, env: &Envelope) -> Result<Value, String> {
        let a = &env.args;
        let uuid = a.get("uuid").and_then(Value::as_str).unwrap_or_default();
        let spec = || -> Result<GuestSpec, String> {
            serde_json::from_value(a.get("spec").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("bad guest spec: {e}"))
        };
        let d = &self.driver;
        let r: Result<(), VirtError> = match env.method.as_str() {
            "ping" => return Ok(json!({"host": self.host})),
            "host_resources" => {
                return serde_json::to_value(d.host_resources()).map_err(|e| e.to_string());
            }
            "list" => return Ok(json!({"instances": d.list().await})),
            "spawn" => d.spawn(&spec()?).await,
            "adopt" => {
                let st: PowerState = serde_json::from_value(
                    a.get("power_state").cloned().unwrap_or(json!("Running")),
                )
                .unwrap_or(PowerState::Running);
                d.adopt(&spec()?, st).await
            }
            "destroy" => d.destroy(uuid).await,
            "power_off" => d.power_off(uuid).await,
            "power_on" => d.power_on(uuid).await,
            "reboot" => {
                d.reboot(
                    uuid,
                    a.get("hard").and_then(Value::as_bool).unwrap_or(false),
                )
                .await
            }
            "pause" => d.pause(uuid).await,
            "unpause" => d.unpause(uuid).await,
            "suspend" => d.suspend(uuid).await,
            "resume" => d.resume(uuid).await,
            "rescue" => {
                d.rescue(uuid, a.get("image_id").and_then(Value::as_str))
                    .await
            }
            "unrescue" => d.unrescue(uuid).await,
            "resize" => d.resize(&spec()?).await,
            "snapshot" => {
                let data = d.snapshot(uuid).await.map_err(|e| e.to_string())?;
                return Ok(json!({
                    "data": base64::engine::general_purpose::STANDARD.encode(data)
                }));
            }
            "console_output" => {
                let out = d.console_output(uuid).await.map_err(|e| e.to_string())?;
                return Ok(json!({"output": out}));
            }
            "attach_volume" => {
                let dev = a.get("device").and_then(Value::as_str).unwrap_or_default();
                let info = a.get("connection_info").cloned().unwrap_or(Value::Null);
                d.attach_volume(uuid, dev, &info).await
            }
            "extend_volume" => {
                let dev = a.get("device").and_then(Value::as_str).unwrap_or_default();
                d.extend_volume(uuid, dev).await
            }
            "detach_volume" => {
                let dev = a.get("device").and_then(Value::as_str).unwrap_or_default();
                d.detach_volume(uuid, dev).await
            }
            "volumes" => return Ok(json!({"volumes": d.volumes(uuid).await})),
            "volume_snapshot_create" => {
                let vol = a
                    .get("volume_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let info = a.get("create_info").cloned().unwrap_or(Value::Null);
                d.volume_snapshot_create(uuid, vol, &info).await
            }
            "volume_snapshot_delete" => {
                let vol = a
                    .get("volume_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let snap = a
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                d.volume_snapshot_delete(uuid, vol, snap).await
            }
            "power_state" => Ok(()),
            other => return Err(format!("unknown compute method {other}")),
        };
        r.map_err(|e| e.to_string())?;
        let ps = match env.method.as_str() {
            "destroy" => PowerState::NoState,
            _ => d.power_state(uuid).await.unwrap_or(PowerState::NoState),
        };
        Ok(json!({"power_state": ps.code()}))
    }

    /// Heartbeat: the host, its resources, the guests it runs and their power states.
    pub async fn report(&self) {
        let instances = self.driver.list().await;
        let mut power = serde_json::Map::new();
        for uuid in &instances {
            if let Ok(ps) = self.driver.power_state(uuid).await {
                power.insert(uuid.clone(), json!(ps.code()));
            }
        }
        let msg = Envelope::new(
            "report",
            json!({
                "host": self.host,
                "binary": "nova-compute",
                "resources": self.driver.host_resources(),
                "driver": self.driver.name(),
                "instances": instances,
                "power_states": power,
            }),
        );
        if let Err(e) = self.bus.cast(&Target::topic(CONDUCTOR_TOPIC), msg).await {
            tracing::debug!(host = %self.host, "heartbeat not delivered: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferro_bus::InProcBus;
    use ferro_virt::FakeDriver;

    #[tokio::test]
    async fn spawn_and_stop_over_the_bus() {
        let bus: Arc<dyn Bus> = Arc::new(InProcBus::new());
        let mut conductor = bus.serve(CONDUCTOR_TOPIC, "c").await.unwrap();
        let agent = ComputeAgent::new(
            bus.clone(),
            "h1".into(),
            Arc::new(FakeDriver::new(4, 4096, 40)),
            Duration::from_secs(3600),
        );
        agent.start().await.unwrap();
        let hb = conductor.next().await.unwrap();
        assert_eq!(hb.envelope.args["host"], "h1");
        let t = Target::server(TOPIC, "h1");
        let spec = json!({"uuid": "u1", "name": "vm", "vcpus": 1, "memory_mb": 64, "root_gb": 1,
            "ephemeral_gb": 0, "swap_mb": 0, "image_id": null});
        let r = bus
            .call(
                &t,
                Envelope::new("spawn", json!({"uuid": "u1", "spec": spec})),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r["power_state"], 1);
        let r = bus
            .call(
                &t,
                Envelope::new("power_off", json!({"uuid": "u1"})),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r["power_state"], 4);
        let e = bus
            .call(
                &t,
                Envelope::new("pause", json!({"uuid": "nope"})),
                Duration::from_secs(5),
            )
            .await;
        assert!(e.is_err());
    }
}
