//! What Compute asks of Networking (Nova's `network/neutron.py`, in
//! process): check a create request's `networks`, create or bind the ports
//! of an instance, unbind and delete them, and the `addresses` view
//! (fixed and floating addresses per network name).
use crate::error::NeutronError;
use crate::store::{Kind, Obj, State, Tx, arr, s, touch};
use crate::{NetworkService, net_shared_with};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// A requested NIC: an existing port, or a network with an optional address.
#[derive(Debug, Clone)]
pub enum Nic {
    Port(String),
    Net {
        id: String,
        fixed_ip: Option<String>,
    },
}

/// Who is asking (the server's project; admin may use any network).
pub struct Requester<'a> {
    pub project: &'a str,
    pub admin: bool,
}

fn usable(st: &State, r: &Requester, net: &Obj) -> bool {
    r.admin || s(net, "project_id") == r.project || net_shared_with(st, net, r.project)
}

/// Turns Nova's `networks` value into NICs: `auto` picks the project's one
/// usable network (none: no NIC; several: an error, as Nova says).
pub fn resolve(st: &State, r: &Requester, requested: &Value) -> Result<Vec<Nic>, String> {
    match requested {
        Value::String(x) if x == "none" => Ok(vec![]),
        Value::String(x) if x == "auto" => {
            let nets: Vec<&Arc<Obj>> = st
                .iter(Kind::Network)
                .filter(|n| !crate::store::b(n, "router:external"))
                .filter(|n| s(n, "project_id") == r.project || net_shared_with(st, n, r.project))
                .collect();
            match nets.len() {
                0 => Ok(vec![]),
                1 => Ok(vec![Nic::Net {
                    id: s(nets[0], "id").to_string(),
                    fixed_ip: None,
                }]),
                _ => Err(
                    "Multiple possible networks found, use a Network ID to be more specific."
                        .into(),
                ),
            }
        }
        Value::Array(list) => {
            let mut out = Vec::new();
            for n in list {
                if let Some(p) = n
                    .get("port")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                {
                    let port = st
                        .get(Kind::Port, p)
                        .filter(|x| r.admin || s(x, "project_id") == r.project)
                        .ok_or_else(|| format!("Port {p} could not be found."))?;
                    if !s(port, "device_id").is_empty() {
                        return Err(format!("Port {p} is still in use."));
                    }
                    out.push(Nic::Port(p.to_string()));
                } else if let Some(u) = n.get("uuid").and_then(Value::as_str) {
                    let net = st
                        .get(Kind::Network, u)
                        .filter(|x| usable(st, r, x))
                        .ok_or_else(|| format!("Network {u} could not be found."))?;
                    if arr(net, "subnets").is_empty() {
                        return Err(format!(
                            "Network {u} requires a subnet in order to boot instances on."
                        ));
                    }
                    out.push(Nic::Net {
                        id: u.to_string(),
                        fixed_ip: n
                            .get("fixed_ip")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    });
                } else {
                    return Err("Bad networks format".into());
                }
            }
            Ok(out)
        }
        _ => Ok(vec![]),
    }
}

impl NetworkService {
    /// Validates the requested NICs and security group names before Nova records anything.
    pub fn nova_validate(
        &self,
        r: &Requester,
        requested: &Value,
        sgs: &[String],
    ) -> Result<(), String> {
        let st = self.store.read();
        let nics = resolve(&st, r, requested)?;
        for n in &nics {
            if let Nic::Net {
                id,
                fixed_ip: Some(ip),
            } = n
            {
                let inuse = crate::http::subnets::net_subnets(&st, id).iter().any(|x| {
                    crate::ipam::parse_ip(ip).is_some_and(|(_, a)| st.ip_used(s(x, "id"), a))
                });
                if inuse {
                    return Err(format!(
                        "Fixed IP address {ip} is already in use on instance."
                    ));
                }
            }
        }
        for g in sgs {
            self.sg_id(&st, r.project, g).ok_or_else(|| {
                format!("Security group {g} not found for project {}.", r.project)
            })?;
        }
        Ok(())
    }

    fn sg_id(&self, st: &State, project: &str, name_or_id: &str) -> Option<String> {
        if name_or_id == "default" {
            return Some("default".into());
        }
        st.iter(Kind::SecurityGroup)
            .find(|g| {
                s(g, "project_id") == project
                    && (s(g, "id") == name_or_id || s(g, "name") == name_or_id)
            })
            .map(|g| s(g, "id").to_string())
    }

