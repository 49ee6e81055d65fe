//! The server around the shell: metrics and health endpoints, streams that
//! end early, graceful shutdown, and the binary's flag and configuration
//! errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;
use std::time::Duration;

use a2a_affinity_ext_proc::metrics::MessageKind;
use a2a_affinity_testkit::bodies::rpc03;
use common::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BIN: &str = env!("CARGO_BIN_EXE_a2a-affinity-ext-proc");

#[tokio::test]
async fn a_stream_dropped_mid_body_counts_aborted() {
    let s = server("{}").await;
    let body = rpc03(CTX, "hello");
    let request = HttpRequest::json("/", &body);
    let mut ex = Exchange::open(s.grpc_addr(), Mode::BufferedPartial).await;
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reply = ex.send(request_headers(&headers, false)).await;
    // The core waits for the body: nothing is set yet.
    assert_eq!(common(&reply, "request_headers"), Default::default());
    // The client goes away; Envoy resets the ext_proc stream.
    ex.reset();
    eventually("aborted counted", || {
        counters(&s) == counts(&[("aborted", 1)]) && s.metrics().active_streams() == 0
    })
    .await;
}

#[tokio::test]
async fn metrics_endpoint_shows_the_counters_and_latency_histograms() {
    let s = server("{}").await;
    let body = rpc03(CTX, "hello");
    let (mut ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", &body),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), Some(CTX));
    ex.respond(
        "application/json",
        &[br#"{"jsonrpc":"2.0","id":"1","result":{"kind":"task","id":"t-1","contextId":"ctx-7f3a"}}"#],
    )
    .await;
    ex.close().await;
    let (status, text) = http_get(s.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "a2a_affinity_context_found_total 1",
        "a2a_affinity_task_learned_total 1",
        "a2a_affinity_minted_total 0",
        "a2a_affinity_aborted_total 0",
        "a2a_affinity_ext_proc_store_errors_total 0",
        "a2a_affinity_ext_proc_streams_total 1",
        "# TYPE a2a_affinity_ext_proc_message_duration_seconds histogram",
        "a2a_affinity_ext_proc_message_duration_seconds_count{kind=\"request_headers\"} 1",
        "a2a_affinity_ext_proc_message_duration_seconds_count{kind=\"request_body\"} 1",
        "a2a_affinity_ext_proc_message_duration_seconds_count{kind=\"response_headers\"} 1",
        "a2a_affinity_ext_proc_message_duration_seconds_count{kind=\"response_body\"} 1",
        "a2a_affinity_ext_proc_message_duration_seconds_count{kind=\"request_trailers\"} 0",
        "a2a_affinity_ext_proc_message_duration_seconds_bucket{kind=\"request_body\",le=\"+Inf\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    assert_eq!(s.metrics().messages(MessageKind::RequestBody), 1);
    assert_eq!(
        http_get(s.metrics_addr(), "/healthz").await,
        (200, "ok\n".to_string())
    );
    assert_eq!(http_get(s.metrics_addr(), "/nope").await.0, 404);
}

#[tokio::test]
async fn health_service_reports_serving_then_not_serving_on_shutdown() {
    let s = server("{}").await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "envoy.service.ext_proc.v3.ExternalProcessor"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    // A Watch stream sees the shutdown start.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    s.shutdown().await;
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop(watch);
    drop(health);
    tokio::time::timeout(Duration::from_secs(5), s.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_lets_a_stream_in_flight_finish_and_refuses_new_ones() {
    let s = server("{}").await;
    let addr = s.grpc_addr();
    let body = rpc03(CTX, "hello");
    let request = HttpRequest::json("/", &body);
    let mut ex = Exchange::open(addr, Mode::BufferedPartial).await;
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ex.send(request_headers(&headers, false)).await;

    s.shutdown().await;
    let wait = tokio::spawn(s.wait());
    // The stream in flight is still answered.
    let reply = ex.send(request_body(body.as_bytes(), true)).await;
    let c = common(&reply, "request_body");
    let set = &c.header_mutation.as_ref().unwrap().set_headers;
    assert_eq!(set[0].header.as_ref().unwrap().raw_value, CTX.as_bytes());
    // New connections are refused once the listener is closed (the server
    // task closes it as soon as it sees the signal).
    let mut refused = false;
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "new connections are refused while draining");
    // The stream in flight still gets its replies.
    ex.respond("application/json", &[b"{}"]).await;
    assert!(
        !wait.is_finished(),
        "the server waits for the stream in flight"
    );
    ex.close().await;
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("stopped once the stream ended")
        .unwrap()
        .unwrap();
}

fn run_binary(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn configuration_errors_exit_non_zero_with_one_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (config, field) in [
        (r#"{"max_scan_bytes":0}"#, "max_scan_bytes"),
        (r#"{"header":"content-length"}"#, "header"),
        (r#"{"task_ttl_secs":0}"#, "task_ttl_secs"),
        (r#"{"max_scan_bytes":"big"}"#, "max_scan_bytes"),
        ("{\n  \"headr\": \"x\"\n}", "headr"),
        (r#"{"client_header":"drop"}"#, "drop"),
        // The dynamic module's filter-state hashing is not this shell's.
        (
            r#"{"hash_on":"filter_state"}"#,
            "hash_on: \"filter_state\" is for the Envoy dynamic module only",
        ),
    ] {
        let path = dir.path().join("config.json");
        std::fs::write(&path, config).unwrap();
        let (code, stderr) = run_binary(&[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        assert!(code.is_some_and(|c| c != 0), "{config}: exit {code:?}");
        assert_eq!(stderr.lines().count(), 1, "{config}: {stderr:?}");
        assert!(stderr.contains(field), "{config}: {stderr:?}");
        assert!(
            stderr.starts_with("a2a-affinity-ext-proc: --config "),
            "{stderr:?}"
        );
    }
    let (code, stderr) = run_binary(&["--config", "/nonexistent/a2a.json"]);
    assert!(code.is_some_and(|c| c != 0));
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    for (flag, value) in [
        ("--task-store", "memcached://x"),
        ("--redis-timeout-ms", "0"),
        ("--log-level", "loud"),
    ] {
        let (code, stderr) = run_binary(&[flag, value]);
        assert!(code.is_some_and(|c| c != 0), "{flag}");
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr:?}");
        assert!(stderr.contains(flag), "{stderr:?}");
    }
}

#[test]
fn the_binary_logs_one_start_line_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"max_scan_bytes":4096}"#).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        // Every x86-64 CPU has the SSE2 kernel: the cap picks it here.
        .env("A2A_AFFINITY_STRING_KERNEL", "sse2")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let start = lines.next().unwrap().unwrap();
    assert!(
        start.contains("serving envoy.service.ext_proc.v3.ExternalProcessor"),
        "{start}"
    );
    assert!(start.contains("max_scan_bytes=4096"), "{start}");
    assert!(start.contains("task store memory"), "{start}");
    if cfg!(target_arch = "x86_64") {
        assert!(
            start.ends_with("; string kernel sse2 (A2A_AFFINITY_STRING_KERNEL=sse2)"),
            "{start}"
        );
    }
    // SIGTERM to the child this test started, by its pid.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}
