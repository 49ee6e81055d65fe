//! The core under arbitrary input: request heads of every binding and of
//! none, bodies that are A2A documents, broken documents, gRPC frames or
//! noise, cut at arbitrary points, configurations with small limits, and
//! streams that end early. Whatever comes in, the core must not panic, must
//! give each request exactly one outcome, must leave the body as it was
//! unless it minted, and a mint must only insert the contextId.
//!
//! `PROPTEST_CASES=100000 cargo test -p a2a-affinity-core --test fuzz_stream`
//! runs it longer than the suite's default.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::stream::{HeaderOp, Next, RequestHead, ResponseHead, Stream};
use a2a_affinity_testkit::env::{HeldRequest, MockEnv};
use a2a_affinity_testkit::proto;
use proptest::prelude::*;

/// Heads of every kind the core classifies, and some it must pass.
fn head() -> impl Strategy<Value = (String, String, Option<String>, Option<String>)> {
    let method = prop_oneof![Just("POST"), Just("GET"), Just("post"), Just("PUT")];
    let path = prop_oneof![
        Just("/".to_string()),
        Just("/v1/message:send".to_string()),
        Just("/tenant/message:stream".to_string()),
        Just("/v1/tasks/t-1".to_string()),
        Just("/tasks/t%2F1:cancel".to_string()),
        Just("/lf.a2a.v1.A2AService/SendMessage".to_string()),
        Just("/a2a.v1.A2AService/GetTask".to_string()),
        "/[a-z:/%.]{0,24}",
    ];
    let content_type = prop_oneof![
        Just(Some("application/json".to_string())),
        Just(Some("application/a2a+json; charset=utf-8".to_string())),
        Just(Some("application/grpc".to_string())),
        Just(Some("text/plain".to_string())),
        Just(None),
    ];
    let encoding = prop_oneof![
        4 => Just(None),
        1 => Just(Some("gzip".to_string())),
        1 => Just(Some("identity".to_string())),
    ];
    (method, path, content_type, encoding).prop_map(|(m, p, c, e)| (m.to_string(), p, c, e))
}

/// A string value: ordinary ids, empty ones, escapes, control characters.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,40}",
        Just(String::new()),
        Just("\\u0063tx".to_string()),
        Just("a\\nb".to_string()),
        Just(" padded ".to_string()),
        "[ -~]{0,12}",
    ]
}

