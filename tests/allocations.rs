//! Heap allocations per stream, counted by a global allocator around the
//! filter's own code. The host here does what Envoy's does and no more: each
//! answer that carries data (a header map, body bytes) is one block the
//! module must allocate, because Envoy writes it into module memory through
//! `proxy_on_memory_allocate`. Everything else counted is the filter's.
//!
//! Once warm, a stream of the common kind (a JSON-RPC `message/send` naming
//! its contextId, answered by a small JSON result) allocates nothing beyond
//! those host blocks but the contextId: once as read from the body and once
//! in the verdict that sets the header. The header maps are read in place,
//! and the scanner state of the request and of the response is reused from
//! one stream to the next.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::Cell;
use std::rc::Rc;

use a2a_affinity::host::{Host, HostError};
use a2a_affinity::stream::{Action, Plugin, Stream};
use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::Counter;
use a2a_affinity_testkit::alloc::{allocations, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    a2a_affinity::host::serialize_pairs(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

/// Envoy's side of one stream, with every answer prepared in advance so
/// that the host itself allocates only the blocks it hands over.
struct LeanHost {
    request_headers: Vec<u8>,
    body: Vec<u8>,
    response_headers: Vec<u8>,
    response: Vec<u8>,
    /// The last value the filter set for the hash header.
    set: Option<(usize, [u8; 64])>,
    /// Blocks handed over (each one allocation).
    blocks: Cell<u64>,
    found: u64,
}

impl LeanHost {
    fn block(&self, bytes: &[u8]) -> Vec<u8> {
        self.blocks.set(self.blocks.get() + 1);
        bytes.to_vec()
    }
}

impl Host for LeanHost {
    fn request_header_map(&self) -> Vec<u8> {
        self.block(&self.request_headers)
    }
    fn replace_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        assert_eq!(name, "x-context-id");
        let mut copy = [0u8; 64];
        copy[..value.len()].copy_from_slice(value.as_bytes());
        self.set = Some((value.len(), copy));
        Ok(())
    }
    fn remove_request_header(&mut self, _name: &str) -> Result<(), HostError> {
        panic!("nothing to remove in these streams")
    }
    fn request_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError> {
        let end = self.body.len().min(start + len);
        Ok(self.block(&self.body[start.min(end)..end]))
    }
    fn replace_request_body(&mut self, _buffered: usize, _data: &[u8]) -> Result<(), HostError> {
        panic!("these bodies name their context")
    }
    fn response_header_map(&self) -> Vec<u8> {
        self.block(&self.response_headers)
    }
    fn response_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError> {
        let end = self.response.len().min(start + len);
        Ok(self.block(&self.response[start.min(end)..end]))
    }
    fn count(&mut self, counter: Counter) {
        if counter == Counter::ContextFound {
            self.found += 1;
        }
    }
    fn random(&mut self, _buf: &mut [u8; 16]) -> Result<(), HostError> {
        panic!("these bodies name their context")
    }
    fn now_secs(&self) -> u64 {
        1_000_000
    }
    fn shared_get(&self, _key: &str) -> Option<Vec<u8>> {
        None
    }
    fn shared_set(&mut self, _key: &str, _value: &[u8]) -> Result<(), HostError> {
        Ok(())
    }
}

fn message_send(context_id: &str, text_bytes: usize, context_last: bool) -> Vec<u8> {
    let text =
        "The agent should summarise the \\\"quarterly report\\\".\\n".repeat(text_bytes / 50 + 1);
    let parts = format!(r#""parts":[{{"kind":"text","text":"{text}"}}]"#);
    let message = if context_last {
        format!(
            r#"{{"kind":"message","messageId":"m1","role":"user",{parts},"contextId":"{context_id}"}}"#
        )
    } else {
        format!(
            r#"{{"contextId":"{context_id}","kind":"message","messageId":"m1","role":"user",{parts}}}"#
        )
    };
    format!(
        r#"{{"jsonrpc":"2.0","id":"1","method":"message/send","params":{{"message":{message}}}}}"#
    )
    .into_bytes()
}

fn lean_host(body: Vec<u8>, response: &[u8]) -> LeanHost {
    let length = body.len().to_string();
    LeanHost {
        request_headers: serialize(&[
            (":authority", "agent.example"),
            (":path", "/"),
            (":method", "POST"),
            (":scheme", "http"),
            ("content-type", "application/json"),
            ("content-length", &length),
            ("x-request-id", "0b6f2a52-4c1e-4f5e-9d43-3f0a1c2b7e11"),
        ]),
        body,
        response_headers: serialize(&[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", &response.len().to_string()),
        ]),
        response: response.to_vec(),
        set: None,
        blocks: Cell::new(0),
        found: 0,
    }
}

/// One stream as Envoy drives it: headers held, the body in one callback,
/// then the response. Returns the allocations the filter made beyond the
/// host's blocks.
fn stream_allocations(plugin: &Rc<Plugin>, host: &mut LeanHost) -> u64 {
    let body_len = host.body.len();
    let response_len = host.response.len();
    let (_, n) = allocations(|| {
        let mut stream = Stream::new(Rc::clone(plugin));
        assert_eq!(stream.on_request_headers(host, false), Action::Pause);
        assert_eq!(
            stream.on_request_body(host, body_len, true),
            Action::Continue
        );
        assert_eq!(stream.on_response_headers(host), Action::Continue);
        assert_eq!(
            stream.on_response_body(host, response_len),
            Action::Continue
        );
        stream.on_delete(host);
    });
    n - host.blocks.get()
}

const RESPONSE: &[u8] = br#"{"jsonrpc":"2.0","id":"1","result":{"kind":"message","messageId":"r1","role":"agent","parts":[{"kind":"text","text":"ok"}]}}"#;

#[test]
fn a_warm_stream_allocates_only_its_context_id() {
    let plugin = Rc::new(Plugin::new(Config::default()));
    for (text, last) in [(900, false), (900, true), (16_000, false), (16_000, true)] {
        let context_id = "6f1c2e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
        let mut runs = Vec::new();
        for _ in 0..3 {
            let mut host = lean_host(message_send(context_id, text, last), RESPONSE);
            runs.push(stream_allocations(&plugin, &mut host));
            let (len, value) = host.set.expect("the header was set");
            assert_eq!(&value[..len], context_id.as_bytes());
            assert_eq!(host.found, 1);
        }
        eprintln!("text {text} bytes, contextId last {last}: allocations per stream {runs:?}");
        // The first stream builds the reusable state; the later ones
        // allocate only the contextId they set.
        assert!(
            runs[1..].iter().all(|&n| n <= 2),
            "allocations per stream beyond the host's blocks: {runs:?}"
        );
    }
}
