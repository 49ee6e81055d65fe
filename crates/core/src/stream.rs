//! One HTTP stream through the filter, as a state machine with no I/O.
//!
//! Request side: the host hands over the request head; for an A2A call with
//! a body the answer is `Next::NeedBody`, and the host holds the headers
//! and pushes each new run of body bytes in (`on_request_body`) until the
//! answer is anything else. Then it applies the decision: set or remove the
//! hash header, edit the body of a first turn, count the outcome, and let
//! the request go. Every path that cannot produce a key lets the request go
//! unchanged: the core never asks a host to answer a request itself.
//!
//! Response side: for A2A calls, the host pushes each response chunk in as
//! it passes it on (never held), and the task -> context pairs it names go
//! to the host's task store.
//!
//! Each request the host shows the core ends in exactly one outcome, also
//! when the stream ends before a decision (`on_stream_end`).

use log::{debug, error, info};

use crate::classify::{classify, Classification};
use crate::config::{ClientHeader, Config, DecideAt};
use crate::grpc::{self, Call};
use crate::json::request::{BodyKind, Extractor};
use crate::json::response::{Framing, ResponseLearner};
use crate::mint::{self, BodyEdit};
use crate::stats::Outcome;
use crate::store::{Learned, Lookup, TaskStore};
use crate::task_id;
use crate::verdict::{field_value, BodyReader, Step, Verdict};
use std::borrow::Cow;

/// The request head, as the core needs it. Values that are not UTF-8 are
/// passed as `None`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    /// A valid `content-length`, if the request has one.
    pub content_length: Option<u64>,
    /// The client sent the configured hash header itself (any value).
    pub client_header: bool,
}

/// The response head, as the core needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseHead<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
}

/// What the host gives the core besides the stream's bytes: time, random
/// bytes, its task store, and optionally readers kept from finished streams.
// The readers move as boxes so a host can keep them without moving their
// state; the default methods just drop them.
#[allow(clippy::boxed_local)]
pub trait Env {
    /// Seconds since the Unix epoch.
    fn now_secs(&mut self) -> u64;
    /// Fills `out` with random bytes for a minted contextId; `false` if the
    /// host has none (the first turn is then not minted).
    fn random(&mut self, out: &mut [u8; 16]) -> bool;
    fn tasks(&mut self) -> &mut dyn TaskStore;
    /// A JSON request reader, as new. Hosts that keep the readers of
    /// finished streams hand one of those back (reset) instead.
    fn take_extractor(&mut self, kind: BodyKind, max_value_bytes: usize) -> Box<Extractor> {
        Box::new(Extractor::new(kind, max_value_bytes))
    }
    /// A reader the stream no longer needs.
    fn recycle_extractor(&mut self, _extractor: Box<Extractor>) {}
    /// A JSON/SSE response reader, as new (see `take_extractor`).
    fn take_learner(&mut self, framing: Framing, max_value_bytes: usize) -> Box<ResponseLearner> {
        Box::new(ResponseLearner::new(framing, max_value_bytes))
    }
    fn recycle_learner(&mut self, _learner: Box<ResponseLearner>) {}
}

/// What the host does next with the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Let the request go (after applying the decision).
    Continue,
    /// Hold the headers and push more body bytes.
    NeedBody,
    /// The task store deferred a lookup: find this task's context and call
    /// `Stream::task_resolved`; hold the headers meanwhile.
    LookupTask(String),
}

/// What to do with the configured hash header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderOp {
    /// Leave the request's headers as they are.
    Keep,
    /// Replace every value of the header with this one (Envoy hashes every
    /// value of a repeated header, so appending would let a client-sent
    /// value change the hash).
    Set(String),
    /// Remove the header (a client-sent one, with `client_header: strip`).
    Remove,
}

/// The core's answer to one host call on the request side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub next: Next,
    pub header: HeaderOp,
    /// A first turn's body edit. Apply it before the header; if it cannot
    /// be applied, call `Stream::mint_failed` for what to do instead.
    pub body: Option<BodyEdit>,
    /// The outcome to count, once, when the request is decided.
    pub outcome: Option<Outcome>,
    /// Count `client_header_kept` as well.
    pub client_header_kept: bool,
}