    /// Creates (or binds) the instance's ports on `host`; returns `addresses`.
    pub async fn nova_allocate(
        &self,
        instance: &str,
        r: &Requester<'_>,
        host: &str,
        requested: &Value,
        sgs: &[String],
    ) -> Result<Map<String, Value>, String> {
        let res = self
            .store
            .write(|tx| {
                // Idempotent: a retried step finds the ports it made.
                if tx
                    .st
                    .iter(Kind::Port)
                    .any(|p| s(p, "device_id") == instance)
                {
                    let mine: Vec<Arc<Obj>> = tx
                        .st
                        .iter(Kind::Port)
                        .filter(|p| s(p, "device_id") == instance)
                        .cloned()
                        .collect();
                    for p in mine {
                        let mut o = (*p).clone();
                        o.insert("binding:host_id".into(), json!(host));
                        o.insert("binding:vif_type".into(), json!("bridge"));
                        tx.put(Kind::Port, o);
                    }
                    return Ok(());
                }
                let nics = resolve(&tx.st, r, requested).map_err(NeutronError::bad)?;
                let sg_ids: Vec<String> = if sgs.is_empty() {
                    vec![]
                } else {
                    let mut v = Vec::new();
                    for g in sgs {
                        let id = match self.sg_id(&tx.st, r.project, g) {
                            Some(x) if x == "default" => {
                                crate::http::secgroups::ensure_default(self, tx, r.project)?
                            }
                            Some(x) => x,
                            None => {
                                return Err(NeutronError::bad(format!(
                                    "Security group {g} not found"
                                )));
                            }
                        };
                        v.push(id);
                    }
                    v
                };
                for nic in nics {
                    self.bind_nic(tx, instance, r, host, nic, &sg_ids)?;
                }
                Ok(())
            })
            .await;
        res.map_err(|e| e.message)?;
        self.notify();
        Ok(self.nova_addresses(instance))
    }

    /// Creates a port for `nic` (or binds the given one) on `host` for the
    /// instance; returns the port's id. New ports get `sg_ids`, or the
    /// project's default group when it is empty.
    fn bind_nic(
        &self,
        tx: &mut Tx,
        instance: &str,
        r: &Requester<'_>,
        host: &str,
        nic: Nic,
        sg_ids: &[String],
    ) -> Result<String, NeutronError> {
        let owner = format!("compute:{}", self.cfg.compute.default_availability_zone);
        match nic {
            Nic::Port(pid) => {
                let mut u = Obj::new();
                u.insert("device_id".into(), json!(instance));
                u.insert("device_owner".into(), json!(owner));
                u.insert("binding:host_id".into(), json!(host));
                let mut p = crate::http::ports::update_tx(self, tx, true, r.project, &pid, u)?;
                p.insert("nova_preexisting".into(), json!(true));
                tx.put(Kind::Port, p);
                Ok(pid)
            }
            Nic::Net { id, fixed_ip } => {
                let mut o = Obj::new();
                o.insert("network_id".into(), json!(id));
                o.insert("device_id".into(), json!(instance));
                o.insert("device_owner".into(), json!(owner));
                o.insert("binding:host_id".into(), json!(host));
                if let Some(ip) = fixed_ip {
                    o.insert("fixed_ips".into(), json!([{"ip_address": ip}]));
                }
                if !sg_ids.is_empty() {
                    o.insert("security_groups".into(), json!(sg_ids));
                }
                let p = crate::http::ports::create_tx(self, tx, true, r.project, r.project, o)?;
                Ok(s(&p, "id").to_string())
            }
        }
    }

    /// Nova's `os-interface` attach: one NIC (`{"port": id}`, `{"uuid":
    /// net, "fixed_ip": ip}`, or `"auto"`) added to the instance on `host`,
    /// in one transaction. Returns the interface in Nova's shape.
    pub async fn nova_attach(
        &self,
        instance: &str,
        r: &Requester<'_>,
        host: &str,
        nic: &Value,
    ) -> Result<Value, NeutronError> {
        let pid = self
            .store
            .write(|tx| {
                let requested = if nic.is_object() {
                    json!([nic])
                } else {
                    nic.clone()
                };
                let mut nics = resolve(&tx.st, r, &requested).map_err(|m| {
                    if m.contains("could not be found") {
                        NeutronError::new(404, "NotFound", m)
                    } else if m.contains("still in use") || m.starts_with("Multiple possible") {
                        NeutronError::conflict("Conflict", m)
                    } else {
                        NeutronError::bad(m)
                    }
                })?;
                if nics.len() != 1 {
                    return Err(NeutronError::bad("No network is available to attach."));
                }
                let nic = nics.remove(0);
                self.bind_nic(tx, instance, r, host, nic, &[])
            })
            .await?;
        self.notify();
        let st = self.store.read();
        st.get(Kind::Port, &pid)
            .map(|p| interface_view(p))
            .ok_or_else(|| NeutronError::not_found("Port", &pid))
    }

    /// Nova's `os-interface` detach: the port leaves the instance (deleted
    /// when Nova made it, unbound when it was given).
    pub async fn nova_detach(&self, instance: &str, port: &str) -> Result<(), NeutronError> {
        self.store
            .write(|tx| {
                let p = tx
                    .get(Kind::Port, port)
                    .filter(|p| s(p, "device_id") == instance)
                    .ok_or_else(|| {
                        NeutronError::new(404, "NotFound", format!("Port {port} is not attached"))
                    })?;
                release_port(tx, &p)
            })
            .await?;
        self.notify();
        Ok(())
    }

    /// The instance's interfaces in Nova's `interfaceAttachments` shape.
    pub fn nova_interfaces(&self, instance: &str) -> Vec<Value> {
        let st = self.store.read();
        st.iter(Kind::Port)
            .filter(|p| s(p, "device_id") == instance)
            .map(|p| interface_view(p))
            .collect()
    }

