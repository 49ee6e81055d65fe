//! An in-memory proxy-wasm host that behaves like Envoy's for the Wasm
//! shell's per-stream work: headers, a buffered request body that grows with
//! each callback, response chunks, counters and shared data.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use a2a_affinity::host::{Host, HostError};
use a2a_affinity::stream::{Action, Plugin, Stream};
use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::Counter;

#[derive(Default)]
pub struct Shared {
    pub data: HashMap<String, Vec<u8>>,
    pub counters: HashMap<&'static str, u64>,
    pub now: u64,
    pub random_seed: u8,
}

#[derive(Default)]
pub struct MockHost {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    pub response_chunk: Vec<u8>,
    pub shared: Rc<RefCell<Shared>>,
    pub fail_header_writes: bool,
    pub body_reads: RefCell<Vec<(usize, usize)>>,
    /// Response body bytes copied out, per call.
    pub response_reads: RefCell<Vec<usize>>,
    /// Response header maps fetched.
    pub response_header_reads: Cell<usize>,
}

impl MockHost {
    pub fn new(
        shared: &Rc<RefCell<Shared>>,
        method: &str,
        path: &str,
        content_type: Option<&str>,
    ) -> Self {
        let mut headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
        ];
        if let Some(ct) = content_type {
            headers.push(("content-type".into(), ct.into()));
        }
        MockHost {
            headers,
            shared: Rc::clone(shared),
            ..Default::default()
        }
    }

    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A header list as Envoy serializes it for the filter.
fn serialize(headers: &[(String, String)]) -> Vec<u8> {
    a2a_affinity::host::serialize_pairs(
        headers
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes())),
    )
}

impl Host for MockHost {
    fn request_header_map(&self) -> Vec<u8> {
        serialize(&self.headers)
    }
    fn replace_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self.fail_header_writes {
            return Err(HostError("header map not writable"));
        }
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        if self.fail_header_writes {
            return Err(HostError("header map not writable"));
        }
        self.headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn request_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError> {
        self.body_reads.borrow_mut().push((start, len));
        let end = (start + len).min(self.body.len());
        Ok(self.body.get(start..end).unwrap_or(&[]).to_vec())
    }
    fn replace_request_body(&mut self, buffered: usize, data: &[u8]) -> Result<(), HostError> {
        assert_eq!(
            buffered,
            self.body.len(),
            "replace must cover the whole buffer"
        );
        self.body = data.to_vec();
        Ok(())
    }
    fn response_header_map(&self) -> Vec<u8> {
        self.response_header_reads
            .set(self.response_header_reads.get() + 1);
        serialize(&self.response_headers)
    }
    fn response_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError> {
        let end = (start + len).min(self.response_chunk.len());
        let chunk = self.response_chunk.get(start..end).unwrap_or(&[]).to_vec();
        self.response_reads.borrow_mut().push(chunk.len());
        Ok(chunk)
    }
    fn count(&mut self, counter: Counter) {
        *self
            .shared
            .borrow_mut()
            .counters
            .entry(counter.name())
            .or_default() += 1;
    }
    fn random(&mut self, buf: &mut [u8; 16]) -> Result<(), HostError> {
        let mut shared = self.shared.borrow_mut();
        shared.random_seed = shared.random_seed.wrapping_add(1);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = shared.random_seed.wrapping_mul(31).wrapping_add(i as u8);
        }
        Ok(())
    }
    fn now_secs(&self) -> u64 {
        self.shared.borrow().now
    }
    fn shared_get(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().data.get(key).cloned()
    }
    fn shared_set(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.shared
            .borrow_mut()
            .data
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }
}

pub struct Harness {
    pub plugin: Rc<Plugin>,
    pub shared: Rc<RefCell<Shared>>,
}

impl Harness {
    pub fn new(config: &str) -> Self {
        let shared = Rc::new(RefCell::new(Shared {
            now: 1_000_000,
            ..Default::default()
        }));
        Harness {
            plugin: Rc::new(Plugin::new(Config::parse(config.as_bytes()).unwrap())),
            shared,
        }
    }

    pub fn counter(&self, c: Counter) -> u64 {
        self.shared
            .borrow()
            .counters
            .get(c.name())
            .copied()
            .unwrap_or(0)
    }

    pub fn host(&self, method: &str, path: &str) -> MockHost {
        MockHost::new(&self.shared, method, path, Some("application/json"))
    }

    /// Runs the request side: headers, then the body in `chunks` (each body
    /// callback sees everything buffered so far, as Envoy does after a
    /// pause), then optional trailers. Returns the actions taken.
    pub fn request(
        &self,
        host: &mut MockHost,
        chunks: &[&[u8]],
        trailers: bool,
    ) -> (Stream, Vec<Action>) {
        let mut stream = Stream::new(Rc::clone(&self.plugin));
        let mut actions = vec![stream.on_request_headers(host, chunks.is_empty() && !trailers)];
        let mut forwarded: Vec<u8> = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len() && !trailers;
            host.body.extend_from_slice(chunk);
            let size = host.body.len();
            let a = stream.on_request_body(host, size, last);
            actions.push(a);
            if a == Action::Continue {
                // Envoy forwards what is buffered; later chunks stream
                // through, each callback seeing only its own chunk.
                forwarded.append(&mut host.body);
            }
        }
        if trailers {
            actions.push(stream.on_request_trailers(host));
            forwarded.extend_from_slice(&host.body);
            host.body.clear();
        }
        host.body = forwarded;
        (stream, actions)
    }
}

/// Sends a response with `content_type` through the stream in `chunks`; the
/// filter must let every callback continue.
pub fn respond(stream: &mut Stream, host: &mut MockHost, content_type: &str, chunks: &[&[u8]]) {
    host.response_headers = vec![("content-type".into(), content_type.into())];
    assert_eq!(stream.on_response_headers(host), Action::Continue);
    for chunk in chunks {
        host.response_chunk = chunk.to_vec();
        assert_eq!(stream.on_response_body(host, chunk.len()), Action::Continue);
    }
}
