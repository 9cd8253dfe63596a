//! Identity integration suite: the real server in-process on an ephemeral
//! port, driven over HTTP. Runs on SQLite always, and on PostgreSQL and
//! MariaDB when they are reachable (skipped with a message otherwise).
#![allow(clippy::unwrap_used)]

use ferro_test_utils::{ADMIN_PASSWORD, Backend, TestCloud};
use reqwest::Method;
use serde_json::{Value, json};

async fn create(c: &TestCloud, tok: &str, path: &str, key: &str, body: Value) -> Value {
    let r = c.ks(Method::POST, path, tok, json!({ key: body })).await;
    assert_eq!(r.status, 201, "POST {path}: {}", r.body);
    r.body[key].clone()
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

/// Discovery, token issue/validate/check, catalog, request ids.
async fn tokens_and_discovery(c: &TestCloud) {
    let r = c.request(Method::GET, "/", None, Value::Null).await;
    assert_eq!(r.status, 300);
    assert!(
        r.header("x-openstack-request-id")
            .unwrap()
            .starts_with("req-")
    );
    let r = c
        .request(Method::GET, "/identity/", None, Value::Null)
        .await;
    assert_eq!(r.status, 300);
    assert_eq!(r.body["versions"]["values"][0]["id"], "v3.14");
    let r = c
        .request(Method::GET, "/identity/v3", None, Value::Null)
        .await;
    assert_eq!(r.status, 200);

    let admin = c.admin_token().await;
    let issued = c
        .password_token(
            json!({"name": "admin", "domain": {"name": "Default"}}),
            ADMIN_PASSWORD,
            Some(json!({"project": {"name": "admin", "domain": {"name": "Default"}}})),
        )
        .await;
    assert_eq!(issued.status, 201);
    let t = &issued.body["token"];
    assert_eq!(t["project"]["name"], "admin");
    assert_eq!(t["user"]["domain"]["id"], "default");
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for want in ["admin", "member", "reader"] {
        assert!(roles.contains(&want), "implied roles missing: {roles:?}");
    }
    let cat = t["catalog"].as_array().unwrap();
    let ident = cat.iter().find(|s| s["type"] == "identity").unwrap();
    assert_eq!(ident["endpoints"].as_array().unwrap().len(), 3);
    assert!(t["expires_at"].as_str().unwrap().ends_with("Z"));

    // validate returns the same body; HEAD checks; nocatalog drops the catalog
    let subject = issued.header("x-subject-token").unwrap();
    let v = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", &subject)],
        )
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body, issued.body);
    let h = c
        .request_h(
            Method::HEAD,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", &subject)],
        )
        .await;
    assert_eq!(h.status, 200);
    let v = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens?nocatalog",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", &subject)],
        )
        .await;
    assert!(v.body["token"].get("catalog").is_none());

    // system and domain scope
    let sys = c
        .password_token(
            json!({"name": "admin", "domain": {"id": "default"}}),
            ADMIN_PASSWORD,
            Some(json!({"system": {"all": true}})),
        )
        .await;
    assert_eq!(sys.status, 201, "{}", sys.body);
    assert_eq!(sys.body["token"]["system"]["all"], true);
    let dom = c
        .password_token(
            json!({"name": "admin", "domain": {"id": "default"}}),
            ADMIN_PASSWORD,
            Some(json!({"domain": {"id": "default"}})),
        )
        .await;
    assert_eq!(dom.status, 201);
    assert_eq!(dom.body["token"]["domain"]["name"], "Default");

    // rescope an unscoped token with the token method: expiry is kept
    let uns = c
        .password_token(
            json!({"name": "admin", "domain": {"id": "default"}}),
            ADMIN_PASSWORD,
            Some(json!("unscoped")),
        )
        .await;
    assert_eq!(uns.status, 201);
    assert!(uns.body["token"].get("roles").is_none() && uns.body["token"].get("catalog").is_none());
    let ut = uns.header("x-subject-token").unwrap();
    let re = c
        .request(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            json!({"auth": {
        "identity": {"methods": ["token"], "token": {"id": ut}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}),
        )
        .await;
    assert_eq!(re.status, 201, "{}", re.body);
    assert_eq!(
        re.body["token"]["expires_at"],
        uns.body["token"]["expires_at"]
    );
    let mut methods: Vec<String> =
        serde_json::from_value(re.body["token"]["methods"].clone()).unwrap();
    methods.sort();
    assert_eq!(methods, ["password", "token"]);

    let cat = c
        .ks(Method::GET, "/auth/catalog", &admin, Value::Null)
        .await;
    assert_eq!(cat.status, 200);
    let projects = c
        .ks(Method::GET, "/auth/projects", &admin, Value::Null)
        .await;
    assert!(
        projects.body["projects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "admin")
    );
}

/// Resources, grants, effective assignments, app creds, revocation, policy.
async fn resources_grants_revocation(c: &TestCloud) {
    let admin = c.admin_token().await;
    let dom = create(
        c,
        &admin,
        "/domains",
        "domain",
        json!({"name": "d1", "description": "x"}),
    )
    .await;
    let did = dom["id"].as_str().unwrap().to_string();
    let r = c
        .ks(
            Method::POST,
            "/domains",
            &admin,
            json!({"domain": {"name": "d1"}}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["error"]["code"], 409);
    let proj = create(
        c,
        &admin,
        "/projects",
        "project",
        json!({"name": "p1", "domain_id": did, "tags": ["a", "b"]}),
    )
    .await;
    let pid = proj["id"].as_str().unwrap().to_string();
    assert_eq!(proj["parent_id"], did.as_str());
    let child = create(
        c,
        &admin,
        "/projects",
        "project",
        json!({"name": "p1-child", "parent_id": pid}),
    )
    .await;
    assert_eq!(child["domain_id"], did.as_str());
    let user = create(
        c,
        &admin,
        "/users",
        "user",
        json!({"name": "u1", "domain_id": did, "password": "pw-one", "email": "u1@example.com"}),
    )
    .await;
    let uid = user["id"].as_str().unwrap().to_string();
    assert_eq!(user["email"], "u1@example.com");
    assert!(user.get("password").is_none());
    let group = create(
        c,
        &admin,
        "/groups",
        "group",
        json!({"name": "g1", "domain_id": did}),
    )
    .await;
    let gid = group["id"].as_str().unwrap().to_string();
    let role = create(c, &admin, "/roles", "role", json!({"name": "custom"})).await;
    let rid = role["id"].as_str().unwrap().to_string();

    // filters
    let l = c
        .ks(
            Method::GET,
            &format!("/projects?domain_id={did}&tags=a"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(ids(&l.body, "projects"), vec![pid.clone()]);
    let l = c
        .ks(Method::GET, "/users?name=u1", &admin, Value::Null)
        .await;
    assert_eq!(ids(&l.body, "users"), vec![uid.clone()]);

    // grants: user gets member on p1; group gets custom on p1, user joins the group
    let member = c
        .ks(Method::GET, "/roles?name=member", &admin, Value::Null)
        .await
        .body["roles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!("/projects/{pid}/users/{uid}/roles/{member}"),
        format!("/projects/{pid}/groups/{gid}/roles/{rid}"),
        format!("/groups/{gid}/users/{uid}"),
    ] {
        let r = c.ks(Method::PUT, &path, &admin, Value::Null).await;
        assert_eq!(r.status, 204, "PUT {path}: {}", r.body);
    }
    let r = c
        .ks(
            Method::HEAD,
            &format!("/projects/{pid}/users/{uid}/roles/{member}"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    let eff = c
        .ks(
            Method::GET,
            &format!("/role_assignments?user.id={uid}&effective&include_names=true"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(eff.status, 200);
    let names: Vec<&str> = eff.body["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["role"]["name"].as_str().unwrap())
        .collect();
    for want in ["member", "reader", "custom"] {
        assert!(names.contains(&want), "effective assignments {names:?}");
    }

    // the user logs in by name through domain name; roles come via group and implication
    let login = c
        .password_token(
            json!({"name": "u1", "domain": {"name": "d1"}}),
            "pw-one",
            Some(json!({"project": {"name": "p1", "domain": {"name": "d1"}}})),
        )
        .await;
    assert_eq!(login.status, 201, "{}", login.body);
    let utok = login.header("x-subject-token").unwrap();
    let roles: Vec<&str> = login.body["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"custom") && roles.contains(&"reader"),
        "{roles:?}"
    );

    // policy: a member cannot manage identity nor see other projects
    let r = c
        .ks(
            Method::POST,
            "/users",
            &utok,
            json!({"user": {"name": "evil"}}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"]["title"], "Forbidden");
    let admin_proj = c
        .ks(Method::GET, "/projects?name=admin", &admin, Value::Null)
        .await
        .body["projects"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .ks(
            Method::GET,
            &format!("/projects/{admin_proj}"),
            &utok,
            Value::Null,
        )
        .await;
    assert_eq!(
        r.status, 403,
        "member saw another project: {} (token roles {roles:?})",
        r.body
    );
    assert_eq!(
        c.ks(Method::GET, &format!("/projects/{pid}"), &utok, Value::Null)
            .await
            .status,
        200
    );
    assert_eq!(
        c.ks(Method::GET, "/users", &utok, Value::Null).await.status,
        403
    );
    assert_eq!(
        c.ks(Method::GET, &format!("/users/{uid}"), &utok, Value::Null)
            .await
            .status,
        200
    );

    // application credential: create as the user, authenticate with it
    let ac = create(
        c,
        &utok,
        &format!("/users/{uid}/application_credentials"),
        "application_credential",
        json!({"name": "ci", "roles": [{"name": "member"}]}),
    )
    .await;
    let acr = c.request(Method::POST, "/identity/v3/auth/tokens", None, json!({"auth": {"identity": {
        "methods": ["application_credential"], "application_credential": {"id": ac["id"], "secret": ac["secret"]}}}})).await;
    assert_eq!(acr.status, 201, "{}", acr.body);
    assert_eq!(acr.body["token"]["project"]["id"], pid.as_str());
    assert_eq!(
        acr.body["token"]["application_credential"]["restricted"],
        true
    );
    let actok = acr.header("x-subject-token").unwrap();
    let bad = c.request(Method::POST, "/identity/v3/auth/tokens", None, json!({"auth": {"identity": {
        "methods": ["application_credential"], "application_credential": {"id": ac["id"], "secret": "wrong"}}}})).await;
    assert_eq!(bad.status, 401);
    let del = c
        .ks(
            Method::DELETE,
            &format!(
                "/users/{uid}/application_credentials/{}",
                ac["id"].as_str().unwrap()
            ),
            &utok,
            Value::Null,
        )
        .await;
    assert_eq!(del.status, 204);
    let v = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", &actok)],
        )
        .await;
    assert_eq!(
        v.status, 404,
        "a deleted app cred's token must not validate"
    );

    // token revoke → 404 on validate; the caller's own revoked token → 401
    let t2 = c
        .password_token(
            json!({"id": uid}),
            "pw-one",
            Some(json!({"project": {"id": pid}})),
        )
        .await
        .header("x-subject-token")
        .unwrap();
    let r = c
        .request_h(
            Method::DELETE,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", &t2)],
        )
        .await;
    assert_eq!(r.status, 204);
    let v = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", &t2)],
        )
        .await;
    assert_eq!(v.status, 404);
    let own = c.ks(Method::GET, "/auth/catalog", &t2, Value::Null).await;
    assert_eq!(own.status, 401);
    assert!(
        own.header("www-authenticate")
            .unwrap()
            .contains("/identity")
    );

    // self-service password change invalidates the user's earlier tokens
    let r = c
        .ks(
            Method::POST,
            &format!("/users/{uid}/password"),
            &utok,
            json!({"user": {"original_password": "wrong", "password": "pw-two"}}),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .ks(
            Method::POST,
            &format!("/users/{uid}/password"),
            &utok,
            json!({"user": {"original_password": "pw-one", "password": "pw-two"}}),
        )
        .await;
    assert_eq!(r.status, 204);
    let v = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", &utok)],
        )
        .await;
    assert_eq!(v.status, 404);
    assert_eq!(
        c.password_token(json!({"id": uid}), "pw-one", None)
            .await
            .status,
        401
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // Fernet timestamps have 1 s resolution
    let fresh = c
        .password_token(
            json!({"id": uid}),
            "pw-two",
            Some(json!({"project": {"id": pid}})),
        )
        .await;
    assert_eq!(fresh.status, 201);
    let ftok = fresh.header("x-subject-token").unwrap();

    // disabling the project invalidates tokens scoped to it
    let r = c
        .ks(
            Method::PATCH,
            &format!("/projects/{pid}"),
            &admin,
            json!({"project": {"enabled": false}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", &ftok)],
        )
        .await;
    assert_eq!(v.status, 404);

    // clean-up: domain must be disabled before delete; delete cascades
    assert_eq!(
        c.ks(
            Method::DELETE,
            &format!("/domains/{did}"),
            &admin,
            Value::Null
        )
        .await
        .status,
        403
    );
    assert_eq!(
        c.ks(
            Method::PATCH,
            &format!("/domains/{did}"),
            &admin,
            json!({"domain": {"enabled": false}})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.ks(
            Method::DELETE,
            &format!("/domains/{did}"),
            &admin,
            Value::Null
        )
        .await
        .status,
        204
    );
    assert_eq!(
        c.ks(Method::GET, &format!("/users/{uid}"), &admin, Value::Null)
            .await
            .status,
        404
    );
    assert_eq!(
        c.ks(
            Method::DELETE,
            &format!("/roles/{rid}"),
            &admin,
            Value::Null
        )
        .await
        .status,
        204
    );
}

/// Bad input: the right 4xx with Keystone's body, never a 500 or a panic.
async fn bad_input(c: &TestCloud) {
    let admin = c.admin_token().await;
    let cases: Vec<(Method, &str, Value, u16)> = vec![
        (Method::POST, "/projects", json!("not an object"), 400),
        (
            Method::POST,
            "/projects",
            json!({"project": {"name": 5}}),
            400,
        ),
        (
            Method::POST,
            "/projects",
            json!({"project": {"name": "x".repeat(65)}}),
            400,
        ),
        (
            Method::POST,
            "/projects",
            json!({"project": {"name": "   "}}),
            400,
        ),
        (
            Method::POST,
            "/projects",
            json!({"project": {"name": "ok", "enabled": "yes"}}),
            400,
        ),
        (
            Method::POST,
            "/domains",
            json!({"domain": {"name": "d", "tags": ["bad/tag"]}}),
            400,
        ),
        (
            Method::POST,
            "/users",
            json!({"user": {"name": "u", "domain_id": "nope"}}),
            404,
        ),
        (
            Method::POST,
            "/endpoints",
            json!({"endpoint": {"interface": "public", "url": "http://x", "service_id": "nope", "enabled": "False"}}),
            400,
        ),
        (Method::GET, "/projects/does-not-exist", Value::Null, 404),
        (
            Method::PATCH,
            "/users/does-not-exist",
            json!({"user": {"name": "a"}}),
            404,
        ),
        (Method::GET, "/no/such/path", Value::Null, 404),
    ];
    for (m, path, body, want) in cases {
        let r = c.ks(m.clone(), path, &admin, body.clone()).await;
        assert_eq!(r.status.as_u16(), want, "{m} {path} {body}: {}", r.body);
        assert_eq!(
            r.body["error"]["code"], want,
            "Keystone error body for {m} {path}"
        );
    }
    // malformed JSON
    let r = c
        .client
        .post(format!("{}/projects", c.identity()))
        .header("X-Auth-Token", &admin)
        .header("Content-Type", "application/json")
        .body("{\"project\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // auth: unknown method, unknown scope, garbled and absent tokens
    let r = c
        .request(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            json!({"auth": {"identity": {"methods": ["kerberos"], "kerberos": {}}}}),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["title"], "Unauthorized");
    let r = c
        .password_token(
            json!({"name": "admin", "domain": {"id": "default"}}),
            ADMIN_PASSWORD,
            Some(json!({"project": {"id": "nope"}})),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .password_token(
            json!({"name": "admin", "domain": {"id": "default"}}),
            ADMIN_PASSWORD,
            Some(json!({"galaxy": {}})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .password_token(
            json!({"name": "admin", "domain": {"id": "default"}}),
            "wrong",
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    for garbled in ["garbage", "gAAAAAB", &"A".repeat(3000)] {
        let r = c.ks(Method::GET, "/projects", garbled, Value::Null).await;
        assert_eq!(r.status, 401, "garbled token {garbled:.20}");
        let v = c
            .request_h(
                Method::GET,
                "/identity/v3/auth/tokens",
                Some(&admin),
                Value::Null,
                &[("X-Subject-Token", garbled)],
            )
            .await;
        assert_eq!(v.status, 404);
    }
    assert_eq!(
        c.request(Method::GET, "/identity/v3/projects", None, Value::Null)
            .await
            .status,
        401
    );
    // a failed create left nothing behind
    let l = c
        .ks(Method::GET, "/projects?name=ok", &admin, Value::Null)
        .await;
    assert!(l.body["projects"].as_array().unwrap().is_empty());
}

/// The endpoint ids of a catalog.
fn catalog_endpoints(cat: &Value) -> std::collections::BTreeSet<String> {
    cat.as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["endpoints"].as_array().unwrap().iter())
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// OS-EP-FILTER: endpoints and endpoint groups associated with a project
/// are all its catalog shows; without associations it sees every endpoint.
async fn endpoint_filter(c: &TestCloud) {
    use std::collections::BTreeSet;
    let admin = c.admin_token().await;
    let (project, member) = c.member_user(&admin, "ep-filter").await;
    let all: Vec<Value> = c
        .ks(Method::GET, "/endpoints", &admin, Value::Null)
        .await
        .body["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    let every: BTreeSet<String> = all
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let catalog = |tok: String| async move {
        let r = c.ks(Method::GET, "/auth/catalog", &tok, Value::Null).await;
        assert_eq!(r.status, 200, "{}", r.body);
        catalog_endpoints(&r.body["catalog"])
    };
    assert_eq!(catalog(member.clone()).await, every);
    let public = all.iter().find(|e| e["interface"] == "public").unwrap();
    assert!(all.iter().any(|e| e["interface"] == "internal"));
    let e1 = public["id"].as_str().unwrap().to_string();
    let path = format!("/OS-EP-FILTER/projects/{project}/endpoints/{e1}");
    assert_eq!(
        c.ks(Method::GET, &path, &admin, Value::Null).await.status,
        404
    );
    assert_eq!(
        c.ks(Method::PUT, &path, &member, Value::Null).await.status,
        403
    );
    assert_eq!(
        c.ks(Method::PUT, &path, &admin, Value::Null).await.status,
        204
    );
    assert_eq!(
        c.ks(Method::PUT, &path, &admin, Value::Null).await.status,
        409
    );
    assert_eq!(
        c.ks(Method::GET, &path, &admin, Value::Null).await.status,
        204
    );
    let r = c
        .ks(
            Method::GET,
            &format!("/OS-EP-FILTER/projects/{project}/endpoints"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(ids(&r.body, "endpoints"), vec![e1.clone()]);
    let r = c
        .ks(
            Method::GET,
            &format!("/OS-EP-FILTER/endpoints/{e1}/projects"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(ids(&r.body, "projects"), vec![project.clone()]);
    assert_eq!(catalog(member.clone()).await, BTreeSet::from([e1.clone()]));
    // Another project's catalog is whole.
    assert_eq!(catalog(admin.clone()).await, every);

    // An endpoint group adds what its filters match.
    let g = create(
        c,
        &admin,
        "/OS-EP-FILTER/endpoint_groups",
        "endpoint_group",
        json!({"name": "internal", "filters": {"interface": "internal"}}),
    )
    .await;
    let gid = g["id"].as_str().unwrap().to_string();
    let internal: BTreeSet<String> = all
        .iter()
        .filter(|e| e["interface"] == "internal")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let r = c
        .ks(
            Method::GET,
            &format!("/OS-EP-FILTER/endpoint_groups/{gid}/endpoints"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(
        ids(&r.body, "endpoints")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        internal
    );
    let gpath = format!("/OS-EP-FILTER/endpoint_groups/{gid}/projects/{project}");
    assert_eq!(
        c.ks(Method::GET, &gpath, &admin, Value::Null).await.status,
        404
    );
    assert_eq!(
        c.ks(Method::PUT, &gpath, &admin, Value::Null).await.status,
        204
    );
    let r = c.ks(Method::GET, &gpath, &admin, Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["project_endpoint_group"]["endpoint_group_id"],
        json!(gid)
    );
    let r = c
        .ks(
            Method::GET,
            &format!("/OS-EP-FILTER/endpoint_groups/{gid}/projects"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(ids(&r.body, "projects"), vec![project.clone()]);
    let r = c
        .ks(
            Method::GET,
            &format!("/OS-EP-FILTER/projects/{project}/endpoint_groups"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(ids(&r.body, "endpoint_groups"), vec![gid.clone()]);
    let mut want = internal.clone();
    want.insert(e1.clone());
    assert_eq!(catalog(member.clone()).await, want);

    // Without associations the catalog is whole again.
    assert_eq!(
        c.ks(Method::DELETE, &path, &admin, Value::Null)
            .await
            .status,
        204
    );
    assert_eq!(
        c.ks(Method::DELETE, &path, &admin, Value::Null)
            .await
            .status,
        404
    );
    assert_eq!(catalog(member.clone()).await, internal);
    let r = c
        .ks(
            Method::DELETE,
            &format!("/OS-EP-FILTER/endpoint_groups/{gid}"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        c.ks(Method::GET, &gpath, &admin, Value::Null).await.status,
        404
    );
    assert_eq!(catalog(member).await, every);
}

/// Attributes left out read as Keystone returns them: a service's name is
/// "", an endpoint group's description null, a trust's redelegation and
/// deletion fields null; project tags come with their link.
async fn keystone_defaults(c: &TestCloud) {
    let admin = c.admin_token().await;
    let s = create(
        c,
        &admin,
        "/services",
        "service",
        json!({"type": "ferro-test"}),
    )
    .await;
    assert_eq!(s["name"], "");
    let got = c
        .ks(
            Method::GET,
            &format!("/services/{}", s["id"].as_str().unwrap()),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(got.body["service"]["name"], "");
    for bad in [json!(null), json!(""), json!("  ")] {
        let r = c
            .ks(
                Method::POST,
                "/services",
                &admin,
                json!({"service": {"type": "x", "name": bad}}),
            )
            .await;
        assert_eq!(r.status, 400, "name {bad}: {}", r.body);
    }
    let g = create(
        c,
        &admin,
        "/OS-EP-FILTER/endpoint_groups",
        "endpoint_group",
        json!({"name": "g", "filters": {"interface": "public"}}),
    )
    .await;
    assert_eq!(g["description"], Value::Null);
    let p = create(
        c,
        &admin,
        "/projects",
        "project",
        json!({"name": "tagged", "tags": ["t1"]}),
    )
    .await;
    let r = c
        .ks(
            Method::GET,
            &format!("/projects/{}/tags", p["id"].as_str().unwrap()),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(r.body["tags"], json!(["t1"]));
    assert!(
        r.body["links"]["self"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v3/projects/{}/tags", p["id"].as_str().unwrap())),
        "{}",
        r.body
    );
    // An omitted description is "", an explicit null stays null.
    assert_eq!(p["description"], "");
    for (path, key) in [
        ("/domains", "domain"),
        ("/projects", "project"),
        ("/groups", "group"),
    ] {
        let name = format!("nulldesc-{key}");
        let v = create(
            c,
            &admin,
            path,
            key,
            json!({"name": name, "description": null}),
        )
        .await;
        assert_eq!(v["description"], Value::Null, "{path}: {v}");
    }
    // A domain never shows domain_id/parent_id/is_domain given to it; options
    // set to null are dropped.
    let d = create(
        c,
        &admin,
        "/domains",
        "domain",
        json!({"name": "quiet", "domain_id": "x", "options": {"immutable": null}}),
    )
    .await;
    assert!(d.get("domain_id").is_none(), "{d}");
    assert_eq!(d["options"], json!({}));
    // parents_as_ids of a top-level project names its domain.
    let pid = p["id"].as_str().unwrap();
    let r = c
        .ks(
            Method::GET,
            &format!("/projects/{pid}?parents_as_ids"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(
        r.body["project"]["parents"],
        json!({ p["domain_id"].as_str().unwrap(): null })
    );
    // The list forms (the API reference's other samples): parents and
    // subtree as lists of projects.
    let r = c
        .ks(
            Method::GET,
            &format!("/projects/{pid}?parents_as_list&subtree_as_list"),
            &admin,
            Value::Null,
        )
        .await;
    assert!(r.body["project"]["parents"].is_array(), "{}", r.body);
    assert!(r.body["project"]["subtree"].is_array(), "{}", r.body);

    // Trusts: full role objects; the list without roles; a project with no
    // role is refused.
    c.member_user(&admin, "trustee-defaults").await;
    let admin_user = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Value::Null,
            &[("X-Subject-Token", admin.as_str())],
        )
        .await;
    let auid = admin_user.body["token"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let apid = admin_user.body["token"]["project"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let trustee = c
        .ks(
            Method::GET,
            "/users?name=trustee-defaults",
            &admin,
            Value::Null,
        )
        .await
        .body["users"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .ks(
            Method::POST,
            "/OS-TRUST/trusts",
            &admin,
            json!({"trust": {"trustor_user_id": auid, "trustee_user_id": trustee, "project_id": apid, "impersonation": false}}),
        )
        .await;
    assert_eq!(r.status, 403, "a project and no role: {}", r.body);
    let t = create(
        c,
        &admin,
        "/OS-TRUST/trusts",
        "trust",
        json!({"trustor_user_id": auid, "trustee_user_id": trustee, "project_id": apid,
               "impersonation": false, "roles": [{"name": "admin"}]}),
    )
    .await;
    let role = &t["roles"][0];
    assert!(role.get("domain_id").is_some_and(Value::is_null), "{role}");
    assert!(
        role.get("description").is_some() && role["options"].is_object(),
        "{role}"
    );
    let r = c
        .ks(Method::GET, "/OS-TRUST/trusts", &admin, Value::Null)
        .await;
    let listed = r.body["trusts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == t["id"])
        .unwrap()
        .clone();
    assert!(
        listed.get("roles").is_none() && listed.get("roles_links").is_none(),
        "{listed}"
    );

    // Application credentials: roles as Keystone's get_role (no links), no
    // access_rules key without rules, a generated secret for "", six
    // fractional digits in expires_at.
    let ac = create(
        c,
        &admin,
        &format!("/users/{auid}/application_credentials"),
        "application_credential",
        json!({"name": "defaults", "secret": "", "expires_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert!(ac["secret"].as_str().unwrap().len() > 20, "{ac}");
    assert!(ac.get("access_rules").is_none(), "{ac}");
    assert_eq!(ac["expires_at"], "2099-01-01T00:00:00.000000");
    let r0 = &ac["roles"][0];
    assert!(
        r0.get("links").is_none() && r0["options"].is_object() && r0.get("description").is_some(),
        "{r0}"
    );
    // Access rules as their own resource carry Keystone's self link.
    let ruled = create(
        c,
        &admin,
        &format!("/users/{auid}/application_credentials"),
        "application_credential",
        json!({"name": "ruled", "access_rules": [{"service": "compute", "method": "GET", "path": "/v2.1/servers"}]}),
    )
    .await;
    let rule = ruled["access_rules"][0]["id"].as_str().unwrap().to_string();
    let rules = c
        .ks(
            Method::GET,
            &format!("/users/{auid}/access_rules"),
            &admin,
            Value::Null,
        )
        .await;
    let listed = &rules.body["access_rules"][0];
    assert!(
        listed["links"]["self"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("/v3/access_rules/{rule}"))),
        "{listed}"
    );
    let shown = c
        .ks(
            Method::GET,
            &format!("/users/{auid}/access_rules/{rule}"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(shown.body["access_rule"]["links"], listed["links"]);
    // A user's groups show when each membership expires (never, here).
    let g = create(c, &admin, "/groups", "group", json!({"name": "expiry"})).await;
    let gid = g["id"].as_str().unwrap();
    let put = c
        .ks(
            Method::PUT,
            &format!("/groups/{gid}/users/{auid}"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(put.status, 204, "{}", put.body);
    let groups = c
        .ks(
            Method::GET,
            &format!("/users/{auid}/groups"),
            &admin,
            Value::Null,
        )
        .await;
    let mine = groups.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == gid)
        .unwrap()
        .clone();
    assert!(
        mine.get("membership_expires_at")
            .is_some_and(Value::is_null),
        "{mine}"
    );
}

async fn suite(backend: Backend) {
    let Some(c) = TestCloud::start_on(backend).await.unwrap() else {
        return;
    };
    tokens_and_discovery(&c).await;
    resources_grants_revocation(&c).await;
    bad_input(&c).await;
    endpoint_filter(&c).await;
    keystone_defaults(&c).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_suite_sqlite() {
    suite(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_suite_postgres() {
    suite(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_suite_mariadb() {
    suite(Backend::MariaDb).await;
}

/// Restarting on the same data directory is idempotent and keeps tokens valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ferro_config::Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    cfg.identity.password_hash_rounds = 4;
    cfg.api.listen = "127.0.0.1:0".into();
    // Simulated hosts, and everything in the test's directory (as root the
    // defaults are under /var/lib/ferrostack).
    cfg.compute.compute_driver = "fake".into();
    cfg.compute.instances_path = Some(dir.path().join("instances").display().to_string());
    cfg.volume.volumes_dir = Some(dir.path().join("volumes"));
    let app = ferro_api_server::App::start(cfg.clone()).await.unwrap();
    let pw = app.admin_password.clone();
    let stored = std::fs::read_to_string(dir.path().join("admin-password")).unwrap();
    assert_eq!(stored, pw);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin-password"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let clouds = std::fs::read_to_string(dir.path().join("clouds.yaml")).unwrap();
    assert!(clouds.contains("ferrostack:") && clouds.contains(&pw));
    drop(app);
    let again = ferro_api_server::App::start(cfg).await.unwrap();
    assert_eq!(
        again.admin_password, pw,
        "the generated password is generated once"
    );
}

/// Expired tokens: 404 as a subject, 401 as a caller; `allow_expired` within the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_rejected() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.token.expiration = 2)
        .await
        .unwrap()
        .unwrap();
    let admin = c.admin_token().await;
    let short = c
        .password_token(
            json!({"name": "admin", "domain": {"id": "default"}}),
            ADMIN_PASSWORD,
            Some(json!({"project": {"name": "admin", "domain": {"id": "default"}}})),
        )
        .await
        .header("x-subject-token")
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let fresh = c.admin_token().await;
    let v = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&fresh),
            Value::Null,
            &[("X-Subject-Token", &short)],
        )
        .await;
    assert_eq!(v.status, 404);
    let v = c
        .request_h(
            Method::GET,
            "/identity/v3/auth/tokens?allow_expired=1",
            Some(&fresh),
            Value::Null,
            &[("X-Subject-Token", &short)],
        )
        .await;
    assert_eq!(v.status, 200);
    let r = c.ks(Method::GET, "/projects", &admin, Value::Null).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], 401);
    // revocation events are listed for services
    let ev = c
        .ks(Method::GET, "/OS-REVOKE/events", &fresh, Value::Null)
        .await;
    assert_eq!(ev.status, 200);
    assert!(ev.body["events"].is_array());
    c.stop().await;
}

/// `ferrostack fernet rotate`: after one rotation tokens from the previous
/// primary still validate; once their key leaves the repository they do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_follow_key_rotation() {
    let c = TestCloud::start().await;
    let old = c.admin_token().await;
    let repo = c.data_dir().join("fernet-keys");
    let validate = |t: String| {
        let c = &c;
        async move {
            c.identity.invalidate(); // drop cached validations: decrypt again
            let fresh = c.admin_token().await;
            c.request_h(
                Method::GET,
                "/identity/v3/auth/tokens",
                Some(&fresh),
                Value::Null,
                &[("X-Subject-Token", &t)],
            )
            .await
            .status
        }
    };
    ferro_auth::fernet_keys::rotate(&repo, 3).unwrap();
    c.identity.reload_keys().unwrap();
    assert_eq!(
        validate(old.clone()).await,
        200,
        "secondary key still decrypts"
    );
    let new = c.admin_token().await;
    ferro_auth::fernet_keys::rotate(&repo, 3).unwrap();
    c.identity.reload_keys().unwrap();
    assert_eq!(
        validate(old).await,
        404,
        "a token whose key was rotated out is invalid"
    );
    assert_eq!(validate(new).await, 200);
    c.stop().await;
}

/// `[security_compliance]`: lockout after failed logins, password history on
/// self-service changes (not on admin resets), change upon first use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_compliance() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.security_compliance.lockout_failure_attempts = 2;
        cfg.security_compliance.lockout_duration = 2;
        cfg.security_compliance.unique_last_password_count = 2;
    })
    .await
    .unwrap()
    .unwrap();
    let admin = c.admin_token().await;
    let u = create(
        &c,
        &admin,
        "/users",
        "user",
        json!({"name": "sc", "password": "first-pw"}),
    )
    .await;
    let uid = u["id"].as_str().unwrap().to_string();
    let login = |pw: &'static str| {
        let c = &c;
        let uid = uid.clone();
        async move {
            c.password_token(json!({"id": uid}), pw, None)
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(login("first-pw").await, 201);
    assert_eq!(login("wrong").await, 401);
    assert_eq!(login("wrong").await, 401);
    assert_eq!(login("first-pw").await, 401, "locked after 2 failures");
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        login("first-pw").await,
        201,
        "unlocked after lockout_duration"
    );

    let change = |orig: &'static str, new: &'static str| {
        let c = &c;
        let path = format!("/users/{uid}/password");
        async move {
            c.request(
                Method::POST,
                &format!("/identity/v3{path}"),
                None,
                json!({"user": {"original_password": orig, "password": new}}),
            )
            .await
            .status
            .as_u16()
        }
    };
    assert_eq!(change("first-pw", "second-pw").await, 204);
    assert_eq!(
        change("second-pw", "second-pw").await,
        400,
        "same as current"
    );
    assert_eq!(change("second-pw", "first-pw").await, 400, "in the last 2");
    assert_eq!(change("second-pw", "third-pw").await, 204);
    // an admin reset is not checked against the history
    let r = c
        .ks(
            Method::PATCH,
            &format!("/users/{uid}"),
            &admin,
            json!({"user": {"password": "third-pw"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    c.stop().await;
}

/// Unified limits: a project limit needs a registered default; duplicates 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_limits_and_limits() {
    let c = TestCloud::start().await;
    let admin = c.admin_token().await;
    let svc = create(
        &c,
        &admin,
        "/services",
        "service",
        json!({"type": "compute", "name": "nova"}),
    )
    .await;
    let sid = svc["id"].as_str().unwrap().to_string();
    let proj = create(&c, &admin, "/projects", "project", json!({"name": "lim"})).await;
    let pid = proj["id"].as_str().unwrap().to_string();
    let lim = json!({"limits": [{"project_id": pid, "service_id": sid, "region_id": "RegionOne", "resource_name": "cores", "resource_limit": 20}]});
    assert_eq!(
        c.ks(Method::POST, "/limits", &admin, lim.clone())
            .await
            .status,
        403,
        "no registered limit yet"
    );
    let reg = json!({"registered_limits": [{"service_id": sid, "region_id": "RegionOne", "resource_name": "cores", "default_limit": 10}]});
    let r = c
        .ks(Method::POST, "/registered_limits", &admin, reg.clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["registered_limits"][0]["default_limit"], 10);
    assert_eq!(
        c.ks(Method::POST, "/registered_limits", &admin, reg)
            .await
            .status,
        409
    );
    let r = c.ks(Method::POST, "/limits", &admin, lim.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let lid = r.body["limits"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(c.ks(Method::POST, "/limits", &admin, lim).await.status, 409);
    let l = c
        .ks(
            Method::GET,
            &format!("/limits?project_id={pid}"),
            &admin,
            Value::Null,
        )
        .await;
    assert_eq!(l.body["limits"].as_array().unwrap().len(), 1);
    let r = c
        .ks(
            Method::PATCH,
            &format!("/limits/{lid}"),
            &admin,
            json!({"limit": {"resource_limit": 30}}),
        )
        .await;
    assert_eq!(r.body["limit"]["resource_limit"], 30);
    assert_eq!(
        c.ks(Method::GET, "/limits/model", &admin, Value::Null)
            .await
            .body["model"]["name"],
        "flat"
    );
    assert_eq!(
        c.ks(
            Method::DELETE,
            &format!("/limits/{lid}"),
            &admin,
            Value::Null
        )
        .await
        .status,
        204
    );
    c.stop().await;
}
