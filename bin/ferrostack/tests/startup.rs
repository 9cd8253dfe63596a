//! Start-up refuses what it cannot honour, saying what and where: an
//! unknown driver or option value names the key and the accepted values; a
//! stored document that cannot be read names its kind and id, and nothing
//! is silently skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

fn ferrostack(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrostack"));
    cmd.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("FERROSTACK_ADMIN_PASSWORD", "startup-test-password")
        .env("FERROSTACK__IDENTITY__PASSWORD_HASH_ROUNDS", "4")
        .env("FERROSTACK__IDENTITY__WRITE_USER_CLOUDS_YAML", "false")
        .env("FERROSTACK__COMPUTE__COMPUTE_DRIVER", "fake")
        .env("FERROSTACK__LOG__LEVEL", "error")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd.output().unwrap()
}

#[test]
fn unknown_driver_names_stop_serve_with_the_key_and_accepted_values() {
    let dir = tempfile::tempdir().unwrap();
    for (var, key, accepted) in [
        (
            "FERROSTACK__COMPUTE__COMPUTE_DRIVER",
            "compute.compute_driver",
            "fake",
        ),
        (
            "FERROSTACK__NETWORK__HOST_NET_DRIVER",
            "network.host_net_driver",
            "fake",
        ),
        (
            "FERROSTACK__VOLUME__VOLUME_DRIVER",
            "volume.volume_driver",
            "file, fake",
        ),
        (
            "FERROSTACK__VOLUME__VOLUME_FORMAT",
            "volume.volume_format",
            "qcow2, raw",
        ),
        (
            "FERROSTACK__IMAGE__STORE",
            "image.store",
            "file, s3, memory",
        ),
    ] {
        let out = ferrostack(
            dir.path(),
            &["serve", "--listen", "127.0.0.1:0"],
            &[(var, "nonsense")],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}: serve started");
        assert!(
            err.contains(key) && err.contains("\"nonsense\"") && err.contains(accepted),
            "{var}: {err}"
        );
        assert!(!err.contains("An unexpected error"), "{var}: {err}");
    }
}

#[tokio::test]
async fn an_unreadable_stored_document_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferrostack(dir.path(), &["bootstrap"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ferrostack.db").display()
    );
    for (kind, id, body) in [
        // Valid JSON that is not an instance.
        ("nova_instance", "corrupt-instance-1", r#"{"uuid": 5}"#),
        // Not JSON at all.
        ("neutron_port", "corrupt-port-1", "{not json"),
    ] {
        let db = ferro_db::Db::connect(&url, 1).await.unwrap();
        sea_orm::ConnectionTrait::execute_unprepared(
            &db.conn,
            &format!(
                "INSERT INTO doc (kind, id, body, updated_at) VALUES ('{kind}', '{id}', '{body}', 0)"
            ),
        )
        .await
        .unwrap();
        db.conn.close().await.unwrap();
        let out = ferrostack(dir.path(), &["bootstrap"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{kind}: start-up went on");
        assert!(err.contains(kind) && err.contains(id), "{kind}: {err}");
        // Removed again, start-up works: nothing else was harmed.
        let db = ferro_db::Db::connect(&url, 1).await.unwrap();
        sea_orm::ConnectionTrait::execute_unprepared(
            &db.conn,
            &format!("DELETE FROM doc WHERE kind = '{kind}' AND id = '{id}'"),
        )
        .await
        .unwrap();
        db.conn.close().await.unwrap();
        let out = ferrostack(dir.path(), &["bootstrap"], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
