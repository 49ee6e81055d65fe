//! The Envoy dynamic-module ABI, by hand: the event hooks Envoy requires of
//! an HTTP filter module, and the host behind `host::Host` made of Envoy's
//! callbacks. The types and callback declarations of Envoy's
//! `source/extensions/dynamic_modules/abi/abi.h` are in `crates/dynamic-abi`,
//! shared with the bench's floor module.
//!
//! Envoy checks no signature: it looks the hooks up by name (a missing
//! required hook makes it reject the filter configuration) and calls them,
//! and the module calls Envoy's exported callbacks by name. A wrong
//! signature is therefore a crash, not an error. Every declaration was read
//! from the header (ABI v0.1.0 at Envoy commit 0199da4a, which says v0.1.y
//! stays compatible with v0.2.x) and checked against the Envoy 1.40.0
//! binary: each callback is in its dynamic symbol table, and the
//! disassembly of each shows the arguments used as declared (see the crate
//! README, which also names the later headers compared since).
//!
//! Safety rules of this module:
//! - every pointer Envoy hands over is checked for null before use;
//! - a filter's module pointer is a `Box<Stream>` this module made in
//!   `on_http_filter_new` and frees in `on_http_filter_destroy`; a config's
//!   is a `Box<ConfigHandle>` made in `on_http_filter_config_new` and freed
//!   in `on_http_filter_config_destroy`. Envoy calls a filter's hooks on one
//!   worker thread, one at a time, so the `&mut` taken in a hook is unique;
//! - memory Envoy lends (header values, body chunks, the configuration) is
//!   read only during the hook that received it and before any callback
//!   that may change it;
//! - every exported hook runs inside `catch_unwind`: a panic is logged and
//!   the hook answers as if the filter were not there (Continue). The
//!   workspace's release profile builds with `panic = "abort"`, under which
//!   no panic can be caught: build the module with `panic = "unwind"` (crate
//!   README) so that this holds.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use smallvec::SmallVec;

use a2a_affinity_core::stats::Counter;
use log::{error, info, warn};

use crate::filter::{Action, Filter, FilterConfig};
use crate::host::{Body, Chunks, HeaderList, Headers, Host};
use crate::logger::{EnvoyLevel, EnvoyLogger, PREFIX};

pub use dynamic_abi::{
    body_type, header_type, status, EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ABI_VERSION,
    METRICS_SUCCESS,
};
use dynamic_abi::{
    envoy_bytes, envoy_dynamic_module_callback_http_append_body,
    envoy_dynamic_module_callback_http_drain_body,
    envoy_dynamic_module_callback_http_filter_config_define_counter,
    envoy_dynamic_module_callback_http_filter_increment_counter,
    envoy_dynamic_module_callback_http_get_body_chunks,
    envoy_dynamic_module_callback_http_get_body_chunks_size,
    envoy_dynamic_module_callback_http_get_body_size,
    envoy_dynamic_module_callback_http_get_buffer_limit,
    envoy_dynamic_module_callback_http_get_headers,
    envoy_dynamic_module_callback_http_get_headers_size,
    envoy_dynamic_module_callback_http_received_buffered_request_body,
    envoy_dynamic_module_callback_http_received_buffered_response_body,
    envoy_dynamic_module_callback_http_set_filter_state_typed,
    envoy_dynamic_module_callback_http_set_header, envoy_dynamic_module_callback_log,
    envoy_dynamic_module_callback_log_enabled,
};

/// The one filter this module provides (`filter_name` in Envoy's config).
pub const FILTER_NAME: &str = "a2a_affinity";

// ---------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------

fn log_enabled(level: EnvoyLevel) -> bool {
    // SAFETY: a plain function of Envoy's taking a level by value.
    unsafe { envoy_dynamic_module_callback_log_enabled(level as u32) }
}

fn log_write(level: EnvoyLevel, line: &str) {
    // SAFETY: the buffer borrows `line` for the duration of the call; Envoy
    // copies it into its log sink.
    unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(line.as_bytes())) }
}

static LOGGER: EnvoyLogger = EnvoyLogger {
    enabled: log_enabled,
    write: log_write,
};

// ---------------------------------------------------------------------------
// The host of one stream, over Envoy's callbacks
// ---------------------------------------------------------------------------

