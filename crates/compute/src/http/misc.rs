//! Keypairs, limits, quota sets, availability zones, hypervisors,
//! services, hosts, aggregates, server groups, usage, migrations.
use super::{Caller, St, body, first, json_resp, paging, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::{Aggregate, Keypair, ProjectQuota, ServerGroup, ServiceRec};
use crate::ops;
use crate::state::{Rec, State, iso_z, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use ferro_common::Error;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-keypairs", get(keypairs_list).post(keypair_create))
        .route(
            "/os-keypairs/{name}",
            get(keypair_show).delete(keypair_delete),
        )
        .route("/limits", get(limits))
        .route(
            "/os-quota-sets/{project}",
            get(quota_show).put(quota_update).delete(quota_delete),
        )
        .route("/os-quota-sets/{project}/detail", get(quota_detail))
        .route("/os-quota-sets/{project}/defaults", get(quota_defaults))
        .route(
            "/os-quota-class-sets/{class}",
            get(quota_class_show).put(quota_class_update),
        )
        .route("/os-availability-zone", get(az_list))
        .route("/os-availability-zone/detail", get(az_detail))
        .route("/os-hypervisors", get(hyp_list))
        .route("/os-hypervisors/detail", get(hyp_detail))
        .route("/os-hypervisors/statistics", get(hyp_stats))
        .route("/os-hypervisors/{id}", get(hyp_show))
        .route("/os-hypervisors/{id}/uptime", get(hyp_uptime))
        .route("/os-hypervisors/{id}/search", get(hyp_search))
        .route("/os-hypervisors/{id}/servers", get(hyp_servers))
        .route("/os-services", get(services_list))
        .route(
            "/os-services/{id}",
            put(service_update).delete(service_delete),
        )
        .route("/os-hosts", get(hosts_list))
        .route("/os-hosts/{host}", get(host_show).put(host_update))
        .route("/os-hosts/{host}/{action}", get(host_power))
        .route("/os-instance_usage_audit_log", get(audit_log_index))
        .route("/os-instance_usage_audit_log/{before}", get(audit_log_show))
        .route("/os-server-external-events", post(external_events))
        .route("/os-aggregates", get(aggs_list).post(agg_create))
        .route(
            "/os-aggregates/{id}",
            get(agg_show).put(agg_update).delete(agg_delete),
        )
        .route("/os-aggregates/{id}/action", post(agg_action))
        .route("/os-server-groups", get(groups_list).post(group_create))
        .route(
            "/os-server-groups/{id}",
            get(group_show).delete(group_delete),
        )
        .route("/os-simple-tenant-usage", get(usage_all))
        .route("/os-simple-tenant-usage/{project}", get(usage_one))
        .route("/os-migrations", get(migrations_list))
        .route("/extensions", get(extensions))
        .route("/extensions/{alias}", get(extension_show))
}

fn bad(m: impl Into<String>) -> NovaError {
    NovaError::bad(m)
}

// ------------------------------------------------------------ keypairs

fn kp_view(k: &Keypair, c: &Caller, full: bool) -> Value {
    let mut v = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if c.mv.at_least(2) {
        v["type"] = json!(k.kind);
    }
    if full {
        v["user_id"] = json!(k.user_id);
        v["created_at"] = json!(iso_z(&k.created_at));
        v["deleted"] = json!(false);
        v["deleted_at"] = Value::Null;
        v["updated_at"] = Value::Null;
        v["id"] = json!(k.id);
    }
    v
}

fn target_user(
    svc: &ComputeService,
    c: &Caller,
    q: &BTreeMap<String, Vec<String>>,
) -> NResult<String> {
    match first(q, "user_id") {
        Some(u) if c.mv.at_least(10) && u != c.user() => {
            c.require_admin(svc, "os_compute_api:os-keypairs:index")?;
            Ok(u.to_string())
        }
        _ => Ok(c.user()),
    }
}

async fn keypairs_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    let q = query(raw);
    let user = target_user(&svc, &c, &q)?;
    let (limit, marker) = if c.mv.at_least(35) {
        paging(&q)?
    } else {
        (None, None)
    };
    let st = svc.state.read();
    let mut list: Vec<&Keypair> = st.keypairs.values().filter(|k| k.user_id == user).collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(m) = &marker {
        let pos = list
            .iter()
            .position(|k| &k.name == m)
            .ok_or_else(|| bad(format!("marker [{m}] not found")))?;
        list.drain(..=pos);
    }
    let total = list.len();
    if let Some(l) = limit {
        list.truncate(l);
    }
    let mut out = json!({"keypairs": list.iter().map(|k| json!({"keypair": kp_view(k, &c, false)})).collect::<Vec<_>>()});
    if let (Some(l), Some(last)) = (limit, list.last())
        && total > l
    {
        out["keypairs_links"] = json!([{"rel": "next", "href": format!("{}/v2.1/os-keypairs?limit={l}&marker={}", svc.base_url, last.name)}]);
    }
    Ok(json_resp(StatusCode::OK, out))
}

async fn keypair_create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    let b = body(&raw)?;
    let o = b.get("keypair").and_then(Value::as_object).ok_or_else(|| {
        bad("Invalid input for field/attribute keypair. 'keypair' is a required property")
    })?;
    for k in o.keys() {
        let ok = matches!(k.as_str(), "name" | "public_key")
            || (k == "type" && c.mv.at_least(2))
            || (k == "user_id" && c.mv.at_least(10));
        if !ok {
            return Err(bad(format!(
                "Invalid input for field/attribute keypair. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid input for field/attribute name."))?
        .to_string();
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.trim() == name
        && name.chars().all(|ch| {
            ch.is_ascii_alphanumeric()
                || " _-".contains(ch)
                || (c.mv.at_least(92) && "@.".contains(ch))
        });
    if !valid {
        return Err(bad(
            "Keypair data is invalid: Keypair name contains unsafe characters",
        ));
    }
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ssh")
        .to_string();
    if kind != "ssh" && kind != "x509" {
        return Err(bad(format!(
            "Invalid input for field/attribute type. Value: {kind}. '{kind}' is not one of ['ssh', 'x509']"
        )));
    }
    let user = match o.get("user_id").and_then(Value::as_str) {
        Some(u) if u != c.user() => {
            c.require_admin(&svc, "os_compute_api:os-keypairs:create")?;
            u.to_string()
        }
        _ => c.user(),
    };
    let (public_key, private_key, fingerprint) = match o.get("public_key") {
        Some(Value::String(pk)) => {
            let fp = if kind == "x509" {
                crate::keys::x509_fingerprint(pk)
            } else {
                crate::keys::ssh_fingerprint(pk)
            };
            let fp =
                fp.ok_or_else(|| bad("Keypair data is invalid: failed to generate fingerprint"))?;
            (pk.trim().to_string(), None, fp)
        }
        Some(_) => return Err(bad("Invalid input for field/attribute public_key.")),
        None => {
            if c.mv.at_least(92) {
                return Err(bad(
                    "Invalid input for field/attribute keypair. 'public_key' is a required property",
                ));
            }
            let (p, k, f) = if kind == "x509" {
                crate::keys::generate_x509(&name)
            } else {
                crate::keys::generate_ssh("Generated-by-Nova")
            };
            (p, Some(k), f)
        }
    };
    let k = svc
        .state
        .write(|st| {
            if st.keypairs.contains_key(&(user.clone(), name.clone())) {
                return Err(Error::conflict(format!(
                    "Key pair '{name}' already exists."
                )));
            }
            let lim = ops::quota_limits(st, &c.project(), Some(&user))
                .get("key_pairs")
                .copied()
                .unwrap_or(-1);
            let used = st.keypairs.keys().filter(|(u, _)| u == &user).count() as i64;
            if lim >= 0 && used + 1 > lim {
                return Err(Error::forbidden("Quota exceeded, too many key pairs."));
            }
            let k = Keypair {
                name: name.clone(),
                user_id: user.clone(),
                public_key: public_key.clone(),
                fingerprint: fingerprint.clone(),
                kind: kind.clone(),
                created_at: now(),
                id: st.next_seq(&[]),
            };
            Ok((k.clone(), vec![Rec::Keypair(k)]))
        })
        .await?;
    let mut v = kp_view(&k, &c, false);
    v["user_id"] = json!(k.user_id);
    if let Some(p) = private_key {
        v["private_key"] = json!(p);
    }
    let code = if c.mv.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_resp(code, json!({"keypair": v})))
}

async fn keypair_show(
    AxState(svc): St,
    c: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    let user = target_user(&svc, &c, &query(raw))?;
    let st = svc.state.read();
    let k = st
        .keypairs
        .get(&(user, name.clone()))
        .ok_or_else(|| NovaError::not_found(format!("Keypair {name} not found for user")))?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"keypair": kp_view(k, &c, true)}),
    ))
}

