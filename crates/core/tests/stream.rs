//! The core's stream state machine with no shell at all: an in-memory host
//! (`testkit::env`) pushes heads and body bytes in and applies what comes
//! out, as any shell must.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::stream::{Decision, HeaderOp, Next, RequestHead, ResponseHead, Stream};
use a2a_affinity_testkit::bodies::{rpc03, rpc10_first_turn};
use a2a_affinity_testkit::env::{run, MockEnv};
use a2a_affinity_testkit::proto::{self, V1};
use a2a_affinity_testkit::splits;

fn config(json: &str) -> Config {
    Config::parse(json.as_bytes()).unwrap()
}

fn head<'a>(
    method: &'a str,
    path: &'a str,
    content_type: &'a str,
    length: usize,
) -> RequestHead<'a> {
    RequestHead {
        method,
        path,
        content_type: Some(content_type),
        content_encoding: None,
        content_length: Some(length as u64),
        client_header: false,
    }
}

fn outcomes(env: &MockEnv) -> u64 {
    Outcome::ALL.iter().map(|o| env.counter(o.counter())).sum()
}

#[test]
fn a_context_id_is_set_at_every_split_and_the_body_is_untouched() {
    let config = config("");
    let body = rpc03("ctx-1", "hello \\\"there\\\"");
    for [a, b] in splits::every_two(body.as_bytes()) {
        let mut env = MockEnv::default();
        let h = head("POST", "/", "application/json", body.len());
        let (_, held, next) = run(&config, &mut env, &h, &[a, b]);
        assert_eq!(next, Next::Continue);
        assert_eq!(held.header_values("x-context-id"), ["ctx-1"]);
        assert_eq!(held.body, body.as_bytes());
        assert_eq!(env.counter(Counter::ContextFound), 1);
        assert_eq!(outcomes(&env), 1);
    }
}

