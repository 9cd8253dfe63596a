//! Address scopes (`/v2.0/address-scopes`, the `address-scope`
//! extension): a scope groups subnet pools whose prefixes must not overlap,
//! and a network shows the scope of its subnets per IP family
//! (`ipv4_address_scope`, `ipv6_address_scope`). As Neutron, a scope has
//! no standard attributes (no description, tags or timestamps); a shared
//! scope cannot be unshared; one that subnet pools use cannot be deleted.
//! Routers do not yet use scopes to decide what is NATed (docs/compatibility.md).
use super::{Body, St, coll_url, created, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::ipam::Cidr;
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, Tx, arr, b, new_id, s};
use crate::{Caller, NetworkService, body_obj, check, only_known, owner_of};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/address-scopes", get(list).post(create))
        .route(
            "/v2.0/address-scopes/{id}",
            get(show).put(update).delete(delete),
        )
}

pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "shared",
    "ip_version",
    "tenant_id",
    "project_id",
];

fn visible(c: &Caller, o: &Obj) -> bool {
    c.owns(o) || b(o, "shared")
}

fn not_found(id: &str) -> NeutronError {
    NeutronError::new(
        404,
        "AddressScopeNotFound",
        format!("Address scope {id} could not be found."),
    )
}

/// The scope `id` as `c` sees it (404 when it does not exist or is
/// another project's and not shared).
pub fn get_visible(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::AddressScope, id)
        .filter(|x| visible(c, x))
        .cloned()
        .ok_or_else(|| not_found(id))
}

fn ip_version(o: &Obj) -> NResult<u64> {
    let v = match o.get("ip_version") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(x)) => x.parse().ok(),
        None => {
            return Err(NeutronError::bad(
                "Failed to parse request. Required attribute 'ip_version' not specified",
            ));
        }
        _ => None,
    };
    match v {
        Some(v @ (4 | 6)) => Ok(v),
        _ => Err(NeutronError::invalid(format!(
            "{} is not in [4, 6]",
            o.get("ip_version").cloned().unwrap_or(Value::Null)
        ))),
    }
}

async fn create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_address_scope"));
    }
    let mut o = body_obj(&body, "address_scope")?;
    only_known(
        &o,
        &["name", "shared", "ip_version", "tenant_id", "project_id"],
    )?;
    check::string(&o, "name", 255)?;
    check::boolean(&mut o, "shared")?;
    let v = ip_version(&o)?;
    if b(&o, "shared") && !c.admin {
        return Err(NeutronError::forbidden("create_address_scope:shared"));
    }
    let out = svc
        .store
        .write(|tx| {
            let owner = owner_of(&c, &mut o)?;
            let mut x = Obj::new();
            x.insert("id".into(), json!(new_id()));
            x.insert("name".into(), o.get("name").cloned().unwrap_or(json!("")));
            x.insert("shared".into(), json!(b(&o, "shared")));
            x.insert("ip_version".into(), json!(v));
            x.insert("tenant_id".into(), json!(owner));
            x.insert("project_id".into(), json!(owner));
            tx.put(Kind::AddressScope, x.clone());
            Ok(x)
        })
        .await?;
    Ok(created(json!({"address_scope": out})))
}

async fn list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::AddressScope)
        .filter(|x| visible(&c, x))
        .filter(|x| matches(x, &p, &[]))
        .cloned()
        .collect();
    Ok(ok(render(
        items,
        &p,
        "address_scopes",
        &coll_url(&svc, "address-scopes"),
    )?))
}

async fn show(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    let st = svc.store.read();
    let x = get_visible(&st, &c, &id)?;
    Ok(ok(
        json!({"address_scope": crate::query::project(&x, &p.fields)}),
    ))
}

async fn update(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let mut u = body_obj(&body, "address_scope")?;
    only_known(&u, &["name", "shared"])?;
    check::string(&u, "name", 255)?;
    check::boolean(&mut u, "shared")?;
    let out = svc
        .store
        .write(|tx| {
            let x = get_visible(&tx.st, &c, &id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("update_address_scope"));
            }
            if u.contains_key("shared") && !c.admin {
                return Err(NeutronError::forbidden("update_address_scope:shared"));
            }
            if b(&x, "shared") && u.get("shared") == Some(&json!(false)) {
                return Err(NeutronError::new(
                    400,
                    "AddressScopeUpdateError",
                    format!(
                        "Unable to update address scope {id} : Shared address scope can't be unshared."
                    ),
                ));
            }
            let mut o = (*x).clone();
            for k in ["name", "shared"] {
                if let Some(v) = u.get(k) {
                    o.insert(k.into(), v.clone());
                }
            }
            tx.put(Kind::AddressScope, o.clone());
            Ok(o)
        })
        .await?;
    Ok(ok(json!({"address_scope": out})))
}