async fn keypair_delete(
    AxState(svc): St,
    c: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    let user = target_user(&svc, &c, &query(raw))?;
    svc.state
        .write(|st| {
            if !st.keypairs.contains_key(&(user.clone(), name.clone())) {
                return Err(Error::not_found_msg(format!(
                    "Keypair {name} not found for user"
                )));
            }
            Ok(((), vec![Rec::DelKeypair(user.clone(), name.clone())]))
        })
        .await?;
    Ok(if c.mv.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    }
    .into_response())
}

// ------------------------------------------------------------ quotas, limits

fn quota_keys(c: &Caller) -> Vec<&'static str> {
    let mut k = vec![
        "instances",
        "cores",
        "ram",
        "metadata_items",
        "key_pairs",
        "server_groups",
        "server_group_members",
    ];
    if !c.mv.at_least(57) {
        k.extend([
            "injected_files",
            "injected_file_content_bytes",
            "injected_file_path_bytes",
        ]);
    }
    if !c.mv.at_least(36) {
        k.extend([
            "floating_ips",
            "fixed_ips",
            "security_groups",
            "security_group_rules",
        ]);
    }
    k
}

async fn limits(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    let q = query(raw);
    let project = match first(&q, "tenant_id") {
        Some(p) if c.is_admin(&svc) => p.to_string(),
        _ => c.project(),
    };
    let st = svc.state.read();
    let l = ops::quota_limits(&st, &project, None);
    let u = ops::quota_usage(&st, &project, None);
    let g = |k: &str| l.get(k).copied().unwrap_or(-1);
    let mut abs = json!({
        "maxTotalCores": g("cores"), "maxTotalInstances": g("instances"), "maxTotalRAMSize": g("ram"),
        "maxServerMeta": g("metadata_items"), "maxTotalKeypairs": g("key_pairs"),
        "maxServerGroups": g("server_groups"), "maxServerGroupMembers": g("server_group_members"),
        "totalCoresUsed": u["cores"], "totalInstancesUsed": u["instances"], "totalRAMUsed": u["ram"],
        "totalServerGroupsUsed": u["server_groups"],
    });
    if !c.mv.at_least(57) {
        abs["maxPersonality"] = json!(g("injected_files"));
        abs["maxPersonalitySize"] = json!(g("injected_file_content_bytes"));
    }
    if !c.mv.at_least(39) {
        abs["maxImageMeta"] = json!(128);
    }
    if !c.mv.at_least(36) {
        for (k, v) in [
            ("maxSecurityGroupRules", -1),
            ("maxSecurityGroups", -1),
            ("maxTotalFloatingIps", -1),
            ("totalFloatingIpsUsed", 0),
            ("totalSecurityGroupsUsed", 0),
        ] {
            abs[k] = json!(v);
        }
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"limits": {"rate": [], "absolute": abs}}),
    ))
}

fn quota_set(c: &Caller, limits: &BTreeMap<String, i64>, id: Option<&str>) -> Value {
    let mut m = Map::new();
    if let Some(i) = id {
        m.insert("id".into(), json!(i));
    }
    for k in quota_keys(c) {
        m.insert(k.into(), json!(limits.get(k).copied().unwrap_or(-1)));
    }
    Value::Object(m)
}

fn quota_target(svc: &ComputeService, c: &Caller, project: &str) -> NResult<()> {
    if project != c.project() {
        c.require_admin(svc, "os_compute_api:os-quota-sets:show")?;
    }
    Ok(())
}

async fn quota_show(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    quota_target(&svc, &c, &project)?;
    let q = query(raw);
    let st = svc.state.read();
    let l = ops::quota_limits(&st, &project, first(&q, "user_id"));
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_set": quota_set(&c, &l, Some(&project))}),
    ))
}

async fn quota_detail(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    quota_target(&svc, &c, &project)?;
    let q = query(raw);
    let user = first(&q, "user_id");
    let st = svc.state.read();
    let l = ops::quota_limits(&st, &project, user);
    let u = ops::quota_usage(&st, &project, user);
    let mut m = Map::new();
    m.insert("id".into(), json!(project));
    for k in quota_keys(&c) {
        m.insert(k.into(), json!({"limit": l.get(k).copied().unwrap_or(-1), "in_use": u.get(k).copied().unwrap_or(0), "reserved": 0}));
    }
    Ok(json_resp(StatusCode::OK, json!({"quota_set": m})))
}

async fn quota_defaults(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> NResult<Response> {
    let st = svc.state.read();
    let l = ops::quota_limits(&st, "", None);
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_set": quota_set(&c, &l, Some(&project))}),
    ))
}