/// Envoy, as the shell sees it for one hook of one stream.
pub(crate) struct EnvoyHost {
    /// The stream's `DynamicModuleHttpFilter` (never null).
    filter: *mut c_void,
    metric_ids: [Option<usize>; Counter::ALL.len()],
}

fn header_map(map: Headers) -> u32 {
    match map {
        Headers::Request => header_type::REQUEST_HEADER,
        Headers::Response => header_type::RESPONSE_HEADER,
    }
}

fn body_code(body: Body) -> u32 {
    match body {
        Body::ReceivedRequest => body_type::RECEIVED_REQUEST,
        Body::BufferedRequest => body_type::BUFFERED_REQUEST,
        Body::ReceivedResponse => body_type::RECEIVED_RESPONSE,
        Body::BufferedResponse => body_type::BUFFERED_RESPONSE,
    }
}

impl Host for EnvoyHost {
    fn headers(&self, map: Headers) -> HeaderList<'_> {
        let code = header_map(map);
        // SAFETY: `self.filter` is the live filter of this hook.
        let count =
            unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.filter, code) };
        if count == 0 {
            return HeaderList::default();
        }
        // Made empty and then filled: `smallvec!` builds the inline array
        // aside and moves it.
        let mut raw: SmallVec<[EnvoyHttpHeader; 24]> = SmallVec::new();
        raw.resize(count, EnvoyHttpHeader::EMPTY);
        // SAFETY: `raw` has room for the `count` entries Envoy reported for
        // this map, which nothing has changed since (same hook, no write).
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(self.filter, code, raw.as_mut_ptr())
        };
        if !ok {
            return HeaderList::default();
        }
        // Read where `raw` lies: iterating it by value would first move its
        // whole inline array.
        HeaderList::new(raw.iter().filter_map(|h| {
            let key = EnvoyBuffer {
                ptr: h.key_ptr,
                length: h.key_length,
            };
            let value = EnvoyBuffer {
                ptr: h.value_ptr,
                length: h.value_length,
            };
            // SAFETY: each entry points into Envoy's header map, valid
            // until the end of this hook or the next header write, which
            // needs `&mut self` and so ends this borrow. An entry Envoy
            // left null with a length is skipped.
            unsafe { Some((envoy_bytes(key)?, envoy_bytes(value)?)) }
        }))
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        if value.is_empty() {
            // An empty value would remove the header instead.
            return false;
        }
        // SAFETY: live filter; both buffers borrow memory valid for the call
        // (Envoy copies them into the header map).
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.filter,
                header_type::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    fn remove_request_header(&mut self, name: &str) -> bool {
        // SAFETY: live filter; a null value buffer means "remove".
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.filter,
                header_type::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::NULL,
            )
        }
    }

    fn set_filter_state(&mut self, factory: &str, value: &[u8]) -> bool {
        // SAFETY: live filter; both buffers borrow memory valid for the call
        // (the factory builds its object from a copy).
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_typed(
                self.filter,
                ModuleBuffer::of(factory.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    fn body_chunks(&self, body: Body) -> Option<Chunks<'_>> {
        let code = body_code(body);
        // SAFETY: live filter.
        let count =
            unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(self.filter, code) };
        if count == 0 {
            return Some(Chunks::new());
        }
        // As for the headers: made empty, filled, read where it lies.
        let mut raw: SmallVec<[EnvoyBuffer; 8]> = SmallVec::new();
        raw.resize(count, EnvoyBuffer::EMPTY);
        // SAFETY: `raw` has room for the `count` entries Envoy reported for
        // this body, which nothing has changed since (same hook, no write).
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_body_chunks(self.filter, code, raw.as_mut_ptr())
        };
        if !ok {
            // Envoy counted chunks it then could not hand over.
            return None;
        }
        raw.iter()
            // SAFETY: each entry is a slice of Envoy's buffer, valid until the
            // end of this hook or the next body write (`&mut self`).
            .map(|&chunk| unsafe { envoy_bytes(chunk) })
            .collect()
    }

    fn body_size(&self, body: Body) -> usize {
        // SAFETY: live filter.
        unsafe { envoy_dynamic_module_callback_http_get_body_size(self.filter, body_code(body)) }
    }

    fn received_is_buffered(&self, request: bool) -> bool {
        // SAFETY: live filter.
        unsafe {
            if request {
                envoy_dynamic_module_callback_http_received_buffered_request_body(self.filter)
            } else {
                envoy_dynamic_module_callback_http_received_buffered_response_body(self.filter)
            }
        }
    }

    fn append_body(&mut self, body: Body, data: &[u8]) -> bool {
        // SAFETY: live filter; `data` is borrowed for the call (Envoy copies).
        unsafe {
            envoy_dynamic_module_callback_http_append_body(
                self.filter,
                body_code(body),
                ModuleBuffer::of(data),
            )
        }
    }

    fn drain_body(&mut self, body: Body, len: usize) -> bool {
        // SAFETY: live filter.
        unsafe { envoy_dynamic_module_callback_http_drain_body(self.filter, body_code(body), len) }
    }

    fn buffer_limit(&self) -> u64 {
        // SAFETY: live filter.
        unsafe { envoy_dynamic_module_callback_http_get_buffer_limit(self.filter) }
    }

    #[cfg(feature = "fault-probe")]
    fn set_buffer_limit(&mut self, limit: u64) {
        // SAFETY: live filter.
        unsafe {
            dynamic_abi::envoy_dynamic_module_callback_http_set_buffer_limit(self.filter, limit)
        }
    }

    fn count(&mut self, counter: Counter) {
        let Some(id) = self.metric_ids.get(counter.index()).copied().flatten() else {
            return;
        };
        // SAFETY: live filter of the configuration that defined `id`; no
        // labels (null, 0), as defined.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.filter,
                id,
                ptr::null_mut(),
                0,
                1,
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Module state behind Envoy's pointers
// ---------------------------------------------------------------------------

/// What `on_http_filter_config_new` returns (boxed).
pub struct ConfigHandle {
    config: Arc<FilterConfig>,
}

/// What `on_http_filter_new` returns (boxed): the stream's filter, `None`
/// when it could not be made (the stream then passes through untouched).
pub struct Stream {
    filter: Option<Filter>,
    /// A hook of this stream panicked: every later hook continues at once.
    failed: bool,
}

/// The variable that names the hook a `fault-probe` build panics in.
pub const FAULT_PROBE_ENV: &str = "A2A_AFFINITY_FAULT_PROBE";

/// Builds with the `fault-probe` feature only (tests; `scripts/build.sh`
/// never enables it): the hook named by [`FAULT_PROBE_ENV`] panics on entry,
/// every time, inside its guard, so that the Envoy tests can watch each
/// guard catch a panic in Envoy's process (`tests/envoy_e2e.rs`).
#[cfg(feature = "fault-probe")]
fn fault_probe(hook: &str) {
    static PROBED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if PROBED
        .get_or_init(|| std::env::var(FAULT_PROBE_ENV).ok())
        .as_deref()
        == Some(hook)
    {
        #[allow(clippy::panic)]
        {
            panic!("fault probe in {hook}");
        }
    }
}

#[cfg(not(feature = "fault-probe"))]
#[inline(always)]
fn fault_probe(_hook: &str) {}

/// The variable that gives a `fault-probe` build a buffer limit to set.
pub const LIMIT_PROBE_ENV: &str = "A2A_AFFINITY_PROBE_BUFFER_LIMIT";

/// Builds with the `fault-probe` feature only: the buffer limit (bytes) in
/// [`LIMIT_PROBE_ENV`], which the request body hook sets on the stream,
/// before it reads the chunk, in every callback while it reads a body of
/// which it has seen some bytes, as a filter before this one may change the
/// limit mid-body (`tests/envoy_e2e.rs`).
#[cfg(feature = "fault-probe")]
pub fn limit_probe() -> Option<u64> {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| std::env::var(LIMIT_PROBE_ENV).ok()?.parse().ok())
}

