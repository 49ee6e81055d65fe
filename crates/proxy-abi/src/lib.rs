//! The proxy-wasm ABI 0.2.1 as the host (Envoy) offers it: the host
//! functions a module imports from `env`, and the codes they and the
//! module's callbacks exchange. Declarations only, with no exports and no
//! state, so that the filter and `bench/wasm-floor` (which must not carry
//! the filter's exports) bind the same signatures. A module imports only
//! the functions it calls.
//!
//! Every function returns a status (`OK`, `NOT_FOUND`, ...). One that hands
//! data back writes a pointer and a length through its out-parameters; the
//! host allocates that block by calling the module's
//! `proxy_on_memory_allocate`, and the module then owns it.

#![no_std]

/// Status: the call did what was asked.
pub const OK: u32 = 0;
/// Status: no such header, shared-data key or property.
pub const NOT_FOUND: u32 = 1;

/// Answer of a header, body or trailer callback: go on.
pub const CONTINUE: u32 = 0;
/// Answer of a header callback: stop iteration (body callbacks keep
/// coming). Answer of a body callback: buffer this piece and wait for more.
pub const PAUSE: u32 = 1;

/// Header maps.
pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;

/// Buffers.
pub const BUFFER_REQUEST_BODY: u32 = 0;
pub const BUFFER_RESPONSE_BODY: u32 = 1;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

/// Metric kinds.
pub const METRIC_COUNTER: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    pub fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    pub fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    pub fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    pub fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    pub fn proxy_get_header_map_size(map: u32, size: *mut usize) -> u32;
    pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    pub fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    pub fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    pub fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    pub fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    pub fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
}
