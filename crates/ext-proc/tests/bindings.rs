//! The server over real gRPC, through every A2A binding (JSON-RPC, REST,
//! gRPC): what each request would carry to the upstream once Envoy applied
//! the replies, and the counters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use a2a_affinity_testkit::bodies::{self, rpc03, rpc10_first_turn, Text};
use a2a_affinity_testkit::proto;
use common::*;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, processing_response, CommonResponse,
};

const V1_SEND: &str = "/lf.a2a.v1.A2AService/SendMessage";

fn rest_send(context: Option<&str>) -> String {
    let context = context
        .map(|c| format!(r#","contextId":"{c}""#))
        .unwrap_or_default();
    format!(
        r#"{{"message":{{"messageId":"m-1","role":"ROLE_USER","parts":[{{"text":"hello"}}]{context}}},"configuration":{{"blocking":true}}}}"#
    )
}

// ---------------------------------------------------------------- found

#[tokio::test]
async fn jsonrpc_context_in_the_body_becomes_the_header() {
    let s = server("{}").await;
    let body = rpc03(CTX, "hello");
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", &body),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), Some(CTX));
    assert_eq!(up.body, body.as_bytes(), "body passes unchanged");
    assert_eq!(
        up.header("content-length"),
        None,
        "Envoy removes it in BUFFERED_PARTIAL"
    );
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("context_found", 1)]));
}

#[tokio::test]
async fn rest_context_in_the_body_becomes_the_header() {
    let s = server("{}").await;
    let body = rest_send(Some(CTX));
    for path in ["/v1/message:send", "/tenant-a/message:stream"] {
        let (ex, up) = send_request(
            s.grpc_addr(),
            Mode::BufferedPartial,
            &HttpRequest::json(path, &body),
            None,
        )
        .await;
        assert_eq!(up.header("x-context-id"), Some(CTX), "{path}");
        assert_eq!(up.body, body.as_bytes());
        ex.close().await;
    }
    assert_eq!(counters(&s), counts(&[("context_found", 2)]));
}

#[tokio::test]
async fn grpc_context_in_the_frame_becomes_the_header() {
    let s = server("{}").await;
    for service in [proto::V1, proto::V0] {
        let body = proto::send(service, &proto::message(Some(CTX), None, "hello"));
        let path = format!("{service}/SendMessage");
        let (ex, up) = send_request(
            s.grpc_addr(),
            Mode::BufferedPartial,
            &HttpRequest::grpc(&path, &body),
            None,
        )
        .await;
        assert_eq!(up.header("x-context-id"), Some(CTX), "{service}");
        assert_eq!(up.body, body);
        ex.close().await;
    }
    assert_eq!(counters(&s), counts(&[("context_found", 2)]));
}

#[tokio::test]
async fn a_client_sent_header_is_replaced_not_appended() {
    let s = server("{}").await;
    let body = rpc03(CTX, "hello");
    let request = HttpRequest::json("/", &body)
        .with_header("x-context-id", "from-client-1")
        .with_header("x-context-id", "from-client-2");
    let (ex, up) = send_request(s.grpc_addr(), Mode::BufferedPartial, &request, None).await;
    assert_eq!(up.values("x-context-id"), vec![CTX]);
    assert_eq!(up.body, body.as_bytes());
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("context_found", 1)]));
}

#[tokio::test]
async fn the_configured_header_name_is_used() {
    let s = server(r#"{"header":"X-Session"}"#).await;
    let body = rpc03(CTX, "hello");
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", &body),
        None,
    )
    .await;
    assert_eq!(up.header("x-session"), Some(CTX));
    assert_eq!(up.header("x-context-id"), None);
    ex.close().await;
}

// ---------------------------------------------------------------- minting

#[tokio::test]
async fn jsonrpc_first_turn_gets_a_minted_context_in_body_and_header() {
    let s = server("{}").await;
    let body = rpc10_first_turn("hello");
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", &body),
        None,
    )
    .await;
    let id = up
        .header("x-context-id")
        .expect("minted header")
        .to_string();
    assert!(is_uuid_v4(&id), "{id}");
    let expected = with_minted(&body, "message", "contextId", &id);
    assert_eq!(String::from_utf8(up.body.clone()).unwrap(), expected);
    // BUFFERED_PARTIAL: Envoy drops content-length itself; the server must
    // not set it.
    assert_eq!(up.header("content-length"), None);
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("minted", 1)]));
}

