//! Security groups and rules: the per-project `default` group with
//! upstream's default rules, rule validation and duplicate detection, and
//! stateful semantics recorded for the data plane.
use super::{Body, IfMatch, St, coll_url, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::ipam::Cidr;
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, State as NState, Tx, arr, b, new_id, s, standard, touch};
use crate::{Caller, NetworkService, body_obj, check, check_revision, only_known, owner_of};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/security-groups", get(list).post(create))
        .route(
            "/v2.0/security-groups/{id}",
            get(show).put(update).delete(delete),
        )
        .route(
            "/v2.0/security-group-rules",
            get(rule_list).post(rule_create),
        )
        .route(
            "/v2.0/security-group-rules/{id}",
            get(rule_show).delete(rule_delete),
        )
}

pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "description",
    "stateful",
    "shared",
    "tags",
    "tenant_id",
    "project_id",
    "created_at",
    "updated_at",
    "revision_number",
    "security_group_rules",
];
pub const RULE_ATTRS: &[&str] = &[
    "id",
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "normalized_cidr",
    "description",
    "tenant_id",
    "project_id",
    "created_at",
    "updated_at",
    "revision_number",
    "belongs_to_default_sg",
];

const PROTOCOLS: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

fn proto_num(p: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(n, _)| *n == p)
        .map(|x| x.1)
        .or_else(|| p.parse::<u8>().ok())
}

fn rules_of(st: &NState, sg: &str) -> Vec<Value> {
    st.iter(Kind::SecurityGroupRule)
        .filter(|r| s(r, "security_group_id") == sg)
        .map(|r| Value::Object((**r).clone()))
        .collect()
}

pub fn view(st: &NState, o: &Obj) -> Obj {
    let mut v = o.clone();
    v.insert(
        "security_group_rules".into(),
        Value::Array(rules_of(st, s(o, "id"))),
    );
    v
}

fn rule(sg: &Obj, owner: &str, dir: &str, eth: &str, remote_group: Option<&str>) -> Obj {
    let mut r = Obj::new();
    r.insert("id".into(), json!(new_id()));
    r.insert("security_group_id".into(), json!(s(sg, "id")));
    r.insert("direction".into(), json!(dir));
    r.insert("ethertype".into(), json!(eth));
    r.insert("protocol".into(), Value::Null);
    r.insert("port_range_min".into(), Value::Null);
    r.insert("port_range_max".into(), Value::Null);
    r.insert("remote_ip_prefix".into(), Value::Null);
    r.insert("normalized_cidr".into(), Value::Null);
    r.insert("remote_group_id".into(), json!(remote_group));
    r.insert("remote_address_group_id".into(), Value::Null);
    r.insert(
        "belongs_to_default_sg".into(),
        json!(s(sg, "name") == "default"),
    );
    standard(&mut r, owner);
    r
}

fn new_group(tx: &mut Tx, owner: &str, mut o: Obj, default: bool) -> Obj {
    let id = new_id();
    o.insert("id".into(), json!(id));
    o.entry("name").or_insert(json!(""));
    o.entry("stateful").or_insert(json!(true));
    o.insert("shared".into(), json!(false));
    standard(&mut o, owner);
    tx.put(Kind::SecurityGroup, o.clone());
    for eth in ["IPv4", "IPv6"] {
        let r = rule(&o, owner, "egress", eth, None);
        tx.put(Kind::SecurityGroupRule, r);
        if default {
            let r = rule(&o, owner, "ingress", eth, Some(&id));
            tx.put(Kind::SecurityGroupRule, r);
        }
    }
    o
}

/// The project's `default` group, created on first use.
pub fn ensure_default(_svc: &NetworkService, tx: &mut Tx, project: &str) -> NResult<String> {
    if project.is_empty() {
        return Err(NeutronError::bad("a project is required"));
    }
    if let Some(g) = tx
        .st
        .iter(Kind::SecurityGroup)
        .find(|g| s(g, "project_id") == project && s(g, "name") == "default")
    {
        return Ok(s(g, "id").to_string());
    }
    let mut o = Obj::new();
    o.insert("name".into(), json!("default"));
    o.insert("description".into(), json!("Default security group"));
    let g = new_group(tx, project, o, true);
    Ok(s(&g, "id").to_string())
}