/// What follows a panic in a hook that handles one request.
const REQUEST_UNCHANGED: &str = "this request continues unchanged";

/// Runs `f`, turning a panic into `fallback` and one error line that says
/// what the fallback means.
fn guard<R>(hook: &str, fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(|| {
        fault_probe(hook);
        f()
    })) {
        Ok(result) => result,
        Err(_) => {
            let then = match hook {
                "on_http_filter_config_new" => "configuration rejected",
                "on_http_filter_new" => REQUEST_UNCHANGED,
                // The destroy hooks: what they were freeing stays allocated.
                _ => "its memory is not freed",
            };
            error!("{hook}: unexpected failure (panic); {then}");
            fallback
        }
    }
}

/// Runs a stream hook on the filter behind `module`: `Continue` (as
/// `Action`) for null pointers, a filter that could not be made or failed
/// before, and a panic (after which the stream is left alone).
pub(crate) fn on_stream(
    hook: &str,
    envoy: *mut c_void,
    module: *const c_void,
    f: impl FnOnce(&mut Filter, &mut EnvoyHost) -> Action,
) -> Action {
    if envoy.is_null() || module.is_null() {
        return Action::Continue;
    }
    // SAFETY: `module` is the `Box<Stream>` made by `on_http_filter_new` for
    // this stream, alive until `on_http_filter_destroy`; Envoy runs one hook
    // of a stream at a time, on one thread, so this borrow is unique.
    let stream = unsafe { &mut *module.cast::<Stream>().cast_mut() };
    if stream.failed {
        return Action::Continue;
    }
    let Some(filter) = stream.filter.as_mut() else {
        return Action::Continue;
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        fault_probe(hook);
        let mut host = EnvoyHost {
            filter: envoy,
            metric_ids: filter.config().metric_ids,
        };
        f(filter, &mut host)
    }));
    match result {
        Ok(action) => action,
        Err(_) => {
            stream.failed = true;
            if let Some(filter) = stream.filter.as_mut() {
                let _ = catch_unwind(AssertUnwindSafe(|| filter.abandon()));
            }
            error!("{hook}: unexpected failure (panic); {REQUEST_UNCHANGED}");
            Action::Continue
        }
    }
}

