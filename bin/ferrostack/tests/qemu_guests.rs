//! Real guests through the real API: the server in-process with
//! `compute_driver = "qemu"` (TCG here), the project's guest image uploaded
//! to the Image service as a user would, and a server booted, read, stopped,
//! started, snapshotted and deleted over HTTP as the `openstack` CLI does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod guests;

use ferro_test_utils::{Backend, Resp, TestCloud};
use guests::{Reaper, guest_dir, guest_image};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// `POST /servers/{id}/remote-consoles` (2.6+): the URL of a noVNC console.
async fn remote_console(c: &TestCloud, tok: &str, id: &str) -> String {
    let r = nova(
        c,
        Method::POST,
        &format!("/servers/{id}/remote-consoles"),
        tok,
        json!({"remote_console": {"protocol": "vnc", "type": "novnc"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["remote_console"]["type"], "novnc", "{}", r.body);
    r.body["remote_console"]["url"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Opens the websocket noVNC opens for a console URL (`GET /?token=...`),
/// with `origin` if given: the status line, and the first frame's payload
/// when it was upgraded.
async fn websocket(url: &str, origin: Option<&str>) -> (String, Option<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, query) = rest.split_once('?').unwrap();
    let authority = authority.split('/').next().unwrap();
    let token = query.rsplit("%3D").next().unwrap();
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    let mut req = format!(
        "GET /?token={token} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
    );
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let status =
        String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == b'\r').unwrap()]).to_string();
    if !status.contains(" 101 ") {
        return (status, None);
    }
    let mut frame = buf[head_end..].to_vec();
    while frame.len() < 2 || frame.len() < 2 + usize::from(frame[1] & 127) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the first frame");
        frame.extend_from_slice(&chunk[..n]);
    }
    let len = usize::from(frame[1] & 127);
    (status, Some(frame[2..2 + len].to_vec()))
}

