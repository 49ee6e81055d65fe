//! The `log` backend of the Wasm shell: each record the core logs becomes a
//! `proxy_log` call at the matching level (Envoy then filters by its own
//! log level).

use log::{Level, Log, Metadata, Record};

/// proxy-wasm's log levels (`proxy_log`'s first argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProxyLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    /// Only for a panic, just before the VM aborts.
    Critical = 5,
}

impl From<Level> for ProxyLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => ProxyLevel::Trace,
            Level::Debug => ProxyLevel::Debug,
            Level::Info => ProxyLevel::Info,
            Level::Warn => ProxyLevel::Warn,
            Level::Error => ProxyLevel::Error,
        }
    }
}

/// A `log` backend over a function that writes one line at a level.
pub struct ProxyLogger {
    pub write: fn(ProxyLevel, &str),
}

impl Log for ProxyLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = ProxyLevel::from(record.level());
        match record.args().as_str() {
            Some(line) => (self.write)(level, line),
            None => (self.write)(level, &record.args().to_string()),
        }
    }

    fn flush(&self) {}
}
