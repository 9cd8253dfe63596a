//! The servers service layer: what creating servers records once the
//! request is checked (quotas and the records in one write, DESIGN.md §5),
//! and the builds it starts; which instances a caller may see and change;
//! starting a delete.
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::model::{Bdm, Flavor, Instance, Keypair};
use crate::ops;
use crate::state::{Rec, State, now};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

fn bad(m: impl Into<String>) -> NovaError {
    NovaError::bad(m)
}

/// A checked server-create request: what is recorded for each server.
#[derive(Debug)]
pub struct NewServers {
    pub name: String,
    pub min_count: u32,
    pub max_count: u32,
    pub flavor: Flavor,
    pub image_ref: String,
    pub image_properties: BTreeMap<String, String>,
    pub key: Option<Keypair>,
    pub disk_config: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub user_data: Option<String>,
    pub az: Option<String>,
    pub networks: Value,
    pub sgs: Vec<String>,
    pub access_v4: String,
    pub access_v6: String,
    pub bdms: Vec<Bdm>,
    pub hints: BTreeMap<String, Value>,
    pub group_id: Option<String>,
    pub config_drive: bool,
    pub trusted_certs: Option<Value>,
    pub reservation_id: String,
    /// The hostname asked for (2.90); else one made from the name.
    pub hostname: Option<String>,
}

/// A hostname made from a server's name as Nova's `sanitize_hostname`:
/// at most 63 characters, spaces, underscores and dots become dashes,
/// anything else that is not a word character goes, lower case, no
/// leading or trailing dots and dashes.
pub fn sanitize_hostname(name: &str) -> String {
    let latin1: String = name
        .chars()
        .filter(|c| (*c as u32) <= 0xff)
        .take(63)
        .collect();
    let h: String = latin1
        .chars()
        .map(|c| if matches!(c, ' ' | '_' | '.') { '-' } else { c })
        .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .collect::<String>()
        .to_lowercase();
    h.trim_matches(|c| c == '.' || c == '-').to_string()
}

