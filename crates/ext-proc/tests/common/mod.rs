//! Test support: the server started in-process on ephemeral loopback ports,
//! driven over real gRPC with the ext_proc client from `envoy-types`, and a
//! model of what Envoy does with the replies, so that every test checks
//! what the request would carry to the upstream.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::Counter;
use a2a_affinity_ext_proc::{start, Running, Settings, TaskStoreSetting};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, processing_request, processing_response, CommonResponse, HttpBody, HttpHeaders,
    HttpTrailers, ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

pub const CTX: &str = "ctx-7f3a";

/// Starts a server with this filter configuration (JSON) and the memory
/// store.
pub async fn server(config_json: &str) -> Running {
    let config = Config::parse(config_json.as_bytes()).unwrap();
    start(Settings::local(config)).await.unwrap()
}

pub async fn server_with_store(config_json: &str, store: TaskStoreSetting) -> Running {
    let config = Config::parse(config_json.as_bytes()).unwrap();
    let mut settings = Settings::local(config);
    settings.task_store = store;
    start(settings).await.unwrap()
}

/// Waits until `f` holds (counters updated after a stream ends, or by a
/// background write), at most 5 s.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The filter's counters that are not zero, by short name.
pub fn counters(running: &Running) -> BTreeMap<&'static str, u64> {
    Counter::ALL
        .iter()
        .map(|&c| {
            (
                c.name().trim_start_matches("a2a_affinity."),
                running.metrics().counter(c),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

pub fn counts(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

/// Envoy's body mode for the request, as its `protocol_config` tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    BufferedPartial,
    Buffered,
    Streamed,
    None,
    FullDuplex,
    /// No `protocol_config` at all.
    Untold,
}

impl Mode {
    fn proto(self) -> Option<i32> {
        Some(match self {
            Mode::BufferedPartial => BodySendMode::BufferedPartial as i32,
            Mode::Buffered => BodySendMode::Buffered as i32,
            Mode::Streamed => BodySendMode::Streamed as i32,
            Mode::None => BodySendMode::None as i32,
            Mode::FullDuplex => BodySendMode::FullDuplexStreamed as i32,
            Mode::Untold => return None,
        })
    }
}

/// One ext_proc gRPC stream, as Envoy opens one per HTTP request.
pub struct Exchange {
    tx: Option<mpsc::Sender<ProcessingRequest>>,
    rx: Streaming<ProcessingResponse>,
    mode: Mode,
    response_mode: i32,
    first: bool,
}

impl Exchange {
    pub async fn open(addr: SocketAddr, mode: Mode) -> Exchange {
        let mut client = ExternalProcessorClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(8);
        let rx = client
            .process(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Exchange {
            tx: Some(tx),
            rx,
            mode,
            response_mode: BodySendMode::Streamed as i32,
            first: true,
        }
    }

    /// The response body mode the first message announces.
    pub fn with_response_mode(mut self, mode: BodySendMode) -> Self {
        self.response_mode = mode as i32;
        self
    }

    /// Sends one message (with `protocol_config` on the first, as Envoy
    /// does) and returns the reply.
    pub async fn send(&mut self, request: processing_request::Request) -> ProcessingResponse {
        let mut message = ProcessingRequest {
            request: Some(request),
            ..Default::default()
        };
        if std::mem::take(&mut self.first) {
            if let Some(mode) = self.mode.proto() {
                message.protocol_config = Some(ProtocolConfiguration {
                    request_body_mode: mode,
                    response_body_mode: self.response_mode,
                    send_body_without_waiting_for_header_response: false,
                });
            }
        }
        self.tx.as_ref().unwrap().send(message).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.rx.message())
            .await
            .expect("a reply within 5 s")
            .unwrap()
            .expect("a reply, not the end of the stream")
    }

    /// Sends one message as a filter in observability mode does: Envoy
    /// expects no reply.
    pub async fn observe(&mut self, request: processing_request::Request) {
        let message = ProcessingRequest {
            request: Some(request),
            observability_mode: true,
            ..Default::default()
        };
        self.tx.as_ref().unwrap().send(message).await.unwrap();
    }

    /// Half-closes the stream, as Envoy does when the HTTP stream is done,
    /// and waits for the server to end it.
    pub async fn close(mut self) {
        drop(self.tx.take());
        let end = tokio::time::timeout(Duration::from_secs(5), self.rx.message())
            .await
            .expect("the server ends the stream");
        assert!(matches!(end, Ok(None)), "{end:?}");
    }

    /// Drops the stream without finishing it (Envoy resets it when the
    /// client goes away mid-request).
    pub fn reset(self) {
        drop(self);
    }
}

pub fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    HeaderMap {
        headers: headers
            .iter()
            .map(|(k, v)| HeaderValue {
                key: (*k).to_string(),
                raw_value: v.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
    }
}

pub fn request_headers(
    headers: &[(&str, &str)],
    end_of_stream: bool,
) -> processing_request::Request {
    processing_request::Request::RequestHeaders(HttpHeaders {
        headers: Some(header_map(headers)),
        end_of_stream,
        ..Default::default()
    })
}

pub fn request_body(body: &[u8], end_of_stream: bool) -> processing_request::Request {
    processing_request::Request::RequestBody(HttpBody {
        body: body.to_vec(),
        end_of_stream,
        ..Default::default()
    })
}

pub fn request_trailers() -> processing_request::Request {
    processing_request::Request::RequestTrailers(HttpTrailers {
        trailers: Some(header_map(&[("x-trailer", "1")])),
    })
}

pub fn response_headers(
    headers: &[(&str, &str)],
    end_of_stream: bool,
) -> processing_request::Request {
    processing_request::Request::ResponseHeaders(HttpHeaders {
        headers: Some(header_map(headers)),
        end_of_stream,
        ..Default::default()
    })
}

pub fn response_body(body: &[u8], end_of_stream: bool) -> processing_request::Request {
    processing_request::Request::ResponseBody(HttpBody {
        body: body.to_vec(),
        end_of_stream,
        ..Default::default()
    })
}

/// The CommonResponse of a reply, checking that it answers the message
/// kind it should (never an immediate response).
pub fn common(reply: &ProcessingResponse, kind: &str) -> CommonResponse {
    use processing_response::Response as P;
    match (kind, reply.response.as_ref()) {
        ("request_headers", Some(P::RequestHeaders(h))) => h.response.clone().unwrap_or_default(),
        ("response_headers", Some(P::ResponseHeaders(h))) => h.response.clone().unwrap_or_default(),
        ("request_body", Some(P::RequestBody(b))) => b.response.clone().unwrap_or_default(),
        ("response_body", Some(P::ResponseBody(b))) => b.response.clone().unwrap_or_default(),
        _ => panic!("expected a {kind} reply, got {reply:?}"),
    }
}

/// A request as the client sends it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Self {
        let mut headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "agent.example".to_string()),
        ];
        if let Some(ct) = content_type {
            headers.push(("content-type".to_string(), ct.to_string()));
        }
        if !body.is_empty() {
            headers.push(("content-length".to_string(), body.len().to_string()));
        }
        HttpRequest {
            headers,
            body: body.to_vec(),
        }
    }

    pub fn json(path: &str, body: &str) -> Self {
        HttpRequest::new("POST", path, Some("application/json"), body.as_bytes())
    }

    pub fn grpc(path: &str, body: &[u8]) -> Self {
        let mut r = HttpRequest::new("POST", path, Some("application/grpc"), body);
        // gRPC requests carry no content-length.
        r.headers.retain(|(k, _)| k != "content-length");
        r.headers.push(("te".to_string(), "trailers".to_string()));
        r
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// What the upstream receives after Envoy applied the server's replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Upstream {
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.values(name);
        assert!(values.len() <= 1, "{name} repeated: {values:?}");
        values.first().copied()
    }
}

