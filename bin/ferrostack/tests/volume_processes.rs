//! kill -9 of the cloud at each step of attaching and detaching a volume to
//! a real guest: the controller and compute roles in one `ferrostack serve`
//! process, the volume agent of another host in its own (over RabbitMQ),
//! exporting the volume over NBD. After each kill and restart the volume's
//! status, the server's attachments, the block devices the guest's QEMU
//! has and the exports open on the volume host all agree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod guests;
mod processes;

use guests::{Reaper, guest_dir, guest_image, have};
use processes::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// One QMP command to the guest's QEMU, its answer.
fn qmp(sock: &Path, cmd: &str) -> Value {
    let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut answer = |w: &mut std::os::unix::net::UnixStream, c: &str| -> Value {
        writeln!(w, "{}", json!({"execute": c})).unwrap();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "QMP closed");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v.get("return").is_some() || v.get("error").is_some() {
                return v;
            }
        }
    };
    answer(&mut w, "qmp_capabilities");
    answer(&mut w, cmd)
}

/// The volume block nodes the guest's QEMU holds, and those of them a
/// device uses.
fn guest_volume_nodes(sock: &Path) -> (Vec<String>, Vec<String>) {
    let nodes = qmp(sock, "query-named-block-nodes")["return"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node-name"].as_str())
        .filter(|n| n.starts_with("vol-"))
        .map(str::to_string)
        .collect();
    let used = qmp(sock, "query-block")["return"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["inserted"]["node-name"].as_str())
        .filter(|n| n.starts_with("vol-"))
        .map(str::to_string)
        .collect();
    (nodes, used)
}

/// The NBD exports whose daemon runs on the volume host.
fn open_exports(volumes: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(volumes.join(".exports")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().contains('@'))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("pid"))
                .ok()
                .is_some_and(|p| Path::new(&format!("/proc/{}", p.trim())).exists())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Stops, on the way out (a failed assertion included), the export
/// daemons the volume agent left in `volumes`.
struct ExportReaper(std::path::PathBuf);
impl Drop for ExportReaper {
    fn drop(&mut self) {
        let Ok(rd) = std::fs::read_dir(self.0.join(".exports")) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(pid) = std::fs::read_to_string(e.path().join("pid")) else {
                continue;
            };
            let pid = pid.trim();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*self.0.to_string_lossy()) {
                let _ = std::process::Command::new("kill").arg(pid).status();
            }
        }
    }
}

struct Cloud {
    c: reqwest::Client,
    url: String,
    tok: String,
    cinder: String,
}

