//! The core's stream decisions for every binding, fed arbitrary bodies in
//! arbitrary chunkings with small and default limits, either decision point
//! (`decide_at`), client headers, task lookups answered at once or deferred,
//! and clients that leave early.
//! Checked: no panic; each request counted exactly once; the body forwarded
//! byte for byte as sent, except that a minted first turn gains exactly one
//! contextId member (JSON) or `context_id` field (gRPC) carrying the header's
//! value; at most one hash header, never empty nor with a control
//! character; a contextId routed from a valid JSON body (without repeated
//! member names) is one serde_json finds in it; the response side learns
//! without panic from the same bytes.
#![no_main]

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::stream::{Next, RequestHead, ResponseHead, Stream};
use a2a_affinity_core::verdict::field_value;
use a2a_affinity_fuzz::{
    beyond_serde_json, chunks, cuts, first_frame, json_context_ids, json_without_duplicates,
    proto_fields, Control,
};
use a2a_affinity_testkit::env::{HeldRequest, MockEnv};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Binding {
    Json,
    Grpc { message_field: u64 },
    None,
}

/// Request heads: every binding, with and without a body to read.
const HEADS: &[(&str, &str, Option<&str>, Binding)] = &[
    ("POST", "/", Some("application/json"), Binding::Json),
    (
        "POST",
        "/a2a",
        Some("application/a2a+json; charset=utf-8"),
        Binding::Json,
    ),
    (
        "POST",
        "/v1/message:send",
        Some("application/json"),
        Binding::Json,
    ),
    (
        "POST",
        "/message:stream",
        Some("application/json"),
        Binding::Json,
    ),
    (
        "POST",
        "/tenant/v1/message:send",
        Some("application/a2a+json"),
        Binding::Json,
    ),
    ("GET", "/v1/tasks/t-1", None, Binding::None),
    (
        "POST",
        "/tasks/t-1:cancel",
        Some("application/json"),
        Binding::None,
    ),
    (
        "POST",
        "/a2a.v1.A2AService/SendMessage",
        Some("application/grpc"),
        Binding::Grpc { message_field: 1 },
    ),
    (
        "POST",
        "/lf.a2a.v1.A2AService/SendMessage",
        Some("application/grpc"),
        Binding::Grpc { message_field: 2 },
    ),
    (
        "POST",
        "/lf.a2a.v1.A2AService/SendStreamingMessage",
        Some("application/grpc+proto"),
        Binding::Grpc { message_field: 2 },
    ),
    (
        "POST",
        "/a2a.v1.A2AService/GetTask",
        Some("application/grpc"),
        Binding::Grpc { message_field: 0 },
    ),
    (
        "POST",
        "/lf.a2a.v1.A2AService/GetTask",
        Some("application/grpc"),
        Binding::Grpc { message_field: 0 },
    ),
    (
        "POST",
        "/lf.a2a.v1.A2AService/ListTasks",
        Some("application/grpc"),
        Binding::Grpc { message_field: 0 },
    ),
    (
        "POST",
        "/lf.a2a.v1.A2AService/CreateTaskPushNotificationConfig",
        Some("application/grpc"),
        Binding::Grpc { message_field: 0 },
    ),
    (
        "POST",
        "/a2a.v1.A2AService/GetAgentCard",
        Some("application/grpc"),
        Binding::Grpc { message_field: 0 },
    ),
    ("PUT", "/", Some("application/json"), Binding::None),
];

const RESPONSE_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("text/event-stream"),
    Some("application/grpc"),
];

