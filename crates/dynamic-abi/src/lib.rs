//! Envoy's dynamic-module ABI (`source/extensions/dynamic_modules/abi/abi.h`)
//! as this project uses it: the types, the codes and the callbacks Envoy
//! exports, declared once for `crates/dynamic-module` and the bench's floor
//! module (`bench/dynamic-floor`), which must not carry the filter's hooks.
//! Declarations, the buffer helpers and the never-called hooks (a macro);
//! no state.
//!
//! Envoy checks no signature: it looks the hooks up by name and calls them,
//! and a module calls Envoy's callbacks by name, so a wrong declaration is
//! a crash, not an error. Each one here was read from the header (ABI v0.1.0
//! at Envoy commit 0199da4a, which says v0.1.y stays compatible with v0.2.x)
//! and checked against the Envoy 1.40.0 binary (see
//! `crates/dynamic-module/README.md`). A module links only the callbacks it
//! calls.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::ptr;

/// The ABI version a module written against these declarations returns
/// from `envoy_dynamic_module_on_program_init`. Envoy 1.40's is `v0.2.0`;
/// Envoy only logs a warning when they differ (1.39 is `v0.1.0`), and a
/// NULL would fail the load.
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

// ---------------------------------------------------------------------------
// Types (abi.h)
// ---------------------------------------------------------------------------

/// `envoy_dynamic_module_type_envoy_buffer`: memory Envoy owns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_module_buffer`: memory the module owns, lent
/// to Envoy for the duration of one callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The null buffer: to `http_set_header`, "remove the header".
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_envoy_http_header`: one header as Envoy lends
/// it (`http_get_headers`; also in the signatures of the callout hooks a
/// module exports even when it starts no callout).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    pub const EMPTY: EnvoyHttpHeader = EnvoyHttpHeader {
        key_ptr: ptr::null(),
        key_length: 0,
        value_ptr: ptr::null(),
        value_length: 0,
    };
}

/// `envoy_dynamic_module_type_http_header_type`.
pub mod header_type {
    pub const REQUEST_HEADER: u32 = 0;
    pub const REQUEST_TRAILER: u32 = 1;
    pub const RESPONSE_HEADER: u32 = 2;
    pub const RESPONSE_TRAILER: u32 = 3;
}

/// `envoy_dynamic_module_type_http_body_type`.
pub mod body_type {
    pub const RECEIVED_REQUEST: u32 = 0;
    pub const BUFFERED_REQUEST: u32 = 1;
    pub const RECEIVED_RESPONSE: u32 = 2;
    pub const BUFFERED_RESPONSE: u32 = 3;
}

/// The hooks' status enums (`envoy_dynamic_module_type_on_http_filter_*_status`),
/// Envoy's `FilterHeadersStatus`, `FilterDataStatus`, `FilterTrailersStatus`.
pub mod status {
    /// Every status enum: `Continue`.
    pub const CONTINUE: u32 = 0;
    /// Headers: `StopIteration`.
    pub const HEADERS_STOP_ITERATION: u32 = 1;
    /// Body: `StopIterationAndBuffer`.
    pub const BODY_STOP_AND_BUFFER: u32 = 1;
    /// Body: `StopIterationAndWatermark`.
    pub const BODY_STOP_AND_WATERMARK: u32 = 2;
}

/// `envoy_dynamic_module_type_metrics_result_Success`.
pub const METRICS_SUCCESS: u32 = 0;

// ---------------------------------------------------------------------------
// Callbacks (exported by Envoy)
// ---------------------------------------------------------------------------

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    /// The number of entries in a header map (0 if the stream has no such
    /// map now).
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: *mut c_void,
        header_type: u32,
    ) -> usize;
    /// Writes every entry of a header map, in the map's order, to
    /// `result_headers`, which must have room for the number
    /// `http_get_headers_size` gave; `false` if the stream has no such map.
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: *mut c_void,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Stores `value` in the stream's filter state under `key`, as the
    /// object that Envoy's object factory of the same name builds from
    /// those bytes; `false` if Envoy has no factory of that name or the
    /// factory refuses the bytes. Exported by Envoy 1.38 to 1.40 alike.
    pub fn envoy_dynamic_module_callback_http_set_filter_state_typed(
        filter_envoy_ptr: *mut c_void,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter_envoy_ptr: *mut c_void,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter_envoy_ptr: *mut c_void,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter_envoy_ptr: *mut c_void,
        body_type: u32,
        result_buffer_vector: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter_envoy_ptr: *mut c_void,
        body_type: u32,
        data: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter_envoy_ptr: *mut c_void,
        body_type: u32,
        number_of_bytes: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter_envoy_ptr: *mut c_void,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        filter_envoy_ptr: *mut c_void,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_buffer_limit(
        filter_envoy_ptr: *mut c_void,
    ) -> u64;
    /// Imported only by the module's test-only `fault-probe` build.
    pub fn envoy_dynamic_module_callback_http_set_buffer_limit(
        filter_envoy_ptr: *mut c_void,
        limit: u64,
    );

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

/// Borrows an Envoy buffer: empty for a null pointer of length 0, `None`
/// for a null pointer with a length.
///
/// # Safety
/// A non-null `buffer.ptr` must point at `buffer.length` readable bytes that
/// stay valid and unchanged for `'a`.
pub unsafe fn envoy_bytes<'a>(buffer: EnvoyBuffer) -> Option<&'a [u8]> {
    if buffer.ptr.is_null() {
        return (buffer.length == 0).then_some(&[][..]);
    }
    // SAFETY: non-null, and the caller vouches for the length and lifetime.
    Some(unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) })
}

// ---------------------------------------------------------------------------
// Hooks a module starts nothing for
// ---------------------------------------------------------------------------

/// Defines, in the calling crate, the HTTP filter hooks Envoy requires of
/// every module but calls only for what a module starts itself (HTTP
/// callouts and streams, scheduled events) and for the downstream write
/// watermarks, each as a hook that does nothing. For a module that starts
/// none of these, as both modules here.
#[macro_export]
macro_rules! unused_http_filter_hooks {
    () => {
        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
            _callout_id: u64,
            _result: u32,
            _headers: *mut $crate::EnvoyHttpHeader,
            _headers_size: usize,
            _body_chunks: *mut $crate::EnvoyBuffer,
            _body_chunks_size: usize,
        ) {
        }

        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
            _stream_id: u64,
            _headers: *mut $crate::EnvoyHttpHeader,
            _headers_size: usize,
            _end_stream: bool,
        ) {
        }

        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
            _stream_id: u64,
            _data: *const $crate::EnvoyBuffer,
            _data_count: usize,
            _end_stream: bool,
        ) {
        }

        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
            _stream_id: u64,
            _trailers: *mut $crate::EnvoyHttpHeader,
            _trailers_size: usize,
        ) {
        }

        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
            _stream_id: u64,
        ) {
        }

        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
            _stream_id: u64,
            _reason: u32,
        ) {
        }

        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
            _event_id: u64,
        ) {
        }

        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
        ) {
        }

        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
            _filter_envoy_ptr: *mut ::std::ffi::c_void,
            _filter_module_ptr: *const ::std::ffi::c_void,
        ) {
        }
    };
}
