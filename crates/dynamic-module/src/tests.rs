//! The shell through its exported hooks, on the host target: each test is a
//! stream through `fake_envoy`, which stands in for Envoy's callbacks and
//! filter manager.

use a2a_affinity_testkit::ids::Rng;
use a2a_affinity_testkit::proto;
use dynamic_abi::body_type::{BUFFERED_REQUEST, RECEIVED_REQUEST};
use dynamic_abi::header_type;
use serde_json::Value;

use crate::fake_envoy::{take_logs, Configured, Exchange, FakeConfig, FakeStream, Upstream};
use crate::ffi::{self, status};
use crate::filter::Action;

const JSON: &str = "application/json";
/// The filter-state key of `hash_on: filter_state`.
const HASHABLE: &str = "envoy.hashable_string";

fn setup() {
    ffi::install_logger();
    take_logs();
}

fn config(json: &str) -> Configured {
    setup();
    Configured::new(json).expect("configuration accepted")
}

fn rpc(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
}

fn send_params(message: &str) -> String {
    rpc("message/send", &format!(r#"{{"message":{message}}}"#))
}

/// A `message/send` whose message has one text part of `text_len` bytes
/// of `filler`, then the contextId `context_id`.
fn send_long_text(filler: char, text_len: usize, context_id: &str) -> String {
    let text = filler.to_string().repeat(text_len);
    send_params(&format!(
        r#"{{"parts":[{{"kind":"text","text":"{text}"}}],"contextId":"{context_id}"}}"#
    ))
}

/// POSTs `chunks` (one body) with a content-length, then ends the stream.
fn post(config: &Configured, path: &str, extra: &[(&str, &str)], chunks: &[&[u8]]) -> Upstream {
    exchange(config, path, extra, chunks, true, false).finish()
}

/// A GET of `path`, with no body.
fn get_path(config: &Configured, path: &str) -> Upstream {
    Exchange::new(config)
        .request(&[(":method", "GET"), (":path", path)], &[], false)
        .finish()
}

/// POSTs `body` in one chunk with a content-length through a stream that
/// `setup` changes first (an Envoy that fails a call, or hands over odd
/// chunks), then ends the stream.
fn post_through(config: &Configured, body: &[u8], setup: impl FnOnce(&mut FakeStream)) -> Upstream {
    post_chunks_through(config, &[body], setup)
}

/// As [`post_through`], the body in `chunks`.
fn post_chunks_through(
    config: &Configured,
    chunks: &[&[u8]],
    setup: impl FnOnce(&mut FakeStream),
) -> Upstream {
    let length = chunks.iter().map(|c| c.len()).sum::<usize>().to_string();
    let mut ex = Exchange::new(config);
    setup(&mut ex.stream);
    ex.request(&post_headers("/", JSON, Some(&length), &[]), chunks, false)
        .finish()
}

/// The request headers of a POST of `content_type` to `path`, with
/// `length` as its content-length if given, then `extra`.
fn post_headers<'a>(
    path: &'a str,
    content_type: &'a str,
    length: Option<&'a str>,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        (":method", "POST"),
        (":path", path),
        ("content-type", content_type),
    ];
    headers.extend(length.map(|length| ("content-length", length)));
    headers.extend_from_slice(extra);
    headers
}

fn exchange<'c>(
    config: &'c Configured,
    path: &str,
    extra: &[(&str, &str)],
    chunks: &[&[u8]],
    with_length: bool,
    trailers: bool,
) -> Exchange<'c> {
    exchange_as(config, path, JSON, extra, chunks, with_length, trailers)
}

/// POSTs `chunks` (one body) of `content_type` to `path`, with a
/// content-length or not, ended by trailers or not.
fn exchange_as<'c>(
    config: &'c Configured,
    path: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    chunks: &[&[u8]],
    with_length: bool,
    trailers: bool,
) -> Exchange<'c> {
    let length = chunks.iter().map(|c| c.len()).sum::<usize>().to_string();
    let length = with_length.then_some(length.as_str());
    Exchange::new(config).request(
        &post_headers(path, content_type, length, extra),
        chunks,
        trailers,
    )
}

/// The ways a request body can end: (with a content-length, ended by
/// trailers): a content-length, chunked, and chunked with trailers.
const FRAMINGS: [(bool, bool); 3] = [(true, false), (false, false), (false, true)];

fn split(body: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain(std::iter::once(&body.len())) {
        out.push(body[from..c].to_vec());
        from = c;
    }
    out
}

fn refs(chunks: &[Vec<u8>]) -> Vec<&[u8]> {
    chunks.iter().map(Vec::as_slice).collect()
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

// ---------------------------------------------------------------- loading

#[test]
fn program_init_returns_the_abi_version() {
    let version = ffi::envoy_dynamic_module_on_program_init();
    // Put the test harness's panic output back.
    let _ = std::panic::take_hook();
    assert_eq!(version, ffi::ABI_VERSION.as_ptr());
    assert_eq!(ffi::ABI_VERSION.to_str(), Ok("v0.2.0"));
}

#[test]
fn configuration_defines_every_counter_and_logs_one_line() {
    let c = config("");
    let names: Vec<&str> = a2a_affinity_core::stats::Counter::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(c.envoy.counter_names, names);
    let logs = take_logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0]
        .1
        .starts_with("a2a_affinity: configured: header=x-context-id max_scan_bytes=262144"));
    // The string kernel this process runs ends the line.
    let kernel = a2a_affinity_core::json::string_kernel();
    assert!(
        logs[0].1.ends_with(&format!("; string kernel {kernel}")),
        "{logs:?}"
    );
    assert_eq!(logs[0].0, 2, "info");
}