#[test]
fn a_json_first_turn_gets_a_context_id_in_body_header_and_length() {
    let config = config("");
    let body = rpc10_first_turn("plan a trip");
    for [a, b] in splits::every_two(body.as_bytes()) {
        let mut env = MockEnv::default();
        let h = head("POST", "/", "application/json", body.len());
        let (_, held, _) = run(&config, &mut env, &h, &[a, b]);
        let minted = held.header_values("x-context-id");
        assert_eq!(minted.len(), 1);
        assert_eq!(minted[0].len(), 36);
        let v: serde_json::Value = serde_json::from_slice(&held.body).unwrap();
        assert_eq!(v["params"]["message"]["contextId"], minted[0].as_str());
        assert_eq!(
            held.header_values("content-length"),
            [held.body.len().to_string()]
        );
        // Nothing but the inserted member changed.
        let inserted = format!(r#""contextId":"{}","#, minted[0]);
        assert_eq!(
            String::from_utf8(held.body.clone())
                .unwrap()
                .replacen(&inserted, "", 1),
            body
        );
        assert_eq!(env.counter(Counter::Minted), 1);
        assert_eq!(outcomes(&env), 1);
    }
}

#[test]
fn an_empty_message_is_minted_without_a_trailing_comma() {
    let config = config("");
    let body = r#"{"message":{ }}"#;
    let mut env = MockEnv::default();
    let h = head("POST", "/v1/message:send", "application/json", body.len());
    let (_, held, _) = run(&config, &mut env, &h, &[body.as_bytes()]);
    let v: serde_json::Value = serde_json::from_slice(&held.body).unwrap();
    assert_eq!(
        v["message"]["contextId"].as_str(),
        held.header_values("x-context-id")
            .first()
            .map(String::as_str)
    );
}

#[test]
fn a_grpc_first_turn_gets_a_context_id_field_and_right_lengths() {
    let config = config("");
    let body = proto::send(V1, &proto::message(None, None, &"x".repeat(200)));
    for [a, b] in splits::every_two(&body) {
        let mut env = MockEnv::default();
        let path = format!("{V1}/SendMessage");
        let mut h = head("POST", &path, "application/grpc", 0);
        h.content_length = None;
        let (_, held, _) = run(&config, &mut env, &h, &[a, b]);
        let minted = held.header_values("x-context-id");
        assert_eq!(minted.len(), 1);
        assert_eq!(proto::send_context(V1, &held.body), Some(minted[0].clone()));
        assert_eq!(env.counter(Counter::Minted), 1);
    }
}

#[test]
fn tasks_learned_from_responses_route_task_calls() {
    let config = config("");
    let mut env = MockEnv::default();
    let body = rpc03("ctx-9", "hi");
    let h = head("POST", "/", "application/json", body.len());
    let (mut stream, _, _) = run(&config, &mut env, &h, &[body.as_bytes()]);
    stream.on_response_headers(
        &config,
        &ResponseHead {
            content_type: Some("text/event-stream"),
            content_encoding: None,
        },
        &mut env,
    );
    let sse = b"data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"kind\":\"task\",\"id\":\"task-9\",\"contextId\":\"ctx-9\"}}\n\n";
    for chunk in splits::chunks(sse, 7) {
        let tally = stream.on_response_body(chunk, &mut env);
        env.count_tally(tally);
    }
    assert_eq!(env.counter(Counter::TaskLearned), 1);
    // JSON-RPC tasks/get and the REST task route both find it.
    let get = r#"{"jsonrpc":"2.0","id":"2","method":"tasks/get","params":{"id":"task-9"}}"#;
    let h = head("POST", "/", "application/json", get.len());
    let (_, held, _) = run(&config, &mut env, &h, &[get.as_bytes()]);
    assert_eq!(held.header_values("x-context-id"), ["ctx-9"]);
    let mut h = head("GET", "/v1/tasks/task-9", "application/json", 0);
    h.content_length = None;
    let (_, held, _) = run(&config, &mut env, &h, &[]);
    assert_eq!(held.header_values("x-context-id"), ["ctx-9"]);
    assert_eq!(env.counter(Counter::TaskRouted), 2);
    // A task never seen is unknown, after its time to live too.
    env.now += 7200;
    let (_, held, _) = run(&config, &mut env, &h, &[]);
    assert!(held.header_values("x-context-id").is_empty());
    assert_eq!(env.counter(Counter::TaskUnknown), 1);
}

#[test]
fn an_event_stream_is_read_only_until_it_names_its_task() {
    let config = config("");
    let events: [&[u8]; 4] = [
        b": keep-alive\n\n",
        b"data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"kind\":\"message\",\"role\":\"agent\",\"parts\":[]}}\n\n",
        b"data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"kind\":\"status-update\",\"taskId\":\"t-1\",\"contextId\":\"c-1\",\"status\":{}}}\n\n",
        b"data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"kind\":\"status-update\",\"taskId\":\"t-2\",\"contextId\":\"c-2\",\"status\":{}}}\n\n",
    ];
    let mut env = MockEnv::default();
    let body = rpc03("c-1", "hi");
    let h = head("POST", "/", "application/json", body.len());
    let (mut stream, _, _) = run(&config, &mut env, &h, &[body.as_bytes()]);
    stream.on_response_headers(
        &config,
        &ResponseHead {
            content_type: Some("text/event-stream"),
            content_encoding: None,
        },
        &mut env,
    );
    let mut read = Vec::new();
    for event in events {
        read.push(stream.reading_response());
        let tally = stream.on_response_body(event, &mut env);
        env.count_tally(tally);
    }
    // A comment and an event that names no task leave it reading; the
    // event that names the task ends the reading.
    assert_eq!(read, [true, true, true, false]);
    assert!(!stream.reading_response());
    assert_eq!(env.counter(Counter::TaskLearned), 1);
    assert!(env.store.tasks.contains_key("t-1"));
    assert!(!env.store.tasks.contains_key("t-2"));
}

#[test]
fn a_deferred_lookup_holds_the_request_until_it_is_resolved() {
    let config = config("");
    for found in [Some("ctx-d"), None] {
        let mut env = MockEnv::default();
        env.store.defer = true;
        let mut stream = Stream::new();
        let mut h = head("GET", "/tasks/t-1", "application/json", 0);
        h.content_length = None;
        let d = stream.on_request_headers(&config, &h, true, &mut env);
        assert_eq!(d.next, Next::LookupTask("t-1".into()));
        assert_eq!(d.outcome, None);
        let d = stream.task_resolved(&config, found);
        assert_eq!(d.next, Next::Continue);
        match found {
            Some(c) => {
                assert_eq!(d.header, HeaderOp::Set(c.into()));
                assert_eq!(d.outcome, Some(Outcome::TaskRouted));
            }
            None => assert_eq!(d.outcome, Some(Outcome::TaskUnknown)),
        }
        // A second answer changes nothing.
        assert_eq!(stream.task_resolved(&config, found).outcome, None);
    }
}

#[test]
fn a_stream_that_ends_undecided_is_counted_once_as_aborted() {
    let config = config("");
    let body = rpc03("ctx", "x");
    let (first, _) = body.as_bytes().split_at(20);
    let mut env = MockEnv::default();
    let mut stream = Stream::new();
    let h = head("POST", "/", "application/json", body.len());
    let d = stream.on_request_headers(&config, &h, false, &mut env);
    assert_eq!(d.next, Next::NeedBody);
    let d = stream.on_request_body(&config, first, false, &mut env);
    assert_eq!(d.next, Next::NeedBody);
    assert_eq!(stream.on_stream_end(&mut env), Some(Outcome::Aborted));
    assert_eq!(stream.on_stream_end(&mut env), None);
    // A decided stream ends with nothing more to count.
    let mut env = MockEnv::default();
    let (mut stream, _, _) = run(&config, &mut env, &h, &[body.as_bytes()]);
    assert_eq!(stream.on_stream_end(&mut env), None);
}

#[test]
fn the_scan_limit_ends_reading_whatever_the_chunking() {
    let config = config(r#"{"max_scan_bytes":64}"#);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"1","method":"message/send","params":{{"message":{{"parts":[{{"text":"{}"}}],"contextId":"late"}}}}}}"#,
        "x".repeat(100)
    );
    for size in [1, 10, 64, 65, body.len()] {
        let mut env = MockEnv::default();
        let h = head("POST", "/", "application/json", body.len());
        let (_, held, next) = run(
            &config,
            &mut env,
            &h,
            &splits::chunks(body.as_bytes(), size),
        );
        assert_eq!(next, Next::Continue);
        assert!(held.header_values("x-context-id").is_empty());
        assert_eq!(held.body, body.as_bytes());
        assert_eq!(env.counter(Counter::ScanLimit), 1, "chunks of {size}");
        assert_eq!(outcomes(&env), 1);
    }
    // A body of exactly the limit is read to its end.
    let exact = rpc03("c", "");
    let config = Config {
        max_scan_bytes: exact.len() as u64,
        ..Config::default()
    };
    let mut env = MockEnv::default();
    let h = head("POST", "/", "application/json", exact.len());
    let (_, held, _) = run(&config, &mut env, &h, &[exact.as_bytes()]);
    assert_eq!(held.header_values("x-context-id"), ["c"]);
}

#[test]
fn a_body_of_exactly_the_scan_limit_is_read_to_its_end() {
    // HTTP/1.1 shows a body's last bytes without the end of the stream and
    // then the end in an empty call. At exactly `max_scan_bytes`, with a
    // `content-length` of as much or none at all (chunked), the body may
    // end there: a first turn is minted and a contextId read to the end is
    // found, at every split, with the end alone or with trailers.
    let first = rpc10_first_turn("plan a trip");
    let found = rpc03("ctx-at-the-edge", "x");
    // A content-length of exactly `len`, and none (chunked).
    let exact_and_chunked = |len: usize| {
        let exact = head("POST", "/", "application/json", len);
        let mut chunked = exact;
        chunked.content_length = None;
        [exact, chunked]
    };
    for (body, want) in [(&first, Outcome::Minted), (&found, Outcome::ContextFound)] {
        let config = Config {
            max_scan_bytes: body.len() as u64,
            ..Config::default()
        };
        for h in &exact_and_chunked(body.len()) {
            for [a, b] in splits::every_two(body.as_bytes()) {
                let mut env = MockEnv::default();
                let (_, held, next) = run(&config, &mut env, h, &[a, b, b""]);
                assert_eq!(next, Next::Continue);
                let at = (h.content_length, a.len());
                assert_eq!(env.counter(want.counter()), 1, "{want:?} {at:?}");
                assert_eq!(outcomes(&env), 1);
                let sent = held.header_values("x-context-id");
                assert_eq!(sent.len(), 1);
                let v: serde_json::Value = serde_json::from_slice(&held.body).unwrap();
                assert_eq!(v["params"]["message"]["contextId"], sent[0].as_str());
            }
            // Trailers end it as well.
            for [a, b] in splits::every_two(body.as_bytes()) {
                let mut env = MockEnv::default();
                let mut stream = Stream::new();
                stream.on_request_headers(&config, h, false, &mut env);
                for part in [a, b] {
                    let d = stream.on_request_body(&config, part, false, &mut env);
                    assert_eq!(d.next, Next::NeedBody);
                }
                let d = stream.on_request_trailers(&config, &mut env);
                assert_eq!(d.outcome, Some(want), "split at {}", a.len());
            }
        }
    }
    // A longer content-length says the body goes on: the read ends at the
    // limit at once, and nothing is minted from part of a body.
    let config = Config {
        max_scan_bytes: first.len() as u64,
        ..Config::default()
    };
    let longer = head("POST", "/", "application/json", first.len() + 1);
    let mut env = MockEnv::default();
    let (_, held, _) = run(&config, &mut env, &longer, &[first.as_bytes(), b""]);
    assert!(held.header_values("x-context-id").is_empty());
    assert_eq!(held.body, first.as_bytes());
    assert_eq!(env.counter(Counter::ScanLimit), 1);
    assert_eq!(outcomes(&env), 1);
    // A stream that has read all of `first`, exactly the limit, and waits.
    let held_at_the_limit = |h: &RequestHead<'_>| {
        let mut env = MockEnv::default();
        let mut stream = Stream::new();
        stream.on_request_headers(&config, h, false, &mut env);
        let d = stream.on_request_body(&config, first.as_bytes(), false, &mut env);
        assert_eq!(d.next, Next::NeedBody);
        (stream, env)
    };
    for h in &exact_and_chunked(first.len()) {
        // So does a byte pushed past the limit (Envoy never shows one past
        // an announced length; the core does not wait for more).
        let (mut stream, mut env) = held_at_the_limit(h);
        let d = stream.on_request_body(&config, b" ", true, &mut env);
        assert_eq!(d.outcome, Some(Outcome::ScanLimit));
        assert_eq!(d.next, Next::Continue);
        assert!(d.body.is_none());
        // And a host that copies nothing past the limit saying it holds
        // more.
        let (mut stream, mut env) = held_at_the_limit(h);
        let d = stream.on_bytes_past_scan_limit(&config, &mut env);
        assert_eq!(d.outcome, Some(Outcome::ScanLimit));
        assert_eq!(d.next, Next::Continue);
        assert!(d.body.is_none());
        assert_eq!(
            stream.on_bytes_past_scan_limit(&config, &mut env).outcome,
            None
        );
    }
}

