//! One HTTP stream in the Wasm shell: each proxy-wasm callback turned into
//! a call on the core's `Stream`, and the core's decision applied through
//! the host calls.
//!
//! What is proxy-wasm's and so lives here: reading the request headers out
//! of one serialized map, copying body bytes out of Envoy's buffer in
//! growing windows, replacing the whole buffered body to mint, the task
//! store in shared data, and keeping readers from one stream to the next.

use std::cell::RefCell;
use std::rc::Rc;

use a2a_affinity_core::config::Config;
use a2a_affinity_core::json::request::{BodyKind, Extractor};
use a2a_affinity_core::json::response::{Framing, ResponseLearner};
use a2a_affinity_core::spare::SpareReaders;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::store::TaskStore;
use a2a_affinity_core::stream::{
    Decision, Env, HeaderOp, LearnTally, Next, RequestHead, ResponseHead, Stream as Core,
};
use log::error;

use crate::host::{first_values, Host};
use crate::shared_store::{SharedStore, SharedTasks};

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
    pub tasks: SharedStore,
    /// JSON readers that finished their stream, ready for the next one.
    spare: RefCell<SpareReaders>,
}

impl Plugin {
    pub fn new(config: Config) -> Self {
        let tasks = SharedStore::new(config.task_capacity, config.task_ttl_secs);
        Plugin {
            config,
            tasks,
            spare: RefCell::default(),
        }
    }

    /// The kept readers, unless a caller up the stack has them borrowed.
    fn with_spare<R>(&self, f: impl FnOnce(&mut SpareReaders) -> R) -> Option<R> {
        self.spare
            .try_borrow_mut()
            .ok()
            .map(|mut spare| f(&mut spare))
    }
}

/// The core's view of this shell for one callback: the host's clock and
/// randomness, the shared-data store, and the plugin's kept readers.
struct ShellEnv<'a> {
    plugin: &'a Plugin,
    store: SharedTasks<'a>,
}

impl Env for ShellEnv<'_> {
    fn now_secs(&mut self) -> u64 {
        self.store.host.now_secs()
    }

    fn random(&mut self, out: &mut [u8; 16]) -> bool {
        self.store.host.random(out).is_ok()
    }

    fn tasks(&mut self) -> &mut dyn TaskStore {
        &mut self.store
    }

    fn take_extractor(&mut self, kind: BodyKind, max_value_bytes: usize) -> Box<Extractor> {
        self.plugin
            .with_spare(|spare| spare.take_extractor(kind, max_value_bytes))
            .flatten()
            .unwrap_or_else(|| Box::new(Extractor::new(kind, max_value_bytes)))
    }

    fn recycle_extractor(&mut self, extractor: Box<Extractor>) {
        self.plugin
            .with_spare(|spare| spare.keep_extractor(extractor));
    }

    fn take_learner(&mut self, framing: Framing, max_value_bytes: usize) -> Box<ResponseLearner> {
        self.plugin
            .with_spare(|spare| spare.take_learner(framing, max_value_bytes))
            .flatten()
            .unwrap_or_else(|| Box::new(ResponseLearner::new(framing, max_value_bytes)))
    }

    fn recycle_learner(&mut self, learner: Box<ResponseLearner>) {
        self.plugin.with_spare(|spare| spare.keep_learner(learner));
    }
}

pub struct Stream {
    plugin: Rc<Plugin>,
    core: Core,
    /// Body bytes already copied out of Envoy and handed to the core.
    fed: usize,
    /// Bytes to copy out of Envoy in the next body read.
    window: usize,
    /// The request's outcome has been counted.
    counted: bool,
}

impl Stream {
    pub fn new(plugin: Rc<Plugin>) -> Self {
        Stream {
            plugin,
            core: Core::new(),
            fed: 0,
            window: FIRST_READ_WINDOW,
            counted: false,
        }
    }

