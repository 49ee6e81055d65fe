//! The floor of the benchmark's dynamic-module variants: an Envoy dynamic
//! module (`envoy.filters.http.dynamic_modules`, ABI v0.2.0, Envoy 1.40)
//! that does only what any filter must do to put a value from the request
//! body into a header before the router picks a host, and nothing else. Run
//! in front of the client-header route (`bench/run.py`, variants
//! `dynamic_floor` and `dynamic_floor_hold`), it prices what holding a
//! request costs in Envoy when the module's own work is nil, so the
//! a2a_affinity module's cost splits into "any body-to-header module" and
//! "this one".
//!
//! Always: the request headers stop iteration (the header can only be set
//! once the body is read). Its `filter_config` adds, comma-separated:
//!
//! - `hold`: keep holding the request until its last body callback (Envoy
//!   buffers the body meanwhile, with watermarks, as the a2a_affinity module
//!   asks), as a filter must when the key comes at the end of the body;
//!   without it the request goes at its first body callback, as the filter
//!   lets it go when the contextId is in the first chunk;
//! - `read`: ask Envoy for the body chunks at every body callback (their
//!   number, then the chunk pointers), as the filter does before it scans
//!   them; the bytes themselves are not read;
//! - `set-header`: set one request header (`x-floor: 1`) in the callback
//!   that lets the request go, as the filter sets `x-context-id`.
//!
//! An unknown item rejects the configuration. Response callbacks continue
//! at once. The hooks Envoy requires but never calls for a filter that
//! starts no callout are empty. Every pointer from Envoy is checked for
//! null; the per-filter state is a `Box` made in `on_http_filter_new` and
//! freed in `on_http_filter_destroy`, as in `crates/dynamic-module`, whose
//! declarations of the same callbacks (read from Envoy's `abi.h`) these
//! repeat.

#![allow(unsafe_code)]
// The hooks take Envoy's pointers and check them before use; they are
// called only by Envoy, so marking them `unsafe` would document nothing.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_char, c_void};
use std::ptr;

const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }
}

#[repr(C)]
pub struct EnvoyHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

const REQUEST_HEADER: u32 = 0;
const RECEIVED_REQUEST: u32 = 0;
const BUFFERED_REQUEST: u32 = 1;
const CONTINUE: u32 = 0;
const HEADERS_STOP_ITERATION: u32 = 1;
const BODY_STOP_AND_WATERMARK: u32 = 2;

extern "C" {
    fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter_envoy_ptr: *mut c_void,
        body_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter_envoy_ptr: *mut c_void,
        body_type: u32,
        result_buffer_vector: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter_envoy_ptr: *mut c_void,
    ) -> bool;
}

/// The parsed `filter_config`.
#[derive(Clone, Copy, Default)]
struct Work {
    hold: bool,
    read: bool,
    set_header: bool,
}

impl Work {
    fn parse(text: &[u8]) -> Option<Work> {
        let mut work = Work::default();
        let text = std::str::from_utf8(text).ok()?;
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "hold" => work.hold = true,
                "read" => work.read = true,
                "set-header" => work.set_header = true,
                _ => return None,
            }
        }
        Some(work)
    }
}

/// One stream: its work, and whether the request is still held.
struct Stream {
    work: Work,
    held: bool,
    /// Bytes of chunk lengths seen under `read` (kept so the calls are not
    /// optimised away).
    seen: usize,
    chunks: Vec<EnvoyBuffer>,
}

/// # Safety
/// `buffer.ptr` is null or points at `buffer.length` readable bytes for the call.
unsafe fn bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() {
        &[]
    } else {
        // SAFETY: non-null; Envoy lends the configuration for this call.
        unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }
    }
}

/// # Safety
/// `module` is null or the live `Box<Stream>` of `on_http_filter_new`, used
/// by one hook at a time.
unsafe fn stream<'a>(module: *const c_void) -> Option<&'a mut Stream> {
    // SAFETY: see above.
    unsafe { module.cast::<Stream>().cast_mut().as_mut() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _filter_config_envoy_ptr: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy lends the configuration for this call.
    match Work::parse(unsafe { bytes(config) }) {
        Some(work) => Box::into_raw(Box::new(work)).cast_const().cast(),
        None => ptr::null(),
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: *const c_void,
) {
    if !filter_config_ptr.is_null() {
        // SAFETY: made by `Box::into_raw` in `config_new`, destroyed once.
        drop(unsafe { Box::from_raw(filter_config_ptr.cast::<Work>().cast_mut()) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: *const c_void,
    _filter_envoy_ptr: *mut c_void,
) -> *const c_void {
    // SAFETY: the live configuration of `config_new`, only read.
    let work = unsafe { filter_config_ptr.cast::<Work>().as_ref() }
        .copied()
        .unwrap_or_default();
    let stream = Box::new(Stream {
        work,
        held: false,
        seen: 0,
        chunks: Vec::new(),
    });
    Box::into_raw(stream).cast_const().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: this stream's box, one hook at a time.
    match unsafe { stream(filter_module_ptr) } {
        Some(s) if !end_of_stream => {
            s.held = true;
            HEADERS_STOP_ITERATION
        }
        _ => CONTINUE,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: this stream's box, one hook at a time.
    let Some(s) = (unsafe { stream(filter_module_ptr) }) else {
        return CONTINUE;
    };
    if !s.held || filter_envoy_ptr.is_null() {
        return CONTINUE;
    }
    if s.work.read {
        // SAFETY: Envoy's callbacks for this stream, during its body hook;
        // the vector holds exactly the number of chunks Envoy reported.
        unsafe {
            let kind = if envoy_dynamic_module_callback_http_received_buffered_request_body(
                filter_envoy_ptr,
            ) {
                BUFFERED_REQUEST
            } else {
                RECEIVED_REQUEST
            };
            let n = envoy_dynamic_module_callback_http_get_body_chunks_size(filter_envoy_ptr, kind);
            s.chunks.clear();
            s.chunks.resize(
                n,
                EnvoyBuffer {
                    ptr: ptr::null(),
                    length: 0,
                },
            );
            if n > 0
                && envoy_dynamic_module_callback_http_get_body_chunks(
                    filter_envoy_ptr,
                    kind,
                    s.chunks.as_mut_ptr(),
                )
            {
                s.seen = s
                    .seen
                    .wrapping_add(s.chunks.iter().map(|c| c.length).sum::<usize>());
            }
        }
    }
    if s.work.hold && !end_of_stream {
        return BODY_STOP_AND_WATERMARK;
    }
    s.held = false;
    if s.work.set_header {
        // SAFETY: borrowed key and value for the call; Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                filter_envoy_ptr,
                REQUEST_HEADER,
                ModuleBuffer::of(b"x-floor"),
                ModuleBuffer::of(b"1"),
            );
        }
    }
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
) -> u32 {
    // SAFETY: this stream's box, one hook at a time.
    if let Some(s) = unsafe { stream(filter_module_ptr) } {
        s.held = false;
    }
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module_ptr: *const c_void) {
    if !filter_module_ptr.is_null() {
        // SAFETY: made by `Box::into_raw` in `filter_new`, destroyed once.
        drop(unsafe { Box::from_raw(filter_module_ptr.cast::<Stream>().cast_mut()) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) {
}
