//! One HTTP stream in the dynamic-module shell: each Envoy hook turned into
//! a call on the core's `Stream`, and the core's decision applied through
//! the [`Host`].
//!
//! What is this host's and so lives here:
//! - the request body is held by answering Envoy "stop" (headers:
//!   `StopIteration`; body: `StopIterationAndWatermark`), and each body
//!   callback hands the core only the bytes it has not seen: Envoy moves
//!   every held chunk into the *buffered* body, and shows the new one, the
//!   last one too, as the *received* body (or, when a filter before this one
//!   held the body and lets it go, the buffered body itself), so the new
//!   bytes are those past the count already read in "buffered, then
//!   received". When every buffered byte has been read, which is the rule,
//!   only the received chunk is fetched;
//! - the hash header is set from the body callback while the headers are
//!   still held, then the request continues: plain native-filter behaviour;
//! - a first turn's `BodyEdit` is applied to the held body (the new body
//!   appended, the old bytes drained) and `content-length` set to match;
//! - the scan stops at the stream's buffer limit when that is below
//!   `max_scan_bytes`: a body held past it would make Envoy stop reading
//!   the client (flow control; `StopIterationAndWatermark` is never
//!   answered 413), so the rest would never come;
//! - the task store is the process-wide [`ShardedStore`], the clock is the
//!   system's, random bytes come from the OS (`getrandom`), and the JSON
//!   readers of finished streams are kept for the next ([`Readers`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use a2a_affinity_core::config::{Config, ConfigError, HashOn, HASHABLE_STRING_KEY};
use a2a_affinity_core::mint::BodyEdit;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::store::TaskStore;
use a2a_affinity_core::stream::{
    Decision, Env, HeaderOp, LearnTally, Next, RequestHead, ResponseHead, Stream as Core,
};
use log::{debug, error, info, warn};

use a2a_affinity_core::json::request::{BodyKind, Extractor};
use a2a_affinity_core::json::response::{Framing, ResponseLearner};

use crate::host::{Body, Chunks, Headers, Host};
use crate::readers::Readers;
use crate::store::{self, ShardedStore, StoreRef};

/// Seconds since the Unix epoch, by the system clock (0 before it).
fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a hook tells Envoy, before it is mapped to the hook's own status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Headers: `StopIteration`. Body: `StopIterationAndWatermark` (hold the
    /// chunk; past the buffer limit Envoy applies flow control rather than
    /// answering 413).
    Stop,
}

/// One filter configuration (`filter_config` of one
/// `envoy.filters.http.dynamic_modules` filter), shared by every worker.
pub struct FilterConfig {
    pub config: Config,
    pub store: Arc<ShardedStore>,
    /// Envoy's ids of the counters, in `Counter::ALL` order; `None` where
    /// defining one failed (that counter then stays silent).
    pub metric_ids: [Option<usize>; Counter::ALL.len()],
    /// The readers of this configuration's finished streams.
    pub readers: Readers,
    /// The stream buffer limits below `max_scan_bytes` that have been
    /// warned about, one slot per limit (0: free), each filled once and never
    /// changed: a later stream under one of them finds it by reading the
    /// slots, so the workers write nothing in common for it (Envoy
    /// Gateway's listeners have 32 KiB, and so every stream there is one).
    warned_limits: [AtomicU64; WARNED_KEPT],
    /// A stream met a limit when every slot held another, and was logged.
    warned_overflow: AtomicBool,
    /// A filter-state write has failed and been logged (`hash_on:
    /// filter_state`; the header is set instead).
    filter_state_failed: AtomicBool,
}

/// Lower buffer limits warned about one by one per filter configuration
/// (listeners, routes and HTTP/2 stream windows set their own); past them,
/// one warning for all.
const WARNED_KEPT: usize = 8;

