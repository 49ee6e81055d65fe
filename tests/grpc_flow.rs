#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The gRPC binding through the filter's per-stream decisions, with the
//! in-memory host: which header each call gets, what the upstream receives,
//! and which tasks the response frames teach.

use std::rc::Rc;

use a2a_affinity::stream::{Action, Stream};
use a2a_affinity_core::stats::Counter;
use a2a_affinity_testkit::proto::{frame, len, message, send, send_context, uint, V0, V1};

use a2a_affinity_testkit::wasm::{respond, Harness, MockHost};

fn grpc_host(h: &Harness, path: &str) -> MockHost {
    MockHost::new(&h.shared, "POST", path, Some("application/grpc"))
}

fn upstream_context(service: &str, body: &[u8]) -> Option<String> {
    send_context(service, body)
}

#[test]
fn context_id_becomes_the_header_at_every_split_and_the_body_is_untouched() {
    for service in [V0, V1] {
        let body = send(service, &message(Some("ctx-42"), None, "hello"));
        for at in 0..=body.len() {
            let h = Harness::new("");
            let mut host = grpc_host(&h, &format!("{service}/SendMessage"));
            host.headers.push(("x-context-id".into(), "client".into()));
            let (a, b) = body.split_at(at);
            let chunks: Vec<&[u8]> = [a, b].into_iter().filter(|c| !c.is_empty()).collect();
            let (_, actions) = h.request(&mut host, &chunks, false);
            assert_eq!(actions[0], Action::Pause, "headers held");
            assert_eq!(*actions.last().unwrap(), Action::Continue);
            assert_eq!(
                host.header_values("x-context-id"),
                ["ctx-42"],
                "{service} {at}"
            );
            assert_eq!(host.body, body, "the upstream gets the bytes unchanged");
            assert_eq!(h.counter(Counter::ContextFound), 1);
        }
    }
}

#[test]
fn first_turn_is_minted_then_learned_tasks_route_task_calls() {
    for (service, get, task_request) in [
        (V1, "GetTask", len(2, b"task-7")),
        (V0, "GetTask", len(1, b"tasks/task-7")),
        (V1, "CancelTask", len(2, b"task-7")),
        (V0, "TaskSubscription", len(1, b"tasks/task-7")),
        (V1, "SubscribeToTask", len(2, b"task-7")),
    ] {
        let h = Harness::new("");
        // First turn: neither context_id nor task_id; sent with trailers
        // and in two chunks.
        let body = send(service, &message(None, None, "hi"));
        let mut host = grpc_host(&h, &format!("{service}/SendMessage"));
        let (a, b) = body.split_at(7);
        let (mut stream, actions) = h.request(&mut host, &[a, b], true);
        // Decided when the body ends, here at the trailers: bytes after
        // the frame could still make it one the agent rejects.
        assert_eq!(
            actions,
            [
                Action::Pause,
                Action::Pause,
                Action::Pause,
                Action::Continue
            ]
        );
        let minted = host.header_values("x-context-id");
        assert_eq!(minted.len(), 1);
        assert_eq!(minted[0].len(), 36);
        assert_eq!(
            upstream_context(service, &host.body),
            Some(minted[0].clone())
        );
        assert_eq!(h.counter(Counter::Minted), 1);
        // The answer names the task, split across chunks.
        let task = len(
            1,
            &[len(1, b"task-7"), len(2, minted[0].as_bytes())].concat(),
        );
        let response = frame(&task);
        let (a, b) = response.split_at(9);
        respond(&mut stream, &mut host, "application/grpc", &[a, b]);
        assert_eq!(h.counter(Counter::TaskLearned), 1);

        // A task-only follow-up and the task call go where the context is.
        let follow_up = send(service, &message(None, Some("task-7"), "more"));
        let mut host = grpc_host(&h, &format!("{service}/SendMessage"));
        h.request(&mut host, &[&follow_up], false);
        assert_eq!(host.header_values("x-context-id"), minted);
        assert_eq!(host.body, follow_up);
        let mut host = grpc_host(&h, &format!("{service}/{get}"));
        let call = frame(&task_request);
        h.request(&mut host, &[&call], false);
        assert_eq!(
            host.header_values("x-context-id"),
            minted,
            "{service}/{get}"
        );
        assert_eq!(host.body, call);
        assert_eq!(h.counter(Counter::TaskRouted), 2);
    }
}

