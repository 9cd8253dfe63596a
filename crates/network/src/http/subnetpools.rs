//! Subnet pools: `/v2.0/subnetpools`, with adding and removing prefixes.
use super::{Body, St, address_scopes, coll_url, created, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::ipam::{self, Cidr};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, arr, b, new_id, s, standard, touch};
use crate::{Caller, NetworkService, body_obj, check, only_known, owner_of};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/subnetpools", get(pool_list).post(pool_create))
        .route(
            "/v2.0/subnetpools/{id}",
            get(pool_show).put(pool_update).delete(pool_delete),
        )
        .route(
            "/v2.0/subnetpools/{id}/add_prefixes",
            axum::routing::put(pool_add_prefixes),
        )
        .route(
            "/v2.0/subnetpools/{id}/remove_prefixes",
            axum::routing::put(pool_remove_prefixes),
        )
}

pub const POOL_ATTRS: &[&str] = &[
    "id",
    "name",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "shared",
    "is_default",
    "ip_version",
    "address_scope_id",
    "default_quota",
    "description",
    "tags",
    "tenant_id",
    "project_id",
    "created_at",
    "updated_at",
    "revision_number",
];

fn parse_prefixes(o: &Obj) -> NResult<Vec<Cidr>> {
    let list = check::string_list(o, "prefixes")?;
    let mut out: Vec<Cidr> = Vec::new();
    for p in list {
        let c = Cidr::parse_loose(&p)
            .ok_or_else(|| NeutronError::invalid(format!("'{p}' is not a valid IP subnet")))?;
        out.push(c.masked());
    }
    if let Some(v) = out.first().map(|c| c.v)
        && out.iter().any(|c| c.v != v)
    {
        return Err(NeutronError::bad(
            "Illegal subnetpool prefix bounds: prefixes of mixed IP versions",
        ));
    }
    // Merge prefixes contained in others (Neutron compacts the list).
    let mut merged: Vec<Cidr> = Vec::new();
    for c in &out {
        if !out
            .iter()
            .any(|o| o != c && o.len < c.len && o.contains(c.v, c.first()))
            && !merged.contains(c)
        {
            merged.push(*c);
        }
    }
    Ok(merged)
}

/// `address_scope_id` of a request: a UUID, or null (none).
fn scope_field(o: &Obj) -> NResult<Option<String>> {
    match o.get("address_scope_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(x)) if uuid::Uuid::parse_str(x).is_ok() => Ok(Some(x.clone())),
        Some(x) => Err(NeutronError::invalid(format!("'{x}' is not a valid UUID"))),
    }
}

fn pool_bounds(o: &mut Obj, v: u8, cur: Option<&Obj>) -> NResult<()> {
    let get = |k: &str| -> NResult<Option<i64>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(cur.and_then(|c| c.get(k)).and_then(Value::as_i64)),
            Some(x) => x
                .as_i64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                .map(Some)
                .ok_or_else(|| NeutronError::invalid(format!("'{x}' is not an integer"))),
        }
    };
    let max_bits = ipam::bits(v) as i64;
    let min = get("min_prefixlen")?.unwrap_or(if v == 4 { 8 } else { 64 });
    let max = get("max_prefixlen")?.unwrap_or(max_bits);
    let def = get("default_prefixlen")?.unwrap_or(min);
    if !(0..=max_bits).contains(&min)
        || !(0..=max_bits).contains(&max)
        || min > max
        || def < min
        || def > max
    {
        return Err(NeutronError::bad(format!(
            "Illegal prefix bounds: min_prefixlen={min}, max_prefixlen={max}, default_prefixlen={def}"
        )));
    }
    o.insert("min_prefixlen".into(), json!(min));
    o.insert("max_prefixlen".into(), json!(max));
    o.insert("default_prefixlen".into(), json!(def));
    Ok(())
}

