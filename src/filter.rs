//! The proxy-wasm glue: root and HTTP contexts that hand every callback to
//! `request::Stream` through a `Host` backed by Envoy's host calls.
//!
//! The SDK's own `hostcalls` functions panic on any status they do not
//! expect (a header map that is no longer writable answers `BadArgument`),
//! and a panic kills the VM for every later request on the worker. So the
//! few host calls the filter makes are bound in `abi` below, returning the
//! status as a value; the SDK is used only to dispatch callbacks.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as WasmAction, ContextType};

use crate::config::Config;
use crate::host::{Host, HostError, Level};
use crate::request::{Action, Plugin, Stream};
use crate::stats::Counter;

// The SDK's entry macro runs the WASI constructors in an unsafe block.
#[allow(unsafe_code)]
mod entry {
    use super::{abi, Root};
    use crate::host::Level;
    use proxy_wasm::traits::RootContext;
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Trace);
        // With panic = "abort" the VM dies after this hook; the log line is
        // the only trace of why every later request on the worker fails.
        std::panic::set_hook(Box::new(|info| {
            abi::log(Level::Critical, &format!("panic: {info}"));
        }));
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}
}

#[derive(Default)]
struct Root {
    plugin: Option<Rc<Plugin>>,
    metrics: Rc<Metrics>,
}