fn parse_quota_body(
    c: &Caller,
    o: &Map<String, Value>,
    allow_force: bool,
) -> NResult<BTreeMap<String, i64>> {
    let keys = quota_keys(c);
    let mut out = BTreeMap::new();
    for (k, v) in o {
        if allow_force && k == "force" {
            continue;
        }
        if !keys.contains(&k.as_str()) {
            return Err(bad(format!(
                "Invalid input for field/attribute quota_set. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| bad(format!("Invalid input for field/attribute {k}. Value: {v}. {v} is not of type 'integer', 'string'")))?;
        if n < -1 {
            return Err(bad(format!(
                "Invalid input for field/attribute {k}. Value: {n}. {n} is less than the minimum of -1"
            )));
        }
        out.insert(k.clone(), n);
    }
    Ok(out)
}

async fn quota_update(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-quota-sets:update")?;
    let b = body(&bytes)?;
    let o = b
        .get("quota_set")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad("Invalid input for field/attribute quota_set. 'quota_set' is a required property")
        })?;
    let force = o.get("force").is_some_and(|f| {
        f.as_bool().unwrap_or(false) || f.as_str().is_some_and(|s| s == "true" || s == "True")
    });
    let new = parse_quota_body(&c, o, true)?;
    let q = query(raw);
    let user = first(&q, "user_id").map(str::to_string);
    let limits = svc
        .state
        .write(|st| {
            let usage = ops::quota_usage(st, &project, user.as_deref());
            if !force {
                for (k, v) in &new {
                    let used = usage.get(k).copied().unwrap_or(0);
                    if *v >= 0 && *v < used {
                        return Err(Error::validation(format!(
                            "Quota value {v} for {k} is less than already used and reserved {used}"
                        )));
                    }
                }
            }
            let mut pq = st.quotas.get(&project).cloned().unwrap_or(ProjectQuota {
                project_id: project.clone(),
                ..Default::default()
            });
            match &user {
                Some(u) => pq.users.entry(u.clone()).or_default().extend(new.clone()),
                None => pq.limits.extend(new.clone()),
            }
            let mut tmp = st.clone();
            tmp.quotas.insert(project.clone(), pq.clone());
            let l = ops::quota_limits(&tmp, &project, user.as_deref());
            Ok((l, vec![Rec::Quota(pq)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_set": quota_set(&c, &limits, None)}),
    ))
}

async fn quota_delete(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-quota-sets:delete")?;
    svc.state
        .write(|st| {
            Ok((
                (),
                if st.quotas.contains_key(&project) {
                    vec![Rec::DelQuota(project.clone())]
                } else {
                    vec![]
                },
            ))
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn quota_class_show(
    AxState(svc): St,
    c: Caller,
    Path(class): Path<String>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-quota-class-sets:show")?;
    let st = svc.state.read();
    let l = ops::quota_limits(&st, "", None);
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_class_set": quota_set(&c, &l, Some(&class))}),
    ))
}

async fn quota_class_update(
    AxState(svc): St,
    c: Caller,
    Path(class): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-quota-class-sets:update")?;
    let b = body(&bytes)?;
    let o = super::member(
        &b,
        "quota_class_set",
        "Invalid input for field/attribute quota_class_set.",
    )?;
    let new = parse_quota_body(&c, o, false)?;
    let l = svc
        .state
        .write(|st| {
            if class != "default" {
                // Only the default class is honoured by Nova's counting quotas.
                return Ok((ops::quota_limits(st, "", None), vec![]));
            }
            let mut pq = st
                .quotas
                .get("__defaults__")
                .cloned()
                .unwrap_or(ProjectQuota {
                    project_id: "__defaults__".into(),
                    ..Default::default()
                });
            pq.limits.extend(new.clone());
            let mut tmp = st.clone();
            tmp.quotas.insert("__defaults__".into(), pq.clone());
            Ok((ops::quota_limits(&tmp, "", None), vec![Rec::Quota(pq)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_class_set": quota_set(&c, &l, None)}),
    ))
}

// ------------------------------------------------------------ zones, hosts

fn computes(st: &State) -> Vec<&ServiceRec> {
    st.services
        .values()
        .filter(|s| s.binary == "nova-compute")
        .collect()
}

async fn az_list(AxState(svc): St, _c: Caller) -> NResult<Response> {
    let st = svc.state.read();
    let mut zones: BTreeMap<String, bool> = BTreeMap::new();
    for s in computes(&st) {
        let z = ops::host_az(&svc, &st, &s.host);
        let ok = !s.disabled && ops::service_up(&svc, s);
        let e = zones.entry(z).or_insert(false);
        *e = *e || ok;
    }
    let list: Vec<Value> = zones
        .iter()
        .map(|(z, ok)| json!({"zoneName": z, "zoneState": {"available": ok}, "hosts": Value::Null}))
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        json!({"availabilityZoneInfo": list}),
    ))
}

async fn az_detail(AxState(svc): St, c: Caller) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-availability-zone:detail")?;
    let st = svc.state.read();
    let mut zones: BTreeMap<String, (bool, Map<String, Value>)> = BTreeMap::new();
    for s in st.services.values() {
        let z = if s.binary == "nova-compute" {
            ops::host_az(&svc, &st, &s.host)
        } else {
            "internal".to_string()
        };
        let up = ops::service_up(&svc, s);
        let e = zones.entry(z).or_insert((false, Map::new()));
        e.0 = e.0 || (up && !s.disabled);
        let h = e.1.entry(s.host.clone()).or_insert(json!({}));
        h[&s.binary] = json!({"available": up, "active": !s.disabled, "updated_at": s.updated_at.as_deref().map(iso_z)});
    }
    let list: Vec<Value> = zones
        .into_iter()
        .map(|(z, (ok, hosts))| json!({"zoneName": z, "zoneState": {"available": ok}, "hosts": hosts}))
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        json!({"availabilityZoneInfo": list}),
    ))
}

fn hyp_id(c: &Caller, s: &ServiceRec) -> Value {
    if c.mv.at_least(53) {
        json!(s.node_uuid)
    } else {
        json!(s.node_id)
    }
}

fn hyp_view(svc: &ComputeService, st: &State, c: &Caller, s: &ServiceRec, detail: bool) -> Value {
    let up = ops::service_up(svc, s);
    let mut v = json!({
        "id": hyp_id(c, s),
        "hypervisor_hostname": s.host,
        "state": if up { "up" } else { "down" },
        "status": if s.disabled { "disabled" } else { "enabled" },
    });
    if detail {
        let r = s
            .resources
            .clone()
            .unwrap_or(ferro_rpc::compute::HostResources {
                vcpus: 0,
                memory_mb: 0,
                local_gb: 0,
                hypervisor_type: "fake".into(),
                hypervisor_version: 0,
                cpu_info: "{}".into(),
            });
        let insts: Vec<&crate::model::Instance> = st
            .live()
            .filter(|i| i.host.as_deref() == Some(s.host.as_str()))
            .collect();
        let vcpus_used: u64 = insts.iter().map(|i| u64::from(i.flavor.vcpus)).sum();
        let mem_used: u64 = insts.iter().map(|i| i.flavor.ram).sum::<u64>()
            + svc.cfg.compute.reserved_host_memory_mb;
        let disk_used: u64 = insts
            .iter()
            .map(|i| i.flavor.disk + i.flavor.ephemeral)
            .sum();
        v["hypervisor_type"] = json!(r.hypervisor_type);
        v["hypervisor_version"] = json!(r.hypervisor_version);
        v["host_ip"] = json!("127.0.0.1");
        v["service"] = json!({"host": s.host, "id": if c.mv.at_least(53) { json!(s.uuid) } else { json!(s.id) }, "disabled_reason": s.disabled_reason});
        if !c.mv.at_least(88) {
            v["vcpus"] = json!(r.vcpus);
            v["memory_mb"] = json!(r.memory_mb);
            v["local_gb"] = json!(r.local_gb);
            v["vcpus_used"] = json!(vcpus_used);
            v["memory_mb_used"] = json!(mem_used);
            v["local_gb_used"] = json!(disk_used);
            v["free_ram_mb"] = json!(r.memory_mb as i64 - mem_used as i64);
            v["free_disk_gb"] = json!(r.local_gb as i64 - disk_used as i64);
            v["current_workload"] = json!(0);
            v["running_vms"] = json!(insts.len());
            v["disk_available_least"] = json!(r.local_gb as i64 - disk_used as i64);
            v["cpu_info"] = serde_json::from_str::<Value>(&r.cpu_info)
                .map(|x| {
                    if c.mv.at_least(28) {
                        x
                    } else {
                        json!(r.cpu_info)
                    }
                })
                .unwrap_or(json!(r.cpu_info));
        }
    }
    v
}

fn find_hyp<'a>(st: &'a State, id: &str) -> NResult<&'a ServiceRec> {
    computes(st)
        .into_iter()
        .find(|s| s.node_uuid.as_deref() == Some(id) || s.node_id.to_string() == id)
        .ok_or_else(|| NovaError::not_found(format!("Hypervisor with ID {id} could not be found.")))
}

fn hyp_listing(
    svc: &ComputeService,
    c: &Caller,
    raw: Option<String>,
    detail: bool,
) -> NResult<Value> {
    c.require_admin(svc, "os_compute_api:os-hypervisors:list")?;
    let q = query(raw);
    let st = svc.state.read();
    let pattern = first(&q, "hypervisor_hostname_pattern");
    let with_servers = first(&q, "with_servers").is_some_and(|v| v == "true" || v == "1");
    let mut list: Vec<&ServiceRec> = computes(&st)
        .into_iter()
        .filter(|s| pattern.is_none_or(|p| s.host.contains(p)))
        .collect();
    if pattern.is_some() && list.is_empty() {
        return Err(NovaError::not_found(format!(
            "No hypervisor matching '{}' could be found.",
            pattern.unwrap_or("")
        )));
    }
    list.sort_by_key(|s| s.node_id);
    let (limit, marker) = if c.mv.at_least(33) {
        paging(&q)?
    } else {
        (None, None)
    };
    if let Some(m) = &marker {
        let pos = list
            .iter()
            .position(|s| s.node_uuid.as_deref() == Some(m.as_str()) || s.node_id.to_string() == *m)
            .ok_or_else(|| bad(format!("marker [{m}] not found")))?;
        list.drain(..=pos);
    }
    if let Some(l) = limit {
        list.truncate(l);
    }
    let hs: Vec<Value> = list
        .iter()
        .map(|s| {
            let mut v = hyp_view(svc, &st, c, s, detail);
            if with_servers && c.mv.at_least(53) {
                v["servers"] = json!(st.live().filter(|i| i.host.as_deref() == Some(s.host.as_str())).map(|i| json!({"uuid": i.uuid, "name": format!("instance-{:08x}", i.internal_id)})).collect::<Vec<_>>());
            }
            v
        })
        .collect();
    Ok(json!({"hypervisors": hs}))
}

async fn hyp_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    Ok(json_resp(
        StatusCode::OK,
        hyp_listing(&svc, &c, raw, false)?,
    ))
}

async fn hyp_detail(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, hyp_listing(&svc, &c, raw, true)?))
}