async fn pool_create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_subnetpool"));
    }
    let mut o = body_obj(&body, "subnetpool")?;
    only_known(
        &o,
        &[
            "name",
            "prefixes",
            "default_prefixlen",
            "min_prefixlen",
            "max_prefixlen",
            "shared",
            "is_default",
            "address_scope_id",
            "default_quota",
            "description",
            "tags",
            "tenant_id",
            "project_id",
        ],
    )?;
    check::string(&o, "name", 255)?;
    check::string(&o, "description", 255)?;
    check::boolean(&mut o, "shared")?;
    check::boolean(&mut o, "is_default")?;
    check::tags(&mut o)?;
    let scope = scope_field(&o)?;
    let out = svc
        .store
        .write(|tx| {
            let owner = owner_of(&c, &mut o)?;
            if !c.admin && (b(&o, "shared") || b(&o, "is_default")) {
                return Err(NeutronError::forbidden("create_subnetpool:shared"));
            }
            let prefixes = parse_prefixes(&o)?;
            let v = prefixes.first().map(|c| c.v).ok_or_else(|| NeutronError::bad("Failed to parse request. Required attribute 'prefixes' not specified"))?;
            if b(&o, "is_default") && tx.st.iter(Kind::SubnetPool).any(|p| b(p, "is_default") && p.get("ip_version").and_then(Value::as_u64) == Some(v as u64)) {
                return Err(NeutronError::bad("A default subnetpool for this IP family has already been set. Only one default may exist per IP family".to_string()));
            }
            pool_bounds(&mut o, v, None)?;
            if let Some(scope) = scope.as_deref() {
                address_scopes::check_pool_scope(&tx.st, &c, None, v as u64, &prefixes, scope)?;
            }
            svc.check_quota(&tx.st, &owner, Kind::SubnetPool, 1)?;
            o.insert("id".into(), json!(new_id()));
            o.entry("name").or_insert(json!(""));
            o.insert("prefixes".into(), json!(prefixes.iter().map(|c| c.to_string()).collect::<Vec<_>>()));
            o.insert("ip_version".into(), json!(v));
            o.entry("shared").or_insert(json!(false));
            o.entry("is_default").or_insert(json!(false));
            o.insert("address_scope_id".into(), json!(scope));
            o.entry("default_quota").or_insert(Value::Null);
            standard(&mut o, &owner);
            tx.put(Kind::SubnetPool, o.clone());
            Ok(o)
        })
        .await?;
    Ok(created(json!({"subnetpool": out})))
}

async fn pool_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), POOL_ATTRS)?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::SubnetPool)
        .filter(|x| c.owns(x) || b(x, "shared"))
        .filter(|x| matches(x, &p, &[]))
        .cloned()
        .collect();
    Ok(ok(render(
        items,
        &p,
        "subnetpools",
        &coll_url(&svc, "subnetpools"),
    )?))
}

fn get_pool(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::SubnetPool, id)
        .filter(|x| c.owns(x) || b(x, "shared"))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Subnet pool", id))
}

async fn pool_show(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), POOL_ATTRS)?;
    let st = svc.store.read();
    let x = get_pool(&st, &c, &id)?;
    Ok(ok(
        json!({"subnetpool": crate::query::project(&x, &p.fields)}),
    ))
}

async fn pool_update(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let mut u = body_obj(&body, "subnetpool")?;
    only_known(
        &u,
        &[
            "name",
            "prefixes",
            "default_prefixlen",
            "min_prefixlen",
            "max_prefixlen",
            "is_default",
            "default_quota",
            "description",
            "address_scope_id",
        ],
    )?;
    check::string(&u, "name", 255)?;
    check::boolean(&mut u, "is_default")?;
    let new_scope = match u.contains_key("address_scope_id") {
        true => Some(scope_field(&u)?),
        false => None,
    };
    let out = svc
        .store
        .write(|tx| {
            let x = get_pool(&tx.st, &c, &id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("update_subnetpool"));
            }
            let mut o = (*x).clone();
            let v = o.get("ip_version").and_then(Value::as_u64).unwrap_or(4) as u8;
            // A pool in a shared scope of another project is frozen.
            let old_scope = s(&o, "address_scope_id").to_string();
            if !old_scope.is_empty()
                && !c.admin
                && tx
                    .get(Kind::AddressScope, &old_scope)
                    .is_some_and(|a| !c.owns(&a))
            {
                return Err(NeutronError::bad(format!(
                    "Illegal subnetpool update : subnetpool {id} cannot be updated when associated with shared address scope {old_scope}."
                )));
            }
            if u.contains_key("prefixes") {
                let new = parse_prefixes(&u)?;
                let old: Vec<Cidr> = arr(&o, "prefixes")
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(Cidr::parse_loose)
                    .collect();
                for c0 in &old {
                    if !new
                        .iter()
                        .any(|n| n.len <= c0.len && n.contains(c0.v, c0.first()))
                    {
                        return Err(NeutronError::bad(
                            "Illegal update to prefixes: existing prefixes can only be extended",
                        ));
                    }
                }
                o.insert(
                    "prefixes".into(),
                    json!(new.iter().map(|c| c.to_string()).collect::<Vec<_>>()),
                );
            }
            if u.contains_key("is_default") && !c.admin {
                return Err(NeutronError::forbidden("update_subnetpool:is_default"));
            }
            for k in ["name", "description", "is_default", "default_quota"] {
                if let Some(val) = u.get(k) {
                    o.insert(k.into(), val.clone());
                }
            }
            let mut bounds = Obj::new();
            for k in ["min_prefixlen", "max_prefixlen", "default_prefixlen"] {
                if let Some(val) = u.get(k) {
                    bounds.insert(k.into(), val.clone());
                }
            }
            pool_bounds(&mut bounds, v, Some(&o))?;
            for (k, val) in bounds {
                o.insert(k, val);
            }
            if let Some(scope) = &new_scope {
                o.insert("address_scope_id".into(), json!(scope));
            }
            let scope = s(&o, "address_scope_id").to_string();
            if !scope.is_empty() {
                let prefixes: Vec<Cidr> = arr(&o, "prefixes")
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(Cidr::parse_loose)
                    .collect();
                address_scopes::check_pool_scope(&tx.st, &c, Some(&id), v as u64, &prefixes, &scope)?;
            }
            touch(&mut o);
            tx.put(Kind::SubnetPool, o.clone());
            if scope != old_scope {
                let nets: std::collections::BTreeSet<String> = tx
                    .st
                    .iter(Kind::Subnet)
                    .filter(|x| s(x, "subnetpool_id") == id)
                    .map(|x| s(x, "network_id").to_string())
                    .collect();
                for n in nets {
                    address_scopes::refresh_network(tx, &n);
                }
            }
            Ok(o)
        })
        .await?;
    Ok(ok(json!({"subnetpool": out})))
}

