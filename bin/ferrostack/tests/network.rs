//! Networking integration tests: the real server in-process, driven over
//! HTTP as openstackclient and Tempest do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_test_utils::{Backend, Resp, TestCloud};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn neutron(c: &TestCloud, m: Method, path: &str, tok: &str, body: Value) -> Resp {
    c.request(m, &format!("/networking/v2.0{path}"), Some(tok), body)
        .await
}

async fn net_with_subnet(c: &TestCloud, tok: &str, name: &str, cidr: &str) -> (String, String) {
    let n = neutron(
        c,
        Method::POST,
        "/networks",
        tok,
        json!({"network": {"name": name}}),
    )
    .await;
    assert_eq!(n.status, 201, "{}", n.body);
    let net = n.body["network"]["id"].as_str().unwrap().to_string();
    let s = neutron(c, Method::POST, "/subnets", tok,
        json!({"subnet": {"network_id": net, "cidr": cidr, "ip_version": 4, "name": format!("{name}-sub")}})).await;
    assert_eq!(s.status, 201, "{}", s.body);
    (net, s.body["subnet"]["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn networks_subnets_ports_ipam() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 0)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    // Discovery, extensions, the bootstrapped public network.
    let v = c
        .request(Method::GET, "/networking/", None, Value::Null)
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body["versions"][0]["id"], "v2.0");
    let e = neutron(&c, Method::GET, "/extensions/router", &tok, Value::Null).await;
    assert_eq!(e.body["extension"]["alias"], "router");
    let p = neutron(
        &c,
        Method::GET,
        "/networks?router:external=True",
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(p.body["networks"][0]["name"], "public");
    assert_eq!(p.body["networks"][0]["provider:network_type"], "flat");

    let (net, sub) = net_with_subnet(&c, &tok, "net1", "10.0.0.0/24").await;
    let n = neutron(
        &c,
        Method::GET,
        &format!("/networks/{net}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(n.body["network"]["mtu"], 1450);
    assert_eq!(n.body["network"]["provider:network_type"], "vxlan");
    assert_eq!(n.body["network"]["subnets"], json!([sub]));
    let s = neutron(
        &c,
        Method::GET,
        &format!("/subnets/{sub}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(s.body["subnet"]["gateway_ip"], "10.0.0.1");
    assert_eq!(
        s.body["subnet"]["allocation_pools"],
        json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
    );
    // Overlap on the same network, bad cidr.
    let o = neutron(
        &c,
        Method::POST,
        "/subnets",
        &tok,
        json!({"subnet": {"network_id": net, "cidr": "10.0.0.128/25", "ip_version": 4}}),
    )
    .await;
    assert_eq!(o.status, 400);
    assert!(
        o.body["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("overlaps with another subnet")
    );
    let o = neutron(
        &c,
        Method::POST,
        "/subnets",
        &tok,
        json!({"subnet": {"network_id": net, "cidr": "10.9.0.5/16", "ip_version": 4}}),
    )
    .await;
    // Host bits are dropped, as Neutron's create_subnet does.
    assert_eq!(o.status, 201, "{}", o.body);
    assert_eq!(o.body["subnet"]["cidr"], "10.9.0.0/16");
    assert_eq!(o.body["subnet"]["gateway_ip"], "10.9.0.1");
    assert_eq!(
        o.body["subnet"]["allocation_pools"],
        json!([{"start": "10.9.0.2", "end": "10.9.255.254"}])
    );
    let extra = o.body["subnet"]["id"].as_str().unwrap().to_string();
    let d = neutron(
        &c,
        Method::DELETE,
        &format!("/subnets/{extra}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(d.status, 204);
    for bad in ["10.9.0.5", "10.9.0.0/33", "10.9.0/24"] {
        let o = neutron(
            &c,
            Method::POST,
            "/subnets",
            &tok,
            json!({"subnet": {"network_id": net, "cidr": bad, "ip_version": 4}}),
        )
        .await;
        assert_eq!(o.status, 400, "{bad}: {}", o.body);
    }

    // A port: MAC, an address from the pool (the DHCP port holds one too).
    let p = neutron(
        &c,
        Method::POST,
        "/ports",
        &tok,
        json!({"port": {"network_id": net, "name": "p1"}}),
    )
    .await;
    assert_eq!(p.status, 201, "{}", p.body);
    let port = p.body["port"].clone();
    assert!(
        port["mac_address"]
            .as_str()
            .unwrap()
            .starts_with("fa:16:3e:")
    );
    let ip = port["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10.0.0.") && ip != "10.0.0.1");
    assert_eq!(port["security_groups"].as_array().unwrap().len(), 1);
    // The same address again is a 409 with Neutron's type.
    let d = neutron(
        &c,
        Method::POST,
        "/ports",
        &tok,
        json!({"port": {"network_id": net, "fixed_ips": [{"ip_address": ip}]}}),
    )
    .await;
    assert_eq!(d.status, 409);
    assert_eq!(d.body["NeutronError"]["type"], "IpAddressAlreadyAllocated");
    // Filters, fields, pagination.
    let l = neutron(
        &c,
        Method::GET,
        &format!("/ports?fixed_ips=ip_address%3D{ip}&fields=id&fields=name"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(l.body["ports"], json!([{"id": port["id"], "name": "p1"}]));
    let l = neutron(
        &c,
        Method::GET,
        &format!("/ports?network_id={net}&limit=1"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(l.body["ports"].as_array().unwrap().len(), 1);
    assert_eq!(l.body["ports_links"][0]["rel"], "next");
    let bad = neutron(&c, Method::GET, "/ports?bogus=1", &tok, Value::Null).await;
    assert_eq!(bad.status, 400);
    // If-Match compare-and-swap.
    let pid = port["id"].as_str().unwrap();
    let r = c
        .request_h(
            Method::PUT,
            &format!("/networking/v2.0/ports/{pid}"),
            Some(&tok),
            json!({"port": {"name": "x"}}),
            &[("If-Match", "revision_number=99")],
        )
        .await;
    assert_eq!(r.status, 412);
    // Tags.
    let t = neutron(
        &c,
        Method::PUT,
        &format!("/networks/{net}/tags"),
        &tok,
        json!({"tags": ["a", "b"]}),
    )
    .await;
    assert_eq!(t.body["tags"], json!(["a", "b"]));
    let l = neutron(&c, Method::GET, "/networks?tags-any=b", &tok, Value::Null).await;
    assert_eq!(l.body["networks"].as_array().unwrap().len(), 1);
    // POST adds the missing tags and answers with the ones sent (Neutron's
    // create_tags); duplicates and more than 50 tags are refused.
    let tags_path = format!("/networks/{net}/tags");
    let p = neutron(
        &c,
        Method::POST,
        &tags_path,
        &tok,
        json!({"tags": ["b", "c"]}),
    )
    .await;
    assert_eq!(p.status, 201, "{}", p.body);
    assert_eq!(p.body["tags"], json!(["b", "c"]));
    let all = neutron(&c, Method::GET, &tags_path, &tok, Value::Null).await;
    assert_eq!(all.body["tags"], json!(["a", "b", "c"]));
    let dup = neutron(
        &c,
        Method::POST,
        &tags_path,
        &tok,
        json!({"tags": ["d", "d"]}),
    )
    .await;
    assert_eq!(dup.status, 400, "{}", dup.body);
    assert_eq!(
        dup.body["NeutronError"]["message"],
        "Invalid input for operation: Duplicate items in the list: 'd'."
    );
    let many: Vec<String> = (0..51).map(|n| format!("t{n}")).collect();
    let over = neutron(&c, Method::PUT, &tags_path, &tok, json!({ "tags": many })).await;
    assert_eq!(over.status, 400, "{}", over.body);
    assert_eq!(
        over.body["NeutronError"]["message"],
        "Bad network request: The number of tags exceed the per-resource limit of 50."
    );
    let bad = neutron(&c, Method::POST, &tags_path, &tok, json!({"tag": ["x"]})).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let all = neutron(&c, Method::GET, &tags_path, &tok, Value::Null).await;
    assert_eq!(
        all.body["tags"],
        json!(["a", "b", "c"]),
        "nothing half-written"
    );
    // In use: the network cannot go while the port is there; the subnet neither.
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/networks/{net}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        409
    );
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/subnets/{sub}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        409
    );
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/ports/{pid}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        204
    );
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/networks/{net}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        204
    );
    let l = neutron(
        &c,
        Method::GET,
        &format!("/ports?network_id={net}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(
        l.body["ports"],
        json!([]),
        "DHCP port removed with the network"
    );

    // Security groups: default rules, duplicates refused.
    let g = neutron(
        &c,
        Method::GET,
        "/security-groups?name=default",
        &tok,
        Value::Null,
    )
    .await;
    let def = &g.body["security_groups"][0];
    assert_eq!(def["security_group_rules"].as_array().unwrap().len(), 4);
    let rule = json!({"security_group_rule": {"security_group_id": def["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}});
    assert_eq!(
        neutron(
            &c,
            Method::POST,
            "/security-group-rules",
            &tok,
            rule.clone()
        )
        .await
        .status,
        201
    );
    let dup = neutron(&c, Method::POST, "/security-group-rules", &tok, rule).await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.body["NeutronError"]["type"], "SecurityGroupRuleExists");
    c.stop().await;
}

/// Concurrent port creates on one small subnet until exhaustion: every
/// address is handed out exactly once, then 409.
#[tokio::test]
async fn ipam_concurrency_no_duplicates() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.compute.fake_hosts = 0;
        cfg.network.quota_port = -1;
    })
    .await
    .unwrap()
    .unwrap();
    let tok = c.admin_token().await;
    let (net, _) = net_with_subnet(&c, &tok, "small", "10.1.0.0/26").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = c.client.clone();
        let url = format!("{}/networking/v2.0/ports", c.url);
        let tok = tok.clone();
        let net = net.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let r = client
                    .post(&url)
                    .header("X-Auth-Token", &tok)
                    .json(&json!({"port": {"network_id": net}}))
                    .send()
                    .await
                    .unwrap();
                let st = r.status().as_u16();
                let b: Value = r.json().await.unwrap();
                if st == 409 {
                    assert_eq!(b["NeutronError"]["type"], "IpAddressGenerationFailure");
                    return got;
                }
                assert_eq!(st, 201, "{b}");
                got.push(
                    b["port"]["fixed_ips"][0]["ip_address"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let uniq: HashSet<&String> = all.iter().collect();
    assert_eq!(uniq.len(), all.len(), "duplicate addresses handed out");
    // 62 usable minus gateway minus the DHCP port.
    assert_eq!(all.len(), 60);
    c.stop().await;
}

/// A small raw image with its bits uploaded, to boot servers from.
async fn raw_image(c: &TestCloud, tok: &str) -> String {
    let img = c
        .request(
            Method::POST,
            "/image/v2/images",
            Some(tok),
            json!({"name": "img", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let img = img.body["id"].as_str().unwrap().to_string();
    let up = c
        .client
        .put(format!("{}/image/v2/images/{img}/file", c.url))
        .header("X-Auth-Token", tok)
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 204);
    img
}

async fn wait_server(c: &TestCloud, tok: &str, id: &str, want: &str) -> Value {
    let t = Instant::now();
    loop {
        let r = c
            .request_h(
                Method::GET,
                &format!("/compute/v2.1/servers/{id}"),
                Some(tok),
                Value::Null,
                &[("OpenStack-API-Version", "compute 2.79")],
            )
            .await;
        if want == "DELETED" && r.status == 404 {
            return Value::Null;
        }
        if r.body["server"]["status"] == want {
            return r.body["server"].clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server stuck: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CLI golden path in API calls: router with a gateway, interface,
/// server on the network, floating IP, addresses in server show; then
/// everything deleted in reverse with no ports left behind.
#[tokio::test]
async fn router_floating_ip_and_server_ports() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 1)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let ports_before = neutron(&c, Method::GET, "/ports", &tok, Value::Null)
        .await
        .body["ports"]
        .as_array()
        .unwrap()
        .len();
    let (net, sub) = net_with_subnet(&c, &tok, "net1", "10.0.0.0/24").await;
    let public = neutron(&c, Method::GET, "/networks?name=public", &tok, Value::Null)
        .await
        .body["networks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = neutron(
        &c,
        Method::POST,
        "/routers",
        &tok,
        json!({"router": {"name": "r1", "external_gateway_info": {"network_id": public}}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.body["router"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.body["router"]["external_gateway_info"]["enable_snat"],
        true
    );
    let gw_ip = r.body["router"]["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap();
    assert!(gw_ip.starts_with("172.24.4."));
    let i = neutron(
        &c,
        Method::PUT,
        &format!("/routers/{rid}/add_router_interface"),
        &tok,
        json!({"subnet_id": sub}),
    )
    .await;
    assert_eq!(i.status, 200, "{}", i.body);
    // The subnet with a router interface cannot be deleted.
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/subnets/{sub}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        409
    );

    // A server on the network.
    let img = raw_image(&c, &tok).await;
    let s = c.request_h(Method::POST, "/compute/v2.1/servers", Some(&tok),
        json!({"server": {"name": "s1", "imageRef": img, "flavorRef": "1", "networks": [{"uuid": net}]}}),
        &[("OpenStack-API-Version", "compute 2.79")]).await;
    assert_eq!(s.status, 202, "{}", s.body);
    let sid = s.body["server"]["id"].as_str().unwrap().to_string();
    let srv = wait_server(&c, &tok, &sid, "ACTIVE").await;
    let fixed = srv["addresses"]["net1"][0]["addr"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fixed.starts_with("10.0.0."));
    let ports = neutron(
        &c,
        Method::GET,
        &format!("/ports?device_id={sid}"),
        &tok,
        Value::Null,
    )
    .await;
    let port = ports.body["ports"][0].clone();
    assert!(!port["binding:host_id"].as_str().unwrap().is_empty());
    // The agent wires it: ACTIVE.
    let t = Instant::now();
    loop {
        let p = neutron(
            &c,
            Method::GET,
            &format!("/ports/{}", port["id"].as_str().unwrap()),
            &tok,
            Value::Null,
        )
        .await;
        if p.body["port"]["status"] == "ACTIVE" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "port not ACTIVE: {}",
            p.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A floating IP associated with the server's port.
    let f = neutron(
        &c,
        Method::POST,
        "/floatingips",
        &tok,
        json!({"floatingip": {"floating_network_id": public, "port_id": port["id"]}}),
    )
    .await;
    assert_eq!(f.status, 201, "{}", f.body);
    assert_eq!(f.body["floatingip"]["router_id"], json!(rid));
    assert_eq!(f.body["floatingip"]["fixed_ip_address"], json!(fixed));
    let fid = f.body["floatingip"]["id"].as_str().unwrap().to_string();
    let fip = f.body["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    let srv = wait_server(&c, &tok, &sid, "ACTIVE").await;
    let addrs: Vec<(String, String)> = srv["addresses"]["net1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["addr"].as_str().unwrap().to_string(),
                a["OS-EXT-IPS:type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        addrs,
        vec![
            (fixed.clone(), "fixed".to_string()),
            (fip.clone(), "floating".to_string())
        ]
    );
    // Its status follows the router's host: ACTIVE once in place, DOWN
    // while the router is administratively down, ACTIVE again after.
    let fip_status = |want: &'static str| {
        let (c, tok, fid) = (&c, tok.clone(), fid.clone());
        async move {
            let t0 = std::time::Instant::now();
            loop {
                let f = neutron(
                    c,
                    Method::GET,
                    &format!("/floatingips/{fid}"),
                    &tok,
                    Value::Null,
                )
                .await;
                if f.body["floatingip"]["status"] == want {
                    return;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "floating IP not {want}: {}",
                    f.body
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    fip_status("ACTIVE").await;
    for (up, want) in [(false, "DOWN"), (true, "ACTIVE")] {
        let r = neutron(
            &c,
            Method::PUT,
            &format!("/routers/{rid}"),
            &tok,
            json!({"router": {"admin_state_up": up}}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        fip_status(want).await;
    }
    // Agent scheduling (l3_agent_scheduler): the router's L3 agent; taken
    // off it, the router is realised nowhere (its floating IP goes DOWN)
    // and stays unhosted; added back, it works again.
    let agent_of = |typ: &'static str| {
        let (c, tok) = (&c, tok.clone());
        async move {
            let a = neutron(
                c,
                Method::GET,
                &format!("/agents?agent_type={typ}"),
                &tok,
                Value::Null,
            )
            .await;
            // Neutron's _make_agent_dict: the object versions it reported.
            assert_eq!(a.body["agents"][0]["resource_versions"], json!({}));
            a.body["agents"][0]["id"].as_str().unwrap().to_string()
        }
    };
    let (l3, dhcp) = (agent_of("L3 agent").await, agent_of("DHCP agent").await);
    let hosting = |path: String| {
        let (c, tok) = (&c, tok.clone());
        async move {
            let r = neutron(c, Method::GET, &path, &tok, Value::Null).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            r.body
        }
    };
    let l3_agents = hosting(format!("/routers/{rid}/l3-agents")).await;
    assert_eq!(l3_agents["agents"][0]["id"], l3.as_str(), "{l3_agents}");
    let on_agent = hosting(format!("/agents/{l3}/l3-routers")).await;
    assert!(
        on_agent["routers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == rid.as_str())
    );
    let off = neutron(
        &c,
        Method::DELETE,
        &format!("/agents/{l3}/l3-routers/{rid}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(off.status, 204, "{}", off.body);
    assert_eq!(
        hosting(format!("/routers/{rid}/l3-agents")).await["agents"],
        json!([])
    );
    fip_status("DOWN").await;
    // Not an L3 agent; not a router.
    let wrong = neutron(
        &c,
        Method::POST,
        &format!("/agents/{dhcp}/l3-routers"),
        &tok,
        json!({"router_id": rid}),
    )
    .await;
    assert_eq!(
        (
            wrong.status.as_u16(),
            wrong.body["NeutronError"]["type"].as_str()
        ),
        (404, Some("InvalidL3Agent")),
        "{}",
        wrong.body
    );
    let wrong = neutron(
        &c,
        Method::POST,
        &format!("/agents/{l3}/l3-routers"),
        &tok,
        json!({"router_id": "nope"}),
    )
    .await;
    assert_eq!(wrong.status, 404, "{}", wrong.body);
    let back = neutron(
        &c,
        Method::POST,
        &format!("/agents/{l3}/l3-routers"),
        &tok,
        json!({"router_id": rid}),
    )
    .await;
    assert_eq!((back.status.as_u16(), &back.body), (201, &Value::Null));
    assert_eq!(
        hosting(format!("/routers/{rid}/l3-agents")).await["agents"][0]["id"],
        l3.as_str()
    );
    fip_status("ACTIVE").await;
    // Adding it where it is already is no change.
    let again = neutron(
        &c,
        Method::POST,
        &format!("/agents/{l3}/l3-routers"),
        &tok,
        json!({"router_id": rid}),
    )
    .await;
    assert_eq!(again.status, 201, "{}", again.body);
    // DHCP (dhcp_agent_scheduler): the subnet's network is served; one
    // without a subnet is not, until an admin adds it.
    let served = hosting(format!("/networks/{net}/dhcp-agents")).await;
    assert_eq!(served["agents"][0]["id"], dhcp.as_str(), "{served}");
    let bare = neutron(
        &c,
        Method::POST,
        "/networks",
        &tok,
        json!({"network": {"name": "bare"}}),
    )
    .await;
    let bare = bare.body["network"]["id"].as_str().unwrap().to_string();
    let nets_of = |v: Value| {
        v["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect::<HashSet<_>>()
    };
    let nets = nets_of(hosting(format!("/agents/{dhcp}/dhcp-networks")).await);
    assert!(nets.contains(&net) && !nets.contains(&bare), "{nets:?}");
    let add = neutron(
        &c,
        Method::POST,
        &format!("/agents/{dhcp}/dhcp-networks"),
        &tok,
        json!({"network_id": bare}),
    )
    .await;
    assert_eq!(add.status, 201, "{}", add.body);
    let add = neutron(
        &c,
        Method::POST,
        &format!("/agents/{dhcp}/dhcp-networks"),
        &tok,
        json!({"network_id": bare}),
    )
    .await;
    assert_eq!(
        (
            add.status.as_u16(),
            add.body["NeutronError"]["type"].as_str()
        ),
        (409, Some("NetworkHostedByDHCPAgent"))
    );
    assert!(nets_of(hosting(format!("/agents/{dhcp}/dhcp-networks")).await).contains(&bare));
    let rm = neutron(
        &c,
        Method::DELETE,
        &format!("/agents/{dhcp}/dhcp-networks/{bare}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(rm.status, 204, "{}", rm.body);
    let rm = neutron(
        &c,
        Method::DELETE,
        &format!("/agents/{dhcp}/dhcp-networks/{bare}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(
        (rm.status.as_u16(), rm.body["NeutronError"]["type"].as_str()),
        (409, Some("NetworkNotHostedByDhcpAgent"))
    );
    assert_eq!(
        hosting(format!("/networks/{bare}/dhcp-agents")).await["agents"],
        json!([])
    );
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/networks/{bare}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        204
    );
    // Scheduling is for admins.
    let (_, user) = c.member_user(&tok, "sched-user").await;
    let denied = neutron(
        &c,
        Method::GET,
        &format!("/routers/{rid}/l3-agents"),
        &user,
        Value::Null,
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    // The interface cannot go while the floating IP needs it.
    let rm = neutron(
        &c,
        Method::PUT,
        &format!("/routers/{rid}/remove_router_interface"),
        &tok,
        json!({"subnet_id": sub}),
    )
    .await;
    assert_eq!(rm.status, 409);

    // Reverse order: server (its port goes), floating IP, interface, router, subnet, network.
    let d = c
        .request_h(
            Method::DELETE,
            &format!("/compute/v2.1/servers/{sid}"),
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "compute 2.79")],
        )
        .await;
    assert_eq!(d.status, 204);
    wait_server(&c, &tok, &sid, "DELETED").await;
    let ports = neutron(
        &c,
        Method::GET,
        &format!("/ports?device_id={sid}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(ports.body["ports"], json!([]));
    let f = neutron(
        &c,
        Method::GET,
        &format!("/floatingips/{fid}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(f.body["floatingip"]["port_id"], Value::Null);
    fip_status("DOWN").await;
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/floatingips/{fid}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        204
    );
    let rm = neutron(
        &c,
        Method::PUT,
        &format!("/routers/{rid}/remove_router_interface"),
        &tok,
        json!({"subnet_id": sub}),
    )
    .await;
    assert_eq!(rm.status, 200, "{}", rm.body);
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/routers/{rid}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        204
    );
    assert_eq!(
        neutron(
            &c,
            Method::DELETE,
            &format!("/networks/{net}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        204
    );
    let after = neutron(&c, Method::GET, "/ports", &tok, Value::Null)
        .await
        .body["ports"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, ports_before, "no orphan ports");
    c.stop().await;
}

async fn nova(c: &TestCloud, m: Method, path: &str, tok: &str, body: Value, mv: &str) -> Resp {
    c.request_h(
        m,
        &format!("/compute/v2.1{path}"),
        Some(tok),
        body,
        &[("OpenStack-API-Version", &format!("compute {mv}"))],
    )
    .await
}

/// Nova's legacy proxies (os-security-groups, os-security-group-rules,
/// os-floating-ips, os-floating-ip-pools, os-tenant-networks) and the
/// server security-group and floating-IP actions, translated into
/// Networking calls: what they do shows up in the Networking API.
#[tokio::test]
async fn nova_network_proxies() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 1)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let (net, sub) = net_with_subnet(&c, &tok, "net1", "10.0.0.0/24").await;
    let public = neutron(&c, Method::GET, "/networks?name=public", &tok, Value::Null)
        .await
        .body["networks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = neutron(
        &c,
        Method::POST,
        "/routers",
        &tok,
        json!({"router": {"name": "r1", "external_gateway_info": {"network_id": public}}}),
    )
    .await;
    let rid = r.body["router"]["id"].as_str().unwrap().to_string();
    let i = neutron(
        &c,
        Method::PUT,
        &format!("/routers/{rid}/add_router_interface"),
        &tok,
        json!({"subnet_id": sub}),
    )
    .await;
    assert_eq!(i.status, 200, "{}", i.body);

    // Security groups and rules.
    let g = nova(
        &c,
        Method::POST,
        "/os-security-groups",
        &tok,
        json!({"security_group": {"name": " web ", "description": "d"}}),
        "2.1",
    )
    .await;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.body["security_group"]["name"], " web ");
    assert_eq!(g.body["security_group"]["rules"], json!([]));
    let sg = g.body["security_group"]["id"].as_str().unwrap().to_string();
    let blank = nova(
        &c,
        Method::POST,
        "/os-security-groups",
        &tok,
        json!({"security_group": {"name": " ", "description": "d"}}),
        "2.1",
    )
    .await;
    assert_eq!(blank.status, 400);
    let rule = json!({"security_group_rule": {"parent_group_id": sg, "ip_protocol": "tcp", "from_port": 22, "to_port": 22}});
    let r = nova(
        &c,
        Method::POST,
        "/os-security-group-rules",
        &tok,
        rule.clone(),
        "2.1",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rv = &r.body["security_group_rule"];
    assert_eq!(rv["ip_range"], json!({"cidr": "0.0.0.0/0"}));
    assert_eq!(rv["group"], json!({}));
    assert_eq!(rv["parent_group_id"], json!(sg));
    let dup = nova(
        &c,
        Method::POST,
        "/os-security-group-rules",
        &tok,
        rule,
        "2.1",
    )
    .await;
    assert_eq!(dup.status, 400, "{}", dup.body);
    let bad_parent = nova(&c, Method::POST, "/os-security-group-rules", &tok,
        json!({"security_group_rule": {"parent_group_id": "nope", "ip_protocol": "tcp", "from_port": 22, "to_port": 22}}), "2.1").await;
    assert_eq!(bad_parent.status, 400);
    let gone_parent = nova(&c, Method::POST, "/os-security-group-rules", &tok,
        json!({"security_group_rule": {"parent_group_id": "6a0c7a2e-3c39-4c59-9f55-3d8d1c8e0b11", "ip_protocol": "tcp", "from_port": 22, "to_port": 22}}), "2.1").await;
    assert_eq!(gone_parent.status, 404);
    let icmp = nova(&c, Method::POST, "/os-security-group-rules", &tok,
        json!({"security_group_rule": {"parent_group_id": sg, "ip_protocol": "icmp", "from_port": -1, "to_port": -1}}), "2.1").await;
    assert_eq!(icmp.status, 200, "{}", icmp.body);
    let icmp_id = icmp.body["security_group_rule"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The rule is a Neutron ingress rule with any ICMP type.
    let nr = neutron(
        &c,
        Method::GET,
        &format!("/security-group-rules/{icmp_id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(nr.body["security_group_rule"]["direction"], "ingress");
    assert_eq!(
        nr.body["security_group_rule"]["port_range_min"],
        Value::Null
    );
    let shown = nova(
        &c,
        Method::GET,
        &format!("/os-security-groups/{sg}"),
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert_eq!(
        shown.body["security_group"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The default group's rules name the group they admit.
    let all = nova(
        &c,
        Method::GET,
        "/os-security-groups",
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    let default = all.body["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["rules"][0]["group"]["name"], "default");
    // Gone from 2.36 on.
    let late = nova(
        &c,
        Method::GET,
        "/os-security-groups",
        &tok,
        Value::Null,
        "2.36",
    )
    .await;
    assert_eq!(late.status, 404);

    // A server; the group added to and removed from its port.
    let img = raw_image(&c, &tok).await;
    let s = nova(&c, Method::POST, "/servers", &tok,
        json!({"server": {"name": "s1", "imageRef": img, "flavorRef": "1", "networks": [{"uuid": net}]}}), "2.79").await;
    assert_eq!(s.status, 202, "{}", s.body);
    let sid = s.body["server"]["id"].as_str().unwrap().to_string();
    let srv = wait_server(&c, &tok, &sid, "ACTIVE").await;
    let fixed = srv["addresses"]["net1"][0]["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let action = |b: Value| {
        let (c, tok, sid) = (&c, &tok, &sid);
        async move {
            nova(
                c,
                Method::POST,
                &format!("/servers/{sid}/action"),
                tok,
                b,
                "2.1",
            )
            .await
        }
    };
    let a = action(json!({"addSecurityGroup": {"name": " web "}})).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let port = neutron(
        &c,
        Method::GET,
        &format!("/ports?device_id={sid}"),
        &tok,
        Value::Null,
    )
    .await;
    let port_sgs = port.body["ports"][0]["security_groups"]
        .as_array()
        .unwrap()
        .clone();
    assert!(port_sgs.contains(&json!(sg)), "{port_sgs:?}");
    let listed = nova(
        &c,
        Method::GET,
        &format!("/servers/{sid}/os-security-groups"),
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    let ids: Vec<&str> = listed.body["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&sg.as_str()));
    assert_eq!(
        action(json!({"addSecurityGroup": {"name": " web "}}))
            .await
            .status,
        400
    );
    assert_eq!(
        action(json!({"addSecurityGroup": {"name": "missing"}}))
            .await
            .status,
        404
    );
    let in_use = nova(
        &c,
        Method::DELETE,
        &format!("/os-security-groups/{sg}"),
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert_eq!(in_use.status, 400, "{}", in_use.body);
    assert_eq!(
        action(json!({"removeSecurityGroup": {"name": " web "}}))
            .await
            .status,
        202
    );
    assert_eq!(
        action(json!({"removeSecurityGroup": {"name": " web "}}))
            .await
            .status,
        400
    );
    let del = nova(
        &c,
        Method::DELETE,
        &format!("/os-security-groups/{sg}"),
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert_eq!(del.status, 202);

    // Floating IPs through Nova.
    let pools = nova(
        &c,
        Method::GET,
        "/os-floating-ip-pools",
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert_eq!(pools.body["floating_ip_pools"], json!([{"name": "public"}]));
    let none = nova(
        &c,
        Method::POST,
        "/os-floating-ips",
        &tok,
        json!({"pool": "nowhere"}),
        "2.1",
    )
    .await;
    assert_eq!(none.status, 404);
    let f = nova(
        &c,
        Method::POST,
        "/os-floating-ips",
        &tok,
        json!({"pool": "public"}),
        "2.1",
    )
    .await;
    assert_eq!(f.status, 200, "{}", f.body);
    let fv = f.body["floating_ip"].clone();
    assert_eq!(
        (
            fv["pool"].clone(),
            fv["instance_id"].clone(),
            fv["fixed_ip"].clone()
        ),
        (json!("public"), Value::Null, Value::Null)
    );
    let (fid, ip) = (
        fv["id"].as_str().unwrap().to_string(),
        fv["ip"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        action(json!({"addFloatingIp": {"address": ip}}))
            .await
            .status,
        202
    );
    let shown = nova(
        &c,
        Method::GET,
        &format!("/os-floating-ips/{fid}"),
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert_eq!(shown.body["floating_ip"]["instance_id"], json!(sid));
    assert_eq!(shown.body["floating_ip"]["fixed_ip"], json!(fixed));
    let listed = nova(
        &c,
        Method::GET,
        "/os-floating-ips",
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert!(
        listed.body["floating_ips"]
            .as_array()
            .unwrap()
            .contains(&shown.body["floating_ip"])
    );
    assert_eq!(
        action(json!({"addFloatingIp": {"address": "0.0.0.0"}}))
            .await
            .status,
        404
    );
    assert_eq!(
        action(json!({"removeFloatingIp": {"address": ip}}))
            .await
            .status,
        202
    );
    assert_eq!(
        action(json!({"removeFloatingIp": {"address": ip}}))
            .await
            .status,
        409
    );
    let late = nova(
        &c,
        Method::POST,
        &format!("/servers/{sid}/action"),
        &tok,
        json!({"addFloatingIp": {"address": ip}}),
        "2.44",
    )
    .await;
    assert_eq!(late.status, 404);
    assert_eq!(
        nova(
            &c,
            Method::DELETE,
            &format!("/os-floating-ips/{fid}"),
            &tok,
            Value::Null,
            "2.1"
        )
        .await
        .status,
        202
    );
    assert_eq!(
        nova(
            &c,
            Method::GET,
            &format!("/os-floating-ips/{fid}"),
            &tok,
            Value::Null,
            "2.1"
        )
        .await
        .status,
        404
    );

    // Networks as Nova shows them.
    let tn = nova(
        &c,
        Method::GET,
        "/os-tenant-networks",
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert!(
        tn.body["networks"]
            .as_array()
            .unwrap()
            .contains(&json!({"id": net, "cidr": "None", "label": "net1"}))
    );
    let on = nova(
        &c,
        Method::GET,
        &format!("/os-networks/{net}"),
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert_eq!(on.body["network"]["label"], "net1");

    // os-interface: attach by network with a fixed IP, by port; detach.
    let list = nova(
        &c,
        Method::GET,
        &format!("/servers/{sid}/os-interface"),
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert_eq!(
        list.body["interfaceAttachments"].as_array().unwrap().len(),
        1
    );
    let both = nova(
        &c,
        Method::POST,
        &format!("/servers/{sid}/os-interface"),
        &tok,
        json!({"interfaceAttachment": {"net_id": net, "port_id": net}}),
        "2.1",
    )
    .await;
    assert_eq!(both.status, 400);
    let a = nova(
        &c,
        Method::POST,
        &format!("/servers/{sid}/os-interface"),
        &tok,
        json!({"interfaceAttachment": {"net_id": net, "fixed_ips": [{"ip_address": "10.0.0.77"}]}}),
        "2.1",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["interfaceAttachment"]["fixed_ips"][0]["ip_address"],
        "10.0.0.77"
    );
    let made = a.body["interfaceAttachment"]["port_id"]
        .as_str()
        .unwrap()
        .to_string();
    let taken = nova(
        &c,
        Method::POST,
        &format!("/servers/{sid}/os-interface"),
        &tok,
        json!({"interfaceAttachment": {"net_id": net, "fixed_ips": [{"ip_address": "10.0.0.77"}]}}),
        "2.1",
    )
    .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let p = neutron(
        &c,
        Method::POST,
        "/ports",
        &tok,
        json!({"port": {"network_id": net}}),
    )
    .await;
    let given = p.body["port"]["id"].as_str().unwrap().to_string();
    let b = nova(
        &c,
        Method::POST,
        &format!("/servers/{sid}/os-interface"),
        &tok,
        json!({"interfaceAttachment": {"port_id": given}}),
        "2.1",
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.body);
    let srv = wait_server(&c, &tok, &sid, "ACTIVE").await;
    let addrs: Vec<&str> = srv["addresses"]["net1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["addr"].as_str().unwrap())
        .collect();
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    assert!(addrs.contains(&"10.0.0.77"));
    let show = nova(
        &c,
        Method::GET,
        &format!("/servers/{sid}/os-interface/{given}"),
        &tok,
        Value::Null,
        "2.79",
    )
    .await;
    assert_eq!(show.body["interfaceAttachment"]["tag"], Value::Null);
    // The host's hypervisor has the NICs: its guest's diagnostics list them.
    let mac = |v: &Value| v["mac_addr"].as_str().unwrap().to_string();
    let plugged = nic_macs(&c, &tok, &sid).await;
    assert_eq!(plugged.len(), 3, "{plugged:?}");
    assert!(plugged.contains(&mac(&a.body["interfaceAttachment"])));
    assert!(plugged.contains(&mac(&b.body["interfaceAttachment"])));
    // Detach: the port Nova made is deleted, the given one only unbound.
    for port in [&made, &given] {
        let d = nova(
            &c,
            Method::DELETE,
            &format!("/servers/{sid}/os-interface/{port}"),
            &tok,
            Value::Null,
            "2.1",
        )
        .await;
        assert_eq!(d.status, 202, "{}", d.body);
    }
    assert_eq!(
        neutron(
            &c,
            Method::GET,
            &format!("/ports/{made}"),
            &tok,
            Value::Null
        )
        .await
        .status,
        404
    );
    let g = neutron(
        &c,
        Method::GET,
        &format!("/ports/{given}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(g.body["port"]["device_id"], "");
    // ... and the hypervisor's NICs are gone with them.
    assert_eq!(nic_macs(&c, &tok, &sid).await.len(), 1);
    let again = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{sid}/os-interface/{given}"),
        &tok,
        Value::Null,
        "2.1",
    )
    .await;
    assert_eq!(again.status, 404);

    // multinic (before 2.44): one more fixed address on the server's port
    // on net1, then one fewer.
    let act = |body: Value, mv: &'static str| {
        let (c, tok, sid) = (&c, tok.clone(), sid.clone());
        async move {
            nova(
                c,
                Method::POST,
                &format!("/servers/{sid}/action"),
                &tok,
                body,
                mv,
            )
            .await
        }
    };
    let addrs = |srv: &Value| -> Vec<String> {
        srv["addresses"]["net1"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["addr"].as_str().unwrap().to_string())
            .collect()
    };
    let before = addrs(&wait_server(&c, &tok, &sid, "ACTIVE").await);
    assert_eq!(before.len(), 1, "{before:?}");
    let r = act(json!({"addFixedIp": {"networkId": net}}), "2.1").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let two = addrs(&wait_server(&c, &tok, &sid, "ACTIVE").await);
    assert_eq!(two.len(), 2, "{two:?}");
    let added = two.iter().find(|a| !before.contains(a)).unwrap().clone();
    let r = act(json!({"addFixedIp": {"networkId": net, "x": 1}}), "2.1").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = act(json!({"addFixedIp": {"networkId": net}}), "2.44").await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = act(json!({"removeFixedIp": {"address": "10.9.9.9"}}), "2.1").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = act(json!({"removeFixedIp": {"address": added}}), "2.1").await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(addrs(&wait_server(&c, &tok, &sid, "ACTIVE").await), before);
    c.stop().await;
}

/// The MACs of the NICs the server's hypervisor has (its diagnostics).
async fn nic_macs(c: &TestCloud, tok: &str, sid: &str) -> Vec<String> {
    let d = nova(
        c,
        Method::GET,
        &format!("/servers/{sid}/diagnostics"),
        tok,
        Value::Null,
        "2.48",
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let mut macs: Vec<String> = d.body["nic_details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["mac_address"].as_str().unwrap().to_string())
        .collect();
    macs.sort();
    macs
}

/// Address scopes as Neutron's `address-scope` extension: pools in one
/// scope never overlap, a pool joins only a scope of its IP version that
/// the caller may use, a network shows the scope of its subnets, and its
/// subnets of one family stay in one scope.
#[tokio::test]
async fn address_scopes_and_subnet_pools() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 0)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let (_, member) = c.member_user(&tok, "scoper").await;
    let ext = neutron(
        &c,
        Method::GET,
        "/extensions/address-scope",
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(ext.status, 200, "{}", ext.body);

    let mk = |name: &'static str, v: u8, shared: bool, t: String| {
        let c = &c;
        async move {
            neutron(
                c,
                Method::POST,
                "/address-scopes",
                &t,
                json!({"address_scope": {"name": name, "ip_version": v, "shared": shared}}),
            )
            .await
        }
    };
    let a = mk("as4", 4, true, tok.clone()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let scope = a.body["address_scope"].clone();
    assert_eq!(scope["ip_version"], 4);
    assert_eq!(scope["shared"], true);
    let keys: HashSet<&str> = scope
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let want: HashSet<&str> = [
        "id",
        "name",
        "shared",
        "ip_version",
        "tenant_id",
        "project_id",
    ]
    .into();
    assert_eq!(keys, want);
    let sid = scope["id"].as_str().unwrap().to_string();
    assert_eq!(mk("mine", 4, true, member.clone()).await.status, 403);
    let mine = mk("mine", 4, false, member.clone()).await;
    assert_eq!(mine.status, 201, "{}", mine.body);
    let bad = mk("v5", 5, false, tok.clone()).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let l = neutron(
        &c,
        Method::GET,
        "/address-scopes?ip_version=4",
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(
        l.body["address_scopes"].as_array().unwrap().len(),
        2,
        "{}",
        l.body
    );
    let r = neutron(
        &c,
        Method::PUT,
        &format!("/address-scopes/{sid}"),
        &tok,
        json!({"address_scope": {"shared": false}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["NeutronError"]["type"], "AddressScopeUpdateError");
    let r = neutron(
        &c,
        Method::PUT,
        &format!("/address-scopes/{sid}"),
        &tok,
        json!({"address_scope": {"name": "renamed"}}),
    )
    .await;
    assert_eq!(r.body["address_scope"]["name"], "renamed");

    // Pools in the scope: no overlap, same IP version, an existing scope.
    let pool = |name: &'static str, prefix: &'static str, scope: Value| {
        let (c, tok) = (&c, tok.clone());
        async move {
            neutron(
                c,
                Method::POST,
                "/subnetpools",
                &tok,
                json!({"subnetpool": {"name": name, "prefixes": [prefix], "default_prefixlen": 24,
                                      "address_scope_id": scope}}),
            )
            .await
        }
    };
    let p1 = pool("p1", "10.100.0.0/16", json!(sid)).await;
    assert_eq!(p1.status, 201, "{}", p1.body);
    assert_eq!(p1.body["subnetpool"]["address_scope_id"], json!(sid));
    let p1 = p1.body["subnetpool"]["id"].as_str().unwrap().to_string();
    let clash = pool("p2", "10.100.5.0/24", json!(sid)).await;
    assert_eq!(clash.status, 409, "{}", clash.body);
    assert_eq!(
        clash.body["NeutronError"]["type"],
        "AddressScopePrefixConflict"
    );
    let v6 = pool("p6", "2001:db8::/48", json!(sid)).await;
    assert_eq!(v6.status, 400, "{}", v6.body);
    let missing = pool(
        "px",
        "10.200.0.0/16",
        json!("6e2a9b0c-2f1d-4c3b-9a8e-1d2c3b4a5f60"),
    )
    .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let p3 = pool("p3", "10.101.0.0/16", Value::Null).await;
    assert_eq!(p3.status, 201, "{}", p3.body);
    let p3 = p3.body["subnetpool"]["id"].as_str().unwrap().to_string();
    // Moving p3 into the scope is checked the same way.
    let r = neutron(
        &c,
        Method::PUT,
        &format!("/subnetpools/{p3}"),
        &tok,
        json!({"subnetpool": {"address_scope_id": sid}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["subnetpool"]["address_scope_id"], json!(sid));

    // A network shows the scope of its subnets; one family stays in one scope.
    let n = neutron(
        &c,
        Method::POST,
        "/networks",
        &tok,
        json!({"network": {"name": "scoped"}}),
    )
    .await;
    let net = n.body["network"]["id"].as_str().unwrap().to_string();
    assert_eq!(n.body["network"]["ipv4_address_scope"], Value::Null);
    let sub = neutron(
        &c,
        Method::POST,
        "/subnets",
        &tok,
        json!({"subnet": {"network_id": net, "ip_version": 4, "subnetpool_id": p1}}),
    )
    .await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    assert_eq!(sub.body["subnet"]["cidr"], "10.100.0.0/24");
    let sub = sub.body["subnet"]["id"].as_str().unwrap().to_string();
    let shown = neutron(
        &c,
        Method::GET,
        &format!("/networks/{net}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(shown.body["network"]["ipv4_address_scope"], json!(sid));
    assert_eq!(shown.body["network"]["ipv6_address_scope"], Value::Null);
    let plain = neutron(
        &c,
        Method::POST,
        "/subnets",
        &tok,
        json!({"subnet": {"network_id": net, "ip_version": 4, "cidr": "192.168.77.0/24"}}),
    )
    .await;
    assert_eq!(plain.status, 400, "{}", plain.body);
    assert_eq!(
        plain.body["NeutronError"]["type"],
        "NetworkAddressScopeAffinityError"
    );
    // Another pool of the same scope is fine.
    let same = neutron(
        &c,
        Method::POST,
        "/subnets",
        &tok,
        json!({"subnet": {"network_id": net, "ip_version": 4, "subnetpool_id": p3}}),
    )
    .await;
    assert_eq!(same.status, 201, "{}", same.body);
    let same = same.body["subnet"]["id"].as_str().unwrap().to_string();
    // Taking p1 out of the scope would split the network across scopes.
    let r = neutron(
        &c,
        Method::PUT,
        &format!("/subnetpools/{p1}"),
        &tok,
        json!({"subnetpool": {"address_scope_id": null}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let shown = neutron(
        &c,
        Method::GET,
        &format!("/networks/{net}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(
        shown.body["network"]["ipv4_address_scope"],
        json!(sid),
        "p3's subnet keeps it"
    );

    // A scope in use is kept; once its pools are gone it goes.
    let d = neutron(
        &c,
        Method::DELETE,
        &format!("/address-scopes/{sid}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(d.status, 409, "{}", d.body);
    assert_eq!(d.body["NeutronError"]["type"], "AddressScopeInUse");
    for x in [&sub, &same] {
        let d = neutron(
            &c,
            Method::DELETE,
            &format!("/subnets/{x}"),
            &tok,
            Value::Null,
        )
        .await;
        assert_eq!(d.status, 204, "{}", d.body);
    }
    let shown = neutron(
        &c,
        Method::GET,
        &format!("/networks/{net}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(shown.body["network"]["ipv4_address_scope"], Value::Null);
    for p in [&p1, &p3] {
        let d = neutron(
            &c,
            Method::DELETE,
            &format!("/subnetpools/{p}"),
            &tok,
            Value::Null,
        )
        .await;
        assert_eq!(d.status, 204, "{}", d.body);
    }
    let d = neutron(
        &c,
        Method::DELETE,
        &format!("/address-scopes/{sid}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(d.status, 204, "{}", d.body);
    let gone = neutron(
        &c,
        Method::GET,
        &format!("/address-scopes/{sid}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body["NeutronError"]["type"], "AddressScopeNotFound");
    c.stop().await;
}

/// The guest's `meta_data.json` as the metadata service answers it.
async fn guest_meta_data(c: &TestCloud, sid: &str) -> Value {
    let (status, body) = c
        .guest_metadata(sid, "/openstack/latest/meta_data.json")
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The tagged devices of `meta_data.json`, as (tag, type, mac or serial).
fn tagged(md: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = md["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["bus"], "pci", "{d}");
            assert!(
                d["address"].as_str().unwrap().starts_with("0000:00:"),
                "{d}"
            );
            let what = if d["type"] == "nic" {
                assert_eq!(d["vf_trusted"], false, "{d}");
                d["mac"].clone()
            } else {
                d["serial"].clone()
            };
            (
                d["tags"][0].as_str().unwrap().to_string(),
                d["type"].as_str().unwrap().to_string(),
                what.as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Device role tags (2.42 at create, 2.49 on attach, shown at 2.70): the
/// guest's metadata lists each tagged NIC by MAC and each tagged volume by
/// id, where its hypervisor put it, and nothing untagged; a detached
/// device leaves the list.
#[tokio::test]
async fn device_role_tags_in_the_guest_metadata() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.compute.fake_hosts = 1)
        .await
        .unwrap()
        .unwrap();
    let tok = c.admin_token().await;
    let (net, _) = net_with_subnet(&c, &tok, "tagnet", "10.6.0.0/24").await;
    let p = neutron(
        &c,
        Method::POST,
        "/ports",
        &tok,
        json!({"port": {"network_id": net}}),
    )
    .await;
    let port = p.body["port"]["id"].as_str().unwrap().to_string();
    let port_mac = p.body["port"]["mac_address"].as_str().unwrap().to_string();
    let img = raw_image(&c, &tok).await;
    let s = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        json!({"server": {"name": "tagged", "imageRef": img, "flavorRef": "1",
            "networks": [{"uuid": net}, {"port": port, "tag": "port-1"},
                         {"uuid": net, "fixed_ip": "10.6.0.100", "tag": "net-100"}]}}),
        "2.42",
    )
    .await;
    assert_eq!(s.status, 202, "{}", s.body);
    let sid = s.body["server"]["id"].as_str().unwrap().to_string();
    wait_server(&c, &tok, &sid, "ACTIVE").await;
    let ifaces = nova(
        &c,
        Method::GET,
        &format!("/servers/{sid}/os-interface"),
        &tok,
        Value::Null,
        "2.70",
    )
    .await;
    let list = ifaces.body["interfaceAttachments"].as_array().unwrap();
    let mac_of_ip = |ip: &str| {
        list.iter()
            .find(|i| i["fixed_ips"][0]["ip_address"] == ip)
            .map(|i| i["mac_addr"].as_str().unwrap().to_string())
            .unwrap()
    };
    let net100 = mac_of_ip("10.6.0.100");
    let untagged: Vec<_> = list
        .iter()
        .filter(|i| i["tag"].is_null())
        .map(|i| i["port_id"].clone())
        .collect();
    assert_eq!(untagged.len(), 1, "{list:?}");
    assert!(
        list.iter()
            .any(|i| i["port_id"] == port.as_str() && i["tag"] == "port-1")
    );
    let md = guest_meta_data(&c, &sid).await;
    assert_eq!(
        tagged(&md),
        vec![
            ("net-100".into(), "nic".into(), net100.clone()),
            ("port-1".into(), "nic".into(), port_mac.clone()),
        ],
        "{md}"
    );

    // Attached with tags at 2.49: a NIC and a volume.
    let a = nova(
        &c,
        Method::POST,
        &format!("/servers/{sid}/os-interface"),
        &tok,
        json!({"interfaceAttachment": {"net_id": net, "tag": "nic-tag"}}),
        "2.49",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let nic_port = a.body["interfaceAttachment"]["port_id"]
        .as_str()
        .unwrap()
        .to_string();
    let nic_mac = a.body["interfaceAttachment"]["mac_addr"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = nova(
        &c,
        Method::POST,
        &format!("/servers/{sid}/os-interface"),
        &tok,
        json!({"interfaceAttachment": {"net_id": net, "tag": "a/b"}}),
        "2.49",
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let shown = nova(
        &c,
        Method::GET,
        &format!("/servers/{sid}/os-interface/{nic_port}"),
        &tok,
        Value::Null,
        "2.70",
    )
    .await;
    assert_eq!(shown.body["interfaceAttachment"]["tag"], "nic-tag");
    let vol = c
        .request(
            Method::POST,
            "/volume/v3/volumes",
            Some(&tok),
            json!({"volume": {"size": 1}}),
        )
        .await;
    assert_eq!(vol.status, 202, "{}", vol.body);
    let vid = vol.body["volume"]["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    while c
        .request(
            Method::GET,
            &format!("/volume/v3/volumes/{vid}"),
            Some(&tok),
            Value::Null,
        )
        .await
        .body["volume"]["status"]
        != "available"
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "volume never available"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let att = nova(
        &c,
        Method::POST,
        &format!("/servers/{sid}/os-volume_attachments"),
        &tok,
        json!({"volumeAttachment": {"volumeId": vid, "tag": "volume-tag"}}),
        "2.49",
    )
    .await;
    assert_eq!(att.status, 200, "{}", att.body);
    let t0 = Instant::now();
    let md = loop {
        let md = guest_meta_data(&c, &sid).await;
        if md["devices"].as_array().unwrap().len() == 4 {
            break md;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{md}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        tagged(&md),
        vec![
            ("net-100".into(), "nic".into(), net100.clone()),
            ("nic-tag".into(), "nic".into(), nic_mac),
            ("port-1".into(), "nic".into(), port_mac.clone()),
            ("volume-tag".into(), "disk".into(), vid.clone()),
        ],
        "{md}"
    );
    let addrs: HashSet<&str> = md["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs.len(), 4, "each device has its own address: {md}");
    // Older metadata versions: no `vf_trusted` before 2018-08-27, no
    // `devices` before 2016-06-30.
    let (_, old) = c
        .guest_metadata(&sid, "/openstack/2017-02-22/meta_data.json")
        .await;
    let old: Value = serde_json::from_slice(&old).unwrap();
    assert!(old["devices"][0].get("vf_trusted").is_none(), "{old}");
    assert_eq!(old["devices"].as_array().unwrap().len(), 4, "{old}");
    let (_, older) = c
        .guest_metadata(&sid, "/openstack/2015-10-15/meta_data.json")
        .await;
    let older: Value = serde_json::from_slice(&older).unwrap();
    assert!(older.get("devices").is_none(), "{older}");

    // Detached devices leave the list.
    let d = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{sid}/os-interface/{nic_port}"),
        &tok,
        Value::Null,
        "2.49",
    )
    .await;
    assert_eq!(d.status, 202, "{}", d.body);
    let d = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{sid}/os-volume_attachments/{vid}"),
        &tok,
        Value::Null,
        "2.49",
    )
    .await;
    assert_eq!(d.status, 202, "{}", d.body);
    let t0 = Instant::now();
    loop {
        let md = guest_meta_data(&c, &sid).await;
        if tagged(&md)
            == vec![
                ("net-100".to_string(), "nic".to_string(), net100.clone()),
                ("port-1".to_string(), "nic".to_string(), port_mac.clone()),
            ]
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{md}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.stop().await;
}