async fn hyp_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hypervisors:show")?;
    let st = svc.state.read();
    let s = find_hyp(&st, &id)?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"hypervisor": hyp_view(&svc, &st, &c, s, true)}),
    ))
}

async fn hyp_uptime(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hypervisors:uptime")?;
    let st = svc.state.read();
    let s = find_hyp(&st, &id)?;
    let mut v = hyp_view(&svc, &st, &c, s, false);
    v["uptime"] = json!(" 08:32:11 up 93 days, 18:25, 12 users,  load average: 0.20, 0.12, 0.14");
    Ok(json_resp(StatusCode::OK, json!({"hypervisor": v})))
}

async fn hyp_stats(AxState(svc): St, c: Caller) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hypervisors:statistics")?;
    let st = svc.state.read();
    let mut tot = BTreeMap::<&str, i64>::new();
    let list = computes(&st);
    for s in &list {
        let v = hyp_view(&svc, &st, &c, s, true);
        for k in [
            "vcpus",
            "memory_mb",
            "local_gb",
            "vcpus_used",
            "memory_mb_used",
            "local_gb_used",
            "free_ram_mb",
            "free_disk_gb",
            "current_workload",
            "running_vms",
            "disk_available_least",
        ] {
            *tot.entry(k).or_default() += v[k].as_i64().unwrap_or(0);
        }
    }
    let mut m = Map::new();
    m.insert("count".into(), json!(list.len()));
    for (k, v) in tot {
        m.insert(k.into(), json!(v));
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"hypervisor_statistics": m}),
    ))
}

async fn hyp_search(AxState(svc): St, c: Caller, Path(pat): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hypervisors:search")?;
    let st = svc.state.read();
    let hs: Vec<Value> = computes(&st)
        .into_iter()
        .filter(|s| s.host.contains(&pat))
        .map(|s| hyp_view(&svc, &st, &c, s, false))
        .collect();
    if hs.is_empty() {
        return Err(NovaError::not_found(format!(
            "No hypervisor matching '{pat}' could be found."
        )));
    }
    Ok(json_resp(StatusCode::OK, json!({"hypervisors": hs})))
}

async fn hyp_servers(AxState(svc): St, c: Caller, Path(pat): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hypervisors:servers")?;
    let st = svc.state.read();
    let hs: Vec<Value> = computes(&st)
        .into_iter()
        .filter(|s| s.host.contains(&pat))
        .map(|s| {
            let mut v = hyp_view(&svc, &st, &c, s, false);
            let servers: Vec<Value> = st
                .live()
                .filter(|i| i.host.as_deref() == Some(s.host.as_str()))
                .map(|i| json!({"uuid": i.uuid, "name": format!("instance-{:08x}", i.internal_id)}))
                .collect();
            if !servers.is_empty() {
                v["servers"] = json!(servers);
            }
            v
        })
        .collect();
    if hs.is_empty() {
        return Err(NovaError::not_found(format!(
            "No hypervisor matching '{pat}' could be found."
        )));
    }
    Ok(json_resp(StatusCode::OK, json!({"hypervisors": hs})))
}

fn service_view(svc: &ComputeService, st: &State, c: &Caller, s: &ServiceRec) -> Value {
    let zone = if s.binary == "nova-compute" {
        ops::host_az(svc, st, &s.host)
    } else {
        "internal".into()
    };
    let mut v = json!({
        "id": if c.mv.at_least(53) { json!(s.uuid) } else { json!(s.id) },
        "binary": s.binary, "host": s.host, "zone": zone,
        "status": if s.disabled { "disabled" } else { "enabled" },
        "state": if ops::service_up(svc, s) { "up" } else { "down" },
        "updated_at": s.updated_at.as_deref().map(iso_z),
        "disabled_reason": s.disabled_reason,
    });
    if c.mv.at_least(11) {
        v["forced_down"] = json!(s.forced_down);
    }
    v
}

async fn services_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-services:list")?;
    let q = query(raw);
    let st = svc.state.read();
    let list: Vec<Value> = st
        .services
        .values()
        .filter(|s| first(&q, "host").is_none_or(|h| s.host == h))
        .filter(|s| first(&q, "binary").is_none_or(|b| s.binary == b))
        .map(|s| service_view(&svc, &st, &c, s))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"services": list})))
}

async fn service_update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-services:update")?;
    let b = body(&bytes)?;
    let o = b.as_object().cloned().unwrap_or_default();
    if c.mv.at_least(53) {
        for k in o.keys() {
            if !matches!(k.as_str(), "status" | "disabled_reason" | "forced_down") {
                return Err(bad(format!(
                    "Additional properties are not allowed ('{k}' was unexpected)"
                )));
            }
        }
        let status = o.get("status").and_then(Value::as_str).map(str::to_string);
        if let Some(s) = &status
            && s != "enabled"
            && s != "disabled"
        {
            return Err(bad(format!(
                "Invalid input for field/attribute status. Value: {s}."
            )));
        }
        let reason = o
            .get("disabled_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        if reason.is_some() && status.as_deref() != Some("disabled") {
            return Err(bad(
                "Specifying 'disabled_reason' with status 'enabled' is invalid.",
            ));
        }
        let forced = o.get("forced_down").and_then(Value::as_bool);
        if status.is_none() && forced.is_none() {
            return Err(bad(
                "No updates were requested. Fields 'status' or 'forced_down' should be specified.",
            ));
        }
        let s = svc
            .state
            .write(|st| {
                let mut s = st.services.values().find(|s| s.uuid == id).cloned().ok_or_else(|| Error::not_found_msg(format!("Service {id} could not be found.")))?;
                if s.binary != "nova-compute" {
                    return Err(Error::validation(format!("Updating a {} service is not supported. Only nova-compute services can be updated.", s.binary)));
                }
                if let Some(st2) = &status {
                    s.disabled = st2 == "disabled";
                    s.disabled_reason = if s.disabled { reason.clone() } else { None };
                }
                if let Some(f) = forced {
                    s.forced_down = f;
                }
                s.updated_at = Some(now());
                Ok((s.clone(), vec![Rec::Service(s)]))
            })
            .await?;
        let st = svc.state.read();
        return Ok(json_resp(
            StatusCode::OK,
            json!({"service": service_view(&svc, &st, &c, &s)}),
        ));
    }
    // Before 2.53: PUT /os-services/{enable|disable|disable-log-reason|force-down}.
    let host = o
        .get("host")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid input for field/attribute host."))?
        .to_string();
    let binary = o
        .get("binary")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid input for field/attribute binary."))?
        .to_string();
    let reason = o
        .get("disabled_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let forced = o.get("forced_down").and_then(Value::as_bool);
    let action = id.clone();
    if !matches!(
        action.as_str(),
        "enable" | "disable" | "disable-log-reason" | "force-down"
    ) {
        return Err(NovaError::not_found("Unknown action"));
    }
    if action == "disable-log-reason" && reason.is_none() {
        return Err(bad("Missing disabled reason field"));
    }
    let s = svc
        .state
        .write(|st| {
            let mut s = st
                .services
                .values()
                .find(|s| s.host == host && s.binary == binary)
                .cloned()
                .ok_or_else(|| {
                    Error::not_found_msg(format!("Service {binary} on host {host} not found."))
                })?;
            match action.as_str() {
                "enable" => {
                    s.disabled = false;
                    s.disabled_reason = None;
                }
                "disable" => {
                    s.disabled = true;
                }
                "disable-log-reason" => {
                    s.disabled = true;
                    s.disabled_reason = reason.clone();
                }
                _ => {
                    s.forced_down = forced.unwrap_or(true);
                }
            }
            s.updated_at = Some(now());
            Ok((s.clone(), vec![Rec::Service(s)]))
        })
        .await?;
    let mut v = json!({"host": s.host, "binary": s.binary});
    match id.as_str() {
        "force-down" => v["forced_down"] = json!(s.forced_down),
        _ => {
            v["status"] = json!(if s.disabled { "disabled" } else { "enabled" });
            if id == "disable-log-reason" {
                v["disabled_reason"] = json!(s.disabled_reason);
            }
        }
    }
    Ok(json_resp(StatusCode::OK, json!({"service": v})))
}

