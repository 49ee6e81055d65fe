//! Runs requests through the core as a host would, many per process, and
//! prints what it decided: the differential check against the agents' own
//! parsers (`tests/test_differential.py`) drives it.
//!
//! Usage: `route [CONFIG_JSON]`. Standard input holds records, each a line
//! `METHOD PATH CONTENT-TYPE LENGTH` (`-` for no content type) followed by
//! LENGTH body bytes. For each record one JSON line is written:
//! `{"outcome": <counter name>, "header": <value or null>,
//! "body": <the forwarded body, hex, or null when unchanged>}`.
//! The whole body is pushed at once, with its content-length; the task
//! store starts empty.

use std::io::{self, BufRead, Read, Write};

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stream::{HeaderOp, Next, RequestHead, Stream};
use a2a_affinity_testkit::env::{HeldRequest, MockEnv};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = match std::env::args().nth(1) {
        Some(json) => Config::parse(json.as_bytes()).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut env = MockEnv::default();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [method, path, content_type, length] = fields.as_slice() else {
            return Err(format!("bad record line {line:?}").into());
        };
        let mut body = vec![0u8; length.parse()?];
        input.read_exact(&mut body)?;
        let content_type = (*content_type != "-").then_some(*content_type);
        let (outcome, header, forwarded) =
            route(&config, &mut env, method, path, content_type, &body);
        let record = serde_json::json!({
            "outcome": outcome,
            "header": header,
            "body": (forwarded != body).then(|| hex(&forwarded)),
        });
        writeln!(out, "{record}")?;
    }
    out.flush()?;
    Ok(())
}

/// One request through a fresh stream: the outcome counted, the hash
/// header the upstream would see, the body it would get.
fn route(
    config: &Config,
    env: &mut MockEnv,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (&'static str, Option<String>, Vec<u8>) {
    let head = RequestHead {
        method,
        path,
        content_type,
        content_encoding: None,
        content_length: Some(body.len() as u64),
        client_header: false,
    };
    let mut held = HeldRequest {
        headers: Vec::new(),
        body: body.to_vec(),
    };
    let mut stream = Stream::new();
    let mut outcome = None;
    let mut decision = stream.on_request_headers(config, &head, body.is_empty(), env);
    loop {
        outcome = outcome.or(decision.outcome);
        let header = decision.header.clone();
        if let Some(edit) = &decision.body {
            match edit.apply(&held.body) {
                Some(edited) => held.body = edited,
                None => {
                    decision = stream.mint_failed(config);
                    continue;
                }
            }
        }
        match header {
            HeaderOp::Keep => {}
            HeaderOp::Set(value) => held.headers = vec![(config.header.clone(), value)],
            HeaderOp::Remove => held.headers.clear(),
        }
        match decision.next {
            Next::NeedBody => decision = stream.on_request_body(config, body, true, env),
            Next::LookupTask(_) => decision = stream.task_resolved(config, None),
            Next::Continue => break,
        }
    }
    let outcome = outcome.or(stream.on_stream_end(env));
    let name = outcome.map_or("none", |o| o.counter().name());
    let header = held.header_values(&config.header).into_iter().next();
    (name, header, held.body)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
