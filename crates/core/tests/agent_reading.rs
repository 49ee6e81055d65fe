//! The filter reads a request body the way the agents do: `null` and `""`
//! contextIds are first turns, the last of a duplicate key wins, nothing is
//! minted into a body that is not one valid document, and a message with
//! both ids goes where its task is. Each test drives the core's stream
//! through an in-memory host, at every split of the body.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::stream::{HeaderOp, Next, RequestHead, Stream};
use a2a_affinity_testkit::env::{HeldRequest, MockEnv};
use a2a_affinity_testkit::splits;
use proptest::prelude::*;
use serde_json::Value;

fn config(json: &str) -> Config {
    Config::parse(json.as_bytes()).unwrap()
}

/// One request with its body in `chunks`, the last marked as the end.
/// Returns the request as the upstream gets it and the host's counters.
fn send(config: &Config, env: &mut MockEnv, path: &str, chunks: &[&[u8]]) -> HeldRequest {
    send_counting(config, env, path, chunks).0
}

/// `send`, also returning how many body bytes had arrived when the request
/// went on.
fn send_counting(
    config: &Config,
    env: &mut MockEnv,
    path: &str,
    chunks: &[&[u8]],
) -> (HeldRequest, usize) {
    send_under(config, env, path, chunks, None)
}

/// `send_counting`, the host passing `scan_limit` (if any) with each chunk.
fn send_under(
    config: &Config,
    env: &mut MockEnv,
    path: &str,
    chunks: &[&[u8]],
    scan_limit: Option<u64>,
) -> (HeldRequest, usize) {
    let length: usize = chunks.iter().map(|c| c.len()).sum();
    let head = RequestHead {
        method: "POST",
        path,
        content_type: Some("application/json"),
        content_encoding: None,
        content_length: Some(length as u64),
        client_header: false,
    };
    let mut held = HeldRequest {
        headers: vec![("content-length".into(), length.to_string())],
        body: vec![],
    };
    let mut stream = Stream::new();
    let decision = stream.on_request_headers(config, &head, chunks.is_empty(), env);
    let mut next = held.apply(config, decision, env);
    let mut forwarded = Vec::new();
    let mut arrived = 0;
    let mut went_on = None;
    for (i, chunk) in chunks.iter().enumerate() {
        held.body.extend_from_slice(chunk);
        arrived += chunk.len();
        if next == Next::NeedBody {
            let last = i + 1 == chunks.len();
            let decision = match scan_limit {
                Some(limit) => stream.on_request_body_within(config, limit, chunk, last, env),
                None => stream.on_request_body(config, chunk, last, env),
            };
            next = held.apply(config, decision, env);
        }
        if next == Next::Continue {
            went_on.get_or_insert(arrived);
            forwarded.append(&mut held.body);
        }
    }
    assert_eq!(next, Next::Continue);
    forwarded.append(&mut held.body);
    held.body = forwarded;
    let outcomes: u64 = Outcome::ALL.iter().map(|o| env.counter(o.counter())).sum();
    assert_eq!(outcomes, 1, "one outcome per request");
    (held, went_on.unwrap_or(0))
}

fn header(held: &HeldRequest) -> Option<String> {
    let values = held.header_values("x-context-id");
    assert!(values.len() <= 1, "{values:?}");
    values.into_iter().next()
}

/// The contextId the agent files the message under, read as Python's
/// `json` and serde_json read it (the last of a duplicate key).
fn agent_context(body: &[u8], pointer: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer(pointer)?.as_str().map(str::to_string)
}