impl Decision {
    fn next(next: Next) -> Self {
        Decision {
            next,
            header: HeaderOp::Keep,
            body: None,
            outcome: None,
            client_header_kept: false,
        }
    }

    fn done(outcome: Outcome) -> Self {
        Decision {
            outcome: Some(outcome),
            ..Decision::next(Next::Continue)
        }
    }
}

/// Task pairs stored while reading one response chunk, for the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnTally {
    /// `task_learned`: pairs written.
    pub learned: u32,
    /// `task_evicted`: live entries of other tasks overwritten.
    pub evicted: u32,
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

    fn cut(&mut self, may_be_whole: bool) -> Option<Verdict> {
        match self {
            Reader::Json(extractor) => extractor.cut(may_be_whole),
            Reader::Grpc(extractor) => extractor.cut(may_be_whole),
        }
    }
}

enum RequestState {
    /// Headers not seen yet.
    New,
    /// Holding the headers, reading the body.
    Scanning(Reader),
    /// Holding the headers, waiting for a deferred task lookup; the
    /// message's own contextId, if it named one beside the task.
    Resolving(Option<String>),
    /// Decided, or not inspected.
    Done,
}

/// One HTTP stream.
pub struct Stream {
    request: RequestState,
    /// Body bytes handed to the reader.
    fed: u64,
    client_header: bool,
    content_length: Option<u64>,
    /// The request is an A2A call whose response may name tasks.
    a2a: bool,
    /// The request is an A2A gRPC call.
    grpc: Option<Call>,
    learner: Option<Box<ResponseLearner>>,
    grpc_learner: Option<Box<grpc::ResponseLearner>>,
}

impl Default for Stream {
    fn default() -> Self {
        Stream::new()
    }
}

impl Stream {
    pub fn new() -> Self {
        Stream {
            request: RequestState::New,
            fed: 0,
            client_header: false,
            content_length: None,
            a2a: false,
            grpc: None,
            learner: None,
            grpc_learner: None,
        }
    }

    /// Body bytes the core has read so far.
    pub fn body_read(&self) -> u64 {
        self.fed
    }

    /// Whether the core still waits for request body bytes.
    pub fn reading_body(&self) -> bool {
        matches!(self.request, RequestState::Scanning(_))
    }

    /// The request head arrived; `end_of_stream` if there is no body.
    pub fn on_request_headers(
        &mut self,
        config: &Config,
        head: &RequestHead<'_>,
        end_of_stream: bool,
        env: &mut dyn Env,
    ) -> Decision {
        if !matches!(self.request, RequestState::New) {
            return Decision::next(Next::Continue);
        }
        self.request = RequestState::Done;
        self.client_header = head.client_header;
        self.content_length = head.content_length;
        let max_value = config.max_value_bytes;
        let reader = match classify(
            head.method,
            head.path,
            head.content_type,
            head.content_encoding,
        ) {
            Classification::Pass(_) => return Decision::done(Outcome::Passthrough),
            Classification::RestTask { task_id } => {
                self.a2a = true;
                return self.route_task(config, &task_id, env);
            }
            Classification::JsonRpc => Reader::Json(json_reader(config, BodyKind::JsonRpc, env)),
            Classification::RestSend { .. } => {
                Reader::Json(json_reader(config, BodyKind::RestSend, env))
            }
            Classification::Grpc(call) => {
                self.grpc = Some(call);
                match grpc::RequestExtractor::new(call, max_value) {
                    Some(extractor) => Reader::Grpc(Box::new(extractor)),
                    None => {
                        // An agent-card call names no context or task.
                        self.a2a = true;
                        return self.without_body_key(config, Outcome::ContextAbsent);
                    }
                }
            }
        };
        self.a2a = true;
        if end_of_stream {
            // A POST without a body: nothing to read.
            recycle(reader, env);
            return self.without_body_key(config, Outcome::ContextAbsent);
        }
        self.request = RequestState::Scanning(reader);
        Decision::next(Next::NeedBody)
    }

