#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The filter's per-stream decisions, driven through an in-memory host that
//! behaves like Envoy's: headers, a buffered request body that grows with
//! each callback, response chunks, counters and shared data.

use std::rc::Rc;

use a2a_affinity::stream::{Action, Stream};
use a2a_affinity_core::stats::Counter;
use a2a_affinity_testkit::bodies::{rpc03, rpc10_first_turn};
use a2a_affinity_testkit::logs;
use log::Level;

use a2a_affinity_testkit::wasm::{respond, Harness, MockHost};

/// POSTs `body` as JSON-RPC and checks that the upstream gets it unchanged
/// and without a hash-key header.
fn assert_passes_without_key(h: &Harness, body: &str) {
    let mut host = h.host("POST", "/");
    h.request(&mut host, &[body.as_bytes()], false);
    assert!(host.header_values("x-context-id").is_empty(), "{body}");
    assert_eq!(host.body, body.as_bytes(), "{body}");
}

#[test]
fn context_id_becomes_the_only_header_and_the_body_is_untouched() {
    let h = Harness::new("");
    let body = rpc03("ctx-42", "hello");
    let mut host = h.host("POST", "/");
    host.headers
        .push(("x-context-id".into(), "client-a".into()));
    host.headers
        .push(("x-context-id".into(), "client-b".into()));
    let (_, actions) = h.request(&mut host, &[body.as_bytes()], false);
    assert_eq!(actions, vec![Action::Pause, Action::Continue]);
    assert_eq!(host.header_values("x-context-id"), vec!["ctx-42"]);
    assert_eq!(host.body, body.as_bytes());
    assert_eq!(h.counter(Counter::ContextFound), 1);
}

#[test]
fn every_split_point_gives_the_same_header_and_reads_each_byte_once() {
    let h = Harness::new("");
    let body = rpc03(
        "ctx-split",
        "a text part that is long enough to span chunks",
    );
    let bytes = body.as_bytes();
    for cut in 1..bytes.len() {
        let mut host = h.host("POST", "/");
        let (a, b) = bytes.split_at(cut);
        let (_, actions) = h.request(&mut host, &[a, b], false);
        assert_eq!(
            host.header_values("x-context-id"),
            vec!["ctx-split"],
            "cut {cut}"
        );
        assert_eq!(host.body, bytes, "cut {cut}");
        assert_eq!(*actions.last().unwrap(), Action::Continue);
        // Only new bytes are copied out of the host.
        let reads = host.body_reads.borrow();
        let mut next = 0;
        for (start, len) in reads.iter() {
            assert_eq!(*start, next, "cut {cut}: re-read from {start}");
            next = start + len;
        }
    }
}