/// Metric ids, in `Counter::ALL` order (0 when a definition failed: the
/// increment then fails quietly, which is fine for a counter).
#[derive(Default)]
struct Metrics {
    ids: [u32; Counter::ALL.len()],
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::parse(&raw) {
            Ok(config) => {
                let mut metrics = Metrics::default();
                for counter in Counter::ALL {
                    if let Some(slot) = metrics.ids.get_mut(counter.index()) {
                        *slot = abi::define_counter(counter.name()).unwrap_or(0);
                    }
                }
                abi::log(
                    Level::Info,
                    &format!(
                        "configured: header={} max_scan_bytes={} mint_context_id={} learn_tasks={}",
                        config.header,
                        config.max_scan_bytes,
                        config.mint_context_id,
                        config.learn_tasks
                    ),
                );
                self.metrics = Rc::new(metrics);
                self.plugin = Some(Rc::new(Plugin::new(config)));
                true
            }
            Err(e) => {
                // Returning false makes Envoy reject the configuration.
                abi::log(Level::Error, &format!("{e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let plugin = self.plugin.clone()?;
        Some(Box::new(Http {
            stream: Stream::new(plugin),
            host: WasmHost {
                metrics: Rc::clone(&self.metrics),
            },
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    stream: Stream,
    host: WasmHost,
}

fn wasm_action(action: Action) -> WasmAction {
    match action {
        Action::Continue => WasmAction::Continue,
        Action::Pause => WasmAction::Pause,
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> WasmAction {
        wasm_action(
            self.stream
                .on_request_headers(&mut self.host, end_of_stream),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> WasmAction {
        wasm_action(
            self.stream
                .on_request_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> WasmAction {
        wasm_action(self.stream.on_request_trailers(&mut self.host))
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> WasmAction {
        wasm_action(self.stream.on_response_headers(&mut self.host))
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> WasmAction {
        wasm_action(self.stream.on_response_body(&mut self.host, body_size))
    }
}

struct WasmHost {
    metrics: Rc<Metrics>,
}

impl Host for WasmHost {
    fn request_header_map(&self) -> Vec<u8> {
        abi::get_header_pairs(abi::MAP_REQUEST_HEADERS).unwrap_or_default()
    }

    fn replace_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        // Envoy's replace drops every other value of the header (checked by
        // the end-to-end test that sends two client values), in one call.
        abi::replace_header(abi::MAP_REQUEST_HEADERS, name, value.as_bytes())
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        abi::remove_header(abi::MAP_REQUEST_HEADERS, name)
    }

    fn request_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError> {
        Ok(abi::get_buffer(abi::BUFFER_REQUEST_BODY, start, len)?.unwrap_or_default())
    }

    fn replace_request_body(&mut self, buffered: usize, data: &[u8]) -> Result<(), HostError> {
        // Envoy's buffer setter only prepends, appends, or replaces all
        // (start 0, size >= buffered).
        abi::set_buffer(abi::BUFFER_REQUEST_BODY, 0, buffered, data)
    }

    fn response_header_map(&self) -> Vec<u8> {
        abi::get_header_pairs(abi::MAP_RESPONSE_HEADERS).unwrap_or_default()
    }

    fn response_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError> {
        Ok(abi::get_buffer(abi::BUFFER_RESPONSE_BODY, start, len)?.unwrap_or_default())
    }

    fn count(&mut self, counter: Counter) {
        if let Some(&id) = self.metrics.ids.get(counter.index()) {
            let _ = abi::increment_metric(id, 1);
        }
    }

    fn log(&self, level: Level, message: &str) {
        abi::log(level, message);
    }

    fn random(&mut self, buf: &mut [u8; 16]) -> Result<(), HostError> {
        // WASI random_get: fresh bytes on every call under Envoy's V8.
        getrandom::fill(buf).map_err(|_| HostError("random_get"))
    }

    fn now_secs(&self) -> u64 {
        abi::now_nanos().map_or(0, |n| n / 1_000_000_000)
    }

    fn shared_get(&self, key: &str) -> Option<Vec<u8>> {
        abi::get_shared_data(key).ok().flatten()
    }

    fn shared_set(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        abi::set_shared_data(key, value)
    }
}

/// Direct bindings to the proxy-wasm 0.2.1 ABI host functions the filter
/// uses, returning the host's status instead of panicking on it.
#[allow(unsafe_code)]
mod abi {
    use crate::host::{HostError, Level};

    pub const MAP_REQUEST_HEADERS: u32 = 0;
    pub const MAP_RESPONSE_HEADERS: u32 = 2;
    pub const BUFFER_REQUEST_BODY: u32 = 0;
    pub const BUFFER_RESPONSE_BODY: u32 = 1;
    pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;
    const METRIC_COUNTER: u32 = 0;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
        fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_get_buffer_bytes(
            buffer: u32,
            start: usize,
            max_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        fn proxy_set_buffer_bytes(
            buffer: u32,
            start: usize,
            size: usize,
            data: *const u8,
            data_size: usize,
        ) -> u32;
        fn proxy_get_shared_data(
            key: *const u8,
            key_size: usize,
            value: *mut *mut u8,
            value_size: *mut usize,
            cas: *mut u32,
        ) -> u32;
        fn proxy_set_shared_data(
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
        fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    }

    fn status(code: u32, call: &'static str) -> Result<(), HostError> {
        if code == OK {
            Ok(())
        } else {
            Err(HostError(call))
        }
    }

    /// Takes ownership of a host-returned block. The host allocates it
    /// through the SDK's `proxy_on_memory_allocate`, which hands out a
    /// leaked `Vec<u8>` of exactly `size` bytes of capacity.
    ///
    /// # Safety
    /// `data`/`size` must come from a successful host call that returned a
    /// block allocated that way.
    unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() || size == 0 {
            Vec::new()
        } else {
            // SAFETY: as documented above; the block is owned by no one else.
            unsafe { Vec::from_raw_parts(data, size, size) }
        }
    }

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Debug => 1,
            Level::Info => 2,
            Level::Warn => 3,
            Level::Error => 4,
            Level::Critical => 5,
        };
        // SAFETY: pointer and length of a live &str.
        let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
    }

    pub fn now_nanos() -> Result<u64, HostError> {
        let mut t = 0u64;
        // SAFETY: the host writes one u64 through a valid pointer.
        status(
            unsafe { proxy_get_current_time_nanoseconds(&mut t) },
            "get_current_time",
        )?;
        Ok(t)
    }

    /// Every pair of a header map, serialized (see `host::first_values`).
    pub fn get_header_pairs(map: u32) -> Result<Vec<u8>, HostError> {
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        // SAFETY: out-pointers to locals.
        let code = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
        match code {
            // SAFETY: a successful call returned a host-allocated block.
            OK => Ok(unsafe { take(data, size) }),
            _ => Err(HostError("get_header_map_pairs")),
        }
    }

    pub fn replace_header(map: u32, key: &str, value: &[u8]) -> Result<(), HostError> {
        // SAFETY: valid key and value slices.
        status(
            unsafe {
                proxy_replace_header_map_value(
                    map,
                    key.as_ptr(),
                    key.len(),
                    value.as_ptr(),
                    value.len(),
                )
            },
            "replace_header_map_value",
        )
    }

    pub fn remove_header(map: u32, key: &str) -> Result<(), HostError> {
        // SAFETY: valid key slice.
        status(
            unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) },
            "remove_header_map_value",
        )
    }

    pub fn get_buffer(buffer: u32, start: usize, max: usize) -> Result<Option<Vec<u8>>, HostError> {
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        // SAFETY: out-pointers to locals.
        let code = unsafe { proxy_get_buffer_bytes(buffer, start, max, &mut data, &mut size) };
        match code {
            // SAFETY: a successful call returned a host-allocated block.
            OK => Ok(Some(unsafe { take(data, size) })),
            NOT_FOUND => Ok(None),
            _ => Err(HostError("get_buffer_bytes")),
        }
    }

    pub fn set_buffer(
        buffer: u32,
        start: usize,
        size: usize,
        data: &[u8],
    ) -> Result<(), HostError> {
        // SAFETY: valid data slice.
        status(
            unsafe { proxy_set_buffer_bytes(buffer, start, size, data.as_ptr(), data.len()) },
            "set_buffer_bytes",
        )
    }

    pub fn get_shared_data(key: &str) -> Result<Option<Vec<u8>>, HostError> {
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        let mut cas = 0u32;
        // SAFETY: valid key slice; out-pointers to locals.
        let code = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match code {
            // SAFETY: a successful call returned a host-allocated block.
            OK => Ok(Some(unsafe { take(data, size) })),
            NOT_FOUND => Ok(None),
            _ => Err(HostError("get_shared_data")),
        }
    }

    pub fn set_shared_data(key: &str, value: &[u8]) -> Result<(), HostError> {
        // SAFETY: valid key and value slices; cas 0 means unconditional.
        status(
            unsafe {
                proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), 0)
            },
            "set_shared_data",
        )
    }

    pub fn define_counter(name: &str) -> Result<u32, HostError> {
        let mut id = 0u32;
        // SAFETY: valid name slice; out-pointer to a local.
        status(
            unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) },
            "define_metric",
        )?;
        Ok(id)
    }

    pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostError> {
        // SAFETY: plain values.
        status(
            unsafe { proxy_increment_metric(id, offset) },
            "increment_metric",
        )
    }
}
