//! Agent scheduling (`l3_agent_scheduler`, `dhcp_agent_scheduler`): which
//! L3 agent hosts a router and which DHCP agent serves a network, and an
//! admin's moves of them. A router or network taken off its agent stays
//! unhosted (nothing of it is realised on any host) until it is added to
//! an agent again, as Neutron's `remove_router_from_l3_agent` and
//! `remove_network_from_dhcp_agent` leave it. One agent hosts each router
//! (legacy routers) and each network (`dhcp_agents_per_network = 1`).
use super::agents::{agent_view, get_agent};
use super::{Body, St, created, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::hosts::{dhcp_binding, dhcp_served, hosting, l3_binding};
use crate::store::{Kind, Obj, State, s};
use crate::{Caller, NetworkService};
use axum::Router;
use axum::extract::{Path, State as Svc};
use axum::response::Response;
use axum::routing::{delete, get};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route(
            "/v2.0/agents/{id}/l3-routers",
            get(routers_on_agent).post(add_router),
        )
        .route(
            "/v2.0/agents/{id}/l3-routers/{router}",
            delete(remove_router),
        )
        .route("/v2.0/routers/{id}/l3-agents", get(agents_of_router))
        .route(
            "/v2.0/agents/{id}/dhcp-networks",
            get(networks_on_agent).post(add_network),
        )
        .route(
            "/v2.0/agents/{id}/dhcp-networks/{network}",
            delete(remove_network),
        )
        .route("/v2.0/networks/{id}/dhcp-agents", get(agents_of_network))
}

/// What an agent of each kind hosts.
#[derive(Clone, Copy)]
enum Hosted {
    L3,
    Dhcp,
}

impl Hosted {
    fn agent_type(self) -> &'static str {
        match self {
            Hosted::L3 => "L3 agent",
            Hosted::Dhcp => "DHCP agent",
        }
    }
    fn binding(self, id: &str) -> String {
        match self {
            Hosted::L3 => l3_binding(id),
            Hosted::Dhcp => dhcp_binding(id),
        }
    }
    fn invalid_agent(self, id: &str) -> NeutronError {
        match self {
            Hosted::L3 => NeutronError::new(
                404,
                "InvalidL3Agent",
                format!("Agent {id} is not a L3 Agent or has been disabled"),
            ),
            Hosted::Dhcp => NeutronError::new(
                404,
                "InvalidDHCPAgent",
                format!("Agent {id} is not a valid DHCP Agent or has been disabled"),
            ),
        }
    }
}

fn admin(c: &Caller, action: &str) -> NResult<()> {
    if c.admin {
        Ok(())
    } else {
        Err(NeutronError::forbidden(action))
    }
}

/// The one host of a data plane that is not per host.
fn own(svc: &NetworkService) -> Option<&str> {
    (!svc.hostnet.per_host()).then_some(svc.host.as_str())
}

/// The host that serves `id` (a router or a network), if any.
fn host_of<'a>(svc: &'a NetworkService, st: &'a State, k: Hosted, id: &str) -> Option<&'a str> {
    let own = match k {
        // With no binding, the one host serves a network's DHCP only if
        // the network has DHCP.
        Hosted::Dhcp if !dhcp_served(st, id) => None,
        _ => own(svc),
    };
    hosting(st, &k.binding(id), own)
}

/// The agent, which must be of kind `k` (404 otherwise).
fn typed_agent(svc: &NetworkService, c: &Caller, id: &str, k: Hosted) -> NResult<Obj> {
    let a = get_agent(svc, c, id)?;
    if s(&a, "agent_type") != k.agent_type() {
        return Err(k.invalid_agent(id));
    }
    Ok(a)
}

/// The agents of kind `k` on `host`.
fn agents_on(svc: &NetworkService, st: &State, k: Hosted, host: Option<&str>) -> Vec<Obj> {
    let Some(host) = host else {
        return Vec::new();
    };
    st.iter(Kind::Agent)
        .filter(|a| s(a, "agent_type") == k.agent_type() && s(a, "host") == host)
        .map(|a| agent_view(svc, a))
        .collect()
}