#[tokio::test]
async fn the_minted_reply_sets_no_content_length_in_buffered_partial_mode() {
    let s = server("{}").await;
    let body = rpc10_first_turn("hello");
    let request = HttpRequest::json("/", &body);
    let mut ex = Exchange::open(s.grpc_addr(), Mode::BufferedPartial).await;
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ex.send(request_headers(&headers, false)).await;
    let reply = ex.send(request_body(body.as_bytes(), true)).await;
    let c = common(&reply, "request_body");
    let set: Vec<&str> = c
        .header_mutation
        .iter()
        .flat_map(|m| &m.set_headers)
        .map(|h| h.header.as_ref().unwrap().key.as_str())
        .collect();
    assert_eq!(set, vec!["x-context-id"]);
    assert!(c.body_mutation.is_some());
    ex.close().await;
}

#[tokio::test]
async fn rest_first_turn_in_buffered_mode_gets_a_matching_content_length() {
    let s = server("{}").await;
    let body = rest_send(None);
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::Buffered,
        &HttpRequest::json("/v1/message:send", &body),
        None,
    )
    .await;
    let id = up.header("x-context-id").unwrap().to_string();
    assert!(is_uuid_v4(&id));
    assert_eq!(
        String::from_utf8(up.body.clone()).unwrap(),
        with_minted(&body, "message", "contextId", &id)
    );
    assert_eq!(
        up.header("content-length"),
        Some(up.body.len().to_string().as_str())
    );
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("minted", 1)]));
}

#[tokio::test]
async fn grpc_first_turn_gets_a_context_id_field_and_nothing_else_changes() {
    let s = server("{}").await;
    for service in [proto::V1, proto::V0] {
        let message = proto::message(None, None, "hello");
        let body = proto::send(service, &message);
        let path = format!("{service}/SendMessage");
        let (ex, up) = send_request(
            s.grpc_addr(),
            Mode::BufferedPartial,
            &HttpRequest::grpc(&path, &body),
            None,
        )
        .await;
        let id = up.header("x-context-id").unwrap().to_string();
        assert!(is_uuid_v4(&id));
        assert_eq!(proto::send_context(service, &up.body), Some(id.clone()));
        // The Message has the new field last and every original field as
        // it was; the frame length matches (`unframe` checks it).
        let field = if service == proto::V0 { 1 } else { 2 };
        let new_message = proto::field(proto::unframe(&up.body), field).unwrap();
        let mut fields = proto::fields(&new_message);
        assert_eq!(fields.pop(), Some((2, 2, id.into_bytes())));
        assert_eq!(fields, proto::fields(&message));
        ex.close().await;
    }
    assert_eq!(counters(&s), counts(&[("minted", 2)]));
}

#[tokio::test]
async fn grpc_first_turn_is_minted_from_a_whole_frame_before_the_stream_ends() {
    // HTTP/2 clients often end the stream with an empty DATA frame after
    // the message: Envoy's one body message then holds the whole frame with
    // end_of_stream=false, and the frame is enough to mint.
    let s = server("{}").await;
    let message = proto::message(None, None, "hello");
    let body = proto::send(proto::V1, &message);
    let request = HttpRequest::grpc(V1_SEND, &body);
    let mut ex = Exchange::open(s.grpc_addr(), Mode::BufferedPartial).await;
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ex.send(request_headers(&headers, false)).await;
    let c = common(&ex.send(request_body(&body, false)).await, "request_body");
    let set = &c.header_mutation.as_ref().unwrap().set_headers;
    let id = String::from_utf8(set[0].header.as_ref().unwrap().raw_value.clone()).unwrap();
    match c.body_mutation.and_then(|m| m.mutation) {
        Some(envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation::Body(b)) => {
            assert_eq!(proto::send_context(proto::V1, &b), Some(id));
        }
        other => panic!("{other:?}"),
    }
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("minted", 1)]));
}

#[tokio::test]
async fn buffered_mode_with_request_trailers_still_mints() {
    // BUFFERED sends the whole body with end_of_stream=false when trailers
    // follow; it is still the whole body.
    let s = server("{}").await;
    let body = rpc10_first_turn("hello");
    let request = HttpRequest::json("/", &body);
    let mut ex = Exchange::open(s.grpc_addr(), Mode::Buffered).await;
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ex.send(request_headers(&headers, false)).await;
    let c = common(
        &ex.send(request_body(body.as_bytes(), false)).await,
        "request_body",
    );
    assert!(c.body_mutation.is_some(), "minted");
    let trailers = ex.send(request_trailers()).await;
    assert!(matches!(
        trailers.response,
        Some(processing_response::Response::RequestTrailers(_))
    ));
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("minted", 1)]));
}

