//! A stand-in Envoy for host-target tests: definitions of every callback
//! the module declares (so test binaries link), working on an in-memory
//! stream, and a driver that calls the exported hooks the way Envoy's
//! filter manager does:
//!
//! - a body chunk is the *received* body during its callback, the last
//!   one too (as Envoy 1.38-1.40 show it); on "stop"
//!   (`StopIterationAndBuffer`/`Watermark`) it moves into the *buffered*
//!   body;
//! - when the filter continues after holding, the held headers and the
//!   buffered body (then the received chunk) go upstream;
//! - a buffered body that passes the buffer limit under
//!   `StopIterationAndBuffer` is Envoy's 413;
//! - one that passes it under `StopIterationAndWatermark` makes Envoy stop
//!   reading the client, so no more of the body would come while the filter
//!   holds it: the driver fails the test.
//!
//! Every pointer the module passes is checked the way Envoy would use it;
//! the tests fail on a call Envoy would not accept.

use std::cell::RefCell;
use std::ffi::{c_char, c_void};

use crate::ffi::{
    body_type, envoy_dynamic_module_on_http_filter_config_destroy,
    envoy_dynamic_module_on_http_filter_config_new, envoy_dynamic_module_on_http_filter_destroy,
    envoy_dynamic_module_on_http_filter_new, envoy_dynamic_module_on_http_filter_request_body,
    envoy_dynamic_module_on_http_filter_request_headers,
    envoy_dynamic_module_on_http_filter_request_trailers,
    envoy_dynamic_module_on_http_filter_response_body,
    envoy_dynamic_module_on_http_filter_response_headers,
    envoy_dynamic_module_on_http_filter_response_trailers,
    envoy_dynamic_module_on_http_filter_stream_complete, header_type, status, EnvoyBuffer,
    EnvoyHttpHeader, ModuleBuffer,
};

thread_local! {
    /// Log lines of this test thread: (level, line).
    pub static LOGS: RefCell<Vec<(u32, String)>> = const { RefCell::new(Vec::new()) };
}