#[test]
fn a_scan_limit_above_a_stream_limit_is_warned_about_at_that_stream() {
    // No warning at load (the module cannot know the limits yet, and never
    // causes a 413); the first stream under a lower limit names both.
    let c = config(r#"{"max_scan_bytes":16777216}"#);
    let logs = take_logs();
    assert!(logs.iter().all(|(level, _)| *level != 3), "{logs:?}");
    let body = send_params(r#"{"contextId":"ctx-16m","parts":[]}"#);
    let up = post(&c, "/", &[], &[body.as_bytes()]);
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-16m"));
    let logs = take_logs();
    let warnings: Vec<_> = logs.iter().filter(|(level, _)| *level == 3).collect();
    assert_eq!(warnings.len(), 1, "{logs:?}");
    assert!(
        warnings[0]
            .1
            .contains("max_scan_bytes 16777216 is above the stream's buffer limit (1048576 bytes)"),
        "{logs:?}"
    );
}

#[test]
fn a_bad_configuration_is_rejected_with_one_line_naming_the_field() {
    setup();
    for (json, want) in [
        (
            r#"{"max_scan_bytes":0}"#,
            "a2a_affinity: invalid plugin configuration: max_scan_bytes: must be between 1 and 16777216",
        ),
        (
            r#"{"header":"content-length"}"#,
            "a2a_affinity: invalid plugin configuration: header: names a header Envoy or the upstream interpret",
        ),
        (r#"{"client_header":"drop"}"#, "client_header"),
        (r#"{"nope":1}"#, "unknown field `nope`"),
        ("{", "invalid plugin configuration"),
    ] {
        assert!(Configured::new(json).is_none(), "{json} accepted");
        let logs = take_logs();
        assert_eq!(logs.len(), 1, "{json}: {logs:?}");
        assert_eq!(logs[0].0, 4, "error level");
        assert!(logs[0].1.contains(want), "{json}: {:?}", logs[0].1);
        assert!(!logs[0].1.contains('\n'));
    }
}

#[test]
fn an_unknown_filter_name_is_rejected() {
    setup();
    assert!(Configured::named("other", "{}", FakeConfig::default()).is_none());
    let logs = take_logs();
    assert_eq!(logs.len(), 1);
    assert!(
        logs[0].1.contains("unknown filter_name \"other\""),
        "{logs:?}"
    );
}

#[test]
fn counters_that_cannot_be_defined_stay_silent_but_the_filter_works() {
    setup();
    let frozen = FakeConfig {
        frozen: true,
        ..FakeConfig::default()
    };
    let c = Configured::named("a2a_affinity", "{}", frozen).expect("accepted");
    let body = send_params(r#"{"contextId":"ctx-frozen","parts":[]}"#);
    let up = post(&c, "/", &[], &[body.as_bytes()]);
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-frozen"));
    assert!(c.envoy.counter_names.is_empty());
}

// ------------------------------------------------------------ contextId

#[test]
fn a_context_id_in_the_body_becomes_the_header_and_the_body_is_untouched() {
    let c = config("{}");
    let body =
        send_params(r#"{"role":"user","contextId":"ctx-1","parts":[{"kind":"text","text":"hi"}]}"#);
    let up = post(&c, "/", &[], &[body.as_bytes()]);
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-1"));
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(up.header("content-length"), Some(body.len().to_string()));
    assert_eq!(
        up.statuses,
        vec![status::HEADERS_STOP_ITERATION, status::CONTINUE]
    );
    assert_eq!(c.envoy.nonzero(), vec![("context_found".to_string(), 1)]);
}

#[test]
fn a_client_header_is_replaced_never_appended() {
    // Also when the key goes to filter state: the agent then sees the key
    // routed on, not the client's.
    for (json, in_filter_state) in [
        ("{}", None),
        (r#"{"hash_on":"filter_state"}"#, Some("from-body")),
    ] {
        let c = config(json);
        let body = send_params(r#"{"contextId":"from-body","parts":[]}"#);
        let up = post(
            &c,
            "/",
            &[("x-context-id", "from-client")],
            &[body.as_bytes()],
        );
        assert_eq!(up.header_values("x-context-id"), vec!["from-body"]);
        assert_eq!(up.filter_state(HASHABLE).as_deref(), in_filter_state);
    }
}

#[test]
fn a_context_id_split_over_late_chunks_is_found_and_only_new_bytes_are_read() {
    let c = config("{}");
    let body = send_long_text('x', 5000, "ctx-late-split");
    let at = body.find("ctx-late").unwrap();
    for cuts in [
        vec![100, 2000, at + 3],
        vec![1, 2, 3, at, at + 1],
        vec![at + 5],
        vec![],
    ] {
        let chunks = split(body.as_bytes(), &cuts);
        let up = post(&c, "/", &[], &refs(&chunks));
        assert_eq!(
            up.header("x-context-id").as_deref(),
            Some("ctx-late-split"),
            "{cuts:?}"
        );
        assert_eq!(up.body, body.as_bytes(), "{cuts:?}");
        // Held with the watermark status while reading, never with Buffer.
        assert!(up.statuses[1..]
            .iter()
            .all(|&s| s != status::BODY_STOP_AND_BUFFER));
        assert!(!up.payload_too_large);
    }
    assert_eq!(c.counter("context_found"), 4);
}

#[test]
fn an_early_context_id_is_held_to_the_end_of_the_body() {
    // The agents keep the last of a duplicate key: the request waits for
    // the end of its body, and a later contextId wins.
    let c = config("{}");
    for (tail, want) in [
        ("", "ctx-early"),
        (r#","contextId":"ctx-late""#, "ctx-late"),
    ] {
        let body = send_params(&format!(
            r#"{{"contextId":"ctx-early","parts":[{{"kind":"text","text":"{}"}}]{tail}}}"#,
            "y".repeat(3000)
        ));
        let chunks = split(body.as_bytes(), &[200, 1000, 2000]);
        let up = post(&c, "/", &[], &refs(&chunks));
        assert_eq!(up.header("x-context-id").as_deref(), Some(want));
        assert_eq!(up.body, body.as_bytes());
        assert_eq!(
            up.statuses,
            vec![
                status::HEADERS_STOP_ITERATION,
                status::BODY_STOP_AND_WATERMARK,
                status::BODY_STOP_AND_WATERMARK,
                status::BODY_STOP_AND_WATERMARK,
                status::CONTINUE
            ]
        );
    }
}

#[test]
fn each_held_chunk_is_fetched_from_envoy_once() {
    // Envoy moves each held chunk into the buffered body. A callback asks
    // for the chunk it received, not for the held body again, which would
    // cost each callback as many chunks as the body has grown to.
    let c = config("{}");
    let body = send_long_text('z', 4000, "ctx-each-once");
    let cuts: Vec<usize> = (1..20).map(|i| i * 200).collect();
    let chunks = split(body.as_bytes(), &cuts);
    let ex = exchange(&c, "/", &[], &refs(&chunks), true, false);
    let handed = ex.stream.chunks_handed;
    let up = ex.finish();
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-each-once"));
    assert_eq!(up.body, body.as_bytes());
    // Twenty chunks, each read once as the received body (the last one
    // too: Envoy shows it apart); the held body is never read again.
    assert_eq!(handed[RECEIVED_REQUEST as usize], 20);
    assert_eq!(handed[BUFFERED_REQUEST as usize], 0);
}

#[test]
fn trailers_end_the_body() {
    let c = config("{}");
    let body = send_params(r#"{"parts":[],"contextId":"ctx-trailers"}"#);
    let chunks = split(body.as_bytes(), &[10]);
    let up = exchange(&c, "/", &[], &refs(&chunks), false, true).finish();
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-trailers"));
    assert_eq!(up.body, body.as_bytes());
    // Absent context decided at the trailers.
    let body = send_params(r#"{"parts":[],"messageId":"m"}"#);
    let c = config(r#"{"mint_context_id":false}"#);
    let up = exchange(&c, "/", &[], &[body.as_bytes()], false, true).finish();
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(c.counter("context_absent"), 1);
}

/// One request of each binding naming its context, as (what, path,
/// content-type, body, contextId).
fn one_of_each_binding() -> Vec<(&'static str, String, &'static str, Vec<u8>, &'static str)> {
    use a2a_affinity_testkit::bodies;
    let text = "a text part long enough to be cut in many places";
    vec![
        (
            "JSON-RPC 0.3",
            "/".to_string(),
            JSON,
            bodies::rpc03("ctx-rpc03", text).into_bytes(),
            "ctx-rpc03",
        ),
        (
            "JSON-RPC 1.0",
            "/".to_string(),
            JSON,
            format!(
                r#"{{"jsonrpc":"2.0","id":"7","method":"SendMessage","params":{{"message":{{"messageId":"m-1","role":"ROLE_USER","contextId":"ctx-rpc10","parts":[{{"text":"{text}"}}]}}}}}}"#
            )
            .into_bytes(),
            "ctx-rpc10",
        ),
        (
            "REST",
            "/v1/message:send".to_string(),
            JSON,
            format!(
                r#"{{"message":{{"messageId":"m-1","role":"ROLE_USER","parts":[{{"text":"{text}"}}],"contextId":"ctx-rest"}}}}"#
            )
            .into_bytes(),
            "ctx-rest",
        ),
        (
            "gRPC lf.a2a.v1",
            format!("{}/SendMessage", proto::V1),
            "application/grpc",
            proto::send(proto::V1, &proto::message(Some("ctx-grpc"), None, text)),
            "ctx-grpc",
        ),
    ]
}

#[test]
fn every_cut_of_every_binding_routes_as_one_chunk_and_passes_the_body_unchanged() {
    // The hooks see a body in whatever pieces Envoy reads it: for each
    // binding, every cut into two chunks and a cut every 7 bytes, with a
    // content-length, chunked, and ended by trailers; in both modes.
    for (json, in_filter_state) in [("{}", false), (r#"{"hash_on":"filter_state"}"#, true)] {
        let c = config(json);
        let mut streams = 0;
        for (what, path, content_type, body, context) in one_of_each_binding() {
            let every_seven: Vec<usize> = (1..body.len()).step_by(7).collect();
            let cuts = (0..=body.len())
                .map(|at| vec![at])
                .chain(std::iter::once(every_seven));
            for cut in cuts {
                let chunks = split(&body, &cut);
                for (with_length, trailers) in FRAMINGS {
                    let up = exchange_as(
                        &c,
                        &path,
                        content_type,
                        &[],
                        &refs(&chunks),
                        with_length,
                        trailers,
                    )
                    .finish();
                    let case =
                        format!("{what}, cut {cut:?}, length {with_length}, trailers {trailers}");
                    if in_filter_state {
                        assert_eq!(
                            up.filter_state(HASHABLE).as_deref(),
                            Some(context),
                            "{case}"
                        );
                        assert_eq!(up.header("x-context-id"), None, "{case}");
                    } else {
                        assert_eq!(up.header_values("x-context-id"), vec![context], "{case}");
                    }
                    assert_eq!(up.body, body, "{case}");
                    assert!(!up.payload_too_large, "{case}");
                    streams += 1;
                }
            }
        }
        assert_eq!(c.counter("context_found"), streams, "{json}");
        assert_eq!(
            c.envoy.nonzero(),
            vec![("context_found".to_string(), streams)]
        );
    }
}

/// `body` with up to three random edits: a byte replaced (often by a byte
/// JSON or protobuf framing cares about), a span deleted or repeated, the
/// end cut off.
fn mangle(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    const TELLING: &[u8] = b"{}[]\":,\\ u0\n\x00\x0a\x12\xff";
    let mut out = body.to_vec();
    for _ in 0..rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => {
                out[at] = if rng.below(2) == 0 {
                    TELLING[rng.below(TELLING.len())]
                } else {
                    rng.next_u64() as u8
                };
            }
            1 => {
                let end = (at + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(16)).min(out.len());
                let span = out[at..end].to_vec();
                out.splice(at..at, span);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// The minted contextId (a UUID) in `body` replaced by a placeholder, so two
/// bodies minted with different ids compare equal.
fn unminted(body: &[u8], id: Option<&str>) -> Vec<u8> {
    match id {
        Some(id) if is_uuid_v4(id) => {
            let text = String::from_utf8_lossy(body).replace(id, "<minted>");
            text.into_bytes()
        }
        _ => body.to_vec(),
    }
}

/// Up to five random cut points in a body of `len` bytes, in order.
fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// After a differential run: no stream reached the panic handler, and each
/// of `outcomes` was counted more than `more_than` times by `c` (the random
/// edits left some inputs readable and broke others).
fn assert_no_panic_and_each_counted(c: &Configured, outcomes: &[&str], more_than: u64) {
    let logs = take_logs();
    assert!(
        logs.iter().all(|(_, line)| !line.contains("panic")),
        "{logs:?}"
    );
    let counts: std::collections::HashMap<String, u64> = c.envoy.nonzero().into_iter().collect();
    for outcome in outcomes {
        assert!(
            counts.get(*outcome).copied().unwrap_or(0) > more_than,
            "{outcome}: {counts:?}"
        );
    }
}

#[test]
fn mangled_bodies_cut_anywhere_decide_as_in_one_chunk() {
    // Differential: the same body through the hooks in one chunk and in
    // random pieces must route the same, pass the same bytes (a first turn
    // minted either way, each with its own id), count the same outcomes,
    // and never reach the panic handler.
    let mut bodies = one_of_each_binding();
    bodies.push((
        "JSON-RPC 1.0 first turn",
        "/".to_string(),
        JSON,
        a2a_affinity_testkit::bodies::rpc10_first_turn("a first turn").into_bytes(),
        "",
    ));
    bodies.push((
        "tasks/get",
        "/".to_string(),
        JSON,
        rpc("tasks/get", r#"{"id":"task-never-seen"}"#).into_bytes(),
        "",
    ));
    let whole = config("{}");
    let cut = config("{}");
    let mut rng = Rng(0x5eed_a2a0);
    for round in 0..3000 {
        let (what, path, content_type, body, _) = &bodies[round % bodies.len()];
        let body = mangle(&mut rng, body);
        let (with_length, trailers) = FRAMINGS[rng.below(FRAMINGS.len())];
        let cuts = random_cuts(&mut rng, body.len());
        let pieces = split(&body, &cuts);
        let [one, many] =
            [(&whole, vec![body.as_slice()]), (&cut, refs(&pieces))].map(|(c, chunks)| {
                exchange_as(c, path, content_type, &[], &chunks, with_length, trailers).finish()
            });
        let case = format!(
            "round {round}, {what}, cuts {cuts:?}, length {with_length}, trailers {trailers}, body {:?}",
            String::from_utf8_lossy(&body)
        );
        let (a, b) = (one.header("x-context-id"), many.header("x-context-id"));
        let minted = a.as_deref().is_some_and(is_uuid_v4)
            && !body
                .windows(36)
                .any(|w| Some(w) == a.as_deref().map(str::as_bytes));
        if minted {
            assert!(b.as_deref().is_some_and(is_uuid_v4), "{case}: {a:?} {b:?}");
        } else {
            assert_eq!(a, b, "{case}");
        }
        assert_eq!(
            unminted(&one.body, a.as_deref()),
            unminted(&many.body, b.as_deref()),
            "{case}"
        );
        if !minted {
            assert_eq!(one.body, body, "{case}");
        }
        assert_eq!(
            one.header("content-length"),
            many.header("content-length"),
            "{case}"
        );
        assert_eq!(whole.envoy.nonzero(), cut.envoy.nonzero(), "{case}");
    }
    assert_no_panic_and_each_counted(&whole, &["context_found", "minted", "invalid_json"], 50);
}

// ---------------------------------------------------------------- minting

#[test]
fn a_first_turn_is_minted_in_body_and_header_with_a_matching_length() {
    let c = config("{}");
    let body =
        send_params(r#"{"role":"user","parts":[{"kind":"text","text":"hello"}],"messageId":"m1"}"#);
    for cuts in [vec![], vec![30], vec![5, 60, 100]] {
        let chunks = split(body.as_bytes(), &cuts);
        let up = post(&c, "/", &[], &refs(&chunks));
        let id = up.header("x-context-id").expect("minted header");
        assert!(is_uuid_v4(&id), "{id}");
        let sent = up.json();
        assert_eq!(
            sent["params"]["message"]["contextId"],
            Value::String(id.clone())
        );
        assert_eq!(sent["params"]["message"]["messageId"], "m1");
        assert_eq!(up.header("content-length"), Some(up.body.len().to_string()));
        let expected = body.replace(
            r#""message":{"#,
            &format!(r#""message":{{"contextId":"{id}","#),
        );
        assert_eq!(up.body, expected.as_bytes(), "{cuts:?}");
    }
    assert_eq!(c.counter("minted"), 3);
}

#[test]
fn a_first_turn_is_minted_the_same_at_every_cut() {
    let c = config("{}");
    let body = a2a_affinity_testkit::bodies::rpc10_first_turn("minted wherever the body is cut");
    let original: Value = serde_json::from_str(&body).unwrap();
    for at in 0..=body.len() {
        let chunks = split(body.as_bytes(), &[at]);
        for (with_length, trailers) in FRAMINGS {
            let up = exchange(&c, "/", &[], &refs(&chunks), with_length, trailers).finish();
            let case = format!("cut {at}, length {with_length}, trailers {trailers}");
            let id = up.header("x-context-id").expect("minted header");
            assert!(is_uuid_v4(&id), "{case}: {id}");
            // The agent gets the body it was sent, with the minted
            // contextId in its message and nothing else changed.
            let mut sent = up.json();
            assert_eq!(
                sent["params"]["message"]
                    .as_object_mut()
                    .and_then(|m| m.remove("contextId")),
                Some(Value::String(id)),
                "{case}"
            );
            assert_eq!(sent, original, "{case}");
            let length = up.header("content-length");
            assert_eq!(
                length,
                with_length.then(|| up.body.len().to_string()),
                "{case}"
            );
        }
    }
    assert_eq!(c.counter("minted"), 3 * (body.len() as u64 + 1));
}

#[test]
fn a_chunked_first_turn_is_minted_without_a_content_length() {
    let c = config("{}");
    let body = send_params(r#"{"parts":[]}"#);
    let chunks = split(body.as_bytes(), &[20, 40]);
    let up = exchange(&c, "/", &[], &refs(&chunks), false, false).finish();
    let id = up.header("x-context-id").unwrap();
    assert_eq!(
        up.json()["params"]["message"]["contextId"],
        Value::String(id)
    );
    assert_eq!(up.header("content-length"), None);
}

#[test]
fn a_first_turn_ended_by_trailers_is_minted_in_the_buffered_body() {
    let c = config("{}");
    let body = send_params(r#"{"parts":[]}"#);
    let chunks = split(body.as_bytes(), &[25]);
    let up = exchange(&c, "/", &[], &refs(&chunks), false, true).finish();
    let id = up.header("x-context-id").unwrap();
    assert_eq!(
        up.json()["params"]["message"]["contextId"],
        Value::String(id)
    );
}

#[test]
fn minting_that_cannot_be_written_leaves_the_body_and_length_alone() {
    let c = config("{}");
    let body = send_params(r#"{"parts":[]}"#);
    for (fail_headers, fail_body) in [(true, false), (false, true)] {
        let up = post_through(&c, body.as_bytes(), |stream| {
            stream.fail_header_writes = fail_headers;
            stream.fail_body_writes = fail_body;
        });
        assert_eq!(up.body, body.as_bytes());
        assert_eq!(up.header("content-length"), Some(body.len().to_string()));
        assert_eq!(up.header("x-context-id"), None);
    }
    assert_eq!(c.counter("minted"), 0);
    assert_eq!(c.counter("context_absent"), 2);
}

#[test]
fn a_refused_drain_after_the_append_keeps_the_request_framed() {
    // Envoy refuses to drain the original bytes after the minted body was
    // appended behind them: the body holds both, and content-length must
    // count both, so the request stays framed (no bytes left over on the
    // upstream connection).
    let c = config("{}");
    let body = send_params(r#"{"parts":[]}"#);
    let up = post_through(&c, body.as_bytes(), |stream| stream.fail_body_drains = true);
    assert!(
        up.body.starts_with(body.as_bytes()),
        "the old bytes come first"
    );
    assert!(up.body.len() > body.len(), "the minted body follows them");
    assert_eq!(up.header("content-length"), Some(up.body.len().to_string()));
    assert_eq!(up.header("x-context-id"), None);
    let logs = take_logs();
    assert!(
        logs.iter()
            .any(|(level, l)| *level == 4 && l.contains("the body holds both")),
        "{logs:?}"
    );
    assert_eq!(c.counter("minted"), 0);
    assert_eq!(c.counter("context_absent"), 1);
}

#[test]
fn a_first_turn_is_minted_whole_however_envoy_holds_its_last_chunk() {
    // Two layouts of the held body at the last body callback: in the
    // buffered body with the callback's chunk in a buffer of its own; and
    // handed over as the received body that is the buffered body itself (a
    // filter before this one held it and let it go). Either way the minted
    // body replaces every held byte once, and what goes upstream is that
    // body alone, with a content-length to match.
    let body =
        send_params(r#"{"role":"user","parts":[{"kind":"text","text":"held"}],"messageId":"m2"}"#);
    let length = body.len().to_string();
    for received_is_buffered in [false, true] {
        let c = config("{}");
        let mut ex = held_post_with(&c, &[("content-length", &length)]);
        if received_is_buffered {
            let chunks = split(body.as_bytes(), &[40]);
            ex.stream.buffered_request = Some(chunks.clone());
            ex.stream.received_request = Some(chunks);
            ex.stream.received_is_buffered = true;
        } else {
            let (held, received) = body.as_bytes().split_at(body.len() - 20);
            ex.stream.buffered_request = Some(split(held, &[25]));
            ex.stream.received_request = Some(vec![received.to_vec()]);
        }
        let ptr = ex.stream.ptr();
        assert_eq!(
            ffi::envoy_dynamic_module_on_http_filter_request_body(ptr, ex.module, true),
            status::CONTINUE
        );
        let stream = &ex.stream;
        let header = |name: &str| {
            let (_, v) = stream.request_headers.iter().find(|(k, _)| k == name)?;
            String::from_utf8(v.clone()).ok()
        };
        let id = header("x-context-id").expect("minted header");
        assert!(is_uuid_v4(&id), "{id}");
        let mut sent = stream.buffered_request.clone().unwrap_or_default().concat();
        if !received_is_buffered {
            sent.extend(stream.received_request.clone().unwrap_or_default().concat());
        }
        let expected = body.replace(
            r#""message":{"#,
            &format!(r#""message":{{"contextId":"{id}","#),
        );
        assert_eq!(sent, expected.as_bytes(), "{received_is_buffered}");
        assert_eq!(header("content-length"), Some(sent.len().to_string()));
        ex.finish();
        assert_eq!(c.counter("minted"), 1);
    }
}

#[test]
fn minting_can_be_turned_off() {
    let c = config(r#"{"mint_context_id":false}"#);
    let body = send_params(r#"{"parts":[]}"#);
    let up = post(&c, "/", &[], &[body.as_bytes()]);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(c.envoy.nonzero(), vec![("context_absent".to_string(), 1)]);
}

// ------------------------------------------------ hash_on: filter_state

#[test]
fn filter_state_mode_routes_on_filter_state_and_sets_no_header() {
    let c = config(r#"{"hash_on":"filter_state"}"#);
    let body = send_params(
        r#"{"role":"user","contextId":"ctx-fs","parts":[{"kind":"text","text":"hi"}]}"#,
    );
    for cuts in [vec![], vec![40]] {
        let up = post(&c, "/", &[], &refs(&split(body.as_bytes(), &cuts)));
        assert_eq!(up.filter_state(HASHABLE).as_deref(), Some("ctx-fs"));
        assert_eq!(up.header("x-context-id"), None);
        assert_eq!(up.body, body.as_bytes());
        assert_eq!(up.header("content-length"), Some(body.len().to_string()));
    }
    assert_eq!(c.envoy.nonzero(), vec![("context_found".to_string(), 2)]);
    // The header mode writes no filter state.
    let header_mode = config("{}");
    let up = post(&header_mode, "/", &[], &[body.as_bytes()]);
    assert_eq!(up.filter_state(HASHABLE), None);
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-fs"));
}

#[test]
fn filter_state_mode_is_named_in_the_configured_line() {
    let _c = config(r#"{"hash_on":"filter_state"}"#);
    let logs = take_logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].1.contains(" hash_on=filter_state;"), "{logs:?}");
}

#[test]
fn filter_state_mode_mints_and_routes_tasks_through_filter_state() {
    let c = config(r#"{"hash_on":"filter_state"}"#);
    let first = send_params(r#"{"role":"user","parts":[{"kind":"text","text":"hello"}]}"#);
    let up = post(&c, "/", &[], &[first.as_bytes()]);
    let id = up
        .filter_state(HASHABLE)
        .expect("minted key in filter state");
    assert!(is_uuid_v4(&id), "{id}");
    assert_eq!(
        up.json()["params"]["message"]["contextId"],
        Value::String(id.clone())
    );
    assert_eq!(up.header("content-length"), Some(up.body.len().to_string()));
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(c.counter("minted"), 1);

    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"kind":"task","id":"task-fs-1","contextId":"{id}","status":{{"state":"working"}}}}}}"#
    );
    let turn = send_params(&format!(r#"{{"contextId":"{id}","parts":[]}}"#));
    exchange(&c, "/", &[], &[turn.as_bytes()], true, false)
        .respond(JSON, &[answer.as_bytes()])
        .finish();
    assert_eq!(c.counter("task_learned"), 1);
    let get = rpc("tasks/get", r#"{"id":"task-fs-1"}"#);
    let up = post(&c, "/", &[], &[get.as_bytes()]);
    assert_eq!(up.filter_state(HASHABLE), Some(id.clone()));
    assert_eq!(up.header("x-context-id"), None);
    // A REST task route, decided at the headers.
    let up = get_path(&c, "/v1/tasks/task-fs-1");
    assert_eq!(up.filter_state(HASHABLE), Some(id));
    assert_eq!(c.counter("task_routed"), 2);
}

#[test]
fn filter_state_mode_keeps_a_client_header_when_the_body_names_no_context() {
    // (When the body names one, the header is set to it:
    // a_client_header_is_replaced_never_appended.) Here the client's header
    // is kept for the route's header policy, and no filter state is
    // written.
    let c = config(r#"{"hash_on":"filter_state"}"#);
    let none = br#"{"jsonrpc":"2.0","method":"message/send","params":{"message":{"role" "user"}}}"#;
    let up = post(&c, "/", &[("x-context-id", "client")], &[none]);
    assert_eq!(up.filter_state(HASHABLE), None);
    assert_eq!(up.header("x-context-id").as_deref(), Some("client"));
    assert_eq!(c.counter("client_header_kept"), 1);
}

#[test]
fn a_failed_filter_state_write_sets_the_header_and_logs_once() {
    let c = config(r#"{"hash_on":"filter_state"}"#);
    take_logs();
    let body = send_params(r#"{"contextId":"ctx-fallback","parts":[]}"#);
    for _ in 0..2 {
        let up = post_through(&c, body.as_bytes(), |stream| {
            stream.fail_filter_state_writes = true;
        });
        assert_eq!(up.filter_state(HASHABLE), None);
        assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-fallback"));
        assert_eq!(up.body, body.as_bytes());
    }
    let logs = take_logs();
    let failed: Vec<_> = logs
        .iter()
        .filter(|(_, line)| line.contains("filter state"))
        .collect();
    assert_eq!(failed.len(), 1, "{logs:?}");
    assert!(
        failed[0].1.contains("setting x-context-id instead"),
        "{logs:?}"
    );
    assert_eq!(c.counter("context_found"), 2);
}

// ------------------------------------------------------------------ tasks

#[test]
fn tasks_learned_from_a_json_response_route_task_calls() {
    let c = config("{}");
    let body = send_params(r#"{"contextId":"ctx-task-json","parts":[]}"#);
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"kind":"task","id":"task-json-1","contextId":"ctx-task-json","status":{"state":"working"}}}"#;
    let split_answer = split(answer.as_bytes(), &[20, 70]);
    let ex =
        exchange(&c, "/", &[], &[body.as_bytes()], true, false).respond(JSON, &refs(&split_answer));
    ex.finish();
    assert_eq!(c.counter("task_learned"), 1);

    let get = rpc("tasks/get", r#"{"id":"task-json-1"}"#);
    let up = post(&c, "/", &[], &[get.as_bytes()]);
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-task-json"));
    assert_eq!(up.body, get.as_bytes());
    assert_eq!(c.counter("task_routed"), 1);

    // A REST task route needs no body: routed at the headers.
    let up = get_path(&c, "/v1/tasks/task-json-1");
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-task-json"));
    assert_eq!(up.statuses, vec![status::CONTINUE]);
    assert_eq!(c.counter("task_routed"), 2);

    let unknown = rpc("tasks/get", r#"{"id":"task-never-seen"}"#);
    let up = post(&c, "/", &[], &[unknown.as_bytes()]);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(c.counter("task_unknown"), 1);
}

#[test]
fn tasks_learned_from_an_sse_stream_chunk_by_chunk() {
    let c = config("{}");
    let body = rpc(
        "message/stream",
        r#"{"message":{"contextId":"ctx-sse","parts":[]}}"#,
    );
    // The event that names the task comes in two chunks; the stream is
    // not read after it (a later event naming another task teaches nothing).
    let events = [
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"status-update\",\"taskId\":\"task-sse-1\",",
        "\"contextId\":\"ctx-sse\",\"final\":false}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"task\",\"id\":\"task-sse-2\",\"contextId\":\"ctx-sse\"}}\n\n",
    ];
    let chunks: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
    exchange(&c, "/", &[], &[body.as_bytes()], true, false)
        .respond("text/event-stream", &chunks)
        .finish();
    assert_eq!(c.counter("task_learned"), 1);
    for (task, want) in [("task-sse-1", Some("ctx-sse")), ("task-sse-2", None)] {
        let get = rpc("tasks/get", &format!(r#"{{"id":"{task}"}}"#));
        let up = post(&c, "/", &[], &[get.as_bytes()]);
        assert_eq!(up.header("x-context-id").as_deref(), want, "{task}");
    }
}

/// An answer naming task `task` in context `context`, of a `kind`: a
/// JSON-RPC task ("json"), a status-update event ("sse"), or a gRPC
/// SendMessageResponse { task(1): Task { id(1), context_id(2) } } ("grpc").
fn task_answer(kind: &str, task: &str, context: &str) -> Vec<u8> {
    match kind {
        "json" => format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"kind":"task","id":"{task}","contextId":"{context}","status":{{"state":"working"}}}}}}"#
        )
        .into_bytes(),
        "sse" => format!(
            "data: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"kind\":\"status-update\",\"taskId\":\"{task}\",\"contextId\":\"{context}\",\"final\":false}}}}\n\n"
        )
        .into_bytes(),
        _ => proto::frame(&proto::len(
            1,
            &[proto::len(1, task.as_bytes()), proto::len(2, context.as_bytes())].concat(),
        )),
    }
}

/// A request in `context` of the call whose answer `kind` is (message/send,
/// message/stream, gRPC SendMessage), answered with `chunks`.
fn answered<'c>(c: &'c Configured, kind: &str, context: &str, chunks: &[&[u8]]) -> Exchange<'c> {
    let message = format!(r#"{{"message":{{"contextId":"{context}","parts":[]}}}}"#);
    match kind {
        "json" => exchange(
            c,
            "/",
            &[],
            &[rpc("message/send", &message).as_bytes()],
            true,
            false,
        )
        .respond(JSON, chunks),
        "sse" => exchange(
            c,
            "/",
            &[],
            &[rpc("message/stream", &message).as_bytes()],
            true,
            false,
        )
        .respond("text/event-stream", chunks),
        _ => {
            let send = proto::send(proto::V1, &proto::message(Some(context), None, "hi"));
            exchange_as(
                c,
                &format!("{}/SendMessage", proto::V1),
                "application/grpc",
                &[],
                &[&send],
                false,
                false,
            )
            .respond("application/grpc", chunks)
        }
    }
}

#[test]
fn a_task_is_learned_at_every_cut_of_its_answer() {
    // The answer streams past in whatever pieces Envoy reads it: every cut
    // into two of a JSON answer, an event stream and a gRPC frame teaches
    // the task, and a later tasks/get routes to its context.
    let c = config("{}");
    let mut learned = 0;
    for kind in ["json", "sse", "grpc"] {
        // Task ids of one length, so every answer of a kind has one length.
        let length = task_answer(kind, &format!("{kind}-0000"), "ctx-cut").len();
        for at in 0..=length {
            let task = format!("{kind}-{at:04}");
            let chunks = split(&task_answer(kind, &task, "ctx-cut"), &[at]);
            answered(&c, kind, "ctx-cut", &refs(&chunks)).finish();
            learned += 1;
            assert_eq!(c.counter("task_learned"), learned, "{kind}, cut {at}");
            let get = rpc("tasks/get", &format!(r#"{{"id":"{task}"}}"#));
            let up = post(&c, "/", &[], &[get.as_bytes()]);
            assert_eq!(
                up.header("x-context-id").as_deref(),
                Some("ctx-cut"),
                "{kind}, cut {at}"
            );
        }
    }
}

#[test]
fn mangled_answers_cut_anywhere_teach_as_in_one_chunk() {
    // Differential, on the response side: JSON answers, event streams and
    // gRPC frames with up to three random edits teach the same tasks read
    // whole and read in random pieces, and a tasks/get for each routes the
    // same; no edit reaches the panic handler.
    // Configurations with the same task capacity and TTL share one store
    // (as a configuration pushed again keeps what the old one learned):
    // each side gets its own, or the second would only refresh what the
    // first learned.
    let whole = config(r#"{"task_ttl_secs":3599}"#);
    let cut = config(r#"{"task_ttl_secs":3598}"#);
    let mut rng = Rng(0x5eed_a45e);
    for round in 0..1500 {
        let (task, context) = (format!("task-{round}"), format!("ctx-{round}"));
        let kind = ["json", "sse", "grpc"][round % 3];
        let answer = mangle(&mut rng, &task_answer(kind, &task, &context));
        let cuts = random_cuts(&mut rng, answer.len());
        let pieces = split(&answer, &cuts);
        for (c, chunks) in [(&whole, vec![answer.as_slice()]), (&cut, refs(&pieces))] {
            answered(c, kind, &context, &chunks).finish();
        }
        let case = format!(
            "round {round}, {kind}, cuts {cuts:?}, answer {:?}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(whole.envoy.nonzero(), cut.envoy.nonzero(), "{case}");
        let get = rpc("tasks/get", &format!(r#"{{"id":"{task}"}}"#));
        let routed: Vec<_> = [&whole, &cut]
            .map(|c| post(c, "/", &[], &[get.as_bytes()]).header("x-context-id"))
            .into();
        assert_eq!(routed[0], routed[1], "{case}");
    }
    assert_no_panic_and_each_counted(
        &whole,
        &["task_learned", "task_routed", "task_unknown"],
        100,
    );
}

/// Two events of a stream: the first names no pair (a task id and no
/// context), so the learner reads on; the second names `task` in `ctx-ev`.
/// Reading the first again does no harm, so a filter that read bytes twice
/// would learn `task` where one that cannot tell new bytes from read ones
/// learns nothing.
fn two_events(task: &str) -> (Vec<u8>, Vec<u8>) {
    (
        b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"status-update\",\"taskId\":\"task-a\",\"final\":false}}\n\n".to_vec(),
        task_answer("sse", task, "ctx-ev"),
    )
}

/// A message/stream request in `ctx-ev` whose answer's headers have
/// passed: the test then lays out Envoy's response buffers by hand.
fn streaming(c: &Configured) -> Exchange<'_> {
    let message = r#"{"message":{"contextId":"ctx-ev","parts":[]}}"#;
    let mut ex = exchange(
        c,
        "/",
        &[],
        &[rpc("message/stream", message).as_bytes()],
        true,
        false,
    );
    ex.response_headers("text/event-stream", false);
    ex
}

/// Whether a tasks/get for `task` routes to `ctx-ev`.
fn task_routed(c: &Configured, task: &str) -> bool {
    let get = rpc("tasks/get", &format!(r#"{{"id":"{task}"}}"#));
    post(c, "/", &[], &[get.as_bytes()])
        .header("x-context-id")
        .as_deref()
        == Some("ctx-ev")
}

#[test]
fn response_bytes_in_another_filters_buffer_are_read_only_if_nothing_was_read() {
    // Envoy's one buffered response body per stream, in the two ways it
    // reaches this filter. "resumed": a filter nearer the upstream held
    // data and resumes, and this filter receives the buffered body.
    // "appended": a filter nearer the client holds data, and at the end of
    // the stream Envoy appends the last chunk to the buffered body and
    // hands this filter an empty received body (as the dynamic-module
    // filter of Envoy 1.37 and older did; kept, as untraced on 1.38-1.40).
    // If the filter read nothing of the answer, all of the buffer is new.
    // If it read event a and passed it on, a may be in the buffer still,
    // before b: it cannot tell a from new bytes, so it stops learning from
    // this answer rather than read a twice.
    for resumed in [true, false] {
        for read_before in [false, true] {
            let c = config("{}");
            // Each case its own task: learned tasks pass from one
            // configuration to the next while either is alive.
            let task = format!("task-b-{resumed}-{read_before}");
            let (a, b) = two_events(&task);
            let mut ex = streaming(&c);
            take_logs();
            if read_before {
                ex.stream.received_response = Some(vec![a.clone()]);
                ex.response_body(false);
            }
            ex.stream.buffered_response = Some(vec![a.clone(), b.clone()]);
            if resumed {
                ex.stream.received_response = Some(vec![a, b]);
                ex.stream.received_response_is_buffered = true;
            } else {
                ex.stream.received_response = Some(Vec::new());
            }
            ex.response_body(true);
            ex.finish();
            let learned = !read_before;
            let case = format!("resumed {resumed}, read before {read_before}");
            assert_eq!(c.counter("task_learned"), u64::from(learned), "{case}");
            assert_eq!(task_routed(&c, &task), learned, "{case}");
            let stopped = take_logs()
                .iter()
                .any(|(_, l)| l.contains("not told apart from bytes already read"));
            assert_eq!(stopped, read_before, "{case}");
        }
    }
}

#[test]
fn learning_can_be_turned_off() {
    let c = config(r#"{"learn_tasks":false}"#);
    let body = send_params(r#"{"contextId":"ctx-nolearn","parts":[]}"#);
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"kind":"task","id":"task-nolearn","contextId":"ctx-nolearn"}}"#;
    exchange(&c, "/", &[], &[body.as_bytes()], true, false)
        .respond(JSON, &[answer.as_bytes()])
        .finish();
    let get = rpc("tasks/get", r#"{"id":"task-nolearn"}"#);
    let up = post(&c, "/", &[], &[get.as_bytes()]);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(c.counter("task_learned"), 0);
}

#[test]
fn response_headers_are_read_only_when_the_answer_can_teach() {
    let response_maps_read =
        |ex: &Exchange<'_>| ex.stream.header_maps_read[header_type::RESPONSE_HEADER as usize];
    let answer = task_answer("json", "task-heads", "ctx-heads");
    let c = config("{}");
    // Traffic passed at its headers: its answer is not looked at.
    let ex = Exchange::new(&c)
        .request(
            &[
                (":method", "GET"),
                (":path", "/.well-known/agent-card.json"),
            ],
            &[],
            false,
        )
        .respond(JSON, &[&answer]);
    assert_eq!(response_maps_read(&ex), 0);
    ex.finish();
    let up =
        exchange_as(&c, "/", "text/plain", &[], &[b"hello"], true, false).respond(JSON, &[&answer]);
    assert_eq!(response_maps_read(&up), 0);
    up.finish();
    assert_eq!(c.counter("task_learned"), 0);
    // Learning turned off: no A2A answer is looked at either.
    let off = config(r#"{"learn_tasks":false}"#);
    let ex = answered(&off, "json", "ctx-heads", &[&answer]);
    assert_eq!(response_maps_read(&ex), 0);
    ex.finish();
    // An A2A call's answer is read once, and teaches.
    let ex = answered(&c, "json", "ctx-heads", &[&answer]);
    assert_eq!(response_maps_read(&ex), 1);
    ex.finish();
    assert_eq!(c.counter("task_learned"), 1);
}

/// A message/send in `context` through `c`, answered with the task `task`,
/// which the filter learns.
fn teach(c: &Configured, task: &str, context: &str) {
    let body = send_params(&format!(r#"{{"contextId":"{context}","parts":[]}}"#));
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"kind":"task","id":"{task}","contextId":"{context}"}}}}"#
    );
    exchange(c, "/", &[], &[body.as_bytes()], true, false)
        .respond(JSON, &[answer.as_bytes()])
        .finish();
}

#[test]
fn a_new_configuration_keeps_the_learned_tasks() {
    let old = config(r#"{"task_capacity":777,"task_ttl_secs":60}"#);
    teach(&old, "task-reconf", "ctx-reconf");
    // Envoy creates the new configuration before it destroys the old one.
    let new = config(r#"{"task_capacity":777,"task_ttl_secs":60,"header":"x-session"}"#);
    drop(old);
    let get = rpc("tasks/get", r#"{"id":"task-reconf"}"#);
    let up = post(&new, "/", &[], &[get.as_bytes()]);
    assert_eq!(up.header("x-session").as_deref(), Some("ctx-reconf"));
}

#[test]
fn a_configuration_with_new_task_settings_takes_the_learned_tasks_over() {
    let old = config(r#"{"task_capacity":5000,"task_ttl_secs":600}"#);
    teach(&old, "task-moved", "ctx-moved");
    take_logs();
    let new = config(r#"{"task_capacity":3000,"task_ttl_secs":1200}"#);
    let logs = take_logs();
    assert!(
        logs.iter().any(|(_, l)| l.contains(
            "the task store of task_capacity 3000, task_ttl_secs 1200 took over from the store \
             of task_capacity 5000, task_ttl_secs 600; learned tasks taken over: 1"
        )),
        "{logs:?}"
    );
    drop(old);
    let get = rpc("tasks/get", r#"{"id":"task-moved"}"#);
    let up = post(&new, "/", &[], &[get.as_bytes()]);
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-moved"));
    assert_eq!(new.counter("task_routed"), 1);
}

#[test]
fn a_task_learned_under_new_task_settings_is_routed_under_the_old_ones() {
    // The old configuration's listener drains: streams on its connections
    // ask for tasks first turns on new connections taught the new one.
    let old = config(r#"{"task_capacity":5000,"task_ttl_secs":600}"#);
    let new = config(r#"{"task_capacity":3000,"task_ttl_secs":1200}"#);
    teach(&new, "task-new-side", "ctx-new-side");
    let get = rpc("tasks/get", r#"{"id":"task-new-side"}"#);
    let up = post(&old, "/", &[], &[get.as_bytes()]);
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-new-side"));
    assert_eq!(old.counter("task_routed"), 1);
    assert_eq!(old.counter("task_unknown"), 0);
}

// ------------------------------------------------------------ fail open

#[test]
fn invalid_json_passes_unchanged() {
    let c = config("{}");
    let body = br#"{"jsonrpc":"2.0","method":"message/send","params":{"message":{"role" "user","contextId":"x"}}}"#;
    let up = post(&c, "/", &[], &[body]);
    assert_eq!(up.body, body);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(c.envoy.nonzero(), vec![("invalid_json".to_string(), 1)]);
    let logs = take_logs();
    assert!(
        logs.iter().any(|(_, l)| l.contains("not valid JSON")),
        "{logs:?}"
    );
}

#[test]
fn client_header_kept_or_stripped_when_the_body_names_no_context() {
    let body = br#"{"jsonrpc":"2.0","method":"message/send","params":{"message":{"role" "user"}}}"#;
    let keep = config("{}");
    let up = post(&keep, "/", &[("x-context-id", "client")], &[body]);
    assert_eq!(up.header("x-context-id").as_deref(), Some("client"));
    assert_eq!(keep.counter("client_header_kept"), 1);
    let strip = config(r#"{"client_header":"strip"}"#);
    let up = post(&strip, "/", &[("x-context-id", "client")], &[body]);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(strip.counter("client_header_kept"), 0);
}

#[test]
fn non_a2a_traffic_passes_at_the_headers() {
    let c = config("{}");
    let up = get_path(&c, "/healthz");
    assert_eq!(up.statuses, vec![status::CONTINUE]);
    let up = exchange_as(&c, "/", "text/plain", &[], &[b"hello"], false, false).finish();
    assert_eq!(up.statuses, vec![status::CONTINUE, status::CONTINUE]);
    assert_eq!(up.body, b"hello");
    let body = send_params(r#"{"contextId":"c","parts":[]}"#);
    let up = post(&c, "/", &[("content-encoding", "gzip")], &[body.as_bytes()]);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(c.envoy.nonzero(), vec![("passthrough".to_string(), 3)]);
}

#[test]
fn the_scan_stops_at_max_scan_bytes() {
    let c = config(r#"{"max_scan_bytes":1024}"#);
    let body = send_long_text('z', 4000, "ctx-too-far");
    let chunks = split(body.as_bytes(), &[500, 1000, 1500, 3000]);
    let up = post(&c, "/", &[], &refs(&chunks));
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(c.envoy.nonzero(), vec![("scan_limit".to_string(), 1)]);
    // It gave up in the callback that reached the limit.
    assert_eq!(up.statuses.len(), 6);
    assert_eq!(up.statuses[3], status::CONTINUE);
}

#[test]
fn the_scan_stops_at_the_stream_buffer_limit() {
    let c = config("{}");
    let body = send_long_text('z', 6000, "ctx-over-limit");
    let chunks = split(body.as_bytes(), &[1500, 3000, 4500]);
    let post_under =
        |limit: u64| post_chunks_through(&c, &refs(&chunks), |stream| stream.buffer_limit = limit);
    // 1,500 bytes held (under the limit), then 3,000 reach it: the request
    // goes on in that callback. The fake Envoy fails the test if the module
    // ever holds more than the limit.
    let up = post_under(2000);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, body.as_bytes());
    assert!(!up.payload_too_large);
    assert_eq!(
        &up.statuses[..3],
        &[
            status::HEADERS_STOP_ITERATION,
            status::BODY_STOP_AND_WATERMARK,
            status::CONTINUE
        ]
    );
    assert_eq!(c.envoy.nonzero(), vec![("scan_limit".to_string(), 1)]);
    // The clamp is logged as a warning once per buffer limit, and a later
    // stream under the same limit logs nothing at all.
    let clamp_lines = |logs: Vec<(u32, String)>| {
        logs.into_iter()
            .filter(|(_, line)| line.contains("buffer limit"))
            .map(|(level, _)| level)
            .collect::<Vec<_>>()
    };
    assert_eq!(clamp_lines(take_logs()), vec![3]);
    let up = post_under(2000);
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(clamp_lines(take_logs()), Vec::<u32>::new());
    // Another stream's lower limit (another listener's, say): its own cut,
    // and its own warning.
    let up = post_under(1000);
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(up.statuses[1], status::CONTINUE);
    assert_eq!(clamp_lines(take_logs()), vec![3]);
    let up = post_under(2000);
    assert_eq!(up.statuses[2], status::CONTINUE);
    assert_eq!(clamp_lines(take_logs()), Vec::<u32>::new());
    assert_eq!(c.envoy.counter("scan_limit"), 4);
}

#[test]
fn the_chunk_that_ends_the_body_is_read_past_the_stream_buffer_limit() {
    // Nothing is held after the callback that ends the body (an HTTP/2
    // DATA frame with END_STREAM may take the body past the stream's
    // window): its chunk is read up to max_scan_bytes, whatever the
    // stream's limit, so the body is routed or minted. The same bytes
    // shown without the end (HTTP/1.1 gives the end in an empty callback
    // of its own) end the read at the limit, and max_scan_bytes still
    // ends it in the last chunk.
    let c = config(r#"{"max_scan_bytes":8192}"#);
    let under_limit = |stream: &mut FakeStream| stream.buffer_limit = 2000;
    let routed = send_long_text('z', 6000, "ctx-in-the-last-chunk");
    let first = a2a_affinity_testkit::bodies::rpc10_first_turn(&"w".repeat(6000));
    for cuts in [vec![], vec![1500]] {
        let chunks = split(routed.as_bytes(), &cuts);
        let up = post_chunks_through(&c, &refs(&chunks), under_limit);
        assert_eq!(
            up.header("x-context-id").as_deref(),
            Some("ctx-in-the-last-chunk")
        );
        assert_eq!(up.body, routed.as_bytes());
        assert!(!up.payload_too_large);
        assert_eq!(up.statuses.last(), Some(&status::CONTINUE), "{cuts:?}");

        let chunks = split(first.as_bytes(), &cuts);
        let up = post_chunks_through(&c, &refs(&chunks), under_limit);
        let id = up.header("x-context-id").expect("minted header");
        assert!(is_uuid_v4(&id), "{id}");
        assert_eq!(
            up.json()["params"]["message"]["contextId"],
            Value::String(id)
        );
        assert_eq!(up.header("content-length"), Some(up.body.len().to_string()));
        assert!(!up.payload_too_large);
    }
    assert_eq!(c.counter("minted"), 2);
    assert_eq!(c.counter("scan_limit"), 0);

    // The end in an empty callback: the chunk before it passes the limit
    // without ending the body, and the read ends there.
    let mut chunks = split(routed.as_bytes(), &[1500]);
    chunks.push(Vec::new());
    let up = post_chunks_through(&c, &refs(&chunks), under_limit);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, routed.as_bytes());
    assert_eq!(
        &up.statuses[1..],
        &[
            status::BODY_STOP_AND_WATERMARK,
            status::CONTINUE,
            status::CONTINUE
        ]
    );
    assert_eq!(c.counter("scan_limit"), 1);

    // A last chunk past max_scan_bytes too: read up to max_scan_bytes.
    let far = send_long_text('z', 9000, "ctx-past-max-scan-bytes");
    let chunks = split(far.as_bytes(), &[1500]);
    let up = post_chunks_through(&c, &refs(&chunks), under_limit);
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, far.as_bytes());
    assert_eq!(c.counter("scan_limit"), 2);
}

#[test]
fn a_buffer_limit_changed_mid_body_is_followed() {
    // A filter before this one may change the stream's buffer limit in its
    // own body callback, and Envoy applies the new limit to the body held at
    // once. The fake Envoy fails the test if the module ever holds more than
    // the limit (Envoy would stop reading the client: the request would
    // stall).
    let c = config("{}");
    let text = "z".repeat(6000);
    let last = send_long_text('z', 6000, "ctx-last");
    let first = send_params(&format!(
        r#"{{"contextId":"ctx-first","parts":[{{"kind":"text","text":"{text}"}}]}}"#
    ));
    const HOLD: u32 = status::BODY_STOP_AND_WATERMARK;
    const GO: u32 = status::CONTINUE;
    const MIB: u64 = 1 << 20;
    let even: &[usize] = &[1500, 3000, 4500];
    let gap: &[usize] = &[1500, 3000, 3000, 4500];
    // (cuts, the limit at the headers, its change, the body statuses,
    // whether the whole body is read)
    let cases = [
        // Lowered below the 3,000 bytes held, before the third chunk: the
        // request goes on in that callback, routed by what was read.
        (even, MIB, (2, 2000), &[HOLD, HOLD, GO, GO][..], false),
        // Lowered to 4,000 before the second chunk (3,000 held after it):
        // the third is read up to the new limit, and the request goes on
        // there.
        (even, MIB, (1, 4000), &[HOLD, HOLD, GO, GO][..], false),
        // Lowered below what is held before a callback with no new bytes.
        (gap, MIB, (2, 2000), &[HOLD, HOLD, GO, GO, GO][..], false),
        // Raised from 2,000 before the second chunk, which would pass the
        // old limit: the whole body is read.
        (even, 2000, (1, MIB), &[HOLD, HOLD, HOLD, GO][..], true),
    ];
    for (cuts, start, change, statuses, whole) in cases {
        for (body, id) in [(&last, "ctx-last"), (&first, "ctx-first")] {
            let chunks = split(body.as_bytes(), cuts);
            let up = post_chunks_through(&c, &refs(&chunks), |stream| {
                stream.buffer_limit = start;
                stream.buffer_limit_changes = vec![change];
            });
            assert_eq!(up.body, body.as_bytes());
            assert!(!up.payload_too_large);
            let routed = (whole || id == "ctx-first").then_some(id);
            assert_eq!(up.header("x-context-id").as_deref(), routed, "{change:?}");
            assert_eq!(&up.statuses[1..], statuses, "{change:?}");
        }
    }
    // Each lower limit is warned about once, whether met mid-body or at
    // the headers (2,000 both ways).
    let warnings = take_logs()
        .into_iter()
        .filter(|(level, line)| *level == 3 && line.contains("buffer limit"))
        .map(|(_, line)| line)
        .collect::<Vec<_>>();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("(2000 bytes)"), "{warnings:?}");
    assert!(warnings[1].contains("(4000 bytes)"), "{warnings:?}");
    // The advice names both ways the limit can be raised.
    let advice = "raise the route's request_body_buffer_limit, or the limit a filter before";
    assert!(warnings[0].contains(advice), "{warnings:?}");
    assert_eq!(c.counter("scan_limit"), 3);
}

#[test]
fn a_first_turn_of_exactly_the_stream_buffer_limit_is_minted() {
    // HTTP/1.1 shows the last bytes without the end of the stream, then the
    // end in an empty callback. A first turn of exactly the stream's buffer
    // limit, its content-length saying so or chunked, may end at its last
    // byte: the module holds exactly the limit (the fake Envoy fails the
    // test past it) and mints at the end. With a limit one byte lower the
    // body goes on past it: no minting.
    let c = config("{}");
    let body = a2a_affinity_testkit::bodies::rpc10_first_turn(&"w".repeat(3000));
    let limit = body.len() as u64;
    let length = body.len().to_string();
    let post_under = |chunks: &[&[u8]], with_length: bool, limit: u64| {
        let length = with_length.then_some(length.as_str());
        let mut ex = Exchange::new(&c);
        ex.stream.buffer_limit = limit;
        ex.request(&post_headers("/", JSON, length, &[]), chunks, false)
            .finish()
    };
    for with_length in [true, false] {
        for cuts in [vec![], vec![1000], vec![1000, 2000, body.len() - 1]] {
            let mut chunks = split(body.as_bytes(), &cuts);
            chunks.push(Vec::new());
            let up = post_under(&refs(&chunks), with_length, limit);
            let id = up.header("x-context-id").expect("minted header");
            assert!(is_uuid_v4(&id), "{id}");
            assert_eq!(
                up.json()["params"]["message"]["contextId"],
                Value::String(id)
            );
            let length = with_length.then(|| up.body.len().to_string());
            assert_eq!(up.header("content-length"), length);
            assert!(!up.payload_too_large);
            let held = chunks.len();
            assert!(up.statuses[1..held]
                .iter()
                .all(|&s| s == status::BODY_STOP_AND_WATERMARK));
            assert_eq!(up.statuses[held], status::CONTINUE, "{cuts:?}");
        }
        let up = post_under(&[body.as_bytes(), b""], with_length, limit - 1);
        assert_eq!(up.header("x-context-id"), None);
        assert_eq!(up.body, body.as_bytes());
        assert_eq!(up.statuses[1], status::CONTINUE);
    }
    assert_eq!(c.counter("minted"), 6);
    assert_eq!(c.counter("scan_limit"), 2);
}

#[test]
fn more_buffer_limits_than_warned_one_by_one_still_cut_each_at_its_limit() {
    // Nine routes with nine lower limits: eight are warned about one by
    // one, the ninth in one warning for all such limits, and every one
    // cuts at its own limit.
    let c = config("{}");
    let body = send_long_text('z', 6000, "ctx-many-limits");
    let chunks = split(body.as_bytes(), &[1000, 2000, 3000, 4000, 5000]);
    let post_under =
        |limit: u64| post_chunks_through(&c, &refs(&chunks), |stream| stream.buffer_limit = limit);
    let warnings = || {
        take_logs()
            .into_iter()
            .filter(|(level, line)| *level == 3 && line.contains("buffer limit"))
            .map(|(_, line)| line)
            .collect::<Vec<_>>()
    };
    let _ = take_logs();
    // A limit of 1000 * k - 1 - extra is a little under 1000 * k: the
    // stream holds 1000 * (k - 1) bytes, the k-th chunk reaches the limit,
    // and the request goes on there (statuses: the headers', then one per
    // chunk).
    for round in 0..2 {
        for k in 1..=5u64 {
            for extra in [0, 1] {
                if k == 5 && extra == 1 {
                    continue;
                }
                let limit = 1000 * k - 1 - extra;
                let up = post_under(limit);
                assert_eq!(up.body, body.as_bytes());
                assert_eq!(up.header("x-context-id"), None);
                let k = usize::try_from(k).unwrap();
                assert_eq!(up.statuses[0], status::HEADERS_STOP_ITERATION);
                assert!(up.statuses[1..k]
                    .iter()
                    .all(|&s| s == status::BODY_STOP_AND_WATERMARK));
                assert_eq!(up.statuses[k], status::CONTINUE, "limit {limit}");
            }
        }
        let logged = warnings();
        if round == 0 {
            assert_eq!(logged.len(), 9, "{logged:?}");
            assert_eq!(
                logged
                    .iter()
                    .filter(|l| l.contains("past the first 8"))
                    .count(),
                1
            );
        } else {
            assert!(logged.is_empty(), "{logged:?}");
        }
    }
    assert_eq!(c.envoy.counter("scan_limit"), 18);
}

#[test]
fn a_stream_that_ends_undecided_counts_as_aborted() {
    let c = config("{}");
    let body = send_params(r#"{"parts":[],"contextId":"never-finished"}"#);
    let ex = exchange(&c, "/", &[], &[], true, true);
    drop(ex);
    // Headers held, then the client went away before any body.
    let length = body.len().to_string();
    let ex = Exchange::new(&c).request(&post_headers("/", JSON, Some(&length), &[]), &[], true);
    drop(ex);
    assert_eq!(c.counter("aborted"), 0, "trailers ended both bodies");
    held_post(&c).finish();
    assert_eq!(c.counter("aborted"), 1);
}

#[test]
fn an_unreadable_body_chunk_fails_open() {
    let c = config("{}");
    let body = send_params(r#"{"contextId":"c","parts":[]}"#);
    let up = post_through(&c, body.as_bytes(), |stream| stream.corrupt_chunks = true);
    assert_eq!(
        up.statuses,
        vec![status::HEADERS_STOP_ITERATION, status::CONTINUE]
    );
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(c.envoy.nonzero(), vec![("aborted".to_string(), 1)]);
}

/// An exchange whose POST headers the filter holds, for tests that then
/// lay out Envoy's body buffers by hand.
fn held_post(c: &Configured) -> Exchange<'_> {
    held_post_with(c, &[])
}

/// As [`held_post`], with `extra` headers.
fn held_post_with<'c>(c: &'c Configured, extra: &[(&str, &str)]) -> Exchange<'c> {
    let mut ex = Exchange::new(c);
    ex.stream.request_headers = vec![
        (":method".into(), b"POST".to_vec()),
        (":path".into(), b"/".to_vec()),
        ("content-type".into(), JSON.as_bytes().to_vec()),
    ];
    ex.stream.request_headers.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec())),
    );
    let ptr = ex.stream.ptr();
    assert_eq!(
        ffi::envoy_dynamic_module_on_http_filter_request_headers(ptr, ex.module, false),
        status::HEADERS_STOP_ITERATION
    );
    ex
}

/// The body callback for the last chunk: the request goes on with
/// `x-context-id` set to `context`.
fn last_chunk_sets(ex: &mut Exchange<'_>, context: &str) {
    let ptr = ex.stream.ptr();
    assert_eq!(
        ffi::envoy_dynamic_module_on_http_filter_request_body(ptr, ex.module, true),
        status::CONTINUE
    );
    assert!(ex
        .stream
        .request_headers
        .iter()
        .any(|(k, v)| k == "x-context-id" && v == context.as_bytes()));
}

#[test]
fn a_body_received_as_the_buffered_body_is_read_once() {
    // A filter before this one held the body and let it go: the received
    // body is Envoy's buffered body itself.
    let c = config("{}");
    let body = send_params(r#"{"contextId":"ctx-once","parts":[]}"#);
    let mut ex = held_post(&c);
    let chunks = split(body.as_bytes(), &[15]);
    ex.stream.buffered_request = Some(chunks.clone());
    ex.stream.received_request = Some(chunks);
    ex.stream.received_is_buffered = true;
    last_chunk_sets(&mut ex, "ctx-once");
    ex.finish();
    assert_eq!(c.envoy.nonzero(), vec![("context_found".to_string(), 1)]);
}

#[test]
fn held_bytes_not_yet_read_are_read_before_a_separate_received_chunk() {
    // The held body has bytes the filter has not read (held before it saw
    // them) and the callback's chunk is a buffer of its own: the filter reads
    // both, held bytes first. The contextId lies in the received chunk.
    let c = config("{}");
    let body = send_params(r#"{"parts":[],"contextId":"ctx-apart"}"#);
    let (held, received) = body
        .as_bytes()
        .split_at(body.find("ctx-apart").unwrap() - 4);
    let mut ex = held_post(&c);
    ex.stream.buffered_request = Some(split(held, &[10]));
    ex.stream.received_request = Some(vec![received.to_vec()]);
    last_chunk_sets(&mut ex, "ctx-apart");
    // What goes upstream, the held bytes then the chunk, is the body as sent.
    let mut sent = ex.stream.buffered_request.clone().unwrap().concat();
    sent.extend(ex.stream.received_request.clone().unwrap().concat());
    assert_eq!(sent, body.as_bytes());
    ex.finish();
    assert_eq!(c.envoy.nonzero(), vec![("context_found".to_string(), 1)]);
}

#[test]
fn null_pointers_are_answered_with_continue() {
    let c = config("{}");
    let mut stream = FakeStream::default();
    let envoy = stream.ptr();
    let null_envoy = std::ptr::null_mut();
    let null_module = std::ptr::null();
    let module = ffi::envoy_dynamic_module_on_http_filter_new(c.module, envoy);
    for (e, m) in [(null_envoy, module), (envoy, null_module)] {
        assert_eq!(
            ffi::envoy_dynamic_module_on_http_filter_request_headers(e, m, false),
            0
        );
        assert_eq!(
            ffi::envoy_dynamic_module_on_http_filter_request_body(e, m, false),
            0
        );
        assert_eq!(
            ffi::envoy_dynamic_module_on_http_filter_request_trailers(e, m),
            0
        );
        assert_eq!(
            ffi::envoy_dynamic_module_on_http_filter_response_headers(e, m, false),
            0
        );
        assert_eq!(
            ffi::envoy_dynamic_module_on_http_filter_response_body(e, m, false),
            0
        );
        ffi::envoy_dynamic_module_on_http_filter_stream_complete(e, m);
    }
    ffi::envoy_dynamic_module_on_http_filter_destroy(module);
    ffi::envoy_dynamic_module_on_http_filter_destroy(null_module);
    ffi::envoy_dynamic_module_on_http_filter_config_destroy(null_module);
    // A filter without a configuration passes everything through.
    let orphan = ffi::envoy_dynamic_module_on_http_filter_new(null_module, envoy);
    assert!(!orphan.is_null());
    stream.request_headers = vec![(":method".into(), b"POST".to_vec())];
    assert_eq!(
        ffi::envoy_dynamic_module_on_http_filter_request_headers(envoy, orphan, false),
        status::CONTINUE
    );
    ffi::envoy_dynamic_module_on_http_filter_destroy(orphan);
    // A configuration without Envoy's pointer is refused.
    let json = "{}";
    let name = "a2a_affinity";
    let refused = ffi::envoy_dynamic_module_on_http_filter_config_new(
        std::ptr::null_mut(),
        ffi::EnvoyBuffer {
            ptr: name.as_ptr().cast(),
            length: name.len(),
        },
        ffi::EnvoyBuffer {
            ptr: json.as_ptr().cast(),
            length: json.len(),
        },
    );
    assert!(refused.is_null());
}

#[test]
fn a_panic_in_a_hook_fails_open_and_the_stream_is_left_alone() {
    let c = config("{}");
    let body = send_params(r#"{"contextId":"c","parts":[]}"#);
    let mut ex = held_post(&c);
    let ptr = ex.stream.ptr();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let action = ffi::on_stream("test_hook", ptr, ex.module, |_, _| panic!("boom"));
    std::panic::set_hook(hook);
    assert_eq!(action, Action::Continue);
    let logs = take_logs();
    assert!(
        logs.iter()
            .any(|(level, l)| *level == 4 && l.contains("test_hook: unexpected failure (panic)")),
        "{logs:?}"
    );
    // Later hooks of the stream continue at once and read nothing.
    ex.stream.received_request = Some(vec![body.as_bytes().to_vec()]);
    assert_eq!(
        ffi::envoy_dynamic_module_on_http_filter_request_body(ptr, ex.module, true),
        status::CONTINUE
    );
    assert!(!ex
        .stream
        .request_headers
        .iter()
        .any(|(k, _)| k == "x-context-id"));
    ex.finish();
    assert!(c.envoy.nonzero().is_empty(), "{:?}", c.envoy.nonzero());
}

// ------------------------------------------------------------------- gRPC

#[test]
fn grpc_requests_are_read_and_first_turns_minted() {
    let c = config("{}");
    let path = "/a2a.v1.A2AService/SendMessage";
    let grpc = "application/grpc";
    // a2a.v1 SendMessageRequest{ request(1): Message{ context_id(2) } }
    let message = [proto::len(1, b"m-1"), proto::len(2, b"ctx-grpc")].concat();
    let frame = proto::frame(&proto::len(1, &message));
    let up = exchange_as(&c, path, grpc, &[], &[&frame], false, false).finish();
    assert_eq!(up.header("x-context-id").as_deref(), Some("ctx-grpc"));
    assert_eq!(up.body, frame);
    // A first turn: a context_id field is written into the Message.
    let message = proto::len(1, b"m-2");
    let frame = proto::frame(&proto::len(1, &message));
    let split_frame = split(&frame, &[3]);
    let up = exchange_as(&c, path, grpc, &[], &refs(&split_frame), false, false).finish();
    let id = up.header("x-context-id").expect("minted");
    assert!(is_uuid_v4(&id));
    assert_eq!(up.body.len(), frame.len() + 2 + 36);
    assert!(up.body.windows(36).any(|w| w == id.as_bytes()));
    let declared = u32::from_be_bytes(up.body[1..5].try_into().unwrap()) as usize;
    assert_eq!(declared + 5, up.body.len());
    assert_eq!(c.counter("minted"), 1);
    assert_eq!(c.counter("context_found"), 1);
}
