//! Nova's metadata API (`nova/api/metadata/base.py`, `handler.py`): what
//! a guest reads at 169.254.169.254, answered for an instance that the
//! network agent identified (by the namespace a request came in through and
//! its source address, never by anything the guest claims). The OpenStack
//! tree (`/openstack/<version>/meta_data.json`, `user_data`,
//! `network_data.json`, `vendor_data.json`, `vendor_data2.json`, and
//! `password`, which the guest may POST once and `os-server-password`
//! returns) and the EC2 tree (`/<version>/meta-data/...`, `user-data`).
use crate::ComputeService;
use ferro_rpc::compute::{ComputeReply, ComputeRequest};
use ferro_rpc::metadata::{
    InstanceMetadata, MetadataReply, OPENSTACK_VERSIONS, ec2_meta_data, meta_data,
};
use serde_json::Value;

/// The EC2 versions Nova lists at `/` (it answers each of them alike).
const EC2_LISTED: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];

/// How long a guest's `meta_data.json` waits for its host to say where
/// the tagged devices are.
const DEVICES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Nova's limit on what a guest may POST as its password.
const MAX_PASSWORD: usize = 256;

fn text(body: impl Into<String>) -> MetadataReply {
    MetadataReply {
        status: 200,
        content_type: "text/plain; charset=UTF-8".into(),
        body: body.into().into_bytes(),
    }
}

fn json(v: &Value) -> MetadataReply {
    MetadataReply {
        status: 200,
        content_type: "application/json".into(),
        body: serde_json::to_vec(v).unwrap_or_default(),
    }
}

fn status(code: u16, why: &str) -> MetadataReply {
    MetadataReply {
        status: code,
        content_type: "text/plain; charset=UTF-8".into(),
        body: why.as_bytes().to_vec(),
    }
}

/// The instance's metadata as its guest sees it now, if it exists. Its
/// tagged devices are where the host's hypervisor reports them (asked only
/// when `with_devices` and something is tagged).
pub async fn instance_metadata(
    svc: &ComputeService,
    uuid: &str,
    with_devices: bool,
) -> Option<InstanceMetadata> {
    let (spec, host) = {
        let st = svc.state.read();
        let i = st.instances.get(uuid).filter(|i| !i.deleted)?;
        (crate::ops::guest_spec(svc, i), i.host.clone())
    };
    let mut md = ferro_rpc::metadata::from_spec(&spec);
    if with_devices
        && ferro_rpc::metadata::has_tags(&spec)
        && let Some(host) = host.filter(|h| !h.is_empty())
    {
        let req = ComputeRequest::Devices {
            uuid: uuid.to_string(),
        };
        // A guest waits on this answer: an unreachable host costs it a few
        // seconds and the devices, not the whole document.
        let asked = tokio::time::timeout(
            DEVICES_TIMEOUT,
            crate::ops::call_agent(svc, &host, req, None),
        )
        .await;
        match asked {
            Ok(Ok(ComputeReply::Devices { devices })) => {
                md.devices = ferro_rpc::metadata::tagged_devices(&spec, &devices);
            }
            Ok(Ok(other)) => {
                tracing::warn!(instance = %uuid, "device metadata: unexpected answer {other:?}")
            }
            Ok(Err(e)) => tracing::warn!(instance = %uuid, "device metadata: {e}"),
            Err(_) => {
                tracing::warn!(instance = %uuid, %host, "device metadata: the host did not answer in time")
            }
        }
    }
    // `public-ipv4`: the instance's floating address, if it has one.
    md.public_ipv4 = svc.network.addresses(uuid).and_then(|nets| {
        nets.values()
            .filter_map(Value::as_array)
            .flatten()
            .find(|a| a["OS-EXT-IPS:type"] == "floating" && a["version"] == 4)
            .and_then(|a| a["addr"].as_str().map(str::to_string))
    });
    Some(md)
}

