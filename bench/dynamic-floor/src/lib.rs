//! The floor of the benchmark's dynamic-module variants: an Envoy dynamic
//! module (`envoy.filters.http.dynamic_modules`, ABI v0.2.0, Envoy 1.40)
//! that does only what any filter must do to put a value from the request
//! body into a header before the router picks a host, and nothing else. Run
//! in front of the client-header route (`bench/run.py`, variants
//! `dynamic_floor`, `dynamic_floor_hold`, `dynamic_floor_touch` and
//! `dynamic_floor_skip`), it prices what holding a
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
//! - `touch`: read every body byte once, as it arrives, fetched from Envoy
//!   as the filter fetches them (the received chunk alone while every held
//!   byte has been read, else the buffered chunks, then the received ones,
//!   past the bytes already read), folding them into one word with XOR, a
//!   loop the compiler turns into vector code that runs at the speed of
//!   memory: the least any module that looks at the whole body pays on top
//!   of holding it;
//! - `skip`: read every body byte once in the same order, but with the
//!   a2a_affinity filter's own string skip (the scanner's entry to it,
//!   with the kernel the process chooses, `A2A_AFFINITY_STRING_KERNEL`
//!   included), stepping over the body as string contents from one quote
//!   (or escape the kernel leaves to its caller) to the next: what finding
//!   where every string ends costs, the part of the filter's JSON reading
//!   that grows with the body, and none of the rest of its work;
//! - `set-header`: set one request header (`x-floor: 1`) in the callback
//!   that lets the request go, as the filter sets `x-context-id`.
//!
//! An unknown item rejects the configuration. Response callbacks continue
//! at once. The hooks Envoy requires but never calls for a filter that
//! starts no callout are empty. Every pointer from Envoy is checked for
//! null; the per-filter state is a `Box` made in `on_http_filter_new` and
//! freed in `on_http_filter_destroy`, as in `crates/dynamic-module`; both
//! take Envoy's types and callbacks from `crates/dynamic-abi`.

#![allow(unsafe_code)]
// The hooks take Envoy's pointers and check them before use; they are
// called only by Envoy, so marking them `unsafe` would document nothing.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_char, c_void};
use std::ptr;

use dynamic_abi::body_type::{BUFFERED_REQUEST, RECEIVED_REQUEST};
use dynamic_abi::header_type::REQUEST_HEADER;
use dynamic_abi::status::{BODY_STOP_AND_WATERMARK, CONTINUE, HEADERS_STOP_ITERATION};
use dynamic_abi::{
    envoy_bytes, envoy_dynamic_module_callback_http_get_body_chunks,
    envoy_dynamic_module_callback_http_get_body_chunks_size,
    envoy_dynamic_module_callback_http_get_body_size,
    envoy_dynamic_module_callback_http_received_buffered_request_body,
    envoy_dynamic_module_callback_http_set_header, EnvoyBuffer, ModuleBuffer, ABI_VERSION,
};

/// The parsed `filter_config`.
#[derive(Clone, Copy, Default)]
struct Work {
    hold: bool,
    read: bool,
    touch: bool,
    skip: bool,
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
                "touch" => work.touch = true,
                "skip" => work.skip = true,
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
    /// Under `touch` or `skip`: body bytes read so far, and what reading
    /// them gave (their XOR fold, or the number of stops XORed in; kept so
    /// the reads are not optimised away).
    touched: usize,
    fold: u64,
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
    match Work::parse(unsafe { envoy_bytes(config) }.unwrap_or_default()) {
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
        touched: 0,
        fold: 0,
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
            s.chunks.resize(n, EnvoyBuffer::EMPTY);
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
    if s.work.touch || s.work.skip {
        // SAFETY: as for `read`.
        unsafe { touch(filter_envoy_ptr, s) };
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

/// Reads the body bytes past `s.touched` as the filter fetches them: the
/// received chunk alone while every byte Envoy holds has been read, else
/// the buffered chunks, then the received ones when Envoy keeps them apart.
///
/// # Safety
/// `filter` is Envoy's pointer for this stream, during its body hook.
unsafe fn touch(filter: *mut c_void, s: &mut Stream) {
    // SAFETY: see above.
    let apart =
        !unsafe { envoy_dynamic_module_callback_http_received_buffered_request_body(filter) };
    let held_all_read = apart
        // SAFETY: see above.
        && unsafe { envoy_dynamic_module_callback_http_get_body_size(filter, BUFFERED_REQUEST) }
            == s.touched;
    let kinds = if held_all_read {
        [Some(RECEIVED_REQUEST), None]
    } else {
        [Some(BUFFERED_REQUEST), apart.then_some(RECEIVED_REQUEST)]
    };
    let mut skip = if held_all_read { 0 } else { s.touched };
    for kind in kinds.into_iter().flatten() {
        // SAFETY: see above; the vector holds exactly the number of chunks
        // Envoy reported, and each chunk stays valid during the hook.
        unsafe {
            let n = envoy_dynamic_module_callback_http_get_body_chunks_size(filter, kind);
            s.chunks.clear();
            s.chunks.resize(n, EnvoyBuffer::EMPTY);
            if n == 0
                || !envoy_dynamic_module_callback_http_get_body_chunks(
                    filter,
                    kind,
                    s.chunks.as_mut_ptr(),
                )
            {
                continue;
            }
            for chunk in &s.chunks {
                if chunk.ptr.is_null() || chunk.length <= skip {
                    skip = skip.saturating_sub(chunk.length);
                    continue;
                }
                let bytes = std::slice::from_raw_parts(chunk.ptr.cast::<u8>(), chunk.length);
                let fresh = bytes.get(skip..).unwrap_or_default();
                skip = 0;
                s.touched += fresh.len();
                s.fold ^= if s.work.skip {
                    skip_strings(fresh)
                } else {
                    xor_fold(fresh)
                };
            }
        }
    }
}

/// Steps over `bytes` as string contents with the filter's own string
/// skip, one stop (a quote, or an escape it leaves to its caller) at a
/// time; returns the number of stops.
fn skip_strings(bytes: &[u8]) -> u64 {
    let (mut at, mut stops) = (0, 0u64);
    while at < bytes.len() {
        at = a2a_affinity_core::json::skip_string_contents(bytes, at).saturating_add(1);
        stops += 1;
    }
    stops
}

/// Every byte of `bytes` XORed into one word, eight at a time.
fn xor_fold(bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(8);
    let tail = words
        .remainder()
        .iter()
        .fold(0u64, |acc, &b| acc.rotate_left(8) ^ u64::from(b));
    words
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .fold(tail, |acc, w| acc ^ w)
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

// Hooks Envoy requires but never calls for a filter that starts no
// callout, stream or scheduled event.
dynamic_abi::unused_http_filter_hooks!();