impl FilterConfig {
    /// Parses and checks the filter's JSON configuration (the same fields,
    /// defaults and validation as the Wasm filter's).
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        // The core's load-time warnings are about a limit the filter cannot
        // see (the Wasm filter's 413); this shell sees each stream's limit,
        // scans only up to it, and warns per limit instead (`scan_limit`).
        let config = Config::parse(raw)?;
        let (store, carried) =
            store::shared(config.task_capacity, config.task_ttl_secs, unix_now_secs());
        if let Some(carried) = carried {
            info!(
                "the task store of task_capacity {}, task_ttl_secs {} took over from the store of task_capacity {}, task_ttl_secs {}; learned tasks taken over: {}",
                config.task_capacity,
                config.task_ttl_secs,
                carried.capacity,
                carried.ttl_secs,
                carried.tasks
            );
        }
        Ok(FilterConfig {
            config,
            store,
            metric_ids: [None; Counter::ALL.len()],
            readers: Readers::default(),
            warned_limits: Default::default(),
            warned_overflow: AtomicBool::new(false),
            filter_state_failed: AtomicBool::new(false),
        })
    }

    pub fn metric_id(&self, counter: Counter) -> Option<usize> {
        self.metric_ids.get(counter.index()).copied().flatten()
    }

    /// How far a stream under the buffer limit `limit` (0: none) reads:
    /// `max_scan_bytes`, or the limit where that is lower.
    fn scan_limit_for(&self, limit: u64) -> u64 {
        let max = self.config.max_scan_bytes;
        if limit > 0 {
            limit.min(max)
        } else {
            max
        }
    }

    /// `scan_limit_for`, with a warning the first time a limit below
    /// `max_scan_bytes` is met.
    fn scan_limit(&self, limit: u64) -> u64 {
        let scan_to = self.scan_limit_for(limit);
        if scan_to < self.config.max_scan_bytes {
            self.warn_once(scan_to);
        }
        scan_to
    }

    /// Warns that streams under the buffer limit `limit` (below
    /// `max_scan_bytes`) are read only up to it: once per limit, in the
    /// first free slot; past `WARNED_KEPT` limits, once for all of them.
    // Streams under a lower limit are the rare case: kept out of the hooks.
    #[inline(never)]
    fn warn_once(&self, limit: u64) {
        let warn_clamped = |also: &str| {
            warn!(
                "max_scan_bytes {} is above the stream's buffer limit ({limit} bytes): bodies are read up to {limit} bytes, past which Envoy would stop reading the client while the filter holds the body (to read that far, raise the route's request_body_buffer_limit, or the limit a filter before this one sets, to at least max_scan_bytes; {also})",
                self.config.max_scan_bytes
            );
        };
        for slot in &self.warned_limits {
            // Read first: a limit already recorded costs no write to the
            // slot's cache line. A free slot is taken here; of two new
            // limits that race for it, the one that loses goes on to the
            // next slot.
            let mut kept = slot.load(Ordering::Relaxed);
            if kept == 0 {
                match slot.compare_exchange(0, limit, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        warn_clamped("logged once per limit");
                        return;
                    }
                    Err(now) => kept = now,
                }
            }
            if kept == limit {
                return;
            }
        }
        if !self.warned_overflow.load(Ordering::Relaxed)
            && !self.warned_overflow.swap(true, Ordering::Relaxed)
        {
            warn_clamped(&format!(
                "logged once for all limits past the first {WARNED_KEPT}"
            ));
        }
    }
}

/// The core's view of this shell for one hook.
struct ShellEnv<'a> {
    store: StoreRef<'a>,
    readers: &'a Readers,
}

impl<'a> ShellEnv<'a> {
    fn new(config: &'a FilterConfig) -> Self {
        ShellEnv {
            store: StoreRef(&config.store),
            readers: &config.readers,
        }
    }
}

