//! One ext_proc gRPC stream (one HTTP request and its response) driving the
//! core's `Stream`: each `ProcessingRequest` Envoy sends becomes a call on
//! the core, and the core's decision becomes the `ProcessingResponse`.
//!
//! Every A2A decision is the core's. What is ext_proc's, and so lives here:
//!
//! - Envoy decides what the server sees. With the recommended modes (request
//!   headers SEND, request body BUFFERED_PARTIAL) Envoy holds the headers
//!   until the server answers the one body message, so a header mutation in
//!   that answer reaches the router. That message holds the body up to the
//!   stream's buffer limit; when more follows (`end_of_stream: false`) the
//!   server sees nothing more of the body, so if the core still wants bytes
//!   after it, the body read ends there, as at `max_scan_bytes`.
//! - Which mode Envoy uses is read from the `protocol_config` of the first
//!   message. In modes where a header cannot follow from the body (NONE,
//!   STREAMED, FULL_DUPLEX_STREAMED) the request is decided from its headers
//!   alone and the body is never read (FULL_DUPLEX chunks are echoed back,
//!   as that mode requires).
//! - A minted contextId is written with a `body_mutation` replacing the
//!   body of that message; `content-length` is set in the same reply only in
//!   BUFFERED mode (Envoy drops it in the other modes, where it removes the
//!   header itself).
//! - Header values travel in `raw_value` (Envoy 1.40 reads only that field
//!   of a mutation, and rejects one with both fields set).
//! - The server never sends an `immediate_response`: every path answers with
//!   a `CommonResponse`, at worst an empty one (continue unchanged).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::store::TaskStore;
use a2a_affinity_core::stream::{
    Decision, Env, HeaderOp, Next, RequestHead, ResponseHead, Stream as Core,
};
use a2a_affinity_core::verdict::usable_value;
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, processing_request, processing_response, BodyMutation, BodyResponse,
    CommonResponse, HeaderMutation, HeadersResponse, HttpBody, HttpHeaders, ProcessingRequest,
    ProcessingResponse, StreamedBodyResponse, TrailersResponse,
};
use log::{debug, warn};

use crate::metrics::{MessageKind, Metrics};
use crate::store::{Store, StoreView};

/// What every stream of one server shares.
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

/// Envoy's body mode for one direction, as its `protocol_config` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// Not told (an Envoy without `protocol_config`): handled like
    /// BUFFERED_PARTIAL, plus `content-length` on a minted body, which
    /// BUFFERED needs and the other modes drop.
    Unknown,
    None,
    Streamed,
    Buffered,
    BufferedPartial,
    FullDuplex,
}

impl BodyMode {
    fn from_proto(mode: i32) -> Self {
        match BodySendMode::try_from(mode) {
            Ok(BodySendMode::None) => BodyMode::None,
            Ok(BodySendMode::Streamed) => BodyMode::Streamed,
            Ok(BodySendMode::Buffered) => BodyMode::Buffered,
            Ok(BodySendMode::BufferedPartial) => BodyMode::BufferedPartial,
            // GRPC mode (one message per gRPC frame) takes body replies in
            // the same form as FULL_DUPLEX_STREAMED: every chunk echoed.
            Ok(BodySendMode::FullDuplexStreamed | BodySendMode::Grpc) => BodyMode::FullDuplex,
            // A mode newer than these protos: nothing the shell knows how to
            // answer but unchanged, so the body is not read.
            Err(_) => BodyMode::Streamed,
        }
    }

    /// Whether a body message can still change the request headers.
    fn holds_headers(self) -> bool {
        matches!(
            self,
            BodyMode::Unknown | BodyMode::Buffered | BodyMode::BufferedPartial
        )
    }
}

/// A reply to one message, and what kind of message it answered.
pub struct Reply {
    pub kind: Option<MessageKind>,
    /// `None` when Envoy expects no reply (observability mode, or a message
    /// that carries no request).
    pub response: Option<ProcessingResponse>,
}

/// The core's view of this shell: the clock, the OS's randomness, and this
/// stream's handle on the task store.
struct ShellEnv<'a> {
    store: &'a mut StoreView,
}

impl Env for ShellEnv<'_> {
    fn now_secs(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn random(&mut self, out: &mut [u8; 16]) -> bool {
        getrandom::fill(out).is_ok()
    }

    fn tasks(&mut self) -> &mut dyn TaskStore {
        self.store
    }
}