const KNOWN_CONTEXT: &str = "ctx-known";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut control = Control::new(data);
    let (method, path, content_type, binding) = HEADS[usize::from(control.byte()) % HEADS.len()];
    let flags = control.byte();
    let bit = |n: u8| flags & (1 << n) != 0;
    let scan = control.byte();
    let max_value = control.byte();
    let more = control.byte();
    let seed = u32::from(control.u16());
    let timing = control.byte();
    let decide_at = if timing & 1 == 1 {
        "first_id"
    } else {
        "body_end"
    };
    let body = control.rest();

    let max_scan_bytes = if scan < 128 {
        (u64::from(scan) + 1) * 16
    } else {
        262_144
    };
    let config_json = format!(
        r#"{{"max_scan_bytes":{max_scan_bytes},"mint_context_id":{},"learn_tasks":{},"client_header":"{}","max_value_bytes":{},"decide_at":"{decide_at}"}}"#,
        bit(0),
        bit(1),
        if bit(2) { "strip" } else { "keep" },
        if max_value == 0 {
            256
        } else {
            u16::from(max_value)
        },
    );
    let config = Config::parse(config_json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let client_header = bit(3);
    let end_early = bit(5);
    let mut env = MockEnv::default();
    if bit(6) {
        env.store
            .tasks
            .insert("t-1".into(), (KNOWN_CONTEXT.into(), u64::MAX));
    }
    env.store.defer = bit(7);
    let encoding = if more & 0x80 != 0 { Some("gzip") } else { None };
    let response_type = RESPONSE_TYPES[usize::from(more >> 5 & 3)];
    let count = usize::from(more & 0x1f) % 12;

    let head = RequestHead {
        method,
        path,
        content_type,
        content_encoding: encoding,
        // Mostly the body's own length; sometimes one that Envoy would not
        // let through (a byte short or long) or exactly the scan limit,
        // where the core waits for the end of a body that may end there.
        content_length: bit(4).then_some(match timing >> 1 & 3 {
            2 => (body.len() as u64).saturating_sub(1),
            3 if timing & 8 == 0 => body.len() as u64 + 1,
            3 => max_scan_bytes,
            _ => body.len() as u64,
        }),
        client_header,
    };
    let pieces = chunks(body, &cuts(body.len(), count, seed));
    let mut held = HeldRequest::default();
    if client_header {
        held.headers
            .push((config.header.clone(), "from-client".into()));
    }
    let mut stream = Stream::new();
    let decision = stream.on_request_headers(&config, &head, body.is_empty(), &mut env);
    let mut next = held.apply(&config, decision, &mut env);
    let resolve =
        |stream: &mut Stream, next: &mut Next, held: &mut HeldRequest, env: &mut MockEnv| {
            if let Next::LookupTask(task) = next.clone() {
                let context = env.store.tasks.get(&task).map(|(c, _)| c.clone());
                let decision = stream.task_resolved(&config, context.as_deref());
                *next = held.apply(&config, decision, env);
                assert_eq!(*next, Next::Continue);
            }
        };
    resolve(&mut stream, &mut next, &mut held, &mut env);
    let mut forwarded = Vec::new();
    let mut ended_early = false;
    for (i, chunk) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        if end_early && last && next == Next::NeedBody {
            ended_early = true;
            break;
        }
        held.body.extend_from_slice(chunk);
        if next == Next::NeedBody {
            let decision = stream.on_request_body(&config, chunk, last, &mut env);
            next = held.apply(&config, decision, &mut env);
            resolve(&mut stream, &mut next, &mut held, &mut env);
        }
        if next == Next::Continue {
            forwarded.append(&mut held.body);
        }
    }
    if !ended_early {
        if let Some(content_type) = response_type {
            let response = ResponseHead {
                content_type: Some(content_type),
                content_encoding: None,
            };
            stream.on_response_headers(&config, &response, &mut env);
            for chunk in &pieces {
                let tally = stream.on_response_body(chunk, &mut env);
                assert!(tally.evicted <= tally.learned);
            }
            // Learned ids are kept as the agent wrote them (any string);
            // they become header values only through `field_value`.
            for (task, (context, _)) in &env.store.tasks {
                assert!(!task.is_empty() && !context.is_empty());
            }
        }
    }
    if let Some(outcome) = stream.on_stream_end(&mut env) {
        assert_eq!(outcome, Outcome::Aborted);
        assert!(ended_early || next == Next::NeedBody);
        env.count_outcome(Some(outcome));
    }
    forwarded.append(&mut held.body);

    // Exactly one outcome.
    let total: u64 = Outcome::ALL.iter().map(|o| env.counter(o.counter())).sum();
    assert_eq!(total, 1, "{:?}", env.counters);

    let sent: &[u8] = if ended_early {
        &body[..body.len() - pieces[pieces.len() - 1].len()]
    } else {
        body
    };
    let values = held.header_values(&config.header);
    assert!(values.len() <= 1, "{values:?}");
    // A valid HTTP field value every HTTP/1.1 and HTTP/2 stack takes:
    // visible ASCII, spaces only inside.
    for v in &values {
        let b = v.as_bytes();
        assert!(
            !b.is_empty()
                && b.iter().all(|&c| c == b' ' || (0x21..=0x7e).contains(&c))
                && b[0] != b' '
                && b[b.len() - 1] != b' ',
            "{v:?}"
        );
    }
    if env.counter(Counter::Minted) == 1 {
        assert_eq!(values.len(), 1);
        check_mint(binding, sent, &forwarded, &values[0]);
    } else {
        assert_eq!(forwarded, sent, "the body changed without a mint");
    }
    if env.counter(Counter::TaskRouted) == 1 {
        assert_eq!(values, vec![KNOWN_CONTEXT.to_string()]);
    }
    if env.counter(Counter::TaskIdRouted) == 1 {
        // Routed by a contextId the body's task id carries: one header.
        assert_eq!(values.len(), 1);
    }
    if env.counter(Counter::ContextFound) == 1
        && binding == Binding::Json
        && json_without_duplicates(sent)
    {
        let value: serde_json::Value =
            serde_json::from_slice(sent).unwrap_or_else(|e| panic!("{e}"));
        let mut ids = Vec::new();
        json_context_ids(&value, 3, &mut ids);
        assert!(
            ids.iter().any(|id| field_value(id) == values[0].as_str()),
            "routed by {:?}, the body has {ids:?}",
            values[0]
        );
    }
});