impl Env for ShellEnv<'_> {
    fn now_secs(&mut self) -> u64 {
        unix_now_secs()
    }

    fn random(&mut self, out: &mut [u8; 16]) -> bool {
        getrandom::fill(out).is_ok()
    }

    fn tasks(&mut self) -> &mut dyn TaskStore {
        &mut self.store
    }

    fn take_extractor(&mut self, kind: BodyKind, max_value_bytes: usize) -> Box<Extractor> {
        self.readers.extractor(kind, max_value_bytes)
    }

    fn recycle_extractor(&mut self, extractor: Box<Extractor>) {
        self.readers.keep_extractor(extractor);
    }

    fn take_learner(&mut self, framing: Framing, max_value_bytes: usize) -> Box<ResponseLearner> {
        self.readers.learner(framing, max_value_bytes)
    }

    fn recycle_learner(&mut self, learner: Box<ResponseLearner>) {
        self.readers.keep_learner(learner);
    }
}

/// What one request body callback found.
enum Read {
    Decided(Decision),
    /// The core needs more body.
    Waiting,
    /// A chunk could not be read.
    Failed,
}

/// Where a decision is applied: the received body exists only in a body
/// callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Headers,
    Body,
    Trailers,
}

/// One HTTP stream: the configuration it was made with, and its own state.
///
/// The hooks hand the configuration to the state by reference. Cloning the
/// `Arc` in each hook would write its reference count, one atomic shared by
/// every worker thread of the configuration, several times per request.
pub struct Filter {
    config: Arc<FilterConfig>,
    state: State,
}

/// What one stream keeps between hooks.
struct State {
    core: Core,
    /// How far the request body is read while it is held:
    /// `max_scan_bytes`, or the stream's buffer limit where that is lower.
    scan_limit: u64,
    /// Request body bytes handed to the core (counted in "buffered, then
    /// received").
    seen: u64,
    /// Response body bytes handed to the core.
    response_seen: u64,
    /// The request's outcome has been counted.
    counted: bool,
    /// The request came with a header of the configured name.
    client_sent_header: bool,
}

impl Filter {
    pub fn new(config: Arc<FilterConfig>) -> Self {
        Filter {
            config,
            state: State {
                core: Core::new(),
                scan_limit: u64::MAX,
                seen: 0,
                response_seen: 0,
                counted: false,
                client_sent_header: false,
            },
        }
    }

    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Action {
        self.state
            .on_request_headers(&self.config, host, end_of_stream)
    }

    pub fn on_request_body(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Action {
        self.state
            .on_request_body(&self.config, host, end_of_stream)
    }

    /// Request trailers: HTTP/2 and chunked HTTP/1.1 with trailers never mark
    /// a body chunk as the last, so the body ends here.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Action {
        self.state.on_request_trailers(&self.config, host)
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host) -> Action {
        self.state.on_response_headers(&self.config, host)
    }