    /// Runs `f` with the core's view of this shell over `host`.
    fn with_env<R>(
        plugin: &Plugin,
        host: &mut dyn Host,
        f: impl FnOnce(&mut ShellEnv<'_>) -> R,
    ) -> R {
        let mut env = ShellEnv {
            plugin,
            store: plugin.tasks.with(host),
        };
        f(&mut env)
    }

    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Action {
        // One host call for every header the filter may need, read in
        // place: the hash header and the length are used only on some paths.
        let plugin = Rc::clone(&self.plugin);
        let config = &plugin.config;
        let map = host.request_header_map();
        let values = first_values(
            &map,
            [
                ":method",
                ":path",
                "content-type",
                "content-encoding",
                &config.header,
                "content-length",
            ],
        );
        // Any value counts as a client header, UTF-8 or not.
        let client_header = values[4].is_some();
        let [method, path, content_type, content_encoding, _, content_length] =
            values.map(|v| v.and_then(|v| std::str::from_utf8(v).ok()));
        let head = RequestHead {
            method: method.unwrap_or_default(),
            path: path.unwrap_or_default(),
            content_type,
            content_encoding,
            content_length: content_length.and_then(|v| v.trim().parse::<u64>().ok()),
            client_header,
        };
        let decision = Self::with_env(&plugin, host, |env| {
            self.core
                .on_request_headers(config, &head, end_of_stream, env)
        });
        self.apply(host, decision, 0)
    }

    /// `body_size` is everything Envoy has buffered for this request so far.
    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if !self.core.reading_body() {
            return Action::Continue;
        }
        let plugin = Rc::clone(&self.plugin);
        let config = &plugin.config;
        let limit = usize::try_from(config.max_scan_bytes).unwrap_or(usize::MAX);
        let readable = body_size.min(limit);
        // Copy the new bytes out of Envoy in growing windows, not all at
        // once: Envoy may have buffered a whole connection read (up to 1 MiB)
        // by the first callback, and the contextId usually sits in the first
        // few hundred bytes. Doubling keeps the number of host calls small
        // when it comes last.
        while readable > self.fed {
            let len = (readable - self.fed).min(self.window);
            let chunk = match host.request_body(self.fed, len) {
                Ok(chunk) if !chunk.is_empty() => chunk,
                Ok(_) => return Action::Pause,
                Err(e) => {
                    error!("reading the request body failed ({}); request continues without a hash key", e.0);
                    let outcome = Self::with_env(&plugin, host, |env| self.core.host_failed(env));
                    self.count_outcome(host, outcome);
                    return Action::Continue;
                }
            };
            self.fed += chunk.len();
            self.window = (self.window * 2).min(MAX_READ_WINDOW);
            let last = end_of_stream && self.fed == body_size;
            let decision = Self::with_env(&plugin, host, |env| {
                self.core.on_request_body(config, &chunk, last, env)
            });
            if decision.next != Next::NeedBody {
                return self.apply(host, decision, body_size);
            }
        }
        if self.fed == limit && body_size > limit {
            // Envoy holds bytes past the scan, which are never copied out:
            // the read ends here, whatever `content-length` says.
            let decision = Self::with_env(&plugin, host, |env| {
                self.core.on_bytes_past_scan_limit(config, env)
            });
            return self.apply(host, decision, body_size);
        }
        if end_of_stream && self.fed == body_size {
            // The body ended with no new bytes in this callback.
            let decision = Self::with_env(&plugin, host, |env| {
                self.core.on_request_body(config, &[], true, env)
            });
            return self.apply(host, decision, body_size);
        }
        Action::Pause
    }