#[tokio::test]
async fn a_first_turn_of_exactly_max_scan_bytes_is_minted_in_a_message_not_marked_the_last() {
    // The one body message holds all max_scan_bytes of a body whose
    // content-length says that is all, but is not marked the last: in
    // BUFFERED, trailers follow; in BUFFERED_PARTIAL, the message filled
    // Envoy's limit. Either way it is the whole body, and is minted.
    let body = rpc10_first_turn("at the edge");
    let s = server(&format!(r#"{{"max_scan_bytes":{}}}"#, body.len())).await;
    let request = HttpRequest::json("/", &body);
    let headers = request.header_pairs();
    for mode in [Mode::Buffered, Mode::BufferedPartial] {
        let mut ex = Exchange::open(s.grpc_addr(), mode).await;
        ex.send(request_headers(&headers, false)).await;
        let c = common(
            &ex.send(request_body(body.as_bytes(), false)).await,
            "request_body",
        );
        let minted = match c.body_mutation.and_then(|m| m.mutation) {
            Some(body_mutation::Mutation::Body(b)) => b,
            other => panic!("{mode:?}: not minted: {other:?}"),
        };
        let sent: serde_json::Value = serde_json::from_slice(&minted).unwrap();
        assert!(
            is_uuid_v4(sent["params"]["message"]["contextId"].as_str().unwrap()),
            "{mode:?}"
        );
        ex.close().await;
    }
    assert_eq!(counters(&s), counts(&[("minted", 2)]));
}

#[tokio::test]
async fn minting_off_leaves_a_first_turn_alone() {
    let s = server(r#"{"mint_context_id":false}"#).await;
    let body = rpc10_first_turn("hello");
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", &body),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, body.as_bytes());
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("context_absent", 1)]));
}

// ---------------------------------------------------------------- learning

const TASK_GET_JSONRPC: &str =
    r#"{"jsonrpc":"2.0","id":"2","method":"tasks/get","params":{"id":"task-j1"}}"#;

/// A task-only call through a new stream: JSON-RPC `tasks/get` and REST
/// `GET /tasks/{id}` are both routed to `context`.
async fn assert_task_routed(s: &a2a_affinity_ext_proc::Running, task: &str, context: &str) {
    let get = TASK_GET_JSONRPC.replace("task-j1", task);
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", &get),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), Some(context), "tasks/get {task}");
    assert_eq!(up.body, get.as_bytes());
    ex.close().await;
    let path = format!("/v1/tasks/{task}");
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::new("GET", &path, None, b""),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), Some(context), "GET {path}");
    assert!(up.body.is_empty());
    ex.close().await;
}

#[tokio::test]
async fn a_task_learned_from_a_json_response_routes_task_only_calls() {
    let s = server("{}").await;
    // Before it is learned: unknown, normal load balancing.
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", TASK_GET_JSONRPC),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), None);
    ex.close().await;

    let body = rpc03(CTX, "book a table");
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
        &[br#"{"jsonrpc":"2.0","id":"1","result":{"kind":"task","id":"task-j1","contextId":"ctx-7f3a","status":{"state":"input-required"}}}"#],
    )
    .await;
    ex.close().await;

    assert_task_routed(&s, "task-j1", CTX).await;
    assert_eq!(
        counters(&s),
        counts(&[
            ("context_found", 1),
            ("task_learned", 1),
            ("task_routed", 2),
            ("task_unknown", 1)
        ])
    );
}

