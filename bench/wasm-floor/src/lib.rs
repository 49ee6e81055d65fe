//! The floor of the benchmark's Wasm variants: a proxy-wasm module that Envoy
//! calls for the same request and response callbacks as the a2a_affinity
//! filter, with no SDK and, by default, no work at all: every callback
//! returns Continue at once. Run in front of the client-header route
//! (`bench/run.py`, variant `wasm_floor`), it measures what any proxy-wasm
//! filter costs on this Envoy before it does anything: creating the
//! per-stream context and entering V8 once per callback.
//!
//! Its plugin configuration (`bench/run.py --floor-config`) adds, one at a
//! time, the host interactions the real filter has, to price each:
//!
//! - `pause`: hold the request headers until the body arrives, as every
//!   body-reading filter must (`allow_on_headers_stop_iteration`);
//! - `hold`: with `pause`, keep holding the request until its last body
//!   callback (Envoy buffers the body meanwhile), as a filter must when the
//!   key comes at the end of the body;
//! - `copy`: copy the header maps and bodies out of Envoy as the filter does:
//!   one `proxy_get_header_map_pairs` per header callback, one
//!   `proxy_get_buffer_bytes` per response body callback, and of the request
//!   body only what a filter reads before it lets the request go: under
//!   `hold`, each callback's new bytes; otherwise the first 2 KiB (the
//!   filter's first read, which holds the contextId when it comes first);
//! - `set-header`: write one request header (`x-floor: 1`) in the body
//!   callback that lets the request go, as the filter writes `x-context-id`;
//! - `value-reads=N`: N `proxy_get_header_map_value` calls per header
//!   callback (each returns data, which Envoy allocates by calling back
//!   into the module);
//! - `size-calls=N`: N `proxy_get_header_map_size` calls per header callback
//!   (a host call that returns no data).
//!
//! Items are separated by commas; an empty configuration is the bare floor.
//! Exports follow the proxy-wasm ABI 0.2.1 (its host functions and codes
//! come from `crates/proxy-abi`, as the filter's do); Envoy calls an
//! optional callback only when the module exports it, so only what loading
//! a module needs and the four HTTP callbacks are exported. The filter
//! exports two more: request trailers (the bench sends none, so Envoy never
//! calls it) and `proxy_on_delete`, which frees a stream's state. This
//! module keeps a stream's state only under `copy`, `hold` or `set-header`,
//! and drops it at the body callback that lets the stream go.

// `#[no_mangle]` exports and the host calls are what the ABI is made of.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use proxy_abi::{
    proxy_get_buffer_bytes, proxy_get_header_map_pairs, proxy_get_header_map_size,
    proxy_get_header_map_value, proxy_replace_header_map_value, BUFFER_PLUGIN_CONFIGURATION,
    BUFFER_REQUEST_BODY, BUFFER_RESPONSE_BODY, CONTINUE, MAP_REQUEST_HEADERS, MAP_RESPONSE_HEADERS,
    PAUSE,
};

/// Request body bytes copied when not holding: the filter's first read.
const FIRST_READ: usize = 2048;

#[derive(Clone, Copy, Default)]
struct Work {
    pause: bool,
    hold: bool,
    copy: bool,
    set_header: bool,
    value_reads: u32,
    size_calls: u32,
}

thread_local! {
    static WORK: Cell<Work> = Cell::new(Work::default());
    /// Under `copy`, `hold` or `set-header`: the streams not yet let go,
    /// by context id, with how many request body bytes each has copied out
    /// so far. An entry comes with the request headers and goes at the body
    /// callback that lets the stream go (no `proxy_on_delete` here: the
    /// bench sends a body with every request and resets no stream
    /// mid-body).
    static COPIED: RefCell<HashMap<u32, usize>> = RefCell::new(HashMap::new());
}

fn parse(config: &str) -> Option<Work> {
    let mut work = Work::default();
    for item in config.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            None if item == "pause" => work.pause = true,
            None if item == "hold" => work.hold = true,
            None if item == "copy" => work.copy = true,
            None if item == "set-header" => work.set_header = true,
            Some(("value-reads", n)) => work.value_reads = n.parse().ok()?,
            Some(("size-calls", n)) => work.size_calls = n.parse().ok()?,
            _ => return None,
        }
    }
    // Holding the body, or writing a header from it, means nothing unless
    // the headers are held too.
    (work.pause || !(work.hold || work.set_header)).then_some(work)
}