#[test]
fn the_request_is_held_to_its_end_where_a_later_duplicate_wins() {
    // The agents keep the last of a duplicate key, so the first contextId
    // cannot decide: the request waits for the end of its body.
    let h = Harness::new("");
    let head =
        r#"{"method":"message/send","params":{"message":{"contextId":"early","parts":[{"text":""#;
    for (tail, want) in [
        (r#"more text"}]}}}"#, "early"),
        (r#"more text"}],"contextId":"late"}}}"#, "late"),
    ] {
        let mut host = h.host("POST", "/");
        let mut stream = Stream::new(Rc::clone(&h.plugin));
        assert_eq!(stream.on_request_headers(&mut host, false), Action::Pause);
        host.body.extend_from_slice(head.as_bytes());
        let size = host.body.len();
        assert_eq!(
            stream.on_request_body(&mut host, size, false),
            Action::Pause
        );
        assert!(host.header_values("x-context-id").is_empty());
        host.body.extend_from_slice(tail.as_bytes());
        let size = host.body.len();
        assert_eq!(
            stream.on_request_body(&mut host, size, true),
            Action::Continue
        );
        assert_eq!(host.header_values("x-context-id"), vec![want]);
        // Each byte was copied out once.
        contiguous_reads(&host, size);
    }
    assert_eq!(h.counter(Counter::ContextFound), 2);
}

#[test]
fn rest_bindings_and_versions() {
    let h = Harness::new("");
    let cases: &[(&str, &str, &str)] = &[
        (
            "/v1/message:send",
            r#"{"message":{"messageId":"m","contextId":"c-rest","role":"ROLE_USER","parts":[{"text":"x"}]}}"#,
            "c-rest",
        ),
        (
            "/message:send",
            r#"{"configuration":{},"message":{"role":"ROLE_USER","context_id":"c-snake"}}"#,
            "c-snake",
        ),
        (
            "/tenant-a/message:stream",
            r#"{"message":{"contextId":"c-tenant"}}"#,
            "c-tenant",
        ),
        (
            "/v1/message:send",
            r#"{"request":{"message_id":"m","context_id":"c-03","role":"ROLE_USER","content":[{"text":"x"}]},"configuration":{"blocking":true}}"#,
            "c-03",
        ),
        (
            "/agent/message",
            r#"{"message":{"contextId":"c-plain"}}"#,
            "c-plain",
        ),
        (
            "/",
            r#"{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{"contextId":"c-list","pageSize":10}}"#,
            "c-list",
        ),
        (
            "/",
            r#"{"params":{"pageSize":1,"contextId":"c-list-late"},"method":"ListTasks","id":1}"#,
            "c-list-late",
        ),
        (
            "/",
            r#"{"id":1,"params":{"message":{"parts":[],"contextId":"c-late-method"}},"method":"SendStreamingMessage"}"#,
            "c-late-method",
        ),
    ];
    for (path, body, want) in cases {
        let mut host = h.host("POST", path);
        h.request(&mut host, &[body.as_bytes()], false);
        assert_eq!(
            host.header_values("x-context-id"),
            vec![*want],
            "{path} {body}"
        );
        assert_eq!(host.body, body.as_bytes());
    }
}

#[test]
fn decoys_do_not_count() {
    let h = Harness::new(r#"{"mint_context_id":false}"#);
    for body in [
        r#"{"method":"message/send","params":{"message":{"parts":[{"kind":"text","text":"\"contextId\":\"decoy\""}],"metadata":{"contextId":"decoy"}}}}"#,
        r#"{"method":"message/send","params":{"message":{"parts":[{"contextId":"decoy"}]},"metadata":{"contextId":"decoy"}}}"#,
        r#"{"method":"message/send","params":{"contextId":"decoy","message":{"role":"user"}}}"#,
        r#"{"method":"message/send","contextId":"decoy","params":{"message":{}}}"#,
    ] {
        assert_passes_without_key(&h, body);
    }
    assert_eq!(h.counter(Counter::ContextAbsent), 4);
}

#[test]
fn without_a_body_key_the_client_header_is_kept_or_stripped() {
    let body = r#"{"method":"tasks/list","params":{}}"#;
    let keep = Harness::new("");
    let mut host = keep.host("POST", "/");
    host.headers
        .push(("x-context-id".into(), "from-client".into()));
    keep.request(&mut host, &[body.as_bytes()], false);
    assert_eq!(host.header_values("x-context-id"), vec!["from-client"]);
    assert_eq!(keep.counter(Counter::ClientHeaderKept), 1);
    assert_eq!(keep.counter(Counter::ContextAbsent), 1);

    let strip = Harness::new(r#"{"client_header":"strip"}"#);
    let mut host = strip.host("POST", "/");
    host.headers
        .push(("x-context-id".into(), "from-client".into()));
    strip.request(&mut host, &[body.as_bytes()], false);
    assert!(host.header_values("x-context-id").is_empty());
    assert_eq!(strip.counter(Counter::ClientHeaderKept), 0);
}

#[test]
fn unusable_values_count_as_absent() {
    let h = Harness::new(r#"{"max_value_bytes":8}"#);
    for body in [
        r#"{"method":"message/send","params":{"message":{"contextId":"123456789"}}}"#,
        r#"{"method":"message/send","params":{"message":{"contextId":42}}}"#,
        r#"{"method":"message/send","params":{"message":{"contextId":{"x":1}}}}"#,
    ] {
        assert_passes_without_key(&h, body);
    }
    assert_eq!(h.counter(Counter::InvalidValue), 3);
    assert_eq!(h.counter(Counter::Minted), 0);
}

#[test]
fn invalid_json_passes_unchanged() {
    let h = Harness::new("");
    for body in [
        r#"{"method":"message/send","params":{"message":{"role":"user""#,
        r#"{"method":"message/send","params":{"message":{}}} trailing"#,
        r#"not json"#,
        r#"{"method":"message/send","params":{"message":{"parts":[}}}"#,
    ] {
        assert_passes_without_key(&h, body);
    }
    assert_eq!(h.counter(Counter::InvalidJson), 4);
    assert_eq!(h.counter(Counter::Minted), 0);
}

#[test]
fn non_a2a_traffic_is_not_held() {
    let h = Harness::new("");
    let mut get = h.host("GET", "/.well-known/agent-card.json");
    let (_, actions) = h.request(&mut get, &[], false);
    assert_eq!(actions, vec![Action::Continue]);
    let mut text = MockHost::new(&h.shared, "POST", "/", Some("text/plain"));
    let body = rpc03("ctx", "x");
    let (_, actions) = h.request(&mut text, &[body.as_bytes()], false);
    assert_eq!(actions, vec![Action::Continue, Action::Continue]);
    assert!(text.header_values("x-context-id").is_empty());
    let mut gz = h.host("POST", "/");
    gz.headers.push(("content-encoding".into(), "gzip".into()));
    let (_, actions) = h.request(&mut gz, &[b"\x1f\x8b"], false);
    assert_eq!(actions[0], Action::Continue);
    assert_eq!(h.counter(Counter::Passthrough), 3);
}

#[test]
fn past_the_scan_limit_the_request_continues_without_a_header() {
    let h = Harness::new(r#"{"max_scan_bytes":64}"#);
    let body = format!(
        r#"{{"method":"message/send","params":{{"message":{{"parts":[{{"text":"{}"}}],"contextId":"late"}}}}}}"#,
        "x".repeat(200)
    );
    let bytes = body.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(40).collect();
    let mut host = h.host("POST", "/");
    let (_, actions) = h.request(&mut host, &chunks, false);
    assert!(host.header_values("x-context-id").is_empty());
    assert_eq!(host.body, bytes);
    assert_eq!(h.counter(Counter::ScanLimit), 1);
    // Held for the first 40 bytes only, then released at 80 >= 64.
    assert_eq!(
        &actions[..3],
        &[Action::Pause, Action::Pause, Action::Continue]
    );
    let read: usize = host.body_reads.borrow().iter().map(|(_, l)| l).sum();
    assert!(read <= 64, "read {read} bytes");
}

#[test]
fn a_first_turn_of_exactly_the_scan_limit_is_minted_at_the_end() {
    // HTTP/1.1: the last bytes, then the end in a callback of its own. A
    // body of exactly max_scan_bytes, its content-length saying so or
    // chunked, may end there, and is whole at the end.
    let body = rpc10_first_turn("at the edge");
    let h = Harness::new(&format!(r#"{{"max_scan_bytes":{}}}"#, body.len()));
    for with_length in [true, false] {
        let mut host = h.host("POST", "/");
        if with_length {
            host.headers
                .push(("content-length".into(), body.len().to_string()));
        }
        let (_, actions) = h.request(&mut host, &[body.as_bytes(), b""], false);
        assert_held_to_the_end_and_minted(&host, &actions);
    }
    assert_eq!(h.counter(Counter::Minted), 2);
}

#[test]
fn a_body_longer_than_a_content_length_of_the_scan_limit_is_let_go() {
    // A content-length of exactly max_scan_bytes, and a body that goes on
    // past it (a filter before this one grew it and left the header): the
    // bytes past the limit are never copied out, and the request goes on as
    // soon as Envoy holds them, rather than waiting for an end it would
    // have to see them to reach.
    let body = rpc10_first_turn("grown");
    let limit = 64;
    let h = Harness::new(&format!(r#"{{"max_scan_bytes":{limit}}}"#));
    let mut host = h.host("POST", "/");
    host.headers
        .push(("content-length".into(), limit.to_string()));
    let bytes = body.as_bytes();
    let (_, actions) = h.request(&mut host, &[&bytes[..limit], &bytes[limit..]], false);
    assert_eq!(
        actions,
        vec![Action::Pause, Action::Pause, Action::Continue]
    );
    assert!(host.header_values("x-context-id").is_empty());
    assert_eq!(host.body, bytes);
    assert_eq!(h.counter(Counter::ScanLimit), 1);
    let read: usize = host.body_reads.borrow().iter().map(|(_, l)| l).sum();
    assert_eq!(read, limit);
}

#[test]
fn trailers_end_the_body() {
    let h = Harness::new("");
    let body = rpc10_first_turn("hi");
    let body_with_ctx = body.replace(
        r#""messageId":"m-1","#,
        r#""messageId":"m-1","contextId":"c-h2","#,
    );
    let mut host = h.host("POST", "/");
    let (_, actions) = h.request(&mut host, &[body_with_ctx.as_bytes()], true);
    // A contextId too waits for the end of the body (a later duplicate
    // could replace it): here the trailers end it.
    assert_eq!(actions, [Action::Pause, Action::Pause, Action::Continue]);
    assert_eq!(host.header_values("x-context-id"), vec!["c-h2"]);

    // A first turn is decided at the end of the body, the trailers here:
    // bytes after a complete document could still make it invalid.
    let mut host = h.host("POST", "/");
    let cut = body.len() - 1;
    let (_, actions) = h.request(&mut host, &[&body.as_bytes()[..cut]], true);
    assert_eq!(
        actions,
        vec![Action::Pause, Action::Pause, Action::Continue]
    );
    assert!(
        host.header_values("x-context-id").is_empty(),
        "truncated body"
    );
    assert_eq!(host.body, &body.as_bytes()[..cut]);
    let mut host = h.host("POST", "/");
    let (_, actions) = h.request(&mut host, &[body.as_bytes()], true);
    assert_held_to_the_end_and_minted(&host, &actions);
}

/// The headers and the one body chunk were held, the end let the request
/// go, and the minted contextId is in the header and the message alike.
fn assert_held_to_the_end_and_minted(host: &MockHost, actions: &[Action]) {
    assert_eq!(actions, [Action::Pause, Action::Pause, Action::Continue]);
    let minted = host.header_values("x-context-id");
    assert_eq!(minted.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&host.body).unwrap();
    assert_eq!(v["params"]["message"]["contextId"], minted[0].as_str());
}

#[test]
fn first_turn_is_minted_into_the_body_and_the_header() {
    let h = Harness::new("");
    let body = rpc10_first_turn("hello");
    let mut host = h.host("POST", "/");
    host.headers
        .push(("content-length".into(), body.len().to_string()));
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(17).collect();
    h.request(&mut host, &chunks, false);
    let ctx = host.header_values("x-context-id");
    assert_eq!(ctx.len(), 1);
    let ctx = &ctx[0];
    assert_eq!(ctx.len(), 36);
    assert_eq!(&ctx[14..15], "4");
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut got: serde_json::Value = serde_json::from_slice(&host.body).unwrap();
    assert_eq!(got["params"]["message"]["contextId"], ctx.as_str());
    // Nothing else changed.
    got["params"]["message"]
        .as_object_mut()
        .unwrap()
        .remove("contextId");
    assert_eq!(got, sent);
    assert_eq!(
        host.header_values("content-length"),
        vec![host.body.len().to_string()]
    );
    assert_eq!(h.counter(Counter::Minted), 1);

    // Two first turns get two different contextIds.
    let mut other = h.host("POST", "/");
    h.request(&mut other, &[body.as_bytes()], false);
    assert_ne!(other.header_values("x-context-id"), vec![ctx.clone()]);
}

#[test]
fn rest_first_turns_are_minted_in_their_own_key_style() {
    let h = Harness::new("");
    for (path, body, key, wrapper) in [
        (
            "/message:send",
            r#"{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"x"}]},"configuration":{}}"#,
            "contextId",
            "message",
        ),
        (
            "/v1/message:send",
            r#"{"request":{"message_id":"m","role":"ROLE_USER","content":[{"text":"x"}]},"configuration":{"blocking":true}}"#,
            "context_id",
            "request",
        ),
    ] {
        let mut host = h.host("POST", path);
        h.request(&mut host, &[body.as_bytes()], false);
        let v: serde_json::Value = serde_json::from_slice(&host.body).unwrap();
        let ctx = host.header_values("x-context-id");
        assert_eq!(ctx.len(), 1);
        assert_eq!(v[wrapper][key], ctx[0].as_str(), "{path}");
    }
}

#[test]
fn no_minting_for_follow_ups_non_send_calls_or_when_off() {
    let h = Harness::new("");
    for body in [
        // A follow-up by taskId: minting a contextId would contradict the task's.
        r#"{"method":"SendMessage","params":{"message":{"taskId":"t-unknown","parts":[]}}}"#,
        r#"{"method":"tools/call","params":{"message":{}}}"#,
        r#"{"params":{"message":{}}}"#,
    ] {
        assert_passes_without_key(&h, body);
    }
    let off = Harness::new(r#"{"mint_context_id":false}"#);
    let body = rpc10_first_turn("x");
    let mut host = off.host("POST", "/");
    off.request(&mut host, &[body.as_bytes()], false);
    assert!(host.header_values("x-context-id").is_empty());
    assert_eq!(host.body, body.as_bytes());
    assert_eq!(h.counter(Counter::Minted), 0);
    assert_eq!(off.counter(Counter::Minted), 0);
}

#[test]
fn host_errors_never_stop_the_request() {
    logs::capture();
    let _ = logs::take();
    let h = Harness::new("");
    let body = rpc03("ctx", "x");
    let mut host = h.host("POST", "/");
    host.fail_header_writes = true;
    let (_, actions) = h.request(&mut host, &[body.as_bytes()], false);
    assert_eq!(*actions.last().unwrap(), Action::Continue);
    assert_eq!(host.body, body.as_bytes());
    assert!(logs::take()
        .iter()
        .any(|(l, m)| *l == Level::Error && m.contains("failed")));
}

fn task_call(h: &Harness, path: &str, method: &str, body: Option<&str>) -> Vec<String> {
    let mut host = h.host(method, path);
    match body {
        Some(b) => {
            h.request(&mut host, &[b.as_bytes()], false);
        }
        None => {
            h.request(&mut host, &[], false);
        }
    }
    host.header_values("x-context-id")
}

#[test]
fn tasks_learned_from_json_responses_route_task_only_calls() {
    let h = Harness::new("");
    let responses = [
        // 0.3: result is the Task.
        r#"{"id":"1","jsonrpc":"2.0","result":{"artifacts":[],"contextId":"ctx-a","history":[],"id":"task-a","kind":"task","status":{"state":"input-required"}}}"#,
        // 1.0: result.task.
        r#"{"id":"1","jsonrpc":"2.0","result":{"task":{"id":"task-b","contextId":"ctx-b","status":{"state":"TASK_STATE_COMPLETED"}}}}"#,
        // REST: task at the top level.
        r#"{"task":{"contextId":"ctx-c","id":"task-c"}}"#,
    ];
    for resp in responses {
        let mut host = h.host("POST", "/");
        let body = rpc03("x", "y");
        let (mut stream, _) = h.request(&mut host, &[body.as_bytes()], false);
        respond(
            &mut stream,
            &mut host,
            "application/json",
            &[resp.as_bytes()],
        );
    }
    assert_eq!(h.counter(Counter::TaskLearned), 3);
    assert_eq!(
        task_call(
            &h,
            "/",
            "POST",
            Some(r#"{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"id":"task-a"}}"#)
        ),
        vec!["ctx-a"]
    );
    assert_eq!(
        task_call(
            &h,
            "/",
            "POST",
            Some(r#"{"jsonrpc":"2.0","id":2,"method":"CancelTask","params":{"id":"task-b"}}"#)
        ),
        vec!["ctx-b"]
    );
    assert_eq!(
        task_call(&h, "/v1/tasks/task-c", "GET", None),
        vec!["ctx-c"]
    );
    assert_eq!(
        task_call(&h, "/tasks/task-a:cancel", "POST", None),
        vec!["ctx-a"]
    );
    // A follow-up message that carries only the taskId.
    assert_eq!(
        task_call(
            &h,
            "/",
            "POST",
            Some(
                r#"{"method":"SendMessage","params":{"message":{"taskId":"task-b","parts":[{"text":"2025-01-01"}]}}}"#
            )
        ),
        vec!["ctx-b"]
    );
    // Push config: 1.0 keeps the task in taskId (id is the config).
    assert_eq!(
        task_call(
            &h,
            "/",
            "POST",
            Some(
                r#"{"method":"GetTaskPushNotificationConfig","params":{"id":"task-a","taskId":"task-c"}}"#
            )
        ),
        vec!["ctx-c"]
    );
    assert_eq!(
        task_call(
            &h,
            "/",
            "POST",
            Some(r#"{"method":"tasks/pushNotificationConfig/get","params":{"id":"task-a"}}"#)
        ),
        vec!["ctx-a"]
    );
    assert_eq!(h.counter(Counter::TaskRouted), 7);
    assert!(task_call(
        &h,
        "/",
        "POST",
        Some(r#"{"method":"GetTask","params":{"id":"never-seen"}}"#)
    )
    .is_empty());
    assert_eq!(h.counter(Counter::TaskUnknown), 1);
}

#[test]
fn tasks_learned_from_sse_events_at_every_split() {
    // Each event form (CRLF lines after a comment and an `event:` line,
    // data split over two lines, no space after the colon) as the event
    // that names a stream's task.
    let streams = [
        (
            concat!(
                ": keep-alive comment\n\n",
                "event: message\r\n",
                "data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"statusUpdate\":{\"taskId\":\"t-1\",\"contextId\":\"c-1\",\"status\":{\"state\":\"TASK_STATE_WORKING\"}}}}\r\n",
                "\r\n",
            ),
            ("t-1", "c-1"),
        ),
        (
            concat!(
                "data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\n",
                "data: \"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t-2\",\"contextId\":\"c-2\",\"artifact\":{}}}\n",
                "\n",
            ),
            ("t-2", "c-2"),
        ),
        (
            "data:{\"result\":{\"kind\":\"task\",\"id\":\"t-3\",\"contextId\":\"c-3\"}}\n\n",
            ("t-3", "c-3"),
        ),
    ];
    for (events, (task, ctx)) in streams {
        let bytes = events.as_bytes();
        for cut in 0..bytes.len() {
            let h = Harness::new("");
            let mut host = h.host("POST", "/");
            let body = rpc03("x", "y");
            let (mut stream, _) = h.request(&mut host, &[body.as_bytes()], false);
            let (a, b) = bytes.split_at(cut);
            respond(&mut stream, &mut host, "text/event-stream", &[a, b]);
            let got = task_call(&h, &format!("/tasks/{task}"), "GET", None);
            assert_eq!(got, vec![ctx], "{task} cut {cut}");
        }
    }
}

#[test]
fn an_event_stream_is_not_read_after_it_names_its_task() {
    // A stream answers one call about one task: once an event names it,
    // later events (here one naming another task) are not copied out.
    let first =
        "data: {\"result\":{\"statusUpdate\":{\"taskId\":\"t-1\",\"contextId\":\"c-1\"}}}\n\n";
    let later =
        "data: {\"result\":{\"statusUpdate\":{\"taskId\":\"t-2\",\"contextId\":\"c-2\"}}}\n\n";
    let h = Harness::new("");
    let mut host = h.host("POST", "/");
    let body = rpc03("x", "y");
    let (mut stream, _) = h.request(&mut host, &[body.as_bytes()], false);
    let reads_before = host.response_reads.borrow().len();
    respond(
        &mut stream,
        &mut host,
        "text/event-stream",
        &[first.as_bytes(), later.as_bytes(), later.as_bytes()],
    );
    assert_eq!(host.response_reads.borrow().len() - reads_before, 1);
    assert_eq!(h.counter(Counter::TaskLearned), 1);
    assert_eq!(task_call(&h, "/tasks/t-1", "GET", None), vec!["c-1"]);
    assert!(task_call(&h, "/tasks/t-2", "GET", None).is_empty());
}

#[test]
fn responses_of_non_a2a_calls_are_not_read() {
    let h = Harness::new("");
    let mut host = h.host("GET", "/.well-known/agent-card.json");
    let (mut stream, _) = h.request(&mut host, &[], false);
    respond(
        &mut stream,
        &mut host,
        "application/json",
        &[br#"{"task":{"id":"t","contextId":"c"}}"#],
    );
    assert_eq!(h.counter(Counter::TaskLearned), 0);
    // Nor are their headers fetched.
    assert_eq!(host.response_header_reads.get(), 0);
    // An A2A call answered with a task; its host tells what was read.
    let answered = |h: &Harness| {
        let mut host = h.host("POST", "/");
        let (mut stream, _) = h.request(&mut host, &[rpc03("x", "y").as_bytes()], false);
        respond(
            &mut stream,
            &mut host,
            "application/json",
            &[br#"{"result":{"task":{"id":"t","contextId":"c"}}}"#],
        );
        host
    };
    let off = Harness::new(r#"{"learn_tasks":false}"#);
    assert_eq!(answered(&off).response_header_reads.get(), 0);
    assert_eq!(off.counter(Counter::TaskLearned), 0);
    assert!(task_call(&off, "/tasks/t", "GET", None).is_empty());
    // With learning on, an A2A call's answer is read.
    assert_eq!(answered(&h).response_header_reads.get(), 1);
    assert_eq!(h.counter(Counter::TaskLearned), 1);
}

#[test]
fn learned_tasks_expire_and_a_full_store_evicts() {
    let h = Harness::new(r#"{"task_capacity":4,"task_ttl_secs":10}"#);
    let learn = |task: &str, ctx: &str| {
        let mut host = h.host("POST", "/");
        let (mut stream, _) = h.request(&mut host, &[rpc03("x", "y").as_bytes()], false);
        let resp = format!(r#"{{"result":{{"task":{{"id":"{task}","contextId":"{ctx}"}}}}}}"#);
        respond(
            &mut stream,
            &mut host,
            "application/json",
            &[resp.as_bytes()],
        );
    };
    learn("t-0", "c-0");
    assert_eq!(task_call(&h, "/tasks/t-0", "GET", None), vec!["c-0"]);
    h.shared.borrow_mut().now += 11;
    assert!(task_call(&h, "/tasks/t-0", "GET", None).is_empty());
    for i in 1..=5 {
        learn(&format!("t-{i}"), &format!("c-{i}"));
    }
    assert_eq!(h.counter(Counter::TaskEvicted), 1);
    // Capacity 4 keeps at most 4 keys in shared data.
    assert!(h.shared.borrow().data.len() <= 4);
    let known = (1..=5)
        .filter(|i| !task_call(&h, &format!("/tasks/t-{i}"), "GET", None).is_empty())
        .count();
    assert_eq!(known, 4);
}

#[test]
fn a_large_first_read_is_copied_out_once() {
    let h = Harness::new("");
    let text = "y".repeat(200 * 1024);
    let first = format!(
        r#"{{"method":"message/send","params":{{"message":{{"contextId":"ctx-first","parts":[{{"text":"{text}"}}]}}}}}}"#
    );
    let mut host = h.host("POST", "/");
    // Envoy has the whole body buffered by the first callback.
    h.request(&mut host, &[first.as_bytes()], false);
    assert_eq!(host.header_values("x-context-id"), vec!["ctx-first"]);
    assert_eq!(host.body, first.as_bytes());
    // The body is read to its end (a later duplicate key would win), in
    // growing windows, each byte once, with few host calls.
    contiguous_reads(&host, first.len());
    let reads = host.body_reads.borrow().len();
    assert!(reads <= 10, "{reads} reads");

    let last = format!(
        r#"{{"method":"message/send","params":{{"message":{{"parts":[{{"text":"{text}"}}],"contextId":"ctx-last"}}}}}}"#
    );
    let mut host = h.host("POST", "/");
    h.request(&mut host, &[last.as_bytes()], false);
    assert_eq!(host.header_values("x-context-id"), vec!["ctx-last"]);
    // Growing windows, contiguous, each byte once, few host calls.
    contiguous_reads(&host, last.len());
    let reads = host.body_reads.borrow().len();
    assert!(reads <= 10, "{reads} reads");
}

#[test]
fn a_json_response_is_not_copied_out_after_its_task_is_learned() {
    let h = Harness::new("");
    let mut host = h.host("POST", "/");
    let (mut stream, _) = h.request(&mut host, &[rpc03("x", "y").as_bytes()], false);
    let head = br#"{"jsonrpc":"2.0","id":1,"result":{"id":"t-9","contextId":"c-9","artifacts":[{"parts":[{"text":""#;
    let tail = br#"long artifact text"}]}]}}"#;
    respond(
        &mut stream,
        &mut host,
        "application/json",
        &[head, tail, tail],
    );
    assert_eq!(host.response_reads.borrow().as_slice(), &[head.len()]);
    assert_eq!(task_call(&h, "/tasks/t-9", "GET", None), vec!["c-9"]);
}

/// How a stream leaves its request reader behind.
#[derive(Clone, Copy, Debug)]
enum Left {
    /// Dropped after this many body bytes (client reset, timeout).
    Cut(usize),
    /// The body is not JSON.
    NotJson,
    /// The contextId lies past `max_scan_bytes`.
    PastLimit,
}

/// Readers are reused from one stream to the next: one left mid-body or
/// mid-response by a stream that ends early (client reset, upstream gone),
/// failed, or gave up at the scan limit must start the next stream as a new
/// one would.
#[test]
fn a_stream_after_an_abandoned_one_reads_only_its_own_bytes() {
    let config = r#"{"mint_context_id":false,"max_scan_bytes":4096}"#;
    let reused = Harness::new(config);
    // The contextId after a long text part, so that a cut anywhere leaves
    // the reader in a different state.
    let context_last = |ctx: &str, text: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":"1","method":"message/send","params":{{"message":{{"kind":"message","messageId":"m-1","parts":[{{"kind":"text","text":"{text}"}}],"role":"user","contextId":"{ctx}"}}}}}}"#
        )
    };
    let left = context_last(
        "ctx-left-behind",
        &r#"a text part with \"quotes\" "#.repeat(6),
    );
    let far = context_last("ctx-too-far", &"x".repeat(5000));
    let task_only = r#"{"jsonrpc":"2.0","id":"2","method":"message/send","params":{"message":{"kind":"message","messageId":"m-2","parts":[{"kind":"text","text":"hi"}],"role":"user","taskId":"t-next"}}}"#;
    let first_turn = r#"{"jsonrpc":"2.0","id":"3","method":"message/send","params":{"message":{"kind":"message","messageId":"m-3","parts":[{"kind":"text","text":"hi"}],"role":"user"}}}"#;
    let named = rpc03("ctx-next", "hi");
    let mut ways: Vec<Left> = (1..left.len()).step_by(5).map(Left::Cut).collect();
    ways.extend([Left::NotJson, Left::PastLimit]);
    for way in ways {
        for (body, want) in [
            (named.as_str(), vec!["ctx-next"]),
            (first_turn, vec![]),
            (task_only, vec![]),
            (left.as_str(), vec!["ctx-left-behind"]),
        ] {
            let mut host = reused.host("POST", "/");
            match way {
                Left::Cut(cut) => {
                    let mut stream = Stream::new(Rc::clone(&reused.plugin));
                    assert_eq!(stream.on_request_headers(&mut host, false), Action::Pause);
                    host.body.extend_from_slice(&left.as_bytes()[..cut]);
                    let size = host.body.len();
                    stream.on_request_body(&mut host, size, false);
                }
                Left::NotJson => {
                    h_request(
                        &reused,
                        &mut host,
                        r#"{"method":"message/send","params":{"message":{"contextId":}}}"#,
                    );
                    assert!(host.header_values("x-context-id").is_empty());
                }
                Left::PastLimit => {
                    h_request(&reused, &mut host, &far);
                    assert!(host.header_values("x-context-id").is_empty());
                }
            }
            let mut host = reused.host("POST", "/");
            h_request(&reused, &mut host, body);
            assert_eq!(host.header_values("x-context-id"), want, "{way:?}: {body}");
            assert_eq!(host.body, body.as_bytes(), "{way:?}");
            // The same verdict and counts as a plugin that never reused a
            // reader.
            let fresh = Harness::new(config);
            let mut fresh_host = fresh.host("POST", "/");
            h_request(&fresh, &mut fresh_host, body);
            assert_eq!(
                host.header_values("x-context-id"),
                fresh_host.header_values("x-context-id"),
                "{way:?}: {body}"
            );
        }
    }
    // Response learners: an event stream cut anywhere, with half a pair
    // read, then a response that names another task.
    let events = "data: {\"result\":{\"kind\":\"status-update\",\"taskId\":\"t-half\",\"contextId\":\"c-half\"}}\n\n";
    let own: &[u8] = b"data: {\"result\":{\"kind\":\"status-update\",\"contextId\":\"c-own\",\"taskId\":\"t-own\"}}\n\n";
    let exchange = |h: &Harness, response: &[u8]| {
        let mut host = h.host("POST", "/");
        let (mut stream, _) = h.request(&mut host, &[named.as_bytes()], false);
        respond(&mut stream, &mut host, "text/event-stream", &[response]);
    };
    for cut in 0..events.len() {
        let h = Harness::new("");
        exchange(&h, &events.as_bytes()[..cut]);
        let learned_before = h.counter(Counter::TaskLearned);
        exchange(&h, own);
        assert_eq!(
            h.counter(Counter::TaskLearned),
            learned_before + 1,
            "cut {cut}"
        );
        assert_eq!(
            task_call(&h, "/tasks/t-own", "GET", None),
            vec!["c-own"],
            "cut {cut}"
        );
        let half = task_call(&h, "/tasks/t-half", "GET", None);
        assert!(
            half.is_empty() || half == vec!["c-half"],
            "cut {cut}: {half:?}"
        );
    }
}

fn h_request(h: &Harness, host: &mut MockHost, body: &str) {
    let (_, actions) = h.request(host, &[body.as_bytes()], false);
    assert_eq!(*actions.last().unwrap(), Action::Continue);
}

/// A message whose contextId (if any) follows a text part of `text_len`
/// bytes.
fn late_context_body(ctx: Option<&str>, text_len: usize) -> Vec<u8> {
    let text = "z".repeat(text_len);
    let tail = ctx.map_or(String::new(), |c| format!(r#","contextId":"{c}""#));
    format!(
        r#"{{"jsonrpc":"2.0","id":"1","method":"message/send","params":{{"message":{{"messageId":"m-1","role":"user","parts":[{{"kind":"text","text":"{text}"}}]{tail}}}}}}}"#
    )
    .into_bytes()
}

/// Checks the body reads: contiguous from 0, each byte once, up to `end`.
fn contiguous_reads(host: &MockHost, end: usize) {
    let reads = host.body_reads.borrow();
    let mut next = 0;
    for (start, len) in reads.iter() {
        assert_eq!(*start, next, "re-read or gap at {start}: {reads:?}");
        next = start + len;
    }
    assert_eq!(next, end, "{reads:?}");
}

#[test]
fn a_large_body_with_trailers_is_held_until_its_last_piece() {
    // HTTP/2 and chunked uploads with trailers: no body callback says the
    // body ended, and the contextId comes in the last piece.
    let h = Harness::new("");
    let body = late_context_body(Some("ctx-trailers"), 100 * 1024);
    let pieces: Vec<&[u8]> = body.chunks(16 * 1024).collect();
    let mut host = h.host("POST", "/");
    let (_, actions) = h.request(&mut host, &pieces, true);
    // Held through every piece; the trailers end the body and let it go.
    let n = pieces.len();
    assert!(
        actions[1..=n].iter().all(|a| *a == Action::Pause),
        "{actions:?}"
    );
    assert_eq!(actions[n + 1..], [Action::Continue], "{actions:?}");
    assert_eq!(host.header_values("x-context-id"), vec!["ctx-trailers"]);
    assert_eq!(host.body, body);
    contiguous_reads(&host, body.len());
    assert_eq!(h.counter(Counter::ContextFound), 1);
}

#[test]
fn minting_after_trailers_replaces_the_whole_buffered_body() {
    // A long first turn ended by trailers: the minted contextId goes into
    // the whole body (the host refuses a replacement that does not cover
    // everything buffered).
    let h = Harness::new(r#"{"mint_context_id":true}"#);
    let body = late_context_body(None, 90 * 1024);
    let pieces: Vec<&[u8]> = body.chunks(16 * 1024).collect();
    let mut host = h.host("POST", "/");
    h.request(&mut host, &pieces, true);
    let minted = host.header_values("x-context-id");
    assert_eq!(minted.len(), 1, "{minted:?}");
    let sent: serde_json::Value = serde_json::from_slice(&host.body).unwrap();
    assert_eq!(sent["params"]["message"]["contextId"], minted[0].as_str());
    assert_eq!(
        sent["params"]["message"]["parts"][0]["text"]
            .as_str()
            .map(str::len),
        Some(90 * 1024)
    );
    assert_eq!(h.counter(Counter::Minted), 1);
}

#[test]
fn a_body_past_the_scan_limit_is_let_go_there_routed_by_what_was_read() {
    // Every piece is read as it arrives; past max_scan_bytes the request
    // goes on, routed by the contextId read so far, however much follows.
    let h = Harness::new(r#"{"max_scan_bytes":65536}"#);
    let head = late_context_body(Some("ctx-early-piece"), 12 * 1024);
    let mut body = head[..head.len() - 3].to_vec(); // still inside the message
    body.extend_from_slice(br#","metadata":{"pad":""#);
    body.extend_from_slice("p".repeat(200 * 1024).as_bytes());
    body.extend_from_slice(br#""}}}}"#);
    let pieces: Vec<&[u8]> = body.chunks(4 * 1024).collect();
    for with_length in [true, false] {
        let mut host = h.host("POST", "/");
        if with_length {
            host.headers
                .push(("content-length".into(), body.len().to_string()));
        }
        let (_, actions) = h.request(&mut host, &pieces, false);
        assert_eq!(host.header_values("x-context-id"), vec!["ctx-early-piece"]);
        assert_eq!(host.body, body);
        let released = actions[1..]
            .iter()
            .position(|a| *a == Action::Continue)
            .unwrap();
        // The piece that reaches 64 KiB, when the length says more comes;
        // without one the body could end there, and the next piece lets it
        // go.
        let at_the_limit = 65536 / (4 * 1024) - 1;
        let expected = if with_length {
            at_the_limit
        } else {
            at_the_limit + 1
        };
        assert_eq!(released, expected, "{with_length}: {actions:?}");
    }
    assert_eq!(h.counter(Counter::ContextFound), 2);
    assert_eq!(h.counter(Counter::ScanLimit), 0);
}