#[tokio::test]
async fn a_task_learned_from_a_chunked_sse_response_routes_task_only_calls() {
    let s = server("{}").await;
    let body = rpc03(CTX, "stream it").replace("message/send", "message/stream");
    let (mut ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", &body),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), Some(CTX));
    let events = concat!(
        "data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"kind\":\"task\",\"id\":\"task-sse\",\"contextId\":\"ctx-7f3a\",\"status\":{\"state\":\"submitted\"}}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"kind\":\"status-update\",\"taskId\":\"task-sse\",\"contextId\":\"ctx-7f3a\",\"status\":{\"state\":\"working\"},\"final\":false}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"kind\":\"status-update\",\"taskId\":\"task-sse\",\"contextId\":\"ctx-7f3a\",\"status\":{\"state\":\"completed\"},\"final\":true}}\n\n",
    )
    .as_bytes();
    // Chunks cut inside the task id, inside "data:", and between events.
    let cuts = [70, 73, 150, 188, 300];
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut from = 0;
    for cut in cuts {
        chunks.push(&events[from..cut]);
        from = cut;
    }
    chunks.push(&events[from..]);
    ex.respond("text/event-stream", &chunks).await;
    ex.close().await;

    assert_task_routed(&s, "task-sse", CTX).await;
    // Three events name the pair; it is written once.
    assert_eq!(
        counters(&s),
        counts(&[
            ("context_found", 1),
            ("task_learned", 1),
            ("task_routed", 2)
        ])
    );
}

#[tokio::test]
async fn a_task_learned_from_a_grpc_response_routes_grpc_get_task() {
    let s = server("{}").await;
    let body = proto::send(proto::V1, &proto::message(Some(CTX), None, "hello"));
    let (mut ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::grpc(V1_SEND, &body),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), Some(CTX));
    // SendMessageResponse { task = 1: Task { id = 1, context_id = 2 } }.
    let task = [proto::len(1, b"task-g1"), proto::len(2, CTX.as_bytes())].concat();
    let frame = proto::frame(&proto::len(1, &task));
    ex.respond("application/grpc", &[&frame[..9], &frame[9..]])
        .await;
    ex.close().await;

    let get = proto::frame(&proto::len(2, b"task-g1"));
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::grpc("/lf.a2a.v1.A2AService/GetTask", &get),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), Some(CTX));
    assert_eq!(up.body, get);
    ex.close().await;
    assert_task_routed(&s, "task-g1", CTX).await;
    assert_eq!(
        counters(&s),
        counts(&[
            ("context_found", 1),
            ("task_learned", 1),
            ("task_routed", 3)
        ])
    );
}

#[tokio::test]
async fn learning_off_reads_no_response_and_routes_no_task() {
    let s = server(r#"{"learn_tasks":false}"#).await;
    let body = rpc03(CTX, "hello");
    let mut ex = Exchange::open(s.grpc_addr(), Mode::BufferedPartial)
        .await
        .with_response_mode(
            envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode::None,
        );
    let up = ex
        .request(Mode::BufferedPartial, &HttpRequest::json("/", &body), None)
        .await;
    assert_eq!(up.header("x-context-id"), Some(CTX));
    // Response body mode NONE: only the headers come.
    let reply = ex
        .send(response_headers(
            &[(":status", "200"), ("content-type", "application/json")],
            false,
        ))
        .await;
    assert_eq!(
        common(&reply, "response_headers"),
        CommonResponse::default()
    );
    ex.close().await;
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", TASK_GET_JSONRPC),
        None,
    )
    .await;
    assert_eq!(up.header("x-context-id"), None);
    ex.close().await;
    assert_eq!(
        counters(&s),
        counts(&[("context_found", 1), ("context_absent", 1)])
    );
}

#[tokio::test]
async fn an_observability_mode_stream_learns_without_replies_or_outcomes() {
    // A second ext_proc filter in observability mode ("send and go") lets
    // Envoy pass SSE events on without waiting for the server; its stream
    // gets no replies and counts no request outcome.
    let s = server("{}").await;
    let body = rpc03(CTX, "stream it").replace("message/send", "message/stream");
    let request = HttpRequest::json("/", &body);
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut ex = Exchange::open(s.grpc_addr(), Mode::Untold).await;
    ex.observe(request_headers(&headers, false)).await;
    ex.observe(request_body(body.as_bytes(), true)).await;
    ex.observe(response_headers(
        &[(":status", "200"), ("content-type", "text/event-stream")],
        false,
    ))
    .await;
    ex.observe(response_body(
        b"data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"kind\":\"task\",\"id\":\"task-obs\",\"contextId\":\"ctx-7f3a\"}}\n\n",
        true,
    ))
    .await;
    // `close` checks that the stream ends without a single reply.
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("task_learned", 1)]));
    assert_task_routed(&s, "task-obs", CTX).await;
}

// ---------------------------------------------------------------- client header

