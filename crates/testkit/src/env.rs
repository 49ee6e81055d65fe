//! An in-memory host for the core: a clock the test sets, counted random
//! bytes, a task store with TTL, and the counters the core's decisions and
//! learning add up to.

use std::collections::HashMap;

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::store::{Learned, Lookup, TaskStore};
use a2a_affinity_core::stream::{Decision, Env, HeaderOp, LearnTally, Next, RequestHead, Stream};

/// A task store in a map: (context, expiry) per task, unbounded.
#[derive(Default)]
pub struct MapStore {
    pub tasks: HashMap<String, (String, u64)>,
    pub ttl_secs: u64,
    /// Answer every lookup with `Lookup::Deferred`.
    pub defer: bool,
}

impl TaskStore for MapStore {
    fn lookup(&mut self, task_id: &str, now_secs: u64) -> Lookup {
        if self.defer {
            return Lookup::Deferred;
        }
        match self.tasks.get(task_id) {
            Some((context, expiry)) if *expiry > now_secs => Lookup::Found(context.clone()),
            _ => Lookup::Unknown,
        }
    }

    fn learn(&mut self, task_id: &str, context_id: &str, now_secs: u64) -> Learned {
        let ttl = if self.ttl_secs == 0 {
            3600
        } else {
            self.ttl_secs
        };
        self.tasks.insert(
            task_id.to_string(),
            (context_id.to_string(), now_secs + ttl),
        );
        Learned::Stored
    }
}

/// The host side of the core in memory.
pub struct MockEnv {
    pub now: u64,
    pub store: MapStore,
    /// Random draws so far; each fills its bytes from this counter.
    pub draws: u8,
    pub no_random: bool,
    pub counters: HashMap<&'static str, u64>,
}

impl Default for MockEnv {
    fn default() -> Self {
        MockEnv {
            now: 1_000_000,
            store: MapStore::default(),
            draws: 0,
            no_random: false,
            counters: HashMap::new(),
        }
    }
}

impl Env for MockEnv {
    fn now_secs(&mut self) -> u64 {
        self.now
    }

    fn random(&mut self, out: &mut [u8; 16]) -> bool {
        if self.no_random {
            return false;
        }
        self.draws = self.draws.wrapping_add(1);
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.draws.wrapping_mul(31).wrapping_add(i as u8);
        }
        true
    }

    fn tasks(&mut self) -> &mut dyn TaskStore {
        &mut self.store
    }
}

impl MockEnv {
    pub fn count(&mut self, counter: Counter) {
        *self.counters.entry(counter.name()).or_default() += 1;
    }

    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters.get(counter.name()).copied().unwrap_or(0)
    }

    pub fn count_outcome(&mut self, outcome: Option<Outcome>) {
        if let Some(o) = outcome {
            self.count(o.counter());
        }
    }

    pub fn count_tally(&mut self, tally: LearnTally) {
        for _ in 0..tally.learned {
            self.count(Counter::TaskLearned);
        }
        for _ in 0..tally.evicted {
            self.count(Counter::TaskEvicted);
        }
    }
}

/// A request as a host would hold it: headers and the buffered body, with
/// the core's decisions applied as Envoy would apply them.
#[derive(Clone, Debug, Default)]
pub struct HeldRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HeldRequest {
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Applies a decision: body edit first (with its content-length), then
    /// the header; counts through `env`. Returns the decision's `next`.
    pub fn apply(&mut self, config: &Config, decision: Decision, env: &mut MockEnv) -> Next {
        if let Some(edit) = &decision.body {
            let edited = edit
                .apply(&self.body)
                .expect("the edit fits the body the core read");
            self.body = edited;
            if let Some(length) = edit.content_length {
                self.headers.retain(|(k, _)| k != "content-length");
                self.headers
                    .push(("content-length".into(), length.to_string()));
            }
        }
        match &decision.header {
            HeaderOp::Keep => {}
            HeaderOp::Set(value) => {
                self.headers.retain(|(k, _)| *k != config.header);
                self.headers.push((config.header.clone(), value.clone()));
            }
            HeaderOp::Remove => self.headers.retain(|(k, _)| *k != config.header),
        }
        env.count_outcome(decision.outcome);
        if decision.client_header_kept {
            env.count(Counter::ClientHeaderKept);
        }
        decision.next
    }
}

/// One request through a fresh stream: the head, then `chunks`, each
/// decision applied to the held request. Returns the stream (for the
/// response side), the held request as the upstream would get it and the
/// last decision's `next`.
pub fn run(
    config: &Config,
    env: &mut MockEnv,
    head: &RequestHead<'_>,
    chunks: &[&[u8]],
) -> (Stream, HeldRequest, Next) {
    let mut stream = Stream::new();
    let mut held = HeldRequest {
        headers: vec![],
        body: vec![],
    };
    if let Some(n) = head.content_length {
        held.headers.push(("content-length".into(), n.to_string()));
    }
    if head.client_header {
        held.headers
            .push((config.header.clone(), "from-client".into()));
    }
    let decision = stream.on_request_headers(config, head, chunks.is_empty(), env);
    let mut next = held.apply(config, decision, env);
    let mut forwarded = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        held.body.extend_from_slice(chunk);
        if next == Next::NeedBody {
            let decision = stream.on_request_body(config, chunk, last, env);
            next = held.apply(config, decision, env);
        }
        if next == Next::Continue {
            // Once let go, the held bytes leave and later ones stream past.
            forwarded.append(&mut held.body);
        }
    }
    forwarded.append(&mut held.body);
    held.body = forwarded;
    (stream, held, next)
}