#[test]
fn null_and_empty_context_ids_are_first_turns_minted_in_place() {
    let config = config("");
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "/",
            r#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","contextId":null,"role":"user","parts":[{"kind":"text","text":"hi"}],"messageId":"m"}}}"#,
            "/params/message/contextId",
            "\"contextId\"",
        ),
        (
            "/",
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","contextId":"","role":"ROLE_USER","parts":[{"text":"hi"}]}}}"#,
            "/params/message/contextId",
            "\"contextId\"",
        ),
        (
            "/",
            r#"{"jsonrpc":"2.0","id":1,"method":"SendStreamingMessage","params":{"message":{"messageId":"m","taskId":null,"contextId":null,"parts":[]}}}"#,
            "/params/message/contextId",
            "\"contextId\"",
        ),
        (
            "/message:send",
            r#"{"message":{"messageId":"m","contextId":null,"role":"ROLE_USER","parts":[{"text":"hi"}]}}"#,
            "/message/contextId",
            "\"contextId\"",
        ),
        (
            "/v1/message:send",
            r#"{"request":{"message_id":"m","context_id":"","role":"ROLE_USER","content":[{"text":"hi"}]},"configuration":{"blocking":true}}"#,
            "/request/context_id",
            "\"context_id\"",
        ),
        (
            "/",
            r#"{"method":"message/send","params":{"message":{"context_id":null,"messageId":"m"}}}"#,
            "/params/message/context_id",
            "\"context_id\"",
        ),
    ];
    for (path, body, pointer, key) in cases {
        for [a, b] in splits::every_two(body.as_bytes()) {
            let mut env = MockEnv::default();
            let held = send(&config, &mut env, path, &[a, b]);
            let minted = header(&held).expect("minted");
            assert_eq!(minted.len(), 36, "{body}");
            assert_eq!(env.counter(Counter::Minted), 1, "{body}");
            // The agent reads the minted id, from the one member there is.
            let sent = std::str::from_utf8(&held.body).unwrap();
            assert_eq!(agent_context(&held.body, pointer), Some(minted.clone()));
            assert_eq!(sent.matches(key).count(), 1, "{sent}");
            assert_eq!(
                held.header_values("content-length"),
                [held.body.len().to_string()]
            );
            // Nothing else changed.
            let quoted = format!("\"{minted}\"");
            let restored = sent.replacen(&quoted, "null", 1);
            let restored_empty = sent.replacen(&quoted, "\"\"", 1);
            assert!(restored == *body || restored_empty == *body, "{sent}");
        }
    }
}