    /// A response chunk, passed on at once: the response is never held.
    pub fn on_response_body(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Action {
        self.state
            .on_response_body(&self.config, host, end_of_stream)
    }

    /// The stream is over: a request still undecided is counted as aborted.
    pub fn on_stream_complete(&mut self, host: &mut dyn Host) {
        self.state.on_stream_complete(&self.config, host);
    }

    /// A hook failed (a panic was caught): the request goes on unchanged
    /// and this stream is not looked at again.
    pub fn abandon(&mut self) {
        self.state.abandon(&self.config);
    }
}

impl State {
    fn on_request_headers(
        &mut self,
        shared: &FilterConfig,
        host: &mut dyn Host,
        end_of_stream: bool,
    ) -> Action {
        let config = &shared.config;
        let decision = {
            let host: &dyn Host = host;
            let headers = host.headers(Headers::Request);
            let value = |name: &str| headers.get(name);
            let head = RequestHead {
                method: text(value(":method")).unwrap_or_default(),
                path: text(value(":path")).unwrap_or_default(),
                content_type: text(value("content-type")),
                content_encoding: value("content-encoding").map(coding),
                content_length: text(value("content-length"))
                    .and_then(|v| v.trim().parse::<u64>().ok()),
                // Any value counts as a client header, UTF-8 or not.
                client_header: value(&config.header).is_some(),
            };
            self.client_sent_header = head.client_header;
            let mut env = ShellEnv::new(shared);
            self.core
                .on_request_headers(config, &head, end_of_stream, &mut env)
        };
        if decision.next == Next::NeedBody {
            // Hold no more than the stream's buffer limit: past it Envoy
            // stops reading the client (the body is held with the watermark
            // status, so it never answers 413), and the rest of the body
            // would not come. Each chunk, the last one too, is shown to the
            // filter before it joins the held body, and the scan gives up in
            // the callback whose chunk reaches the limit, so the body held
            // while waiting stays under it (or at it, when a chunk ends
            // exactly at the limit of a chunked body or one whose
            // content-length is the limit, until the end or a byte past
            // it comes: Envoy's high watermark is passed only above the
            // limit). The limit is read again in each body callback but
            // the last: a filter before this one may change it mid-body.
            // The callback that ends the body is not bound by it: nothing
            // is held after it, so its chunk is read up to
            // `max_scan_bytes` (an HTTP/2 frame with END_STREAM may take
            // the body past the stream's window).
            self.scan_limit = shared.scan_limit(host.buffer_limit());
        }
        self.apply(shared, host, decision, Phase::Headers)
    }

    fn on_request_body(
        &mut self,
        shared: &FilterConfig,
        host: &mut dyn Host,
        end_of_stream: bool,
    ) -> Action {
        if !self.core.reading_body() {
            return Action::Continue;
        }
        #[cfg(feature = "fault-probe")]
        if let (true, Some(limit)) = (self.seen > 0, crate::ffi::limit_probe()) {
            host.set_buffer_limit(limit);
        }
        let config = &shared.config;
        let scan_limit = if end_of_stream {
            // The last callback holds nothing after it: the body is whole,
            // and its last chunk is read up to `max_scan_bytes` whatever
            // the stream's limit.
            config.max_scan_bytes
        } else {
            // A filter before this one may have changed the stream's buffer
            // limit since the scan's limit was set from it, and Envoy
            // applies a new limit to the body it holds at once: this chunk
            // and the next are read up to the new limit (or
            // `max_scan_bytes`).
            let limit = host.buffer_limit();
            if shared.scan_limit_for(limit) != self.scan_limit {
                self.scan_limit = shared.scan_limit(limit);
            }
            self.scan_limit
        };
        let mut env = ShellEnv::new(shared);
        let read = {
            let host: &dyn Host = host;
            match new_request_bytes(host, self.seen) {
                None => Read::Failed,
                Some(fresh) => {
                    let mut read = Read::Waiting;
                    for (i, part) in fresh.iter().enumerate() {
                        self.seen += part.len() as u64;
                        let last = end_of_stream && i + 1 == fresh.len();
                        let d = self
                            .core
                            .on_request_body_within(config, scan_limit, part, last, &mut env);
                        if d.next != Next::NeedBody {
                            read = Read::Decided(d);
                            break;
                        }
                    }
                    if matches!(read, Read::Waiting) && end_of_stream {
                        // The body ended, with no new bytes in this callback
                        // (or, should the reader still want more, without
                        // them): decide now, as at the trailers. Holding
                        // after the last chunk would hold the request for
                        // ever.
                        let d = if fresh.is_empty() {
                            self.core.on_request_body(config, &[], true, &mut env)
                        } else {
                            self.core.on_request_trailers(config, &mut env)
                        };
                        read = Read::Decided(d);
                    }
                    if matches!(read, Read::Waiting) && self.seen > scan_limit {
                        // A limit lowered under the bytes already held, in
                        // a callback with no new ones (new bytes end the
                        // core's read themselves): Envoy would stop reading
                        // the client, so the read ends here.
                        let d = self.core.on_bytes_past_scan_limit(config, &mut env);
                        read = Read::Decided(d);
                    }
                    read
                }
            }
        };
        match read {
            Read::Decided(decision) => self.apply(shared, host, decision, Phase::Body),
            Read::Waiting => Action::Stop,
            Read::Failed => {
                error!("a request body chunk could not be read; request continues without a hash key from the body");
                let outcome = self.core.host_failed(&mut env);
                self.count_outcome(host, outcome);
                Action::Continue
            }
        }
    }