async fn ensure_default_for(svc: &NetworkService, project: &str) -> NResult<()> {
    if project.is_empty() {
        return Ok(());
    }
    let st = svc.store.read();
    let has = st
        .iter(Kind::SecurityGroup)
        .any(|g| s(g, "project_id") == project && s(g, "name") == "default");
    if has {
        return Ok(());
    }
    svc.store
        .write(|tx| ensure_default(svc, tx, project).map(|_| ()))
        .await
}

fn sg_visible(c: &Caller, o: &Obj) -> bool {
    c.owns(o) || b(o, "shared")
}

async fn create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_security_group"));
    }
    let req = super::Creation::parse(&body, "security_group", "security_groups")?;
    let out = svc
        .store
        .write(|tx| {
            let mut out = Vec::new();
            for mut o in req.items.clone() {
                only_known(
                    &o,
                    &[
                        "name",
                        "description",
                        "stateful",
                        "tags",
                        "tenant_id",
                        "project_id",
                    ],
                )?;
                check::string(&o, "name", 255)?;
                check::string(&o, "description", 255)?;
                check::boolean(&mut o, "stateful")?;
                check::tags(&mut o)?;
                let owner = owner_of(&c, &mut o)?;
                if s(&o, "name") == "default" {
                    return Err(NeutronError::conflict(
                        "SecurityGroupDefaultAlreadyExists",
                        "Default security group already exists.",
                    ));
                }
                ensure_default(&svc, tx, &owner)?;
                svc.check_quota(&tx.st, &owner, Kind::SecurityGroup, 1)?;
                let g = new_group(tx, &owner, o, false);
                out.push(view(&tx.st, &g));
            }
            Ok(out)
        })
        .await?;
    Ok(req.respond(out))
}

async fn list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), ATTRS)?;
    ensure_default_for(&svc, &c.project).await?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::SecurityGroup)
        .filter(|x| sg_visible(&c, x))
        .filter(|x| matches(x, &p, &[]))
        .map(|x| Arc::new(view(&st, x)))
        .collect();
    Ok(ok(render(
        items,
        &p,
        "security_groups",
        &coll_url(&svc, "security-groups"),
    )?))
}

fn get_visible(st: &NState, c: &Caller, id: &str) -> NResult<Arc<Obj>> {
    st.get(Kind::SecurityGroup, id)
        .filter(|x| sg_visible(c, x))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Security group", id))
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
        json!({"security_group": crate::query::project(&view(&st, &x), &p.fields)}),
    ))
}

async fn update(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    let mut u = body_obj(&body, "security_group")?;
    only_known(&u, &["name", "description", "stateful"])?;
    check::string(&u, "name", 255)?;
    check::string(&u, "description", 255)?;
    check::boolean(&mut u, "stateful")?;
    let out = svc
        .store
        .write(|tx| {
            let g = get_visible(&tx.st, &c, &id)?;
            if !c.owns(&g) {
                return Err(NeutronError::forbidden("update_security_group"));
            }
            check_revision(im.as_deref(), &g)?;
            if s(&g, "name") == "default" && u.get("name").is_some_and(|n| n != "default") {
                return Err(NeutronError::conflict(
                    "SecurityGroupCannotUpdateDefault",
                    "Updating default security group not allowed.",
                ));
            }
            if u.get("name").and_then(Value::as_str) == Some("default")
                && s(&g, "name") != "default"
            {
                return Err(NeutronError::conflict(
                    "SecurityGroupDefaultAlreadyExists",
                    "Default security group already exists.",
                ));
            }
            if let Some(sf) = u.get("stateful").and_then(Value::as_bool)
                && sf != b(&g, "stateful")
                && tx.st.iter(Kind::Port).any(|p| {
                    arr(p, "security_groups")
                        .iter()
                        .any(|x| x.as_str() == Some(id.as_str()))
                })
            {
                return Err(NeutronError::conflict(
                    "SecurityGroupInUse",
                    format!("Security Group {id} in use."),
                ));
            }
            let mut o = (*g).clone();
            for (k, v) in u.iter() {
                o.insert(k.clone(), v.clone());
            }
            touch(&mut o);
            tx.put(Kind::SecurityGroup, o.clone());
            Ok(view(&tx.st, &o))
        })
        .await?;
    svc.notify();
    Ok(ok(json!({"security_group": out})))
}

