//! Compute + Placement integration tests: the real server in-process (fake
//! hypervisor hosts), driven over HTTP as openstackclient/Tempest do; and
//! the crash test, which kills a real `ferrostack serve` mid-build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_test_utils::{Backend, Resp, TestCloud};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

mod compute_mv;

const MV: &str = "compute 2.79";

async fn nova(c: &TestCloud, m: Method, path: &str, tok: &str, body: Value) -> Resp {
    c.request_h(
        m,
        &format!("/compute/v2.1{path}"),
        Some(tok),
        body,
        &[("OpenStack-API-Version", MV)],
    )
    .await
}

/// A public raw image with bytes, as a boot source.
async fn image(c: &TestCloud, tok: &str) -> String {
    let r = c
        .request(Method::POST, "/image/v2/images", Some(tok), json!({"name": "cirros", "disk_format": "raw", "container_format": "bare", "visibility": "public"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let up = c
        .client
        .put(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", tok)
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 204);
    id
}

async fn wait_status(c: &TestCloud, tok: &str, id: &str, want: &[&str]) -> Value {
    let t = Instant::now();
    loop {
        let r = nova(c, Method::GET, &format!("/servers/{id}"), tok, Value::Null).await;
        if r.status == 404 && want.contains(&"DELETED") {
            return Value::Null;
        }
        let st = r.body["server"]["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if want.contains(&st.as_str()) {
            return r.body["server"].clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server {id} stuck in {st}: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_hosts(c: &TestCloud, tok: &str, n: usize) {
    let t = Instant::now();
    loop {
        let r = nova(c, Method::GET, "/os-hypervisors", tok, Value::Null).await;
        if r.body["hypervisors"]
            .as_array()
            .map(|a| a.iter().filter(|h| h["state"] == "up").count())
            == Some(n)
        {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "hosts not up: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sum of all allocations Placement holds, per resource class.
async fn placement_used(c: &TestCloud, tok: &str) -> (u64, u64) {
    let r = c
        .request_h(
            Method::GET,
            "/placement/resource_providers",
            Some(tok),
            Value::Null,
            &[("OpenStack-API-Version", "placement 1.39")],
        )
        .await;
    let mut vcpu = 0;
    let mut mem = 0;
    for rp in r.body["resource_providers"].as_array().unwrap() {
        let u = c
            .request_h(
                Method::GET,
                &format!(
                    "/placement/resource_providers/{}/usages",
                    rp["uuid"].as_str().unwrap()
                ),
                Some(tok),
                Value::Null,
                &[("OpenStack-API-Version", "placement 1.39")],
            )
            .await;
        vcpu += u.body["usages"]["VCPU"].as_u64().unwrap_or(0);
        mem += u.body["usages"]["MEMORY_MB"].as_u64().unwrap_or(0);
    }
    (vcpu, mem)
}

async fn instances_used(c: &TestCloud, tok: &str) -> i64 {
    let r = nova(c, Method::GET, "/limits", tok, Value::Null).await;
    r.body["limits"]["absolute"]["totalInstancesUsed"]
        .as_i64()
        .unwrap()
}

fn server_body(image: &str, flavor: &str, name: &str) -> Value {
    json!({"server": {"name": name, "imageRef": image, "flavorRef": flavor, "networks": "none"}})
}

#[tokio::test]
async fn server_lifecycle_and_placement() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 2)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    wait_hosts(&c, &tok, 2).await;
    // Version discovery and microversion negotiation.
    let v = c.request(Method::GET, "/compute/", None, Value::Null).await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body["versions"][1]["version"], "2.100");
    let r = nova(&c, Method::GET, "/flavors", &tok, Value::Null).await;
    assert_eq!(
        r.header("openstack-api-version").as_deref(),
        Some("compute 2.79")
    );
    let r = c
        .request_h(
            Method::GET,
            "/compute/v2.1/flavors",
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "compute 2.999")],
        )
        .await;
    assert_eq!(r.status, 406);
    let r = c
        .request_h(
            Method::GET,
            "/compute/v2.1/flavors",
            Some(&tok),
            Value::Null,
            &[("X-OpenStack-Nova-API-Version", "2.x")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["badRequest"]["message"].is_string());
    let r = c
        .request(Method::GET, "/compute/v2.1/servers", None, Value::Null)
        .await;
    assert_eq!(r.status, 401);

    let img = image(&c, &tok).await;
    // A create naming no networks at >= 2.37 is a 400 with Nova's fault body.
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        server_body(&img, "nope", "x"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        instances_used(&c, &tok).await,
        0,
        "a refused create records nothing"
    );

    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        server_body(&img, "1", "s1"),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(&c, &tok, &id, &["ACTIVE"]).await;
    assert!(s["OS-EXT-SRV-ATTR:host"].is_string());
    assert_eq!(s["flavor"]["original_name"], "m1.tiny");
    assert_eq!(placement_used(&c, &tok).await, (1, 512));

    // Diagnostics come from the host's driver: the fake's are Nova's fake
    // driver's figures, in Nova's 2.48 document.
    let r = c
        .request_h(
            Method::GET,
            &format!("/compute/v2.1/servers/{id}/diagnostics"),
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "compute 2.48")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["driver"], "libvirt");
    assert_eq!(r.body["hypervisor"], "fake");
    assert_eq!(r.body["num_cpus"], 1);
    assert_eq!(r.body["cpu_details"][0]["time"], 17_300_000_000u64);
    assert_eq!(r.body["memory_details"]["maximum"], 512);
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers/{id}/diagnostics"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Consoles: a simulated guest has no screen, so the host's agent says
    // the console type is unavailable (Nova's 400); the request's shape is
    // checked first.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &tok,
        json!({"os-getVNCConsole": {"type": "novnc"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        "Unavailable console type novnc."
    );
    let rc = |protocol: &str, kind: &str| json!({"remote_console": {"protocol": protocol, "type": kind}});
    let path = format!("/servers/{id}/remote-consoles");
    let r = nova(&c, Method::POST, &path, &tok, rc("vnc", "novnc")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = nova(&c, Method::POST, &path, &tok, rc("vnc", "spice-html5")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("type")
    );
    let r = c
        .request_h(
            Method::POST,
            &format!("/compute/v2.1{path}"),
            Some(&tok),
            rc("vnc", "novnc"),
            &[("OpenStack-API-Version", "compute 2.5")],
        )
        .await;
    assert_eq!(r.status, 404, "remote-consoles is 2.6+: {}", r.body);
    let r = nova(
        &c,
        Method::POST,
        "/servers/00000000-0000-0000-0000-000000000000/remote-consoles",
        &tok,
        rc("vnc", "novnc"),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);

    for (action, want) in [
        (json!({"os-stop": null}), "SHUTOFF"),
        (json!({"os-start": null}), "ACTIVE"),
        (json!({"reboot": {"type": "HARD"}}), "ACTIVE"),
        (json!({"pause": null}), "PAUSED"),
        (json!({"unpause": null}), "ACTIVE"),
        (json!({"suspend": null}), "SUSPENDED"),
        (json!({"resume": null}), "ACTIVE"),
        (json!({"resize": {"flavorRef": "2"}}), "VERIFY_RESIZE"),
        (json!({"confirmResize": null}), "ACTIVE"),
        (json!({"shelve": null}), "SHELVED_OFFLOADED"),
        (json!({"unshelve": null}), "ACTIVE"),
    ] {
        let r = nova(
            &c,
            Method::POST,
            &format!("/servers/{id}/action"),
            &tok,
            action.clone(),
        )
        .await;
        assert!(r.status.is_success(), "{action}: {} {}", r.status, r.body);
        let s = wait_status(&c, &tok, &id, &[want]).await;
        assert!(
            s["OS-EXT-STS:task_state"].is_null() || want == "VERIFY_RESIZE",
            "{action}: {s}"
        );
        // A state that forbids the action is a 409.
        if want == "SHUTOFF" {
            let r = nova(
                &c,
                Method::POST,
                &format!("/servers/{id}/action"),
                &tok,
                json!({"pause": null}),
            )
            .await;
            assert_eq!(r.status, 409, "{}", r.body);
            assert!(
                r.body["conflictingRequest"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("vm_state stopped")
            );
        }
    }
    // After resize to m1.small and confirm, Placement holds exactly the new flavor.
    assert_eq!(placement_used(&c, &tok).await, (1, 2048));
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers/{id}/os-instance-actions"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["instanceActions"].as_array().unwrap().len(), 12);

    // Snapshot to the image service.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &tok,
        json!({"createImage": {"name": "snap"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let snap = r.body["image_id"].as_str().unwrap().to_string();
    let t = Instant::now();
    loop {
        let g = c
            .request(
                Method::GET,
                &format!("/image/v2/images/{snap}"),
                Some(&tok),
                Value::Null,
            )
            .await;
        if g.body["status"] == "active" {
            assert_eq!(g.body["instance_uuid"], id.as_str());
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{}", g.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204);
    wait_status(&c, &tok, &id, &["DELETED"]).await;
    assert_eq!(placement_used(&c, &tok).await, (0, 0));
    assert_eq!(instances_used(&c, &tok).await, 0);

    // A multi-create spreads over both hosts (RAM weigher) and every
    // instance is its own server.
    let mut b = server_body(&img, "1", "many");
    b["server"]["min_count"] = json!(4);
    b["server"]["max_count"] = json!(4);
    let r = nova(&c, Method::POST, "/servers", &tok, b).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let list = nova(&c, Method::GET, "/servers?name=many", &tok, Value::Null).await;
    let ids: Vec<String> = list.body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4);
    let mut hosts = std::collections::BTreeMap::<String, usize>::new();
    for i in &ids {
        let s = wait_status(&c, &tok, i, &["ACTIVE"]).await;
        *hosts
            .entry(s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        hosts.values().copied().collect::<Vec<_>>(),
        vec![2, 2],
        "{hosts:?}"
    );

    // Too big for every host: ERROR, with a fault that names the filters.
    let f = nova(
        &c,
        Method::POST,
        "/flavors",
        &tok,
        json!({"flavor": {"name": "huge", "ram": 512, "vcpus": 1, "disk": 100000}}),
    )
    .await;
    assert_eq!(f.status, 200, "{}", f.body);
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        server_body(&img, f.body["flavor"]["id"].as_str().unwrap(), "big"),
    )
    .await;
    let big = r.body["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(&c, &tok, &big, &["ERROR"]).await;
    let msg = s["fault"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("No valid host was found.")
            && msg.contains("DiskFilter")
            && msg.contains("removed"),
        "{msg}"
    );
    c.stop().await;
}

#[tokio::test]
async fn spawn_failure_reschedules_then_errors() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.compute.fake_hosts = 2;
        cfg.compute.max_attempts = 2;
    })
    .await
    .unwrap()
    .unwrap();
    let tok = c.admin_token().await;
    wait_hosts(&c, &tok, 2).await;
    let img = image(&c, &tok).await;
    // One host fails its next spawn: the build lands on the other.
    assert!(c.agents[0].driver.inject_failure("spawn", 1));
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        server_body(&img, "1", "r1"),
    )
    .await;
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(&c, &tok, &id, &["ACTIVE", "ERROR"]).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    // Every host fails: ERROR after max_attempts, nothing left claimed.
    for a in &c.agents {
        a.driver.inject_failure("spawn", u32::MAX);
    }
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        server_body(&img, "1", "r2"),
    )
    .await;
    let id2 = r.body["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(&c, &tok, &id2, &["ERROR"]).await;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("Exceeded maximum number of retries"),
        "{s}"
    );
    assert_eq!(placement_used(&c, &tok).await, (1, 512));
    let events = nova(
        &c,
        Method::GET,
        &format!("/servers/{id2}/os-instance-actions"),
        &tok,
        Value::Null,
    )
    .await;
    let rid = events.body["instanceActions"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = nova(
        &c,
        Method::GET,
        &format!("/servers/{id2}/os-instance-actions/{rid}"),
        &tok,
        Value::Null,
    )
    .await;
    let failed = a.body["instanceAction"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["result"] == "Error")
        .count();
    assert_eq!(failed, 2, "{}", a.body);
    c.stop().await;
}

/// For every build step: an injected failure there leaves the server in
/// ERROR, no allocation, and quota usage that a delete returns to zero.
#[tokio::test]
async fn build_step_failures_unwind() {
    for step in ["schedule", "network", "block_devices", "spawn", "finish"] {
        let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
            cfg.compute.fake_hosts = 1;
            cfg.compute.fault_injection = Some(format!("{step}:fail"));
        })
        .await
        .unwrap()
        .unwrap();
        let tok = c.admin_token().await;
        wait_hosts(&c, &tok, 1).await;
        let img = image(&c, &tok).await;
        let r = nova(
            &c,
            Method::POST,
            "/servers",
            &tok,
            server_body(&img, "1", "f"),
        )
        .await;
        let id = r.body["server"]["id"].as_str().unwrap().to_string();
        let s = wait_status(&c, &tok, &id, &["ERROR"]).await;
        assert!(
            s["fault"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("injected failure at {step}")),
            "{step}: {s}"
        );
        assert!(s["OS-EXT-STS:task_state"].is_null(), "{step}: {s}");
        assert_eq!(
            placement_used(&c, &tok).await,
            (0, 0),
            "{step}: allocation leaked"
        );
        assert_eq!(
            instances_used(&c, &tok).await,
            1,
            "{step}: an ERROR server counts, as in Nova"
        );
        assert!(
            c.agents[0].driver.list().await.is_empty(),
            "{step}: guest left on the host"
        );
        let r = nova(
            &c,
            Method::DELETE,
            &format!("/servers/{id}"),
            &tok,
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 204);
        wait_status(&c, &tok, &id, &["DELETED"]).await;
        assert_eq!(instances_used(&c, &tok).await, 0, "{step}");
        c.stop().await;
    }
}

/// A guest that stops behind the API's back (a crash, a shutdown from
/// inside) is recorded SHUTOFF by the heartbeat's power-state sync.
#[tokio::test]
async fn power_state_sync_from_heartbeats() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.compute.fake_hosts = 1;
        cfg.compute.report_interval = 1;
    })
    .await
    .unwrap()
    .unwrap();
    let tok = c.admin_token().await;
    wait_hosts(&c, &tok, 1).await;
    let img = image(&c, &tok).await;
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        server_body(&img, "1", "p"),
    )
    .await;
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    wait_status(&c, &tok, &id, &["ACTIVE"]).await;
    c.agents[0].driver.power_off(&id).await.unwrap();
    let t = Instant::now();
    loop {
        let s = nova(
            &c,
            Method::GET,
            &format!("/servers/{id}"),
            &tok,
            Value::Null,
        )
        .await;
        if s.body["server"]["status"] == "SHUTOFF" {
            assert_eq!(s.body["server"]["OS-EXT-STS:power_state"], 4);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "not synced: {}",
            s.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.stop().await;
}

/// Nova's `running_deleted_instance_action = reap`: a guest left on its
/// host by a delete whose destroy failed (the instance is deleted locally)
/// is destroyed at a later heartbeat.
#[tokio::test]
async fn a_deleted_instances_guest_is_reaped() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.compute.fake_hosts = 1;
        cfg.compute.report_interval = 1;
    })
    .await
    .unwrap()
    .unwrap();
    let tok = c.admin_token().await;
    wait_hosts(&c, &tok, 1).await;
    let img = image(&c, &tok).await;
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        server_body(&img, "1", "orphan"),
    )
    .await;
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    wait_status(&c, &tok, &id, &["ACTIVE"]).await;
    let driver = c.agents[0].driver.clone();
    assert!(driver.inject_failure("destroy", 1));
    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_status(&c, &tok, &id, &["DELETED"]).await;
    let t = Instant::now();
    while driver.list().await.contains(&id) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the deleted instance's guest was not reaped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.stop().await;
}

/// Live migration and evacuation are checked in Nova's order: a state
/// Nova refuses is 409 before the driver's lack of migration is 400, and
/// a non-admin is refused by policy first.
#[tokio::test]
async fn migration_checks_the_state_before_the_driver() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 1)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    wait_hosts(&c, &tok, 1).await;
    let img = image(&c, &tok).await;
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        server_body(&img, "1", "mig"),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    wait_status(&c, &tok, &id, &["ACTIVE"]).await;
    let act = |body: Value| {
        let (c, tok, id) = (&c, tok.clone(), id.clone());
        async move {
            nova(
                c,
                Method::POST,
                &format!("/servers/{id}/action"),
                &tok,
                body,
            )
            .await
        }
    };
    let live = json!({"os-migrateLive": {"host": null, "block_migration": "auto"}});
    let r = act(live.clone()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let (_, member) = c.member_user(&tok, "mig-member").await;
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &member,
        live.clone(),
    )
    .await;
    assert_eq!(r.status, 404, "another project's server: {}", r.body);
    assert_eq!(act(json!({"suspend": null})).await.status, 202);
    wait_status(&c, &tok, &id, &["SUSPENDED"]).await;
    let r = act(live).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("while it is in vm_state suspended"),
        "{}",
        r.body
    );
    let r = act(json!({"evacuate": {}})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(act(json!({"resume": null})).await.status, 202);
    wait_status(&c, &tok, &id, &["ACTIVE"]).await;
    assert_eq!(act(json!({"evacuate": {}})).await.status, 400);
    c.stop().await;
}