    /// The next body bytes (only those not pushed before);
    /// `end_of_stream` when no byte follows them.
    ///
    /// Bytes past `max_scan_bytes` are not read: the request then goes on
    /// without a key from the body. When exactly `max_scan_bytes` have been
    /// read and the `content-length`, if any, is exactly that, the body may
    /// end there: the core waits, decides the body whole at its end (an
    /// empty call with `end_of_stream`, or the trailers), and ends the read
    /// as above at the first byte pushed past it. A host that does not want
    /// to copy bytes past `max_scan_bytes` out may stop there, push with
    /// `end_of_stream: false`, and tell the core of the bytes it holds past
    /// them with `on_bytes_past_scan_limit`.
    pub fn on_request_body(
        &mut self,
        config: &Config,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut dyn Env,
    ) -> Decision {
        self.on_request_body_within(config, config.max_scan_bytes, chunk, end_of_stream, env)
    }

    /// `on_request_body`, with the read ending at `scan_limit` bytes
    /// where that is below `max_scan_bytes`: a host that holds the body
    /// under a lower buffer limit of the stream passes that limit.
    pub fn on_request_body_within(
        &mut self,
        config: &Config,
        scan_limit: u64,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut dyn Env,
    ) -> Decision {
        let RequestState::Scanning(reader) = &mut self.request else {
            return Decision::next(Next::Continue);
        };
        let limit = scan_limit.min(config.max_scan_bytes);
        let room = usize::try_from(limit.saturating_sub(self.fed)).unwrap_or(usize::MAX);
        let read = chunk.get(..room).unwrap_or(chunk);
        self.fed += read.len() as u64;
        let mut step = if read.is_empty() {
            Step::NeedMore
        } else {
            reader.feed(read)
        };
        if step == Step::NeedMore {
            let all_read = read.len() == chunk.len();
            if end_of_stream && all_read {
                step = reader.finish();
            } else if self.fed >= limit
                && !(all_read && self.content_length.is_none_or(|n| n == self.fed))
            {
                // At the limit the read ends, unless no byte past it has
                // been shown and the content-length, if any, is what was
                // read: then the body may end right there, and a later call
                // tells (HTTP/1.1 gives the end in an empty call of its
                // own). Envoy frames an HTTP/1.1 body by its length and
                // resets an HTTP/2 stream whose data passes it.
                return self.cut(config, false, env);
            } else {
                return Decision::next(Next::NeedBody);
            }
        }
        self.stop_reading(env);
        self.decide(config, step, env)
    }

    /// Request trailers arrived: HTTP/2 and chunked HTTP/1.1 with trailers
    /// never mark a body chunk as the last, so the body ends here.
    pub fn on_request_trailers(&mut self, config: &Config, env: &mut dyn Env) -> Decision {
        let RequestState::Scanning(reader) = &mut self.request else {
            return Decision::next(Next::Continue);
        };
        // Still reading, so no byte past `max_scan_bytes` was pushed and no
        // content-length announced one: what was read is the whole body.
        let step = reader.finish();
        self.stop_reading(env);
        self.decide(config, step, env)
    }

    /// The host will show no more of the body although it goes on (an
    /// ext_proc server gets one partial body message): the request goes on
    /// as at `max_scan_bytes`, without a key from the body.
    pub fn on_body_cut(&mut self, config: &Config, env: &mut dyn Env) -> Decision {
        if !self.reading_body() {
            return Decision::next(Next::Continue);
        }
        self.cut(config, true, env)
    }

    /// The host holds body bytes past `max_scan_bytes` that it did not push
    /// (it copies none past the limit): the read ends there, as when such a
    /// byte is pushed. Without it, a core that read exactly
    /// `max_scan_bytes` of a body with no `content-length`, or one that
    /// announces exactly that (and a filter before this one grew the body),
    /// would wait for an end that comes after bytes it is never shown.
    pub fn on_bytes_past_scan_limit(&mut self, config: &Config, env: &mut dyn Env) -> Decision {
        if !self.reading_body() {
            return Decision::next(Next::Continue);
        }
        self.cut(config, false, env)
    }