/// The lines logged on this thread since the last call.
pub fn take_logs() -> Vec<(u32, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

fn module_bytes<'a>(buffer: ModuleBuffer) -> &'a [u8] {
    assert!(
        !buffer.ptr.is_null() || buffer.length == 0,
        "null buffer with a length"
    );
    if buffer.ptr.is_null() {
        return &[];
    }
    // SAFETY: the module lends this memory for the duration of the call.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }
}

/// Envoy's `DynamicModuleHttpFilterConfig`: the counters defined on it.
#[derive(Default)]
pub struct FakeConfig {
    pub counter_names: Vec<String>,
    pub counter_values: RefCell<Vec<u64>>,
    /// Answer every definition with `Frozen`.
    pub frozen: bool,
}

impl FakeConfig {
    pub fn counter(&self, name: &str) -> u64 {
        let full = format!("a2a_affinity.{name}");
        let index = self
            .counter_names
            .iter()
            .position(|n| *n == full)
            .unwrap_or_else(|| panic!("counter {full} not defined"));
        self.counter_values.borrow()[index]
    }

    /// Every counter that is not zero, by short name.
    pub fn nonzero(&self) -> Vec<(String, u64)> {
        self.counter_names
            .iter()
            .zip(self.counter_values.borrow().iter())
            .filter(|(_, v)| **v > 0)
            .map(|(n, v)| (n.trim_start_matches("a2a_affinity.").to_string(), *v))
            .collect()
    }
}

/// Envoy's `DynamicModuleHttpFilter` for one stream.
#[derive(Default)]
pub struct FakeStream {
    pub config: *const FakeConfig,
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    /// This callback's chunk (`None` outside body callbacks).
    pub received_request: Option<Vec<Vec<u8>>>,
    /// The filter chain's buffered request body (`None` until one exists).
    pub buffered_request: Option<Vec<Vec<u8>>>,
    pub received_is_buffered: bool,
    pub received_response: Option<Vec<Vec<u8>>>,
    /// The received response body is the buffered one (a filter nearer
    /// the upstream held response data and resumes).
    pub received_response_is_buffered: bool,
    pub buffered_response: Option<Vec<Vec<u8>>>,
    pub buffer_limit: u64,
    /// `(n, limit)`: the buffer limit becomes `limit` just before the
    /// `n`-th request body callback (0 the first), as a filter before this
    /// one may set it in its own body callback.
    pub buffer_limit_changes: Vec<(usize, u64)>,
    /// Request body callbacks made so far.
    pub request_body_callbacks: usize,
    /// Answer every header write with `false`.
    pub fail_header_writes: bool,
    /// Filter state written through the typed callback: (key, bytes).
    pub filter_state: Vec<(String, Vec<u8>)>,
    /// Answer every filter-state write with `false`, as an Envoy without
    /// the factory does.
    pub fail_filter_state_writes: bool,
    /// Answer every body append with `false`.
    pub fail_body_writes: bool,
    /// Answer every body drain with `false`.
    pub fail_body_drains: bool,
    /// Hand over a null chunk pointer with a length.
    pub corrupt_chunks: bool,
    /// Chunks handed over by `get_body_chunks`, per body type (indexed by
    /// the ABI's code).
    pub chunks_handed: [usize; 4],
    /// Whole header maps read (`get_headers_size` calls), per header type
    /// (indexed by the ABI's code).
    pub header_maps_read: [usize; 4],
}

// SAFETY (for every callback below): the module passes the pointer this
// driver gave it for the stream or configuration being called, which is
// alive for the whole call; the driver is single-threaded.
fn stream<'a>(ptr: *mut c_void) -> &'a mut FakeStream {
    assert!(!ptr.is_null(), "null filter pointer");
    unsafe { &mut *ptr.cast::<FakeStream>() }
}

fn headers_of(stream: &mut FakeStream, header_type: u32) -> Option<&mut Vec<(String, Vec<u8>)>> {
    match header_type {
        header_type::REQUEST_HEADER => Some(&mut stream.request_headers),
        header_type::RESPONSE_HEADER => Some(&mut stream.response_headers),
        header_type::REQUEST_TRAILER | header_type::RESPONSE_TRAILER => None,
        other => panic!("bad header type {other}"),
    }
}

fn body_of(stream: &mut FakeStream, body_type: u32) -> &mut Option<Vec<Vec<u8>>> {
    match body_type {
        body_type::RECEIVED_REQUEST => &mut stream.received_request,
        body_type::BUFFERED_REQUEST => &mut stream.buffered_request,
        body_type::RECEIVED_RESPONSE => &mut stream.received_response,
        body_type::BUFFERED_RESPONSE => &mut stream.buffered_response,
        other => panic!("bad body type {other}"),
    }
}

/// Envoy hands over its raw slices: non-empty ones only.
fn slices(body: &[Vec<u8>]) -> impl Iterator<Item = &Vec<u8>> {
    body.iter().filter(|c| !c.is_empty())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer) {
    let line = String::from_utf8_lossy(module_bytes(message)).into_owned();
    LOGS.with(|l| l.borrow_mut().push((level, line)));
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool {
    assert!(level <= 6);
    true
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_get_headers_size(
    filter_envoy_ptr: *mut c_void,
    header_type: u32,
) -> usize {
    let stream = stream(filter_envoy_ptr);
    if let Some(count) = stream.header_maps_read.get_mut(header_type as usize) {
        *count += 1;
    }
    headers_of(stream, header_type).map_or(0, |map| map.len())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_get_headers(
    filter_envoy_ptr: *mut c_void,
    header_type: u32,
    result_headers: *mut EnvoyHttpHeader,
) -> bool {
    assert!(!result_headers.is_null());
    let stream = stream(filter_envoy_ptr);
    let Some(map) = headers_of(stream, header_type) else {
        return false;
    };
    for (i, (key, value)) in map.iter().enumerate() {
        // Envoy keeps every header name in lower case.
        assert_eq!(
            *key,
            key.to_ascii_lowercase(),
            "header names are lower case"
        );
        // SAFETY: the module passed room for `http_get_headers_size`
        // entries, the length of this map, which nothing changed since.
        unsafe {
            *result_headers.add(i) = EnvoyHttpHeader {
                key_ptr: key.as_ptr().cast::<c_char>(),
                key_length: key.len(),
                value_ptr: value.as_ptr().cast::<c_char>(),
                value_length: value.len(),
            };
        }
    }
    true
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_set_header(
    filter_envoy_ptr: *mut c_void,
    header_type: u32,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    let stream = stream(filter_envoy_ptr);
    if stream.fail_header_writes {
        return false;
    }
    let key = String::from_utf8(module_bytes(key).to_vec())
        .unwrap()
        .to_ascii_lowercase();
    let value = module_bytes(value).to_vec();
    let Some(map) = headers_of(stream, header_type) else {
        return false;
    };
    map.retain(|(k, _)| *k != key);
    if !value.is_empty() {
        map.push((key, value));
    }
    true
}

/// The object factories this stand-in knows, as Envoy registers them.
const FACTORIES: &[&str] = &["envoy.hashable_string", "envoy.string"];

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_set_filter_state_typed(
    filter_envoy_ptr: *mut c_void,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    let stream = stream(filter_envoy_ptr);
    let key = String::from_utf8(module_bytes(key).to_vec()).unwrap();
    if stream.fail_filter_state_writes || !FACTORIES.contains(&key.as_str()) {
        return false;
    }
    let value = module_bytes(value).to_vec();
    stream.filter_state.retain(|(k, _)| *k != key);
    stream.filter_state.push((key, value));
    true
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_get_body_size(
    filter_envoy_ptr: *mut c_void,
    body_type: u32,
) -> usize {
    body_of(stream(filter_envoy_ptr), body_type)
        .as_ref()
        .map_or(0, |b| b.iter().map(Vec::len).sum())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks_size(
    filter_envoy_ptr: *mut c_void,
    body_type: u32,
) -> usize {
    body_of(stream(filter_envoy_ptr), body_type)
        .as_ref()
        .map_or(0, |b| slices(b).count())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks(
    filter_envoy_ptr: *mut c_void,
    body_type: u32,
    result_buffer_vector: *mut EnvoyBuffer,
) -> bool {
    let stream = stream(filter_envoy_ptr);
    let corrupt = stream.corrupt_chunks;
    let Some(body) = body_of(stream, body_type).as_ref() else {
        return false;
    };
    assert!(!result_buffer_vector.is_null());
    let mut handed = 0;
    for (i, chunk) in slices(body).enumerate() {
        let entry = EnvoyBuffer {
            ptr: if corrupt {
                std::ptr::null()
            } else {
                chunk.as_ptr().cast()
            },
            length: chunk.len(),
        };
        // SAFETY: the module sized the vector with
        // `get_body_chunks_size`, which counted these slices.
        unsafe { *result_buffer_vector.add(i) = entry };
        handed += 1;
    }
    if let Some(count) = stream.chunks_handed.get_mut(body_type as usize) {
        *count += handed;
    }
    true
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_append_body(
    filter_envoy_ptr: *mut c_void,
    body_type: u32,
    data: ModuleBuffer,
) -> bool {
    let stream = stream(filter_envoy_ptr);
    if stream.fail_body_writes {
        return false;
    }
    let data = module_bytes(data).to_vec();
    let buffered = matches!(
        body_type,
        body_type::BUFFERED_REQUEST | body_type::BUFFERED_RESPONSE
    );
    let body = body_of(stream, body_type);
    match body {
        Some(chunks) => chunks.push(data),
        // Envoy creates a buffered body (addDecodedData); a received body
        // exists only in body callbacks.
        None if buffered => *body = Some(vec![data]),
        None => return false,
    }
    true
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_drain_body(
    filter_envoy_ptr: *mut c_void,
    body_type: u32,
    number_of_bytes: usize,
) -> bool {
    if stream(filter_envoy_ptr).fail_body_drains {
        return false;
    }
    let Some(body) = body_of(stream(filter_envoy_ptr), body_type).as_mut() else {
        return false;
    };
    let mut left = number_of_bytes;
    for chunk in body.iter_mut() {
        let n = left.min(chunk.len());
        chunk.drain(..n);
        left -= n;
    }
    body.retain(|c| !c.is_empty());
    true
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_received_buffered_request_body(
    filter_envoy_ptr: *mut c_void,
) -> bool {
    let stream = stream(filter_envoy_ptr);
    stream.received_is_buffered && stream.received_request.is_some()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_received_buffered_response_body(
    filter_envoy_ptr: *mut c_void,
) -> bool {
    let stream = stream(filter_envoy_ptr);
    stream.received_response_is_buffered && stream.received_response.is_some()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_get_buffer_limit(
    filter_envoy_ptr: *mut c_void,
) -> u64 {
    stream(filter_envoy_ptr).buffer_limit
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_set_buffer_limit(
    filter_envoy_ptr: *mut c_void,
    limit: u64,
) {
    stream(filter_envoy_ptr).buffer_limit = limit;
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
    filter_config_envoy_ptr: *mut c_void,
    name: ModuleBuffer,
    label_names: *mut ModuleBuffer,
    label_names_length: usize,
    counter_id_ptr: *mut usize,
) -> u32 {
    assert!(!filter_config_envoy_ptr.is_null() && !counter_id_ptr.is_null());
    assert!(label_names.is_null() && label_names_length == 0);
    // SAFETY: the configuration pointer the driver passed to config_new.
    let config = unsafe { &mut *filter_config_envoy_ptr.cast::<FakeConfig>() };
    if config.frozen {
        return 3;
    }
    config
        .counter_names
        .push(String::from_utf8(module_bytes(name).to_vec()).unwrap());
    config.counter_values.borrow_mut().push(0);
    // SAFETY: checked non-null. Envoy's ids start at 1.
    unsafe { *counter_id_ptr = config.counter_names.len() };
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_filter_increment_counter(
    filter_envoy_ptr: *mut c_void,
    id: usize,
    label_values: *mut ModuleBuffer,
    label_values_length: usize,
    value: u64,
) -> u32 {
    assert!(label_values.is_null() && label_values_length == 0);
    let stream = stream(filter_envoy_ptr);
    // SAFETY: the stream's configuration outlives it in the driver.
    let config = unsafe { &*stream.config };
    let mut values = config.counter_values.borrow_mut();
    match id.checked_sub(1).and_then(|i| values.get_mut(i)) {
        Some(v) => {
            *v += value;
            0
        }
        None => 1,
    }
}

/// A filter configuration made through `on_http_filter_config_new`.
pub struct Configured {
    pub envoy: Box<FakeConfig>,
    pub module: *const c_void,
}

impl Configured {
    pub fn new(json: &str) -> Option<Configured> {
        Self::named("a2a_affinity", json, FakeConfig::default())
    }

    pub fn named(name: &str, json: &str, envoy: FakeConfig) -> Option<Configured> {
        let mut envoy = Box::new(envoy);
        let module = envoy_dynamic_module_on_http_filter_config_new(
            std::ptr::from_mut::<FakeConfig>(&mut envoy).cast(),
            EnvoyBuffer {
                ptr: name.as_ptr().cast(),
                length: name.len(),
            },
            EnvoyBuffer {
                ptr: json.as_ptr().cast(),
                length: json.len(),
            },
        );
        (!module.is_null()).then_some(Configured { envoy, module })
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.envoy.counter(name)
    }
}

impl Drop for Configured {
    fn drop(&mut self) {
        envoy_dynamic_module_on_http_filter_config_destroy(self.module);
    }
}

/// How a request ended up upstream.
#[derive(Debug, Default)]
pub struct Upstream {
    /// The request headers when they left the filter (`None`: never).
    pub headers: Option<Vec<(String, Vec<u8>)>>,
    /// The stream's filter state when the headers left the filter (what
    /// the router's hash policy reads).
    pub filter_state: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Envoy answered 413 (a buffered body past the limit).
    pub payload_too_large: bool,
    /// Statuses the request-side hooks returned, in order.
    pub statuses: Vec<u32>,
}

impl Upstream {
    /// The value in filter state under `key` when the request left.
    pub fn filter_state(&self, key: &str) -> Option<String> {
        self.filter_state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_values(name);
        assert!(values.len() <= 1, "{name} repeated: {values:?}");
        values.into_iter().next()
    }

    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .as_ref()
            .expect("headers never went upstream")
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One stream through the filter.
pub struct Exchange<'c> {
    /// The configuration outlives its streams, as in Envoy.
    _config: &'c Configured,
    pub stream: Box<FakeStream>,
    pub module: *const c_void,
    pub upstream: Upstream,
    /// The headers are held.
    held: bool,
    destroyed: bool,
}

impl<'c> Exchange<'c> {
    pub fn new(config: &'c Configured) -> Self {
        let mut stream = Box::new(FakeStream {
            config: &*config.envoy,
            buffer_limit: 1 << 20,
            ..FakeStream::default()
        });
        let module = envoy_dynamic_module_on_http_filter_new(config.module, stream.ptr());
        assert!(!module.is_null());
        Exchange {
            _config: config,
            stream,
            module,
            upstream: Upstream::default(),
            held: false,
            destroyed: false,
        }
    }

    /// Sends the request headers, then each chunk, then (if `trailers`) the
    /// trailers, as Envoy's filter manager would.
    pub fn request(mut self, headers: &[(&str, &str)], chunks: &[&[u8]], trailers: bool) -> Self {
        self.stream.request_headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let end = chunks.is_empty() && !trailers;
        let status = envoy_dynamic_module_on_http_filter_request_headers(
            self.stream.ptr(),
            self.module,
            end,
        );
        self.upstream.statuses.push(status);
        if status == status::CONTINUE {
            self.release_headers();
        } else {
            assert_eq!(status, status::HEADERS_STOP_ITERATION);
            self.held = true;
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len() && !trailers;
            self.body(chunk, end);
        }
        if trailers {
            let status = envoy_dynamic_module_on_http_filter_request_trailers(
                self.stream.ptr(),
                self.module,
            );
            self.upstream.statuses.push(status);
            assert_eq!(status, status::CONTINUE);
            if self.held {
                self.release_headers();
                let held = self.stream.buffered_request.take().unwrap_or_default();
                self.upstream.body.extend(held.concat());
            }
        }
        self
    }

    fn release_headers(&mut self) {
        self.held = false;
        self.upstream.headers = Some(self.stream.request_headers.clone());
        self.upstream.filter_state = self.stream.filter_state.clone();
    }

    fn body(&mut self, chunk: &[u8], end: bool) {
        let n = self.stream.request_body_callbacks;
        self.stream.request_body_callbacks += 1;
        let changes = &self.stream.buffer_limit_changes;
        if let Some(&(_, limit)) = changes.iter().find(|(at, _)| *at == n) {
            self.stream.buffer_limit = limit;
        }
        if !self.held {
            self.stream.received_request = Some(vec![chunk.to_vec()]);
            let status = envoy_dynamic_module_on_http_filter_request_body(
                self.stream.ptr(),
                self.module,
                end,
            );
            self.upstream.statuses.push(status);
            assert_eq!(status, status::CONTINUE, "stopped after continuing");
            let received = self.stream.received_request.take().unwrap_or_default();
            self.upstream.body.extend(received.concat());
            return;
        }
        self.stream.received_request = Some(vec![chunk.to_vec()]);
        let status =
            envoy_dynamic_module_on_http_filter_request_body(self.stream.ptr(), self.module, end);
        self.upstream.statuses.push(status);
        let received = self.stream.received_request.take().unwrap_or_default();
        match status {
            status::CONTINUE => {
                self.release_headers();
                let held = self.stream.buffered_request.take().unwrap_or_default();
                self.upstream.body.extend(held.concat());
                self.upstream.body.extend(received.concat());
            }
            status::BODY_STOP_AND_BUFFER | status::BODY_STOP_AND_WATERMARK => {
                let buffered = self.stream.buffered_request.get_or_insert_with(Vec::new);
                buffered.extend(received);
                let size: usize = buffered.iter().map(Vec::len).sum();
                let past_limit = size as u64 > self.stream.buffer_limit;
                if status == status::BODY_STOP_AND_BUFFER && past_limit {
                    self.upstream.payload_too_large = true;
                }
                assert!(
                    !(status == status::BODY_STOP_AND_WATERMARK && past_limit),
                    "the filter holds {size} bytes, past the buffer limit of {}: Envoy \
                     would stop reading the client and the request would stall",
                    self.stream.buffer_limit
                );
            }
            other => panic!("unexpected body status {other}"),
        }
    }

    /// Sends the response (headers, then chunks) and completes the stream.
    pub fn respond(mut self, content_type: &str, chunks: &[&[u8]]) -> Self {
        self.response_headers(content_type, chunks.is_empty());
        for (i, chunk) in chunks.iter().enumerate() {
            self.stream.received_response = Some(vec![chunk.to_vec()]);
            self.response_body(i + 1 == chunks.len());
            self.stream.received_response = None;
        }
        let status =
            envoy_dynamic_module_on_http_filter_response_trailers(self.stream.ptr(), self.module);
        assert_eq!(status, status::CONTINUE);
        self
    }

    /// Sends the headers of a 200 response of `content_type`.
    pub fn response_headers(&mut self, content_type: &str, end: bool) {
        self.stream.response_headers = vec![
            (":status".into(), b"200".to_vec()),
            ("content-type".into(), content_type.as_bytes().to_vec()),
        ];
        let status = envoy_dynamic_module_on_http_filter_response_headers(
            self.stream.ptr(),
            self.module,
            end,
        );
        assert_eq!(status, status::CONTINUE);
    }

    /// One response body callback on the response buffers as they are
    /// (the received chunk, or a layout a test made by hand).
    pub fn response_body(&mut self, end: bool) {
        let status =
            envoy_dynamic_module_on_http_filter_response_body(self.stream.ptr(), self.module, end);
        assert_eq!(status, status::CONTINUE, "a response chunk was held");
    }

    /// Ends the stream as Envoy does: stream complete, then destroy.
    pub fn finish(mut self) -> Upstream {
        self.complete();
        std::mem::take(&mut self.upstream)
    }

    fn complete(&mut self) {
        if !self.destroyed {
            self.destroyed = true;
            envoy_dynamic_module_on_http_filter_stream_complete(self.stream.ptr(), self.module);
            envoy_dynamic_module_on_http_filter_destroy(self.module);
        }
    }
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        self.complete();
    }
}

impl FakeStream {
    pub fn ptr(&mut self) -> *mut c_void {
        std::ptr::from_mut::<FakeStream>(self).cast()
    }
}
