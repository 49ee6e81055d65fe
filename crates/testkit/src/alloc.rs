//! Counting heap allocations, and the bytes they hold, per thread, so that
//! tests running in parallel do not disturb each other's counts. A test
//! binary installs it with
//! `#[global_allocator] static A: a2a_affinity_testkit::alloc::Counting = Counting;`.

// A counting allocator is the one way to observe allocations; it only
// forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    /// Allocations made on this thread while counting is on.
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
    /// Bytes allocated less bytes freed on this thread while counting is on.
    static BYTES: Cell<Option<i64>> = const { Cell::new(None) };
}

fn bump() {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
}

fn add_bytes(delta: i64) {
    let _ = BYTES.try_with(|b| b.set(b.get().map(|n| n + delta)));
}

fn size(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add_bytes(size(layout.size()));
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add_bytes(size(layout.size()));
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add_bytes(size(new_size) - size(layout.size()));
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) };
        add_bytes(-size(layout.size()));
    }
}

/// Runs `f` and returns what it returned and the allocations it made on
/// this thread (0 unless `Counting` is the global allocator).
pub fn allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(Some(0)));
    let out = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
    (out, n)
}

/// Runs `f` and returns what it returned and the heap bytes it left
/// allocated on this thread: bytes allocated less bytes freed, as the
/// callers asked for them (the allocator's own rounding and bookkeeping not
/// included; 0 unless `Counting` is the global allocator). Memory freed on
/// another thread is not seen.
pub fn heap_bytes<T>(f: impl FnOnce() -> T) -> (T, i64) {
    BYTES.with(|b| b.set(Some(0)));
    let out = f();
    let n = BYTES.with(|b| b.replace(None)).unwrap_or(0);
    (out, n)
}