    /// The body is read no further: route by the ids read so far, if any
    /// (`may_be_whole`: see `BodyReader::cut`).
    fn cut(&mut self, config: &Config, may_be_whole: bool, env: &mut dyn Env) -> Decision {
        let verdict = match &mut self.request {
            RequestState::Scanning(reader) => reader.cut(may_be_whole),
            _ => None,
        };
        self.stop_reading(env);
        match verdict {
            Some(verdict) => self.decide(config, Step::Decided(verdict), env),
            None => {
                debug!("no contextId or taskId in the body bytes read (max_scan_bytes or a partial body); request continues without a hash key from the body");
                self.without_body_key(config, Outcome::ScanLimit)
            }
        }
    }

    /// The answer to `Next::LookupTask`: the task's context, if the store
    /// knows it.
    pub fn task_resolved(&mut self, config: &Config, context_id: Option<&str>) -> Decision {
        let RequestState::Resolving(own) = std::mem::replace(&mut self.request, RequestState::Done)
        else {
            return Decision::next(Next::Continue);
        };
        match own {
            Some(own) => self.context_and_task(own, context_id.map(str::to_string)),
            None => self.task_outcome(config, context_id.map(str::to_string)),
        }
    }

    /// The host could not apply a decision's body edit (or its
    /// content-length): what to do instead. The body must stay as it was.
    pub fn mint_failed(&mut self, config: &Config) -> Decision {
        error!("writing a minted contextId into the body failed; request continues without a hash key from the body");
        self.without_body_key(config, Outcome::ContextAbsent)
    }

    /// The host failed while the core was reading (a body it could not
    /// read): the request goes on unchanged, counted as aborted.
    pub fn host_failed(&mut self, env: &mut dyn Env) -> Option<Outcome> {
        self.on_stream_end(env)
    }

    /// The stream is over, whatever its state: readers go back to the host,
    /// and a request still undecided gets its outcome (`Aborted`).
    pub fn on_stream_end(&mut self, env: &mut dyn Env) -> Option<Outcome> {
        let undecided = matches!(
            self.request,
            RequestState::Scanning(_) | RequestState::Resolving(_)
        );
        self.stop_reading(env);
        self.request = RequestState::Done;
        self.stop_learning(env);
        undecided.then_some(Outcome::Aborted)
    }

    fn stop_reading(&mut self, env: &mut dyn Env) {
        if let RequestState::Scanning(reader) =
            std::mem::replace(&mut self.request, RequestState::Done)
        {
            recycle(reader, env);
        }
    }

    fn decide(&mut self, config: &Config, step: Step, env: &mut dyn Env) -> Decision {
        let header = &config.header;
        match step {
            Step::Decided(Verdict::Context(context_id)) => {
                self.with_key(context_id, Outcome::ContextFound)
            }
            Step::Decided(Verdict::Task(task_id)) => self.route_task(config, &task_id, env),
            Step::Decided(Verdict::ContextAndTask { context, task }) => {
                if let Some(carried) = carried_context(config, &task) {
                    // The task's own context, as a learned one would be.
                    if carried == context {
                        return self.with_key(context, Outcome::ContextFound);
                    }
                    debug!("the message's contextId is not the one its task id carries; routed by the task");
                    return self.with_key(carried, Outcome::TaskIdRouted);
                }
                if !config.learn_tasks {
                    return self.with_key(context, Outcome::ContextFound);
                }
                let now = env.now_secs();
                match env.tasks().lookup(&task, now) {
                    Lookup::Found(learned) => self.context_and_task(context, Some(learned)),
                    Lookup::Unknown => self.context_and_task(context, None),
                    Lookup::Deferred => {
                        self.request = RequestState::Resolving(Some(context));
                        Decision::next(Next::LookupTask(task))
                    }
                }
            }
            Step::Decided(Verdict::Mint(site)) if config.mint_context_id => {
                self.mint(config, env, |id| Some(mint::json_edit(&site, id)))
            }
            Step::Decided(Verdict::MintGrpc(site)) if config.mint_context_id => {
                self.mint(config, env, |id| grpc::request::mint_edit(&site, id))
            }
            Step::Decided(Verdict::Mint(_) | Verdict::MintGrpc(_) | Verdict::Absent) => {
                debug!("the body names no contextId");
                self.without_body_key(config, Outcome::ContextAbsent)
            }
            Step::Decided(Verdict::InvalidValue) => {
                info!("the body's contextId or taskId cannot be a {header} value (longer than max_value_bytes, or not a string)");
                self.without_body_key(config, Outcome::InvalidValue)
            }
            Step::InvalidJson(e) => {
                info!("request body is not valid JSON ({e:?}); passed on unchanged");
                self.without_body_key(config, Outcome::InvalidJson)
            }
            Step::InvalidGrpc(why) => {
                // Counted with unreadable JSON: either way the body could
                // not be read and passes on unchanged.
                info!("gRPC request is compressed or not valid protobuf ({why:?}); passed on unchanged");
                self.without_body_key(config, Outcome::InvalidJson)
            }
            Step::NeedMore => self.without_body_key(config, Outcome::ContextAbsent),
        }
    }

