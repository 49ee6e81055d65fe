//! A `log` backend that keeps the lines logged on each thread, so a test
//! can check what the core said about a request.

use std::cell::RefCell;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Capture;

thread_local! {
    static LINES: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        let _ = LINES.try_with(|l| {
            l.borrow_mut()
                .push((record.level(), record.args().to_string()))
        });
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Installs the capturing logger (once per process; later calls do nothing).
pub fn capture() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(LevelFilter::Trace);
    }
}

/// The lines this thread logged since the last call, oldest first.
pub fn take() -> Vec<(Level, String)> {
    LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
