//! The proxy-wasm glue: the ABI 0.2.1 functions Envoy calls, each handed to
//! the `stream::Stream` of its HTTP context through a `Host` backed by
//! Envoy's host calls.
//!
//! The module speaks the ABI itself rather than through the Rust SDK:
//!
//! - Envoy enters the VM once per stream for every optional callback a
//!   module exports, whether or not the module does anything there, and
//!   each entry costs Envoy CPU (BENCHMARKS.md prices them). The SDK
//!   exports them all (`proxy_on_log`, `proxy_on_done`, response trailers,
//!   ...); this module exports only the callbacks the filter acts on, and
//!   `proxy_on_delete` to free a stream's state.
//! - The SDK's host-call wrappers panic on any status they do not expect (a
//!   header map that is no longer writable answers `BadArgument`), and a
//!   panic kills the VM for every later request on the worker. The host
//!   calls are bound in `abi` below, returning the status as a value.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::Counter;

use crate::host::{Host, HostError};
use crate::logger::{ProxyLevel, ProxyLogger};
use crate::stream::{Action, Plugin, Stream};
use proxy_abi::{CONTINUE, PAUSE};

fn action_code(action: Action) -> u32 {
    match action {
        Action::Continue => CONTINUE,
        Action::Pause => PAUSE,
    }
}

/// One plugin instance (a root context) of this VM: several filter
/// configurations may share one VM through a common `vm_id`.
#[derive(Default)]
struct Root {
    /// Set once its configuration is accepted.
    plugin: Option<Rc<Plugin>>,
    metrics: Rc<Metrics>,
}

/// Metric ids, in `Counter::ALL` order (0 when a definition failed: the
/// increment then fails quietly, which is fine for a counter).
#[derive(Default)]
struct Metrics {
    ids: [u32; Counter::ALL.len()],
}

/// One HTTP stream (an HTTP context).
struct Http {
    stream: Stream,
    host: WasmHost,
}

/// Hashes context ids, which Envoy hands out in sequence: one multiply
/// spreads them over the table's high bits; SipHash is not needed for keys
/// no client chooses.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Everything the VM keeps between callbacks.
#[derive(Default)]
struct Vm {
    roots: Vec<(u32, Root)>,
    streams: HashMap<u32, Http, BuildHasherDefault<IdHasher>>,
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

/// Runs `f` on the VM's state. `None` if the state is in use (a host call
/// that re-entered the module with a callback): the caller then answers
/// as if the filter were not there, never panicking.
fn with_vm<R>(f: impl FnOnce(&mut Vm) -> R) -> Option<R> {
    VM.try_with(|vm| vm.try_borrow_mut().ok().map(|mut vm| f(&mut vm)))
        .ok()
        .flatten()
}

/// A stream callback: `Continue` for a context the filter does not know.
fn on_stream(context: u32, f: impl FnOnce(&mut Stream, &mut WasmHost) -> Action) -> u32 {
    with_vm(|vm| {
        vm.streams
            .get_mut(&context)
            .map(|http| f(&mut http.stream, &mut http.host))
    })
    .flatten()
    .map_or(CONTINUE, action_code)
}

fn create_context(context: u32, parent: u32) {
    with_vm(|vm| {
        if parent == 0 {
            vm.roots.retain(|(id, _)| *id != context);
            vm.roots.push((context, Root::default()));
            return;
        }
        // A root without an accepted configuration gets no streams: Envoy
        // refuses such a plugin, so this is only a guard.
        let Some((plugin, metrics)) = vm
            .roots
            .iter()
            .find(|(id, _)| *id == parent)
            .and_then(|(_, root)| Some((root.plugin.clone()?, Rc::clone(&root.metrics))))
        else {
            return;
        };
        vm.streams.insert(
            context,
            Http {
                stream: Stream::new(plugin),
                host: WasmHost { metrics },
            },
        );
    });
}

fn delete_context(context: u32) {
    with_vm(|vm| match vm.streams.remove(&context) {
        // A request still undecided when its stream ends is counted.
        Some(mut http) => http.stream.on_delete(&mut http.host),
        None => vm.roots.retain(|(id, _)| *id != context),
    });
}

/// Reads, checks and installs the plugin configuration of root `root`;
/// `false` makes Envoy reject it.
fn configure(root: u32) -> bool {
    let raw = abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default();
    let parsed = Config::parse(&raw).and_then(|c| {
        c.require_header_hashing("the proxy-wasm filter")
            .map(|()| c)
    });
    let config = match parsed {
        Ok(config) => config,
        Err(e) => {
            abi::log(ProxyLevel::Error, &format!("{e}"));
            return false;
        }
    };
    for warning in config.warnings() {
        abi::log(ProxyLevel::Warn, &warning);
    }
    let mut metrics = Metrics::default();
    for counter in Counter::ALL {
        if let Some(slot) = metrics.ids.get_mut(counter.index()) {
            *slot = abi::define_counter(counter.name()).unwrap_or(0);
        }
    }
    abi::log(ProxyLevel::Info, &format!("configured: {config}"));
    let configured = Root {
        plugin: Some(Rc::new(Plugin::new(config))),
        metrics: Rc::new(metrics),
    };
    with_vm(|vm| match vm.roots.iter_mut().find(|(id, _)| *id == root) {
        Some((_, slot)) => *slot = configured,
        None => vm.roots.push((root, configured)),
    })
    .is_some()
}

/// The exported functions of the ABI, and nothing else: see the module
/// comment for why the optional ones the filter has no use for are absent.
// `no_mangle` exports and the WASI constructor call are what the ABI is
// made of.
#[allow(unsafe_code)]
mod exports {
    use super::{abi, configure, create_context, delete_context, on_stream, LOGGER};
    use crate::logger::ProxyLevel;

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    #[cfg(target_os = "wasi")]
    extern "C" {
        fn __wasm_call_ctors();
    }

