//! The server's counters and latency histograms, kept in atomics so that
//! every gRPC stream updates them without a lock, and rendered as Prometheus
//! text for `/metrics`.
//!
//! The filter's own counters (`Counter::ALL` of the core) keep the names the
//! Wasm filter shows at Envoy's `/stats`, with Prometheus' conventions:
//! `a2a_affinity.context_found` becomes `a2a_affinity_context_found_total`.
//! Counters about the server itself carry an `ext_proc` infix.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::stream::LearnTally;

/// The ext_proc message kinds whose processing time is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
}

impl MessageKind {
    pub const ALL: [MessageKind; 6] = [
        MessageKind::RequestHeaders,
        MessageKind::RequestBody,
        MessageKind::RequestTrailers,
        MessageKind::ResponseHeaders,
        MessageKind::ResponseBody,
        MessageKind::ResponseTrailers,
    ];

    pub fn label(self) -> &'static str {
        match self {
            MessageKind::RequestHeaders => "request_headers",
            MessageKind::RequestBody => "request_body",
            MessageKind::RequestTrailers => "request_trailers",
            MessageKind::ResponseHeaders => "response_headers",
            MessageKind::ResponseBody => "response_body",
            MessageKind::ResponseTrailers => "response_trailers",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the latency buckets, in seconds. Most messages take a few
/// microseconds; a deferred Redis lookup takes up to `--redis-timeout-ms`,
/// and Envoy's own `message_timeout` (200 ms by default) is the far end.
const BUCKETS: [f64; 14] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1,
];

/// One histogram: non-cumulative bucket counts (summed when rendered), the
/// total count and the sum in nanoseconds.
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .and_then(|i| self.buckets.get(i))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Everything `/metrics` shows. Shared by every stream of one server.
pub struct Metrics {
    counters: [AtomicU64; Counter::ALL.len()],
    store_errors: AtomicU64,
    internal_errors: AtomicU64,
    streams: AtomicU64,
    active_streams: AtomicI64,
    latency: [Histogram; MessageKind::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            store_errors: AtomicU64::new(0),
            internal_errors: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            active_streams: AtomicI64::new(0),
            latency: std::array::from_fn(|_| Histogram::new()),
        }
    }