async fn delete(
    State(svc): St,
    c: Caller,
    IfMatch(im): IfMatch,
    Path(id): Path<String>,
) -> NResult<Response> {
    super::delete_one(
        &svc,
        im.as_deref(),
        "delete_security_group",
        |st| get_visible(st, &c, &id),
        |_, g| c.owns(g),
        |tx, g| {
            if s(g, "name") == "default" && !c.admin {
                return Err(NeutronError::conflict(
                    "SecurityGroupCannotRemoveDefault",
                    "Insufficient rights for removing default security group.",
                ));
            }
            if tx.st.iter(Kind::Port).any(|p| {
                arr(p, "security_groups")
                    .iter()
                    .any(|x| x.as_str() == Some(id.as_str()))
            }) {
                return Err(NeutronError::conflict(
                    "SecurityGroupInUse",
                    format!("Security Group {id} in use."),
                ));
            }
            let rules: Vec<String> = tx
                .st
                .iter(Kind::SecurityGroupRule)
                .filter(|r| s(r, "security_group_id") == id || s(r, "remote_group_id") == id)
                .map(|r| s(r, "id").to_string())
                .collect();
            for r in rules {
                tx.del(Kind::SecurityGroupRule, &r);
            }
            tx.del(Kind::SecurityGroup, &id);
            Ok(())
        },
    )
    .await
}

// ---- rules ----

fn int_field(o: &Obj, k: &str) -> NResult<Option<i64>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
            .map(Some)
            .ok_or_else(|| {
                NeutronError::invalid(format!(
                    "Invalid input for {k}. Reason: '{v}' is not an integer"
                ))
            }),
    }
}