impl Cloud {
    async fn new(url: &str) -> Cloud {
        // A request the cloud never answers fails the test, not hangs it.
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let t = Instant::now();
        let tok = loop {
            let ok = c
                .get(format!("{url}/identity/v3"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break token(&c, url).await;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the cloud never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (_, p, _) = req(
            &c,
            reqwest::Method::GET,
            &format!("{url}/identity/v3/projects?name=admin"),
            Some(&tok),
            Value::Null,
        )
        .await;
        let cinder = format!(
            "{url}/volume/v3/{}",
            p["projects"][0]["id"].as_str().unwrap()
        );
        Cloud {
            c,
            url: url.to_string(),
            tok,
            cinder,
        }
    }
    async fn call(&self, m: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let url = if path.starts_with("/volume/") {
            format!("{}{}", self.cinder, &path["/volume".len()..])
        } else {
            format!("{}{path}", self.url)
        };
        let (st, b, _) = req(&self.c, m, &url, Some(&self.tok), body).await;
        (st, b)
    }
    async fn volume_status(&self, vol: &str) -> String {
        let (_, b) = self
            .call(
                reqwest::Method::GET,
                &format!("/volume/volumes/{vol}"),
                Value::Null,
            )
            .await;
        b["volume"]["status"].as_str().unwrap_or("?").to_string()
    }
    /// Waits until the volume rests (neither attaching nor detaching).
    async fn settled(&self, vol: &str, within: Duration) -> String {
        let t = Instant::now();
        loop {
            let st = self.volume_status(vol).await;
            if st == "available" || st == "in-use" || st == "error" {
                return st;
            }
            assert!(t.elapsed() < within, "volume {vol} still {st}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    async fn attached(&self, server: &str) -> Vec<String> {
        let (_, b) = self
            .call(
                reqwest::Method::GET,
                &format!("/compute/v2.1/servers/{server}/os-volume_attachments"),
                Value::Null,
            )
            .await;
        b["volumeAttachments"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["volumeId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
    async fn attach(&self, server: &str, vol: &str) -> u16 {
        self.call(
            reqwest::Method::POST,
            &format!("/compute/v2.1/servers/{server}/os-volume_attachments"),
            json!({"volumeAttachment": {"volumeId": vol}}),
        )
        .await
        .0
    }
    async fn detach(&self, server: &str, vol: &str) -> u16 {
        self.call(
            reqwest::Method::DELETE,
            &format!("/compute/v2.1/servers/{server}/os-volume_attachments/{vol}"),
            Value::Null,
        )
        .await
        .0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_each_attach_and_detach_step_leaves_volume_guest_and_export_agreeing() {
    if !rabbit_reachable() {
        ferro_common::skip_or_fail("RabbitMQ is not reachable at 127.0.0.1:5672");
        return;
    }
    let Some(image_file) = guest_image() else {
        return;
    };
    if !have("qemu-storage-daemon") {
        ferro_common::skip_or_fail("qemu-storage-daemon is not installed (qemu-system-common)");
        return;
    }
    let bus = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let instances = guest_dir();
    let _reaper = Reaper(instances.path().to_path_buf());
    let dir = tempfile::tempdir().unwrap();
    let vdir = tempfile::tempdir().unwrap();
    let volumes = vdir.path().join("volumes");
    let port = free_port();
    let suffix = format!("{:08x}", std::process::id() ^ u32::from(port));
    let (aio_host, vol_host) = (format!("aio-{suffix}"), format!("vol-{suffix}"));
    let env = [
        ("FERROSTACK__BUS__URL", bus),
        ("FERROSTACK__COMPUTE__HOST", aio_host.as_str()),
        ("FERROSTACK__COMPUTE__COMPUTE_DRIVER", "qemu"),
        ("FERROSTACK__COMPUTE__VIRT_TYPE", "qemu"),
        (
            "FERROSTACK__COMPUTE__INSTANCES_PATH",
            instances.path().to_str().unwrap(),
        ),
        ("FERROSTACK__VOLUME__VOLUME_HOST", vol_host.as_str()),
        ("FERROSTACK__NETWORK__HOST_NET_DRIVER", "fake"),
    ];
    let roles = ["--roles", "controller,compute"];
    let serve = |inject: Option<&str>| start_with(dir.path(), port, inject, &roles, &env);
    let _exports = ExportReaper(volumes.clone());
    let _agent = start_with(
        vdir.path(),
        9,
        None,
        &["--roles", "volume"],
        &[
            ("FERROSTACK__BUS__URL", bus),
            ("FERROSTACK__COMPUTE__HOST", &vol_host),
            ("FERROSTACK__VOLUME__VOLUMES_DIR", volumes.to_str().unwrap()),
            ("FERROSTACK__VOLUME__REMOTE_TRANSPORT", "nbd"),
        ],
    );
    let mut s = serve(None);
    let cloud = Cloud::new(&s.url).await;

    // A real guest and a volume of the other host.
    let (st, img) = cloud
        .call(
            reqwest::Method::POST,
            "/image/v2/images",
            json!({"name": "guest", "disk_format": "qcow2", "container_format": "bare"}),
        )
        .await;
    assert_eq!(st, 201, "{img}");
    let img = img["id"].as_str().unwrap().to_string();
    let up = cloud
        .c
        .put(format!("{}/image/v2/images/{img}/file", cloud.url))
        .header("X-Auth-Token", &cloud.tok)
        .header("Content-Type", "application/octet-stream")
        .body(std::fs::read(&image_file).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 204);
    let (st, b) = cloud
        .call(
            reqwest::Method::POST,
            "/compute/v2.1/servers",
            json!({"server": {"name": "k9", "imageRef": img, "flavorRef": "1",
                              "networks": "none"}}),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let server = b["server"]["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    loop {
        let sv = status(&cloud.c, &cloud.url, &cloud.tok, &server).await;
        match sv["status"].as_str() {
            Some("ACTIVE") => break,
            Some("ERROR") => panic!("the guest did not start: {sv}"),
            _ => {}
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{sv}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let qmp_sock = instances.path().join(&server).join("run/qmp.sock");
    let (st, b) = cloud
        .call(
            reqwest::Method::POST,
            "/volume/volumes",
            json!({"volume": {"size": 1, "name": "k9-vol"}}),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let vol = b["volume"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        cloud.settled(&vol, Duration::from_secs(30)).await,
        "available"
    );

    let mut outcomes = Vec::new();
    let steps = [
        "attach_reserve",
        "attach_connect",
        "attach_plug",
        "attach_complete",
        "detach_begin",
        "detach_unplug",
        "detach_release",
    ];
    for step in steps {
        // Where the step starts from: detached for attach, attached for detach.
        let want = if step.starts_with("attach") {
            "available"
        } else {
            "in-use"
        };
        let cloud = Cloud::new(&s.url).await;
        if cloud.volume_status(&vol).await != want {
            let st = if want == "in-use" {
                cloud.attach(&server, &vol).await
            } else {
                cloud.detach(&server, &vol).await
            };
            assert!(st < 300, "{step}: setting up: {st}");
            assert_eq!(cloud.settled(&vol, Duration::from_secs(60)).await, want);
        }
        // The cloud again, hanging at the step; the request reaches it.
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        drop(s);
        s = serve(Some(&format!("{step}:hang")));
        let cloud = Cloud::new(&s.url).await;
        eprintln!("{step}: the request, hanging at the step");
        // The request may wait on the saga (attach answers when it is
        // done): it is left to die with the process.
        let path = format!(
            "{}/compute/v2.1/servers/{server}/os-volume_attachments",
            s.url
        );
        let call = if step.starts_with("attach") {
            cloud
                .c
                .post(path)
                .header("Content-Type", "application/json")
                .body(json!({"volumeAttachment": {"volumeId": vol}}).to_string())
        } else {
            cloud.c.delete(format!("{path}/{vol}"))
        };
        let request = tokio::spawn(call.header("X-Auth-Token", &cloud.tok).send());
        let t = Instant::now();
        while !std::fs::read_to_string(&s.log)
            .unwrap_or_default()
            .contains("fault injection: hanging")
        {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{step}: never reached"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
        drop(s);
        request.abort();
        s = serve(None);
        let cloud = Cloud::new(&s.url).await;
        eprintln!("{step}: killed and started again");
        // Settled, the records, the guest and the volume host agree (a
        // moment may pass between the volume's status and the server's).
        let t = Instant::now();
        let (status, state) = loop {
            let status = cloud.settled(&vol, Duration::from_secs(60)).await;
            let attached = cloud.attached(&server).await;
            let (nodes, used) = guest_volume_nodes(&qmp_sock);
            let exports = open_exports(&volumes);
            let state = format!(
                "{step}: volume {status}, server attachments {attached:?}, guest nodes \
                 {nodes:?} (used {used:?}), exports {exports:?}"
            );
            let agree = match status.as_str() {
                "in-use" => {
                    attached == vec![vol.clone()]
                        && used.len() == 1
                        && nodes == used
                        && exports.len() == 1
                }
                "available" => attached.is_empty() && nodes.is_empty() && exports.is_empty(),
                _ => false,
            };
            if agree || t.elapsed() > Duration::from_secs(15) {
                break (agree.then_some(status), state);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let Some(status) = status else {
            panic!("after kill -9 at {state}");
        };
        outcomes.push(format!("{step} -> {status}"));
    }
    eprintln!("kill -9 outcomes: {}", outcomes.join(", "));
    // The guest ran throughout, and goes with its volume's attachment.
    let cloud = Cloud::new(&s.url).await;
    let sv = status(&cloud.c, &cloud.url, &cloud.tok, &server).await;
    assert_eq!(sv["status"], "ACTIVE", "{sv}");
    let (st, _) = cloud
        .call(
            reqwest::Method::DELETE,
            &format!("/compute/v2.1/servers/{server}"),
            Value::Null,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(
        cloud.settled(&vol, Duration::from_secs(60)).await,
        "available"
    );
    let t = Instant::now();
    while !open_exports(&volumes).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "an export outlived the server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A file's length and its first `n` bytes.
fn file_head(p: &Path, n: usize) -> (u64, Vec<u8>) {
    use std::io::Read;
    let f = std::fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len();
    let mut b = Vec::with_capacity(n);
    f.take(n as u64).read_to_end(&mut b).unwrap();
    (len, b)
}

/// Whether this process runs as root (a mount namespace needs it).
fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().next().map(|x| x == "0"))
        .unwrap_or(false)
}

/// The volume agent of another host moves image data to and from the
/// Image service itself: run where the controller's files are hidden from
/// it (its own mount namespace), it makes a volume from an image and
/// uploads a volume to a new image; what the image held is what the volume
/// holds, and back. Neither host keeps a scratch file afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_volume_host_downloads_and_uploads_images_itself() {
    if !rabbit_reachable() {
        ferro_common::skip_or_fail("RabbitMQ is not reachable at 127.0.0.1:5672");
        return;
    }
    if !root() || !have("unshare") || !have("qemu-img") {
        ferro_common::skip_or_fail(
            "root, unshare and qemu-img are needed to run the volume agent in a mount namespace",
        );
        return;
    }
    let bus = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let dir = tempfile::tempdir().unwrap();
    let vdir = tempfile::tempdir().unwrap();
    let volumes = vdir.path().join("volumes");
    let port = free_port();
    let suffix = format!("{:08x}", std::process::id() ^ u32::from(port) ^ 0x5a5a);
    let (aio_host, vol_host) = (format!("aio-{suffix}"), format!("vol-{suffix}"));
    let _agent = start_hiding(
        dir.path(),
        vdir.path(),
        9,
        &["--roles", "volume"],
        &[
            ("FERROSTACK__BUS__URL", bus),
            ("FERROSTACK__COMPUTE__HOST", &vol_host),
            ("FERROSTACK__VOLUME__VOLUMES_DIR", volumes.to_str().unwrap()),
            ("FERROSTACK__VOLUME__VOLUME_FORMAT", "raw"),
        ],
    );
    let s = start_with(
        dir.path(),
        port,
        None,
        &["--roles", "controller,compute"],
        &[
            ("FERROSTACK__BUS__URL", bus),
            ("FERROSTACK__COMPUTE__HOST", &aio_host),
            ("FERROSTACK__VOLUME__VOLUME_HOST", &vol_host),
            ("FERROSTACK__NETWORK__HOST_NET_DRIVER", "fake"),
        ],
    );
    let cloud = Cloud::new(&s.url).await;

    // An image of 3 MiB that is not all zeros.
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (st, img) = cloud
        .call(
            reqwest::Method::POST,
            "/image/v2/images",
            json!({"name": "source", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    assert_eq!(st, 201, "{img}");
    let img = img["id"].as_str().unwrap().to_string();
    let up = cloud
        .c
        .put(format!("{}/image/v2/images/{img}/file", cloud.url))
        .header("X-Auth-Token", &cloud.tok)
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 204);

    // Image -> volume, on the volume host.
    let (st, b) = cloud
        .call(
            reqwest::Method::POST,
            "/volume/volumes",
            json!({"volume": {"size": 1, "name": "from-image", "imageRef": img}}),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let vol = b["volume"]["id"].as_str().unwrap().to_string();
    let st = cloud.settled(&vol, Duration::from_secs(60)).await;
    let log = || std::fs::read_to_string(vdir.path().join("serve-cleanrolesvolume.log"));
    assert_eq!(st, "available", "agent log: {:?}", log());
    let (len, head) = file_head(&volumes.join(format!("volume-{vol}")), data.len() + 4096);
    assert_eq!(len, 1 << 30);
    assert!(head[..data.len()] == data[..], "the volume holds the image");
    assert!(head[data.len()..].iter().all(|b| *b == 0));

    // Volume -> a new qcow2 image, uploaded by the volume host.
    let (st, b) = cloud
        .call(
            reqwest::Method::POST,
            &format!("/volume/volumes/{vol}/action"),
            json!({"os-volume_upload_image": {"image_name": "back", "disk_format": "qcow2",
                                              "container_format": "bare"}}),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let back = b["os-volume_upload_image"]["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = Instant::now();
    loop {
        let (_, i) = cloud
            .call(
                reqwest::Method::GET,
                &format!("/image/v2/images/{back}"),
                Value::Null,
            )
            .await;
        if i["status"] == "active" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "image {i}; agent log: {:?}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        cloud.settled(&vol, Duration::from_secs(30)).await,
        "available"
    );
    let got = cloud
        .c
        .get(format!("{}/image/v2/images/{back}/file", cloud.url))
        .header("X-Auth-Token", &cloud.tok)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let qcow = vdir.path().join("back.qcow2");
    std::fs::write(&qcow, &got).unwrap();
    let raw = vdir.path().join("back.raw");
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&qcow)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (len, back_data) = file_head(&raw, data.len());
    assert_eq!(len, 1 << 30);
    assert!(back_data == data, "the image holds the volume");

    // No scratch file is left on either host.
    let scratch: Vec<_> = std::fs::read_dir(volumes.join(".images"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(scratch.is_empty(), "{scratch:?}");
    let leftover = std::fs::read_dir(dir.path().join("volume-tmp")).is_ok();
    assert!(!leftover, "the controller has a volume scratch directory");
}