    fn on_request_trailers(&mut self, shared: &FilterConfig, host: &mut dyn Host) -> Action {
        if !self.core.reading_body() {
            return Action::Continue;
        }
        let mut env = ShellEnv::new(shared);
        let decision = self.core.on_request_trailers(&shared.config, &mut env);
        self.apply(shared, host, decision, Phase::Trailers)
    }

    /// Carries out a decision.
    fn apply(
        &mut self,
        shared: &FilterConfig,
        host: &mut dyn Host,
        decision: Decision,
        phase: Phase,
    ) -> Action {
        let config = &shared.config;
        let mut decision = decision;
        if let Some(edit) = decision.body.take() {
            if !write_body(host, &edit, phase) {
                decision = self.core.mint_failed(config);
            }
        }
        let header = &config.header;
        match &decision.header {
            HeaderOp::Keep => {}
            HeaderOp::Set(value) => self.set_hash_key(host, shared, value.as_bytes()),
            HeaderOp::Remove => {
                if !host.remove_request_header(header) {
                    error!("removing the client's {header} failed");
                }
            }
        }
        self.count_outcome(host, decision.outcome);
        if decision.client_header_kept {
            host.count(Counter::ClientHeaderKept);
        }
        match decision.next {
            Next::Continue => Action::Continue,
            Next::NeedBody => Action::Stop,
            // The native store answers at once: a lookup is never deferred.
            Next::LookupTask(_) => {
                let decision = self.core.task_resolved(config, None);
                self.apply(shared, host, decision, phase)
            }
        }
    }

    /// Puts the decided contextId where the route hashes it: the header,
    /// or with `hash_on: filter_state` Envoy's hashable string in filter
    /// state. There the header is still set when the client sent one (so
    /// that the agent never receives a key other than the one routed on)
    /// and when the filter-state write fails (the shipped route falls back
    /// to the header, which hashes the same).
    fn set_hash_key(&self, host: &mut dyn Host, shared: &FilterConfig, value: &[u8]) {
        let header = &shared.config.header;
        if shared.config.hash_on == HashOn::FilterState {
            if !value.is_empty() && host.set_filter_state(HASHABLE_STRING_KEY, value) {
                if !self.client_sent_header {
                    return;
                }
            } else if !shared.filter_state_failed.swap(true, Ordering::Relaxed) {
                error!("writing the contextId to filter state ({HASHABLE_STRING_KEY}) failed; setting {header} instead (logged once)");
            }
        }
        if !host.set_request_header(header, value) {
            error!("setting {header} failed; request continues without it");
        }
    }

    fn count_outcome(&mut self, host: &mut dyn Host, outcome: Option<Outcome>) {
        if let Some(outcome) = outcome {
            if !self.counted {
                self.counted = true;
                host.count(outcome.counter());
            }
        }
    }

    fn on_response_headers(&mut self, shared: &FilterConfig, host: &mut dyn Host) -> Action {
        if !self.core.learns_from_response(&shared.config) {
            return Action::Continue;
        }
        let host: &dyn Host = host;
        let headers = host.headers(Headers::Response);
        let head = ResponseHead {
            content_type: text(headers.get("content-type")),
            content_encoding: headers.get("content-encoding").map(coding),
        };
        let mut env = ShellEnv::new(shared);
        self.core
            .on_response_headers(&shared.config, &head, &mut env);
        Action::Continue
    }