async fn pool_delete(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    svc.store
        .write(|tx| {
            let x = get_pool(&tx.st, &c, &id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("delete_subnetpool"));
            }
            if tx
                .st
                .iter(Kind::Subnet)
                .any(|s0| s(s0, "subnetpool_id") == id)
            {
                return Err(NeutronError::conflict(
                    "SubnetPoolInUse",
                    format!("Subnet pool {id} cannot be deleted: Subnets are allocated from it."),
                ));
            }
            tx.del(Kind::SubnetPool, &id);
            Ok(())
        })
        .await?;
    Ok(no_content())
}

async fn pool_prefixes(
    svc: &NetworkService,
    c: &Caller,
    id: &str,
    body: &Value,
    add: bool,
) -> NResult<Value> {
    let list = body
        .get("prefixes")
        .cloned()
        .ok_or_else(|| NeutronError::bad("prefixes required"))?;
    let mut tmp = Obj::new();
    tmp.insert("prefixes".into(), list);
    let given = parse_prefixes(&tmp)?;
    svc.store
        .write(|tx| {
            let x = get_pool(&tx.st, c, id)?;
            if !c.owns(&x) {
                return Err(NeutronError::forbidden("update_subnetpool"));
            }
            let mut o = (*x).clone();
            let mut cur: Vec<String> = arr(&o, "prefixes")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            for g in &given {
                let gs = g.to_string();
                if add {
                    if !cur.contains(&gs) {
                        cur.push(gs);
                    }
                } else {
                    let used = tx
                        .st
                        .iter(Kind::Subnet)
                        .filter(|s0| s(s0, "subnetpool_id") == id)
                        .filter_map(|s0| super::subnets::cidr_of(s0))
                        .any(|sc| sc.overlaps(g));
                    if used {
                        return Err(NeutronError::conflict(
                            "IllegalSubnetPoolPrefixUpdate",
                            format!("Illegal update to prefixes: {gs} is in use"),
                        ));
                    }
                    cur.retain(|c0| *c0 != gs);
                }
            }
            let mut t = Obj::new();
            t.insert("prefixes".into(), json!(cur));
            let merged = parse_prefixes(&t)?;
            o.insert(
                "prefixes".into(),
                json!(merged.iter().map(|c| c.to_string()).collect::<Vec<_>>()),
            );
            touch(&mut o);
            tx.put(Kind::SubnetPool, o.clone());
            Ok(json!({"prefixes": o["prefixes"].clone()}))
        })
        .await
}

async fn pool_add_prefixes(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    Ok(ok(pool_prefixes(&svc, &c, &id, &body, true).await?))
}
async fn pool_remove_prefixes(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    Ok(ok(pool_prefixes(&svc, &c, &id, &body, false).await?))
}