/// Applies a CommonResponse's header mutation the way Envoy 1.40 does:
/// removals, then sets from `raw_value` (a `value` beside it is an error),
/// replacing every value; `content-length` sets are skipped where Envoy
/// removes the header itself.
fn apply_headers(headers: &mut Vec<(String, String)>, common: &CommonResponse, mode: Mode) {
    let Some(m) = &common.header_mutation else {
        return;
    };
    for name in &m.remove_headers {
        headers.retain(|(k, _)| k != name);
    }
    for option in &m.set_headers {
        let h = option.header.as_ref().unwrap();
        assert!(h.value.is_empty(), "values travel in raw_value only: {h:?}");
        let value = String::from_utf8(h.raw_value.clone()).unwrap();
        if h.key == "content-length" && mode != Mode::Buffered {
            continue;
        }
        headers.retain(|(k, _)| *k != h.key);
        headers.push((h.key.clone(), value));
    }
}

/// Sends one HTTP request through a new stream the way Envoy does in
/// `mode`, where the buffer limit lets `partial` bytes of the body into the
/// one body message (all of it when `None`). Returns the stream (for the
/// response side) and what the upstream receives.
pub async fn send_request(
    addr: SocketAddr,
    mode: Mode,
    request: &HttpRequest,
    partial: Option<usize>,
) -> (Exchange, Upstream) {
    let mut exchange = Exchange::open(addr, mode).await;
    let upstream = exchange.request(mode, request, partial).await;
    (exchange, upstream)
}