async fn service_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-services:delete")?;
    let node = svc
        .state
        .write(|st| {
            let s = st
                .services
                .values()
                .find(|s| s.uuid == id || s.id.to_string() == id)
                .cloned()
                .ok_or_else(|| Error::not_found_msg(format!("Service {id} not found.")))?;
            if s.binary == "nova-compute"
                && st
                    .live()
                    .any(|i| i.host.as_deref() == Some(s.host.as_str()))
            {
                return Err(Error::conflict(
                    "Unable to delete compute service that is hosting instances.".to_string(),
                ));
            }
            Ok((s.node_uuid.clone(), vec![Rec::DelService(s.id)]))
        })
        .await?;
    if let Some(n) = node {
        let _ = svc.placement.delete_provider(&n).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn hosts_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hosts:list")?;
    if c.mv.at_least(43) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let q = query(raw);
    let st = svc.state.read();
    let list: Vec<Value> = st
        .services
        .values()
        .map(|s| {
            let zone = if s.binary == "nova-compute" { ops::host_az(&svc, &st, &s.host) } else { "internal".into() };
            json!({"host_name": s.host, "service": s.binary.trim_start_matches("nova-"), "zone": zone})
        })
        .filter(|v| first(&q, "zone").filter(|z| !z.is_empty()).is_none_or(|z| v["zone"] == z))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"hosts": list})))
}

async fn host_show(AxState(svc): St, c: Caller, Path(host): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hosts:show")?;
    if c.mv.at_least(43) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let st = svc.state.read();
    let s = computes(&st)
        .into_iter()
        .find(|s| s.host == host)
        .ok_or_else(|| NovaError::not_found(format!("Compute host {host} could not be found.")))?;
    let r = s
        .resources
        .clone()
        .unwrap_or(ferro_rpc::compute::HostResources {
            vcpus: 0,
            memory_mb: 0,
            local_gb: 0,
            hypervisor_type: String::new(),
            hypervisor_version: 0,
            cpu_info: String::new(),
        });
    let insts: Vec<&crate::model::Instance> = st
        .live()
        .filter(|i| i.host.as_deref() == Some(host.as_str()))
        .collect();
    let used = |f: fn(&crate::model::Instance) -> u64| -> u64 { insts.iter().map(|i| f(i)).sum() };
    let res = vec![
        json!({"resource": {"host": host, "project": "(total)", "cpu": r.vcpus, "memory_mb": r.memory_mb, "disk_gb": r.local_gb}}),
        json!({"resource": {"host": host, "project": "(used_now)", "cpu": used(|i| u64::from(i.flavor.vcpus)), "memory_mb": used(|i| i.flavor.ram), "disk_gb": used(|i| i.flavor.disk)}}),
        json!({"resource": {"host": host, "project": "(used_max)", "cpu": used(|i| u64::from(i.flavor.vcpus)), "memory_mb": used(|i| i.flavor.ram), "disk_gb": used(|i| i.flavor.disk)}}),
    ];
    Ok(json_resp(StatusCode::OK, json!({"host": res})))
}

// ------------------------------------------------------------ aggregates

fn agg_view(c: &Caller, a: &Aggregate) -> Value {
    let mut meta = a.metadata.clone();
    if let Some(z) = &a.availability_zone {
        meta.insert("availability_zone".into(), z.clone());
    }
    let mut v = json!({
        "id": a.id, "name": a.name, "availability_zone": a.availability_zone, "hosts": a.hosts,
        "metadata": meta, "created_at": iso_z(&a.created_at), "updated_at": a.updated_at.as_deref().map(iso_z),
        "deleted": false, "deleted_at": Value::Null,
    });
    if c.mv.at_least(41) {
        v["uuid"] = json!(a.uuid);
    }
    v
}

fn find_agg(st: &State, id: &str) -> Result<Aggregate, Error> {
    id.parse::<u64>()
        .ok()
        .and_then(|n| st.aggregates.get(&n))
        .or_else(|| st.aggregates.values().find(|a| a.uuid == id))
        .cloned()
        .ok_or_else(|| Error::not_found_msg(format!("Aggregate {id} could not be found.")))
}

async fn aggs_list(AxState(svc): St, c: Caller) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:index")?;
    let st = svc.state.read();
    Ok(json_resp(
        StatusCode::OK,
        json!({"aggregates": st.aggregates.values().map(|a| agg_view(&c, a)).collect::<Vec<_>>()}),
    ))
}

fn agg_name(v: Option<&Value>) -> NResult<String> {
    v.and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 255 && n.trim() == *n)
        .map(str::to_string)
        .ok_or_else(|| bad("Invalid input for field/attribute name."))
}

fn agg_az(v: Option<&Value>) -> NResult<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(z)) if !z.is_empty() && z.len() <= 255 && !z.contains(':') => {
            Ok(Some(z.clone()))
        }
        Some(_) => Err(bad("Invalid input for field/attribute availability_zone.")),
    }
}

async fn agg_create(AxState(svc): St, c: Caller, bytes: Bytes) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:create")?;
    let b = body(&bytes)?;
    let o = super::member(
        &b,
        "aggregate",
        "Invalid input for field/attribute aggregate.",
    )?;
    let name = agg_name(o.get("name"))?;
    let az = agg_az(o.get("availability_zone"))?;
    let a = svc
        .state
        .write(|st| {
            if st.aggregates.values().any(|a| a.name == name) {
                return Err(Error::conflict(format!("Aggregate {name} already exists.")));
            }
            let a = Aggregate {
                id: st.aggregates.keys().max().copied().unwrap_or(0) + 1,
                uuid: ferro_common::new_uuid(),
                name: name.clone(),
                availability_zone: az.clone(),
                hosts: vec![],
                metadata: BTreeMap::new(),
                created_at: now(),
                updated_at: None,
            };
            Ok((a.clone(), vec![Rec::Aggregate(a)]))
        })
        .await?;
    let mut v = agg_view(&c, &a);
    if let Some(o) = v.as_object_mut() {
        o.remove("hosts");
        o.remove("metadata");
    }
    Ok(json_resp(StatusCode::OK, json!({"aggregate": v})))
}

async fn agg_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:show")?;
    let a = find_agg(&svc.state.read(), &id)?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"aggregate": agg_view(&c, &a)}),
    ))
}

async fn agg_update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:update")?;
    let b = body(&bytes)?;
    let o = super::member(
        &b,
        "aggregate",
        "Invalid input for field/attribute aggregate.",
    )?;
    if o.is_empty() {
        return Err(bad(
            "Invalid input for field/attribute aggregate. {} does not have enough properties",
        ));
    }
    let name = o.get("name").map(|n| agg_name(Some(n))).transpose()?;
    let az = if o.contains_key("availability_zone") {
        Some(agg_az(o.get("availability_zone"))?)
    } else {
        None
    };
    let a = svc
        .state
        .write(|st| {
            let mut a = find_agg(st, &id)?;
            if let Some(n) = &name {
                if st.aggregates.values().any(|x| &x.name == n && x.id != a.id) {
                    return Err(Error::conflict(format!("Aggregate {n} already exists.")));
                }
                a.name = n.clone();
            }
            if let Some(z) = &az {
                a.availability_zone = z.clone();
            }
            a.updated_at = Some(now());
            Ok((a.clone(), vec![Rec::Aggregate(a)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"aggregate": agg_view(&c, &a)}),
    ))
}