async fn routers_on_agent(Svc(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    admin(&c, "get_l3-routers")?;
    let a = get_agent(&svc, &c, &id)?;
    let st = svc.store.read();
    let routers: Vec<Arc<Obj>> = st
        .iter(Kind::Router)
        .filter(|r| {
            s(&a, "agent_type") == "L3 agent"
                && host_of(&svc, &st, Hosted::L3, s(r, "id")) == Some(s(&a, "host"))
        })
        .cloned()
        .collect();
    Ok(ok(json!({"routers": routers})))
}

async fn networks_on_agent(Svc(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    admin(&c, "get_dhcp-networks")?;
    let a = get_agent(&svc, &c, &id)?;
    let st = svc.store.read();
    let networks: Vec<Obj> = st
        .iter(Kind::Network)
        .filter(|n| {
            s(&a, "agent_type") == "DHCP agent"
                && host_of(&svc, &st, Hosted::Dhcp, s(n, "id")) == Some(s(&a, "host"))
        })
        .map(|n| super::networks::view(&c, n))
        .collect();
    Ok(ok(json!({"networks": networks})))
}

async fn agents_of_router(Svc(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    admin(&c, "get_l3-agents")?;
    let st = svc.store.read();
    let agents = agents_on(&svc, &st, Hosted::L3, host_of(&svc, &st, Hosted::L3, &id));
    Ok(ok(json!({"agents": agents})))
}

async fn agents_of_network(Svc(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    admin(&c, "get_dhcp-agents")?;
    let st = svc.store.read();
    if st.get(Kind::Network, &id).is_none() {
        return Err(NeutronError::not_found("Network", &id));
    }
    let agents = agents_on(
        &svc,
        &st,
        Hosted::Dhcp,
        host_of(&svc, &st, Hosted::Dhcp, &id),
    );
    Ok(ok(json!({"agents": agents})))
}

/// The id named by `key` in a scheduling request's body.
fn body_id(body: &Value, key: &str) -> NResult<String> {
    match body.get(key) {
        Some(Value::String(v)) if !v.is_empty() => Ok(v.clone()),
        Some(_) => Err(NeutronError::bad(format!(
            "Invalid input for {key}. Reason: must be a non-empty string."
        ))),
        None => Err(NeutronError::bad(format!(
            "Resource body required: unable to find '{key}' in request body"
        ))),
    }
}

/// Binds `id` (a router or network of kind `k`) to `agent`'s host.
async fn add(
    svc: &NetworkService,
    c: &Caller,
    agent: &str,
    k: Hosted,
    id: &str,
) -> NResult<Response> {
    let a = typed_agent(svc, c, agent, k)?;
    if !a
        .get("admin_state_up")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(k.invalid_agent(agent));
    }
    let host = s(&a, "host").to_string();
    let (kind, what) = match k {
        Hosted::L3 => (Kind::Router, "Router"),
        Hosted::Dhcp => (Kind::Network, "Network"),
    };
    svc.store
        .write(|tx| {
            if tx.get(kind, id).is_none() {
                return Err(NeutronError::not_found(what, id));
            }
            match host_of(svc, &tx.st, k, id) {
                Some(h) if h == host => match k {
                    // Already there: nothing to do (Neutron's answer for
                    // a router; a network is a conflict).
                    Hosted::L3 => return Ok(()),
                    Hosted::Dhcp => {
                        return Err(NeutronError::conflict(
                            "NetworkHostedByDHCPAgent",
                            format!(
                                "The network {id} has been already hosted by the DHCP Agent {agent}."
                            ),
                        ));
                    }
                },
                Some(h) => {
                    let other = crate::agent::agent_id(
                        h,
                        match k {
                            Hosted::L3 => "neutron-l3-agent",
                            Hosted::Dhcp => "neutron-dhcp-agent",
                        },
                    );
                    return Err(match k {
                        Hosted::L3 => NeutronError::conflict(
                            "RouterHostedByL3Agent",
                            format!(
                                "The router {id} has been already hosted by the L3 Agent {other}."
                            ),
                        ),
                        Hosted::Dhcp => NeutronError::conflict(
                            "NetworkHostedByDHCPAgent",
                            format!(
                                "The network {id} has been already hosted by the DHCP Agent \
                                 {other}; one DHCP agent serves each network \
                                 (dhcp_agents_per_network = 1)."
                            ),
                        ),
                    });
                }
                None => {}
            }
            crate::hosts::record_moves(tx, &[(k.binding(id), Some(host.clone()))]);
            Ok(())
        })
        .await?;
    svc.notify();
    Ok(created(Value::Null))
}

/// Takes `id` off `agent`: it stays unhosted.
async fn remove(
    svc: &NetworkService,
    c: &Caller,
    agent: &str,
    k: Hosted,
    id: &str,
) -> NResult<Response> {
    let a = get_agent(svc, c, agent)?;
    let host = s(&a, "host").to_string();
    svc.store
        .write(|tx| {
            let hosted = s(&a, "agent_type") == k.agent_type()
                && host_of(svc, &tx.st, k, id) == Some(host.as_str());
            if !hosted {
                return match k {
                    // Neutron deletes no binding and answers 204.
                    Hosted::L3 => Ok(()),
                    Hosted::Dhcp => Err(NeutronError::conflict(
                        "NetworkNotHostedByDhcpAgent",
                        format!("The network {id} is not hosted by the DHCP agent {agent}."),
                    )),
                };
            }
            let mut o = Obj::new();
            o.insert("id".into(), json!(k.binding(id)));
            o.insert("host".into(), json!(""));
            tracing::info!(binding = %k.binding(id), %host, "unscheduled by an admin");
            tx.put(Kind::Binding, o);
            Ok(())
        })
        .await?;
    svc.notify();
    Ok(no_content())
}

async fn add_router(
    Svc(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    admin(&c, "create_l3-router")?;
    let router = body_id(&body, "router_id")?;
    add(&svc, &c, &id, Hosted::L3, &router).await
}

async fn remove_router(
    Svc(svc): St,
    c: Caller,
    Path((id, router)): Path<(String, String)>,
) -> NResult<Response> {
    admin(&c, "delete_l3-router")?;
    remove(&svc, &c, &id, Hosted::L3, &router).await
}

async fn add_network(
    Svc(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    admin(&c, "create_dhcp-network")?;
    let network = body_id(&body, "network_id")?;
    add(&svc, &c, &id, Hosted::Dhcp, &network).await
}

async fn remove_network(
    Svc(svc): St,
    c: Caller,
    Path((id, network)): Path<(String, String)>,
) -> NResult<Response> {
    admin(&c, "delete_dhcp-network")?;
    remove(&svc, &c, &id, Hosted::Dhcp, &network).await
}