impl Exchange {
    pub async fn request(
        &mut self,
        mode: Mode,
        request: &HttpRequest,
        partial: Option<usize>,
    ) -> Upstream {
        let no_body = request.body.is_empty();
        let reply = self
            .send(request_headers(&request.header_pairs(), no_body))
            .await;
        let mut headers = request.headers.clone();
        let c = common(&reply, "request_headers");
        assert!(
            c.body_mutation.is_none(),
            "no body mutation in a headers reply"
        );
        apply_headers(&mut headers, &c, mode);
        if matches!(
            mode,
            Mode::BufferedPartial | Mode::Streamed | Mode::FullDuplex | Mode::Untold
        ) {
            // Envoy removes content-length in these modes (the upstream gets
            // a chunked body).
            headers.retain(|(k, _)| k != "content-length");
        }
        let mut body = request.body.clone();
        if !no_body && !matches!(mode, Mode::None | Mode::Streamed) {
            let cut = partial.unwrap_or(body.len()).min(body.len());
            let (first, rest) = body.split_at(cut);
            let reply = self.send(request_body(first, rest.is_empty())).await;
            let c = common(&reply, "request_body");
            if mode == Mode::FullDuplex {
                // The chunk must come back whole.
                match c.body_mutation.and_then(|m| m.mutation) {
                    Some(body_mutation::Mutation::StreamedResponse(s)) => {
                        assert_eq!(s.body, first);
                    }
                    other => panic!("FULL_DUPLEX chunk not echoed: {other:?}"),
                }
            } else {
                apply_headers(&mut headers, &c, mode);
                let first = match c.body_mutation.and_then(|m| m.mutation) {
                    None => first.to_vec(),
                    Some(body_mutation::Mutation::Body(b)) => b,
                    other => panic!("unexpected body mutation {other:?}"),
                };
                body = [first, rest.to_vec()].concat();
            }
        } else if !no_body && mode == Mode::Streamed {
            // Headers already went; the chunk is answered unchanged.
            let reply = self.send(request_body(&body, true)).await;
            let c = common(&reply, "request_body");
            assert_eq!(c, CommonResponse::default());
        }
        if mode == Mode::Buffered {
            if let Some((_, length)) = headers.iter().find(|(k, _)| k == "content-length") {
                assert_eq!(
                    length.parse::<usize>().unwrap(),
                    body.len(),
                    "content-length matches the body"
                );
            }
        }
        Upstream { headers, body }
    }

    /// Sends a response through the stream: headers, then each chunk;
    /// every reply must change nothing.
    pub async fn respond(&mut self, content_type: &str, chunks: &[&[u8]]) {
        let reply = self
            .send(response_headers(
                &[(":status", "200"), ("content-type", content_type)],
                chunks.is_empty(),
            ))
            .await;
        assert_eq!(
            common(&reply, "response_headers"),
            CommonResponse::default()
        );
        for (i, chunk) in chunks.iter().enumerate() {
            let reply = self.send(response_body(chunk, i + 1 == chunks.len())).await;
            assert_eq!(common(&reply, "response_body"), CommonResponse::default());
        }
    }
}

/// `GET path` on the metrics listener, over a plain HTTP/1.1 connection:
/// (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The JSON body with `"contextId":"<id>",` inserted first in the
/// message object, the only change a minted first turn may get.
pub fn with_minted(original: &str, message_key: &str, context_key: &str, id: &str) -> String {
    let at = format!("\"{message_key}\":{{");
    original.replacen(&at, &format!("{at}\"{context_key}\":\"{id}\","), 1)
}

pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && s.chars()
            .filter(|&c| c != '-')
            .all(|c| c.is_ascii_hexdigit())
}