    /// Routes by `context_id`, written as a valid header value (see
    /// `verdict::field_value`).
    fn with_key(&self, context_id: String, outcome: Outcome) -> Decision {
        let value = match field_value(&context_id) {
            Cow::Borrowed(_) => context_id,
            Cow::Owned(encoded) => encoded,
        };
        Decision {
            header: HeaderOp::Set(value),
            ..Decision::done(outcome)
        }
    }

    /// No key from the body: the client's own header stays, or goes.
    fn without_body_key(&self, config: &Config, outcome: Outcome) -> Decision {
        let mut decision = Decision::done(outcome);
        if self.client_header {
            match config.client_header {
                ClientHeader::Keep => decision.client_header_kept = true,
                ClientHeader::Strip => decision.header = HeaderOp::Remove,
            }
        }
        decision
    }

    fn route_task(&mut self, config: &Config, task_id: &str, env: &mut dyn Env) -> Decision {
        if let Some(context_id) = carried_context(config, task_id) {
            return self.with_key(context_id, Outcome::TaskIdRouted);
        }
        if !config.learn_tasks {
            return self.without_body_key(config, Outcome::ContextAbsent);
        }
        let now = env.now_secs();
        match env.tasks().lookup(task_id, now) {
            Lookup::Found(context_id) => self.task_outcome(config, Some(context_id)),
            Lookup::Unknown => self.task_outcome(config, None),
            Lookup::Deferred => {
                self.request = RequestState::Resolving(None);
                Decision::next(Next::LookupTask(task_id.to_string()))
            }
        }
    }

    /// A message with both ids: the task's learned context when the task is
    /// known (counted `task_routed` when it differs from the message's own
    /// contextId), else the message's contextId.
    fn context_and_task(&self, own: String, learned: Option<String>) -> Decision {
        match learned {
            Some(learned) if learned != own => {
                debug!(
                    "the message's contextId is not its task's learned context; routed by the task"
                );
                self.with_key(learned, Outcome::TaskRouted)
            }
            _ => self.with_key(own, Outcome::ContextFound),
        }
    }

    fn task_outcome(&self, config: &Config, context_id: Option<String>) -> Decision {
        match context_id {
            Some(context_id) => self.with_key(context_id, Outcome::TaskRouted),
            None => {
                debug!("task not learned (never seen here, expired, or evicted); normal load balancing");
                self.without_body_key(config, Outcome::TaskUnknown)
            }
        }
    }

    /// A fresh contextId for the message and the header.
    fn mint(
        &self,
        config: &Config,
        env: &mut dyn Env,
        edit: impl FnOnce(&str) -> Option<BodyEdit>,
    ) -> Decision {
        let mut random = [0u8; 16];
        if !env.random(&mut random) {
            error!(
                "no randomness for a contextId; request continues without a hash key from the body"
            );
            return self.without_body_key(config, Outcome::ContextAbsent);
        }
        let context_id = mint::uuid_v4(random);
        let Some(mut body) = edit(&context_id) else {
            return self.without_body_key(config, Outcome::ContextAbsent);
        };
        body.content_length = self.content_length.map(|n| n + body.growth());
        Decision {
            body: Some(body),
            ..self.with_key(context_id, Outcome::Minted)
        }
    }

