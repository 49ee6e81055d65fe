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

use std::cell::RefCell;
use std::rc::Rc;

use crate::a2a::{classify, Classification};
use crate::config::{ClientHeader, Config};
use crate::extract::{BodyKind, BodyReader, Extractor, Step, Verdict};
use crate::grpc;
use crate::host::{first_values, Host, Level};
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
    /// JSON readers that finished their stream, ready for the next one.
    spare: RefCell<Spare>,
}

/// Readers kept per kind, at most this many each: enough for the streams
/// one worker has in flight at a time, bounded so a burst does not hold its
/// peak memory for ever.
const SPARE_READERS: usize = 64;

/// The JSON readers of finished streams, kept so that the next stream
/// reuses their scanner state instead of allocating it: a reader is reset
/// when it is put back and starts the next stream exactly as a new one.
// Boxed: a reader moves between a stream and this list as one pointer, and
// the stream's state stays small while it holds none.
#[allow(clippy::vec_box)]
#[derive(Default)]
struct Spare {
    json_rpc: Vec<Box<Extractor>>,
    rest_send: Vec<Box<Extractor>>,
    json: Vec<Box<ResponseLearner>>,
    sse: Vec<Box<ResponseLearner>>,
}

#[allow(clippy::vec_box)]
impl Spare {
    fn extractors(&mut self, kind: BodyKind) -> &mut Vec<Box<Extractor>> {
        match kind {
            BodyKind::JsonRpc => &mut self.json_rpc,
            BodyKind::RestSend => &mut self.rest_send,
        }
    }

    fn learners(&mut self, framing: Framing) -> &mut Vec<Box<ResponseLearner>> {
        match framing {
            Framing::Json => &mut self.json,
            Framing::Sse => &mut self.sse,
        }
    }
}

impl Plugin {
    pub fn new(config: Config) -> Self {
        let tasks = TaskStore::new(config.task_capacity, config.task_ttl_secs);
        Plugin {
            config,
            tasks,
            spare: RefCell::default(),
        }
    }

    fn extractor(&self, kind: BodyKind) -> Box<Extractor> {
        let max_value = self.config.max_value_bytes;
        self.reuse(
            |spare| spare.extractors(kind),
            || Extractor::new(kind, max_value),
        )
    }

    fn put_back_extractor(&self, extractor: Box<Extractor>) {
        let kind = extractor.kind();
        self.keep(|spare| spare.extractors(kind), extractor, Extractor::reset);
    }

    fn learner(&self, framing: Framing) -> Box<ResponseLearner> {
        let max_value = self.config.max_value_bytes;
        self.reuse(
            |spare| spare.learners(framing),
            || ResponseLearner::new(framing, max_value),
        )
    }

    fn put_back_learner(&self, learner: Box<ResponseLearner>) {
        let framing = learner.framing();
        self.keep(
            |spare| spare.learners(framing),
            learner,
            ResponseLearner::reset,
        );
    }

    /// A kept reader from the list `pick` chooses, or a new one.
    #[allow(clippy::vec_box)]
    fn reuse<T>(
        &self,
        pick: impl FnOnce(&mut Spare) -> &mut Vec<Box<T>>,
        new: impl FnOnce() -> T,
    ) -> Box<T> {
        let kept = self
            .spare
            .try_borrow_mut()
            .ok()
            .and_then(|mut spare| pick(&mut spare).pop());
        kept.unwrap_or_else(|| Box::new(new()))
    }

    /// Keeps a reader for the next stream, reset, unless its list is full.
    #[allow(clippy::vec_box)]
    fn keep<T>(
        &self,
        pick: impl FnOnce(&mut Spare) -> &mut Vec<Box<T>>,
        mut reader: Box<T>,
        reset: impl FnOnce(&mut T),
    ) {
        if let Ok(mut spare) = self.spare.try_borrow_mut() {
            let kept = pick(&mut spare);
            if kept.len() < SPARE_READERS {
                reset(&mut reader);
                kept.push(reader);
            }
        }
    }
}

/// The request body reader of one binding.
enum Reader {
    Json(Box<Extractor>),
    Grpc(Box<grpc::RequestExtractor>),
}

impl Reader {
    fn feed(&mut self, chunk: &[u8]) -> Step {
        match self {
            Reader::Json(extractor) => extractor.feed(chunk),
            Reader::Grpc(extractor) => extractor.feed(chunk),
        }
    }

    fn finish(&mut self) -> Step {
        match self {
            Reader::Json(extractor) => extractor.finish(),
            Reader::Grpc(extractor) => extractor.finish(),
        }
    }
}