/// Answers one metadata request of the guest of `uuid`.
pub async fn serve(
    svc: &ComputeService,
    uuid: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> MetadataReply {
    let parts: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    // Only `meta_data.json` shows devices: the hypervisor is asked for it alone.
    let devices = matches!(parts.as_slice(), ["openstack", _, "meta_data.json"]);
    let Some(md) = instance_metadata(svc, uuid, devices).await else {
        return status(404, "Not Found");
    };
    let write = method == "POST";
    if method != "GET" && method != "HEAD" && !write {
        return status(405, "Method Not Allowed");
    }
    match parts.as_slice() {
        ["openstack", v, "password"] if version_ok(v) => password(svc, uuid, write, body).await,
        _ if write => status(405, "Method Not Allowed"),
        [] => text(
            EC2_LISTED
                .iter()
                .copied()
                .chain(["latest"])
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ["openstack"] => text(
            OPENSTACK_VERSIONS
                .iter()
                .copied()
                .chain(["latest"])
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ["openstack", v, rest @ ..] if version_ok(v) => openstack(&md, v, rest),
        [v, rest @ ..] if *v == "latest" || EC2_LISTED.contains(v) => ec2(&md, rest),
        _ => status(404, "Not Found"),
    }
}

/// Answers the metadata queue for network agents on other hosts (the
/// agent named the instance; each request is answered on its own task).
pub async fn listen(
    svc: std::sync::Arc<ComputeService>,
    bus: std::sync::Arc<dyn ferro_bus::Bus>,
) -> Result<(), ferro_common::Error> {
    use ferro_rpc::metadata::{MetadataRequest, TOPIC};
    let mut sub = bus
        .serve(TOPIC, &svc.cfg.compute.host_name())
        .await
        .map_err(|e| ferro_common::Error::internal(format!("subscribing to {TOPIC}: {e}")))?;
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let svc = svc.clone();
            tokio::spawn(async move {
                let r = match MetadataRequest::from_envelope(&msg.envelope) {
                    Ok(q) => {
                        let a = serve(&svc, &q.instance, &q.http_method, &q.path, &q.body).await;
                        serde_json::to_value(&a).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_wire()),
                };
                msg.reply(r).await;
            });
        }
    });
    Ok(())
}

fn version_ok(v: &str) -> bool {
    v == "latest" || OPENSTACK_VERSIONS.contains(&v)
}

fn openstack(md: &InstanceMetadata, v: &str, rest: &[&str]) -> MetadataReply {
    let at_least = |since: &str| v == "latest" || v >= since;
    match rest {
        [] => {
            let mut files = vec!["meta_data.json"];
            if md.user_data.is_some() {
                files.push("user_data");
            }
            files.push("password");
            files.push("vendor_data.json");
            if at_least("2015-10-15") {
                files.push("network_data.json");
            }
            if at_least("2016-10-06") {
                files.push("vendor_data2.json");
            }
            text(files.join("\n"))
        }
        ["meta_data.json"] => json(&meta_data(md, v)),
        ["user_data"] => match &md.user_data {
            Some(u) => MetadataReply {
                status: 200,
                content_type: "text/plain".into(),
                body: u.clone(),
            },
            None => status(404, "Not Found"),
        },
        ["vendor_data.json"] => json(&serde_json::json!({})),
        ["network_data.json"] if at_least("2015-10-15") => json(&md.network_data),
        ["vendor_data2.json"] if at_least("2016-10-06") => json(&serde_json::json!({})),
        _ => status(404, "Not Found"),
    }
}