#[tokio::test]
async fn client_header_is_kept_by_default_when_the_body_names_no_context() {
    let s = server(r#"{"mint_context_id":false}"#).await;
    let body = rpc10_first_turn("hello");
    let request = HttpRequest::json("/", &body).with_header("x-context-id", "client-ctx");
    let (ex, up) = send_request(s.grpc_addr(), Mode::BufferedPartial, &request, None).await;
    assert_eq!(up.values("x-context-id"), vec!["client-ctx"]);
    assert_eq!(up.body, body.as_bytes());
    ex.close().await;
    assert_eq!(
        counters(&s),
        counts(&[("context_absent", 1), ("client_header_kept", 1)])
    );
}

#[tokio::test]
async fn client_header_is_stripped_when_configured() {
    let s = server(r#"{"mint_context_id":false,"client_header":"strip"}"#).await;
    let body = rpc10_first_turn("hello");
    let request = HttpRequest::json("/", &body).with_header("x-context-id", "client-ctx");
    let (ex, up) = send_request(s.grpc_addr(), Mode::BufferedPartial, &request, None).await;
    assert_eq!(up.values("x-context-id"), Vec::<&str>::new());
    assert_eq!(up.body, body.as_bytes());
    ex.close().await;
    // With a contextId in the body, the body's value replaces it.
    let body = rpc03(CTX, "hello");
    let request = HttpRequest::json("/", &body).with_header("x-context-id", "client-ctx");
    let (ex, up) = send_request(s.grpc_addr(), Mode::BufferedPartial, &request, None).await;
    assert_eq!(up.values("x-context-id"), vec![CTX]);
    ex.close().await;
    assert_eq!(
        counters(&s),
        counts(&[("context_absent", 1), ("context_found", 1)])
    );
}

// ---------------------------------------------------------------- unreadable

#[tokio::test]
async fn invalid_json_passes_unchanged() {
    let s = server("{}").await;
    for body in [
        r#"{"jsonrpc":"2.0","method":"message/send","params":{"message":{"role":"user""#,
        r#"{"jsonrpc":"2.0","method":"message/send","params":{"message":{"role":}}}"#,
    ] {
        let (ex, up) = send_request(
            s.grpc_addr(),
            Mode::BufferedPartial,
            &HttpRequest::json("/", body),
            None,
        )
        .await;
        assert_eq!(up.header("x-context-id"), None);
        assert_eq!(up.body, body.as_bytes());
        ex.close().await;
    }
    assert_eq!(counters(&s), counts(&[("invalid_json", 2)]));
}

#[tokio::test]
async fn requests_that_are_not_a2a_bodies_pass_uninspected() {
    let s = server("{}").await;
    for request in [
        HttpRequest::new("GET", "/.well-known/agent-card.json", None, b""),
        HttpRequest::new("POST", "/upload", Some("text/plain"), b"hello"),
        HttpRequest::json("/", &rpc03(CTX, "x")).with_header("content-encoding", "gzip"),
    ] {
        let (ex, up) = send_request(s.grpc_addr(), Mode::BufferedPartial, &request, None).await;
        assert_eq!(up.header("x-context-id"), None);
        assert_eq!(up.body, request.body);
        ex.close().await;
    }
    assert_eq!(counters(&s), counts(&[("passthrough", 3)]));
}

// ---------------------------------------------------------------- body limits

#[tokio::test]
async fn a_body_over_max_scan_bytes_goes_on_without_a_key() {
    let s = server(r#"{"max_scan_bytes":1024}"#).await;
    let late = bodies::body(4096, Text::Prose, false);
    let early = bodies::body(4096, Text::Prose, true);
    let request = |b: &[u8]| HttpRequest::new("POST", "/", Some("application/json"), b);
    let (ex, up) = send_request(s.grpc_addr(), Mode::BufferedPartial, &request(&late), None).await;
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, late);
    ex.close().await;
    let (ex, up) = send_request(s.grpc_addr(), Mode::BufferedPartial, &request(&early), None).await;
    assert_eq!(up.header("x-context-id"), Some(bodies::CONTEXT_ID));
    assert_eq!(up.body, early);
    ex.close().await;
    assert_eq!(
        counters(&s),
        counts(&[("scan_limit", 1), ("context_found", 1)])
    );
}

#[tokio::test]
async fn a_partial_body_message_is_all_the_server_reads() {
    // The body message holds the first 16 KiB of 64 KiB (Envoy's buffer
    // limit) with end_of_stream=false; the rest passes without the server.
    let s = server("{}").await;
    let request = |b: &[u8]| HttpRequest::new("POST", "/", Some("application/json"), b);
    let early = bodies::body(64 * 1024, Text::Dense, true);
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &request(&early),
        Some(16 * 1024),
    )
    .await;
    assert_eq!(up.header("x-context-id"), Some(bodies::CONTEXT_ID));
    assert_eq!(up.body, early);
    ex.close().await;

    let late = bodies::body(64 * 1024, Text::Dense, false);
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &request(&late),
        Some(16 * 1024),
    )
    .await;
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, late, "intact, no 413");
    ex.close().await;

    // A first turn cut short is not minted (the document is not complete).
    let first = rpc10_first_turn(&"x".repeat(4000));
    let (ex, up) = send_request(
        s.grpc_addr(),
        Mode::BufferedPartial,
        &HttpRequest::json("/", &first),
        Some(1000),
    )
    .await;
    assert_eq!(up.header("x-context-id"), None);
    assert_eq!(up.body, first.as_bytes());
    ex.close().await;
    assert_eq!(
        counters(&s),
        counts(&[("context_found", 1), ("scan_limit", 2)])
    );
}