    pub fn count(&self, counter: Counter) {
        if let Some(c) = self.counters.get(counter.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn add(&self, counter: Counter, n: u64) {
        if let Some(c) = self.counters.get(counter.index()) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn count_outcome(&self, outcome: Outcome) {
        self.count(outcome.counter());
    }

    pub fn count_tally(&self, tally: LearnTally) {
        self.add(Counter::TaskLearned, u64::from(tally.learned));
        self.add(Counter::TaskEvicted, u64::from(tally.evicted));
    }

    /// The current value of one of the filter's counters.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters
            .get(counter.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A task-store operation failed or timed out (the request went on as if
    /// the task were unknown, or the pair was not stored).
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn store_errors(&self) -> u64 {
        self.store_errors.load(Ordering::Relaxed)
    }

    /// The shell itself failed on a message (a bug): that message was
    /// answered with no mutation and the stream read nothing more.
    pub fn internal_error(&self) {
        self.internal_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn internal_errors(&self) -> u64 {
        self.internal_errors.load(Ordering::Relaxed)
    }

    pub fn stream_opened(&self) {
        self.streams.fetch_add(1, Ordering::Relaxed);
        self.active_streams.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_closed(&self) {
        self.active_streams.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn active_streams(&self) -> i64 {
        self.active_streams.load(Ordering::Relaxed)
    }

    pub fn observe(&self, kind: MessageKind, elapsed: Duration) {
        if let Some(h) = self.latency.get(kind.index()) {
            h.observe(elapsed);
        }
    }

    /// How many messages of `kind` were answered.
    pub fn messages(&self, kind: MessageKind) -> u64 {
        self.latency
            .get(kind.index())
            .map_or(0, |h| h.count.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        for counter in Counter::ALL {
            let name = prometheus_name(counter);
            let _ = writeln!(out, "# HELP {name} {}", help(counter));
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", self.counter(counter));
        }
        let server_counters = [
            (
                "a2a_affinity_ext_proc_store_errors_total",
                "Task-store operations that failed or timed out; the request went on as if the task were unknown, or the pair was not stored.",
                self.store_errors(),
            ),
            (
                "a2a_affinity_ext_proc_internal_errors_total",
                "Messages the server failed on (a bug); they were answered with no mutation.",
                self.internal_errors(),
            ),
            (
                "a2a_affinity_ext_proc_streams_total",
                "ext_proc gRPC streams opened (one per HTTP request).",
                self.streams.load(Ordering::Relaxed),
            ),
        ];
        for (name, text, value) in server_counters {
            let _ = writeln!(out, "# HELP {name} {text}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "a2a_affinity_ext_proc_active_streams";
        let _ = writeln!(out, "# HELP {name} ext_proc gRPC streams open now.");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", self.active_streams());

        let name = "a2a_affinity_ext_proc_message_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from receiving one ext_proc message to its reply being ready, by message kind."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for kind in MessageKind::ALL {
            let Some(h) = self.latency.get(kind.index()) else {
                continue;
            };
            let label = kind.label();
            let mut cumulative = 0u64;
            for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{kind=\"{label}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{kind=\"{label}\",le=\"+Inf\"}} {count}");
            let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{name}_sum{{kind=\"{label}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{kind=\"{label}\"}} {count}");
        }
        out
    }
}

/// `a2a_affinity.context_found` -> `a2a_affinity_context_found_total`.
pub fn prometheus_name(counter: Counter) -> String {
    format!("{}_total", counter.name().replace('.', "_"))
}

fn help(counter: Counter) -> &'static str {
    match counter {
        Counter::ContextFound => "Requests whose body contextId was set as the hash header.",
        Counter::ContextAbsent => "A2A requests with no contextId, no taskId and nothing to mint.",
        Counter::ClientHeaderKept => {
            "Requests without a contextId in the body whose client-sent header was kept."
        }
        Counter::ScanLimit => "Requests decided without a key because the body read ended (max_scan_bytes, or the end of the one body message Envoy sends).",
        Counter::InvalidJson => "Request bodies that are not valid JSON, or unreadable gRPC frames (passed on unchanged).",
        Counter::InvalidValue => "contextIds or taskIds that cannot be a header value.",
        Counter::Passthrough => "Requests that are not A2A calls with a readable body (not inspected).",
        Counter::Minted => "First turns given a fresh contextId.",
        Counter::TaskLearned => "taskId -> contextId pairs stored from responses.",
        Counter::TaskRouted => "Task-only calls routed by their learned context.",
        Counter::TaskUnknown => "Task-only calls whose task was not learned, expired, or could not be looked up.",
        Counter::TaskEvicted => "Live learned tasks pushed out to make room.",
        Counter::Aborted => "Requests whose stream ended before the body was decided.",
        Counter::TaskIdRouted => "Task-only calls routed by the contextId their task id carries.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_rendered_under_its_prometheus_name() {
        let m = Metrics::new();
        m.count(Counter::ContextFound);
        m.observe(MessageKind::RequestBody, Duration::from_micros(30));
        let text = m.render();
        assert!(
            text.contains("\na2a_affinity_context_found_total 1\n"),
            "{text}"
        );
        for c in Counter::ALL {
            assert!(text.contains(&prometheus_name(c)), "{c:?}");
        }
        assert!(text.contains(
            "a2a_affinity_ext_proc_message_duration_seconds_bucket{kind=\"request_body\",le=\"0.00005\"} 1"
        ));
        assert!(text.contains(
            "a2a_affinity_ext_proc_message_duration_seconds_bucket{kind=\"request_body\",le=\"0.000025\"} 0"
        ));
        assert!(text.contains(
            "a2a_affinity_ext_proc_message_duration_seconds_count{kind=\"request_body\"} 1"
        ));
    }
}