#[test]
fn streamed_events_teach_tasks_at_every_split() {
    let frames = [
        frame(&len(
            3,
            &[len(1, b"task-s"), len(2, b"ctx-s"), len(3, &uint(1, 2))].concat(),
        )),
        frame(&len(
            4,
            &[len(1, b"task-a"), len(2, b"ctx-a"), len(3, b"art")].concat(),
        )),
        frame(&len(2, &message(Some("ctx-m"), Some("task-m"), "x"))),
    ]
    .concat();
    for at in 0..=frames.len() {
        let h = Harness::new("");
        let mut host = grpc_host(&h, &format!("{V1}/SendStreamingMessage"));
        let body = send(V1, &message(Some("ctx-s"), None, "go"));
        let (mut stream, _) = h.request(&mut host, &[&body], false);
        let (a, b) = frames.split_at(at);
        respond(&mut stream, &mut host, "application/grpc+proto", &[a, b]);
        for (task, context) in [
            ("task-s", "ctx-s"),
            ("task-a", "ctx-a"),
            ("task-m", "ctx-m"),
        ] {
            let mut host = grpc_host(&h, &format!("{V1}/GetTask"));
            h.request(&mut host, &[&frame(&len(2, task.as_bytes()))], false);
            assert_eq!(host.header_values("x-context-id"), [context], "split {at}");
        }
    }
}

#[test]
fn compressed_or_malformed_requests_pass_unchanged() {
    let ok = send(V1, &message(Some("ctx"), None, "x"));
    let mut compressed = ok.clone();
    compressed[0] = 1;
    let mut group = ok.clone();
    group[5] = 0x0b; // field 1, wire type 3
    for body in [compressed, group] {
        let h = Harness::new("");
        let mut host = grpc_host(&h, &format!("{V1}/SendMessage"));
        host.headers.push(("x-context-id".into(), "client".into()));
        let (_, actions) = h.request(&mut host, &[&body], false);
        assert_eq!(*actions.last().unwrap(), Action::Continue);
        assert_eq!(host.body, body);
        assert_eq!(host.header_values("x-context-id"), ["client"]);
        assert_eq!(h.counter(Counter::InvalidJson), 1);
        assert_eq!(h.counter(Counter::ClientHeaderKept), 1);
    }
}

#[test]
fn nothing_is_minted_for_follow_ups_or_when_minting_is_off() {
    let first = send(V1, &message(None, None, "x"));
    let h = Harness::new(r#"{"mint_context_id":false}"#);
    let mut host = grpc_host(&h, &format!("{V1}/SendMessage"));
    h.request(&mut host, &[&first], false);
    assert_eq!(host.body, first);
    assert!(host.header_values("x-context-id").is_empty());
    assert_eq!(h.counter(Counter::ContextAbsent), 1);
    // An unknown task: normal load balancing, body unchanged.
    let h = Harness::new("");
    let follow = send(V1, &message(None, Some("nope"), "x"));
    let mut host = grpc_host(&h, &format!("{V1}/SendMessage"));
    h.request(&mut host, &[&follow], false);
    assert_eq!(host.body, follow);
    assert_eq!(h.counter(Counter::TaskUnknown), 1);
    assert_eq!(h.counter(Counter::Minted), 0);
}

#[test]
fn other_grpc_traffic_is_not_held() {
    let h = Harness::new("");
    for (path, ct) in [
        ("/grpc.health.v1.Health/Check", "application/grpc"),
        ("/lf.a2a.v1.A2AService/SendMessage", "application/grpc+json"),
    ] {
        let mut host = MockHost::new(&h.shared, "POST", path, Some(ct));
        let mut stream = Stream::new(Rc::clone(&h.plugin));
        assert_eq!(
            stream.on_request_headers(&mut host, false),
            Action::Continue
        );
    }
    assert_eq!(h.counter(Counter::Passthrough), 2);
    // The agent card names nothing: not held either.
    let mut host = grpc_host(&h, &format!("{V1}/GetExtendedAgentCard"));
    let mut stream = Stream::new(Rc::clone(&h.plugin));
    assert_eq!(
        stream.on_request_headers(&mut host, false),
        Action::Continue
    );
    assert_eq!(h.counter(Counter::ContextAbsent), 1);
}

#[test]
fn unreadable_response_frames_teach_nothing() {
    let h = Harness::new("");
    let mut host = grpc_host(&h, &format!("{V1}/SendMessage"));
    let (mut stream, _) = h.request(
        &mut host,
        &[&send(V1, &message(Some("c"), None, "x"))],
        false,
    );
    let mut response = frame(&len(1, &[len(1, b"t-1"), len(2, b"c")].concat()));
    response[0] = 1;
    respond(&mut stream, &mut host, "application/grpc", &[&response]);
    // A JSON content type on a gRPC call is not read as gRPC either.
    let mut host = grpc_host(&h, &format!("{V1}/SendMessage"));
    let (mut stream, _) = h.request(
        &mut host,
        &[&send(V1, &message(Some("c"), None, "x"))],
        false,
    );
    let response = frame(&len(1, &[len(1, b"t-2"), len(2, b"c")].concat()));
    respond(&mut stream, &mut host, "text/plain", &[&response]);
    assert_eq!(h.counter(Counter::TaskLearned), 0);
}