    /// The instance's ports as a hypervisor plugs them: port, MAC, network
    /// (with its MTU) and fixed addresses.
    /// In the order they were made (the first is the guest's first NIC,
    /// whose address the EC2 metadata shows as `local-ipv4`).
    pub fn nova_vifs(&self, instance: &str) -> Vec<NovaVif> {
        let st = self.store.read();
        let mut ports: Vec<_> = st
            .iter(Kind::Port)
            .filter(|p| s(p, "device_id") == instance)
            .collect();
        ports.sort_by(|a, b| {
            (s(a, "created_at"), s(a, "id")).cmp(&(s(b, "created_at"), s(b, "id")))
        });
        ports
            .into_iter()
            .map(|p| NovaVif {
                port_id: s(p, "id").to_string(),
                mac_address: s(p, "mac_address").to_string(),
                network_id: s(p, "network_id").to_string(),
                mtu: st
                    .get(Kind::Network, s(p, "network_id"))
                    .and_then(|n| n.get("mtu"))
                    .and_then(Value::as_u64)
                    .and_then(|m| u32::try_from(m).ok()),
                fixed_ips: arr(p, "fixed_ips")
                    .iter()
                    .filter_map(|f| f.get("ip_address").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect(),
                active: s(p, "status") == "ACTIVE",
            })
            .collect()
    }

    /// Deletes the ports Nova created for the instance and unbinds the ones it was given.
    pub async fn nova_deallocate(&self, instance: &str) -> Result<(), String> {
        self.store
            .write(|tx| {
                let ports: Vec<Arc<Obj>> = tx
                    .st
                    .iter(Kind::Port)
                    .filter(|p| s(p, "device_id") == instance)
                    .cloned()
                    .collect();
                for p in ports {
                    release_port(tx, &p)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| e.message)?;
        self.notify();
        Ok(())
    }

    /// Nova's `addresses`: per network name, fixed then floating addresses.
    pub fn nova_addresses(&self, instance: &str) -> Map<String, Value> {
        let st = self.store.read();
        let mut out: Map<String, Value> = Map::new();
        for p in st
            .iter(Kind::Port)
            .filter(|p| s(p, "device_id") == instance)
        {
            let Some(net) = st.get(Kind::Network, s(p, "network_id")) else {
                continue;
            };
            let name = if s(net, "name").is_empty() {
                s(net, "id")
            } else {
                s(net, "name")
            };
            let entry = out.entry(name.to_string()).or_insert_with(|| json!([]));
            let Some(list) = entry.as_array_mut() else {
                continue;
            };
            for f in arr(p, "fixed_ips") {
                let ip = f["ip_address"].as_str().unwrap_or("");
                let v = if ip.contains(':') { 6 } else { 4 };
                list.push(json!({"version": v, "addr": ip, "OS-EXT-IPS:type": "fixed",
                                 "OS-EXT-IPS-MAC:mac_addr": s(p, "mac_address")}));
                for fip in st
                    .iter(Kind::FloatingIp)
                    .filter(|x| s(x, "port_id") == s(p, "id") && s(x, "fixed_ip_address") == ip)
                {
                    list.push(json!({"version": 4, "addr": s(fip, "floating_ip_address"), "OS-EXT-IPS:type": "floating",
                                     "OS-EXT-IPS-MAC:mac_addr": s(p, "mac_address")}));
                }
            }
        }
        out
    }
}

/// A port leaving its instance: deleted when Nova made it, unbound when the
/// user gave it.
fn release_port(tx: &mut Tx, p: &Obj) -> Result<(), NeutronError> {
    if crate::store::b(p, "nova_preexisting") {
        let mut o = p.clone();
        o.insert("device_id".into(), json!(""));
        o.insert("device_owner".into(), json!(""));
        o.insert("binding:host_id".into(), json!(""));
        o.insert("binding:vif_type".into(), json!("unbound"));
        o.insert("binding:vif_details".into(), json!({}));
        o.remove("nova_preexisting");
        touch(&mut o);
        tx.put(Kind::Port, o);
        Ok(())
    } else {
        crate::http::ports::delete_tx(tx, s(p, "id"), false)
    }
}

/// One `interfaceAttachment` as Nova shows it.
/// One port of an instance, as its hypervisor plugs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NovaVif {
    pub port_id: String,
    pub mac_address: String,
    pub network_id: String,
    pub mtu: Option<u32>,
    pub fixed_ips: Vec<String>,
    /// The port's status is ACTIVE.
    pub active: bool,
}

fn interface_view(p: &Obj) -> Value {
    let fixed: Vec<Value> = arr(p, "fixed_ips")
        .iter()
        .map(|f| json!({"subnet_id": f.get("subnet_id"), "ip_address": f.get("ip_address")}))
        .collect();
    json!({
        "port_state": s(p, "status"),
        "fixed_ips": fixed,
        "port_id": s(p, "id"),
        "net_id": s(p, "network_id"),
        "mac_addr": s(p, "mac_address"),
    })
}