/// The EC2 tree: `meta-data/` walked by path, `user-data`.
fn ec2(md: &InstanceMetadata, rest: &[&str]) -> MetadataReply {
    match rest {
        [] => text(if md.user_data.is_some() {
            "meta-data/\nuser-data"
        } else {
            "meta-data/"
        }),
        ["user-data"] => match &md.user_data {
            Some(u) => MetadataReply {
                status: 200,
                content_type: "text/plain".into(),
                body: u.clone(),
            },
            None => status(404, "Not Found"),
        },
        ["meta-data", keys @ ..] => {
            let tree = ec2_meta_data(md);
            // `public-keys/` lists `<index>=<key name>`, as Nova does.
            if keys == ["public-keys"] {
                return text(
                    md.public_keys
                        .iter()
                        .enumerate()
                        .map(|(i, (name, _))| format!("{i}={name}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            }
            let mut node = &tree;
            for k in keys {
                match node.get(*k) {
                    Some(n) => node = n,
                    None => return status(404, "Not Found"),
                }
            }
            match node {
                Value::Object(m) => text(
                    m.iter()
                        .map(|(k, v)| {
                            if v.is_object() {
                                format!("{k}/")
                            } else {
                                k.clone()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                Value::Array(a) => text(
                    a.iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                Value::String(s) => text(s.clone()),
                Value::Null => text(""),
                other => text(other.to_string()),
            }
        }
        _ => status(404, "Not Found"),
    }
}

/// `GET` the password the guest posted (empty when none); `POST` sets it
/// once (409 once it is set, as Nova answers), at most 256 bytes.
async fn password(svc: &ComputeService, uuid: &str, write: bool, body: &[u8]) -> MetadataReply {
    if !write {
        let pw = svc
            .state
            .read()
            .instances
            .get(uuid)
            .and_then(|i| i.password.clone())
            .unwrap_or_default();
        return text(pw);
    }
    if body.len() > MAX_PASSWORD {
        return status(400, "Request is too large.");
    }
    let Ok(pw) = std::str::from_utf8(body) else {
        return status(400, "The password must be text.");
    };
    let pw = pw.to_string();
    let r = svc
        .state
        .update_instance(uuid, move |i| {
            if i.password.as_deref().is_some_and(|p| !p.is_empty()) {
                return Err(ferro_common::Error::conflict("Password already set."));
            }
            i.password = Some(pw);
            Ok(())
        })
        .await;
    match r {
        Ok(_) => text(""),
        Err(ferro_common::Error::Conflict { .. }) => status(409, "Conflict"),
        Err(e) => {
            tracing::warn!(instance = uuid, "storing the guest's password: {e}");
            status(500, "Internal Server Error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md() -> InstanceMetadata {
        InstanceMetadata {
            uuid: "u-1".into(),
            name: "vm".into(),
            hostname: "vm".into(),
            ec2_id: "i-0000002a".into(),
            public_keys: vec![("mykey".into(), "ssh-ed25519 AAAA test".into())],
            user_data: Some(b"#!/bin/sh\necho hi\n".to_vec()),
            local_ipv4: Some("10.0.0.5".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_ec2_tree_walks_as_novas() {
        let m = md();
        let body = |r: MetadataReply| (r.status, String::from_utf8(r.body).unwrap());
        assert_eq!(
            body(ec2(&m, &["meta-data", "instance-id"])),
            (200, "i-0000002a".into())
        );
        assert_eq!(
            body(ec2(&m, &["meta-data", "local-ipv4"])),
            (200, "10.0.0.5".into())
        );
        assert_eq!(
            body(ec2(&m, &["meta-data", "public-ipv4"])),
            (200, "".into())
        );
        assert_eq!(
            body(ec2(&m, &["meta-data", "public-keys"])),
            (200, "0=mykey".into())
        );
        assert_eq!(
            body(ec2(&m, &["meta-data", "public-keys", "0", "openssh-key"])),
            (200, "ssh-ed25519 AAAA test".into())
        );
        let (code, list) = body(ec2(&m, &["meta-data"]));
        assert_eq!(code, 200);
        assert!(list.lines().any(|l| l == "placement/"), "{list}");
        assert!(list.lines().any(|l| l == "instance-id"), "{list}");
        assert_eq!(body(ec2(&m, &["meta-data", "nope"])).0, 404);
        assert_eq!(
            body(ec2(&m, &["user-data"])),
            (200, "#!/bin/sh\necho hi\n".into())
        );
        assert_eq!(
            body(openstack(&m, "2012-08-10", &["network_data.json"])).0,
            404,
            "network_data.json came with 2015-10-15"
        );
        let (code, j) = body(openstack(&m, "latest", &["meta_data.json"]));
        assert_eq!(code, 200);
        let v: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["uuid"], "u-1");
        assert_eq!(v["public_keys"]["mykey"], "ssh-ed25519 AAAA test");
    }
}
