//! One HTTP stream through the filter: the decisions of every proxy-wasm
//! callback, written against the `Host` trait so they run on the host target.
//!
//! Request side: classify from the headers; for an A2A body, hold the
//! headers (Envoy >= 1.35 with `allow_on_headers_stop_iteration: true` keeps
//! them writable) and feed only the newly arrived body bytes to the
//! extractor until it has a verdict, then set the header and let the request
//! go. Every failure continues the request unchanged: the filter never
//! answers a request itself.
//!
//! Response side: for A2A calls, pass every chunk on at once and learn the
//! task -> context pairs it names.

use std::rc::Rc;

use crate::a2a::{classify, Classification};
use crate::config::{ClientHeader, Config};
use crate::extract::{BodyKind, BodyReader, Extractor, Step, Verdict};
use crate::grpc;
use crate::host::{Host, Level};
use crate::learn::{Framing, ResponseLearner, TaskStore};
use crate::mint;
use crate::stats::Counter;

/// Writes a contextId into a buffered request body, in the binding's
/// encoding; `None` leaves the body alone.
type InsertContextId = dyn Fn(&[u8], &str) -> Option<Vec<u8>>;

/// The first body read copies at most this much; each later one twice the
/// last, up to `MAX_READ_WINDOW`.
const FIRST_READ_WINDOW: usize = 2048;
const MAX_READ_WINDOW: usize = 64 * 1024;

/// What a callback tells Envoy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Headers: stop iteration (body callbacks keep coming). Body: buffer
    /// this chunk and wait for more.
    Pause,
}

/// Shared by every stream of one plugin instance.
pub struct Plugin {
    pub config: Config,
    pub tasks: TaskStore,
}

impl Plugin {
    pub fn new(config: Config) -> Self {
        let tasks = TaskStore::new(config.task_capacity, config.task_ttl_secs);
        Plugin { config, tasks }
    }
}

enum RequestState {
    /// Not inspected, or already decided.
    Done,
    /// Headers held; reading the body.
    Scanning(Box<dyn BodyReader>),
}

pub struct Stream {
    plugin: Rc<Plugin>,
    request: RequestState,
    /// Body bytes already handed to the extractor.
    fed: usize,
    /// The request arrived with the configured hash header (from the
    /// client); read with the other request headers.
    client_header: bool,
    /// The request's `content-length`, if it had a valid one.
    content_length: Option<u64>,
    /// Bytes to copy out of Envoy in the next body read.
    window: usize,
    /// The request is an A2A call whose response may name tasks.
    a2a: bool,
    learner: Option<Box<ResponseLearner>>,
    /// The request is an A2A gRPC call.
    grpc: Option<grpc::Call>,
    grpc_learner: Option<Box<grpc::ResponseLearner>>,
}

impl Stream {
    pub fn new(plugin: Rc<Plugin>) -> Self {
        Stream {
            plugin,
            request: RequestState::Done,
            fed: 0,
            client_header: false,
            content_length: None,
            window: FIRST_READ_WINDOW,
            a2a: false,
            learner: None,
            grpc: None,
            grpc_learner: None,
        }
    }

    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Action {
        // Every request header the stream needs, in one host call: the
        // hash header and the length are used only on some paths, later.
        let plugin = Rc::clone(&self.plugin);
        let values: [Option<Vec<u8>>; 6] = host
            .request_headers(&[
                ":method",
                ":path",
                "content-type",
                "content-encoding",
                &plugin.config.header,
                "content-length",
            ])
            .try_into()
            .unwrap_or_default();
        // Any value counts as a client header, UTF-8 or not.
        self.client_header = values[4].is_some();
        let [method, path, content_type, content_encoding, _, content_length] =
            values.map(|v| v.and_then(|v| String::from_utf8(v).ok()));
        self.content_length = content_length.and_then(|v| v.trim().parse::<u64>().ok());
        let (method, path) = (method.unwrap_or_default(), path.unwrap_or_default());
        let max_value = self.plugin.config.max_value_bytes;
        let reader: Box<dyn BodyReader> = match classify(
            &method,
            &path,
            content_type.as_deref(),
            content_encoding.as_deref(),
        ) {
            Classification::Pass(_) => {
                host.count(Counter::Passthrough);
                return Action::Continue;
            }
            Classification::RestTask { task_id } => {
                self.a2a = true;
                self.route_task(host, &task_id);
                return Action::Continue;
            }
            Classification::JsonRpc => Box::new(Extractor::new(BodyKind::JsonRpc, max_value)),
            Classification::RestSend { .. } => {
                Box::new(Extractor::new(BodyKind::RestSend, max_value))
            }
            Classification::Grpc(call) => {
                self.grpc = Some(call);
                match grpc::RequestExtractor::new(call, max_value) {
                    Some(extractor) => Box::new(extractor),
                    None => {
                        // An agent-card call names no context or task.
                        self.a2a = true;
                        self.without_body_key(host, Counter::ContextAbsent);
                        return Action::Continue;
                    }
                }
            }
        };
        self.a2a = true;
        if end_of_stream {
            // A POST without a body: nothing to read.
            self.without_body_key(host, Counter::ContextAbsent);
            return Action::Continue;
        }
        self.request = RequestState::Scanning(reader);
        Action::Pause
    }