/// A JSON-RPC document of either version, with or without ids.
fn json_rpc() -> BoxedStrategy<Vec<u8>> {
    let member = prop_oneof![
        id().prop_map(|c| format!(r#""contextId":"{c}""#)),
        id().prop_map(|t| format!(r#""taskId":"{t}""#)),
        Just(r#""contextId":null"#.to_string()),
        Just(r#""parts":[{"kind":"text","text":"hi \"x\" contextId"}]"#.to_string()),
        Just(r#""metadata":{"contextId":"decoy"}"#.to_string()),
        Just(r#""messageId":"m-1""#.to_string()),
    ];
    let message = proptest::collection::vec(member, 0..4).prop_map(|m| m.join(","));
    let method = prop_oneof![
        Just("message/send"),
        Just("SendMessage"),
        Just("tasks/get"),
        Just("GetTask"),
        Just("ListTasks"),
        Just("nope"),
    ];
    (method, message, id())
        .prop_map(|(method, message, task)| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"id":"{task}","message":{{{message}}}}}}}"#
            )
            .into_bytes()
        })
        .boxed()
}

/// Bodies: A2A JSON of both versions and bindings, with or without ids,
/// sometimes truncated or corrupted; gRPC frames; noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let json = json_rpc();
    let rest = (proptest::collection::vec(id(), 0..2)).prop_map(|ids| {
        let members: Vec<String> = ids
            .iter()
            .map(|c| format!(r#""contextId":"{c}""#))
            .collect();
        format!(r#"{{"message":{{{}}}}}"#, members.join(",")).into_bytes()
    });
    let grpc = (proptest::option::of("[a-z0-9-]{1,20}"), "[a-z ]{0,300}")
        .prop_map(|(c, text)| proto::send(proto::V1, &proto::message(c.as_deref(), None, &text)));
    let noise = proptest::collection::vec(any::<u8>(), 0..200);
    let broken =
        (json_rpc(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut b, at, byte)| {
            if !b.is_empty() {
                let i = at.index(b.len());
                if byte % 2 == 0 {
                    b.truncate(i);
                } else {
                    b[i] = byte;
                }
            }
            b
        });
    prop_oneof![4 => json, 2 => rest, 2 => grpc, 1 => noise, 2 => broken]
}

fn config() -> impl Strategy<Value = Config> {
    (1u64..400, any::<bool>(), any::<bool>(), any::<bool>(), 1usize..64).prop_map(
        |(scan, mint, learn, strip, max_value)| {
            let json = format!(
                r#"{{"max_scan_bytes":{},"mint_context_id":{mint},"learn_tasks":{learn},"client_header":"{}","max_value_bytes":{max_value}}}"#,
                if scan > 300 { 262_144 } else { scan },
                if strip { "strip" } else { "keep" }
            );
            Config::parse(json.as_bytes()).unwrap()
        },
    )
}

/// 2000 cases in the suite; PROPTEST_CASES sets more.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_one_outcome_and_keeps_its_body(
        (method, path, content_type, encoding) in head(),
        body in body(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        config in config(),
        client_header in any::<bool>(),
        end_early in any::<bool>(),
        known_task in any::<bool>(),
    ) {
        let mut env = MockEnv::default();
        if known_task {
            env.store.tasks.insert("t-1".into(), ("ctx-known".into(), u64::MAX));
        }
        let head = RequestHead {
            method: &method,
            path: &path,
            content_type: content_type.as_deref(),
            content_encoding: encoding.as_deref(),
            content_length: Some(body.len() as u64),
            client_header,
        };
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
        points.sort_unstable();
        let chunks = a2a_affinity_testkit::splits::at(&body, &points);
        let mut held = HeldRequest::default();
        if client_header {
            held.headers.push((config.header.clone(), "from-client".into()));
        }
        let mut stream = Stream::new();
        let decision = stream.on_request_headers(&config, &head, body.is_empty(), &mut env);
        let mut next = held.apply(&config, decision, &mut env);
        let mut forwarded = Vec::new();
        let mut ended_early = false;
        for (i, chunk) in chunks.iter().enumerate() {
            if end_early && i + 1 == chunks.len() && next == Next::NeedBody {
                // The client goes away before its last bytes.
                ended_early = true;
                break;
            }
            held.body.extend_from_slice(chunk);
            if next == Next::NeedBody {
                let decision = stream.on_request_body(&config, chunk, i + 1 == chunks.len(), &mut env);
                next = held.apply(&config, decision, &mut env);
            }
            if next == Next::Continue {
                forwarded.append(&mut held.body);
            }
        }
        if let Some(outcome) = stream.on_stream_end(&mut env) {
            prop_assert_eq!(outcome, Outcome::Aborted);
            prop_assert!(ended_early || body.is_empty() || next == Next::NeedBody);
            env.count_outcome(Some(outcome));
        }
        forwarded.append(&mut held.body);
        // Exactly one outcome.
        let total: u64 = Outcome::ALL.iter().map(|o| env.counter(o.counter())).sum();
        prop_assert_eq!(total, 1, "{:?}", env.counters);
        // The body is what the client sent, or that with one member added.
        let sent: Vec<u8> = if ended_early {
            chunks[..chunks.len() - 1].concat()
        } else {
            body.clone()
        };
        let minted = env.counter(Counter::Minted) == 1;
        if minted {
            prop_assert!(forwarded.len() > sent.len());
            let values = held.header_values(&config.header);
            prop_assert_eq!(values.len(), 1);
            let id = &values[0];
            prop_assert!(forwarded.windows(id.len()).any(|w| w == id.as_bytes()));
            if serde_json::from_slice::<serde_json::Value>(&sent).is_ok() {
                let v: serde_json::Value = serde_json::from_slice(&forwarded).unwrap();
                prop_assert!(v.to_string().contains(id.as_str()));
            }
        } else {
            prop_assert_eq!(&forwarded, &sent);
        }
        // At most one hash header, and a set one is a usable value.
        let values = held.header_values(&config.header);
        prop_assert!(values.len() <= 1);
        for v in &values {
            prop_assert!(!v.is_empty() && !v.chars().any(char::is_control), "{:?}", v);
        }
    }

    #[test]
    fn any_response_bytes_are_read_without_panic(
        content_type in prop_oneof![Just("application/json"), Just("text/event-stream"), Just("application/grpc")],
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6),
    ) {
        let config = Config::default();
        let mut env = MockEnv::default();
        let mut stream = Stream::new();
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"contextId":"c"}}}"#;
        let head = RequestHead {
            method: "POST",
            path: "/",
            content_type: Some("application/json"),
            ..RequestHead::default()
        };
        stream.on_request_headers(&config, &head, false, &mut env);
        let d = stream.on_request_body(&config, body, true, &mut env);
        prop_assert_eq!(d.header, HeaderOp::Set("c".into()));
        stream.on_response_headers(&config, &ResponseHead { content_type: Some(content_type), content_encoding: None }, &mut env);
        for chunk in &chunks {
            let tally = stream.on_response_body(chunk, &mut env);
            prop_assert!(tally.evicted <= tally.learned);
        }
        prop_assert_eq!(stream.on_stream_end(&mut env), None);
    }
}