async fn agg_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:delete")?;
    svc.state
        .write(|st| {
            let a = find_agg(st, &id)?;
            if !a.hosts.is_empty() {
                return Err(Error::validation(format!(
                    "Cannot remove aggregate {id}: it still has hosts."
                )));
            }
            Ok(((), vec![Rec::DelAggregate(a.id)]))
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn sync_host_aggregates(svc: &ComputeService, host: &str) {
    let (node, aggs) = {
        let st = svc.state.read();
        let node = computes(&st)
            .into_iter()
            .find(|s| s.host == host)
            .and_then(|s| s.node_uuid.clone());
        let aggs: Vec<String> = st
            .aggregates
            .values()
            .filter(|a| a.hosts.iter().any(|h| h == host))
            .map(|a| a.uuid.clone())
            .collect();
        (node, aggs)
    };
    if let Some(n) = node
        && let Err(e) = svc.placement.set_provider_aggregates(&n, aggs).await
    {
        tracing::warn!(%host, "placement aggregates not updated: {}", e.log_message());
    }
}

async fn agg_action(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:add_host")?;
    let b = body(&bytes)?;
    let o = b.as_object().ok_or_else(|| bad("Malformed request body"))?;
    let (act, arg) = o
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or_else(|| bad("Malformed request body"))?;
    let mut touched_host = None;
    let a = match act.as_str() {
        "add_host" | "remove_host" => {
            let host = arg
                .get("host")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("Invalid input for field/attribute host."))?
                .to_string();
            touched_host = Some(host.clone());
            let add = act == "add_host";
            svc.state
                .write(|st| {
                    let mut a = find_agg(st, &id)?;
                    if !computes(st).iter().any(|s| s.host == host) {
                        return Err(Error::not_found_msg(format!("Compute host {host} could not be found.")));
                    }
                    if add {
                        if a.hosts.contains(&host) {
                            return Err(Error::conflict(format!("Aggregate {id} already has host {host}.")));
                        }
                        if let Some(z) = &a.availability_zone
                            && st.aggregates.values().any(|x| x.id != a.id && x.hosts.contains(&host) && x.availability_zone.as_ref().is_some_and(|y| y != z))
                        {
                            return Err(Error::validation(format!("Cannot add host {host} to aggregate {id}: it is in another availability zone.")));
                        }
                        a.hosts.push(host.clone());
                    } else {
                        if !a.hosts.contains(&host) {
                            return Err(Error::not_found_msg(format!("Cannot remove host {host} in aggregate {id}: not found.")));
                        }
                        a.hosts.retain(|h| h != &host);
                    }
                    a.updated_at = Some(now());
                    Ok((a.clone(), vec![Rec::Aggregate(a)]))
                })
                .await?
        }
        "set_metadata" => {
            let meta = super::member(
                &arg,
                "metadata",
                "Invalid input for field/attribute metadata.",
            )?
            .clone();
            svc.state
                .write(|st| {
                    let mut a = find_agg(st, &id)?;
                    for (k, v) in &meta {
                        if k.is_empty() || k.len() > 255 {
                            return Err(Error::validation(
                                "Invalid input for field/attribute metadata.",
                            ));
                        }
                        match v {
                            Value::Null => {
                                if k == "availability_zone" {
                                    a.availability_zone = None;
                                }
                                a.metadata.remove(k);
                            }
                            Value::String(s) if k == "availability_zone" => {
                                a.availability_zone = Some(s.clone())
                            }
                            Value::String(s) => {
                                a.metadata.insert(k.clone(), s.clone());
                            }
                            Value::Number(n) => {
                                a.metadata.insert(k.clone(), n.to_string());
                            }
                            _ => {
                                return Err(Error::validation(
                                    "Invalid input for field/attribute metadata.",
                                ));
                            }
                        }
                    }
                    a.updated_at = Some(now());
                    Ok((a.clone(), vec![Rec::Aggregate(a)]))
                })
                .await?
        }
        other => return Err(bad(format!("Invalid aggregate action {other}"))),
    };
    if let Some(h) = touched_host {
        sync_host_aggregates(&svc, &h).await;
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"aggregate": agg_view(&c, &a)}),
    ))
}

// ------------------------------------------------------------ server groups

fn group_view(c: &Caller, g: &ServerGroup) -> Value {
    let mut v = json!({"id": g.id, "name": g.name, "members": g.members});
    if c.mv.at_least(64) {
        v["policy"] = json!(g.policy);
        v["rules"] = json!(g.rules);
    } else {
        v["policies"] = json!([g.policy]);
        v["metadata"] = json!({});
    }
    if c.mv.at_least(13) {
        v["project_id"] = json!(g.project_id);
        v["user_id"] = json!(g.user_id);
    }
    v
}

async fn groups_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    let q = query(raw);
    let all = c.is_admin(&svc) && q.contains_key("all_projects");
    let st = svc.state.read();
    let mut list: Vec<&ServerGroup> = st
        .groups
        .values()
        .filter(|g| all || g.project_id == c.project())
        .collect();
    list.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let offset = first(&q, "offset")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let (limit, _) = paging(&q)?;
    let list: Vec<Value> = list
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|g| group_view(&c, g))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"server_groups": list})))
}

async fn group_create(AxState(svc): St, c: Caller, bytes: Bytes) -> NResult<Response> {
    let b = body(&bytes)?;
    let o = super::member(
        &b,
        "server_group",
        "Invalid input for field/attribute server_group.",
    )?;
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 255 && n.trim() == *n)
        .ok_or_else(|| bad("Invalid input for field/attribute name."))?
        .to_string();
    let allowed: &[&str] = if c.mv.at_least(15) {
        &[
            "affinity",
            "anti-affinity",
            "soft-affinity",
            "soft-anti-affinity",
        ]
    } else {
        &["affinity", "anti-affinity"]
    };
    let (policy, rules) = if c.mv.at_least(64) {
        if o.contains_key("policies") {
            return Err(bad(
                "Invalid input for field/attribute server_group. Additional properties are not allowed ('policies' was unexpected)",
            ));
        }
        let p = o
            .get("policy")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Invalid input for field/attribute policy."))?
            .to_string();
        let rules: BTreeMap<String, Value> = o
            .get("rules")
            .and_then(Value::as_object)
            .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (k, v) in &rules {
            if k != "max_server_per_host" || v.as_u64().is_none_or(|n| n < 1) {
                return Err(bad(format!(
                    "Invalid input for field/attribute rules ({k})."
                )));
            }
            if p != "anti-affinity" {
                return Err(bad("Only anti-affinity policy supports rules."));
            }
        }
        (p, rules)
    } else {
        let ps = o
            .get("policies")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("Invalid input for field/attribute policies."))?;
        if ps.len() != 1 {
            return Err(bad(
                "Invalid input for field/attribute policies. Exactly one policy is allowed.",
            ));
        }
        (
            ps[0].as_str().unwrap_or_default().to_string(),
            BTreeMap::new(),
        )
    };
    if !allowed.contains(&policy.as_str()) {
        return Err(bad(format!(
            "Invalid input for field/attribute policy. Value: {policy}."
        )));
    }
    let (project, user) = (c.project(), c.user());
    let g = svc
        .state
        .write(|st| {
            let lim = ops::quota_limits(st, &project, Some(&user))
                .get("server_groups")
                .copied()
                .unwrap_or(-1);
            let used = st
                .groups
                .values()
                .filter(|g| g.project_id == project)
                .count() as i64;
            if lim >= 0 && used + 1 > lim {
                return Err(Error::forbidden("Quota exceeded, too many server groups."));
            }
            let g = ServerGroup {
                id: ferro_common::new_uuid(),
                name: name.clone(),
                project_id: project.clone(),
                user_id: user.clone(),
                policy: policy.clone(),
                rules: rules.clone(),
                members: vec![],
                created_at: now(),
            };
            Ok((g.clone(), vec![Rec::Group(g)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"server_group": group_view(&c, &g)}),
    ))
}

async fn group_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let st = svc.state.read();
    let g = st
        .groups
        .get(&id)
        .filter(|g| g.project_id == c.project() || c.is_admin(&svc))
        .ok_or_else(|| NovaError::not_found(format!("Instance group {id} could not be found.")))?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"server_group": group_view(&c, g)}),
    ))
}