    fn on_response_body(
        &mut self,
        shared: &FilterConfig,
        host: &mut dyn Host,
        end_of_stream: bool,
    ) -> Action {
        if !self.core.reading_response() {
            return Action::Continue;
        }
        let mut env = ShellEnv::new(shared);
        let tally = {
            let host: &dyn Host = host;
            let chunks = match response_chunk(host, end_of_stream, self.response_seen) {
                Some(chunks) => chunks,
                None => {
                    debug!(
                        "response bytes unreadable, or not told apart from bytes already read \
                         (another filter's buffer); stops learning from this response"
                    );
                    self.core.stop_learning(&mut env);
                    return Action::Continue;
                }
            };
            let mut tally = LearnTally::default();
            for chunk in chunks {
                self.response_seen += chunk.len() as u64;
                let t = self.core.on_response_body(chunk, &mut env);
                tally.learned += t.learned;
                tally.evicted += t.evicted;
            }
            tally
        };
        for _ in 0..tally.learned {
            host.count(Counter::TaskLearned);
        }
        for _ in 0..tally.evicted {
            host.count(Counter::TaskEvicted);
        }
        Action::Continue
    }

    fn on_stream_complete(&mut self, shared: &FilterConfig, host: &mut dyn Host) {
        let mut env = ShellEnv::new(shared);
        let outcome = self.core.on_stream_end(&mut env);
        self.count_outcome(host, outcome);
    }

    fn abandon(&mut self, shared: &FilterConfig) {
        let mut env = ShellEnv::new(shared);
        let _ = self.core.on_stream_end(&mut env);
        // Nothing is counted for it any more.
        self.counted = true;
    }
}

/// The held request body as Envoy shows it in this callback: the buffered
/// chunks, then, with `received_apart` (a body callback whose received
/// chunk is not the buffered body), the received chunks. `None` if a chunk
/// is unreadable.
fn request_body(host: &dyn Host, received_apart: bool) -> Option<Chunks<'_>> {
    let mut chunks = host.body_chunks(Body::BufferedRequest)?;
    if received_apart {
        chunks.extend(host.body_chunks(Body::ReceivedRequest)?);
    }
    Some(chunks)
}

/// The request bytes of this body callback that the reader has not seen,
/// given that it has seen the first `seen` of the held body. Normally that
/// is the received chunk alone: every byte Envoy holds has been read, so
/// the buffered body's chunks, as many as the body has grown to, are not
/// fetched again at each callback. Otherwise (the last chunk appended to
/// the buffered body, a filter before this one that held the body, bytes
/// left unread) the held body is read as a whole and the seen bytes
/// skipped. `None` if a chunk is unreadable.
fn new_request_bytes(host: &dyn Host, seen: u64) -> Option<Chunks<'_>> {
    let received_apart = !host.received_is_buffered(true);
    if received_apart && host.body_size(Body::BufferedRequest) as u64 == seen {
        let mut received = host.body_chunks(Body::ReceivedRequest)?;
        received.retain(|c| !c.is_empty());
        return Some(received);
    }
    let held = request_body(host, received_apart)?;
    Some(unseen(&held, seen))
}

/// The parts of `chunks` past the first `seen` bytes.
fn unseen<'a>(chunks: &[&'a [u8]], seen: u64) -> Chunks<'a> {
    let mut skip = seen;
    let mut out = Chunks::new();
    for &chunk in chunks {
        let len = chunk.len() as u64;
        if skip >= len {
            skip -= len;
            continue;
        }
        let from = usize::try_from(skip).unwrap_or(usize::MAX);
        skip = 0;
        if let Some(part) = chunk.get(from..).filter(|p| !p.is_empty()) {
            out.push(part);
        }
    }
    out
}

