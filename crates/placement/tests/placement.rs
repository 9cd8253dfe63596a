//! The Placement API over HTTP, against the whole server booted in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_test_utils::{Resp, TestCloud};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const RP1: &str = "11111111-1111-1111-1111-111111111111";
const RP2: &str = "22222222-2222-2222-2222-222222222222";
const AGG: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const C1: &str = "cccccccc-0000-0000-0000-000000000001";
const C2: &str = "cccccccc-0000-0000-0000-000000000002";

struct P<'a> {
    tc: &'a TestCloud,
    tok: String,
}

impl P<'_> {
    async fn call(&self, method: Method, path: &str, mv: &str, body: Value) -> Resp {
        let ver = format!("placement {mv}");
        self.tc
            .request_h(
                method,
                &format!("/placement{path}"),
                Some(&self.tok),
                body,
                &[("OpenStack-API-Version", &ver)],
            )
            .await
    }
    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, "latest", Value::Null).await
    }
}

fn code(r: &Resp) -> String {
    r.body["errors"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn placement_end_to_end() {
    // No compute hosts: their providers would mix with the ones under test.
    let tc = TestCloud::start_with(ferro_test_utils::Backend::Sqlite, |c| {
        c.compute.fake_hosts = 0
    })
    .await
    .unwrap()
    .unwrap();
    let p = P {
        tc: &tc,
        tok: tc.admin_token().await,
    };

    // Version document: no token needed; microversion echo; 406 / 400.
    let r = tc
        .request(Method::GET, "/placement", None, Value::Null)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["versions"][0]["max_version"], "1.39");
    assert_eq!(r.header("openstack-api-version").unwrap(), "placement 1.0");
    let r = p
        .call(Method::GET, "/resource_providers", "1.20", Value::Null)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("openstack-api-version").unwrap(), "placement 1.20");
    assert_eq!(r.header("vary").unwrap(), "openstack-api-version");
    let r = p.get("/resource_providers").await;
    assert_eq!(r.header("openstack-api-version").unwrap(), "placement 1.39");
    assert!(r.header("last-modified").is_some());
    let r = p
        .call(Method::GET, "/resource_providers", "1.40", Value::Null)
        .await;
    assert_eq!(r.status, 406);
    assert_eq!(r.body["errors"][0]["status"], 406);
    let r = p
        .call(Method::GET, "/resource_providers", "1.abc", Value::Null)
        .await;
    assert_eq!(r.status, 400);
    // Auth.
    let r = tc
        .request(
            Method::GET,
            "/placement/resource_providers",
            None,
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["errors"][0]["title"], "Unauthorized");
    // Traits need 1.6.
    let r = p.call(Method::GET, "/traits", "1.5", Value::Null).await;
    assert_eq!(r.status, 404);

    // Providers.
    let r = p
        .call(
            Method::POST,
            "/resource_providers",
            "1.14",
            json!({"name": "cn1", "uuid": RP1}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.header("location").unwrap().ends_with(RP1));
    let r = p
        .call(
            Method::POST,
            "/resource_providers",
            "1.20",
            json!({"name": "cn2", "uuid": RP2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["generation"], 0);
    assert_eq!(r.body["root_provider_uuid"], RP2);
    let r = p
        .call(
            Method::POST,
            "/resource_providers",
            "1.20",
            json!({"name": "cn2"}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(code(&r), "placement.duplicate_name");
    let r = p.get(&format!("/resource_providers/{RP1}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], "cn1");
    let rels: Vec<&str> = r.body["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert!(rels.contains(&"allocations") && rels.contains(&"traits"));
    let r = p
        .get("/resource_providers/99999999-9999-9999-9999-999999999999")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(code(&r), "placement.resource_provider.not_found");

    // Inventories.
    let inv = json!({"resource_provider_generation": 0, "inventories": {
        "VCPU": {"total": 4, "allocation_ratio": 2.0, "max_unit": 4},
        "MEMORY_MB": {"total": 2048, "reserved": 512},
        "DISK_GB": {"total": 100},
    }});
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP1}/inventories"),
            "latest",
            inv.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resource_provider_generation"], 1);
    assert_eq!(r.body["inventories"]["VCPU"]["allocation_ratio"], 2.0);
    // Stale generation.
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP1}/inventories"),
            "latest",
            inv,
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(code(&r), "placement.concurrent_update");
    let r = p
        .call(
            Method::POST,
            &format!("/resource_providers/{RP2}/inventories"),
            "latest",
            json!({"resource_class": "VCPU", "total": 2}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["total"], 2);
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP2}/inventories/MEMORY_MB"),
            "latest",
            json!({"resource_provider_generation": 1, "total": 1024}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resource_provider_generation"], 2);
    let r = p
        .get(&format!("/resource_providers/{RP2}/inventories/MEMORY_MB"))
        .await;
    assert_eq!(r.body["total"], 1024);
    // reserved == total only from 1.26.
    let bad = json!({"resource_provider_generation": 2, "total": 10, "reserved": 10});
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP2}/inventories/DISK_GB"),
            "1.25",
            bad.clone(),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP2}/inventories/DISK_GB"),
            "1.26",
            bad,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Custom resource classes and traits.
    let r = p
        .call(
            Method::PUT,
            "/resource_classes/CUSTOM_GOLD",
            "1.7",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 201);
    let r = p
        .call(
            Method::PUT,
            "/resource_classes/CUSTOM_GOLD",
            "1.7",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = p
        .call(
            Method::DELETE,
            "/resource_classes/VCPU",
            "latest",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = p.get("/resource_classes").await;
    assert!(
        r.body["resource_classes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "CUSTOM_GOLD")
    );
    let r = p
        .call(Method::PUT, "/traits/CUSTOM_FAST", "latest", Value::Null)
        .await;
    assert_eq!(r.status, 201);
    let r = p
        .call(Method::PUT, "/traits/CUSTOM_FAST", "latest", Value::Null)
        .await;
    assert_eq!(r.status, 204);
    let r = p
        .call(Method::PUT, "/traits/NOT_CUSTOM", "latest", Value::Null)
        .await;
    assert_eq!(r.status, 400);
    let r = p.get("/traits/HW_CPU_X86_AVX2").await;
    assert_eq!(r.status, 204);
    let r = p.get("/traits?name=startswith:CUSTOM_").await;
    assert_eq!(r.body["traits"], json!(["CUSTOM_FAST"]));
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP1}/traits"),
            "latest",
            json!({"traits": ["CUSTOM_FAST", "HW_CPU_X86_AVX2"], "resource_provider_generation": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resource_provider_generation"], 2);
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP1}/traits"),
            "latest",
            json!({"traits": ["CUSTOM_NOPE"], "resource_provider_generation": 2}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = p.get("/traits?associated=true").await;
    assert_eq!(r.body["traits"], json!(["CUSTOM_FAST", "HW_CPU_X86_AVX2"]));
    let r = p
        .call(Method::DELETE, "/traits/CUSTOM_FAST", "latest", Value::Null)
        .await;
    assert_eq!(r.status, 409);

    // Aggregates (1.19 shape and generation).
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP1}/aggregates"),
            "1.19",
            json!({"aggregates": [AGG], "resource_provider_generation": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resource_provider_generation"], 3);
    let r = p
        .call(
            Method::PUT,
            &format!("/resource_providers/{RP1}/aggregates"),
            "1.19",
            json!({"aggregates": [], "resource_provider_generation": 2}),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = p
        .call(
            Method::GET,
            &format!("/resource_providers/{RP1}/aggregates"),
            "1.1",
            Value::Null,
        )
        .await;
    assert_eq!(r.body, json!({"aggregates": [AGG]}));

    // Provider list filters.
    let r = p
        .get(&format!("/resource_providers?member_of=in:{AGG}"))
        .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 1);
    let r = p.get("/resource_providers?resources=VCPU:3").await;
    assert_eq!(r.body["resource_providers"][0]["uuid"], RP1);
    let r = p.get("/resource_providers?required=!CUSTOM_FAST").await;
    assert_eq!(r.body["resource_providers"][0]["uuid"], RP2);
    let r = p.get("/resource_providers?name=cn2").await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 1);
    let r = p.get("/resource_providers?required=CUSTOM_NOPE").await;
    assert_eq!(r.status, 400);

    // Allocation candidates.
    let r = p
        .get("/allocation_candidates?resources=VCPU:2,MEMORY_MB:256")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 2);
    let s = &r.body["provider_summaries"][RP1];
    assert_eq!(s["resources"]["VCPU"], json!({"capacity": 8, "used": 0}));
    assert_eq!(s["resources"]["MEMORY_MB"]["capacity"], 1536);
    assert!(
        s["resources"]["DISK_GB"].is_object(),
        "1.27+ lists every class"
    );
    assert_eq!(s["root_provider_uuid"], RP1);
    assert_eq!(
        r.body["allocation_requests"][0]["mappings"][""],
        json!([RP1])
    );
    let r = p.get("/allocation_candidates?resources=VCPU:3").await;
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
    let r = p
        .get("/allocation_candidates?resources=VCPU:1&required=CUSTOM_FAST")
        .await;
    assert_eq!(
        r.body["allocation_requests"][0]["allocations"][RP1]["resources"]["VCPU"],
        1
    );
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
    let r = p
        .get("/allocation_candidates?resources=VCPU:1&required=in:CUSTOM_FAST,HW_CPU_X86_AVX2")
        .await;
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
    let r = p
        .get(&format!(
            "/allocation_candidates?resources=VCPU:1&member_of=!{AGG}"
        ))
        .await;
    assert_eq!(
        r.body["allocation_requests"][0]["allocations"][RP2]["resources"]["VCPU"],
        1
    );
    let r = p
        .get(&format!(
            "/allocation_candidates?resources=VCPU:1&in_tree={RP2}"
        ))
        .await;
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
    let r = p
        .get("/allocation_candidates?resources=VCPU:1&limit=1")
        .await;
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["provider_summaries"].as_object().unwrap().len(), 1);
    let r = p
        .call(
            Method::GET,
            "/allocation_candidates?resources=VCPU:1",
            "1.10",
            Value::Null,
        )
        .await;
    assert!(r.body["allocation_requests"][0]["allocations"].is_array());
    let r = p
        .get("/allocation_candidates?resources=VCPU:1&resources1=MEMORY_MB:128&group_policy=none")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.get("/allocation_candidates").await;
    assert_eq!(r.status, 400);

    // Allocations with consumer generations.
    let put = |gen_: Value, vcpu: u64| {
        json!({"allocations": {RP1: {"resources": {"VCPU": vcpu, "MEMORY_MB": 512}}},
               "project_id": "proj", "user_id": "user", "consumer_generation": gen_,
               "consumer_type": "INSTANCE"})
    };
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C1}"),
            "1.38",
            put(json!(1), 2),
        )
        .await;
    assert_eq!(r.status, 409, "new consumer needs null generation");
    assert_eq!(code(&r), "placement.concurrent_update");
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C1}"),
            "1.38",
            put(Value::Null, 2),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = p.get(&format!("/allocations/{C1}")).await;
    assert_eq!(r.body["consumer_generation"], 1);
    assert_eq!(r.body["project_id"], "proj");
    assert_eq!(r.body["consumer_type"], "INSTANCE");
    assert_eq!(r.body["allocations"][RP1]["resources"]["VCPU"], 2);
    assert_eq!(r.body["allocations"][RP1]["generation"], 4);
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C1}"),
            "1.38",
            put(Value::Null, 2),
        )
        .await;
    assert_eq!(r.status, 409, "existing consumer with null generation");
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C1}"),
            "1.38",
            put(json!(7), 2),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C1}"),
            "1.38",
            put(json!(1), 4),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    // Over capacity: VCPU capacity 8, 4 used; 5 more would exceed.
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C2}"),
            "1.28",
            json!({"allocations": {RP1: {"resources": {"VCPU": 5}}},
                   "project_id": "proj", "user_id": "user", "consumer_generation": null}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // max_unit 4 violated.
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C2}"),
            "1.28",
            json!({"allocations": {RP1: {"resources": {"VCPU": 4}}},
                   "project_id": "proj", "user_id": "other", "consumer_generation": null}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    // Old (< 1.12) list format, no generation checks.
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C2}"),
            "1.8",
            json!({"allocations": [{"resource_provider": {"uuid": RP2}, "resources": {"VCPU": 1}}],
                   "project_id": "proj", "user_id": "other"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = p
        .call(
            Method::GET,
            &format!("/allocations/{C2}"),
            "1.28",
            Value::Null,
        )
        .await;
    assert_eq!(r.body["consumer_generation"], 2);
    // POST /allocations moves C2 back to RP1 at the right generation.
    let r = p
        .call(
            Method::POST,
            "/allocations",
            "1.28",
            json!({C2: {"allocations": {RP1: {"resources": {"VCPU": 2}}},
                        "project_id": "proj", "user_id": "other", "consumer_generation": 2}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = p.get(&format!("/resource_providers/{RP1}/usages")).await;
    assert_eq!(r.body["usages"]["VCPU"], 6);
    assert_eq!(r.body["usages"]["DISK_GB"], 0);
    let r = p.get(&format!("/resource_providers/{RP2}/usages")).await;
    assert_eq!(r.body["usages"]["VCPU"], 0);
    let r = p
        .get(&format!("/resource_providers/{RP1}/allocations"))
        .await;
    assert_eq!(r.body["allocations"][C1]["resources"]["VCPU"], 4);
    assert_eq!(r.body["allocations"][C2]["consumer_generation"], 3);
    let r = p
        .call(Method::GET, "/usages?project_id=proj", "1.9", Value::Null)
        .await;
    assert_eq!(r.body, json!({"usages": {"VCPU": 6, "MEMORY_MB": 512}}));
    let r = p
        .call(
            Method::GET,
            "/usages?project_id=proj&user_id=other",
            "1.9",
            Value::Null,
        )
        .await;
    assert_eq!(r.body["usages"]["VCPU"], 2);
    let r = p.get("/usages?project_id=proj").await;
    assert_eq!(r.body["usages"]["INSTANCE"]["consumer_count"], 1);
    assert_eq!(r.body["usages"]["unknown"]["VCPU"], 2);
    let r = p.get("/usages").await;
    assert_eq!(r.status, 400);
    let r = p.get("/allocation_candidates?resources=VCPU:3").await;
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 0);

    // In-use inventory, provider deletion.
    let r = p
        .call(
            Method::DELETE,
            &format!("/resource_providers/{RP1}/inventories/VCPU"),
            "latest",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(code(&r), "placement.inventory.inuse");
    let r = p
        .call(
            Method::DELETE,
            &format!("/resource_providers/{RP1}"),
            "latest",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 409);
    // Emptying a consumer through PUT deletes it.
    let r = p
        .call(
            Method::PUT,
            &format!("/allocations/{C2}"),
            "1.28",
            json!({"allocations": {}, "project_id": "proj", "user_id": "other", "consumer_generation": 3}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = p.get(&format!("/allocations/{C2}")).await;
    assert_eq!(r.body, json!({"allocations": {}}));
    let r = p
        .call(
            Method::DELETE,
            &format!("/allocations/{C1}"),
            "latest",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = p
        .call(
            Method::DELETE,
            &format!("/allocations/{C1}"),
            "latest",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 404);

    // Nested providers: a child blocks deletion of its parent.
    let child = "33333333-3333-3333-3333-333333333333";
    let r = p
        .call(
            Method::POST,
            "/resource_providers",
            "latest",
            json!({"name": "child", "uuid": child, "parent_provider_uuid": RP1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["root_provider_uuid"], RP1);
    let r = p.get(&format!("/resource_providers?in_tree={RP1}")).await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 2);
    let r = p
        .call(
            Method::DELETE,
            &format!("/resource_providers/{RP1}"),
            "latest",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(code(&r), "placement.resource_provider.cannot_delete_parent");
    let r = p
        .call(
            Method::DELETE,
            &format!("/resource_providers/{child}"),
            "latest",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = p
        .call(
            Method::DELETE,
            &format!("/resource_providers/{RP1}"),
            "latest",
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = p.get(&format!("/resource_providers/{RP1}")).await;
    assert_eq!(r.status, 404);
    let r = p
        .call(Method::DELETE, "/traits/CUSTOM_FAST", "latest", Value::Null)
        .await;
    assert_eq!(r.status, 204);
    tc.stop().await;
}

#[tokio::test]
async fn non_admin_is_forbidden() {
    // No compute hosts: their providers would mix with the ones under test.
    let tc = TestCloud::start_with(ferro_test_utils::Backend::Sqlite, |c| {
        c.compute.fake_hosts = 0
    })
    .await
    .unwrap()
    .unwrap();
    let admin = tc.admin_token().await;
    let r = tc
        .ks(
            Method::POST,
            "/users",
            &admin,
            json!({"user": {"name": "bob", "password": "bob-secret-1", "domain_id": "default"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let uid = r.body["user"]["id"].as_str().unwrap().to_string();
    let r = tc
        .ks(Method::GET, "/projects?name=admin", &admin, Value::Null)
        .await;
    let pid = r.body["projects"][0]["id"].as_str().unwrap().to_string();
    let r = tc
        .ks(Method::GET, "/roles?name=member", &admin, Value::Null)
        .await;
    let rid = r.body["roles"][0]["id"].as_str().unwrap().to_string();
    let r = tc
        .ks(
            Method::PUT,
            &format!("/projects/{pid}/users/{uid}/roles/{rid}"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = tc
        .password_token(
            json!({"name": "bob", "domain": {"id": "default"}}),
            "bob-secret-1",
            Some(json!({"project": {"id": pid}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let tok = r.header("x-subject-token").unwrap();
    let r = tc
        .request(
            Method::GET,
            "/placement/resource_providers",
            Some(&tok),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["errors"][0]["status"], 403);
    tc.stop().await;
}

/// The Rust API, and a second PlacementService over the same database
/// seeing the same state (write-through persistence).
#[tokio::test]
async fn rust_api_and_persistence() {
    // No compute hosts: their providers would mix with the ones under test.
    let tc = TestCloud::start_with(ferro_test_utils::Backend::Sqlite, |c| {
        c.compute.fake_hosts = 0
    })
    .await
    .unwrap()
    .unwrap();
    let cfg = ferro_config::Config {
        data_dir: Some(tc.data_dir()),
        ..ferro_config::Config::default()
    };
    let db = ferro_db::Db::connect(&cfg.database_url(), 2).await.unwrap();
    let validator: Arc<dyn ferro_auth::TokenValidator> = tc.identity.clone();
    let svc = ferro_placement::PlacementService::new(db.clone(), cfg.clone(), validator.clone())
        .await
        .unwrap();
    let inv = |total: u64| ferro_placement::Inventory {
        total,
        reserved: 0,
        min_unit: 1,
        max_unit: total,
        step_size: 1,
        allocation_ratio: 1.0,
    };
    let mut invs = BTreeMap::new();
    invs.insert("VCPU".to_string(), inv(4));
    invs.insert("MEMORY_MB".to_string(), inv(4096));
    svc.ensure_provider(
        RP1,
        "host1",
        invs.clone(),
        vec!["COMPUTE_NODE".into(), "CUSTOM_X".into()],
    )
    .await
    .unwrap();
    // Unchanged: the generation stays.
    svc.ensure_provider(RP1, "host1", invs.clone(), vec!["COMPUTE_NODE".into()])
        .await
        .unwrap();
    svc.set_provider_aggregates(RP1, vec![AGG.into()])
        .await
        .unwrap();
    let q = ferro_placement::CandidateQuery {
        resources: [("VCPU".to_string(), 2u64)].into(),
        required: vec!["CUSTOM_X".into()],
        member_of: vec![vec![AGG.into()]],
        ..Default::default()
    };
    let c = svc.allocation_candidates(&q).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].summary["VCPU"], (4, 0));
    let allocs: ferro_placement::AllocMap =
        [(RP1.to_string(), [("VCPU".to_string(), 3u64)].into())].into();
    svc.put_allocations(C1, "p", "u", allocs.clone(), None)
        .await
        .unwrap();
    let e = svc
        .put_allocations(C2, "p", "u", allocs.clone(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ferro_common::Error::Conflict { .. }), "{e:?}");
    let (got, gen_) = svc.get_allocations(C1).await;
    assert_eq!(got, allocs);
    assert_eq!(gen_, Some(1));
    // None means "do not check" for the Rust API; Some must match.
    svc.put_allocations(C1, "p", "u", allocs.clone(), None)
        .await
        .unwrap();
    let e = svc
        .put_allocations(C1, "p", "u", allocs.clone(), Some(1))
        .await
        .unwrap_err();
    assert!(matches!(e, ferro_common::Error::Conflict { .. }));
    svc.put_allocations(C1, "p", "u", allocs.clone(), Some(2))
        .await
        .unwrap();
    assert!(matches!(
        svc.delete_provider(RP1).await.unwrap_err(),
        ferro_common::Error::Conflict { .. }
    ));

    // A fresh service over the same database sees everything.
    let svc2 = ferro_placement::PlacementService::new(db.clone(), cfg.clone(), validator.clone())
        .await
        .unwrap();
    assert_eq!(svc2.get_allocations(C1).await, (allocs.clone(), Some(3)));
    assert_eq!(svc2.provider_usages(RP1).await["VCPU"], 3);
    assert_eq!(svc2.provider_aggregates(RP1).await, vec![AGG.to_string()]);
    let c = svc2.allocation_candidates(&q).await.unwrap();
    assert!(c.is_empty(), "only 1 VCPU left");
    let mut q1 = q.clone();
    q1.resources = [("VCPU".to_string(), 1u64)].into();
    let c = svc2.allocation_candidates(&q1).await.unwrap();
    assert_eq!(c[0].summary["VCPU"], (4, 3));
    assert!(c[0].traits.contains(&"CUSTOM_X".to_string()));

    // And the HTTP API (the server's own instance loaded before these
    // writes, so it does not see them) – check through svc2 instead.
    svc2.delete_allocations(C1).await.unwrap();
    svc2.delete_allocations(C1).await.unwrap();
    svc2.delete_provider(RP1).await.unwrap();
    let svc3 = ferro_placement::PlacementService::new(db, cfg, validator)
        .await
        .unwrap();
    assert_eq!(svc3.get_allocations(C1).await, (BTreeMap::new(), None));
    assert!(svc3.provider_aggregates(RP1).await.is_empty());
    assert!(svc3.allocation_candidates(&q1).await.unwrap().is_empty());
    tc.stop().await;
}

/// Manual interop aid: `PLACEMENT_SERVE_SECS=300 cargo test -p ferro-placement
/// --test placement serve_for_clients -- --ignored --nocapture` boots a cloud
/// and prints the auth URL for osc-placement / openstacksdk.
#[tokio::test]
#[ignore]
async fn serve_for_clients() {
    // No compute hosts: their providers would mix with the ones under test.
    let tc = TestCloud::start_with(ferro_test_utils::Backend::Sqlite, |c| {
        c.compute.fake_hosts = 0
    })
    .await
    .unwrap()
    .unwrap();
    let secs: u64 = std::env::var("PLACEMENT_SERVE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    println!("OS_AUTH_URL={}/identity/v3", tc.url);
    println!("OS_PASSWORD={}", ferro_test_utils::ADMIN_PASSWORD);
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    tc.stop().await;
}