/// Logged once per process: a body mode that cannot carry a body-derived
/// header is a configuration mistake, not a per-request event.
static WARNED_MODE: AtomicBool = AtomicBool::new(false);

pub struct StreamShell {
    shared: Arc<Shared>,
    core: Core,
    store: StoreView,
    request_mode: BodyMode,
    response_mode: BodyMode,
    /// The request's outcome has been counted.
    counted: bool,
    /// The stream comes from a filter in observability mode: Envoy ignores
    /// the replies, so no reply is sent and no request outcome is counted
    /// (the filter instance that does act on the request counts it); tasks
    /// are still learned from the response.
    observer: bool,
}

impl StreamShell {
    pub fn new(shared: Arc<Shared>) -> Self {
        let store = shared.store.view();
        StreamShell {
            shared,
            core: Core::new(),
            store,
            request_mode: BodyMode::Unknown,
            response_mode: BodyMode::Unknown,
            counted: false,
            observer: false,
        }
    }

    /// The kind of a message, for the latency histogram.
    pub fn kind(request: &ProcessingRequest) -> Option<MessageKind> {
        use processing_request::Request as R;
        Some(match request.request.as_ref()? {
            R::RequestHeaders(_) => MessageKind::RequestHeaders,
            R::RequestBody(_) => MessageKind::RequestBody,
            R::RequestTrailers(_) => MessageKind::RequestTrailers,
            R::ResponseHeaders(_) => MessageKind::ResponseHeaders,
            R::ResponseBody(_) => MessageKind::ResponseBody,
            R::ResponseTrailers(_) => MessageKind::ResponseTrailers,
        })
    }

    /// The reply that changes nothing, for a message of `kind`: what the
    /// server answers when it failed on a message.
    pub fn unchanged(kind: MessageKind) -> ProcessingResponse {
        use processing_response::Response as P;
        let response = match kind {
            MessageKind::RequestHeaders => P::RequestHeaders(headers_response(empty())),
            MessageKind::ResponseHeaders => P::ResponseHeaders(headers_response(empty())),
            MessageKind::RequestBody => P::RequestBody(body_response(empty())),
            MessageKind::ResponseBody => P::ResponseBody(body_response(empty())),
            MessageKind::RequestTrailers => P::RequestTrailers(TrailersResponse::default()),
            MessageKind::ResponseTrailers => P::ResponseTrailers(TrailersResponse::default()),
        };
        reply(response)
    }

    /// Handles one message from Envoy.
    pub async fn handle(&mut self, request: ProcessingRequest) -> Reply {
        use processing_request::Request as R;
        use processing_response::Response as P;
        let kind = Self::kind(&request);
        if let Some(protocol) = request.protocol_config {
            self.request_mode = BodyMode::from_proto(protocol.request_body_mode);
            self.response_mode = BodyMode::from_proto(protocol.response_body_mode);
            debug!(
                "ext_proc modes: request body {:?}, response body {:?}",
                self.request_mode, self.response_mode
            );
        }
        self.observer |= request.observability_mode;
        let observe_only = request.observability_mode;
        let response = match request.request {
            None => None,
            Some(R::RequestHeaders(headers)) => Some(P::RequestHeaders(headers_response(
                self.request_headers(headers).await,
            ))),
            Some(R::RequestBody(body)) => Some(P::RequestBody(self.request_body(body).await)),
            Some(R::RequestTrailers(_)) => {
                self.request_trailers();
                Some(P::RequestTrailers(TrailersResponse::default()))
            }
            Some(R::ResponseHeaders(headers)) => {
                self.response_headers(&headers);
                Some(P::ResponseHeaders(headers_response(empty())))
            }
            Some(R::ResponseBody(body)) => Some(P::ResponseBody(self.response_body(body))),
            Some(R::ResponseTrailers(_)) => Some(P::ResponseTrailers(TrailersResponse::default())),
        };
        Reply {
            kind,
            // In observability mode Envoy ignores replies and asks for none.
            response: response.filter(|_| !observe_only).map(reply),
        }
    }

    /// The gRPC stream is over, however it ended: a request still undecided
    /// gets its outcome (aborted).
    pub fn end(&mut self) {
        let outcome = self.core.on_stream_end(&mut ShellEnv {
            store: &mut self.store,
        });
        self.count(outcome);
    }

