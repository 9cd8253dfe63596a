//! Compute microversions 2.80–2.100 on the real server in-process (fake
//! hypervisor hosts): each version's request and response changes, the
//! checks Nova makes, and what the versions below still answer.
use super::{image, wait_hosts, wait_status};
use ferro_test_utils::{Backend, Resp, TestCloud};
use reqwest::Method;
use serde_json::{Value, json};

async fn nv(c: &TestCloud, mv: &str, m: Method, path: &str, tok: &str, body: Value) -> Resp {
    c.request_h(
        m,
        &format!("/compute/v2.1{path}"),
        Some(tok),
        body,
        &[("OpenStack-API-Version", &format!("compute {mv}"))],
    )
    .await
}

async fn boot(c: &TestCloud, tok: &str, mv: &str, server: Value) -> String {
    let r = nv(
        c,
        mv,
        Method::POST,
        "/servers",
        tok,
        json!({ "server": server }),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    wait_status(c, tok, &id, &["ACTIVE"]).await;
    id
}

#[tokio::test]
async fn microversions_2_80_to_2_100() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 2)
        .await
        .unwrap()
        .unwrap();
    let adm = c.admin_token().await;
    wait_hosts(&c, &adm, 2).await;
    let (_, member) = c.member_user(&adm, "mv-member").await;
    let r = nv(&c, "2.1", Method::GET, "/", &adm, Value::Null).await;
    assert_eq!(r.body["version"]["version"], "2.100", "{}", r.body);
    let img = image(&c, &adm).await;
    let patch = c
        .client
        .patch(format!("{}/image/v2/images/{img}", c.url))
        .header("X-Auth-Token", &adm)
        .header("Content-Type", "application/openstack-images-v2.1-json-patch")
        .body(r#"[{"op":"add","path":"/hw_disk_bus","value":"virtio"},{"op":"add","path":"/site_color","value":"blue"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    // Nova's image proxy shows auto_disk_config as OS-DCF:diskConfig.
    let auto = image(&c, &adm).await;
    let patch = c
        .client
        .patch(format!("{}/image/v2/images/{auto}", c.url))
        .header("X-Auth-Token", &adm)
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body(r#"[{"op":"add","path":"/auto_disk_config","value":"False"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    for (id, want) in [(&auto, json!("MANUAL")), (&img, Value::Null)] {
        let path = format!("/images/{id}");
        let r = nv(&c, "2.1", Method::GET, &path, &adm, Value::Null).await;
        assert_eq!(r.body["image"]["OS-DCF:diskConfig"], want, "{}", r.body);
    }

    // 2.90 hostname (create, update), 2.94 FQDNs, visible to all from 2.90.
    let base = json!({"name": "web 1", "imageRef": img, "flavorRef": "1", "networks": "none"});
    let with = |extra: Value| {
        let mut s = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        json!({ "server": s })
    };
    let r = nv(
        &c,
        "2.89",
        Method::POST,
        "/servers",
        &member,
        with(json!({"hostname": "h1"})),
    )
    .await;
    assert_eq!(r.status, 400, "hostname before 2.90: {}", r.body);
    let r = nv(
        &c,
        "2.90",
        Method::POST,
        "/servers",
        &member,
        with(json!({"hostname": "-bad"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = nv(
        &c,
        "2.93",
        Method::POST,
        "/servers",
        &member,
        with(json!({"hostname": "a.example.com"})),
    )
    .await;
    assert_eq!(r.status, 400, "an FQDN before 2.94: {}", r.body);
    let r = nv(
        &c,
        "2.90",
        Method::POST,
        "/servers",
        &member,
        with(json!({"hostname": "twin", "max_count": 2})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("Unable to allocate a single hostname")
    );
    let mut s1 = base.clone();
    s1["hostname"] = json!("node-1.example.com");
    let r = nv(&c, "2.94", Method::POST, "/servers", &member, json!({"server": s1, "os:scheduler_hints": {"build_near_host_ip": "10.0.0.1", "cidr": "/24"}})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let fqdn = r.body["server"]["id"].as_str().unwrap().to_string();
    let plain = boot(&c, &member, "2.90", base.clone()).await;
    let r = nv(
        &c,
        "2.90",
        Method::GET,
        &format!("/servers/{plain}"),
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(
        r.body["server"]["OS-EXT-SRV-ATTR:hostname"], "web-1",
        "made from the name"
    );
    let r = nv(
        &c,
        "2.89",
        Method::GET,
        &format!("/servers/{plain}"),
        &member,
        Value::Null,
    )
    .await;
    assert!(
        r.body["server"].get("OS-EXT-SRV-ATTR:hostname").is_none(),
        "admin-only before 2.90"
    );
    let r = nv(
        &c,
        "2.90",
        Method::PUT,
        &format!("/servers/{plain}"),
        &member,
        json!({"server": {"hostname": "renamed"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["server"]["OS-EXT-SRV-ATTR:hostname"], "renamed");

    // 2.96 pinned zone, 2.98 image properties, 2.100 scheduler hints.
    let f = wait_status(&c, &member, &fqdn, &["ACTIVE"]).await;
    let _ = f;
    let r = nv(
        &c,
        "2.100",
        Method::GET,
        &format!("/servers/{fqdn}"),
        &member,
        Value::Null,
    )
    .await;
    let s = &r.body["server"];
    assert_eq!(s["OS-EXT-SRV-ATTR:hostname"], "node-1.example.com");
    assert_eq!(s["pinned_availability_zone"], Value::Null);
    assert_eq!(
        s["image"]["properties"],
        json!({"hw_disk_bus": "virtio"}),
        "only Nova's image properties"
    );
    assert_eq!(
        s["scheduler_hints"],
        json!({"build_near_host_ip": ["10.0.0.1"], "cidr": ["/24"]}),
        "hints as lists of strings"
    );
    let r = nv(
        &c,
        "2.95",
        Method::GET,
        &format!("/servers/{fqdn}"),
        &member,
        Value::Null,
    )
    .await;
    let s = &r.body["server"];
    assert!(s.get("pinned_availability_zone").is_none() && s.get("scheduler_hints").is_none());
    assert!(s["image"].get("properties").is_none());
    let zoned = boot(
        &c,
        &member,
        "2.96",
        json!({"name": "zoned", "imageRef": img, "flavorRef": "1", "networks": "none", "availability_zone": "nova"}),
    )
    .await;
    let r = nv(
        &c,
        "2.96",
        Method::GET,
        "/servers/detail",
        &member,
        Value::Null,
    )
    .await;
    let z = r.body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == zoned.as_str())
        .unwrap()
        .clone();
    assert_eq!(z["pinned_availability_zone"], "nova");

    // 2.83: non-admins filter by more columns; below it those are ignored.
    let r = nv(
        &c,
        "2.83",
        Method::GET,
        "/servers?key_name=nope",
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 0, "{}", r.body);
    let r = nv(
        &c,
        "2.82",
        Method::GET,
        "/servers?key_name=nope",
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 3, "{}", r.body);
    let r = nv(
        &c,
        "2.83",
        Method::GET,
        "/servers?vm_state=active&config_drive=",
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 3, "{}", r.body);
    let r = nv(
        &c,
        "2.90",
        Method::GET,
        "/servers?hostname=^renamed$",
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 1, "{}", r.body);

    // 2.80 migrations: user and project shown and filtered; paging from 2.59.
    let act = |id: &str, body: Value, tok: &str| {
        let (c, path, tok) = (&c, format!("/servers/{id}/action"), tok.to_string());
        async move { nv(c, "2.79", Method::POST, &path, &tok, body).await }
    };
    assert_eq!(
        act(&plain, json!({"resize": {"flavorRef": "2"}}), &member)
            .await
            .status,
        202
    );
    wait_status(&c, &member, &plain, &["VERIFY_RESIZE"]).await;
    assert_eq!(
        act(&plain, json!({"confirmResize": null}), &member)
            .await
            .status,
        204
    );
    wait_status(&c, &member, &plain, &["ACTIVE"]).await;
    let member_user = nv(
        &c,
        "2.90",
        Method::GET,
        &format!("/servers/{plain}"),
        &member,
        Value::Null,
    )
    .await
    .body["server"]["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = nv(
        &c,
        "2.80",
        Method::GET,
        &format!("/os-migrations?user_id={member_user}"),
        &adm,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = &r.body["migrations"][0];
    assert_eq!(m["user_id"], member_user.as_str());
    assert_eq!(m["instance_uuid"], plain.as_str());
    assert!(m["project_id"].is_string() && m["uuid"].is_string());
    let r = nv(
        &c,
        "2.80",
        Method::GET,
        "/os-migrations?user_id=someone-else",
        &adm,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["migrations"].as_array().unwrap().len(), 0);
    let r = nv(
        &c,
        "2.79",
        Method::GET,
        "/os-migrations?user_id=someone-else",
        &adm,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 400, "not a 2.79 parameter: {}", r.body);
    let r = nv(
        &c,
        "2.58",
        Method::GET,
        "/os-migrations?user_id=someone-else",
        &adm,
        Value::Null,
    )
    .await;
    assert_eq!(
        r.body["migrations"].as_array().unwrap().len(),
        1,
        "ignored before 2.59"
    );
    let r = nv(
        &c,
        "2.80",
        Method::GET,
        "/os-migrations?limit=1&marker=nope",
        &adm,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = nv(
        &c,
        "2.80",
        Method::GET,
        "/os-migrations?limit=1",
        &adm,
        Value::Null,
    )
    .await;
    assert!(
        r.body["migrations_links"][0]["href"]
            .as_str()
            .unwrap()
            .contains("marker=")
    );

    // 2.84: failed-event details for admins only.
    let r = nv(
        &c,
        "2.84",
        Method::GET,
        &format!("/servers/{plain}/os-instance-actions"),
        &adm,
        Value::Null,
    )
    .await;
    let create = r.body["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "create")
        .unwrap()
        .clone();
    let rid = create["request_id"].as_str().unwrap().to_string();
    let path = format!("/servers/{plain}/os-instance-actions/{rid}");
    let r = nv(&c, "2.84", Method::GET, &path, &adm, Value::Null).await;
    let ev = &r.body["instanceAction"]["events"][0];
    assert!(ev.get("details").is_some_and(Value::is_null), "{}", r.body);
    let r = nv(&c, "2.84", Method::GET, &path, &member, Value::Null).await;
    assert!(
        r.body["instanceAction"]["events"][0]
            .get("details")
            .is_none()
    );
    let r = nv(&c, "2.83", Method::GET, &path, &adm, Value::Null).await;
    assert!(
        r.body["instanceAction"]["events"][0]
            .get("details")
            .is_none()
    );

    // 2.88: hypervisors lose their resource fields and gain the host's uptime.
    let r = nv(
        &c,
        "2.88",
        Method::GET,
        "/os-hypervisors/detail",
        &adm,
        Value::Null,
    )
    .await;
    let h = &r.body["hypervisors"][0];
    assert!(
        h.get("vcpus").is_none() && h.get("memory_mb").is_none(),
        "{h}"
    );
    assert!(
        h["uptime"].as_str().unwrap().contains("load average"),
        "{h}"
    );
    let hid = h["id"].as_str().unwrap().to_string();
    let r = nv(
        &c,
        "2.88",
        Method::GET,
        &format!("/os-hypervisors/{hid}"),
        &adm,
        Value::Null,
    )
    .await;
    assert!(r.body["hypervisor"]["uptime"].is_string(), "{}", r.body);
    for p in [
        "/os-hypervisors/statistics".to_string(),
        format!("/os-hypervisors/{hid}/uptime"),
    ] {
        assert_eq!(
            nv(&c, "2.88", Method::GET, &p, &adm, Value::Null)
                .await
                .status,
            404,
            "{p}"
        );
        assert_eq!(
            nv(&c, "2.87", Method::GET, &p, &adm, Value::Null)
                .await
                .status,
            200,
            "{p}"
        );
    }

    // 2.86: flavor extra specs validated in namespaces Nova knows.
    let spec = |mv: &'static str, body: Value| {
        let (c, adm) = (&c, adm.clone());
        async move { nv(c, mv, Method::POST, "/flavors/1/os-extra_specs", &adm, body).await }
    };
    assert_eq!(
        spec("2.86", json!({"extra_specs": {"hw:cpu_policy": "bogus"}}))
            .await
            .status,
        400
    );
    assert_eq!(
        spec("2.86", json!({"extra_specs": {"hw:no_such_key": "1"}}))
            .await
            .status,
        400
    );
    let r = spec(
        "2.86",
        json!({"extra_specs": {"hw:cpu_policy": "shared", "foo:bar": "baz"}}),
    )
    .await;
    assert_eq!(r.status, 200, "an unknown namespace passes: {}", r.body);
    assert_eq!(
        spec("2.85", json!({"extra_specs": {"hw:cpu_policy": "bogus"}}))
            .await
            .status,
        200
    );
    nv(
        &c,
        "2.85",
        Method::DELETE,
        "/flavors/1/os-extra_specs/hw:cpu_policy",
        &adm,
        Value::Null,
    )
    .await;
    nv(
        &c,
        "2.85",
        Method::DELETE,
        "/flavors/1/os-extra_specs/foo:bar",
        &adm,
        Value::Null,
    )
    .await;

    // 2.92: keypairs are imported only; '@' and '.' allowed in names.
    let r = nv(
        &c,
        "2.92",
        Method::POST,
        "/os-keypairs",
        &member,
        json!({"keypair": {"name": "gen"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let pk = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q a@b";
    let r = nv(
        &c,
        "2.92",
        Method::POST,
        "/os-keypairs",
        &member,
        json!({"keypair": {"name": "me@host.x", "public_key": pk}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = nv(
        &c,
        "2.91",
        Method::POST,
        "/os-keypairs",
        &member,
        json!({"keypair": {"name": "me@host.y", "public_key": pk}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // 2.82: accelerator-request-bound needs its tag (per-event 400, 207).
    let ev = json!({"events": [{"name": "accelerator-request-bound", "server_uuid": plain}]});
    let r = nv(
        &c,
        "2.82",
        Method::POST,
        "/os-server-external-events",
        &adm,
        ev.clone(),
    )
    .await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(r.body["events"][0]["code"], 400);
    assert_eq!(r.body["events"][0]["status"], "failed");
    assert_eq!(
        nv(
            &c,
            "2.81",
            Method::POST,
            "/os-server-external-events",
            &adm,
            ev
        )
        .await
        .status,
        400
    );

    // 2.81: image pre-caching by aggregate.
    let r = nv(
        &c,
        "2.81",
        Method::POST,
        "/os-aggregates",
        &adm,
        json!({"aggregate": {"name": "cache"}}),
    )
    .await;
    let agg = r.body["aggregate"]["id"].as_i64().unwrap();
    let path = format!("/os-aggregates/{agg}/images");
    let r = nv(
        &c,
        "2.81",
        Method::POST,
        &path,
        &adm,
        json!({"cache": [{"id": img}]}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = nv(
        &c,
        "2.81",
        Method::POST,
        &path,
        &adm,
        json!({"cache": [{"id": img}, {"id": img}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let missing = "0c6f3a55-0d8e-4b54-a1b4-5b2a1f6ed0a1";
    let r = nv(
        &c,
        "2.81",
        Method::POST,
        &path,
        &adm,
        json!({"cache": [{"id": missing}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = nv(
        &c,
        "2.81",
        Method::POST,
        "/os-aggregates/999/images",
        &adm,
        json!({"cache": [{"id": img}]}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        nv(
            &c,
            "2.80",
            Method::POST,
            &path,
            &adm,
            json!({"cache": [{"id": img}]})
        )
        .await
        .status,
        404
    );

    // 2.97: shares need virtiofs, which no host here offers.
    let r = nv(
        &c,
        "2.97",
        Method::GET,
        &format!("/servers/{plain}/shares"),
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"shares": []}));
    let share = json!({"share": {"share_id": missing}});
    let r = nv(
        &c,
        "2.97",
        Method::POST,
        &format!("/servers/{plain}/shares"),
        &member,
        share.clone(),
    )
    .await;
    assert_eq!(r.status, 409, "the server must be stopped: {}", r.body);
    assert_eq!(
        nv(
            &c,
            "2.96",
            Method::GET,
            &format!("/servers/{plain}/shares"),
            &member,
            Value::Null
        )
        .await
        .status,
        404
    );

    // 2.91: unshelve to a host (admins), a null zone unpins.
    assert_eq!(
        act(&zoned, json!({"shelve": null}), &member).await.status,
        202
    );
    wait_status(&c, &member, &zoned, &["SHELVED_OFFLOADED"]).await;
    let un = |mv: &'static str, body: Value, tok: String| {
        let (c, path) = (&c, format!("/servers/{zoned}/action"));
        async move { nv(c, mv, Method::POST, &path, &tok, body).await }
    };
    let r = un(
        "2.91",
        json!({"unshelve": {"host": "nowhere"}}),
        adm.clone(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = un(
        "2.91",
        json!({"unshelve": {"host": "nowhere"}}),
        member.clone(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = un(
        "2.90",
        json!({"unshelve": {"availability_zone": null}}),
        member.clone(),
    )
    .await;
    assert_eq!(r.status, 400, "null zone before 2.91: {}", r.body);
    let hosts = nv(
        &c,
        "2.53",
        Method::GET,
        "/os-hypervisors",
        &adm,
        Value::Null,
    )
    .await;
    let second = hosts.body["hypervisors"][1]["hypervisor_hostname"]
        .as_str()
        .unwrap()
        .to_string();
    let r = un(
        "2.91",
        json!({"unshelve": {"availability_zone": null, "host": second}}),
        adm.clone(),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let s = wait_status(&c, &adm, &zoned, &["ACTIVE"]).await;
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], second.as_str());
    let r = nv(
        &c,
        "2.96",
        Method::GET,
        &format!("/servers/{zoned}"),
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(
        r.body["server"]["pinned_availability_zone"],
        Value::Null,
        "unpinned"
    );
    c.stop().await;
}
