//! Wiring: the gRPC API's [`nightjar_api::Agent`] over the running sensor's command channel.
//! A disabled policy is unloaded from the kernel and kept here, to be loaded again.
use std::{collections::BTreeMap, sync::Mutex};

use nightjar_api::{Agent, PolicyInfo};
use sensor::loader::Command;
use tokio::sync::{mpsc, oneshot};

pub struct SensorAgent {
    pub sensor: mpsc::Sender<Command>,
    /// The agent's health (`/healthz` says the same).
    pub health: pipeline::metrics::HealthFn,
    pub node: String,
    /// Disabled policies: name → their YAML.
    disabled: Mutex<BTreeMap<String, String>>,
    /// YAML of the policies added through the API (to disable and enable them again).
    sources: Mutex<BTreeMap<String, String>>,
}

impl SensorAgent {
    pub fn new(sensor: mpsc::Sender<Command>, health: pipeline::metrics::HealthFn, node: String) -> Self {
        SensorAgent { sensor, health, node, disabled: Mutex::default(), sources: Mutex::default() }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.sensor.send(make(tx)).await.map_err(|_| "the sensor is not running".to_owned())?;
        rx.await.map_err(|_| "the sensor is not running".to_owned())
    }

    async fn load(&self, yaml: &str) -> Result<String, String> {
        let loaded = sensor::policy::parse("<gRPC AddTracingPolicy>", yaml).map_err(|e| e.to_string())?;
        let st = self.ask(|tx| Command::AddPolicy(Box::new(loaded), tx)).await??;
        Ok(st.name)
    }
}

#[async_trait::async_trait]
impl Agent for SensorAgent {
    async fn add_policy(&self, yaml: String) -> Result<(), String> {
        let name = self.load(&yaml).await?;
        self.sources.lock().map_err(|e| e.to_string())?.insert(name, yaml);
        Ok(())
    }

    async fn delete_policy(&self, name: String) -> Result<(), String> {
        if self.disabled.lock().map_err(|e| e.to_string())?.remove(&name).is_some() {
            return Ok(());
        }
        self.ask(|tx| Command::DeletePolicy(name.clone(), tx)).await??;
        self.sources.lock().map_err(|e| e.to_string())?.remove(&name);
        Ok(())
    }

    async fn list_policies(&self) -> Result<Vec<PolicyInfo>, String> {
        let loaded = match self.ask(Command::ListPolicies).await {
            Ok(l) => l,
            // No sensor (`sensor.enabled: false`): no policy is loaded.
            Err(_) if self.sensor.is_closed() => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut out: Vec<PolicyInfo> = loaded
            .into_iter()
            .map(|p| PolicyInfo {
                name: p.name,
                enabled: true,
                sensors: p.hooks.iter().map(|h| format!("{} ({})", h.function, h.backend)).collect(),
                info: p.source,
                ..Default::default()
            })
            .collect();
        for name in self.disabled.lock().map_err(|e| e.to_string())?.keys() {
            out.push(PolicyInfo { name: name.clone(), enabled: false, ..Default::default() });
        }
        for (i, p) in out.iter_mut().enumerate() {
            p.id = i as u64 + 1;
        }
        Ok(out)
    }

    async fn set_enabled(&self, name: String, enabled: bool) -> Result<(), String> {
        if enabled {
            let yaml = self.disabled.lock().map_err(|e| e.to_string())?.remove(&name);
            return match yaml {
                Some(y) => self.load(&y).await.map(|_| ()),
                None => Ok(()),
            };
        }
        let yaml = self.sources.lock().map_err(|e| e.to_string())?.get(&name).cloned().ok_or_else(|| {
            format!("policy {name:?} was not added through the API: its YAML is not kept, so it cannot be enabled again; delete it instead")
        })?;
        self.ask(|tx| Command::DeletePolicy(name.clone(), tx)).await??;
        self.disabled.lock().map_err(|e| e.to_string())?.insert(name, yaml);
        Ok(())
    }

    fn health(&self) -> Result<(), String> {
        (self.health)()
    }

    fn node_name(&self) -> String {
        self.node.clone()
    }
}
