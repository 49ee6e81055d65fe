//! Incremental JSON path scanner (interface; implementation in progress).
//!
//! Fed a JSON document chunk by chunk, it follows the object-key path from
//! the root and reports events only for the paths it was asked to watch.
//! Memory is bounded by the nesting limit and the value-length limit, never by
//! the document size.

/// Limits that bound the scanner's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting accepted; deeper documents are reported as an error
    /// (serde_json's own recursion limit is 128).
    pub max_depth: u32,
    /// Longest decoded string value reported at a watched path; longer values
    /// are reported as [`Scalar::TooLong`].
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 128,
            max_value_len: 256,
        }
    }
}

/// A scalar found at a watched path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// A string, escapes decoded, valid UTF-8.
    Str(&'a str),
    /// A string longer than `Limits::max_value_len` once decoded.
    TooLong,
    /// A number, `true`, `false` or `null`.
    Other,
}

/// What the scanner saw at a watched path. `path` is the index into the
/// watched path list given to [`Scanner::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// An object or array starts at a watched path; `offset` is the absolute
    /// byte offset just after its `{` or `[`.
    Open { path: usize, offset: u64, object: bool },
    /// The object or array at a watched path ends; `offset` is the absolute
    /// byte offset of its `}` or `]`.
    Close { path: usize, offset: u64 },
    /// A scalar value completes at a watched path.
    Scalar { path: usize, value: Scalar<'a> },
}

/// The event sink's answer: keep scanning, or stop now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Why a document was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// Not JSON, or not JSON any more at `offset`.
    Syntax { offset: u64 },
    /// Nested deeper than `Limits::max_depth`.
    TooDeep { offset: u64 },
    /// Input ended before the document was complete.
    Truncated,
}

/// Where the scanner stands after a call to [`Scanner::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything fed was consumed; the document is not complete yet.
    NeedMore,
    /// The sink answered [`Flow::Stop`]; the rest of the input is not read.
    Stopped,
    /// The top-level value is complete (trailing whitespace allowed).
    Done,
    /// The document is invalid; the scanner stays in this state.
    Failed(ScanError),
}