/// Frees a block the host allocated through `proxy_on_memory_allocate`.
fn release(data: *mut u8, size: usize) -> usize {
    if !data.is_null() && size > 0 {
        // SAFETY: the host allocated `size` bytes at `data` by calling
        // `proxy_on_memory_allocate(size)`, which leaks a Vec of exactly that
        // capacity; nothing else owns it.
        drop(unsafe { Vec::from_raw_parts(data, size, size) });
    }
    size
}

fn buffer(kind: u32, start: usize, size: usize) -> usize {
    let (mut data, mut len) = (std::ptr::null_mut(), 0);
    // SAFETY: out-pointers to locals.
    unsafe { proxy_get_buffer_bytes(kind, start, size, &mut data, &mut len) };
    release(data, len)
}

fn header_callback(map: u32, name: &str) {
    let work = WORK.get();
    if work.copy {
        let (mut data, mut len) = (std::ptr::null_mut(), 0);
        // SAFETY: out-pointers to locals.
        unsafe { proxy_get_header_map_pairs(map, &mut data, &mut len) };
        release(data, len);
    }
    for _ in 0..work.value_reads {
        let (mut data, mut len) = (std::ptr::null_mut(), 0);
        // SAFETY: a live key slice and out-pointers to locals.
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut len) };
        release(data, len);
    }
    for _ in 0..work.size_calls {
        let mut size = 0;
        // SAFETY: an out-pointer to a local.
        unsafe { proxy_get_header_map_size(map, &mut size) };
    }
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host asks for `size` bytes of module memory for a block it returns.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut block = Vec::<u8>::with_capacity(size);
    let at = block.as_mut_ptr();
    std::mem::forget(block);
    at
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context: u32, _vm_configuration_size: usize) -> u32 {
    1
}

/// Reads the plugin configuration; an unknown item rejects it.
#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context: u32, size: usize) -> u32 {
    let (mut data, mut len) = (std::ptr::null_mut(), 0);
    // SAFETY: out-pointers to locals.
    unsafe { proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) };
    let config = if data.is_null() || len == 0 {
        Vec::new()
    } else {
        // SAFETY: as in `release`: a block of `len` bytes the host allocated.
        unsafe { Vec::from_raw_parts(data, len, len) }
    };
    match std::str::from_utf8(&config).ok().and_then(parse) {
        Some(work) => {
            WORK.set(work);
            1
        }
        None => 0,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context: u32, _parent: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context: u32, _headers: usize, end: u32) -> u32 {
    header_callback(MAP_REQUEST_HEADERS, ":path");
    let work = WORK.get();
    if (work.copy || work.hold || work.set_header) && end == 0 {
        COPIED.with_borrow_mut(|copied| copied.insert(context, 0));
    }
    if work.pause && end == 0 {
        PAUSE
    } else {
        CONTINUE
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context: u32, size: usize, end: u32) -> u32 {
    let work = WORK.get();
    if !(work.copy || work.hold || work.set_header) {
        return CONTINUE;
    }
    let held = work.hold && end == 0;
    // While held, `size` counts every byte Envoy has buffered for the
    // stream; otherwise it is this callback's bytes. `None`: the stream has
    // already been let go (or was never held).
    let seen = COPIED.with_borrow_mut(|copied| {
        if held {
            copied
                .get_mut(&context)
                .map(|seen| std::mem::replace(seen, size))
        } else {
            copied.remove(&context)
        }
    });
    let Some(seen) = seen else {
        return CONTINUE;
    };
    let until = if work.hold {
        size
    } else {
        size.min(FIRST_READ)
    };
    if work.copy && until > seen {
        buffer(BUFFER_REQUEST_BODY, seen, until - seen);
    }
    if held {
        return PAUSE;
    }
    if work.set_header {
        let (key, value) = ("x-floor", "1");
        // SAFETY: live key and value slices.
        unsafe {
            proxy_replace_header_map_value(
                MAP_REQUEST_HEADERS,
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
            )
        };
    }
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context: u32, _headers: usize, _end: u32) -> u32 {
    header_callback(MAP_RESPONSE_HEADERS, ":status");
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(_context: u32, size: usize, _end: u32) -> u32 {
    if WORK.get().copy {
        buffer(BUFFER_RESPONSE_BODY, 0, size);
    }
    CONTINUE
}