#[tokio::test]
async fn a_partial_body_without_a_key_still_applies_the_client_header_policy() {
    let s = server(r#"{"client_header":"strip"}"#).await;
    let late = bodies::body(64 * 1024, Text::Prose, false);
    let request = HttpRequest::new("POST", "/", Some("application/json"), &late)
        .with_header("x-context-id", "client-ctx");
    let (ex, up) = send_request(s.grpc_addr(), Mode::BufferedPartial, &request, Some(8192)).await;
    assert_eq!(up.values("x-context-id"), Vec::<&str>::new());
    assert_eq!(up.body, late);
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("scan_limit", 1)]));
}

// ---------------------------------------------------------------- modes

#[tokio::test]
async fn body_mode_none_decides_from_the_headers_and_holds_nothing() {
    let s = server(r#"{"client_header":"strip"}"#).await;
    let body = rpc03(CTX, "hello");
    let request = HttpRequest::json("/", &body).with_header("x-context-id", "client-ctx");
    let (ex, up) = send_request(s.grpc_addr(), Mode::None, &request, None).await;
    // No body reaches the server: no key from it, the strip policy applies
    // in the headers reply.
    assert_eq!(up.values("x-context-id"), Vec::<&str>::new());
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(counters(&s), counts(&[("scan_limit", 1)]));
    ex.close().await;
    assert_eq!(counters(&s), counts(&[("scan_limit", 1)]));
}

#[tokio::test]
async fn a_request_whose_body_never_comes_counts_once_when_the_stream_ends() {
    // No protocol_config (mode untold) and no body message: the server
    // cannot know; the outcome comes with the response or the stream's end.
    let s = server("{}").await;
    let body = rpc03(CTX, "hello");
    let request = HttpRequest::json("/", &body);
    let mut ex = Exchange::open(s.grpc_addr(), Mode::Untold).await;
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let c = common(
        &ex.send(request_headers(&headers, false)).await,
        "request_headers",
    );
    assert_eq!(c, CommonResponse::default());
    ex.respond("application/json", &[b"{}"]).await;
    assert_eq!(counters(&s), counts(&[("aborted", 1)]));
    ex.close().await;
    let mut ex = Exchange::open(s.grpc_addr(), Mode::Untold).await;
    ex.send(request_headers(&headers, false)).await;
    ex.close().await;
    eventually("second aborted", || {
        counters(&s) == counts(&[("aborted", 2)])
    })
    .await;
}

#[tokio::test]
async fn streamed_and_full_duplex_modes_pass_the_body_and_set_no_header() {
    let s = server("{}").await;
    let body = rpc03(CTX, "hello");
    for mode in [Mode::Streamed, Mode::FullDuplex] {
        let (ex, up) =
            send_request(s.grpc_addr(), mode, &HttpRequest::json("/", &body), None).await;
        assert_eq!(up.header("x-context-id"), None, "{mode:?}");
        assert_eq!(up.body, body.as_bytes());
        ex.close().await;
    }
    assert_eq!(counters(&s), counts(&[("scan_limit", 2)]));
}

#[tokio::test]
async fn buffered_mode_and_untold_mode_read_the_body_like_buffered_partial() {
    let s = server("{}").await;
    let body = rpc03(CTX, "hello");
    for mode in [Mode::Buffered, Mode::Untold] {
        let (ex, up) =
            send_request(s.grpc_addr(), mode, &HttpRequest::json("/", &body), None).await;
        assert_eq!(up.header("x-context-id"), Some(CTX), "{mode:?}");
        assert_eq!(up.body, body.as_bytes());
        ex.close().await;
    }
    assert_eq!(counters(&s), counts(&[("context_found", 2)]));
}
