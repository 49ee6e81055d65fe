//! The `log` backend of the dynamic module: each record the core or the
//! shell logs becomes one `envoy_dynamic_module_callback_log` line at the
//! matching level, under Envoy's `dynamic_modules` logger (so
//! `--component-log-level dynamic_modules:debug` shows the debug lines).
//! A record is formatted only when Envoy would print it.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Envoy's log levels (`envoy_dynamic_module_type_log_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum EnvoyLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl From<Level> for EnvoyLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => EnvoyLevel::Trace,
            Level::Debug => EnvoyLevel::Debug,
            Level::Info => EnvoyLevel::Info,
            Level::Warn => EnvoyLevel::Warn,
            Level::Error => EnvoyLevel::Error,
        }
    }
}

/// A `log` backend over two functions: whether a level is printed, and
/// print one line.
pub struct EnvoyLogger {
    pub enabled: fn(EnvoyLevel) -> bool,
    pub write: fn(EnvoyLevel, &str),
}

/// Every line starts with this, so the filter's lines stand out among
/// those of other modules.
pub const PREFIX: &str = "a2a_affinity: ";

impl Log for EnvoyLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        (self.enabled)(metadata.level().into())
    }

    fn log(&self, record: &Record<'_>) {
        let level = EnvoyLevel::from(record.level());
        if !(self.enabled)(level) {
            return;
        }
        let line = match record.args().as_str() {
            Some(text) => format!("{PREFIX}{text}"),
            None => format!("{PREFIX}{}", record.args()),
        };
        (self.write)(level, &line);
    }

    fn flush(&self) {}
}

/// Installs `logger` as the process's `log` backend (of this module's copy
/// of the `log` crate). Envoy decides what is printed, so every level is
/// passed on. A second call does nothing.
pub fn install(logger: &'static EnvoyLogger) {
    if log::set_logger(logger).is_ok() {
        log::set_max_level(LevelFilter::Trace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static LINES: Mutex<Vec<(EnvoyLevel, String)>> = Mutex::new(Vec::new());

    fn write(level: EnvoyLevel, line: &str) {
        LINES.lock().unwrap().push((level, line.to_string()));
    }

    #[test]
    fn lines_are_prefixed_filtered_and_mapped() {
        let logger = EnvoyLogger {
            enabled: |level| level >= EnvoyLevel::Info,
            write,
        };
        logger.log(
            &Record::builder()
                .level(Level::Debug)
                .args(format_args!("hidden"))
                .build(),
        );
        let n = 7;
        logger.log(
            &Record::builder()
                .level(Level::Warn)
                .args(format_args!("shown {n}"))
                .build(),
        );
        logger.log(
            &Record::builder()
                .level(Level::Error)
                .args(format_args!("plain"))
                .build(),
        );
        let lines = LINES.lock().unwrap().clone();
        assert_eq!(
            lines,
            vec![
                (EnvoyLevel::Warn, "a2a_affinity: shown 7".to_string()),
                (EnvoyLevel::Error, "a2a_affinity: plain".to_string()),
            ]
        );
        assert_eq!(EnvoyLevel::from(Level::Trace) as u32, 0);
        assert_eq!(EnvoyLevel::Critical as u32, 5);
    }
}