fn headers_status(action: Action) -> u32 {
    match action {
        Action::Continue => status::CONTINUE,
        Action::Stop => status::HEADERS_STOP_ITERATION,
    }
}

fn body_status(action: Action) -> u32 {
    match action {
        Action::Continue => status::CONTINUE,
        // Hold the chunk. Watermark rather than Buffer: should the held body
        // pass the stream's buffer limit when the filter lets it go, Envoy
        // applies flow control instead of answering 413 (the scan itself
        // stops at the limit, so the filter never waits on a paused
        // connection).
        Action::Stop => status::BODY_STOP_AND_WATERMARK,
    }
}

fn panic_line(info: &std::panic::PanicHookInfo<'_>) -> String {
    format!("{PREFIX}panic: {info}")
}

// ---------------------------------------------------------------------------
// Event hooks (exported to Envoy)
// ---------------------------------------------------------------------------

/// Called once when Envoy loads the module: installs the logger and a panic
/// hook that reports panics through Envoy's log, and returns the ABI
/// version (never NULL).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    let _ = catch_unwind(|| {
        fault_probe("on_program_init");
        install_logger();
        std::panic::set_hook(Box::new(|info| {
            log_write(EnvoyLevel::Critical, &panic_line(info));
        }));
    });
    ABI_VERSION.as_ptr()
}

/// Sends the `log` records of this module to Envoy's log.
pub(crate) fn install_logger() {
    crate::logger::install(&LOGGER);
}

/// A filter configuration: `filter_name` must be `a2a_affinity` (or empty)
/// and `filter_config` the filter's JSON configuration. NULL (Envoy then rejects
/// the configuration) for anything else, after one log line saying why.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard("on_http_filter_config_new", ptr::null(), || {
        if filter_config_envoy_ptr.is_null() {
            error!("no Envoy filter configuration to define counters on; configuration rejected");
            return ptr::null();
        }
        // SAFETY: Envoy lends the name and configuration for this call.
        let (name, raw) = unsafe { (envoy_bytes(name), envoy_bytes(config)) };
        let name = name.and_then(|n| std::str::from_utf8(n).ok()).unwrap_or("");
        // An empty name selects the module's only filter (Envoy Gateway's
        // `filterName` defaults to "").
        if !name.is_empty() && name != FILTER_NAME {
            error!("unknown filter_name {name:?}: this module provides one filter, {FILTER_NAME:?}; configuration rejected");
            return ptr::null();
        }
        let Some(raw) = raw else {
            error!("unreadable filter_config; configuration rejected");
            return ptr::null();
        };
        let mut filter_config = match FilterConfig::parse(raw) {
            Ok(config) => config,
            Err(e) => {
                error!("{e}");
                return ptr::null();
            }
        };
        define_counters(filter_config_envoy_ptr, &mut filter_config);
        if cfg!(panic = "abort") {
            warn!("built with panic = \"abort\": an unexpected failure would stop Envoy instead of failing open; build with panic = \"unwind\" (see the crate README)");
        }
        info!(
            "configured: {}; string kernel {}",
            filter_config.config,
            a2a_affinity_core::json::string_kernel()
        );
        let handle = Box::new(ConfigHandle {
            config: Arc::new(filter_config),
        });
        Box::into_raw(handle).cast_const().cast()
    })
}