/// This callback's response bytes. Normally the received chunk. Envoy keeps
/// one buffered response body per stream, shared by every filter: one that
/// holds response data leaves it there, so a buffered body can hold bytes
/// this filter has already read. When the received body is that buffer (a
/// filter nearer the upstream held data and resumes), and at the end of a
/// stream with a buffered body (Envoy has appended the last chunk to it),
/// the new bytes are known only if none were read before. `None` when they
/// cannot be told apart from bytes already read.
fn response_chunk(host: &dyn Host, end_of_stream: bool, seen: u64) -> Option<Chunks<'_>> {
    let received = host.body_chunks(Body::ReceivedResponse)?;
    let has_bytes = received.iter().any(|c| !c.is_empty());
    if host.received_is_buffered(false) {
        return (seen == 0 || !has_bytes).then_some(received);
    }
    if !end_of_stream || has_bytes {
        return Some(received);
    }
    let buffered = host.body_chunks(Body::BufferedResponse)?;
    if buffered.iter().all(|c| c.is_empty()) {
        return Some(Chunks::new());
    }
    (seen == 0).then_some(buffered)
}

/// Writes a first turn's contextId into the held request body and fixes
/// `content-length`. On `false` nothing has changed, with one exception
/// Envoy's callbacks give no way around: the new body is appended behind the
/// old bytes, then those are drained, and should Envoy refuse a drain (it
/// does only for a buffer that does not exist, and these were just read)
/// old bytes stay before the new body. `content-length` then counts every
/// byte held, so the request stays framed and the agent answers a body it
/// cannot parse; the error is logged.
fn write_body(host: &mut dyn Host, edit: &BodyEdit, phase: Phase) -> bool {
    if phase == Phase::Headers {
        return false;
    }
    let in_body = phase == Phase::Body;
    // The held body is the buffered body, plus the received chunk when it is
    // a separate buffer (the chunk of this callback, which Envoy moves into
    // the buffered body once the filter continues).
    let separate =
        in_body && !host.received_is_buffered(true) && host.body_size(Body::ReceivedRequest) > 0;
    let buffered_len = host.body_size(Body::BufferedRequest);
    let received_len = if separate {
        host.body_size(Body::ReceivedRequest)
    } else {
        0
    };
    let new_body = {
        let host: &dyn Host = host;
        let Some(chunks) = request_body(host, separate) else {
            return false;
        };
        let body = chunks.concat();
        if Some(body.len()) != buffered_len.checked_add(received_len) {
            return false;
        }
        let Some(new_body) = edit.apply(&body) else {
            return false;
        };
        new_body
    };
    let old_length = host
        .headers(Headers::Request)
        .get("content-length")
        .map(<[u8]>::to_vec);
    if let Some(length) = edit.content_length {
        if !host.set_request_header("content-length", length.to_string().as_bytes()) {
            return false;
        }
    }
    let target = if separate {
        Body::ReceivedRequest
    } else {
        Body::BufferedRequest
    };
    if !host.append_body(target, &new_body) {
        // Body and length must agree: put the length back.
        if edit.content_length.is_some() {
            match &old_length {
                Some(old) => host.set_request_header("content-length", old),
                None => host.remove_request_header("content-length"),
            };
        }
        return false;
    }
    // The new body sits behind the old bytes: drain those.
    let drained = if separate {
        (buffered_len == 0 || host.drain_body(Body::BufferedRequest, buffered_len))
            && host.drain_body(Body::ReceivedRequest, received_len)
    } else {
        host.drain_body(Body::BufferedRequest, buffered_len)
    };
    if !drained {
        error!(
            "draining the original request body after writing the minted contextId failed: \
             the body holds both"
        );
        if edit.content_length.is_some() {
            let held = host
                .body_size(Body::BufferedRequest)
                .saturating_add(if separate {
                    host.body_size(Body::ReceivedRequest)
                } else {
                    0
                });
            host.set_request_header("content-length", held.to_string().as_bytes());
        }
    }
    drained
}

fn text(value: Option<&[u8]>) -> Option<&str> {
    value.and_then(|v| std::str::from_utf8(v).ok())
}

/// A content-coding value; one that is not UTF-8 is not `identity` either.
fn coding(value: &[u8]) -> &str {
    std::str::from_utf8(value).unwrap_or("?")
}