#[test]
fn a_first_turn_whose_document_ends_at_the_scan_limit_is_not_minted() {
    // The whole document fits in max_scan_bytes, but the body goes on past
    // it: whatever follows (here a stray byte, or a second frame) is never
    // read, so the body is not known to be one valid document.
    let json = rpc10_first_turn("hi");
    let grpc_doc = proto::send(V1, &proto::message(None, None, "hi"));
    let rpc_path = "/".to_string();
    let grpc_path = format!("{V1}/SendMessage");
    let cases: [(&str, &str, Vec<u8>, usize); 2] = [
        (
            &rpc_path,
            "application/json",
            format!("{json}$").into_bytes(),
            json.len(),
        ),
        (
            &grpc_path,
            "application/grpc",
            [grpc_doc.clone(), vec![0, 0]].concat(),
            grpc_doc.len(),
        ),
    ];
    for (path, content_type, body, limit) in &cases {
        let config = Config {
            max_scan_bytes: *limit as u64,
            ..Config::default()
        };
        for [a, b] in splits::every_two(body) {
            let mut env = MockEnv::default();
            let h = head("POST", path, content_type, body.len());
            let (_, held, next) = run(&config, &mut env, &h, &[a, b]);
            assert_eq!(next, Next::Continue);
            assert!(held.header_values("x-context-id").is_empty(), "{path}");
            assert_eq!(&held.body, body);
            assert_eq!(env.counter(Counter::ScanLimit), 1, "{path}");
            assert_eq!(outcomes(&env), 1);
        }
    }
}