/// Defines the filter's counters (no labels) on Envoy's configuration.
fn define_counters(envoy_config: *mut c_void, config: &mut FilterConfig) {
    for counter in Counter::ALL {
        let name = counter.name();
        let mut id = 0usize;
        // SAFETY: `envoy_config` is the non-null configuration of this call;
        // the name is borrowed for the call (Envoy interns it); no labels;
        // `id` is a valid out-pointer.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                envoy_config,
                ModuleBuffer::of(name.as_bytes()),
                ptr::null_mut(),
                0,
                &mut id,
            )
        };
        if result == METRICS_SUCCESS {
            if let Some(slot) = config.metric_ids.get_mut(counter.index()) {
                *slot = Some(id);
            }
        } else {
            warn!("defining counter {name} failed (result {result}); it will not count");
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: *const c_void,
) {
    guard("on_http_filter_config_destroy", (), || {
        if filter_config_ptr.is_null() {
            return;
        }
        // SAFETY: made by `Box::into_raw` in `on_http_filter_config_new`;
        // Envoy destroys each configuration once, after its last filter.
        // Filters hold their own `Arc`, so none is left dangling either way.
        drop(unsafe { Box::from_raw(filter_config_ptr.cast::<ConfigHandle>().cast_mut()) });
    });
}

/// A new stream. Never NULL (Envoy would close the stream): a stream the
/// filter cannot serve passes through untouched.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: *const c_void,
    filter_envoy_ptr: *mut c_void,
) -> *const c_void {
    let filter = guard("on_http_filter_new", None, || {
        if filter_config_ptr.is_null() || filter_envoy_ptr.is_null() {
            return None;
        }
        // SAFETY: the live `ConfigHandle` made by `on_http_filter_config_new`
        // (Envoy keeps the configuration alive while it makes filters);
        // only read.
        let handle = unsafe { &*filter_config_ptr.cast::<ConfigHandle>() };
        Some(Filter::new(Arc::clone(&handle.config)))
    });
    let stream = Box::new(Stream {
        filter,
        failed: false,
    });
    Box::into_raw(stream).cast_const().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    headers_status(on_stream(
        "on_http_filter_request_headers",
        filter_envoy_ptr,
        filter_module_ptr,
        |filter, host| filter.on_request_headers(host, end_of_stream),
    ))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    body_status(on_stream(
        "on_http_filter_request_body",
        filter_envoy_ptr,
        filter_module_ptr,
        |filter, host| filter.on_request_body(host, end_of_stream),
    ))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
) -> u32 {
    // The trailers status has only Continue and StopIteration; the filter
    // always continues here.
    let _ = on_stream(
        "on_http_filter_request_trailers",
        filter_envoy_ptr,
        filter_module_ptr,
        |filter, host| filter.on_request_trailers(host),
    );
    status::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let _ = on_stream(
        "on_http_filter_response_headers",
        filter_envoy_ptr,
        filter_module_ptr,
        |filter, host| filter.on_response_headers(host),
    );
    status::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    let _ = on_stream(
        "on_http_filter_response_body",
        filter_envoy_ptr,
        filter_module_ptr,
        |filter, host| filter.on_response_body(host, end_of_stream),
    );
    status::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) -> u32 {
    status::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
) {
    let _ = on_stream(
        "on_http_filter_stream_complete",
        filter_envoy_ptr,
        filter_module_ptr,
        |filter, host| {
            filter.on_stream_complete(host);
            Action::Continue
        },
    );
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module_ptr: *const c_void) {
    guard("on_http_filter_destroy", (), || {
        if filter_module_ptr.is_null() {
            return;
        }
        // SAFETY: made by `Box::into_raw` in `on_http_filter_new`; Envoy
        // destroys each filter once and calls none of its hooks afterwards.
        drop(unsafe { Box::from_raw(filter_module_ptr.cast::<Stream>().cast_mut()) });
    });
}

// Hooks Envoy requires of every HTTP filter module even when, as here, the
// module starts no callout, stream or scheduled event: Envoy never calls
// them for this filter.
dynamic_abi::unused_http_filter_hooks!();