/// A minted body is the sent one with one contextId added.
fn check_mint(binding: Binding, sent: &[u8], forwarded: &[u8], id: &str) {
    match binding {
        Binding::Json => {
            let prefix = sent
                .iter()
                .zip(forwarded)
                .take_while(|(a, b)| a == b)
                .count();
            let suffix = sent[prefix..]
                .iter()
                .rev()
                .zip(forwarded[prefix..].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            let inserted = &forwarded[prefix..forwarded.len() - suffix];
            let removed = &sent[prefix..sent.len() - suffix];
            assert!(
                inserted.windows(id.len()).any(|w| w == id.as_bytes()),
                "the edit {:?} -> {:?} does not carry {id}",
                String::from_utf8_lossy(removed),
                String::from_utf8_lossy(inserted)
            );
            // A first turn is minted only in a valid document, and stays
            // one. The scanner's documented differences from serde_json
            // (UTF-8 of strings it does not report, numbers beyond f64,
            // nesting past 128 levels) are left out.
            let sent_parsed = serde_json::from_slice::<serde_json::Value>(sent);
            if std::str::from_utf8(sent).is_err()
                || matches!(&sent_parsed, Err(e) if beyond_serde_json(e))
            {
                return;
            }
            if let Err(e) = sent_parsed {
                panic!("minted a body serde_json rejects: {e}");
            }
            let value: serde_json::Value =
                serde_json::from_slice(forwarded).unwrap_or_else(|e| panic!("minted body: {e}"));
            if json_without_duplicates(sent) {
                assert!(
                    json_without_duplicates(forwarded),
                    "the mint repeated a member"
                );
                let mut ids = Vec::new();
                json_context_ids(&value, 3, &mut ids);
                assert!(ids.contains(&id.to_string()), "{ids:?}");
            }
        }
        Binding::Grpc { message_field } => {
            let (sent_message, sent_rest) = first_frame(sent).expect("minted a whole first frame");
            let (message, rest) = first_frame(forwarded).expect("the minted frame");
            assert_eq!(rest, sent_rest, "bytes after the first frame changed");
            let before = proto_fields(sent_message).expect("minted a valid frame");
            let after = proto_fields(message).expect("the minted frame is valid");
            assert_eq!(before.len(), after.len());
            let mut changed = 0;
            for (b, a) in before.iter().zip(&after) {
                if b == a {
                    continue;
                }
                changed += 1;
                assert_eq!((a.0, a.1), (message_field, 2));
                assert_eq!((b.0, b.1), (message_field, 2));
                let inner_before = proto_fields(b.2).expect("the sent Message");
                let inner_after = proto_fields(a.2).expect("the minted Message");
                // The context_id field is appended, so that it follows
                // (and, for a parser, replaces) any empty one sent.
                let (last, kept) = inner_after.split_last().expect("a field");
                assert_eq!(*last, (2, 2, id.as_bytes()));
                assert_eq!(kept, &inner_before[..]);
            }
            assert_eq!(changed, 1);
        }
        Binding::None => panic!("minted a request without a body binding"),
    }
}