    /// `body_size` is everything Envoy has buffered for this request so far.
    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let RequestState::Scanning(extractor) = &mut self.request else {
            return Action::Continue;
        };
        let limit = usize::try_from(self.plugin.config.max_scan_bytes).unwrap_or(usize::MAX);
        let readable = body_size.min(limit);
        let mut step = Step::NeedMore;
        // Copy the new bytes out of Envoy in growing windows, not all at
        // once: Envoy may have buffered a whole connection read (up to 1 MiB)
        // by the first callback, and the contextId usually sits in the first
        // few hundred bytes. Doubling keeps the number of host calls small
        // when it comes last.
        while readable > self.fed && step == Step::NeedMore {
            let len = (readable - self.fed).min(self.window);
            match host.request_body(self.fed, len) {
                Ok(chunk) if !chunk.is_empty() => {
                    self.fed += chunk.len();
                    step = extractor.feed(&chunk);
                    self.window = (self.window * 2).min(MAX_READ_WINDOW);
                }
                Ok(_) => break,
                Err(e) => {
                    host.log(Level::Error, &format!("reading the request body failed ({}); request continues without a hash key", e.0));
                    self.request = RequestState::Done;
                    return Action::Continue;
                }
            }
        }
        if step == Step::NeedMore {
            if end_of_stream && body_size <= limit {
                step = extractor.finish();
            } else if self.fed >= limit {
                host.log(
                    Level::Debug,
                    &format!("no verdict in the first {limit} body bytes (max_scan_bytes); request continues without a hash key from the body"),
                );
                self.request = RequestState::Done;
                self.without_body_key(host, Counter::ScanLimit);
                return Action::Continue;
            } else {
                return Action::Pause;
            }
        }
        self.request = RequestState::Done;
        self.apply(host, step, body_size);
        Action::Continue
    }

    /// HTTP/2 and chunked HTTP/1.1 with trailers never mark a body callback
    /// as the end of the stream: the body ends here.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Action {
        let RequestState::Scanning(extractor) = &mut self.request else {
            return Action::Continue;
        };
        let limit = usize::try_from(self.plugin.config.max_scan_bytes).unwrap_or(usize::MAX);
        let step = if self.fed >= limit {
            None
        } else {
            Some(extractor.finish())
        };
        let buffered = self.fed;
        self.request = RequestState::Done;
        match step {
            Some(step) => self.apply(host, step, buffered),
            None => self.without_body_key(host, Counter::ScanLimit),
        }
        Action::Continue
    }

    fn apply(&mut self, host: &mut dyn Host, step: Step, buffered: usize) {
        let header = &self.plugin.config.header;
        match step {
            Step::Decided(Verdict::Context(context_id)) => {
                self.set_key(host, &context_id, Counter::ContextFound);
            }
            Step::Decided(Verdict::Task(task_id)) => self.route_task(host, &task_id),
            Step::Decided(Verdict::Mint(site)) if self.plugin.config.mint_context_id => {
                let insert = move |body: &[u8], id: &str| mint::insert_context_id(body, &site, id);
                if !self.mint(host, &insert, buffered) {
                    self.without_body_key(host, Counter::ContextAbsent);
                }
            }
            Step::Decided(Verdict::MintGrpc(site)) if self.plugin.config.mint_context_id => {
                let insert = move |body: &[u8], id: &str| grpc::insert_context_id(body, &site, id);
                if !self.mint(host, &insert, buffered) {
                    self.without_body_key(host, Counter::ContextAbsent);
                }
            }
            Step::Decided(Verdict::Mint(_) | Verdict::MintGrpc(_) | Verdict::Absent) => {
                host.log(Level::Debug, "the body names no contextId");
                self.without_body_key(host, Counter::ContextAbsent);
            }
            Step::Decided(Verdict::InvalidValue) => {
                host.log(
                    Level::Info,
                    &format!("the body's contextId or taskId cannot be a {header} value (empty, longer than max_value_bytes, control character, or not a string)"),
                );
                self.without_body_key(host, Counter::InvalidValue);
            }
            Step::InvalidJson(e) => {
                host.log(
                    Level::Info,
                    &format!("request body is not valid JSON ({e:?}); passed on unchanged"),
                );
                self.without_body_key(host, Counter::InvalidJson);
            }
            Step::InvalidGrpc(why) => {
                // Counted with unreadable JSON: either way the body could
                // not be read and passes on unchanged.
                host.log(
                    Level::Info,
                    &format!("gRPC request is compressed or not valid protobuf ({why:?}); passed on unchanged"),
                );
                self.without_body_key(host, Counter::InvalidJson);
            }
            Step::NeedMore => self.without_body_key(host, Counter::ContextAbsent),
        }
    }

    fn set_key(&self, host: &mut dyn Host, value: &str, counter: Counter) -> bool {
        match host.replace_request_header(&self.plugin.config.header, value) {
            Ok(()) => {
                host.count(counter);
                true
            }
            Err(e) => {
                host.log(
                    Level::Error,
                    &format!("setting {} failed ({})", self.plugin.config.header, e.0),
                );
                false
            }
        }
    }

    /// No key from the body: the client's own header stays, or goes.
    fn without_body_key(&self, host: &mut dyn Host, outcome: Counter) {
        host.count(outcome);
        let header = &self.plugin.config.header;
        if !self.client_header {
            return;
        }
        match self.plugin.config.client_header {
            ClientHeader::Keep => host.count(Counter::ClientHeaderKept),
            ClientHeader::Strip => {
                if let Err(e) = host.remove_request_header(header) {
                    host.log(Level::Error, &format!("removing {header} failed ({})", e.0));
                }
            }
        }
    }

    fn route_task(&self, host: &mut dyn Host, task_id: &str) {
        if !self.plugin.config.learn_tasks {
            self.without_body_key(host, Counter::ContextAbsent);
            return;
        }
        match self.plugin.tasks.lookup(host, task_id) {
            Some(context_id) => {
                self.set_key(host, &context_id, Counter::TaskRouted);
            }
            None => {
                host.log(
                    Level::Debug,
                    "task not learned (never seen by this Envoy, expired, or evicted); normal load balancing",
                );
                self.without_body_key(host, Counter::TaskUnknown);
            }
        }
    }

    /// Writes a fresh contextId into the message and the header. Any host
    /// error leaves the body as it was.
    fn mint(&self, host: &mut dyn Host, insert: &InsertContextId, buffered: usize) -> bool {
        let mut random = [0u8; 16];
        if let Err(e) = host.random(&mut random) {
            host.log(
                Level::Error,
                &format!("no randomness for a contextId ({})", e.0),
            );
            return false;
        }
        let context_id = mint::uuid_v4(random);
        let body = match host.request_body(0, buffered) {
            Ok(body) if body.len() == buffered => body,
            _ => return false,
        };
        let Some(new_body) = insert(&body, &context_id) else {
            return false;
        };
        let content_length = self.content_length;
        if host.replace_request_body(buffered, &new_body).is_err() {
            return false;
        }
        if let Some(length) = content_length {
            let grown = length + (new_body.len() - body.len()) as u64;
            if host
                .replace_request_header("content-length", &grown.to_string())
                .is_err()
            {
                // Body and length must agree: put the original body back.
                let _ = host.replace_request_body(new_body.len(), &body);
                return false;
            }
        }
        self.set_key(host, &context_id, Counter::Minted)
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host) -> Action {
        if !self.a2a || !self.plugin.config.learn_tasks {
            return Action::Continue;
        }
        let [content_type, content_encoding]: [Option<Vec<u8>>; 2] = host
            .response_headers(&["content-type", "content-encoding"])
            .try_into()
            .unwrap_or_default();
        let Some(content_type) = content_type.and_then(|v| String::from_utf8(v).ok()) else {
            return Action::Continue;
        };
        let grpc_body = grpc::is_grpc_proto(&content_type);
        let framing = Framing::of(&content_type);
        if !grpc_body && framing.is_none() {
            return Action::Continue;
        }
        if content_encoding.is_some_and(|v| !v.eq_ignore_ascii_case(b"identity")) {
            return Action::Continue;
        }
        let max_value = self.plugin.config.max_value_bytes;
        if let Some(framing) = framing {
            self.learner = Some(Box::new(ResponseLearner::new(framing, max_value)));
        }
        if let (Some(call), true) = (self.grpc, grpc_body) {
            self.grpc_learner = grpc::ResponseLearner::new(call, max_value).map(Box::new);
        }
        Action::Continue
    }

    /// `chunk_size`: the bytes of this chunk (the response is never held, so
    /// Envoy hands over one chunk at a time).
    pub fn on_response_body(&mut self, host: &mut dyn Host, chunk_size: usize) -> Action {
        if chunk_size == 0 || (self.learner.is_none() && self.grpc_learner.is_none()) {
            return Action::Continue;
        }
        let chunk = match host.response_body(0, chunk_size) {
            Ok(chunk) => chunk,
            Err(_) => {
                self.learner = None;
                self.grpc_learner = None;
                return Action::Continue;
            }
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut learned =
            |task: &str, context: &str| pairs.push((task.to_string(), context.to_string()));
        if let Some(learner) = self.learner.as_mut() {
            learner.feed(&chunk, &mut learned);
            if learner.finished() {
                // Nothing more to learn: later chunks are not copied out.
                self.learner = None;
            }
        }
        if let Some(learner) = self.grpc_learner.as_mut() {
            learner.feed(&chunk, &mut learned);
        }
        for (task, context) in pairs {
            if let Err(e) = self.plugin.tasks.learn(host, &task, &context) {
                host.log(
                    Level::Warn,
                    &format!("storing a learned task failed ({})", e.0),
                );
            }
        }
        Action::Continue
    }
}