    async fn request_headers(&mut self, headers: HttpHeaders) -> CommonResponse {
        let config = &self.shared.config;
        let list = headers.headers.map(|h| h.headers).unwrap_or_default();
        let first = |name: &str| {
            list.iter()
                .find(|h| h.key.eq_ignore_ascii_case(name))
                .map(value_of)
        };
        let text = |name: &str| first(name).and_then(|v| std::str::from_utf8(v).ok());
        let head = RequestHead {
            method: text(":method").unwrap_or_default(),
            path: text(":path").unwrap_or_default(),
            content_type: text("content-type"),
            content_encoding: text("content-encoding"),
            content_length: text("content-length").and_then(|v| v.trim().parse().ok()),
            // Any value counts, UTF-8 or not.
            client_header: first(&config.header).is_some(),
        };
        let mut env = ShellEnv {
            store: &mut self.store,
        };
        let mut decision =
            self.core
                .on_request_headers(config, &head, headers.end_of_stream, &mut env);
        if decision.next == Next::NeedBody && !self.request_mode.holds_headers() {
            // The body will not reach the server in time to change the
            // headers (or at all): decide now, from the headers alone.
            if !WARNED_MODE.swap(true, Ordering::Relaxed) {
                warn!("request body mode is {:?}: A2A bodies cannot set the hash header; configure request_body_mode BUFFERED_PARTIAL (requests go on without a key from the body)", self.request_mode);
            }
            decision = self.body_ended();
        }
        let decision = self.settle(decision).await;
        self.apply(decision, None)
    }

    async fn request_body(&mut self, body: HttpBody) -> BodyResponse {
        if self.request_mode == BodyMode::FullDuplex {
            return echo(body);
        }
        if !self.core.reading_body() {
            return body_response(empty());
        }
        let config = &self.shared.config;
        let mut env = ShellEnv {
            store: &mut self.store,
        };
        let mut decision =
            self.core
                .on_request_body(config, &body.body, body.end_of_stream, &mut env);
        if decision.next == Next::NeedBody {
            decision = if self.request_mode == BodyMode::Buffered {
                // BUFFERED sends the whole body in one message; it is marked
                // as not the last only when request trailers follow.
                self.core.on_request_trailers(config, &mut env)
            } else {
                // This message is all of the body the server will see (the
                // rest passes Envoy's buffer limit and goes on unseen).
                debug!(
                    "the body message ended after {} bytes with more to come (Envoy's buffer limit); request continues without a hash key from the body",
                    body.body.len()
                );
                self.body_ended()
            };
        }
        let decision = self.settle(decision).await;
        body_response(self.apply(decision, Some(&body.body)))
    }

    /// Trailers arrive after the body message was answered, and a trailers
    /// reply cannot change the request headers: a request still undecided
    /// here (a mode the shell did not recognise) ends without a key.
    fn request_trailers(&mut self) {
        if self.core.reading_body() {
            let decision = self.body_ended();
            self.count(decision.outcome);
        }
    }

    fn response_headers(&mut self, headers: &HttpHeaders) {
        if self.core.reading_body() {
            // The request went upstream without its body reaching the server
            // (no body message came): nothing of it can be decided now.
            let outcome = self.core.on_stream_end(&mut ShellEnv {
                store: &mut self.store,
            });
            self.count(outcome);
        }
        let mut env = ShellEnv {
            store: &mut self.store,
        };
        let config = &self.shared.config;
        if !self.core.learns_from_response(config) || matches!(self.response_mode, BodyMode::None) {
            return;
        }
        let list = headers
            .headers
            .as_ref()
            .map(|h| h.headers.as_slice())
            .unwrap_or_default();
        let first = |name: &str| {
            list.iter()
                .find(|h| h.key.eq_ignore_ascii_case(name))
                .map(value_of)
        };
        let head = ResponseHead {
            content_type: first("content-type").and_then(|v| std::str::from_utf8(v).ok()),
            // An encoding that is not UTF-8 is not `identity` either.
            content_encoding: first("content-encoding")
                .map(|v| std::str::from_utf8(v).unwrap_or("?")),
        };
        self.core.on_response_headers(config, &head, &mut env);
    }

    /// Each response chunk is answered at once, unchanged; the core reads
    /// the task ids it names on the way.
    fn response_body(&mut self, body: HttpBody) -> BodyResponse {
        if self.core.reading_response() {
            let tally = self.core.on_response_body(
                &body.body,
                &mut ShellEnv {
                    store: &mut self.store,
                },
            );
            self.shared.metrics.count_tally(tally);
        }
        if self.response_mode == BodyMode::FullDuplex {
            return echo(body);
        }
        body_response(empty())
    }

