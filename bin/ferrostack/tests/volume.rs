//! Block Storage integration tests: the real server in-process with the
//! file backend (qcow2 files under the data directory), driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_test_utils::{Backend, Resp, TestCloud};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

async fn cinder(c: &TestCloud, m: Method, path: &str, tok: &str, body: Value) -> Resp {
    c.request(m, &format!("/volume/v3{path}"), Some(tok), body)
        .await
}

fn have_qemu_img() -> bool {
    std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls until the volume (or snapshot) reaches `want`; `None` waits for 404.
async fn wait(c: &TestCloud, tok: &str, path: &str, key: &str, want: Option<&str>) -> Value {
    let t0 = Instant::now();
    loop {
        let r = cinder(c, Method::GET, path, tok, Value::Null).await;
        match want {
            None if r.status == 404 => return Value::Null,
            Some(w) if r.status == 200 && r.body[key]["status"] == w => return r.body[key].clone(),
            _ => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{path} never reached {want:?}: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Files of the file backend, as `volume-<id>` / `snapshot-<id>` names.
/// The volumes' and snapshots' files of the backend (not its own
/// directories: `.images`, the agent's scratch space, `.exports`).
fn backend_files(c: &TestCloud) -> BTreeSet<String> {
    std::fs::read_dir(c.data_dir().join("volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

async fn create_volume(c: &TestCloud, tok: &str, body: Value) -> String {
    let r = cinder(c, Method::POST, "/volumes", tok, json!({"volume": body})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["volume"]["status"], "creating");
    let id = r.body["volume"]["id"].as_str().unwrap().to_string();
    wait(
        c,
        tok,
        &format!("/volumes/{id}"),
        "volume",
        Some("available"),
    )
    .await;
    id
}

#[tokio::test]
async fn volumes_snapshots_attachments_file_backend() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 0)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    // Discovery.
    let v = c.request(Method::GET, "/volume/", None, Value::Null).await;
    assert_eq!(v.status, 300);
    assert_eq!(v.body["versions"][0]["id"], "v3.0");
    let v = cinder(&c, Method::GET, "/", &tok, Value::Null).await;
    assert_eq!(v.status, 200, "{}", v.body);
    // Validation and 404s.
    for size in [json!(0), json!(-1), json!("abc"), Value::Null] {
        let r = cinder(
            &c,
            Method::POST,
            "/volumes",
            &tok,
            json!({"volume": {"size": size}}),
        )
        .await;
        assert_eq!(r.status, 400, "size {size}: {}", r.body);
    }
    let r = cinder(
        &c,
        Method::POST,
        "/volumes",
        &tok,
        json!({"volume": {"size": 1, "volume_type": "5f3b1fa6-0d5b-4e7c-8d7e-3f5a0c1b2a99"}}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body["itemNotFound"]["message"].is_string());
    let r = cinder(&c, Method::GET, "/volumes/", &tok, Value::Null).await;
    assert_eq!(r.status, 404);
    let r = cinder(&c, Method::GET, "/volumes/nope", &tok, Value::Null).await;
    assert_eq!(r.status, 404);

    // Create, with the project id in the path as older clients send it.
    let v1 = create_volume(
        &c,
        &tok,
        json!({"size": 1, "name": "v1", "metadata": {"a": "b"}}),
    )
    .await;
    let show = cinder(
        &c,
        Method::GET,
        &format!("/volumes/{v1}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(show.body["volume"]["bootable"], "false");
    assert_eq!(show.body["volume"]["volume_type"], "__DEFAULT__");
    assert!(
        show.body["volume"]["os-vol-host-attr:host"]
            .as_str()
            .unwrap()
            .contains('#')
    );
    let project = show.body["volume"]["os-vol-tenant-attr:tenant_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .request(
            Method::GET,
            &format!("/volume/v3/{project}/volumes/detail?name=v1"),
            Some(&tok),
            Value::Null,
        )
        .await;
    assert_eq!(r.body["volumes"].as_array().unwrap().len(), 1, "{}", r.body);
    assert_eq!(r.body["volumes"][0], show.body["volume"]);
    let r = cinder(
        &c,
        Method::GET,
        "/volumes?metadata=%7B%27a%27%3A+%27b%27%7D",
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["volumes"].as_array().unwrap().len(), 1, "{}", r.body);
    assert!(backend_files(&c).contains(&format!("volume-{v1}")));

    // Metadata: POST merges, PUT replaces, items.
    let r = cinder(
        &c,
        Method::POST,
        &format!("/volumes/{v1}/metadata"),
        &tok,
        json!({"metadata": {"c": "d"}}),
    )
    .await;
    assert_eq!(r.body["metadata"], json!({"a": "b", "c": "d"}));
    let r = cinder(
        &c,
        Method::PUT,
        &format!("/volumes/{v1}/metadata"),
        &tok,
        json!({"metadata": {"x": "y"}}),
    )
    .await;
    assert_eq!(r.body["metadata"], json!({"x": "y"}));
    let r = cinder(
        &c,
        Method::PUT,
        &format!("/volumes/{v1}/metadata/k"),
        &tok,
        json!({"meta": {"k": "v"}}),
    )
    .await;
    assert_eq!(r.body, json!({"meta": {"k": "v"}}));
    let r = cinder(
        &c,
        Method::PUT,
        &format!("/volumes/{v1}/metadata/k"),
        &tok,
        json!({"meta": {"j": "v"}}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = cinder(
        &c,
        Method::DELETE,
        &format!("/volumes/{v1}/metadata/k"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200);

    // Snapshot, volume from snapshot (bigger), clone.
    let s = cinder(
        &c,
        Method::POST,
        "/snapshots",
        &tok,
        json!({"snapshot": {"volume_id": v1, "name": "s1"}}),
    )
    .await;
    assert_eq!(s.status, 202, "{}", s.body);
    assert!(
        s.body["snapshot"]
            .get("os-extended-snapshot-attributes:progress")
            .is_none()
    );
    let s1 = s.body["snapshot"]["id"].as_str().unwrap().to_string();
    let snap = wait(
        &c,
        &tok,
        &format!("/snapshots/{s1}"),
        "snapshot",
        Some("available"),
    )
    .await;
    assert_eq!(snap["os-extended-snapshot-attributes:progress"], "100%");
    let r = cinder(
        &c,
        Method::POST,
        "/volumes",
        &tok,
        json!({"volume": {"snapshot_id": s1, "size": 0}}),
    )
    .await;
    assert_eq!(r.status, 400);
    let v2 = create_volume(&c, &tok, json!({"snapshot_id": s1, "size": 2})).await;
    let v3 = create_volume(&c, &tok, json!({"source_volid": v2})).await;
    let show = cinder(
        &c,
        Method::GET,
        &format!("/volumes/{v3}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(show.body["volume"]["size"], 2);
    assert_eq!(show.body["volume"]["source_volid"], v2.as_str());

    // Extend.
    let r = cinder(
        &c,
        Method::POST,
        &format!("/volumes/{v3}/action"),
        &tok,
        json!({"os-extend": {"new_size": 1}}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = cinder(
        &c,
        Method::POST,
        &format!("/volumes/{v3}/action"),
        &tok,
        json!({"os-extend": {"new_size": 3}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.is_null(), "actions answer with no body");
    let v = wait(
        &c,
        &tok,
        &format!("/volumes/{v3}"),
        "volume",
        Some("available"),
    )
    .await;
    assert_eq!(v["size"], 3);

    // Legacy attach flow and its guards.
    let act = |verb: &str, arg: Value| json!({ verb: arg });
    let path = format!("/volumes/{v2}/action");
    let r = cinder(&c, Method::POST, &path, &tok, act("os-reserve", json!({}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = cinder(&c, Method::POST, &path, &tok, act("os-reserve", json!({}))).await;
    assert_eq!(r.status, 400, "reserving twice");
    let r = cinder(
        &c,
        Method::POST,
        &path,
        &tok,
        act("os-unreserve", json!({})),
    )
    .await;
    assert_eq!(r.status, 202);
    let server = "0b7b6f5e-8a4c-4d0e-9c3b-2f1e0d9c8b7a";
    let r = cinder(
        &c,
        Method::POST,
        &path,
        &tok,
        act(
            "os-attach",
            json!({"instance_uuid": server, "mountpoint": "/dev/vdb"}),
        ),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let v = wait(
        &c,
        &tok,
        &format!("/volumes/{v2}"),
        "volume",
        Some("in-use"),
    )
    .await;
    assert_eq!(v["attachments"][0]["server_id"], server);
    assert_eq!(v["attachments"][0]["device"], "/dev/vdb");
    assert_eq!(v["attachments"][0]["id"], v2.as_str());
    let r = cinder(
        &c,
        Method::DELETE,
        &format!("/volumes/{v2}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 400, "an attached volume is not deleted");
    let r = cinder(&c, Method::POST, &path, &tok, act("os-detach", json!({}))).await;
    assert_eq!(r.status, 202);
    wait(
        &c,
        &tok,
        &format!("/volumes/{v2}"),
        "volume",
        Some("available"),
    )
    .await;

    // The attachments API (3.27+), as Nova drives it.
    let mv = [("OpenStack-API-Version", "volume 3.2")];
    let r = c
        .request_h(
            Method::GET,
            "/volume/v3/attachments",
            Some(&tok),
            Value::Null,
            &mv,
        )
        .await;
    assert_eq!(r.status, 404, "attachments need 3.27");
    assert_eq!(
        r.header("openstack-api-version").as_deref(),
        Some("volume 3.2")
    );
    let r = c
        .request_h(
            Method::GET,
            "/volume/v3/volumes",
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "volume 3.99")],
        )
        .await;
    assert_eq!(r.status, 406);

    // A type the backend cannot serve: the volume fails scheduling and the
    // project gets a user message (3.3).
    let t = cinder(
        &c,
        Method::POST,
        "/types",
        &tok,
        json!({"volume_type": {"name": "fast", "extra_specs": {"storage_protocol": "nvmeof"}}}),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let r = cinder(
        &c,
        Method::POST,
        "/volumes",
        &tok,
        json!({"volume": {"size": 1, "volume_type": "fast"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let bad = r.body["volume"]["id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/volumes/{bad}"),
        "volume",
        Some("error"),
    )
    .await;
    let m = c
        .request_h(
            Method::GET,
            "/volume/v3/messages",
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "volume 3.3")],
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    let msg = m.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resource_uuid"] == bad.as_str())
        .expect("a message about the volume")
        .clone();
    assert!(
        msg["user_message"]
            .as_str()
            .unwrap()
            .contains("weighted backend"),
        "{msg}"
    );
    let r = c
        .request_h(
            Method::DELETE,
            &format!("/volume/v3/messages/{}", msg["id"].as_str().unwrap()),
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "volume 3.3")],
        )
        .await;
    assert_eq!(r.status, 204);
    let r = cinder(
        &c,
        Method::DELETE,
        &format!("/volumes/{bad}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait(&c, &tok, &format!("/volumes/{bad}"), "volume", None).await;

    // Delete: refused with snapshots unless cascade; files follow the records.
    let r = cinder(
        &c,
        Method::DELETE,
        &format!("/volumes/{v1}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = cinder(
        &c,
        Method::DELETE,
        &format!("/volumes/{v1}?cascade=true"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait(&c, &tok, &format!("/volumes/{v1}"), "volume", None).await;
    wait(&c, &tok, &format!("/snapshots/{s1}"), "snapshot", None).await;
    let want: BTreeSet<String> = [format!("volume-{v2}"), format!("volume-{v3}")].into();
    assert_eq!(backend_files(&c), want);

    // Quotas: 413 past the limit; usage counts volumes and snapshots.
    let r = cinder(
        &c,
        Method::PUT,
        &format!("/os-quota-sets/{project}"),
        &tok,
        json!({"quota_set": {"volumes": 2}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = cinder(
        &c,
        Method::POST,
        "/volumes",
        &tok,
        json!({"volume": {"size": 1}}),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    let r = cinder(
        &c,
        Method::GET,
        &format!("/os-quota-sets/{project}?usage=True"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["quota_set"]["volumes"]["in_use"], 2);
    assert_eq!(r.body["quota_set"]["gigabytes"]["in_use"], 5);
    let r = cinder(&c, Method::GET, "/limits", &tok, Value::Null).await;
    assert_eq!(r.body["limits"]["absolute"]["totalVolumesUsed"], 2);

    for id in [&v2, &v3] {
        let r = cinder(
            &c,
            Method::DELETE,
            &format!("/volumes/{id}"),
            &tok,
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 202);
        wait(&c, &tok, &format!("/volumes/{id}"), "volume", None).await;
    }
    assert!(backend_files(&c).is_empty());
    c.stop().await;
}

/// A failure injected at each step of create leaves the volume in `error`
/// and no file behind.
#[tokio::test]
async fn create_failures_leave_error_and_no_file() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    for step in ["create.schedule", "create.backend", "create.finish"] {
        let spec = format!("{step}:fail");
        let c = TestCloud::start_with(Backend::Sqlite, move |cfg| {
            cfg.compute.fake_hosts = 0;
            cfg.volume.fault_injection = Some(spec.clone());
        })
        .await
        .unwrap()
        .unwrap();
        let tok = c.admin_token().await;
        let r = cinder(
            &c,
            Method::POST,
            "/volumes",
            &tok,
            json!({"volume": {"size": 1}}),
        )
        .await;
        assert_eq!(r.status, 202);
        let id = r.body["volume"]["id"].as_str().unwrap().to_string();
        wait(&c, &tok, &format!("/volumes/{id}"), "volume", Some("error")).await;
        assert!(
            backend_files(&c).is_empty(),
            "{step}: {:?}",
            backend_files(&c)
        );
        // An errored volume deletes cleanly.
        let r = cinder(
            &c,
            Method::DELETE,
            &format!("/volumes/{id}"),
            &tok,
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
        wait(&c, &tok, &format!("/volumes/{id}"), "volume", None).await;
        c.stop().await;
    }
}

async fn nova(c: &TestCloud, m: Method, path: &str, tok: &str, body: Value) -> Resp {
    c.request_h(
        m,
        &format!("/compute/v2.1{path}"),
        Some(tok),
        body,
        &[("OpenStack-API-Version", "compute 2.79")],
    )
    .await
}

/// A public raw image with bytes, as a boot source.
async fn image(c: &TestCloud, tok: &str) -> String {
    let r = c
        .request(Method::POST, "/image/v2/images", Some(tok),
            json!({"name": "cirros", "disk_format": "raw", "container_format": "bare", "visibility": "public"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let up = c
        .client
        .put(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", tok)
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 65536])
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 204);
    id
}

async fn server_status(c: &TestCloud, tok: &str, id: &str, want: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let r = nova(c, Method::GET, &format!("/servers/{id}"), tok, Value::Null).await;
        if want == "DELETED" && r.status == 404 {
            return Value::Null;
        }
        if r.body["server"]["status"] == want {
            return r.body["server"].clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "server {id}: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn boot(c: &TestCloud, tok: &str, server: Value) -> String {
    let t0 = Instant::now();
    loop {
        let r = nova(
            c,
            Method::POST,
            "/servers",
            tok,
            json!({"server": server.clone()}),
        )
        .await;
        if r.status == 202 {
            let id = r.body["server"]["id"].as_str().unwrap().to_string();
            let s = server_status(c, tok, &id, "ACTIVE").await;
            assert_eq!(s["status"], "ACTIVE");
            return id;
        }
        // Hosts report in a moment after start.
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Nova's os-volume_attachments drives the attach and detach workflows;
/// boot from volume creates, attaches and (delete_on_termination) deletes
/// the root volume; an injected failure at each attach step leaves the
/// volume available with no attachment.
#[tokio::test]
async fn nova_attach_detach_and_boot_from_volume() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 1)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let img = image(&c, &tok).await;
    let srv = boot(
        &c,
        &tok,
        json!({"name": "s1", "imageRef": img, "flavorRef": "1", "networks": "none"}),
    )
    .await;
    let v1 = create_volume(&c, &tok, json!({"size": 1, "name": "data"})).await;

    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{srv}/os-volume_attachments"),
        &tok,
        json!({"volumeAttachment": {"volumeId": v1}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["volumeAttachment"]["device"], "/dev/vdb");
    assert_eq!(r.body["volumeAttachment"]["delete_on_termination"], false);
    let v = wait(
        &c,
        &tok,
        &format!("/volumes/{v1}"),
        "volume",
        Some("in-use"),
    )
    .await;
    assert_eq!(v["attachments"][0]["server_id"], srv.as_str());
    assert_eq!(v["attachments"][0]["device"], "/dev/vdb");
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers/{srv}/os-volume_attachments"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["volumeAttachments"].as_array().unwrap().len(), 1);
    // Bug #2004555: what Compute holds is detached only through Compute;
    // a user's (or an admin's) call to Block Storage is refused with 409.
    let att_id = v["attachments"][0]["attachment_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (path, body) in [
        ("os-detach", json!({"os-detach": {}})),
        ("os-detach", json!({"os-detach": {"attachment_id": att_id}})),
        (
            "os-terminate_connection",
            json!({"os-terminate_connection": {"connector": {}}}),
        ),
        (
            "os-force_detach",
            json!({"os-force_detach": {"attachment_id": att_id}}),
        ),
    ] {
        let r = cinder(
            &c,
            Method::POST,
            &format!("/volumes/{v1}/action"),
            &tok,
            body,
        )
        .await;
        assert_eq!(r.status, 409, "{path}: {}", r.body);
        assert_eq!(
            r.body["conflictingRequest"]["message"],
            format!("Detach volume from instance {srv} using the Compute API")
        );
    }
    let r = c
        .request_h(
            Method::DELETE,
            &format!("/volume/v3/attachments/{att_id}"),
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "volume 3.27")],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // A snapshot of the in-use volume (force): its server's host copies it
    // (the hypervisor holds the file open), into the backend's snapshot file.
    let vol_file = c.data_dir().join("volumes").join(format!("volume-{v1}"));
    let fmt = String::from_utf8(
        std::process::Command::new("qemu-img")
            .args(["info", "-U", "--output=json"])
            .arg(&vol_file)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let fmt: Value = serde_json::from_str(&fmt).unwrap();
    let fmt = fmt["format"].as_str().unwrap().to_string();
    assert!(
        std::process::Command::new("qemu-io")
            .args(["-f", &fmt, "-c", "write -P 0x5a 0 64k"])
            .arg(&vol_file)
            .output()
            .unwrap()
            .status
            .success()
    );
    let r = cinder(
        &c,
        Method::POST,
        "/snapshots",
        &tok,
        json!({"snapshot": {"volume_id": v1, "force": true, "name": "hot"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let snap = r.body["snapshot"]["id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/snapshots/{snap}"),
        "snapshot",
        Some("available"),
    )
    .await;
    let same = std::process::Command::new("qemu-img")
        .args(["compare", "-U", "-f", &fmt, "-F", &fmt])
        .arg(&vol_file)
        .arg(
            c.data_dir()
                .join("volumes")
                .join(format!("snapshot-{snap}")),
        )
        .output()
        .unwrap();
    assert!(
        same.status.success(),
        "the host's copy is the snapshot: {}",
        String::from_utf8_lossy(&same.stdout)
    );
    let r = cinder(
        &c,
        Method::DELETE,
        &format!("/snapshots/{snap}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait(&c, &tok, &format!("/snapshots/{snap}"), "snapshot", None).await;
    // Assisted snapshots of the attached volume: Nova casts them to the
    // host and answers at once (200 with the snapshot, 204 for the delete).
    let r = nova(
        &c,
        Method::POST,
        "/os-assisted-volume-snapshots",
        &tok,
        json!({"snapshot": {"volume_id": v1, "create_info": {
            "snapshot_id": "5c1f0d6e-0000-4000-8000-00000000000a", "type": "qcow2",
            "new_file": "new_file"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["snapshot"]["volumeId"], v1.as_str());
    let info = format!("{{\"volume_id\": \"{v1}\", \"type\": \"qcow2\"}}");
    let r = nova(
        &c,
        Method::DELETE,
        &format!(
            "/os-assisted-volume-snapshots/5c1f0d6e-0000-4000-8000-00000000000a?delete_info={}",
            info.replace('"', "%22").replace(' ', "%20")
        ),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let s = nova(
        &c,
        Method::GET,
        &format!("/servers/{srv}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(
        s.body["server"]["os-extended-volumes:volumes_attached"][0]["id"],
        v1.as_str()
    );
    // Extending in use (3.42) grows the volume and tells the guest: an
    // `extend_volume` action whose `compute_extend_volume` event succeeds.
    let r = c
        .request_h(
            Method::POST,
            &format!("/volume/v3/volumes/{v1}/action"),
            Some(&tok),
            json!({"os-extend": {"new_size": 2}}),
            &[("OpenStack-API-Version", "volume 3.42")],
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let t0 = Instant::now();
    loop {
        let v = wait(
            &c,
            &tok,
            &format!("/volumes/{v1}"),
            "volume",
            Some("in-use"),
        )
        .await;
        let acts = nova(
            &c,
            Method::GET,
            &format!("/servers/{srv}/os-instance-actions"),
            &tok,
            Value::Null,
        )
        .await;
        let ext = acts.body["instanceActions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["action"] == "extend_volume")
            .cloned();
        if let (2, Some(a)) = (v["size"].as_i64().unwrap_or(0), ext) {
            let rid = a["request_id"].as_str().unwrap();
            let one = nova(
                &c,
                Method::GET,
                &format!("/servers/{srv}/os-instance-actions/{rid}"),
                &tok,
                Value::Null,
            )
            .await;
            let ev = &one.body["instanceAction"]["events"][0];
            if ev["finish_time"].is_string() {
                assert_eq!(ev["event"], "compute_extend_volume", "{}", one.body);
                assert_eq!(ev["result"], "Success", "{}", one.body);
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no extend_volume action: {}",
            acts.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Attaching twice is refused; so is a volume in use elsewhere.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{srv}/os-volume_attachments"),
        &tok,
        json!({"volumeAttachment": {"volumeId": v1}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{srv}/os-volume_attachments/{v1}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait(
        &c,
        &tok,
        &format!("/volumes/{v1}"),
        "volume",
        Some("available"),
    )
    .await;
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers/{srv}/os-volume_attachments/{v1}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 404);

    // Boot from volume: the root volume is made from the image and goes with the server.
    let bfv = boot(
        &c,
        &tok,
        json!({"name": "bfv", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [{"boot_index": 0, "uuid": img, "source_type": "image",
            "destination_type": "volume", "volume_size": 1, "delete_on_termination": true}]}),
    )
    .await;
    let s = nova(
        &c,
        Method::GET,
        &format!("/servers/{bfv}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(s.body["server"]["image"], "");
    let root = s.body["server"]["os-extended-volumes:volumes_attached"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = wait(
        &c,
        &tok,
        &format!("/volumes/{root}"),
        "volume",
        Some("in-use"),
    )
    .await;
    assert_eq!(v["bootable"], "true");
    assert_eq!(v["attachments"][0]["device"], "/dev/vda");
    // Rebuild of a volume-backed server: another image only from 2.93,
    // where the root volume is re-imaged in Block Storage.
    let img2 = {
        let r = c
            .request(
                Method::POST,
                "/image/v2/images",
                Some(&tok),
                json!({"name": "other", "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        let id = r.body["id"].as_str().unwrap().to_string();
        let up = c
            .client
            .put(format!("{}/image/v2/images/{id}/file", c.url))
            .header("X-Auth-Token", &tok)
            .header("Content-Type", "application/octet-stream")
            .body(vec![0x5au8; 65536])
            .send()
            .await
            .unwrap();
        assert_eq!(up.status(), 204);
        id
    };
    let rebuild = |mv: &'static str, image: String| {
        let (c, tok, path) = (
            &c,
            tok.clone(),
            format!("/compute/v2.1/servers/{bfv}/action"),
        );
        async move {
            c.request_h(
                Method::POST,
                &path,
                Some(&tok),
                json!({"rebuild": {"imageRef": image, "name": "bfv2"}}),
                &[("OpenStack-API-Version", &format!("compute {mv}"))],
            )
            .await
        }
    };
    let r = rebuild("2.92", img2.clone()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("Unable to rebuild with a different image"),
        "{}",
        r.body
    );
    let r = rebuild("2.93", img2.clone()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["server"]["image"], "");
    let s = server_status(&c, &tok, &bfv, "ACTIVE").await;
    assert_eq!(s["name"], "bfv2");
    assert_eq!(
        s["os-extended-volumes:volumes_attached"][0]["id"],
        root.as_str()
    );
    let v = wait(
        &c,
        &tok,
        &format!("/volumes/{root}"),
        "volume",
        Some("in-use"),
    )
    .await;
    assert_eq!(v["volume_image_metadata"]["image_id"], img2.as_str(), "{v}");
    let raw = c.data_dir().join("rebuilt.raw");
    let conv = std::process::Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(c.data_dir().join("volumes").join(format!("volume-{root}")))
        .arg(&raw)
        .status()
        .unwrap();
    assert!(conv.success());
    let head = std::fs::read(&raw).unwrap();
    let _ = std::fs::remove_file(&raw);
    assert!(
        head[..65536].iter().all(|b| *b == 0x5a),
        "the volume holds the new image"
    );
    let r = c
        .request_h(
            Method::GET,
            "/volume/v3/attachments",
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "volume 3.27")],
        )
        .await;
    let live: Vec<&Value> = r.body["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["volume_id"] == root.as_str())
        .collect();
    assert_eq!(live.len(), 1, "one attachment after the swap: {}", r.body);
    // createImage of a volume-backed server (Nova's snapshot_volume_backed):
    // a forced snapshot of its volume and an active, empty image carrying
    // the mapping; createBackup is refused.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{bfv}/action"),
        &tok,
        json!({"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{bfv}/action"),
        &tok,
        json!({"createImage": {"name": "bfv-snap"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let snap_img = r.body["image_id"].as_str().unwrap().to_string();
    let im = c
        .request(
            Method::GET,
            &format!("/image/v2/images/{snap_img}"),
            Some(&tok),
            Value::Null,
        )
        .await;
    assert_eq!(im.body["status"], "active", "{}", im.body);
    assert_eq!(im.body["size"], 0);
    assert_eq!(im.body["bdm_v2"], "True");
    let bdm: Value =
        serde_json::from_str(im.body["block_device_mapping"].as_str().unwrap()).unwrap();
    assert_eq!(bdm[0]["source_type"], "snapshot", "{bdm}");
    assert_eq!(bdm[0]["boot_index"], 0);
    let vsnap = bdm[0]["snapshot_id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/snapshots/{vsnap}"),
        "snapshot",
        Some("available"),
    )
    .await;
    // A server from that image boots from a new volume made from the snapshot.
    let from_img = boot(
        &c,
        &tok,
        json!({"name": "from-snap", "imageRef": snap_img, "flavorRef": "1", "networks": "none"}),
    )
    .await;
    let s = nova(
        &c,
        Method::GET,
        &format!("/servers/{from_img}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(s.body["server"]["image"], "", "volume-backed: {}", s.body);
    let root2 = s.body["server"]["os-extended-volumes:volumes_attached"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = wait(
        &c,
        &tok,
        &format!("/volumes/{root2}"),
        "volume",
        Some("in-use"),
    )
    .await;
    assert_eq!(v["snapshot_id"], vsnap.as_str());
    // Shelving a volume-backed server offloads it at once, with no image.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{from_img}/action"),
        &tok,
        json!({"shelve": null}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    server_status(&c, &tok, &from_img, "SHELVED_OFFLOADED").await;
    let imgs = c
        .request(
            Method::GET,
            "/image/v2/images?name=from-snap-shelved",
            Some(&tok),
            Value::Null,
        )
        .await;
    assert_eq!(
        imgs.body["images"].as_array().unwrap().len(),
        0,
        "{}",
        imgs.body
    );
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{from_img}/action"),
        &tok,
        json!({"unshelve": null}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    server_status(&c, &tok, &from_img, "ACTIVE").await;
    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{from_img}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204);
    server_status(&c, &tok, &from_img, "DELETED").await;
    wait(&c, &tok, &format!("/volumes/{root2}"), "volume", None).await;
    let r = c
        .request(
            Method::DELETE,
            &format!("/image/v2/images/{snap_img}"),
            Some(&tok),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = cinder(
        &c,
        Method::DELETE,
        &format!("/snapshots/{vsnap}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait(&c, &tok, &format!("/snapshots/{vsnap}"), "snapshot", None).await;
    // Boot from an existing volume, kept after the server.
    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{bfv}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204);
    server_status(&c, &tok, &bfv, "DELETED").await;
    wait(&c, &tok, &format!("/volumes/{root}"), "volume", None).await;
    let kept = boot(
        &c,
        &tok,
        json!({"name": "bfv2", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [{"boot_index": 0, "uuid": v1, "source_type": "volume",
            "destination_type": "volume"}]}),
    )
    .await;
    wait(
        &c,
        &tok,
        &format!("/volumes/{v1}"),
        "volume",
        Some("in-use"),
    )
    .await;
    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{kept}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204);
    server_status(&c, &tok, &kept, "DELETED").await;
    wait(
        &c,
        &tok,
        &format!("/volumes/{v1}"),
        "volume",
        Some("available"),
    )
    .await;
    let want: BTreeSet<String> = [format!("volume-{v1}")].into();
    assert_eq!(backend_files(&c), want);
    c.stop().await;

    // A failure at each attach step: the volume ends available, unattached.
    for step in [
        "attach_reserve",
        "attach_connect",
        "attach_plug",
        "attach_complete",
    ] {
        let spec = format!("{step}:fail");
        let c = TestCloud::start_with(Backend::Sqlite, move |cfg| {
            cfg.compute.fake_hosts = 1;
            cfg.compute.fault_injection = Some(spec.clone());
        })
        .await
        .unwrap()
        .unwrap();
        let tok = c.admin_token().await;
        let img = image(&c, &tok).await;
        let srv = boot(
            &c,
            &tok,
            json!({"name": "s", "imageRef": img, "flavorRef": "1", "networks": "none"}),
        )
        .await;
        let v = create_volume(&c, &tok, json!({"size": 1})).await;
        let r = nova(
            &c,
            Method::POST,
            &format!("/servers/{srv}/os-volume_attachments"),
            &tok,
            json!({"volumeAttachment": {"volumeId": v}}),
        )
        .await;
        assert!(
            r.status.is_server_error(),
            "{step}: {} {}",
            r.status,
            r.body
        );
        let show = cinder(&c, Method::GET, &format!("/volumes/{v}"), &tok, Value::Null).await;
        assert_eq!(show.body["volume"]["status"], "available", "{step}");
        assert_eq!(show.body["volume"]["attachments"], json!([]), "{step}");
        let a = nova(
            &c,
            Method::GET,
            &format!("/servers/{srv}/os-volume_attachments"),
            &tok,
            Value::Null,
        )
        .await;
        assert_eq!(a.body["volumeAttachments"], json!([]), "{step}");
        c.stop().await;
    }
}

/// A failure injected at each step of detach leaves the volume in-use and
/// attached (Nova rolls the detach back), and at each step of create from
/// an image leaves it in `error` with no volume file and no scratch file.
#[tokio::test]
async fn detach_and_create_from_image_failures() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    for step in ["detach_begin", "detach_unplug", "detach_release"] {
        let spec = format!("{step}:fail");
        let c = TestCloud::start_with(Backend::Sqlite, move |cfg| {
            cfg.compute.fake_hosts = 1;
            cfg.compute.fault_injection = Some(spec.clone());
        })
        .await
        .unwrap()
        .unwrap();
        let tok = c.admin_token().await;
        let img = image(&c, &tok).await;
        let srv = boot(
            &c,
            &tok,
            json!({"name": "s", "imageRef": img, "flavorRef": "1", "networks": "none"}),
        )
        .await;
        let v = create_volume(&c, &tok, json!({"size": 1})).await;
        let r = nova(
            &c,
            Method::POST,
            &format!("/servers/{srv}/os-volume_attachments"),
            &tok,
            json!({"volumeAttachment": {"volumeId": v}}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = nova(
            &c,
            Method::DELETE,
            &format!("/servers/{srv}/os-volume_attachments/{v}"),
            &tok,
            Value::Null,
        )
        .await;
        assert!(
            r.status.is_server_error(),
            "{step}: {} {}",
            r.status,
            r.body
        );
        let show = cinder(&c, Method::GET, &format!("/volumes/{v}"), &tok, Value::Null).await;
        assert_eq!(show.body["volume"]["status"], "in-use", "{step}");
        assert_eq!(
            show.body["volume"]["attachments"][0]["server_id"],
            srv.as_str(),
            "{step}"
        );
        let a = nova(
            &c,
            Method::GET,
            &format!("/servers/{srv}/os-volume_attachments"),
            &tok,
            Value::Null,
        )
        .await;
        assert_eq!(
            a.body["volumeAttachments"].as_array().unwrap().len(),
            1,
            "{step}"
        );
        c.stop().await;
    }
    for step in [
        "create.schedule",
        "create.fetch_image",
        "create.backend",
        "create.finish",
    ] {
        let spec = format!("{step}:fail");
        let c = TestCloud::start_with(Backend::Sqlite, move |cfg| {
            cfg.compute.fake_hosts = 0;
            cfg.volume.fault_injection = Some(spec.clone());
        })
        .await
        .unwrap()
        .unwrap();
        let tok = c.admin_token().await;
        let img = image(&c, &tok).await;
        let r = cinder(
            &c,
            Method::POST,
            "/volumes",
            &tok,
            json!({"volume": {"size": 1, "imageRef": img}}),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
        let id = r.body["volume"]["id"].as_str().unwrap().to_string();
        wait(&c, &tok, &format!("/volumes/{id}"), "volume", Some("error")).await;
        assert!(
            backend_files(&c).is_empty(),
            "{step}: {:?}",
            backend_files(&c)
        );
        // The volume agent's scratch file of the image went with the request.
        let scratch: Vec<_> = std::fs::read_dir(c.data_dir().join("volumes/.images"))
            .map(|rd| rd.flatten().collect())
            .unwrap_or_default();
        assert!(scratch.is_empty(), "{step}: scratch files left");
        c.stop().await;
    }
    // Without a failure, the same request makes a bootable volume holding the image.
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 0)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let img = image(&c, &tok).await;
    let id = create_volume(&c, &tok, json!({"size": 1, "imageRef": img})).await;
    let v = cinder(
        &c,
        Method::GET,
        &format!("/volumes/{id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(v.body["volume"]["bootable"], "true");
    assert_eq!(
        v.body["volume"]["volume_image_metadata"]["image_id"],
        img.as_str()
    );
    assert_eq!(backend_files(&c), [format!("volume-{id}")].into());
    c.stop().await;
}

/// Groups (3.13+): a group of a type's volumes, a group snapshot of all of
/// them, a group made from it, and deletion with the volumes.
#[tokio::test]
async fn groups_and_group_snapshots() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 0)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let mv = [("OpenStack-API-Version", "volume 3.27")];
    let call = |m: Method, p: String, b: Value| {
        let c = &c;
        let tok = tok.clone();
        async move {
            c.request_h(m, &format!("/volume/v3{p}"), Some(&tok), b, &mv)
                .await
        }
    };
    let r = call(Method::GET, "/volumes".into(), Value::Null).await;
    assert_eq!(
        r.header("openstack-api-version").as_deref(),
        Some("volume 3.27")
    );
    let gt = call(
        Method::POST,
        "/group_types".into(),
        json!({"group_type": {"name": "gt1"}}),
    )
    .await;
    assert_eq!(gt.status, 202, "{}", gt.body);
    let gt = gt.body["group_type"]["id"].as_str().unwrap().to_string();
    let vt = call(Method::GET, "/types/default".into(), Value::Null).await;
    let vt = vt.body["volume_type"]["id"].as_str().unwrap().to_string();
    let g = call(
        Method::POST,
        "/groups".into(),
        json!({"group": {"name": "g1", "group_type": gt, "volume_types": [vt]}}),
    )
    .await;
    assert_eq!(g.status, 202, "{}", g.body);
    let g = g.body["group"]["id"].as_str().unwrap().to_string();
    let mut vols = Vec::new();
    for n in 0..2 {
        let r = call(Method::POST, "/volumes".into(),
            json!({"volume": {"size": 1, "name": format!("m{n}"), "group_id": g, "volume_type": vt}})).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let id = r.body["volume"]["id"].as_str().unwrap().to_string();
        wait(
            &c,
            &tok,
            &format!("/volumes/{id}"),
            "volume",
            Some("available"),
        )
        .await;
        vols.push(id);
    }
    // A member is deleted with its group, not alone.
    let r = cinder(
        &c,
        Method::DELETE,
        &format!("/volumes/{}", vols[0]),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        Method::GET,
        format!("/volumes/detail?group_id={g}"),
        Value::Null,
    )
    .await;
    assert_eq!(r.body["volumes"].as_array().unwrap().len(), 2);
    // Group snapshot: one snapshot per member.
    let gs = call(
        Method::POST,
        "/group_snapshots".into(),
        json!({"group_snapshot": {"group_id": g, "name": "gs1"}}),
    )
    .await;
    assert_eq!(gs.status, 202, "{}", gs.body);
    let gs = gs.body["group_snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = Instant::now();
    loop {
        let r = call(Method::GET, format!("/group_snapshots/{gs}"), Value::Null).await;
        if r.body["group_snapshot"]["status"] == "available" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snaps = call(Method::GET, "/snapshots/detail".into(), Value::Null).await;
    assert_eq!(
        snaps.body["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["group_snapshot_id"] == gs.as_str())
            .count(),
        2
    );
    // A new group from the snapshot.
    let g2 = call(
        Method::POST,
        "/groups/action".into(),
        json!({"create-from-src": {"group_snapshot_id": gs, "name": "g2"}}),
    )
    .await;
    assert_eq!(g2.status, 202, "{}", g2.body);
    let g2 = g2.body["group"]["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    loop {
        let r = call(
            Method::GET,
            format!("/groups/{g2}?list_volume=True"),
            Value::Null,
        )
        .await;
        if r.body["group"]["status"] == "available" {
            assert_eq!(r.body["group"]["volumes"].as_array().unwrap().len(), 2);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Tear down: group snapshot, then both groups with their volumes.
    let r = call(
        Method::DELETE,
        format!("/group_snapshots/{gs}"),
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let t0 = Instant::now();
    while call(Method::GET, format!("/group_snapshots/{gs}"), Value::Null)
        .await
        .status
        != 404
    {
        assert!(t0.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for grp in [&g, &g2] {
        let r = call(
            Method::POST,
            format!("/groups/{grp}/action"),
            json!({"delete": {"delete-volumes": true}}),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
        let t0 = Instant::now();
        while call(Method::GET, format!("/groups/{grp}"), Value::Null)
            .await
            .status
            != 404
        {
            assert!(t0.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(backend_files(&c).is_empty(), "{:?}", backend_files(&c));
    // Metadata ETags (3.15): a stale If-Match is refused.
    let v = create_volume(&c, &tok, json!({"size": 1})).await;
    let r = call(Method::GET, format!("/volumes/{v}/metadata"), Value::Null).await;
    let tag = r.header("etag").expect("an ETag");
    let r = c
        .request_h(
            Method::PUT,
            &format!("/volume/v3/volumes/{v}/metadata"),
            Some(&tok),
            json!({"metadata": {"a": "1"}}),
            &[mv[0], ("If-Match", tag.as_str())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c
        .request_h(
            Method::PUT,
            &format!("/volume/v3/volumes/{v}/metadata"),
            Some(&tok),
            json!({"metadata": {"a": "2"}}),
            &[mv[0], ("If-Match", tag.as_str())],
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.body);
    c.stop().await;
}

/// The scheduler refuses what the backend's capacity cannot hold (thin
/// volumes count their full size); freed space is usable again.
#[tokio::test]
async fn scheduler_honours_capacity() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.compute.fake_hosts = 0;
        cfg.volume.capacity_gb = 3;
    })
    .await
    .unwrap()
    .unwrap();
    let tok = c.admin_token().await;
    let a = create_volume(&c, &tok, json!({"size": 2})).await;
    let r = cinder(
        &c,
        Method::POST,
        "/volumes",
        &tok,
        json!({"volume": {"size": 2}}),
    )
    .await;
    assert_eq!(r.status, 202);
    let b = r.body["volume"]["id"].as_str().unwrap().to_string();
    wait(&c, &tok, &format!("/volumes/{b}"), "volume", Some("error")).await;
    let p = cinder(
        &c,
        Method::GET,
        "/scheduler-stats/get_pools?detail=True",
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(p.body["pools"][0]["capabilities"]["total_capacity_gb"], 3.0);
    for id in [&a, &b] {
        let r = cinder(
            &c,
            Method::DELETE,
            &format!("/volumes/{id}"),
            &tok,
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
        wait(&c, &tok, &format!("/volumes/{id}"), "volume", None).await;
    }
    create_volume(&c, &tok, json!({"size": 3})).await;
    c.stop().await;
}

/// Upload to image: the volume's content becomes an active image in the
/// Image service (streamed), and the volume is available again.
#[tokio::test]
async fn upload_to_image() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 0)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let v = create_volume(&c, &tok, json!({"size": 1})).await;
    let r = cinder(
        &c,
        Method::POST,
        &format!("/volumes/{v}/action"),
        &tok,
        json!({"os-volume_upload_image": {"image_name": "from-volume", "disk_format": "qcow2"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let img = r.body["os-volume_upload_image"]["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait(
        &c,
        &tok,
        &format!("/volumes/{v}"),
        "volume",
        Some("available"),
    )
    .await;
    let t0 = Instant::now();
    loop {
        let i = c
            .request(
                Method::GET,
                &format!("/image/v2/images/{img}"),
                Some(&tok),
                Value::Null,
            )
            .await;
        if i.body["status"] == "active" {
            assert_eq!(i.body["disk_format"], "qcow2");
            assert!(i.body["size"].as_u64().unwrap() > 0);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", i.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.stop().await;
}

/// Microversions above 3.27, each checked where it changes behaviour.
#[tokio::test]
async fn microversions_up_to_3_71() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 0)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let call = |m: Method, p: String, mv: &'static str, b: Value| {
        let c = &c;
        let tok = tok.clone();
        async move {
            c.request_h(
                m,
                &format!("/volume/v3{p}"),
                Some(&tok),
                b,
                &[("OpenStack-API-Version", mv)],
            )
            .await
        }
    };
    // Negotiation: latest is 3.71, 3.72 is refused.
    let r = call(Method::GET, "/volumes".into(), "volume latest", Value::Null).await;
    assert_eq!(
        r.header("openstack-api-version").as_deref(),
        Some("volume 3.71")
    );
    let r = call(Method::GET, "/volumes".into(), "volume 3.72", Value::Null).await;
    assert_eq!(r.status, 406, "{}", r.body);
    let r = c
        .request(Method::GET, "/volume/v3/", None, Value::Null)
        .await;
    assert_eq!(r.body["versions"][0]["version"], "3.71", "{}", r.body);

    // 3.53: unknown keys in a create, and an update with nothing to change.
    let r = call(
        Method::POST,
        "/volumes".into(),
        "volume 3.53",
        json!({"volume": {"size": 1, "user_id": "x"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        Method::POST,
        "/volumes".into(),
        "volume 3.52",
        json!({"volume": {"size": 1, "user_id": "x", "name": "lax"}}),
    )
    .await;
    assert_eq!(r.status, 202, "before 3.53 unknown keys pass: {}", r.body);
    let lax = r.body["volume"]["id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/volumes/{lax}"),
        "volume",
        Some("available"),
    )
    .await;
    let r = call(
        Method::PUT,
        format!("/volumes/{lax}"),
        "volume 3.53",
        json!({"volume": {}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // The multiattach parameter is gone: a multiattach type gives it.
    let r = call(
        Method::POST,
        "/volumes".into(),
        "volume 3.50",
        json!({"volume": {"size": 1, "multiattach": true}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        Method::POST,
        "/types".into(),
        "volume 3.50",
        json!({"volume_type": {"name": "multi", "extra_specs": {"multiattach": "<is> True"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let multi_type = r.body["volume_type"]["id"].as_str().unwrap().to_string();
    let r = call(
        Method::POST,
        "/volumes".into(),
        "volume 3.50",
        json!({"volume": {"size": 1, "volume_type": "multi"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["volume"]["multiattach"], true, "{}", r.body);
    let multi = r.body["volume"]["id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/volumes/{multi}"),
        "volume",
        Some("available"),
    )
    .await;
    // 3.48/3.63/3.65/3.69 fields.
    let r = call(
        Method::GET,
        format!("/volumes/{multi}"),
        "volume 3.71",
        Value::Null,
    )
    .await;
    let v = &r.body["volume"];
    assert_eq!(v["volume_type_id"], multi_type.as_str(), "{v}");
    assert_eq!(v["consumes_quota"], true);
    assert!(
        v["service_uuid"].is_string() && v["shared_targets"] == false,
        "{v}"
    );
    // 3.52: a type's zones.
    let r = call(Method::POST, "/types".into(), "volume 3.52",
        json!({"volume_type": {"name": "elsewhere", "extra_specs": {"RESKEY:availability_zones": "az9"}}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        Method::POST,
        "/volumes".into(),
        "volume 3.52",
        json!({"volume": {"size": 1, "volume_type": "elsewhere"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // 3.60: time comparisons.
    let r = call(
        Method::GET,
        "/volumes/detail?created_at=gt:2000-01-01T00:00:00".into(),
        "volume 3.60",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["volumes"].as_array().unwrap().len(), 2, "{}", r.body);
    let r = call(
        Method::GET,
        "/volumes/detail?created_at=lt:2000-01-01T00:00:00".into(),
        "volume 3.60",
        Value::Null,
    )
    .await;
    assert_eq!(r.body["volumes"].as_array().unwrap().len(), 0, "{}", r.body);
    let r = call(
        Method::GET,
        "/volumes/detail?created_at=lt:yesterday".into(),
        "volume 3.60",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        Method::GET,
        "/volumes/detail?created_at=2000-01-01T00:00:00".into(),
        "volume 3.60",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 400, "an operator is required: {}", r.body);
    let r = call(
        Method::GET,
        "/volumes/detail?created_at=lt:2000-01-01T00:00:00".into(),
        "volume 3.59",
        Value::Null,
    )
    .await;
    assert_eq!(
        r.body["volumes"].as_array().unwrap().len(),
        2,
        "dropped before 3.60: {}",
        r.body
    );

    // 3.62: a project's default type is used for its new volumes.
    let me = c
        .request(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&tok),
            Value::Null,
        )
        .await;
    let _ = me;
    let project = call(
        Method::GET,
        format!("/volumes/{lax}"),
        "volume 3.71",
        Value::Null,
    )
    .await
    .body["volume"]["os-vol-tenant-attr:tenant_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        Method::PUT,
        format!("/default-types/{project}"),
        "volume 3.61",
        json!({"default_type": {"volume_type": "multi"}}),
    )
    .await;
    assert_eq!(r.status, 404, "default types need 3.62");
    let r = call(
        Method::PUT,
        format!("/default-types/{project}"),
        "volume 3.62",
        json!({"default_type": {"volume_type": "multi"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["default_type"]["volume_type_id"],
        multi_type.as_str()
    );
    let r = call(
        Method::GET,
        "/default-types".into(),
        "volume 3.62",
        Value::Null,
    )
    .await;
    assert_eq!(
        r.body["default_types"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );
    let r = call(
        Method::POST,
        "/volumes".into(),
        "volume 3.62",
        json!({"volume": {"size": 1}}),
    )
    .await;
    assert_eq!(r.body["volume"]["volume_type"], "multi", "{}", r.body);
    let defaulted = r.body["volume"]["id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/volumes/{defaulted}"),
        "volume",
        Some("available"),
    )
    .await;
    let r = call(
        Method::DELETE,
        format!("/types/{multi_type}"),
        "volume 3.62",
        Value::Null,
    )
    .await;
    assert_eq!(
        r.status, 400,
        "a project default cannot be deleted: {}",
        r.body
    );
    let r = call(
        Method::DELETE,
        format!("/default-types/{project}"),
        "volume 3.62",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = call(
        Method::GET,
        format!("/default-types/{project}"),
        "volume 3.62",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // 3.33 resource filters, 3.28/3.35 pools, 3.49 backend state, 3.39 limits.
    let r = call(
        Method::GET,
        "/resource_filters?resource=volume".into(),
        "volume 3.33",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resource_filters"][0]["resource"], "volume");
    assert!(
        r.body["resource_filters"][0]["filters"]
            .as_array()
            .unwrap()
            .contains(&json!("created_at"))
    );
    let r = call(
        Method::GET,
        "/scheduler-stats/get_pools?volume_backend_name=file".into(),
        "volume 3.28",
        Value::Null,
    )
    .await;
    assert_eq!(r.body["pools"].as_array().unwrap().len(), 1, "{}", r.body);
    let r = call(
        Method::GET,
        "/scheduler-stats/get_pools?volume_backend_name=lvm".into(),
        "volume 3.28",
        Value::Null,
    )
    .await;
    assert_eq!(r.body["pools"].as_array().unwrap().len(), 0, "{}", r.body);
    let r = call(
        Method::POST,
        "/types".into(),
        "volume 3.35",
        json!({"volume_type": {"name": "on-lvm", "extra_specs": {"volume_backend_name": "lvm"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        Method::GET,
        "/scheduler-stats/get_pools?volume_type=on-lvm".into(),
        "volume 3.35",
        Value::Null,
    )
    .await;
    assert_eq!(r.body["pools"].as_array().unwrap().len(), 0, "{}", r.body);
    let r = call(
        Method::GET,
        "/scheduler-stats/get_pools?volume_type=multi".into(),
        "volume 3.35",
        Value::Null,
    )
    .await;
    assert_eq!(r.body["pools"].as_array().unwrap().len(), 1, "{}", r.body);
    let r = call(
        Method::GET,
        "/os-services?binary=cinder-volume".into(),
        "volume 3.49",
        Value::Null,
    )
    .await;
    assert_eq!(r.body["services"][0]["backend_state"], "up", "{}", r.body);
    // Cinder's detailed view of a volume service: replication fields.
    let vs = &r.body["services"][0];
    assert_eq!(vs["replication_status"], "not-capable", "{vs}");
    assert_eq!(vs["frozen"], false, "{vs}");
    assert!(vs["active_backend_id"].is_null() && vs.get("active_backend_id").is_some());
    let r = call(
        Method::GET,
        "/os-services?binary=cinder-scheduler".into(),
        "volume 3.49",
        Value::Null,
    )
    .await;
    let sched = &r.body["services"][0];
    assert!(
        sched.get("frozen").is_none(),
        "only volume services have it: {sched}"
    );
    let r = call(
        Method::GET,
        "/limits?project_id=someone-else".into(),
        "volume 3.39",
        Value::Null,
    )
    .await;
    assert_eq!(
        r.body["limits"]["absolute"]["totalVolumesUsed"], 0,
        "{}",
        r.body
    );
    let r = call(Method::GET, "/limits".into(), "volume 3.39", Value::Null).await;
    assert_eq!(
        r.body["limits"]["absolute"]["totalVolumesUsed"], 3,
        "{}",
        r.body
    );

    // 3.32 log levels.
    let r = call(
        Method::PUT,
        "/os-services/set-log".into(),
        "volume 3.32",
        json!({"binary": "cinder-volume", "prefix": "cinder.volume", "level": "DEBUG"}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = call(
        Method::PUT,
        "/os-services/get-log".into(),
        "volume 3.32",
        json!({"binary": "cinder-volume", "prefix": "cinder.volume"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["log_levels"][0]["levels"]["ferro_volume::volume"], "DEBUG",
        "{}",
        r.body
    );
    let r = call(
        Method::PUT,
        "/os-services/set-log".into(),
        "volume 3.32",
        json!({"prefix": "cinder", "level": "LOUD"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // 3.55/3.57/3.59 transfers: `no_snapshots` leaves the snapshot behind.
    let r = call(
        Method::POST,
        "/snapshots".into(),
        "volume 3.55",
        json!({"snapshot": {"volume_id": lax, "name": "stays"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let snap = r.body["snapshot"]["id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/snapshots/{snap}"),
        "snapshot",
        Some("available"),
    )
    .await;
    let r = call(
        Method::POST,
        "/volume-transfers".into(),
        "volume 3.54",
        json!({"transfer": {"volume_id": lax, "no_snapshots": true}}),
    )
    .await;
    assert_eq!(r.status, 400, "no_snapshots needs 3.55: {}", r.body);
    let r = call(
        Method::POST,
        "/os-volume-transfer".into(),
        "volume 3.57",
        json!({"transfer": {"volume_id": lax, "no_snapshots": true}}),
    )
    .await;
    assert_eq!(
        r.status, 400,
        "the legacy resource has no no_snapshots: {}",
        r.body
    );
    let r = call(
        Method::POST,
        "/volume-transfers".into(),
        "volume 3.57",
        json!({"transfer": {"volume_id": lax, "name": "t1", "no_snapshots": true}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let t = &r.body["transfer"];
    assert_eq!(t["no_snapshots"], true, "{t}");
    assert_eq!(t["accepted"], false, "{t}");
    assert_eq!(t["source_project_id"], project.as_str(), "{t}");
    assert!(t["destination_project_id"].is_null(), "{t}");
    let tid = t["id"].as_str().unwrap().to_string();
    let key = t["auth_key"].as_str().unwrap().to_string();
    let r = call(
        Method::POST,
        "/volume-transfers".into(),
        "volume 3.57",
        json!({"transfer": {"volume_id": multi, "name": "t2"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let t2 = r.body["transfer"]["id"].as_str().unwrap().to_string();
    let r = call(
        Method::GET,
        "/volume-transfers/detail?limit=1&sort=name:asc".into(),
        "volume 3.59",
        Value::Null,
    )
    .await;
    assert_eq!(
        r.body["transfers"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );
    assert_eq!(r.body["transfers"][0]["name"], "t1", "{}", r.body);
    assert!(
        r.body["transfers_links"][0]["href"]
            .as_str()
            .unwrap()
            .contains("marker="),
        "{}",
        r.body
    );
    let r = call(
        Method::DELETE,
        format!("/volume-transfers/{t2}"),
        "volume 3.57",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = call(
        Method::POST,
        format!("/volume-transfers/{tid}/accept"),
        "volume 3.57",
        json!({"accept": {"auth_key": key}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = call(
        Method::GET,
        format!("/snapshots/{snap}"),
        "volume 3.57",
        Value::Null,
    )
    .await;
    assert_eq!(r.body["snapshot"]["status"], "available", "{}", r.body);

    // 3.66: in-use volumes are snapshotted without force; force=false is refused.
    let r = call(
        Method::POST,
        format!("/volumes/{multi}/action"),
        "volume 3.66",
        json!({"os-reset_status": {"status": "in-use"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = call(
        Method::POST,
        "/snapshots".into(),
        "volume 3.65",
        json!({"snapshot": {"volume_id": multi}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        Method::POST,
        "/snapshots".into(),
        "volume 3.66",
        json!({"snapshot": {"volume_id": multi, "force": false}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        Method::POST,
        "/snapshots".into(),
        "volume 3.66",
        json!({"snapshot": {"volume_id": multi}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let s2 = r.body["snapshot"]["id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/snapshots/{s2}"),
        "snapshot",
        Some("available"),
    )
    .await;
    let r = call(
        Method::POST,
        format!("/volumes/{multi}/action"),
        "volume 3.66",
        json!({"os-retype": {"new_type": "__DEFAULT__"}}),
    )
    .await;
    assert_eq!(
        r.status, 400,
        "in-use retype changing multiattach: {}",
        r.body
    );

    // 3.71: nothing waits for an extend completion here.
    let r = call(
        Method::POST,
        format!("/volumes/{defaulted}/action"),
        "volume 3.71",
        json!({"os-extend_volume_completion": {"error": false}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        Method::POST,
        format!("/volumes/{defaulted}/action"),
        "volume 3.67",
        json!({"os-reimage": {"image_id": defaulted}}),
    )
    .await;
    assert_eq!(r.status, 404, "os-reimage needs 3.68: {}", r.body);

    // 3.68: re-image an available volume from an image.
    let img = image(&c, &tok).await;
    let r = call(
        Method::POST,
        format!("/volumes/{defaulted}/action"),
        "volume 3.68",
        json!({"os-reimage": {"image_id": img}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let v = wait(
        &c,
        &tok,
        &format!("/volumes/{defaulted}"),
        "volume",
        Some("available"),
    )
    .await;
    assert_eq!(v["bootable"], "true", "{v}");
    assert_eq!(v["volume_image_metadata"]["image_id"], img.as_str(), "{v}");
    let r = call(
        Method::POST,
        format!("/volumes/{multi}/action"),
        "volume 3.68",
        json!({"os-reimage": {"image_id": img}}),
    )
    .await;
    assert_eq!(r.status, 400, "in-use without reimage_reserved: {}", r.body);

    // 3.46: an image that is a Compute snapshot of a volume-backed server.
    let r = c
        .request(
            Method::POST,
            "/image/v2/images",
            Some(&tok),
            json!({"name": "server-snap", "disk_format": "raw", "container_format": "bare",
                   "block_device_mapping": json!([{"source_type": "snapshot", "boot_index": 0,
                       "snapshot_id": s2, "destination_type": "volume"}]).to_string()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let snap_img = r.body["id"].as_str().unwrap().to_string();
    let up = c
        .client
        .put(format!("{}/image/v2/images/{snap_img}/file", c.url))
        .header("X-Auth-Token", &tok)
        .header("Content-Type", "application/octet-stream")
        .body(Vec::<u8>::new())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 204);
    let r = call(
        Method::POST,
        "/volumes".into(),
        "volume 3.46",
        json!({"volume": {"imageRef": snap_img}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["volume"]["snapshot_id"], s2.as_str(), "{}", r.body);
    let from_snap = r.body["volume"]["id"].as_str().unwrap().to_string();
    wait(
        &c,
        &tok,
        &format!("/volumes/{from_snap}"),
        "volume",
        Some("available"),
    )
    .await;

    // 3.38: a group whose type does not replicate.
    let r = call(
        Method::POST,
        "/group_types".into(),
        "volume 3.38",
        json!({"group_type": {"name": "g"}}),
    )
    .await;
    let gt = r.body["group_type"]["id"].as_str().unwrap().to_string();
    let r = call(
        Method::POST,
        "/groups".into(),
        "volume 3.38",
        json!({"group": {"group_type": gt, "volume_types": [multi_type]}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let g = r.body["group"]["id"].as_str().unwrap().to_string();
    let r = call(
        Method::GET,
        format!("/groups/{g}"),
        "volume 3.58",
        Value::Null,
    )
    .await;
    assert_eq!(
        r.body["group"]["replication_status"], "disabled",
        "{}",
        r.body
    );
    assert_eq!(
        r.body["group"]["project_id"],
        project.as_str(),
        "{}",
        r.body
    );
    let r = call(
        Method::POST,
        format!("/groups/{g}/action"),
        "volume 3.38",
        json!({"enable_replication": {}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

/// No user token is persisted anywhere: after a server build, a volume
/// created from an image (by Block Storage, and by Compute for a boot from
/// volume), an attach and a snapshot that the host streams to the Image
/// service, no byte of the database (file and WAL, free pages included)
/// holds a Fernet token. Workflows keep the user and project instead and
/// mint short-lived tokens when a step needs one.
#[tokio::test]
async fn no_token_is_stored() {
    if !have_qemu_img() {
        ferro_common::skip_or_fail("qemu-img is not installed");
        return;
    }
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 1)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let img = image(&c, &tok).await;
    let srv = boot(
        &c,
        &tok,
        json!({"name": "s1", "imageRef": img, "flavorRef": "1", "networks": "none"}),
    )
    .await;
    let from_image = create_volume(&c, &tok, json!({"size": 1, "imageRef": img})).await;
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{srv}/os-volume_attachments"),
        &tok,
        json!({"volumeAttachment": {"volumeId": from_image}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Boot from volume: Compute makes the root volume from the image as the user.
    boot(
        &c,
        &tok,
        json!({"name": "bfv", "flavorRef": "1", "networks": "none",
               "block_device_mapping_v2": [{"boot_index": 0, "uuid": img, "source_type": "image",
                   "destination_type": "volume", "volume_size": 1, "delete_on_termination": true}]}),
    )
    .await;
    // A snapshot: the host writes the disk and streams it to the Image service.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{srv}/action"),
        &tok,
        json!({"createImage": {"name": "snap"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let snap = r.body["image_id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    loop {
        let r = c
            .request(
                Method::GET,
                &format!("/image/v2/images/{snap}"),
                Some(&tok),
                Value::Null,
            )
            .await;
        if r.body["status"] == "active" {
            assert!(r.body["size"].as_u64().unwrap() > 0, "{}", r.body);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "snapshot: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let data = c
        .client
        .get(format!("{}/image/v2/images/{snap}/file", c.url))
        .header("X-Auth-Token", &tok)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(data.contains(&srv), "{data}");
    // Every file of the database: no Fernet token (they start "gAAAAA").
    let mut scanned = 0;
    for e in std::fs::read_dir(c.data_dir()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("ferrostack.db") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        scanned += bytes.len();
        let hit = bytes.windows(tok.len()).any(|w| w == tok.as_bytes())
            || bytes.windows(6).any(|w| w == b"gAAAAA");
        assert!(!hit, "{name} holds a token");
    }
    assert!(scanned > 0);
    c.stop().await;
}