/// Validates a rule body; returns the rule to store (without id/standard attrs).
fn validate_rule(st: &NState, c: &Caller, mut o: Obj) -> NResult<(Obj, Arc<Obj>)> {
    only_known(
        &o,
        &[
            "security_group_id",
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
            "remote_address_group_id",
            "description",
            "tenant_id",
            "project_id",
        ],
    )?;
    check::string(&o, "description", 255)?;
    let sg_id = o
        .get("security_group_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            NeutronError::bad(
                "Failed to parse request. Required attribute 'security_group_id' not specified",
            )
        })?
        .to_string();
    let sg = st
        .get(Kind::SecurityGroup, &sg_id)
        .filter(|g| c.owns(g))
        .cloned()
        .ok_or_else(|| NeutronError::not_found("Security group", &sg_id))?;
    let dir = match o.get("direction").and_then(Value::as_str) {
        Some(d @ ("ingress" | "egress")) => d.to_string(),
        Some(d) => {
            return Err(NeutronError::invalid(format!(
                "Invalid input for direction. Reason: {d} is not in ['ingress', 'egress']"
            )));
        }
        None => {
            return Err(NeutronError::bad(
                "Failed to parse request. Required attribute 'direction' not specified",
            ));
        }
    };
    let eth = match o.get("ethertype") {
        None | Some(Value::Null) => "IPv4".to_string(),
        Some(Value::String(e)) if e.eq_ignore_ascii_case("ipv4") => "IPv4".into(),
        Some(Value::String(e)) if e.eq_ignore_ascii_case("ipv6") => "IPv6".into(),
        Some(e) => {
            return Err(NeutronError::bad(format!(
                "Security group rule for ethertype '{e}' not supported. Allowed values are ['IPv4', 'IPv6']."
            )));
        }
    };
    let proto: Option<String> = match o.get("protocol") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.is_empty() || p == "any" => None,
        Some(Value::String(p)) => {
            let lp = p.to_lowercase();
            if proto_num(&lp).is_none() {
                return Err(NeutronError::bad(format!(
                    "Security group rule protocol {p} not supported. Only protocol values [None, 'ah', 'dccp', 'egp', 'esp', 'gre', 'icmp', 'igmp', 'ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'ipv6-nonxt', 'ipv6-opts', 'ipv6-route', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp'] and integer representations [0 to 255] are supported."
                )));
            }
            Some(lp)
        }
        Some(Value::Number(n)) => match n.as_u64().filter(|x| *x <= 255) {
            Some(x) => Some(x.to_string()),
            None => {
                return Err(NeutronError::bad(format!(
                    "Security group rule protocol {n} not supported."
                )));
            }
        },
        Some(p) => {
            return Err(NeutronError::bad(format!(
                "Security group rule protocol {p} not supported."
            )));
        }
    };
    let pnum = proto.as_deref().and_then(proto_num);
    if eth == "IPv4" && pnum == Some(58) {
        return Err(NeutronError::bad(format!(
            "Ethertype IPv4 is not supported by protocol {}.",
            proto.as_deref().unwrap_or("")
        )));
    }
    let pmin = int_field(&o, "port_range_min")?;
    let pmax = int_field(&o, "port_range_max")?;
    match pnum {
        Some(6 | 17 | 33 | 132 | 136) => {
            for p in [pmin, pmax].into_iter().flatten() {
                if !(1..=65535).contains(&p) {
                    return Err(NeutronError::bad(format!("Invalid value for port {p}")));
                }
            }
            let bad_order = match (pmin, pmax) {
                (Some(a), Some(bb)) => a > bb,
                (None, Some(_)) => true,
                _ => false,
            };
            if bad_order {
                return Err(NeutronError::bad(
                    "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                ));
            }
        }
        Some(1 | 58) => {
            if let Some(t) = pmin
                && !(0..=255).contains(&t)
            {
                return Err(NeutronError::bad(format!(
                    "Invalid value for ICMP type (port-range-min) {t}. It must be 0 to 255."
                )));
            }
            if let Some(cd) = pmax
                && !(0..=255).contains(&cd)
            {
                return Err(NeutronError::bad(format!(
                    "Invalid value for ICMP code (port-range-max) {cd}. It must be 0 to 255."
                )));
            }
            if pmax.is_some() && pmin.is_none() {
                return Err(NeutronError::bad(format!(
                    "ICMP code (port-range-max) {} is provided but ICMP type (port-range-min) is missing.",
                    pmax.unwrap_or(0)
                )));
            }
        }
        _ => {
            if pmin.is_some() || pmax.is_some() {
                return Err(NeutronError::bad(if proto.is_none() {
                    "Must also specify protocol if port range is given.".to_string()
                } else {
                    format!(
                        "Invalid protocol {} for port range, only supported for TCP, UDP, UDPLITE, SCTP and DCCP.",
                        proto.as_deref().unwrap_or("")
                    )
                }));
            }
        }
    }
    let (pmin, pmax) = match pnum {
        Some(6 | 17 | 33 | 132 | 136) => match (pmin, pmax) {
            (Some(a), None) => (Some(a), Some(a)),
            x => x,
        },
        _ => (pmin, pmax),
    };
    let rip = o
        .get("remote_ip_prefix")
        .and_then(Value::as_str)
        .map(str::to_string);
    let rgid = o
        .get("remote_group_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if rip.is_some() && rgid.is_some() {
        return Err(NeutronError::bad(
            "Only remote_ip_prefix or remote_group_id may be provided.",
        ));
    }
    let mut normalized = None;
    if let Some(p) = &rip {
        let cidr = Cidr::parse_loose(p).ok_or_else(|| {
            NeutronError::invalid(format!(
                "Invalid input for remote_ip_prefix. Reason: '{p}' is not a valid IP subnet"
            ))
        })?;
        let want = if cidr.v == 4 { "IPv4" } else { "IPv6" };
        if want != eth {
            return Err(NeutronError::bad(format!(
                "Conflicting value ethertype {eth} for CIDR {p}"
            )));
        }
        normalized = Some(cidr.masked().to_string());
    }
    if let Some(g) = &rgid
        && st
            .get(Kind::SecurityGroup, g)
            .is_none_or(|x| !c.owns(x) && !b(x, "shared"))
    {
        return Err(NeutronError::not_found("Security group", g));
    }
    o.insert("direction".into(), json!(dir));
    o.insert("ethertype".into(), json!(eth));
    o.insert("protocol".into(), json!(proto));
    o.insert("port_range_min".into(), json!(pmin));
    o.insert("port_range_max".into(), json!(pmax));
    o.insert("remote_ip_prefix".into(), json!(rip));
    o.insert("normalized_cidr".into(), json!(normalized));
    o.insert("remote_group_id".into(), json!(rgid));
    o.insert("remote_address_group_id".into(), Value::Null);
    o.insert(
        "belongs_to_default_sg".into(),
        json!(s(&sg, "name") == "default"),
    );
    Ok((o, sg))
}

fn same_rule(a: &Obj, bb: &Obj) -> bool {
    let pn = |o: &Obj| {
        o.get("protocol")
            .and_then(Value::as_str)
            .and_then(proto_num)
    };
    let norm = |o: &Obj| {
        o.get("normalized_cidr")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                o.get("remote_ip_prefix")
                    .and_then(Value::as_str)
                    .and_then(Cidr::parse_loose)
                    .map(|c| c.masked().to_string())
            })
            .filter(|c| c != "0.0.0.0/0" && c != "::/0")
    };
    s(a, "security_group_id") == s(bb, "security_group_id")
        && s(a, "direction") == s(bb, "direction")
        && s(a, "ethertype") == s(bb, "ethertype")
        && pn(a) == pn(bb)
        && a.get("port_range_min") == bb.get("port_range_min")
        && a.get("port_range_max") == bb.get("port_range_max")
        && norm(a) == norm(bb)
        && a.get("remote_group_id").filter(|v| !v.is_null())
            == bb.get("remote_group_id").filter(|v| !v.is_null())
}