    /// The core's decision when the body read ends before it decided: the
    /// same as reaching `max_scan_bytes` where the body stops (no key from
    /// the body; the client's header kept or stripped as configured).
    fn body_ended(&mut self) -> Decision {
        self.core.on_body_cut(
            &self.shared.config,
            &mut ShellEnv {
                store: &mut self.store,
            },
        )
    }

    /// Resolves a deferred task lookup (Redis): the request waits for it at
    /// most `--redis-timeout-ms`, then goes on as if the task were unknown.
    async fn settle(&mut self, decision: Decision) -> Decision {
        let Next::LookupTask(task_id) = &decision.next else {
            return decision;
        };
        let config = &self.shared.config;
        let redis = self.store.redis_handle();
        let context = match redis {
            Some(redis) => redis.lookup(task_id).await,
            None => None,
        };
        let context = context.filter(|c| {
            let usable = usable_value(c, config.max_value_bytes);
            if !usable {
                self.shared.metrics.store_error();
                warn!("task store returned a value that cannot be a header value; ignored");
            }
            usable
        });
        // `task_resolved` never defers again.
        self.core.task_resolved(config, context.as_deref())
    }

    /// The reply that carries out a decision; `body` is the body of the
    /// message being answered, for a minted contextId.
    fn apply(&mut self, decision: Decision, body: Option<&[u8]>) -> CommonResponse {
        let mut decision = decision;
        let config = &self.shared.config;
        let mut common = empty();
        let mut mutation = HeaderMutation::default();
        if let Some(edit) = decision.body.take() {
            // The edit checks every byte it replaces, so a body that is not
            // the one the core read is never changed.
            match body.and_then(|b| edit.apply(b)) {
                Some(new_body) => {
                    if let (BodyMode::Buffered | BodyMode::Unknown, Some(length)) =
                        (self.request_mode, edit.content_length)
                    {
                        mutation
                            .set_headers
                            .push(set_header("content-length", length.to_string().as_bytes()));
                    }
                    common.body_mutation = Some(BodyMutation {
                        mutation: Some(body_mutation::Mutation::Body(new_body)),
                    });
                }
                None => decision = self.core.mint_failed(config),
            }
        }
        match &decision.header {
            HeaderOp::Keep => {}
            HeaderOp::Set(value) => mutation
                .set_headers
                .push(set_header(&config.header, value.as_bytes())),
            HeaderOp::Remove => mutation.remove_headers.push(config.header.clone()),
        }
        if !mutation.set_headers.is_empty() || !mutation.remove_headers.is_empty() {
            common.header_mutation = Some(mutation);
        }
        self.count(decision.outcome);
        if decision.client_header_kept && !self.observer {
            self.shared.metrics.count(Counter::ClientHeaderKept);
        }
        common
    }

    fn count(&mut self, outcome: Option<Outcome>) {
        if let Some(outcome) = outcome {
            if !self.counted && !self.observer {
                self.counted = true;
                self.shared.metrics.count_outcome(outcome);
            }
        }
    }
}

/// A header's value as Envoy sent it: `raw_value` since Envoy 1.3x, `value`
/// from older data planes.
fn value_of(header: &HeaderValue) -> &[u8] {
    if header.raw_value.is_empty() {
        header.value.as_bytes()
    } else {
        &header.raw_value
    }
}

/// Replaces every value of `name` (a client-sent value must not survive
/// beside ours: Envoy hashes every value of a repeated header).
fn set_header(name: &str, value: &[u8]) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            raw_value: value.to_vec(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn empty() -> CommonResponse {
    CommonResponse::default()
}

fn headers_response(common: CommonResponse) -> HeadersResponse {
    HeadersResponse {
        response: Some(common),
    }
}

fn body_response(common: CommonResponse) -> BodyResponse {
    BodyResponse {
        response: Some(common),
    }
}

/// FULL_DUPLEX_STREAMED hands the body over: every chunk must come back, or
/// the request loses it.
fn echo(body: HttpBody) -> BodyResponse {
    body_response(CommonResponse {
        body_mutation: Some(BodyMutation {
            mutation: Some(body_mutation::Mutation::StreamedResponse(
                StreamedBodyResponse {
                    body: body.body,
                    end_of_stream: body.end_of_stream,
                    ..Default::default()
                },
            )),
        }),
        ..Default::default()
    })
}

fn reply(response: processing_response::Response) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(response),
        ..Default::default()
    }
}