async fn delete(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    svc.store
        .write(|tx| {
            let x = get_visible(&tx.st, &c, &id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("delete_address_scope"));
            }
            if tx
                .st
                .iter(Kind::SubnetPool)
                .any(|p| s(p, "address_scope_id") == id)
            {
                return Err(NeutronError::conflict(
                    "AddressScopeInUse",
                    format!(
                        "Unable to complete operation on address scope {id}. There are one or more subnet pools in use on the address scope."
                    ),
                ));
            }
            tx.del(Kind::AddressScope, &id);
            Ok(())
        })
        .await?;
    Ok(no_content())
}

/// The address scope of subnet pool `pool` (none when it has none).
pub fn scope_of_pool(st: &NState, pool: &str) -> Option<String> {
    st.get(Kind::SubnetPool, pool)
        .map(|p| s(p, "address_scope_id").to_string())
        .filter(|x| !x.is_empty())
}

/// The scope the network's subnets of IP version `v` are in, as Neutron's
/// `get_network_address_scope` finds it: that of the first such subnet
/// allocated from a scoped pool.
pub fn network_scope(st: &NState, net: &str, v: u64) -> Option<String> {
    st.subnets_of(net)
        .filter(|x| x.get("ip_version").and_then(Value::as_u64) == Some(v))
        .find_map(|x| scope_of_pool(st, s(x, "subnetpool_id")))
}

/// Brings the network's `ipv4_address_scope` and `ipv6_address_scope` up
/// to date with its subnets (after a subnet comes or goes, or a pool is
/// re-scoped).
pub fn refresh_network(tx: &mut Tx, net: &str) {
    let Some(n) = tx.get(Kind::Network, net) else {
        return;
    };
    let v4 = json!(network_scope(&tx.st, net, 4));
    let v6 = json!(network_scope(&tx.st, net, 6));
    if n.get("ipv4_address_scope") == Some(&v4) && n.get("ipv6_address_scope") == Some(&v6) {
        return;
    }
    let mut n = (*n).clone();
    n.insert("ipv4_address_scope".into(), v4);
    n.insert("ipv6_address_scope".into(), v6);
    tx.put(Kind::Network, n);
}

/// Checks that subnet pool `pool` (`None` while it is being created), of
/// IP version `v` with `prefixes`, may be in scope `scope`, as Neutron's
/// `_validate_address_scope_id`: the scope is visible, the caller's or
/// shared, of the same IP version, and no other pool in it has an
/// overlapping prefix; re-scoping a pool must not leave a network with
/// subnets of one family in two scopes.
pub fn check_pool_scope(
    st: &NState,
    c: &Caller,
    pool: Option<&str>,
    v: u64,
    prefixes: &[Cidr],
    scope: &str,
) -> NResult<()> {
    let x = get_visible(st, c, scope)?;
    let pool_id = pool.unwrap_or("");
    if x.get("ip_version").and_then(Value::as_u64) != Some(v) {
        return Err(NeutronError::bad(format!(
            "Illegal subnetpool association: subnetpool {pool_id} cannot associate with address scope {scope} because subnetpool ip_version is not {}.",
            x.get("ip_version").cloned().unwrap_or(Value::Null)
        )));
    }
    if let Some(pool) = pool {
        let rescoped: Vec<&Arc<Obj>> = st
            .iter(Kind::Subnet)
            .filter(|x| s(x, "subnetpool_id") == pool)
            .collect();
        for sub in &rescoped {
            let others = st.subnets_of(s(sub, "network_id")).any(|o| {
                o.get("ip_version") == sub.get("ip_version") && s(o, "subnetpool_id") != pool
            });
            if others {
                return Err(NeutronError::new(
                    400,
                    "NetworkAddressScopeAffinityError",
                    "Subnets of the same address family hosted on the same network must all participate in the same address scope.",
                ));
            }
        }
    }
    let conflict = st
        .iter(Kind::SubnetPool)
        .filter(|p| s(p, "address_scope_id") == scope && s(p, "id") != pool_id)
        .flat_map(|p| arr(p, "prefixes").iter().filter_map(Value::as_str))
        .filter_map(Cidr::parse_loose)
        .any(|o| prefixes.iter().any(|n| n.overlaps(&o)));
    if conflict {
        return Err(NeutronError::conflict(
            "AddressScopePrefixConflict",
            "Failed to associate address scope: subnetpools within an address scope must have unique prefixes.",
        ));
    }
    Ok(())
}