pub fn create_rule_tx(svc: &NetworkService, tx: &mut Tx, c: &Caller, mut o: Obj) -> NResult<Obj> {
    let explicit = o.contains_key("tenant_id") || o.contains_key("project_id");
    let owner = owner_of(c, &mut o)?;
    let (mut r, sg) = validate_rule(&tx.st, c, o)?;
    let owner = if explicit {
        owner
    } else {
        s(&sg, "project_id").to_string()
    };
    if let Some(d) = tx
        .st
        .iter(Kind::SecurityGroupRule)
        .find(|x| same_rule(x, &r))
    {
        return Err(NeutronError::conflict(
            "SecurityGroupRuleExists",
            format!(
                "Security group rule already exists. Rule id is {}.",
                s(d, "id")
            ),
        ));
    }
    svc.check_quota(&tx.st, &owner, Kind::SecurityGroupRule, 1)?;
    r.insert("id".into(), json!(new_id()));
    standard(&mut r, &owner);
    tx.put(Kind::SecurityGroupRule, r.clone());
    if let Some(g) = tx.get(Kind::SecurityGroup, s(&sg, "id")) {
        let mut g = (*g).clone();
        touch(&mut g);
        tx.put(Kind::SecurityGroup, g);
    }
    Ok(r)
}

async fn rule_create(State(svc): St, c: Caller, Body(body): Body) -> NResult<Response> {
    if !c.writer() {
        return Err(NeutronError::forbidden("create_security_group_rule"));
    }
    let req = super::Creation::parse(&body, "security_group_rule", "security_group_rules")?;
    let out = svc
        .store
        .write(|tx| {
            req.items
                .clone()
                .into_iter()
                .map(|o| create_rule_tx(&svc, tx, &c, o))
                .collect::<NResult<Vec<Obj>>>()
        })
        .await?;
    svc.notify();
    Ok(req.respond(out))
}

fn rule_visible(st: &NState, c: &Caller, r: &Obj) -> bool {
    c.owns(r)
        || st
            .get(Kind::SecurityGroup, s(r, "security_group_id"))
            .is_some_and(|g| c.owns(g) || b(g, "shared"))
}

async fn rule_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), RULE_ATTRS)?;
    ensure_default_for(&svc, &c.project).await?;
    let st = svc.store.read();
    let items = st
        .iter(Kind::SecurityGroupRule)
        .filter(|x| rule_visible(&st, &c, x))
        .filter(|x| matches(x, &p, &[]))
        .cloned()
        .collect();
    Ok(ok(render(
        items,
        &p,
        "security_group_rules",
        &coll_url(&svc, "security-group-rules"),
    )?))
}

async fn rule_show(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), RULE_ATTRS)?;
    let st = svc.store.read();
    let r = st
        .get(Kind::SecurityGroupRule, &id)
        .filter(|x| rule_visible(&st, &c, x))
        .ok_or_else(|| NeutronError::not_found("Security group rule", &id))?;
    Ok(ok(
        json!({"security_group_rule": crate::query::project(r, &p.fields)}),
    ))
}

async fn rule_delete(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    svc.store
        .write(|tx| {
            let r = tx
                .st
                .get(Kind::SecurityGroupRule, &id)
                .filter(|x| rule_visible(&tx.st, &c, x))
                .cloned()
                .ok_or_else(|| NeutronError::not_found("Security group rule", &id))?;
            let sg_owner = tx
                .st
                .get(Kind::SecurityGroup, s(&r, "security_group_id"))
                .is_some_and(|g| c.owns(g));
            if !c.owns(&r) && !sg_owner {
                return Err(NeutronError::forbidden("delete_security_group_rule"));
            }
            tx.del(Kind::SecurityGroupRule, &id);
            Ok(())
        })
        .await?;
    svc.notify();
    Ok(no_content())
}