/// The zone the server is pinned to (Nova's request spec
/// `availability_zone`): the zone it was asked for, without a forced host.
pub fn pinned_az(i: &Instance) -> Option<String> {
    i.requested_az
        .as_deref()
        .and_then(|a| a.split(':').next())
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

/// Who asks, and for whom the builds act.
pub struct Requester {
    pub project: String,
    pub user: String,
    pub request_id: String,
    pub acting: ferro_auth::Acting,
}

/// Records `min_count` to `max_count` servers (as many as quota allows),
/// their `create` actions and group membership in one write, then starts
/// their builds.
pub async fn create(
    svc: &Arc<ComputeService>,
    who: &Requester,
    req: NewServers,
) -> NResult<Vec<Instance>> {
    let NewServers {
        name,
        min_count,
        max_count,
        flavor,
        image_ref,
        image_properties,
        key,
        disk_config,
        description,
        tags,
        metadata,
        user_data,
        az,
        networks,
        sgs,
        access_v4,
        access_v6,
        bdms,
        hints,
        group_id,
        config_drive,
        trusted_certs,
        reservation_id,
        hostname,
    } = req;
    if hostname.is_some() && max_count > 1 {
        return Err(bad(
            "Unable to allocate a single hostname to multiple instances",
        ));
    }
    let base_hostname = sanitize_hostname(&name);
    let (project, user, rid) = (
        who.project.clone(),
        who.user.clone(),
        who.request_id.clone(),
    );
    let created: Vec<Instance> = svc
        .state
        .write(|st| {
            if let Some(g) = &group_id {
                let grp = st
                    .groups
                    .get(g)
                    .ok_or_else(|| bad(format!("Invalid server group {g}")).into_error())?;
                let limits = ops::quota_limits(st, &project, None);
                let lim = limits.get("server_group_members").copied().unwrap_or(-1);
                if lim >= 0 && grp.members.len() as i64 + i64::from(min_count) > lim {
                    return Err(
                        NovaError::forbidden("Quota exceeded, too many servers in group")
                            .into_error(),
                    );
                }
            }
            let limits = ops::quota_limits(st, &project, Some(&user));
            let usage = ops::quota_usage(st, &project, None);
            let room = |k: &str, per: i64| -> i64 {
                let lim = limits.get(k).copied().unwrap_or(-1);
                if lim < 0 || per == 0 {
                    i64::MAX
                } else {
                    (lim - usage.get(k).copied().unwrap_or(0)) / per
                }
            };
            let allowed = room("instances", 1)
                .min(room("cores", i64::from(flavor.vcpus)))
                .min(room("ram", flavor.ram as i64));
            if allowed < i64::from(min_count) {
                ops::quota_check(
                    st,
                    &project,
                    &user,
                    &[
                        ("instances", i64::from(min_count)),
                        ("cores", i64::from(flavor.vcpus * min_count)),
                        ("ram", flavor.ram as i64 * i64::from(min_count)),
                    ],
                )
                .map_err(NovaError::into_error)?;
                return Err(NovaError::forbidden("Quota exceeded for instances").into_error());
            }
            let n = (i64::from(max_count).min(allowed)) as u32;
            let mut recs = Vec::new();
            let mut made = Vec::new();
            let t = now();
            let max_internal = st
                .instances
                .values()
                .map(|i| i.internal_id)
                .max()
                .unwrap_or(0);
            for k in 0..n {
                let uuid = ferro_common::new_uuid();
                let dname = if n > 1 {
                    format!("{name}-{}", k + 1)
                } else {
                    name.clone()
                };
                let inst = Instance {
                    disk_config: disk_config.clone(),
                    uuid: uuid.clone(),
                    name: dname.clone(),
                    project_id: project.clone(),
                    user_id: user.clone(),
                    description: description.clone(),
                    flavor: flavor.clone(),
                    old_flavor: None,
                    new_flavor: None,
                    image_ref: image_ref.clone(),
                    image_properties: image_properties.clone(),
                    key_name: key.as_ref().map(|k| k.name.clone()),
                    key_data: key.as_ref().map(|k| k.public_key.clone()),
                    user_data: user_data.clone(),
                    metadata: metadata.clone(),
                    tags: tags.clone(),
                    vm_state: "building".into(),
                    task_state: Some("scheduling".into()),
                    power_state: 0,
                    host: None,
                    node: None,
                    requested_az: az.clone(),
                    availability_zone: az.as_ref().and_then(|a| {
                        a.split(':')
                            .next()
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                    }),
                    created_at: t.clone(),
                    updated_at: t.clone(),
                    launched_at: None,
                    terminated_at: None,
                    deleted: false,
                    deleted_at: None,
                    locked: false,
                    locked_by: None,
                    locked_reason: None,
                    fault: None,
                    config_drive,
                    access_ip_v4: access_v4.clone(),
                    access_ip_v6: access_v6.clone(),
                    security_groups: sgs.clone(),
                    hostname: match &hostname {
                        Some(h) => h.clone(),
                        None if base_hostname.is_empty() => format!("Server-{uuid}"),
                        None if n > 1 => format!("{base_hostname}-{}", k + 1),
                        None => base_hostname.clone(),
                    },
                    reservation_id: reservation_id.clone(),
                    launch_index: k,
                    server_group: group_id.clone(),
                    bdms: bdms.clone(),
                    addresses: BTreeMap::new(),
                    requested_networks: networks.clone(),
                    vif_tags: BTreeMap::new(),
                    scheduler_hints: hints.clone(),
                    password: None,
                    shelved_image: None,
                    rescue_image: None,
                    previous_vm_state: None,
                    trusted_certs: trusted_certs.clone(),
                    seq: st.next_seq(&recs),
                    internal_id: max_internal + 1 + u64::from(k),
                };
                let action = ops::new_action(st, &recs, &inst, "create", &rid, &user, &project);
                recs.push(Rec::Instance(Box::new(inst.clone())));
                recs.push(Rec::Action(action));
                made.push(inst);
            }
            if let Some(g) = &group_id
                && let Some(grp) = st.groups.get(g)
            {
                let mut grp = grp.clone();
                grp.members.extend(made.iter().map(|i| i.uuid.clone()));
                recs.push(Rec::Group(grp));
            }
            Ok((made, recs))
        })
        .await
        .map_err(NovaError::from_error)?;
    for i in &created {
        crate::build::spawn_build(svc, i.uuid.clone(), rid.clone(), Some(who.acting.clone()));
    }
    Ok(created)
}

/// The instance, if the caller may see it (404 otherwise, as Nova hides others' servers).
pub fn visible(svc: &ComputeService, c: &Caller, st: &State, id: &str) -> NResult<Instance> {
    match st.instances.get(id) {
        Some(i) if !i.deleted && (i.project_id == c.project() || c.is_admin(svc)) => Ok(i.clone()),
        _ => Err(NovaError::not_found(format!(
            "Instance {id} could not be found."
        ))),
    }
}

pub fn get_instance(svc: &ComputeService, c: &Caller, id: &str) -> NResult<Instance> {
    let st = svc.state.read();
    visible(svc, c, &st, id)
}

/// A locked instance changes only by an admin (409 otherwise).
pub fn check_locked(svc: &ComputeService, c: &Caller, i: &Instance) -> NResult<()> {
    if i.locked && !c.is_admin(svc) {
        return Err(NovaError::conflict(format!(
            "Instance {} is locked",
            i.uuid
        )));
    }
    Ok(())
}

/// Starts deleting the instance (`delete`, `forceDelete`): the action is
/// recorded and the task set in one write; the delete runs once any build
/// in flight has stopped.
pub async fn delete_instance(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    action: &str,
) -> NResult<()> {
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:servers:delete")?;
    check_locked(svc, c, &i)?;
    let rid = c.request_id.clone();
    let (user, project) = (c.user(), c.project());
    let building = svc
        .state
        .active_builds
        .lock()
        .map(|b| b.contains(id))
        .unwrap_or(false);
    svc.state
        .write(|st| {
            let Some(mut i) = st.instances.get(id).cloned() else {
                return Err(ferro_common::Error::not_found_msg(format!(
                    "Instance {id} could not be found."
                )));
            };
            let a = ops::new_action(st, &[], &i, action, &rid, &user, &project);
            i.task_state = Some("deleting".into());
            i.updated_at = now();
            Ok(((), vec![Rec::Instance(Box::new(i)), Rec::Action(a)]))
        })
        .await?;
    if !building {
        let svc = svc.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = crate::build::delete_now(&svc, &id, &rid).await {
                tracing::warn!(instance = %id, "delete failed: {}", e.log_message());
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostnames_are_made_as_nova_makes_them() {
        use super::sanitize_hostname as h;
        assert_eq!(h("My Server_1.example"), "my-server-1-example");
        assert_eq!(h("..--a!b@c--.."), "abc");
        assert_eq!(h("ünïcode ☃"), "ünïcode");
        assert_eq!(h("☃☃"), "");
        assert_eq!(h(&"x".repeat(80)).len(), 63);
    }
}