async fn group_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let (project, admin) = (c.project(), c.is_admin(&svc));
    svc.state
        .write(|st| match st.groups.get(&id) {
            Some(g) if g.project_id == project || admin => {
                Ok(((), vec![Rec::DelGroup(id.clone())]))
            }
            _ => Err(Error::not_found_msg(format!(
                "Instance group {id} could not be found."
            ))),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------------ usage, migrations

fn parse_ts(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .ok()
}

fn usage_for(
    st: &State,
    project: &str,
    start: chrono::NaiveDateTime,
    end: chrono::NaiveDateTime,
    detailed: bool,
) -> Option<Value> {
    let mut servers = Vec::new();
    let (mut gb, mut vc, mut mb, mut hours) = (0.0, 0.0, 0.0, 0.0);
    for i in st.instances.values().filter(|i| i.project_id == project) {
        let Some(launched) = i
            .launched_at
            .as_deref()
            .and_then(parse_ts)
            .or_else(|| parse_ts(&i.created_at))
        else {
            continue;
        };
        let ended = i.terminated_at.as_deref().and_then(parse_ts);
        if launched > end || ended.is_some_and(|e| e < start) {
            continue;
        }
        let a = launched.max(start);
        let b = ended.unwrap_or(end).min(end);
        let h = ((b - a).num_milliseconds().max(0) as f64) / 3_600_000.0;
        hours += h;
        gb += h * (i.flavor.disk + i.flavor.ephemeral) as f64;
        vc += h * f64::from(i.flavor.vcpus);
        mb += h * i.flavor.ram as f64;
        if detailed {
            let now_t = chrono::Utc::now().naive_utc();
            servers.push(json!({
                "instance_id": i.uuid, "name": i.name, "hours": h, "memory_mb": i.flavor.ram,
                "local_gb": i.flavor.disk + i.flavor.ephemeral, "vcpus": i.flavor.vcpus, "tenant_id": i.project_id,
                "flavor": i.flavor.name, "started_at": launched.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                "ended_at": ended.map(|e| e.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
                "state": if i.deleted { "terminated".to_string() } else { i.vm_state.clone() },
                "uptime": (ended.unwrap_or(now_t) - launched).num_seconds().max(0),
            }));
        }
    }
    if hours == 0.0 && servers.is_empty() && !st.instances.values().any(|i| i.project_id == project)
    {
        return None;
    }
    let mut v = json!({
        "tenant_id": project, "total_local_gb_usage": gb, "total_vcpus_usage": vc,
        "total_memory_mb_usage": mb, "total_hours": hours,
        "start": start.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "stop": end.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
    });
    if detailed {
        v["server_usages"] = json!(servers);
    }
    Some(v)
}

fn period(
    q: &BTreeMap<String, Vec<String>>,
) -> NResult<(chrono::NaiveDateTime, chrono::NaiveDateTime)> {
    let now_t = chrono::Utc::now().naive_utc();
    let start = match first(q, "start") {
        Some(s) => parse_ts(s).ok_or_else(|| bad(format!("Invalid start time {s}")))?,
        None => now_t,
    };
    let end = match first(q, "end") {
        Some(s) => parse_ts(s).ok_or_else(|| bad(format!("Invalid end time {s}")))?,
        None => now_t,
    };
    if start > end {
        return Err(bad(
            "Invalid start time. The start time cannot occur after the end time.",
        ));
    }
    Ok((start, end))
}

async fn usage_all(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-simple-tenant-usage:list")?;
    let q = query(raw);
    let (start, end) = period(&q)?;
    let detailed = first(&q, "detailed").is_some_and(|d| d == "1" || d == "true");
    let st = svc.state.read();
    let projects: std::collections::BTreeSet<&String> =
        st.instances.values().map(|i| &i.project_id).collect();
    let list: Vec<Value> = projects
        .into_iter()
        .filter_map(|p| usage_for(&st, p, start, end, detailed))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"tenant_usages": list})))
}

async fn usage_one(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    if project != c.project() {
        c.require_admin(&svc, "os_compute_api:os-simple-tenant-usage:show")?;
    }
    let q = query(raw);
    let (start, end) = period(&q)?;
    let st = svc.state.read();
    let u = usage_for(&st, &project, start, end, true).unwrap_or(json!({}));
    Ok(json_resp(StatusCode::OK, json!({"tenant_usage": u})))
}

async fn migrations_list(
    AxState(svc): St,
    c: Caller,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-migrations:index")?;
    let q = query(raw);
    let st = svc.state.read();
    let list: Vec<Value> = st
        .migrations
        .values()
        .rev()
        .filter(|m| first(&q, "instance_uuid").is_none_or(|u| m.instance_uuid == u))
        .filter(|m| first(&q, "status").is_none_or(|s| m.status == s))
        .filter(|m| first(&q, "migration_type").is_none_or(|s| m.migration_type == s))
        .filter(|m| first(&q, "source_compute").is_none_or(|s| m.source_compute == s))
        .map(|m| {
            let mut v = json!({
                "id": m.id, "source_node": m.source_node, "dest_node": m.dest_node,
                "source_compute": m.source_compute, "dest_compute": m.dest_compute, "dest_host": "127.0.0.1",
                "status": m.status, "instance_uuid": m.instance_uuid,
                "old_instance_type_id": m.old_flavor_id.parse::<i64>().unwrap_or(0),
                "new_instance_type_id": m.new_flavor_id.parse::<i64>().unwrap_or(0),
                "created_at": iso_z(&m.created_at), "updated_at": iso_z(&m.updated_at),
            });
            if c.mv.at_least(23) {
                v["migration_type"] = json!(m.migration_type);
            }
            if c.mv.at_least(59) {
                v["uuid"] = json!(m.uuid);
            }
            if c.mv.at_least(80) {
                v["user_id"] = json!(m.user_id);
                v["project_id"] = json!(m.project_id);
            }
            v
        })
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"migrations": list})))
}

/// The v2.1 extension list (frozen upstream; kept for old clients).
const EXTENSIONS: &[(&str, &str)] = &[
    ("os-access-ips", "AccessIPs"),
    ("os-admin-actions", "AdminActions"),
    ("os-admin-password", "AdminPassword"),
    ("os-aggregates", "Aggregates"),
    ("os-assisted-volume-snapshots", "AssistedVolumeSnapshots"),
    ("os-attach-interfaces", "AttachInterfaces"),
    ("os-availability-zone", "AvailabilityZone"),
    ("os-block-device-mapping", "BlockDeviceMapping"),
    ("os-cells", "Cells"),
    ("os-certificates", "Certificates"),
    ("os-cloudpipe", "Cloudpipe"),
    ("os-config-drive", "ConfigDrive"),
    ("os-console-auth-tokens", "ConsoleAuthTokens"),
    ("os-console-output", "ConsoleOutput"),
    ("os-consoles", "Consoles"),
    ("os-create-backup", "CreateBackup"),
    ("os-deferred-delete", "DeferredDelete"),
    ("os-evacuate", "Evacuate"),
    ("os-extended-availability-zone", "ExtendedAvailabilityZone"),
    ("os-extended-server-attributes", "ExtendedServerAttributes"),
    ("os-extended-status", "ExtendedStatus"),
    ("os-extended-volumes", "ExtendedVolumes"),
    ("os-fixed-ips", "FixedIPs"),
    ("os-flavor-access", "FlavorAccess"),
    ("os-flavor-extra-specs", "FlavorExtraSpecs"),
    ("os-flavor-manage", "FlavorManage"),
    ("os-flavor-rxtx", "FlavorRxtx"),
    ("flavors", "Flavors"),
    ("os-floating-ip-dns", "FloatingIpDns"),
    ("os-floating-ip-pools", "FloatingIpPools"),
    ("os-floating-ips", "FloatingIps"),
    ("os-floating-ips-bulk", "FloatingIpsBulk"),
    ("os-fping", "Fping"),
    ("os-hide-server-addresses", "HideServerAddresses"),
    ("os-hosts", "Hosts"),
    ("os-hypervisors", "Hypervisors"),
    ("images", "Images"),
    ("os-image-metadata", "ImageMetadata"),
    ("os-instance-actions", "InstanceActions"),
    ("os-instance-usage-audit-log", "OSInstanceUsageAuditLog"),
    ("ips", "Ips"),
    ("os-keypairs", "Keypairs"),
    ("os-lock-server", "LockServer"),
    ("os-migrate-server", "MigrateServer"),
    ("os-migrations", "Migrations"),
    ("os-multinic", "Multinic"),
    ("os-multiple-create", "MultipleCreate"),
    ("os-networks", "Networks"),
    ("os-networks-associate", "NetworkAssociationSupport"),
    ("os-pause-server", "PauseServer"),
    ("os-personality", "Personality"),
    (
        "os-preserve-ephemeral-rebuild",
        "PreserveEphemeralOnRebuild",
    ),
    ("os-quota-class-sets", "QuotaClasses"),
    ("os-quota-sets", "Quotas"),
    ("os-remote-consoles", "RemoteConsoles"),
    ("os-rescue", "Rescue"),
    ("os-scheduler-hints", "SchedulerHints"),
    (
        "os-security-group-default-rules",
        "SecurityGroupDefaultRules",
    ),
    ("os-security-groups", "SecurityGroups"),
    ("os-server-diagnostics", "ServerDiagnostics"),
    ("os-server-external-events", "ServerExternalEvents"),
    ("os-server-groups", "ServerGroups"),
    ("os-server-password", "ServerPassword"),
    ("os-server-usage", "ServerUsage"),
    ("servers", "Servers"),
    ("os-services", "Services"),
    ("os-shelve", "Shelve"),
    ("os-simple-tenant-usage", "SimpleTenantUsage"),
    ("os-suspend-server", "SuspendServer"),
    ("os-tenant-networks", "OSTenantNetworks"),
    ("os-used-limits", "UsedLimits"),
    ("os-user-data", "UserData"),
    ("os-virtual-interfaces", "VirtualInterfaces"),
    ("os-volumes", "Volumes"),
    ("os-server-start-stop", "ServerStartStop"),
    ("os-server-tags", "ServerTags"),
    ("os-limits", "Limits"),
];

