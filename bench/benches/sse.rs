//! What learning tasks from an SSE response costs per event: a 1.0
//! `SendStreamingMessage` answer of 2,000 events (a Task, then status and
//! artifact updates of that task, as a2a-sdk agents stream them), each
//! event pushed as its own chunk through the core's stream, as the shells
//! push them.
//!
//! Run: `cargo bench -p a2a-affinity-bench --bench sse`. Prints, best of 20
//! rounds, the core's time per event and how many events' bytes the core
//! asked for (a shell copies a chunk out of Envoy only while the core
//! reads the response).

// Bench set-up code may panic on a broken fixture; the filter never does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stream::{RequestHead, ResponseHead, Stream};
use a2a_affinity_testkit::env::MockEnv;

const EVENTS: usize = 2000;
const TASK: &str = "5f0e6b2a-9c1d-4e8f-a7b3-0c2d4e6f8a1b";
const CONTEXT: &str = "9f1c2e4a-5b6d-4c8e-a0f1-23456789abcd";

fn events() -> Vec<Vec<u8>> {
    (0..EVENTS)
        .map(|i| {
            let result = match i {
                0 => format!(
                    r#"{{"task":{{"id":"{TASK}","contextId":"{CONTEXT}","status":{{"state":"TASK_STATE_SUBMITTED"}}}}}}"#
                ),
                i if i % 2 == 1 => format!(
                    r#"{{"statusUpdate":{{"taskId":"{TASK}","contextId":"{CONTEXT}","status":{{"state":"TASK_STATE_WORKING","message":{{"messageId":"m-{i}","role":"ROLE_AGENT","parts":[{{"text":"working on step {i}"}}]}}}}}}}}"#
                ),
                i => format!(
                    r#"{{"artifactUpdate":{{"taskId":"{TASK}","contextId":"{CONTEXT}","artifact":{{"artifactId":"a-1","parts":[{{"text":"chunk {i} of the answer, a sentence or two of generated text"}}]}},"append":true}}}}"#
                ),
            };
            format!("data: {{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{result}}}\n\n").into_bytes()
        })
        .collect()
}

/// One whole response through a fresh stream; returns the events whose
/// bytes the core still wanted.
fn stream_once(config: &Config, env: &mut MockEnv, events: &[Vec<u8>]) -> usize {
    let mut stream = Stream::new();
    let body = br#"{"jsonrpc":"2.0","id":"1","method":"SendStreamingMessage","params":{"message":{"messageId":"m","contextId":"9f1c2e4a-5b6d-4c8e-a0f1-23456789abcd","role":"ROLE_USER","parts":[]}}}"#;
    let head = RequestHead {
        method: "POST",
        path: "/",
        content_type: Some("application/json"),
        content_encoding: None,
        content_length: Some(body.len() as u64),
        client_header: false,
    };
    stream.on_request_headers(config, &head, false, env);
    stream.on_request_body(config, body, true, env);
    let response = ResponseHead {
        content_type: Some("text/event-stream"),
        content_encoding: None,
    };
    stream.on_response_headers(config, &response, env);
    let mut read = 0;
    for event in events {
        if stream.reading_response() {
            read += 1;
            black_box(stream.on_response_body(black_box(event), env));
        }
    }
    stream.on_stream_end(env);
    read
}

fn main() {
    let config = Config::default();
    let events = events();
    let bytes: usize = events.iter().map(Vec::len).sum();
    let mut env = MockEnv::default();
    let read = stream_once(&config, &mut env, &events);
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let start = Instant::now();
        stream_once(&config, &mut env, &events);
        best = best.min(start.elapsed());
    }
    println!(
        "{EVENTS} events, {bytes} bytes: {:.3} µs per event in the core; events read: {read} of {EVENTS}",
        best.as_secs_f64() * 1e6 / EVENTS as f64
    );
}