#[test]
fn duplicate_keys_route_by_the_last_occurrence() {
    let config = config("");
    let rpc = |params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"message/send","params":{params}}}"#)
    };
    let rpc10 = |params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{params}}}"#)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "/",
            rpc(r#"{"message":{"contextId":"first","parts":[],"contextId":"last"}}"#),
            "last",
        ),
        (
            "/",
            rpc(r#"{"message":{"contextId":"first"},"message":{"contextId":"last"}}"#),
            "last",
        ),
        (
            "/",
            r#"{"method":"message/send","params":{"message":{"contextId":"first"}},"params":{"message":{"contextId":"last"}}}"#
                .to_string(),
            "last",
        ),
        // JSON-RPC 0.3: `contextId` wins over `context_id` in either order
        // (a2a-sdk's 0.3 pydantic model reads by alias).
        (
            "/",
            rpc(r#"{"message":{"contextId":"camel","context_id":"snake"}}"#),
            "camel",
        ),
        (
            "/",
            rpc(r#"{"message":{"context_id":"snake","contextId":"camel"}}"#),
            "camel",
        ),
        // JSON-RPC 1.0 and REST (ProtoJSON parsers): the later spelling.
        (
            "/",
            rpc10(r#"{"message":{"contextId":"camel","context_id":"snake"}}"#),
            "snake",
        ),
        (
            "/",
            rpc10(r#"{"message":{"context_id":"snake","contextId":"camel"}}"#),
            "camel",
        ),
        (
            "/message:send",
            r#"{"message":{"contextId":"camel","context_id":"snake"}}"#.to_string(),
            "snake",
        ),
        (
            "/v1/message:send",
            r#"{"message":{"context_id":"snake","contextId":"camel"}}"#.to_string(),
            "camel",
        ),
        (
            "/message:send",
            r#"{"message":{"contextId":"first"},"message":{"contextId":"last"}}"#.to_string(),
            "last",
        ),
        (
            "/message:send",
            r#"{"message":{"contextId":"first","contextId":"last"}}"#.to_string(),
            "last",
        ),
    ];
    for (path, body, want) in &cases {
        for [a, b] in splits::every_two(body.as_bytes()) {
            let mut env = MockEnv::default();
            let held = send(&config, &mut env, path, &[a, b]);
            assert_eq!(header(&held).as_deref(), Some(*want), "{body}");
            assert_eq!(held.body, body.as_bytes());
            assert_eq!(env.counter(Counter::ContextFound), 1);
        }
    }
    // A later `null` takes the place of a usable contextId: a first turn to
    // the agent, minted in place of that last value.
    let body = rpc(r#"{"message":{"contextId":"first","messageId":"m","contextId":null}}"#);
    let mut env = MockEnv::default();
    let held = send(&config, &mut env, "/", &[body.as_bytes()]);
    let minted = header(&held).unwrap();
    assert_eq!(
        agent_context(&held.body, "/params/message/contextId"),
        Some(minted)
    );
    assert_eq!(env.counter(Counter::Minted), 1);
    // A later message without ids replaces one that had them.
    let body =
        rpc(r#"{"message":{"contextId":"first","messageId":"m"},"message":{"messageId":"n"}}"#);
    let mut env = MockEnv::default();
    let held = send(&config, &mut env, "/", &[body.as_bytes()]);
    let minted = header(&held).unwrap();
    assert_eq!(
        agent_context(&held.body, "/params/message/contextId"),
        Some(minted)
    );
}

/// A JSON-RPC send whose `params` and message may repeat and whose message
/// members include any sequence of contextIds (strings, `null`, `""`).
fn duplicated_body() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        3 => "[abc]{1,3}".prop_map(|s| format!("\"{s}\"")),
        1 => Just("null".to_string()),
        1 => Just("\"\"".to_string()),
    ];
    let member = prop_oneof![
        3 => value.prop_map(|v| format!("\"contextId\":{v}")),
        1 => Just(r#""parts":[{"text":"contextId"}]"#.to_string()),
        1 => Just(r#""metadata":{"contextId":"decoy"}"#.to_string()),
    ];
    let message = prop::collection::vec(member, 0..4).prop_map(|m| format!("{{{}}}", m.join(",")));
    let params = prop::collection::vec(message, 1..3).prop_map(|ms| {
        let members: Vec<String> = ms.iter().map(|m| format!("\"message\":{m}")).collect();
        format!("{{{}}}", members.join(","))
    });
    (prop::collection::vec(params, 1..3), any::<bool>()).prop_map(|(ps, method_first)| {
        let params: Vec<String> = ps.iter().map(|p| format!("\"params\":{p}")).collect();
        let method = r#""method":"message/send""#;
        if method_first {
            format!("{{{method},{}}}", params.join(","))
        } else {
            format!("{{{},{method}}}", params.join(","))
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the duplicates, the upstream's parse of the body it gets
    /// names the contextId the header carries.
    #[test]
    fn the_header_is_the_context_the_agent_reads(body in duplicated_body(), at in any::<prop::sample::Index>()) {
        let config = config("");
        let at = at.index(body.len() + 1);
        let mut env = MockEnv::default();
        let held = send(&config, &mut env, "/", &splits::two(body.as_bytes(), at));
        let header = header(&held);
        prop_assert!(header.is_some(), "{}", body);
        prop_assert_eq!(agent_context(&held.body, "/params/message/contextId"), header, "{}", body);
    }
}

#[test]
fn nothing_is_minted_into_a_body_that_is_not_one_valid_document() {
    let config = config("");
    let first_turn =
        r#"{"method":"message/send","params":{"message":{"messageId":"m","parts":[]}}}"#;
    for trailing in [" x", "{}", ",", " \n]", "\u{0}"] {
        let body = format!("{first_turn}{trailing}");
        // The document completes in the first chunk, the bad bytes follow.
        for chunks in [
            splits::two(body.as_bytes(), first_turn.len()).to_vec(),
            vec![body.as_bytes()],
        ] {
            let mut env = MockEnv::default();
            let held = send(&config, &mut env, "/", &chunks);
            assert_eq!(header(&held), None, "{body:?}");
            assert_eq!(held.body, body.as_bytes());
            assert_eq!(env.counter(Counter::InvalidJson), 1, "{body:?}");
        }
    }
    // Trailing whitespace is part of a valid document.
    let body = format!("{first_turn} \r\n\t");
    let mut env = MockEnv::default();
    let held = send(
        &config,
        &mut env,
        "/",
        &splits::two(body.as_bytes(), first_turn.len()),
    );
    assert!(header(&held).is_some());
    assert_eq!(env.counter(Counter::Minted), 1);
}

#[test]
fn a_message_with_both_ids_goes_where_its_task_is() {
    let rpc = |ctx: &str, task: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{{"message":{{"messageId":"m","contextId":"{ctx}","taskId":"{task}","parts":[]}}}}}}"#
        )
    };
    let learned = |env: &mut MockEnv| {
        env.store
            .tasks
            .insert("t-1".into(), ("ctx-of-task".into(), u64::MAX));
    };
    let config_on = config("");
    // The task is known and belongs to another context: to the task's
    // replica, which answers the mismatch as the agent alone would.
    let body = rpc("ctx-other", "t-1");
    for [a, b] in splits::every_two(body.as_bytes()) {
        let mut env = MockEnv::default();
        learned(&mut env);
        let held = send(&config_on, &mut env, "/", &[a, b]);
        assert_eq!(header(&held).as_deref(), Some("ctx-of-task"));
        assert_eq!(held.body, body.as_bytes());
        assert_eq!(env.counter(Counter::TaskRouted), 1);
    }
    // Known and matching: the context, counted as found.
    let mut env = MockEnv::default();
    learned(&mut env);
    let held = send(
        &config_on,
        &mut env,
        "/",
        &[rpc("ctx-of-task", "t-1").as_bytes()],
    );
    assert_eq!(header(&held).as_deref(), Some("ctx-of-task"));
    assert_eq!(env.counter(Counter::ContextFound), 1);
    // Unknown task, or no task learning: the message's contextId.
    for json in ["", r#"{"learn_tasks":false}"#] {
        let mut env = MockEnv::default();
        if json.is_empty() {
            env.store.tasks.clear();
        } else {
            learned(&mut env);
        }
        let held = send(&config(json), &mut env, "/", &[body.as_bytes()]);
        assert_eq!(header(&held).as_deref(), Some("ctx-other"), "{json}");
        assert_eq!(env.counter(Counter::ContextFound), 1);
    }
    // A store that answers later: the answer decides the same way.
    for (answer, want, counter) in [
        (Some("ctx-of-task"), "ctx-of-task", Counter::TaskRouted),
        (None, "ctx-other", Counter::ContextFound),
    ] {
        let mut env = MockEnv::default();
        env.store.defer = true;
        let mut stream = Stream::new();
        let head = RequestHead {
            method: "POST",
            path: "/",
            content_type: Some("application/json"),
            content_encoding: None,
            content_length: None,
            client_header: false,
        };
        let d = stream.on_request_headers(&config_on, &head, false, &mut env);
        assert_eq!(d.next, Next::NeedBody);
        let d = stream.on_request_body(&config_on, body.as_bytes(), true, &mut env);
        assert_eq!(d.next, Next::LookupTask("t-1".into()));
        assert_eq!(d.outcome, None);
        let d = stream.task_resolved(&config_on, answer);
        assert_eq!(d.header, HeaderOp::Set(want.into()));
        assert_eq!(
            d.outcome,
            Some(match counter {
                Counter::TaskRouted => Outcome::TaskRouted,
                _ => Outcome::ContextFound,
            })
        );
    }
}

#[test]
fn a_body_past_the_scan_limit_is_routed_by_the_ids_read_before_it() {
    let config = config(r#"{"max_scan_bytes":256}"#);
    let text = "x".repeat(1000);
    let early = format!(
        r#"{{"method":"message/send","params":{{"message":{{"contextId":"early","parts":[{{"text":"{text}"}}]}}}}}}"#
    );
    let task_only = format!(
        r#"{{"method":"message/send","params":{{"message":{{"taskId":"t-9","parts":[{{"text":"{text}"}}]}}}}}}"#
    );
    let first_turn = format!(
        r#"{{"method":"message/send","params":{{"message":{{"parts":[{{"text":"{text}"}}]}}}}}}"#
    );
    for size in [1, 100, 256, 300, 5000] {
        let mut env = MockEnv::default();
        let held = send(
            &config,
            &mut env,
            "/",
            &splits::chunks(early.as_bytes(), size),
        );
        assert_eq!(header(&held).as_deref(), Some("early"), "chunks of {size}");
        assert_eq!(held.body, early.as_bytes());
        assert_eq!(env.counter(Counter::ContextFound), 1);

        let mut env = MockEnv::default();
        env.store
            .tasks
            .insert("t-9".into(), ("ctx-9".into(), u64::MAX));
        let held = send(
            &config,
            &mut env,
            "/",
            &splits::chunks(task_only.as_bytes(), size),
        );
        assert_eq!(header(&held).as_deref(), Some("ctx-9"), "chunks of {size}");
        assert_eq!(env.counter(Counter::TaskRouted), 1);

        // Nothing is minted from part of a body.
        let mut env = MockEnv::default();
        let held = send(
            &config,
            &mut env,
            "/",
            &splits::chunks(first_turn.as_bytes(), size),
        );
        assert_eq!(header(&held), None, "chunks of {size}");
        assert_eq!(held.body, first_turn.as_bytes());
        assert_eq!(env.counter(Counter::ScanLimit), 1);
    }
}

#[test]
fn a_host_scan_limit_ends_the_read_below_max_scan_bytes_never_above_it() {
    // A host that holds the body under a lower buffer limit passes it with
    // each chunk: the read ends there as at max_scan_bytes, and a limit
    // above max_scan_bytes does not take the read past max_scan_bytes.
    let config = config(r#"{"max_scan_bytes":256}"#);
    let body_with = |pad: usize| {
        format!(
            r#"{{"method":"message/send","params":{{"message":{{"parts":[{{"text":"{}"}}],"contextId":"late"}}}}}}"#,
            "x".repeat(pad)
        )
    };
    let near = body_with(100);
    let far = body_with(300);
    let ends = |body: &str| body.find("late").unwrap() as u64 + 5;
    assert!(ends(&near) < 256 && ends(&far) > 256);
    for (body, scan_limit, routed) in [
        (&near, u64::MAX, Some("late")),
        (&near, ends(&near), Some("late")),
        (&near, ends(&near) - 10, None),
        (&far, 1 << 20, None),
    ] {
        for size in [1, 7, 64, 1000] {
            let mut env = MockEnv::default();
            let chunks = splits::chunks(body.as_bytes(), size);
            let (held, _) = send_under(&config, &mut env, "/", &chunks, Some(scan_limit));
            assert_eq!(
                header(&held).as_deref(),
                routed,
                "{scan_limit} in chunks of {size}"
            );
            let counter = if routed.is_some() {
                Counter::ContextFound
            } else {
                Counter::ScanLimit
            };
            assert_eq!(env.counter(counter), 1, "{scan_limit} in chunks of {size}");
        }
    }
}

#[test]
fn a_context_id_that_is_no_valid_field_value_is_sent_encoded_the_same_every_time() {
    let config = config("");
    let rpc = |ctx: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"message/send","params":{{"message":{{"contextId":{},"parts":[]}}}}}}"#,
            serde_json::to_string(ctx).unwrap()
        )
    };
    for (ctx, want) in [
        (" padded ", "%20padded%20"),
        ("tab\there", "tab%09here"),
        ("line\nbreak", "line%0Abreak"),
        ("nul\u{0}", "nul%00"),
        ("caf\u{e9}", "caf%C3%A9"),
        ("50%", "50%25"),
        ("inner space", "inner space"),
    ] {
        let body = rpc(ctx);
        for [a, b] in splits::every_two(body.as_bytes()) {
            let mut env = MockEnv::default();
            let held = send(&config, &mut env, "/", &[a, b]);
            assert_eq!(header(&held).as_deref(), Some(want), "{ctx:?}");
            assert_eq!(held.body, body.as_bytes());
            assert_eq!(env.counter(Counter::ContextFound), 1);
        }
        // A task learned under that context routes to the same value.
        let mut env = MockEnv::default();
        env.store.tasks.insert("t".into(), (ctx.into(), u64::MAX));
        let get = r#"{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"id":"t"}}"#;
        let held = send(&config, &mut env, "/", &[get.as_bytes()]);
        assert_eq!(header(&held).as_deref(), Some(want), "{ctx:?}");
    }
}

/// Bodies as the SDK clients send them (each key once, a taskId with the
/// contextId its task was filed under: `t-1` is `ctx-c`'s), for every
/// binding and call the body decides, with the path they go to.
fn sdk_bodies() -> Vec<(&'static str, String)> {
    let text = "words \\\"quoted\\\" and a line\\n".repeat(12);
    let parts = format!(r#"[{{"kind":"text","text":"{text}"}}]"#);
    let rpc = |method: &str, params: &str| {
        format!(r#"{{"id":"r-1","jsonrpc":"2.0","method":"{method}","params":{params}}}"#)
    };
    vec![
        (
            "/",
            rpc(
                "message/send",
                &format!(
                    r#"{{"message":{{"contextId":"ctx-a","kind":"message","messageId":"m-1","parts":{parts},"role":"user"}}}}"#
                ),
            ),
        ),
        (
            "/",
            rpc(
                "message/stream",
                &format!(
                    r#"{{"configuration":{{"blocking":true}},"message":{{"messageId":"m-1","role":"user","parts":{parts},"contextId":"ctx-b"}}}}"#
                ),
            ),
        ),
        (
            "/",
            rpc(
                "SendMessage",
                &format!(
                    r#"{{"message":{{"contextId":"ctx-c","taskId":"t-1","messageId":"m-2","parts":{parts}}}}}"#
                ),
            ),
        ),
        (
            "/",
            rpc(
                "message/send",
                &format!(
                    r#"{{"message":{{"taskId":"t-1","contextId":"ctx-c","messageId":"m-3","parts":{parts}}}}}"#
                ),
            ),
        ),
        (
            "/",
            rpc(
                "message/send",
                &format!(r#"{{"message":{{"taskId":"t-1","messageId":"m-4","parts":{parts}}}}}"#),
            ),
        ),
        (
            "/",
            rpc(
                "message/send",
                &format!(r#"{{"message":{{"messageId":"m-5","parts":{parts}}}}}"#),
            ),
        ),
        ("/", rpc("tasks/get", r#"{"id":"t-1","historyLength":10}"#)),
        ("/", rpc("tasks/cancel", r#"{"id":"t-2"}"#)),
        ("/", rpc("SubscribeToTask", r#"{"id":"t-1"}"#)),
        (
            "/",
            rpc(
                "GetTaskPushNotificationConfig",
                r#"{"taskId":"t-1","id":"cfg-1"}"#,
            ),
        ),
        (
            "/",
            rpc("ListTasks", r#"{"contextId":"ctx-e","pageSize":5}"#),
        ),
        (
            "/",
            r#"{"params":{"id":"t-1"},"id":7,"jsonrpc":"2.0","method":"tasks/get"}"#.to_string(),
        ),
        (
            "/message:send",
            format!(r#"{{"message":{{"contextId":"ctx-f","messageId":"m-6","parts":{parts}}}}}"#),
        ),
        (
            "/v1/message:send",
            format!(
                r#"{{"request":{{"message_id":"m-7","context_id":"ctx-g","content":{parts}}}}}"#
            ),
        ),
        (
            "/message:stream",
            format!(r#"{{"message":{{"messageId":"m-8","parts":{parts}}}}}"#),
        ),
    ]
}

#[test]
fn deciding_at_the_first_id_routes_sdk_bodies_as_deciding_at_the_end() {
    let at_end = config("");
    let at_first = config(r#"{"decide_at":"first_id"}"#);
    let learned = |env: &mut MockEnv| {
        env.store
            .tasks
            .insert("t-1".into(), ("ctx-c".into(), u64::MAX));
    };
    for (path, body) in sdk_bodies() {
        for size in [1, 7, 64, 1000, body.len()] {
            let chunks = splits::chunks(body.as_bytes(), size);
            let mut end_env = MockEnv::default();
            learned(&mut end_env);
            let (end, end_went_on) = send_counting(&at_end, &mut end_env, path, &chunks);
            let mut first_env = MockEnv::default();
            learned(&mut first_env);
            let (first, first_went_on) = send_counting(&at_first, &mut first_env, path, &chunks);
            let what = format!("{path} {body} in chunks of {size}");
            assert_eq!(header(&first), header(&end), "{what}");
            assert_eq!(first.body, end.body, "{what}");
            assert_eq!(first_env.counters, end_env.counters, "{what}");
            assert_eq!(end_went_on, body.len(), "{what}");
            assert!(first_went_on <= end_went_on, "{what}");
        }
    }
}

#[test]
fn deciding_at_the_first_id_lets_the_rest_of_the_body_go_unread() {
    let at_first = config(r#"{"decide_at":"first_id"}"#);
    let text = "x".repeat(20_000);
    let ends_at = |body: &str, id: &str| body.find(id).unwrap() + id.len() + 1;
    let cases = [
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"message/send","params":{{"message":{{"contextId":"ctx-1","parts":[{{"text":"{text}"}}]}}}}}}"#
        ),
        // The method after the id: decided when the method arrives.
        format!(
            r#"{{"params":{{"id":"t-5"}},"method":"tasks/get","jsonrpc":"2.0","id":1,"pad":"{text}"}}"#
        ),
    ];
    for body in &cases {
        let decided_by = if body.starts_with(r#"{"params""#) {
            ends_at(body, "tasks/get")
        } else {
            ends_at(body, "ctx-1")
        };
        for size in [1, 100, 4096] {
            let mut env = MockEnv::default();
            env.store
                .tasks
                .insert("t-5".into(), ("ctx-5".into(), u64::MAX));
            let (held, went_on) = send_counting(
                &at_first,
                &mut env,
                "/",
                &splits::chunks(body.as_bytes(), size),
            );
            // The request goes on with the chunk that completes the id.
            assert_eq!(
                went_on,
                decided_by.div_ceil(size) * size,
                "chunks of {size}"
            );
            assert!(header(&held).is_some());
            assert_eq!(held.body, body.as_bytes(), "the body arrives whole");
        }
    }
}

#[test]
fn deciding_at_the_first_id_takes_the_first_of_a_duplicate_and_never_mints_early() {
    let at_first = config(r#"{"decide_at":"first_id"}"#);
    let rpc = |params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"message/send","params":{params}}}"#)
    };
    let cases = [
        (
            rpc(r#"{"message":{"contextId":"first","parts":[],"contextId":"last"}}"#),
            Some("first"),
            Counter::ContextFound,
        ),
        // What follows the id is not read: bytes that make the body invalid
        // do not stop it from routing.
        (
            format!("{} trailing", rpc(r#"{"message":{"contextId":"kept"}}"#)),
            Some("kept"),
            Counter::ContextFound,
        ),
        // A taskId after the contextId is not read: a message whose task
        // belongs to another context goes by its contextId (deciding at the
        // end sends it to the task's replica, which rejects the mismatch).
        (
            rpc(r#"{"message":{"contextId":"mine","taskId":"t-of-other"}}"#),
            Some("mine"),
            Counter::ContextFound,
        ),
        // A contextId the agent cannot use is no decision: the rest is read.
        (
            rpc(r#"{"message":{"contextId":7,"contextId":"usable"}}"#),
            Some("usable"),
            Counter::ContextFound,
        ),
        // No id at all: a first turn, minted only once the body is whole.
        (
            rpc(r#"{"message":{"messageId":"m","parts":[]}}"#),
            None,
            Counter::Minted,
        ),
    ];
    for (body, want, counter) in &cases {
        for [a, b] in splits::every_two(body.as_bytes()) {
            let mut env = MockEnv::default();
            env.store
                .tasks
                .insert("t-of-other".into(), ("other".into(), u64::MAX));
            let held = send(&at_first, &mut env, "/", &[a, b]);
            if let Some(want) = want {
                assert_eq!(header(&held).as_deref(), Some(*want), "{body}");
                assert_eq!(held.body, body.as_bytes());
            } else {
                assert_eq!(
                    agent_context(&held.body, "/params/message/contextId"),
                    header(&held)
                );
            }
            assert_eq!(env.counter(*counter), 1, "{body}");
        }
    }
}