#[test]
fn a_body_cut_short_by_the_host_ends_like_the_scan_limit() {
    let config = config(r#"{"client_header":"strip"}"#);
    let body = rpc03("late", "x");
    let mut env = MockEnv::default();
    let mut stream = Stream::new();
    let mut h = head("POST", "/", "application/json", body.len());
    h.client_header = true;
    stream.on_request_headers(&config, &h, false, &mut env);
    let d = stream.on_request_body(&config, &body.as_bytes()[..30], false, &mut env);
    assert_eq!(d.next, Next::NeedBody);
    let d = stream.on_body_cut(&config, &mut env);
    assert_eq!(d.next, Next::Continue);
    assert_eq!(d.outcome, Some(Outcome::ScanLimit));
    assert_eq!(d.header, HeaderOp::Remove);
    assert_eq!(stream.on_body_cut(&config, &mut env).outcome, None);
}

#[test]
fn without_a_body_key_the_client_header_is_kept_or_removed() {
    let body = r#"{"jsonrpc":"2.0","id":"1","method":"tasks/list","params":{}}"#;
    for (json, kept) in [("", true), (r#"{"client_header":"strip"}"#, false)] {
        let config = config(json);
        let mut env = MockEnv::default();
        let mut h = head("POST", "/", "application/json", body.len());
        h.client_header = true;
        let (_, held, _) = run(&config, &mut env, &h, &[body.as_bytes()]);
        assert_eq!(held.header_values("x-context-id").len(), usize::from(kept));
        assert_eq!(env.counter(Counter::ClientHeaderKept), u64::from(kept));
        assert_eq!(env.counter(Counter::ContextAbsent), 1);
    }
}

#[test]
fn a_mint_the_host_cannot_write_falls_back_to_no_key() {
    let config = config(r#"{"client_header":"strip"}"#);
    let body = rpc10_first_turn("x");
    let mut env = MockEnv::default();
    let mut stream = Stream::new();
    let mut h = head("POST", "/", "application/json", body.len());
    h.client_header = true;
    stream.on_request_headers(&config, &h, false, &mut env);
    let d = stream.on_request_body(&config, body.as_bytes(), true, &mut env);
    assert!(d.body.is_some());
    assert_eq!(d.outcome, Some(Outcome::Minted));
    let fallback: Decision = stream.mint_failed(&config);
    assert_eq!(fallback.body, None);
    assert_eq!(fallback.header, HeaderOp::Remove);
    assert_eq!(fallback.outcome, Some(Outcome::ContextAbsent));
    // No random bytes: no mint, the request goes on.
    let mut env = MockEnv {
        no_random: true,
        ..MockEnv::default()
    };
    let h = head("POST", "/", "application/json", body.len());
    let (_, held, _) = run(&config, &mut env, &h, &[body.as_bytes()]);
    assert_eq!(held.body, body.as_bytes());
    assert_eq!(env.counter(Counter::ContextAbsent), 1);
}

#[test]
fn every_inspected_request_ends_in_exactly_one_outcome() {
    let config = config(r#"{"max_scan_bytes":300}"#);
    let bodies = [
        rpc03("c", "x"),
        rpc10_first_turn("y"),
        r#"{"method":"message/send","params":{"message":{"taskId":"t"}}}"#.to_string(),
        r#"{"method":"message/send","params":{"message":{"contextId":""}}}"#.to_string(),
        r#"{"method":"message/send","params":{"#.to_string(),
        "not json".to_string(),
        format!(
            r#"{{"method":"message/send","params":{{"message":{{"text":"{}"}}}}}}"#,
            "z".repeat(400)
        ),
    ];
    for body in &bodies {
        for size in [1, 3, 50, body.len()] {
            let mut env = MockEnv::default();
            let h = head("POST", "/", "application/json", body.len());
            let (_, held, _) = run(
                &config,
                &mut env,
                &h,
                &splits::chunks(body.as_bytes(), size),
            );
            assert_eq!(outcomes(&env), 1, "{body} in chunks of {size}");
            // Only a minted first turn changes the body.
            if env.counter(Counter::Minted) == 0 {
                assert_eq!(held.body, body.as_bytes());
            }
        }
    }
    // Not inspected: counted as passthrough, nothing held.
    let mut env = MockEnv::default();
    let h = head("GET", "/.well-known/agent-card.json", "application/json", 0);
    let (_, _, next) = run(&config, &mut env, &h, &[]);
    assert_eq!(next, Next::Continue);
    assert_eq!(env.counter(Counter::Passthrough), 1);
}