async fn wait_status(c: &TestCloud, tok: &str, id: &str, want: &str, within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let r = nova(c, Method::GET, &format!("/servers/{id}"), tok, Value::Null).await;
        if r.status == 404 && want == "DELETED" {
            return Value::Null;
        }
        let s = &r.body["server"];
        if s["status"] == want && s["OS-EXT-STS:task_state"].is_null() {
            return s.clone();
        }
        assert!(
            s["status"] != "ERROR" && t.elapsed() < within,
            "server {id} is not {want}: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn console(c: &TestCloud, tok: &str, id: &str) -> String {
    let r = nova(
        c,
        Method::POST,
        &format!("/servers/{id}/action"),
        tok,
        json!({"os-getConsoleOutput": {"length": -1}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["output"].as_str().unwrap_or_default().to_string()
}

async fn wait_console(c: &TestCloud, tok: &str, id: &str, want: &str, after: usize) -> String {
    let t = Instant::now();
    loop {
        let out = console(c, tok, id).await;
        if out.matches(want).count() > after {
            return out;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no {want:?} on the console: {out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An image with `body`'s fields and `file`'s bytes, as a user uploads one.
async fn upload(c: &TestCloud, tok: &str, body: Value, file: &str) -> String {
    let r = c
        .request(Method::POST, "/image/v2/images", Some(tok), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let up = c
        .client
        .put(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", tok)
        .header("Content-Type", "application/octet-stream")
        .body(std::fs::read(file).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 204);
    id
}

/// `Field: value` of /proc/<pid>/status.
fn proc_status(pid: &str, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn running_as_root() -> bool {
    proc_status("self", "Uid").split_whitespace().nth(1) == Some("0")
}

/// The guest's QEMU: its uid, and the memory limit and CPU shares of its
/// cgroup (v1 here; the v2 path is tested on a fake tree in ferro-virt).
fn confinement(pid: &str, uuid: &str) -> (u32, Option<u64>, Option<u64>) {
    let uid = proc_status(pid, "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let read = |p: String| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    let cg = format!("ferrostack/instance-{uuid}");
    let (mem, cpu) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let w: Option<u64> = read(format!("/sys/fs/cgroup/{cg}/cpu.weight"));
        (read(format!("/sys/fs/cgroup/{cg}/memory.max")), w)
    } else {
        (
            read(format!("/sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes")),
            read(format!("/sys/fs/cgroup/cpu/{cg}/cpu.shares")),
        )
    };
    // The process is in that cgroup.
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert!(own.contains(&cg), "QEMU {pid} is not in {cg}: {own}");
    (uid, mem, cpu)
}

fn qemu_pid(dir: &Path, uuid: &str) -> Option<String> {
    let pid = std::fs::read_to_string(dir.join(uuid).join("qemu.pid")).ok()?;
    let pid = pid.trim().to_string();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(uuid)
        .then_some(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_is_a_real_guest() {
    let Some(image_file) = guest_image() else {
        return;
    };
    // Guests run under uids of their own: their directory must be
    // reachable by every user (the test's data directory is not).
    let guests = guest_dir();
    let instances = guests.path().join("instances");
    let (inst_cfg, vol_cfg) = (instances.clone(), guests.path().join("volumes"));
    let c = TestCloud::start_with(Backend::Sqlite, move |cfg| {
        cfg.compute.compute_driver = "qemu".into();
        cfg.compute.virt_type = "qemu".into();
        cfg.compute.shutdown_timeout = 10;
        cfg.compute.report_interval = 1;
        cfg.compute.instances_path = Some(inst_cfg.display().to_string());
        cfg.volume.volumes_dir = Some(vol_cfg);
    })
    .await
    .unwrap()
    .unwrap();
    let _reaper = Reaper(instances.clone());
    let tok = c.admin_token().await;

    // The hypervisor is this host, as QEMU.
    let t = Instant::now();
    let hv = loop {
        let r = nova(&c, Method::GET, "/os-hypervisors/detail", &tok, Value::Null).await;
        if let Some(h) = r.body["hypervisors"].as_array().and_then(|a| a.first()) {
            break h.clone();
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(hv["hypervisor_type"], "QEMU", "{hv}");
    assert!(hv["vcpus"].as_u64().unwrap() >= 1);

    // The guest image, uploaded as a user would.
    let image = upload(
        &c,
        &tok,
        json!({"name": "ferro-guest", "disk_format": "qcow2", "container_format": "bare", "visibility": "public"}),
        &image_file,
    )
    .await;

    // Boot with a config drive and user data.
    let word = "user-data-ran-here";
    let ud = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("#!/bin/sh\necho {word}\n"))
    };
    let t0 = Instant::now();
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        json!({"server": {"name": "real1", "imageRef": image, "flavorRef": "1",
            "networks": "none", "config_drive": true, "user_data": ud}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(&c, &tok, &id, "ACTIVE", Duration::from_secs(120)).await;
    let active = t0.elapsed();
    assert_eq!(s["OS-EXT-STS:power_state"], 1, "{s}");
    assert!(qemu_pid(&instances, &id).is_some(), "no QEMU for {id}");
    let out = wait_console(&c, &tok, &id, "GUEST-READY", 0).await;
    let ready = t0.elapsed();
    for want in [
        format!("INSTANCE-UUID {id}"),
        "CONFIG-DRIVE /dev/sr0".into(),
        "USER-DATA-END status=0".into(),
    ] {
        assert!(out.contains(&want), "missing {want}: {out}");
    }
    assert!(out.lines().any(|l| l.trim() == word), "{out}");
    // The base is cached once; the instance disk is an overlay on it.
    assert!(instances.join("_base").join(&image).is_file());

    // Confined: an uid of its own, the seccomp sandbox, a cgroup with the
    // flavor's RAM plus QEMU's overhead and its CPU share (m1.tiny: 512
    // MiB, 1 vCPU); QEMU's measured overhead is within the estimate.
    let pid = qemu_pid(&instances, &id).unwrap();
    assert_eq!(
        proc_status(&pid, "Seccomp"),
        "2",
        "QEMU {pid} has no seccomp filter"
    );
    assert_eq!(proc_status(&pid, "NoNewPrivs"), "1");
    let overhead = ferro_virt::qemu::overhead_estimate_mb("tcg");
    if running_as_root() {
        let (uid, mem, shares) = confinement(&pid, &id);
        assert!(uid >= 1_879_048_192, "QEMU runs as uid {uid}");
        assert_eq!(mem, Some((512 + overhead) << 20));
        assert!(shares.is_some());
        let measured =
            ferro_virt::qemu::confine::measured_overhead_mb(pid.parse().unwrap(), 512).unwrap();
        assert!(
            measured <= overhead,
            "QEMU overhead {measured} MiB > estimate {overhead} MiB"
        );
        // The disk is the guest's and the service's group's (root's in
        // this in-process server) alone; the directory admits only it.
        use std::os::unix::fs::MetadataExt;
        let disk = std::fs::metadata(instances.join(&id).join("disk")).unwrap();
        assert_eq!(
            (disk.uid(), disk.gid(), disk.mode() & 0o777),
            (uid, 0, 0o660)
        );
        let d = std::fs::metadata(instances.join(&id)).unwrap();
        assert_eq!((d.uid(), d.gid(), d.mode() & 0o777), (0, uid, 0o710));
        // Placement keeps QEMU's overhead of each guest out of reach.
        let node = hv["id"].as_str().unwrap().to_string();
        let t = Instant::now();
        loop {
            let r = c
                .request_h(
                    Method::GET,
                    &format!("/placement/resource_providers/{node}/inventories"),
                    Some(&tok),
                    Value::Null,
                    &[("OpenStack-API-Version", "placement 1.30")],
                )
                .await;
            let reserved = r.body["inventories"]["MEMORY_MB"]["reserved"].as_u64();
            if reserved == Some(512 + overhead) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(15), "{}", r.body);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // Diagnostics are measured: the vCPU's time, the boot disk's reads,
    // the process's uptime; and libvirt's flat map before 2.48.
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers/{id}/diagnostics"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = &r.body;
    assert_eq!(
        (d["driver"].as_str(), d["hypervisor"].as_str()),
        (Some("libvirt"), Some("qemu")),
        "{d}"
    );
    assert_eq!(
        (d["state"].as_str(), d["num_cpus"].as_u64()),
        (Some("running"), Some(1)),
        "{d}"
    );
    assert!(d["cpu_details"][0]["time"].as_u64().unwrap() > 0, "{d}");
    assert!(
        d["disk_details"][0]["read_bytes"].as_u64().unwrap() > 1 << 20,
        "{d}"
    );
    assert!(d["uptime"].as_u64().unwrap() < ready.as_secs() + 60, "{d}");
    assert_eq!(d["memory_details"]["maximum"], 512, "{d}");
    assert_eq!(d["config_drive"], true, "{d}");
    let r = c
        .request_h(
            Method::GET,
            &format!("/compute/v2.1/servers/{id}/diagnostics"),
            Some(&tok),
            Value::Null,
            &[("OpenStack-API-Version", "compute 2.47")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["cpu0_time"].as_u64().unwrap() > 0, "{}", r.body);
    assert!(r.body["vda_read"].as_u64().unwrap() > 0, "{}", r.body);
    assert_eq!(r.body["memory"], 512 * 1024, "{}", r.body);

    // The browser console: a one-time URL whose websocket reaches the
    // guest's VNC server, for a client without Origin (Tempest's) or with
    // this host's; a foreign Origin is refused without spending the token.
    let url = remote_console(&c, &tok, &id).await;
    assert!(url.contains("/vnc_lite.html?path=%3Ftoken%3D"), "{url}");
    let page = reqwest::get(&url).await.unwrap();
    // noVNC is served from Debian's package where it is installed.
    if Path::new("/usr/share/novnc/vnc_lite.html").exists() {
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("noVNC"));
    }
    let (st, _) = websocket(&url, Some("http://evil.example")).await;
    assert!(st.contains(" 403 "), "foreign Origin: {st}");
    let origin = url.split("/vnc_lite").next().unwrap().to_string();
    let (st, first) = websocket(&url, Some(&origin)).await;
    assert!(st.contains(" 101 "), "{st}");
    let greeting = String::from_utf8_lossy(&first.unwrap()).to_string();
    assert!(greeting.starts_with("RFB 003.00"), "{greeting}");
    let (st, _) = websocket(&url, None).await;
    assert!(st.contains(" 403 "), "a used token: {st}");
    let url = remote_console(&c, &tok, &id).await;
    let (st, first) = websocket(&url, None).await;
    assert!(st.contains(" 101 "), "{st}");
    assert!(first.unwrap().starts_with(b"RFB "));

    // Suspend (the guest's memory streamed to disk, QEMU gone) and resume.
    for (action, want) in [("suspend", "SUSPENDED"), ("resume", "ACTIVE")] {
        let r = nova(
            &c,
            Method::POST,
            &format!("/servers/{id}/action"),
            &tok,
            json!({ action: null }),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
        wait_status(&c, &tok, &id, want, Duration::from_secs(120)).await;
        assert_eq!(qemu_pid(&instances, &id).is_some(), want == "ACTIVE");
    }

    // Stop (ACPI power button; the guest powers off) and start.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &tok,
        json!({"os-stop": null}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let s = wait_status(&c, &tok, &id, "SHUTOFF", Duration::from_secs(60)).await;
    assert_eq!(s["OS-EXT-STS:power_state"], 4, "{s}");
    assert!(qemu_pid(&instances, &id).is_none(), "QEMU still runs");
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &tok,
        json!({"os-start": null}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_status(&c, &tok, &id, "ACTIVE", Duration::from_secs(60)).await;
    wait_console(&c, &tok, &id, "GUEST-READY", 1).await;

    // A snapshot is a bootable image in the Image service.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &tok,
        json!({"createImage": {"name": "snap1"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let snap = r.body["image_id"].as_str().unwrap().to_string();
    let t = Instant::now();
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
            assert!(r.body["size"].as_u64().unwrap() > 1 << 20, "{}", r.body);
            assert_eq!(r.body["disk_format"], "qcow2");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{}", r.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_status(&c, &tok, &id, "ACTIVE", Duration::from_secs(30)).await;

    // A guest that dies behind ferrostack's back: power-state sync (Nova's
    // sync_power_states) stops the server; start brings it back.
    let pid = qemu_pid(&instances, &id).unwrap();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let s = wait_status(&c, &tok, &id, "SHUTOFF", Duration::from_secs(30)).await;
    assert_eq!(s["OS-EXT-STS:power_state"], 4, "{s}");
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &tok,
        json!({"os-start": null}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_status(&c, &tok, &id, "ACTIVE", Duration::from_secs(60)).await;
    assert!(qemu_pid(&instances, &id).is_some());

    // Boot from a volume made from the image: the volume file is the
    // guest's boot disk.
    let r = c
        .request(
            Method::POST,
            "/volume/v3/volumes",
            Some(&tok),
            json!({"volume": {"size": 1, "imageRef": image, "name": "root-vol"}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let vol = r.body["volume"]["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    loop {
        let r = c
            .request(
                Method::GET,
                &format!("/volume/v3/volumes/{vol}"),
                Some(&tok),
                Value::Null,
            )
            .await;
        if r.body["volume"]["status"] == "available" {
            break;
        }
        assert!(
            r.body["volume"]["status"] != "error" && t.elapsed() < Duration::from_secs(60),
            "{}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        json!({"server": {"name": "bfv", "flavorRef": "1", "networks": "none",
            "config_drive": true,
            "block_device_mapping_v2": [{"boot_index": 0, "uuid": vol, "source_type": "volume",
                "destination_type": "volume", "delete_on_termination": true}]}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let bfv = r.body["server"]["id"].as_str().unwrap().to_string();
    wait_status(&c, &tok, &bfv, "ACTIVE", Duration::from_secs(120)).await;
    if running_as_root() {
        // Two guests at once never share an uid.
        let (a, b) = (
            qemu_pid(&instances, &id).unwrap(),
            qemu_pid(&instances, &bfv).unwrap(),
        );
        assert_ne!(confinement(&a, &id).0, confinement(&b, &bfv).0);
    }
    let out = wait_console(&c, &tok, &bfv, &format!("INSTANCE-UUID {bfv}"), 0).await;
    assert!(
        !instances.join(&bfv).join("disk").exists(),
        "no local root disk: {out}"
    );
    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{bfv}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_status(&c, &tok, &bfv, "DELETED", Duration::from_secs(60)).await;

    // A QEMU that refuses to start: ERROR, with QEMU's own words in the fault.
    let odd = upload(
        &c,
        &tok,
        json!({"name": "odd-machine", "disk_format": "qcow2", "container_format": "bare",
               "hw_machine_type": "pc-i440fx-99.9"}),
        &image_file,
    )
    .await;
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &tok,
        json!({"server": {"name": "odd", "imageRef": odd, "flavorRef": "1", "networks": "none"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let odd_id = r.body["server"]["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let fault = loop {
        let r = nova(
            &c,
            Method::GET,
            &format!("/servers/{odd_id}"),
            &tok,
            Value::Null,
        )
        .await;
        if r.body["server"]["status"] == "ERROR" {
            break r.body["server"]["fault"].clone();
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        fault["message"]
            .as_str()
            .is_some_and(|m| m.contains("machine type")),
        "{fault}"
    );
    assert!(
        !instances.join(&odd_id).exists(),
        "a guest that never ran leaves nothing"
    );
    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{odd_id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);

    // Delete: the process and the files go.
    let pid = qemu_pid(&instances, &id).unwrap();
    let r = nova(
        &c,
        Method::DELETE,
        &format!("/servers/{id}"),
        &tok,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_status(&c, &tok, &id, "DELETED", Duration::from_secs(60)).await;
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} survived the delete"
    );
    assert!(!instances.join(&id).exists());
    eprintln!("real guest: ACTIVE after {active:?}, GUEST-READY after {ready:?}");
    c.stop().await;
}