fn extension_view(alias: &str, name: &str) -> Value {
    json!({"alias": alias, "name": name, "description": name, "links": [],
        "namespace": "http://docs.openstack.org/compute/ext/fake_xml", "updated": "2014-12-03T00:00:00Z"})
}

async fn extensions(_c: Caller) -> NResult<Response> {
    Ok(json_resp(
        StatusCode::OK,
        json!({"extensions": EXTENSIONS.iter().map(|(a, n)| extension_view(a, n)).collect::<Vec<_>>()}),
    ))
}

async fn extension_show(_c: Caller, Path(alias): Path<String>) -> NResult<Response> {
    let (a, n) = EXTENSIONS
        .iter()
        .find(|(a, _)| *a == alias)
        .ok_or_else(|| NovaError::not_found(format!("Extension {alias} not found")))?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"extension": extension_view(a, n)}),
    ))
}

async fn host_update(
    AxState(svc): St,
    c: Caller,
    Path(host): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hosts:update")?;
    if c.mv.at_least(43) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let b = body(&bytes)?;
    let o = b.as_object().cloned().unwrap_or_default();
    let status = o.get("status").and_then(Value::as_str).map(str::to_string);
    let maint = o
        .get("maintenance_mode")
        .and_then(Value::as_str)
        .map(str::to_string);
    for (k, v) in &o {
        let ok = match k.as_str() {
            "status" | "maintenance_mode" => matches!(v.as_str(), Some("enable" | "disable")),
            _ => false,
        };
        if !ok {
            return Err(bad(format!(
                "Invalid input for field/attribute {k}. Value: {v}."
            )));
        }
    }
    if status.is_none() && maint.is_none() {
        return Err(bad("'status' or 'maintenance_mode' needed for host update"));
    }
    if !computes(&svc.state.read()).iter().any(|s| s.host == host) {
        return Err(NovaError::not_found(format!(
            "Compute host {host} could not be found."
        )));
    }
    if maint.is_some() {
        return Err(NovaError::new(
            501,
            "Virt driver does not implement host maintenance mode.",
        ));
    }
    let disable = status.as_deref() == Some("disable");
    svc.state
        .write(|st| {
            let mut s = computes(st)
                .into_iter()
                .find(|s| s.host == host)
                .cloned()
                .ok_or_else(|| {
                    Error::not_found_msg(format!("Compute host {host} could not be found."))
                })?;
            s.disabled = disable;
            s.updated_at = Some(now());
            Ok(((), vec![Rec::Service(s)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"host": host, "status": if disable { "disabled" } else { "enabled" }}),
    ))
}

async fn host_power(
    AxState(svc): St,
    c: Caller,
    Path((host, action)): Path<(String, String)>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-hosts:start")?;
    if c.mv.at_least(43) || !matches!(action.as_str(), "reboot" | "shutdown" | "startup") {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    if !computes(&svc.state.read()).iter().any(|s| s.host == host) {
        return Err(NovaError::not_found(format!(
            "Compute host {host} could not be found."
        )));
    }
    Err(NovaError::new(
        501,
        "Virt driver does not implement host power management.",
    ))
}

fn audit_log(st: &State, before: chrono::NaiveDateTime) -> Value {
    let hosts: Vec<&ServiceRec> = computes(st);
    let begin = before - chrono::Duration::days(30);
    json!({
        "hosts_not_run": hosts.iter().map(|s| s.host.clone()).collect::<Vec<_>>(),
        "log": {},
        "num_hosts": hosts.len(),
        "num_hosts_done": 0,
        "num_hosts_not_run": hosts.len(),
        "num_hosts_running": 0,
        "overall_status": format!("0 of {} hosts done. 0 errors.", hosts.len()),
        "period_beginning": begin.format("%Y-%m-%d %H:%M:%S").to_string(),
        "period_ending": before.format("%Y-%m-%d %H:%M:%S").to_string(),
        "total_errors": 0,
        "total_instances": st.live().count(),
    })
}

async fn audit_log_index(AxState(svc): St, c: Caller) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-instance-usage-audit-log:list")?;
    let st = svc.state.read();
    Ok(json_resp(
        StatusCode::OK,
        json!({"instance_usage_audit_logs": audit_log(&st, chrono::Utc::now().naive_utc())}),
    ))
}

async fn audit_log_show(
    AxState(svc): St,
    c: Caller,
    Path(before): Path<String>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-instance-usage-audit-log:show")?;
    let t = parse_ts(&before).ok_or_else(|| bad(format!("Invalid timestamp for date {before}")))?;
    let st = svc.state.read();
    Ok(json_resp(
        StatusCode::OK,
        json!({"instance_usage_audit_log": audit_log(&st, t)}),
    ))
}

/// The nova-network proxy (removed at 2.36): no Networking service, no networks.
/// Events from Neutron/Cinder about an instance (network-vif-plugged, volume-extended...).
async fn external_events(AxState(svc): St, c: Caller, bytes: Bytes) -> NResult<Response> {
    if !c.is_admin(&svc) && !c.ctx.token.has_role("service") {
        return Err(NovaError::forbidden(
            "Policy doesn't allow os_compute_api:os-server-external-events:create to be performed.",
        ));
    }
    let b = body(&bytes)?;
    let events = b
        .get("events")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| bad("Invalid input for field/attribute events."))?;
    const NAMES: &[&str] = &[
        "network-changed",
        "network-vif-plugged",
        "network-vif-unplugged",
        "network-vif-deleted",
        "volume-extended",
        "power-update",
        "accelerator-request-bound",
        "volume-reimaged",
    ];
    let st = svc.state.read();
    let mut out = Vec::new();
    let mut any_ok = false;
    for e in events {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        if !NAMES.contains(&name) {
            return Err(bad(format!(
                "Invalid input for field/attribute name. Value: {name}."
            )));
        }
        let uuid = e.get("server_uuid").and_then(Value::as_str).unwrap_or("");
        let mut r = e.clone();
        let status = e
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("completed");
        r["status"] = json!(status);
        match st.instances.get(uuid).filter(|i| !i.deleted) {
            Some(i) if i.host.is_some() => {
                r["code"] = json!(200);
                any_ok = true;
            }
            Some(_) => r["code"] = json!(422),
            None => r["code"] = json!(404),
        }
        out.push(r);
    }
    drop(st);
    // The events that change a guest.
    for r in out.iter_mut() {
        if r["name"] == "volume-extended" && r["code"] == 200 {
            let uuid = r["server_uuid"].as_str().unwrap_or_default().to_string();
            let vol = r["tag"].as_str().unwrap_or_default().to_string();
            let code = crate::volumes::volume_extended(&svc, &uuid, &vol, &c.request_id).await;
            r["code"] = json!(code);
        }
    }
    if !any_ok {
        return Err(NovaError::not_found("No instances found for any event"));
    }
    let code = if out.iter().all(|r| r["code"] == 200) {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok(json_resp(code, json!({"events": out})))
}