    /// The response head arrived.
    pub fn on_response_headers(
        &mut self,
        config: &Config,
        head: &ResponseHead<'_>,
        env: &mut dyn Env,
    ) {
        if !self.learns_from_response(config) {
            return;
        }
        let Some(content_type) = head.content_type else {
            return;
        };
        let grpc_body = grpc::is_grpc_proto(content_type);
        let framing = Framing::of(content_type);
        if !grpc_body && framing.is_none() {
            return;
        }
        if head
            .content_encoding
            .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
        {
            return;
        }
        if let Some(framing) = framing {
            self.learner = Some(env.take_learner(framing, config.max_value_bytes));
        }
        if let (Some(call), true) = (self.grpc, grpc_body) {
            self.grpc_learner =
                grpc::ResponseLearner::new(call, config.max_value_bytes).map(Box::new);
        }
    }

    /// Whether the response head can start learning: an A2A call with
    /// `learn_tasks` on. When it cannot, a host need not read the response
    /// headers at all (traffic the filter passed at its headers costs no
    /// header read on the way back).
    pub fn learns_from_response(&self, config: &Config) -> bool {
        self.a2a && config.learn_tasks
    }

    /// Whether the core reads the response body (a host may skip copying
    /// chunks out when it does not).
    pub fn reading_response(&self) -> bool {
        self.learner.is_some() || self.grpc_learner.is_some()
    }

    /// The next response chunk, which the host passes on at once.
    pub fn on_response_body(&mut self, chunk: &[u8], env: &mut dyn Env) -> LearnTally {
        let mut tally = LearnTally::default();
        if chunk.is_empty() || !self.reading_response() {
            return tally;
        }
        // The clock is read once per chunk, and only for a chunk that
        // names a task.
        let mut now = None;
        let mut learned = |task: &str, context: &str| {
            let at = *now.get_or_insert_with(|| env.now_secs());
            match env.tasks().learn(task, context, at) {
                Learned::Stored => tally.learned += 1,
                Learned::Evicted => {
                    tally.learned += 1;
                    tally.evicted += 1;
                }
                Learned::Unchanged | Learned::NotStored => {}
            }
        };
        let mut finished = false;
        if let Some(learner) = self.learner.as_mut() {
            learner.feed(chunk, &mut learned);
            finished = learner.finished();
        }
        if let Some(learner) = self.grpc_learner.as_mut() {
            learner.feed(chunk, &mut learned);
        }
        if finished {
            // Nothing more to learn: later chunks need not be read.
            if let Some(learner) = self.learner.take() {
                env.recycle_learner(learner);
            }
        }
        tally
    }

    /// Stops reading the response (a host that cannot copy it out).
    pub fn stop_learning(&mut self, env: &mut dyn Env) {
        if let Some(learner) = self.learner.take() {
            env.recycle_learner(learner);
        }
        self.grpc_learner = None;
    }
}

/// The contextId a task id carries (`task_id`), when the configuration
/// reads it: such a task routes with no store lookup.
fn carried_context(config: &Config, task_id: &str) -> Option<String> {
    if !config.task_id_context {
        return None;
    }
    task_id::context_of(task_id, config.max_value_bytes)
}

/// A JSON body reader from the host's spares, set to decide where the
/// configuration says.
fn json_reader(config: &Config, kind: BodyKind, env: &mut dyn Env) -> Box<Extractor> {
    let mut extractor = env.take_extractor(kind, config.max_value_bytes);
    extractor.decide_early(config.decide_at == DecideAt::FirstId);
    extractor
}

fn recycle(reader: Reader, env: &mut dyn Env) {
    if let Reader::Json(extractor) = reader {
        env.recycle_extractor(extractor);
    }
}