enum RequestState {
    /// Not inspected, or already decided.
    Done,
    /// Headers held; reading the body.
    Scanning(Reader),
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
        let map = host.request_header_map();
        let values = first_values(
            &map,
            [
                ":method",
                ":path",
                "content-type",
                "content-encoding",
                &plugin.config.header,
                "content-length",
            ],
        );
        // Any value counts as a client header, UTF-8 or not.
        self.client_header = values[4].is_some();
        let [method, path, content_type, content_encoding, _, content_length] =
            values.map(|v| v.and_then(|v| std::str::from_utf8(v).ok()));
        self.content_length = content_length.and_then(|v| v.trim().parse::<u64>().ok());
        let max_value = self.plugin.config.max_value_bytes;
        let reader = match classify(
            method.unwrap_or_default(),
            path.unwrap_or_default(),
            content_type,
            content_encoding,
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
            Classification::JsonRpc => Reader::Json(plugin.extractor(BodyKind::JsonRpc)),
            Classification::RestSend { .. } => Reader::Json(plugin.extractor(BodyKind::RestSend)),
            Classification::Grpc(call) => {
                self.grpc = Some(call);
                match grpc::RequestExtractor::new(call, max_value) {
                    Some(extractor) => Reader::Grpc(Box::new(extractor)),
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
            self.put_back(reader);
            self.without_body_key(host, Counter::ContextAbsent);
            return Action::Continue;
        }
        self.request = RequestState::Scanning(reader);
        Action::Pause
    }

    /// The request body is no longer read: its reader goes back to the
    /// plugin for the next stream.
    fn stop_reading(&mut self) {
        if let RequestState::Scanning(reader) =
            std::mem::replace(&mut self.request, RequestState::Done)
        {
            self.put_back(reader);
        }
    }

    fn put_back(&self, reader: Reader) {
        if let Reader::Json(extractor) = reader {
            self.plugin.put_back_extractor(extractor);
        }
    }

    /// `body_size` is everything Envoy has buffered for this request so far.
    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let RequestState::Scanning(reader) = &mut self.request else {
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
                    step = reader.feed(&chunk);
                    self.window = (self.window * 2).min(MAX_READ_WINDOW);
                }
                Ok(_) => break,
                Err(e) => {
                    host.log(Level::Error, &format!("reading the request body failed ({}); request continues without a hash key", e.0));
                    self.stop_reading();
                    return Action::Continue;
                }
            }
        }
        if step == Step::NeedMore {
            if end_of_stream && body_size <= limit {
                step = reader.finish();
            } else if self.fed >= limit {
                host.log(
                    Level::Debug,
                    &format!("no verdict in the first {limit} body bytes (max_scan_bytes); request continues without a hash key from the body"),
                );
                self.stop_reading();
                self.without_body_key(host, Counter::ScanLimit);
                return Action::Continue;
            } else {
                return Action::Pause;
            }
        }
        self.stop_reading();
        self.apply(host, step, body_size);
        Action::Continue
    }

    /// HTTP/2 and chunked HTTP/1.1 with trailers never mark a body callback
    /// as the end of the stream: the body ends here.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Action {
        let RequestState::Scanning(reader) = &mut self.request else {
            return Action::Continue;
        };
        let limit = usize::try_from(self.plugin.config.max_scan_bytes).unwrap_or(usize::MAX);
        let step = if self.fed >= limit {
            None
        } else {
            Some(reader.finish())
        };
        let buffered = self.fed;
        self.stop_reading();
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
        let map = host.response_header_map();
        let [content_type, content_encoding] =
            first_values(&map, ["content-type", "content-encoding"]);
        let Some(content_type) = content_type.and_then(|v| std::str::from_utf8(v).ok()) else {
            return Action::Continue;
        };
        let grpc_body = grpc::is_grpc_proto(content_type);
        let framing = Framing::of(content_type);
        if !grpc_body && framing.is_none() {
            return Action::Continue;
        }
        if content_encoding.is_some_and(|v| !v.eq_ignore_ascii_case(b"identity")) {
            return Action::Continue;
        }
        if let Some(framing) = framing {
            self.learner = Some(self.plugin.learner(framing));
        }
        if let (Some(call), true) = (self.grpc, grpc_body) {
            let max_value = self.plugin.config.max_value_bytes;
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
                self.stop_learning();
                return Action::Continue;
            }
        };
        let plugin = Rc::clone(&self.plugin);
        let mut learned = |task: &str, context: &str| {
            if let Err(e) = plugin.tasks.learn(host, task, context) {
                host.log(
                    Level::Warn,
                    &format!("storing a learned task failed ({})", e.0),
                );
            }
        };
        if let Some(learner) = self.learner.as_mut() {
            learner.feed(&chunk, &mut learned);
            if learner.finished() {
                // Nothing more to learn: later chunks are not copied out.
                if let Some(learner) = self.learner.take() {
                    plugin.put_back_learner(learner);
                }
            }
        }
        if let Some(learner) = self.grpc_learner.as_mut() {
            learner.feed(&chunk, &mut learned);
        }
        Action::Continue
    }

    fn stop_learning(&mut self) {
        if let Some(learner) = self.learner.take() {
            self.plugin.put_back_learner(learner);
        }
        self.grpc_learner = None;
    }
}

impl Drop for Stream {
    /// A stream that ends (or is reset) while a reader is still in use
    /// hands it back like one that finished reading.
    fn drop(&mut self) {
        self.stop_reading();
        self.stop_learning();
    }
}