    /// HTTP/2 and chunked HTTP/1.1 with trailers never mark a body callback
    /// as the end of the stream: the body ends here.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Action {
        if !self.core.reading_body() {
            return Action::Continue;
        }
        let plugin = Rc::clone(&self.plugin);
        let decision = Self::with_env(&plugin, host, |env| {
            self.core.on_request_trailers(&plugin.config, env)
        });
        let buffered = self.fed;
        self.apply(host, decision, buffered)
    }

    /// Carries out a decision; `buffered` is how much body Envoy holds.
    fn apply(&mut self, host: &mut dyn Host, decision: Decision, buffered: usize) -> Action {
        let mut decision = decision;
        if let Some(edit) = decision.body.take() {
            if !self.write_body(host, &edit, buffered) {
                decision = self.core.mint_failed(&self.plugin.config);
            }
        }
        let header = &self.plugin.config.header;
        match &decision.header {
            HeaderOp::Keep => {}
            HeaderOp::Set(value) => {
                if let Err(e) = host.replace_request_header(header, value) {
                    error!("setting {header} failed ({})", e.0);
                }
            }
            HeaderOp::Remove => {
                if let Err(e) = host.remove_request_header(header) {
                    error!("removing {header} failed ({})", e.0);
                }
            }
        }
        self.count_outcome(host, decision.outcome);
        if decision.client_header_kept {
            host.count(Counter::ClientHeaderKept);
        }
        match decision.next {
            Next::Continue => Action::Continue,
            // The shared-data store answers at once: a lookup is never
            // deferred here, and a body is only asked for from the headers.
            Next::NeedBody => Action::Pause,
            Next::LookupTask(_) => {
                let decision = self.core.task_resolved(&self.plugin.config, None);
                self.apply(host, decision, buffered)
            }
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

    /// Writes a minted contextId into the buffered body (Envoy's buffer
    /// setter only replaces it whole) and fixes `content-length`. Any host
    /// error leaves the body as it was.
    fn write_body(
        &self,
        host: &mut dyn Host,
        edit: &a2a_affinity_core::mint::BodyEdit,
        buffered: usize,
    ) -> bool {
        let body = match host.request_body(0, buffered) {
            Ok(body) if body.len() == buffered => body,
            _ => return false,
        };
        let Some(new_body) = edit.apply(&body) else {
            return false;
        };
        if host.replace_request_body(buffered, &new_body).is_err() {
            return false;
        }
        if let Some(length) = edit.content_length {
            if host
                .replace_request_header("content-length", &length.to_string())
                .is_err()
            {
                // Body and length must agree: put the original body back.
                let _ = host.replace_request_body(new_body.len(), &body);
                return false;
            }
        }
        true
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host) -> Action {
        let plugin = Rc::clone(&self.plugin);
        if !self.core.learns_from_response(&plugin.config) {
            return Action::Continue;
        }
        let map = host.response_header_map();
        let [content_type, content_encoding] =
            first_values(&map, ["content-type", "content-encoding"]);
        let head = ResponseHead {
            content_type: content_type.and_then(|v| std::str::from_utf8(v).ok()),
            // An encoding that is not UTF-8 is not `identity` either.
            content_encoding: content_encoding.map(|v| std::str::from_utf8(v).unwrap_or("?")),
        };
        Self::with_env(&plugin, host, |env| {
            self.core.on_response_headers(&plugin.config, &head, env)
        });
        Action::Continue
    }

    /// `chunk_size`: the bytes of this chunk (the response is never held, so
    /// Envoy hands over one chunk at a time).
    pub fn on_response_body(&mut self, host: &mut dyn Host, chunk_size: usize) -> Action {
        if chunk_size == 0 || !self.core.reading_response() {
            return Action::Continue;
        }
        let plugin = Rc::clone(&self.plugin);
        let chunk = match host.response_body(0, chunk_size) {
            Ok(chunk) => chunk,
            Err(_) => {
                Self::with_env(&plugin, host, |env| self.core.stop_learning(env));
                return Action::Continue;
            }
        };
        let tally = Self::with_env(&plugin, host, |env| self.core.on_response_body(&chunk, env));
        count_tally(host, tally);
        Action::Continue
    }

    /// The stream is over (`proxy_on_delete`): a request still undecided is
    /// counted as aborted.
    pub fn on_delete(&mut self, host: &mut dyn Host) {
        let plugin = Rc::clone(&self.plugin);
        let outcome = Self::with_env(&plugin, host, |env| self.core.on_stream_end(env));
        self.count_outcome(host, outcome);
    }
}

fn count_tally(host: &mut dyn Host, tally: LearnTally) {
    for _ in 0..tally.learned {
        host.count(Counter::TaskLearned);
    }
    for _ in 0..tally.evicted {
        host.count(Counter::TaskEvicted);
    }
}
