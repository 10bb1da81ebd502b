use std::process::Command;

use crate::harness::{Process, binary};

fn sluice(p: &Process, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(args)
        .arg("--data")
        .arg(&p.data)
        .env("SLUICE_URL", &p.url)
        .env_remove("SLUICE_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_creates_produces_and_consumes() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);

    let (ok, out, err) = sluice(
        &p,
        &[
            "topics",
            "create",
            "audit.events",
            "--partitions",
            "3",
            "-c",
            "retention.ms=7776000000",
            "--key-field",
            "org_id",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"audit.events\""));
    let (ok, _, err) = sluice(&p, &["topics", "create", "audit.events"]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");

    let file = dir.path().join("events.ndjson");
    let lines: Vec<String> = (0..1200)
        .map(|i| {
            format!(
                "{{\"event_type\":\"audit.logged\",\"org_id\":{},\"payload\":{{\"n\":{i}}}}}",
                i % 7
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (ok, out, err) = sluice(
        &p,
        &["produce", "audit.events", "--file", file.to_str().unwrap()],
    );
    assert!(ok, "{out}{err}");
    assert!(err.contains("produced 1200 events"), "{err}");

    let (ok, out, err) = sluice(&p, &["consume", "audit.events", "--from-beginning"]);
    assert!(ok, "{err}");
    let mut ns: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ns.sort();
    assert_eq!(ns, (0..1200).collect::<Vec<_>>());

    let (ok, out, _) = sluice(&p, &["topics", "list"]);
    assert!(ok);
    assert!(
        out.contains("audit.events\tpartitions=3\tevents=1200"),
        "{out}"
    );

    // A bad line: reported with its line number, non-zero exit, the rest produced.
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"payload\":1}\nnot json\n").unwrap();
    let (ok, _, err) = sluice(
        &p,
        &["produce", "audit.events", "--file", bad.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("line 2"), "{err}");

    let (ok, out, err) = sluice(&p, &["keys", "create", "--scope", "consume:audit.*"]);
    assert!(ok, "{err}");
    let key: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (ok, out, _) = sluice(&p, &["keys", "list"]);
    assert!(ok);
    assert!(out.contains(key["id"].as_str().unwrap()));
    let (ok, _, _) = sluice(&p, &["keys", "revoke", key["id"].as_str().unwrap()]);
    assert!(ok);

    let (ok, _, err) = sluice(&p, &["topics", "describe", "nope"]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
    let status = p.terminate();
    assert!(status.success(), "graceful stop exits 0");
}

#[test]
fn serve_rejects_a_bad_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, "colour = \"blue\"\n").unwrap();
    let out = Command::new(binary())
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn the_cli_deploys_a_transform_in_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    for t in ["phi.raw", "phi.clean"] {
        let (ok, out, err) = sluice(&p, &["topics", "create", t]);
        assert!(ok, "{out}{err}");
    }
    let wasm = dir.path().join("redact.wasm");
    std::fs::write(&wasm, sluice_builtins::REDACT_PHI).unwrap();
    let (ok, out, err) = sluice(
        &p,
        &[
            "deploy",
            "redact",
            wasm.to_str().unwrap(),
            "--input",
            "phi.raw",
            "--output",
            "phi.clean",
            "--config",
            r#"{"keys":["ssn"]}"#,
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("component redact version 1 (transformer world"),
        "{out}"
    );
    assert!(out.contains("transform redact running redact@1"), "{out}");

    let file = dir.path().join("in.ndjson");
    std::fs::write(
        &file,
        "{\"event_id\":\"e1\",\"event_type\":\"lab.result\",\"payload\":{\"ssn\":\"123-45-6789\",\"glucose\":5.4}}\n",
    )
    .unwrap();
    let (ok, out, err) = sluice(
        &p,
        &["produce", "phi.raw", "--file", file.to_str().unwrap()],
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = sluice(
        &p,
        &[
            "consume",
            "phi.clean",
            "--from-beginning",
            "--follow",
            "--max",
            "1",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("\"glucose\":5.4") && out.contains("***"),
        "{out}"
    );
    assert!(!out.contains("123-45-6789"), "PHI leaked: {out}");

    let (ok, out, err) = sluice(&p, &["transforms", "status", "redact"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"lag\": 0"), "{out}");
    let (ok, out, err) = sluice(&p, &["transforms", "stop", "redact"]);
    assert!(ok && out.contains("\"state\": \"stopped\""), "{out}{err}");
    let (ok, _, err) = sluice(&p, &["transforms", "status", "nope"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = sluice(&p, &["deploy", "bad", "/nonexistent.wasm"]);
    assert!(!ok && err.contains("cannot read"), "{err}");
}

#[test]
fn the_cli_manages_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let v1 = dir.path().join("order.avsc");
    std::fs::write(
        &v1,
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#,
    )
    .unwrap();
    let v2 = dir.path().join("order2.avsc");
    std::fs::write(
        &v2,
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"n","type":"int"}]}"#,
    )
    .unwrap();
    let path = |f: &std::path::Path| f.to_str().unwrap().to_owned();

    let (ok, out, err) = sluice(&p, &["schemas", "register", "orders-value", &path(&v1)]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("version 1 (id 1)"), "{out}");
    let (ok, out, _) = sluice(&p, &["schemas", "list"]);
    assert!(ok && out.contains("orders-value"), "{out}");
    let (ok, out, _) = sluice(&p, &["schemas", "get", "orders-value"]);
    assert!(ok && out.contains("\"version\": 1"), "{out}");
    let (ok, out, _) = sluice(&p, &["schemas", "get", "--id", "1"]);
    assert!(ok && out.contains("Order"), "{out}");
    // An incompatible file: `check` exits 1 saying why, `register` is refused.
    let (ok, _, err) = sluice(&p, &["schemas", "check", "orders-value", &path(&v2)]);
    assert!(!ok);
    assert!(err.contains("READER_FIELD_MISSING_DEFAULT_VALUE"), "{err}");
    let (ok, _, err) = sluice(&p, &["schemas", "register", "orders-value", &path(&v2)]);
    assert!(!ok && err.contains("409"), "{err}");
    let (ok, out, err) = sluice(&p, &["schemas", "check", "orders-value", &path(&v1)]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = sluice(&p, &["schemas", "delete", "orders-value"]);
    assert!(ok && out.contains("soft-deleted"), "{out}{err}");
    let (ok, out, _) = sluice(&p, &["schemas", "list"]);
    assert!(ok && !out.contains("orders-value"), "{out}");
    let (ok, _, err) = sluice(&p, &["schemas", "get", "nothing"]);
    assert!(!ok && err.contains("40401"), "{err}");
    assert!(p.terminate().success());
}

#[test]
fn the_cli_consumes_as_a_group_and_manages_groups() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let (ok, out, err) = sluice(&p, &["topics", "create", "jobs", "--partitions", "2"]);
    assert!(ok, "{out}{err}");
    let file = dir.path().join("jobs.ndjson");
    let lines: Vec<String> = (0..50)
        .map(|i| format!("{{\"type\":\"job\",\"payload\":{{\"n\":{i}}}}}"))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (ok, out, err) = sluice(&p, &["produce", "jobs", "--file", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");

    // The first run reads 30 and commits them; the second continues with the other 20.
    let (ok, first, err) = sluice(
        &p,
        &[
            "consume",
            "jobs",
            "--group",
            "crew",
            "--from-beginning",
            "--max",
            "30",
        ],
    );
    assert!(ok, "{err}");
    let (ok, second, err) = sluice(&p, &["consume", "jobs", "--group", "crew"]);
    assert!(ok, "{err}");
    let mut seen: Vec<u64> = first
        .lines()
        .chain(second.lines())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["payload"]["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(first.lines().count(), 30, "{first}");
    seen.sort();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());

    let (ok, out, _) = sluice(&p, &["groups", "list"]);
    assert!(ok);
    let row = out.lines().find(|l| l.starts_with("crew")).unwrap();
    assert!(
        row.contains("Empty") && row.trim_end().ends_with(" 0"),
        "{out}"
    );
    let (ok, out, err) = sluice(&p, &["groups", "reset", "crew", "--to", "earliest"]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = sluice(&p, &["groups", "describe", "crew"]);
    assert!(ok);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["total_lag"], 50);
    let (ok, _, err) = sluice(&p, &["groups", "reset", "crew", "--to", "nowhere"]);
    assert!(!ok);
    assert!(err.contains("`to` must be"), "{err}");
    let (ok, _, err) = sluice(&p, &["groups", "describe", "ghost"]);
    assert!(!ok);
    assert!(err.contains("40407"), "{err}");
}

#[test]
fn the_cli_manages_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &["--webhook-allow-network", "127.0.0.0/8"]);
    let (ok, out, err) = sluice(&p, &["topics", "create", "bills"]);
    assert!(ok, "{out}{err}");
    // Nothing listens on port 9: every attempt fails to connect, and is recorded.
    let (ok, out, err) = sluice(
        &p,
        &[
            "subscriptions",
            "create",
            "--endpoint",
            "http://127.0.0.1:9/hook",
            "--topic",
            "bills",
            "--type",
            "bill.*",
            "--condition",
            "data.total > 1",
        ],
    );
    assert!(ok, "{out}{err}");
    let sub: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = sub["id"].as_str().unwrap().to_owned();
    assert!(sub["secret"].as_str().unwrap().starts_with("whsec_"));
    let file = dir.path().join("bills.ndjson");
    std::fs::write(&file, "{\"type\":\"bill.due\",\"payload\":{\"total\":5}}\n").unwrap();
    let (ok, _, err) = sluice(&p, &["produce", "bills", "--file", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, _) = sluice(&p, &["subscriptions", "list"]);
    assert!(ok && out.contains(&id), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ok, out, err) = sluice(&p, &["subscriptions", "attempts", &id]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(a) = v["attempts"].as_array().and_then(|a| a.first()) {
            assert_eq!(a["outcome"], "retrying");
            assert!(a["error"].as_str().unwrap().contains("onnect"), "{a}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt recorded");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (ok, out, err) = sluice(&p, &["subscriptions", "replay", &id, "--since", "0"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"replaying\": 1"), "{out}");
    let (ok, _, err) = sluice(
        &p,
        &[
            "subscriptions",
            "create",
            "--endpoint",
            "http://10.1.1.1/",
            "--topic",
            "bills",
        ],
    );
    assert!(!ok);
    assert!(err.contains("internal address"), "{err}");
    let (ok, _, err) = sluice(&p, &["subscriptions", "delete", &id]);
    assert!(ok, "{err}");
}

#[test]
fn the_cli_manages_sources() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let (ok, out, err) = sluice(&p, &["topics", "create", "repo-events"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = sluice(
        &p,
        &[
            "sources",
            "create",
            "gh",
            "--topic",
            "repo-events",
            "--scheme",
            "github",
            "--secret",
            "old-secret",
            "--secret",
            "new-secret",
            "--event-type",
            "header:X-GitHub-Event",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("POST /hooks/default/gh"), "{out}");
    let (ok, out, err) = sluice(&p, &["sources", "list"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("\"gh\"") && !out.contains("new-secret"),
        "{out}"
    );
    let (ok, _, err) = sluice(
        &p,
        &[
            "sources",
            "create",
            "bad",
            "--topic",
            "repo-events",
            "--scheme",
            "nope",
            "--secret",
            "s",
        ],
    );
    assert!(!ok);
    assert!(err.contains("scheme"), "{err}");
    let (ok, out, err) = sluice(&p, &["sources", "delete", "gh"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = sluice(&p, &["sources", "show", "gh"]);
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
}