    /// Called once, before any other export.
    #[no_mangle]
    pub extern "C" fn _initialize() {
        #[cfg(target_os = "wasi")]
        // SAFETY: a WASI reactor runs its constructors once, here, before
        // anything else in the module.
        unsafe {
            __wasm_call_ctors();
        }
        // With panic = "abort" the VM dies after this hook; the log line is
        // the only trace of why every later request on the worker fails.
        std::panic::set_hook(Box::new(|info| {
            abi::log(ProxyLevel::Critical, &format!("panic: {info}"));
        }));
        // The core logs through `log`; Envoy filters by its own level.
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    }

    /// Envoy allocates every block it hands the module (header maps,
    /// buffers, shared data) through this; `abi::take` frees it.
    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_vm_start(_root: u32, _vm_configuration_size: usize) -> u32 {
        1
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(root: u32, _configuration_size: usize) -> u32 {
        u32::from(configure(root))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(context: u32, parent: u32) {
        create_context(context, parent);
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(context: u32, _headers: usize, end: u32) -> u32 {
        on_stream(context, |stream, host| {
            stream.on_request_headers(host, end != 0)
        })
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_body(context: u32, size: usize, end: u32) -> u32 {
        on_stream(context, |stream, host| {
            stream.on_request_body(host, size, end != 0)
        })
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_trailers(context: u32, _trailers: usize) -> u32 {
        on_stream(context, |stream, host| stream.on_request_trailers(host))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(context: u32, _headers: usize, _end: u32) -> u32 {
        on_stream(context, |stream, host| stream.on_response_headers(host))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_body(context: u32, size: usize, _end: u32) -> u32 {
        on_stream(context, |stream, host| stream.on_response_body(host, size))
    }

    /// The end of a stream (or of a plugin instance): its state goes, and
    /// a stream's readers go back to its plugin for the next one.
    #[no_mangle]
    pub extern "C" fn proxy_on_delete(context: u32) {
        delete_context(context);
    }
}

/// The `log` backend: one `proxy_log` call per record.
static LOGGER: ProxyLogger = ProxyLogger { write: abi::log };

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
    use crate::host::HostError;
    use crate::logger::ProxyLevel;

    use proxy_abi::{
        proxy_define_metric, proxy_get_buffer_bytes, proxy_get_current_time_nanoseconds,
        proxy_get_header_map_pairs, proxy_get_shared_data, proxy_increment_metric, proxy_log,
        proxy_remove_header_map_value, proxy_replace_header_map_value, proxy_set_buffer_bytes,
        proxy_set_shared_data, METRIC_COUNTER, NOT_FOUND, OK,
    };
    pub use proxy_abi::{
        BUFFER_PLUGIN_CONFIGURATION, BUFFER_REQUEST_BODY, BUFFER_RESPONSE_BODY,
        MAP_REQUEST_HEADERS, MAP_RESPONSE_HEADERS,
    };

    fn status(code: u32, call: &'static str) -> Result<(), HostError> {
        if code == OK {
            Ok(())
        } else {
            Err(HostError(call))
        }
    }

    /// Takes ownership of a host-returned block. The host allocates it
    /// through `proxy_on_memory_allocate`, which hands out a leaked boxed
    /// slice of exactly `size` bytes.
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

    pub fn log(level: ProxyLevel, message: &str) {
        let level = level as u32;
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
