//! Image service integration tests: the real server in-process, driven over
//! HTTP like openstackclient/Tempest do.
#![allow(clippy::unwrap_used)]

use ferro_test_utils::{Backend, TestCloud};
use reqwest::Method;
use serde_json::{Value, json};

async fn img(
    c: &TestCloud,
    m: Method,
    path: &str,
    tok: &str,
    body: Value,
) -> ferro_test_utils::Resp {
    c.request(m, &format!("/image{path}"), Some(tok), body)
        .await
}

async fn put_data(
    c: &TestCloud,
    tok: &str,
    id: &str,
    data: Vec<u8>,
    what: &str,
) -> reqwest::Response {
    c.client
        .put(format!("{}/image/v2/images/{id}/{what}", c.url))
        .header("X-Auth-Token", tok)
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap()
}

fn store_files(c: &TestCloud) -> Vec<String> {
    std::fs::read_dir(c.data_dir().join("images"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn qcow2_header(backing: bool) -> Vec<u8> {
    let mut h = vec![0u8; 4096];
    h[..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    if backing {
        h[8..16].copy_from_slice(&1024u64.to_be_bytes());
        h[16..20].copy_from_slice(&10u32.to_be_bytes());
        h[1024..1034].copy_from_slice(b"/etc/shado");
    }
    h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    h[100..104].copy_from_slice(&104u32.to_be_bytes());
    h
}

async fn image_suite(backend: Backend) {
    let Some(c) = TestCloud::start_on(backend).await.unwrap() else {
        return;
    };
    let admin = c.admin_token().await;
    let (pa, ta) = c.member_user(&admin, "alice").await;
    let (pb, tb) = c.member_user(&admin, "bob").await;

    // discovery and catalog
    assert_eq!(
        c.request(Method::GET, "/image/", None, Value::Null)
            .await
            .status,
        300
    );
    let tok = c
        .password_token(
            json!({"name": "alice", "domain": {"id": "default"}}),
            "pw",
            Some(json!({"project": {"id": pa}})),
        )
        .await;
    assert!(
        tok.body["token"]["catalog"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["type"] == "image")
    );

    // create: defaults, extra properties, read-only and reserved attributes
    let r = img(&c, Method::POST, "/v2/images", &ta, json!({"name": "cirros", "disk_format": "raw", "container_format": "bare", "ramdisk_id": "r1", "tags": ["a", "a", "b"]})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["visibility"], "shared");
    assert_eq!(r.body["owner"], pa.as_str());
    assert_eq!(r.body["ramdisk_id"], "r1");
    assert_eq!(r.body["tags"], json!(["a", "b"]));
    assert_eq!(r.body["size"], Value::Null);
    for (body, want) in [
        (json!({"name": "x", "status": "active"}), 403),
        (json!({"name": "x", "os_glance_foo": "bar"}), 403),
        (json!({"name": "x", "disk_format": "wrong"}), 400),
        (json!({"name": "x", "visibility": "public"}), 403),
        (json!({"name": "x", "min_ram": -1}), 400),
    ] {
        assert_eq!(
            img(&c, Method::POST, "/v2/images", &ta, body.clone())
                .await
                .status
                .as_u16(),
            want,
            "{body}"
        );
    }

    // upload, then everything is known before the 204 returns
    assert_eq!(
        img(
            &c,
            Method::GET,
            &format!("/v2/images/{id}/file"),
            &ta,
            Value::Null
        )
        .await
        .status,
        204
    );
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        put_data(&c, &ta, &id, data.clone(), "file").await.status(),
        204
    );
    let r = img(
        &c,
        Method::GET,
        &format!("/v2/images/{id}"),
        &ta,
        Value::Null,
    )
    .await;
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["size"], 300_000);
    assert_eq!(r.body["virtual_size"], 300_000);
    assert_eq!(r.body["os_hash_algo"], "sha512");
    let md5 = r.body["checksum"].as_str().unwrap().to_string();
    assert_eq!(md5.len(), 32);
    assert_eq!(r.body["os_hash_value"].as_str().unwrap().len(), 128);
    // a second upload is refused
    assert_eq!(
        put_data(&c, &ta, &id, vec![1, 2, 3], "file").await.status(),
        409
    );
    // download: same bytes, Content-MD5, ranges
    let d = c
        .client
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &ta)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(d.headers()["content-md5"].to_str().unwrap(), md5);
    assert_eq!(d.bytes().await.unwrap().to_vec(), data);
    let d = c
        .client
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &ta)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 206);
    assert_eq!(
        d.headers()["content-range"].to_str().unwrap(),
        "bytes 10-19/300000"
    );
    assert_eq!(d.bytes().await.unwrap().to_vec(), data[10..20].to_vec());

    // patch (v2.1 and v2.0 media types), tags
    let patch = |ct: &'static str, body: Value| {
        let c = &c;
        let ta = ta.clone();
        let id = id.clone();
        async move {
            c.client
                .patch(format!("{}/image/v2/images/{id}", c.url))
                .header("X-Auth-Token", ta)
                .header("Content-Type", ct)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let r = patch("application/openstack-images-v2.1-json-patch", json!([{"op": "replace", "path": "/name", "value": "renamed"}, {"op": "add", "path": "/os_distro", "value": "cirros"}])).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["name"], "renamed");
    assert_eq!(body["os_distro"], "cirros");
    assert_eq!(
        patch(
            "application/openstack-images-v2.0-json-patch",
            json!([{"add": "/os_distro", "value": "x"}])
        )
        .await
        .status(),
        409
    );
    assert_eq!(
        patch(
            "application/openstack-images-v2.0-json-patch",
            json!([{"remove": "/os_distro"}])
        )
        .await
        .status(),
        200
    );
    assert_eq!(patch("application/json", json!([])).await.status(), 415);
    assert_eq!(
        patch(
            "application/openstack-images-v2.1-json-patch",
            json!([{"op": "replace", "path": "/owner", "value": pb}])
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        img(
            &c,
            Method::PUT,
            &format!("/v2/images/{id}/tags/t1"),
            &ta,
            Value::Null
        )
        .await
        .status,
        204
    );
    assert_eq!(
        img(
            &c,
            Method::DELETE,
            &format!("/v2/images/{id}/tags/nope"),
            &ta,
            Value::Null
        )
        .await
        .status,
        404
    );

    // sharing: bob cannot see it, sees it pending once added, lists it once accepted
    assert_eq!(
        img(
            &c,
            Method::GET,
            &format!("/v2/images/{id}"),
            &tb,
            Value::Null
        )
        .await
        .status,
        404
    );
    let r = img(
        &c,
        Method::POST,
        &format!("/v2/images/{id}/members"),
        &ta,
        json!({"member": pb}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(
        img(
            &c,
            Method::GET,
            &format!("/v2/images/{id}"),
            &tb,
            Value::Null
        )
        .await
        .status,
        200
    );
    let ids = |v: &Value| {
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        !ids(&img(&c, Method::GET, "/v2/images", &tb, Value::Null)
            .await
            .body)
        .contains(&id)
    );
    assert_eq!(
        ids(&img(
            &c,
            Method::GET,
            "/v2/images?member_status=pending&visibility=shared",
            &tb,
            Value::Null
        )
        .await
        .body),
        vec![id.clone()]
    );
    assert_eq!(
        img(
            &c,
            Method::PUT,
            &format!("/v2/images/{id}/members/{pb}"),
            &ta,
            json!({"status": "accepted"})
        )
        .await
        .status,
        403,
        "the owner cannot accept"
    );
    assert_eq!(
        img(
            &c,
            Method::PUT,
            &format!("/v2/images/{id}/members/{pb}"),
            &tb,
            json!({"status": "bogus"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        img(
            &c,
            Method::PUT,
            &format!("/v2/images/{id}/members/{pb}"),
            &tb,
            json!({"status": "accepted"})
        )
        .await
        .status,
        200
    );
    assert!(
        ids(&img(&c, Method::GET, "/v2/images", &tb, Value::Null)
            .await
            .body)
        .contains(&id)
    );
    // bob may not change or delete it
    assert_eq!(
        img(
            &c,
            Method::DELETE,
            &format!("/v2/images/{id}"),
            &tb,
            Value::Null
        )
        .await
        .status,
        403
    );

    // list filters, sorting and pagination with next links
    for i in 0..5 {
        let r = img(&c, Method::POST, "/v2/images", &ta, json!({"name": format!("page-{i}"), "disk_format": "qcow2", "container_format": "bare", "visibility": "private"})).await;
        assert_eq!(r.status, 201);
    }
    let l = img(
        &c,
        Method::GET,
        "/v2/images?limit=2&visibility=private&sort=name:asc",
        &ta,
        Value::Null,
    )
    .await;
    assert_eq!(l.status, 200);
    let names: Vec<&str> = l.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["page-0", "page-1"]);
    let next = l.body["next"].as_str().unwrap().to_string();
    let l2 = img(&c, Method::GET, &next, &ta, Value::Null).await;
    assert_eq!(l2.body["images"][0]["name"], "page-2");
    let l = img(
        &c,
        Method::GET,
        "/v2/images?disk_format=raw&size_min=1&size_max=400000",
        &ta,
        Value::Null,
    )
    .await;
    assert_eq!(ids(&l.body), vec![id.clone()]);
    assert_eq!(
        img(
            &c,
            Method::GET,
            "/v2/images?sort_dir=sideways",
            &ta,
            Value::Null
        )
        .await
        .status,
        400
    );
    assert_eq!(
        img(&c, Method::GET, "/v2/images?limit=-1", &ta, Value::Null)
            .await
            .status,
        400
    );
    assert_eq!(
        img(&c, Method::GET, "/v2/images/", &ta, Value::Null)
            .await
            .status,
        404
    );

    // deactivate: owner can no longer download, admin can
    assert_eq!(
        img(
            &c,
            Method::POST,
            &format!("/v2/images/{id}/actions/deactivate"),
            &ta,
            Value::Null
        )
        .await
        .status,
        204
    );
    assert_eq!(
        img(
            &c,
            Method::GET,
            &format!("/v2/images/{id}/file"),
            &ta,
            Value::Null
        )
        .await
        .status,
        403
    );
    assert_eq!(
        img(
            &c,
            Method::POST,
            &format!("/v2/images/{id}/actions/reactivate"),
            &ta,
            Value::Null
        )
        .await
        .status,
        204
    );

    // protected images refuse deletion
    assert_eq!(
        patch(
            "application/openstack-images-v2.1-json-patch",
            json!([{"op": "replace", "path": "/protected", "value": true}])
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        img(
            &c,
            Method::DELETE,
            &format!("/v2/images/{id}"),
            &ta,
            Value::Null
        )
        .await
        .status,
        403
    );
    assert_eq!(
        patch(
            "application/openstack-images-v2.1-json-patch",
            json!([{"op": "replace", "path": "/protected", "value": false}])
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        img(
            &c,
            Method::DELETE,
            &format!("/v2/images/{id}"),
            &ta,
            Value::Null
        )
        .await
        .status,
        204
    );
    assert_eq!(
        img(
            &c,
            Method::GET,
            &format!("/v2/images/{id}"),
            &ta,
            Value::Null
        )
        .await
        .status,
        404
    );
    assert!(
        store_files(&c).is_empty(),
        "deleted image data remains: {:?}",
        store_files(&c)
    );

    // format safety: a qcow2 with a backing file, a non-image posing as qcow2
    for (data, what) in [
        (qcow2_header(true), "backing file"),
        (b"definitely not a disk image".repeat(100), "does not match"),
    ] {
        let r = img(
            &c,
            Method::POST,
            "/v2/images",
            &ta,
            json!({"name": "evil", "disk_format": "qcow2", "container_format": "bare"}),
        )
        .await;
        let eid = r.body["id"].as_str().unwrap().to_string();
        let up = put_data(&c, &ta, &eid, data, "file").await;
        assert_eq!(up.status(), 400);
        assert!(up.text().await.unwrap().contains(what));
        let r = img(
            &c,
            Method::GET,
            &format!("/v2/images/{eid}"),
            &ta,
            Value::Null,
        )
        .await;
        assert_eq!(
            r.body["status"], "queued",
            "a refused upload leaves the image queued"
        );
        assert!(
            store_files(&c).is_empty(),
            "refused data left in the store: {:?}",
            store_files(&c)
        );
    }
    // a valid qcow2 is accepted and its virtual size read from the header
    let r = img(
        &c,
        Method::POST,
        "/v2/images",
        &ta,
        json!({"name": "good", "disk_format": "qcow2", "container_format": "bare"}),
    )
    .await;
    let gid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        put_data(&c, &ta, &gid, qcow2_header(false), "file")
            .await
            .status(),
        204
    );
    assert_eq!(
        img(
            &c,
            Method::GET,
            &format!("/v2/images/{gid}"),
            &ta,
            Value::Null
        )
        .await
        .body["virtual_size"],
        1u64 << 30
    );

    // interrupted upload (client gone mid-stream): nothing kept, image still queued
    let r = img(
        &c,
        Method::POST,
        "/v2/images",
        &ta,
        json!({"name": "cut", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let cid = r.body["id"].as_str().unwrap().to_string();
    {
        use tokio::io::AsyncWriteExt;
        let addr = c.url.trim_start_matches("http://").to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!(
            "PUT /image/v2/images/{cid}/file HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {ta}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(&[7u8; 5000]).await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
    }
    let mut status = String::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = img(
            &c,
            Method::GET,
            &format!("/v2/images/{cid}"),
            &ta,
            Value::Null,
        )
        .await
        .body["status"]
            .as_str()
            .unwrap()
            .to_string();
        if status == "queued" && store_files(&c).len() == 1 {
            break;
        }
    }
    assert_eq!(status, "queued");
    assert_eq!(
        store_files(&c).len(),
        1,
        "only the good qcow2 is stored: {:?}",
        store_files(&c)
    );

    // interoperable import: stage then glance-direct
    let info = img(&c, Method::GET, "/v2/info/import", &ta, Value::Null).await;
    assert!(
        info.body["import-methods"]["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "glance-direct")
    );
    let r = img(
        &c,
        Method::POST,
        "/v2/images",
        &ta,
        json!({"name": "imported", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let iid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        put_data(&c, &ta, &iid, vec![9u8; 4096], "stage")
            .await
            .status(),
        204
    );
    assert_eq!(
        img(
            &c,
            Method::GET,
            &format!("/v2/images/{iid}"),
            &ta,
            Value::Null
        )
        .await
        .body["status"],
        "uploading"
    );
    assert_eq!(
        img(
            &c,
            Method::POST,
            &format!("/v2/images/{iid}/import"),
            &ta,
            json!({"method": {"name": "glance-direct"}})
        )
        .await
        .status,
        202
    );
    let mut st = String::new();
    for _ in 0..50 {
        st = img(
            &c,
            Method::GET,
            &format!("/v2/images/{iid}"),
            &ta,
            Value::Null,
        )
        .await
        .body["status"]
            .as_str()
            .unwrap()
            .to_string();
        if st == "active" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(st, "active");

    // schemas and unauthenticated access
    assert_eq!(
        img(&c, Method::GET, "/v2/schemas/image", &ta, Value::Null)
            .await
            .body["name"],
        "image"
    );
    assert_eq!(
        c.request(Method::GET, "/image/v2/images", None, Value::Null)
            .await
            .status,
        401
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_suite_sqlite() {
    image_suite(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_suite_postgres() {
    image_suite(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_suite_mariadb() {
    image_suite(Backend::MariaDb).await;
}

/// moto's S3 server for the s3 store test (scripts/s3-venv.sh installs it).
fn moto_server() -> Option<String> {
    let p = std::env::var("FERRO_MOTO_SERVER")
        .unwrap_or_else(|_| "/opt/ferrostack-s3-venv/bin/moto_server".into());
    std::path::Path::new(&p).exists().then_some(p)
}

/// The S3 server's object keys (ListObjectsV2) and open multipart uploads.
async fn s3_listing(http: &reqwest::Client, bucket_url: &str) -> (Vec<String>, usize) {
    let keys = http
        .get(format!("{bucket_url}?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys = keys
        .split("<Key>")
        .skip(1)
        .filter_map(|x| x.split("</Key>").next())
        .map(str::to_string)
        .collect();
    let ups = http
        .get(format!("{bucket_url}?uploads"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (keys, ups.matches("<Upload>").count())
}

/// The s3 store against a real S3 API (moto): a multipart upload, a
/// download and a range byte-identical, an interrupted upload that leaves
/// no object and no open multipart upload, and delete.
#[tokio::test]
async fn s3_store_against_moto() {
    let Some(moto) = moto_server() else {
        ferro_common::skip_or_fail("moto_server not installed (bash scripts/s3-venv.sh)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let bucket_url = format!("{endpoint}/glance-images");
    let mut up = false;
    for _ in 0..100 {
        if http
            .put(&bucket_url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "moto_server did not start on {endpoint}");
    let ep = endpoint.clone();
    let c = TestCloud::start_with(Backend::Sqlite, move |cfg| {
        cfg.image.store = "s3".into();
        cfg.image.s3_store_host = Some(ep);
        cfg.image.s3_store_bucket = Some("glance-images".into());
        cfg.image.s3_store_access_key = Some("ferro".into());
        cfg.image.s3_store_secret_key = Some("secret".into());
        cfg.image.s3_store_prefix = "images".into();
        cfg.image.require_image_format_match = false;
    })
    .await
    .unwrap()
    .unwrap();
    let tok = c.admin_token().await;
    let r = img(
        &c,
        Method::POST,
        "/v2/images",
        &tok,
        json!({"name": "big", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    // 20 MiB: three parts of a multipart upload.
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let r = put_data(&c, &tok, &id, data.clone(), "file").await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let shown = img(
        &c,
        Method::GET,
        &format!("/v2/images/{id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(shown.body["status"], "active", "{}", shown.body);
    assert_eq!(shown.body["size"], data.len());
    let (keys, _) = s3_listing(&http, &bucket_url).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&format!("images/{id}")), "{keys:?}");
    let stored = keys.clone();
    let got = c
        .client
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &tok)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let md5 = got
        .headers()
        .get("content-md5")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(md5, shown.body["checksum"].as_str().unwrap());
    assert!(
        got.bytes().await.unwrap()[..] == data[..],
        "download differs"
    );
    let part = c
        .client
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &tok)
        .header("Range", "bytes=9437184-9437283")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        &part.bytes().await.unwrap()[..],
        &data[9_437_184..9_437_284]
    );

    // A client that goes away after 12 MiB of a declared 20 MiB: the image
    // stays queued, no object appears and the multipart upload is aborted.
    let r = img(
        &c,
        Method::POST,
        "/v2/images",
        &tok,
        json!({"name": "cut", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let cid = r.body["id"].as_str().unwrap().to_string();
    {
        use tokio::io::AsyncWriteExt;
        let addr = c.url.trim_start_matches("http://").to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!(
            "PUT /image/v2/images/{cid}/file HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {tok}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            20u32 << 20
        );
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(&data[..12 << 20]).await.unwrap();
        s.shutdown().await.unwrap();
    }
    let mut last = (Vec::new(), usize::MAX, String::new());
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let st = img(
            &c,
            Method::GET,
            &format!("/v2/images/{cid}"),
            &tok,
            Value::Null,
        )
        .await;
        let (keys, open) = s3_listing(&http, &bucket_url).await;
        last = (
            keys,
            open,
            st.body["status"].as_str().unwrap_or_default().to_string(),
        );
        if last.0.len() == 1 && last.1 == 0 && last.2 == "queued" {
            break;
        }
    }
    assert_eq!(last.2, "queued");
    assert_eq!(last.0, stored, "no object for the cut upload");
    assert_eq!(last.1, 0, "the cut multipart upload was aborted");

    // Delete removes the object.
    let r = img(
        &c,
        Method::DELETE,
        &format!("/v2/images/{id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204);
    let (keys, _) = s3_listing(&http, &bucket_url).await;
    assert!(keys.is_empty(), "{keys:?}");
    let _ = child.kill().await;
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the image until no import or copy is running on it.
async fn settled(c: &TestCloud, tok: &str, id: &str) -> Value {
    for _ in 0..200 {
        let r = img(
            c,
            Method::GET,
            &format!("/v2/images/{id}"),
            tok,
            Value::Null,
        )
        .await;
        let b = r.body;
        if b["os_glance_importing_to_stores"] == "" && b["status"] != "importing" {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("image {id} never settled");
}

async fn import_req(c: &TestCloud, tok: &str, id: &str, body: Value) -> ferro_test_utils::Resp {
    img(
        c,
        Method::POST,
        &format!("/v2/images/{id}/import"),
        tok,
        body,
    )
    .await
}

/// Several stores (Glance's multistore): `/v2/info/stores`, upload to a
/// named store, copies listed by store weight, copy-image, glance-direct to several stores with and
/// without all_stores_must_succeed (one store is broken: its directory is
/// gone), deleting one store's copy, and a copy a crash interrupted resumed
/// by start-up recovery.
#[tokio::test]
async fn multiple_stores() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        for id in ["cheap", "fast", "gone"] {
            cfg.image.backends.insert(
                id.into(),
                ferro_config::ImageBackend {
                    description: Some(format!("{id} disks")),
                    weight: if id == "fast" { 5 } else { 0 },
                    ..Default::default()
                },
            );
        }
        cfg.image.default_backend = "fast".into();
        cfg.image.require_image_format_match = false;
    })
    .await
    .unwrap()
    .unwrap();
    let dir = |s: &str| c.data_dir().join("image-stores").join(s);
    std::fs::remove_dir_all(dir("gone")).unwrap();
    let tok = c.admin_token().await;
    let (_, member) = c.member_user(&tok, "ms-member").await;

    let r = img(&c, Method::GET, "/v2/info/stores", &member, Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"stores": [
            {"id": "cheap", "description": "cheap disks", "weight": 0},
            {"id": "fast", "description": "fast disks", "default": "true", "weight": 5},
            {"id": "gone", "description": "gone disks", "weight": 0},
        ]})
    );
    let r = img(
        &c,
        Method::GET,
        "/v2/info/stores/detail",
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = img(&c, Method::GET, "/v2/info/stores/detail", &tok, Value::Null).await;
    assert_eq!(r.body["stores"][1]["type"], "file");
    assert_eq!(
        r.body["stores"][1]["properties"]["data_dir"],
        dir("fast").display().to_string()
    );

    // Upload to a named store; an unknown store is 400.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let new_image =
        |name: &str| json!({"name": name, "disk_format": "raw", "container_format": "bare"});
    let a = img(&c, Method::POST, "/v2/images", &member, new_image("a")).await;
    let a = a.body["id"].as_str().unwrap().to_string();
    let upload_to = |store: &'static str| {
        let req = c
            .client
            .put(format!("{}/image/v2/images/{a}/file", c.url))
            .header("X-Auth-Token", &member)
            .header("Content-Type", "application/octet-stream")
            .header("X-Image-Meta-Store", store)
            .body(data.clone());
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(upload_to("nowhere").await, 400);
    assert_eq!(upload_to("cheap").await, 204);
    let shown = img(
        &c,
        Method::GET,
        &format!("/v2/images/{a}"),
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(shown.body["stores"], "cheap");
    assert_eq!(files_in(&dir("cheap")).len(), 1);
    assert!(files_in(&dir("fast")).is_empty());

    // copy-image: admin only; a store that has it already is 400, an
    // unknown one 409.
    let copy_fast = json!({"method": {"name": "copy-image"}, "stores": ["fast"]});
    assert_eq!(
        import_req(&c, &member, &a, copy_fast.clone()).await.status,
        403
    );
    let r = import_req(
        &c,
        &tok,
        &a,
        json!({"method": {"name": "copy-image"}, "stores": ["cheap"]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = import_req(
        &c,
        &tok,
        &a,
        json!({"method": {"name": "copy-image"}, "stores": ["nope"]}),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = import_req(&c, &tok, &a, copy_fast).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let b = settled(&c, &tok, &a).await;
    assert_eq!(b["stores"], "fast,cheap");
    assert_eq!(b["os_glance_failed_import"], "");
    assert_eq!(b["status"], "active");
    assert!(b.get("os_glance_import_task").is_none(), "{b}");
    assert!(b.get("os_glance_import_stores").is_none(), "{b}");
    assert_eq!(files_in(&dir("fast")).len(), 1);
    // all_stores skips the stores that have it; the broken one fails alone.
    let r = import_req(
        &c,
        &tok,
        &a,
        json!({"method": {"name": "copy-image"}, "all_stores": true, "all_stores_must_succeed": false}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let b = settled(&c, &tok, &a).await;
    assert_eq!(b["stores"], "fast,cheap");
    assert_eq!(b["os_glance_failed_import"], "gone");
    // Either copy serves the same bytes.
    let got = c
        .client
        .get(format!("{}/image/v2/images/{a}/file", c.url))
        .header("X-Auth-Token", &member)
        .send()
        .await
        .unwrap();
    assert!(got.bytes().await.unwrap()[..] == data[..]);

    // Deleting one store's copy: admin only, never the last copy.
    let del = |store: &str, tok: &str| {
        let url = format!("{}/image/v2/stores/{store}/{a}", c.url);
        let req = c.client.delete(url).header("X-Auth-Token", tok.to_string());
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(del("cheap", &member).await, 403);
    assert_eq!(del("nope", &tok).await, 409);
    assert_eq!(del("gone", &tok).await, 404);
    assert_eq!(del("cheap", &tok).await, 204);
    assert!(files_in(&dir("cheap")).is_empty());
    let shown = img(
        &c,
        Method::GET,
        &format!("/v2/images/{a}"),
        &member,
        Value::Null,
    )
    .await;
    assert_eq!(shown.body["stores"], "fast");
    assert_eq!(del("fast", &tok).await, 403);
    let got = c
        .client
        .get(format!("{}/image/v2/images/{a}/file", c.url))
        .header("X-Auth-Token", &member)
        .send()
        .await
        .unwrap();
    assert!(got.bytes().await.unwrap()[..] == data[..]);

    // glance-direct to every store, all must succeed: the broken store
    // fails, so the image goes back to queued with nothing kept anywhere.
    let staged = |name: &'static str| {
        let data = data.clone();
        let (c, member) = (&c, member.clone());
        async move {
            let r = img(c, Method::POST, "/v2/images", &member, new_image(name)).await;
            let id = r.body["id"].as_str().unwrap().to_string();
            let r = put_data(c, &member, &id, data, "stage").await;
            assert_eq!(r.status(), 204);
            id
        }
    };
    let b_id = staged("b").await;
    let before = (files_in(&dir("cheap")), files_in(&dir("fast")));
    let r = import_req(
        &c,
        &member,
        &b_id,
        json!({"method": {"name": "glance-direct"}, "all_stores": true}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let b = settled(&c, &tok, &b_id).await;
    assert_eq!(b["status"], "queued", "{b}");
    assert_eq!(b["os_glance_failed_import"], "gone");
    assert!(b.get("stores").is_none(), "{b}");
    assert_eq!(files_in(&dir("cheap")), before.0);
    assert_eq!(
        files_in(&dir("fast")).len(),
        before.1.len() - 1,
        "staged data removed"
    );

    // glance-direct to two named stores.
    let c_id = staged("c").await;
    let r = import_req(
        &c,
        &member,
        &c_id,
        json!({"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"]}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let b = settled(&c, &tok, &c_id).await;
    assert_eq!(b["status"], "active", "{b}");
    assert_eq!(b["stores"], "fast,cheap");
    assert_eq!(b["size"], data.len());
    assert_eq!(b["checksum"], shown.body["checksum"]);

    // A copy a crash interrupted after its first store: start-up recovery
    // finishes it.
    {
        use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
        let row = ferro_db::entity::image::image::Entity::find_by_id(a.clone())
            .one(&c.image.db.conn)
            .await
            .unwrap()
            .unwrap();
        let mut p: serde_json::Map<String, Value> = serde_json::from_str(&row.properties).unwrap();
        p.insert("os_glance_import_task".into(), json!("crashed"));
        p.insert("os_glance_importing_to_stores".into(), json!("cheap"));
        p.insert("os_glance_failed_import".into(), json!(""));
        p.insert("os_glance_import_stores".into(), json!("cheap"));
        p.insert("os_glance_import_must_succeed".into(), json!("true"));
        let mut am = row.into_active_model();
        am.properties = Set(Value::Object(p).to_string());
        am.update(&c.image.db.conn).await.unwrap();
    }
    // While a copy runs, no store's copy may be dropped.
    assert_eq!(del("fast", &tok).await, 409);
    ferro_image::import::recover(c.image.clone()).await.unwrap();
    let b = settled(&c, &tok, &a).await;
    assert_eq!(b["stores"], "fast,cheap", "{b}");
    assert!(b.get("os_glance_import_task").is_none(), "{b}");

    // Deleting an image removes every store's copy.
    let before = (files_in(&dir("cheap")).len(), files_in(&dir("fast")).len());
    for id in [&a, &c_id] {
        let r = img(
            &c,
            Method::DELETE,
            &format!("/v2/images/{id}"),
            &member,
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 204);
    }
    assert_eq!(files_in(&dir("cheap")).len(), before.0 - 2);
    assert_eq!(files_in(&dir("fast")).len(), before.1 - 2);
}

/// A one-route-per-path HTTP/1.1 server for web-download: `/img` serves
/// `data`, `/away` redirects to a port the filtering refuses, anything else
/// is 404. Returns its port.
async fn tiny_http(data: Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let data = std::sync::Arc::new(data);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let head = match path.as_str() {
                    "/img" => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        data.len()
                    ),
                    "/away" => "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/img\r\n\
                                Content-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string(),
                    _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string(),
                };
                let _ = s.write_all(head.as_bytes()).await;
                if path == "/img" {
                    let _ = s.write_all(&data).await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// web-download, offered when configured: a URI that passes the import
/// filtering is fetched, hashed and activated; a refused URI is 400 and a
/// missing one or a redirect to a refused port fails the import and leaves
/// the image queued with nothing stored.
#[tokio::test]
async fn web_download_import() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let port = tiny_http(data.clone()).await;
    let c = TestCloud::start_with(Backend::Sqlite, move |cfg| {
        cfg.image.import_methods.push("web-download".into());
        cfg.image.import_filtering.allowed_hosts = vec!["127.0.0.1".into()];
        cfg.image.import_filtering.allowed_ports = vec![port];
        cfg.image.require_image_format_match = false;
    })
    .await
    .unwrap()
    .unwrap();
    let tok = c.admin_token().await;
    let r = img(&c, Method::GET, "/v2/info/import", &tok, Value::Null).await;
    assert_eq!(
        r.body["import-methods"]["value"],
        json!(["glance-direct", "copy-image", "web-download"])
    );
    let new = |name: &str| json!({"name": name, "disk_format": "raw", "container_format": "bare"});
    let web = |uri: String| json!({"method": {"name": "web-download", "uri": uri}});

    let a = img(&c, Method::POST, "/v2/images", &tok, new("web")).await;
    let a = a.body["id"].as_str().unwrap().to_string();
    for refused in [
        format!("http://127.0.0.1:{}/img", port.wrapping_add(1)),
        format!("http://10.1.2.3:{port}/img"),
        format!("ftp://127.0.0.1:{port}/img"),
        "file:///etc/passwd".to_string(),
        // what the HTTP client would connect to is checked, not what a
        // looser reading of the URI suggests
        format!("http://10.0.0.1\\@127.0.0.1:{port}/img"),
        "http://%31%30.0.0.1/img".to_string(),
        "not a uri".to_string(),
    ] {
        let r = import_req(&c, &tok, &a, web(refused.clone())).await;
        assert_eq!(r.status, 400, "{refused}: {}", r.body);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("does not pass filtering"),
            "{}",
            r.body
        );
    }
    let r = import_req(&c, &tok, &a, web(format!("http://127.0.0.1:{port}/img"))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let b = settled(&c, &tok, &a).await;
    assert_eq!(b["status"], "active", "{b}");
    assert_eq!(b["size"], data.len());
    assert_eq!(b["stores"], "file");
    assert!(b.get("os_glance_import_uri").is_none(), "{b}");
    let got = c
        .client
        .get(format!("{}/image/v2/images/{a}/file", c.url))
        .header("X-Auth-Token", &tok)
        .send()
        .await
        .unwrap();
    assert!(got.bytes().await.unwrap()[..] == data[..]);
    // Only a queued image can be a web-download target.
    let r = import_req(&c, &tok, &a, web(format!("http://127.0.0.1:{port}/img"))).await;
    assert_eq!(r.status, 409, "{}", r.body);

    let files_before = store_files(&c);
    for path in ["/missing", "/away"] {
        let x = img(&c, Method::POST, "/v2/images", &tok, new(path)).await;
        let x = x.body["id"].as_str().unwrap().to_string();
        let r = import_req(&c, &tok, &x, web(format!("http://127.0.0.1:{port}{path}"))).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let b = settled(&c, &tok, &x).await;
        assert_eq!(b["status"], "queued", "{path}: {b}");
        assert_eq!(b["os_glance_failed_import"], "file", "{path}: {b}");
    }
    assert_eq!(store_files(&c), files_before, "a failed download left data");
}

/// The names of a list, sorted.
fn names_in(v: &Value, key: &str) -> Vec<String> {
    let mut n: Vec<String> = v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

async fn tag_names(c: &TestCloud, tok: &str, path: &str) -> Vec<String> {
    let r = c.request(Method::GET, path, Some(tok), Value::Null).await;
    names_in(&r.body, "tags")
}

async fn resource_type_names(c: &TestCloud, tok: &str) -> Vec<String> {
    let r = c
        .request(
            Method::GET,
            "/image/v2/metadefs/resource_types",
            Some(tok),
            Value::Null,
        )
        .await;
    names_in(&r.body, "resource_types")
}

/// Metadata definition tags and resource types as Glance: a tag list
/// replaces the namespace's tags, or is appended with `X-Openstack-Append`;
/// names are unique regardless of case; associating a namespace with a new
/// resource type creates that type, which outlives the association.
#[tokio::test]
async fn metadef_tags_and_created_resource_types() {
    let c = TestCloud::start().await;
    let tok = c.admin_token().await;
    let md = |p: &str| format!("/image/v2/metadefs{p}");
    let r = c
        .request(
            Method::POST,
            &md("/namespaces"),
            Some(&tok),
            json!({"namespace": "FerroTest::Tags", "visibility": "public"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let tags = |names: &[&str]| json!({"tags": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()});
    let path = md("/namespaces/FerroTest::Tags/tags");
    let r = c
        .request(Method::POST, &path, Some(&tok), tags(&["a", "b"]))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body, tags(&["a", "b"]));
    // Replaced...
    let r = c
        .request(Method::POST, &path, Some(&tok), tags(&["c"]))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(tag_names(&c, &tok, &path).await, ["c"]);
    // ... or appended.
    let r = c
        .request_h(
            Method::POST,
            &path,
            Some(&tok),
            tags(&["d", "e"]),
            &[("X-Openstack-Append", "True")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(tag_names(&c, &tok, &path).await, ["c", "d", "e"]);
    let r = c
        .request_h(
            Method::POST,
            &path,
            Some(&tok),
            tags(&["D"]),
            &[("X-Openstack-Append", "true")],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = c
        .request(Method::POST, &path, Some(&tok), tags(&["x", "X"]))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = c
        .request(Method::POST, &format!("{path}/C"), Some(&tok), Value::Null)
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // An empty list changes nothing; a refused one neither.
    let r = c.request(Method::POST, &path, Some(&tok), tags(&[])).await;
    assert_eq!(r.status, 201);
    assert_eq!(tag_names(&c, &tok, &path).await, ["c", "d", "e"]);

    // A new resource type comes with its first association and stays.
    let rt = md("/namespaces/FerroTest::Tags/resource_types");
    let r = c
        .request(
            Method::POST,
            &rt,
            Some(&tok),
            json!({"name": "Ferro::Test::Thing", "prefix": "ft_"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["name"], "Ferro::Test::Thing");
    let r = c
        .request(
            Method::POST,
            &rt,
            Some(&tok),
            json!({"name": "Ferro::Test::Thing"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let all = resource_type_names(&c, &tok).await;
    assert!(
        all.contains(&"OS::Glance::Image".to_string())
            && all.contains(&"Ferro::Test::Thing".to_string()),
        "{all:?}"
    );
    let r = c.request(Method::GET, &rt, Some(&tok), Value::Null).await;
    assert_eq!(
        r.body["resource_type_associations"][0]["name"], "Ferro::Test::Thing",
        "{}",
        r.body
    );
    let r = c
        .request(
            Method::DELETE,
            &format!("{rt}/Ferro::Test::Thing"),
            Some(&tok),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(
        resource_type_names(&c, &tok)
            .await
            .contains(&"Ferro::Test::Thing".to_string())
    );
    c.stop().await;
}
