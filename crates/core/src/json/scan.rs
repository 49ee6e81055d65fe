//! Incremental JSON path scanner.
//!
//! Fed a JSON document chunk by chunk (only the bytes that arrived since the
//! last call), it follows the object-key path from the root and reports events
//! only for the paths it was asked to watch. Memory is bounded by the nesting
//! limit, the longest watched key and the value-length limit, never by the
//! document size; after the first document no call allocates.
//!
//! What counts as a match, and the choices that differ from a full parser:
//!
//! - A watched key counts only at its exact depth and only through objects: a
//!   `contextId` inside an array, inside `parts` or `metadata`, or inside a
//!   string never counts. Key order is free.
//! - Keys are compared after decoding their escapes (`"\u0063ontextId"` is
//!   `contextId`). A key longer than the longest watched key at its depth
//!   cannot match, so it is not buffered.
//! - Duplicate keys: every occurrence is reported, in document order, and
//!   so is everything below each. A consumer that wants the reading of
//!   serde_json's `Value` or Python's `json` (the last occurrence wins) keeps
//!   the last value of each path, and forgets what it kept below a path
//!   when that path opens again.
//! - Each string value reported is checked to be valid UTF-8. Strings that are
//!   not reported (most of the body: message text, keys that cannot match,
//!   values longer than the limit) are checked for grammar, escapes, paired
//!   surrogates and control characters, but not for UTF-8 validity: that check
//!   would cost a second pass over every byte, and the bytes pass through to
//!   the upstream unchanged whatever the scanner decides.
//! - Numbers are checked against the JSON grammar only; serde_json's `Value`
//!   additionally rejects finite-looking numbers that overflow `f64` (`1e400`).
//! - Up to 64 paths are watched; paths past the 64th are ignored.

use super::skip::{find_special, skip_plain};

/// Limits that bound the scanner's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting accepted; one more level is reported as an error. The
    /// default, [`MAX_DEPTH`], is past what the agents' parsers take:
    /// Python's `json` (a2a-sdk) fails at about 1000 levels, Jackson's
    /// default at 1000; serde_json's own default limit is 128.
    pub max_depth: u32,
    /// Longest decoded string value reported at a watched path; longer values
    /// are reported as [`Scalar::TooLong`].
    pub max_value_len: usize,
}

/// The default nesting limit: a body nested deeper is invalid to the
/// filter and passes unchanged. It costs one byte per open level.
pub const MAX_DEPTH: u32 = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: MAX_DEPTH,
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
    /// `null`.
    Null,
    /// A number, `true` or `false`.
    Other,
}

/// What the scanner saw at a watched path. `path` is the index into the
/// watched path list given to [`Scanner::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// An object or array starts at a watched path; `offset` is the absolute
    /// byte offset just after its `{` or `[`.
    Open {
        path: usize,
        offset: u64,
        object: bool,
    },
    /// The object or array at a watched path ends; `offset` is the absolute
    /// byte offset of its `}` or `]`; `empty` when it had no member.
    Close {
        path: usize,
        offset: u64,
        empty: bool,
    },
    /// A scalar value completes at a watched path; `end` is the absolute
    /// byte offset just past it. A number that is the whole document
    /// completes only at [`Scanner::finish`] and is not reported.
    Scalar {
        path: usize,
        value: Scalar<'a>,
        end: u64,
    },
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

/// Paths beyond this many are ignored: the sets of candidate paths are `u64`
/// bit masks, which keeps matching branch-light and allocation-free.
const MAX_PATHS: usize = 64;

/// Value bytes a scanner reserves at most before a value needs more.
const RESERVED_VALUE_BYTES: usize = 4096;

const LITERALS: [&[u8]; 3] = [b"true", b"false", b"null"];

/// Position inside a number, following the grammar of RFC 8259 §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    /// After `-`: a digit must follow.
    Minus,
    /// A lone leading `0`: no more integer digits allowed.
    Zero,
    Int,
    /// After `.`: a digit must follow.
    Dot,
    Frac,
    /// After `e`/`E`: a sign or digit must follow.
    ExpStart,
    /// After the exponent sign: a digit must follow.
    ExpSign,
    Exp,
}

impl Num {
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::Exp)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A value must start (top level, after `:`, after `,` in an array).
    Value,
    /// Just after `[`: a value or `]`.
    ArrFirst,
    /// Just after `{`: a key or `}`.
    ObjFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closer.
    After,
    /// The top-level value is complete: only whitespace may follow.
    Trailing,
    Str,
    /// After `\` in a string.
    Esc,
    /// Inside `\uXXXX`, `digits` read so far.
    Hex {
        digits: u8,
        acc: u16,
    },
    /// After a leading surrogate: `\` of its trailing surrogate.
    LowBackslash,
    /// After a leading surrogate and `\`: `u`.
    LowU,
    /// Inside `true`/`false`/`null`: index into `LITERALS`, bytes matched.
    Lit {
        word: u8,
        at: u8,
    },
    Num(Num),
    Stopped,
    Failed(ScanError),
}

/// An open container on the live part of the path (every ancestor is an
/// object reached through watched keys).
#[derive(Clone, Copy, Debug, Default)]
struct Frame {
    /// Paths that end at this container: they get a `Close` event.
    targets: u64,
    /// Paths that continue below this container (empty for arrays).
    descend: u64,
}

/// One distinct key of the watched paths at one level.
#[derive(Clone, Copy, Debug)]
struct KeyAt<'p> {
    level: usize,
    key: &'p [u8],
    paths: u64,
}

/// Why [`Scanner::run`] left its loop early; the index is into the chunk.
enum Halt {
    Syntax(usize),
    TooDeep(usize),
    /// Stopped by the sink after consuming this many bytes of the chunk.
    Stop(usize),
}

/// Streaming scanner for one JSON document at a time.
pub struct Scanner<'p> {
    limits: Limits,
    /// Every watched path.
    all: u64,
    /// `ends_at[n]`: paths with exactly `n` keys.
    ends_at: Vec<u64>,
    /// `key_cap[n]`: longest watched key at index `n` of any path.
    key_cap: Vec<usize>,
    /// Every distinct (index, key) of the watched paths, with the paths
    /// that have that key at that index: a key read is compared once with
    /// each distinct watched key of its level, not once per path.
    keys: Vec<KeyAt<'p>>,
    frames: Vec<Frame>,
    /// Kind of every open container (`true` = object); its length is the
    /// current depth.
    objects: Vec<bool>,
    /// Paths that the value about to be read (or being read) may belong to.
    slot: u64,
    state: State,
    /// The current string is a key (else a value).
    in_key: bool,
    /// The current string matters: a key that may match, or a watched value.
    live: bool,
    /// Decoded bytes of the current string are being kept in `buf`.
    capturing: bool,
    /// The current live string outgrew `cap`.
    overflow: bool,
    cap: usize,
    buf: Vec<u8>,
    /// What `buf` reserves when the scanner is made; `reset` gives back
    /// anything a longer value made it grow beyond that.
    reserved: usize,
    /// Leading surrogate waiting for its trailing half.
    high: u16,
    /// Absolute offset of the next byte to be fed.
    base: u64,
}

impl<'p> Scanner<'p> {
    /// `paths`: the object-key paths to watch, from the root, e.g.
    /// `&[&["params", "message", "contextId"], &["params", "message"], &["method"]]`.
    /// Event `path` fields index into this slice.
    pub fn new(paths: &'p [&'p [&'p str]], limits: Limits) -> Self {
        let watched = paths.get(..MAX_PATHS).unwrap_or(paths);
        let all = match watched.len() {
            MAX_PATHS => u64::MAX,
            n => (1u64 << n) - 1,
        };
        let longest = watched.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut ends_at = vec![0u64; longest + 1];
        let mut key_cap = vec![0usize; longest];
        let mut keys: Vec<KeyAt<'p>> = Vec::new();
        for (index, path) in watched.iter().enumerate() {
            if let Some(mask) = ends_at.get_mut(path.len()) {
                *mask |= 1u64 << index;
            }
            for (level, key) in path.iter().enumerate() {
                if let Some(cap) = key_cap.get_mut(level) {
                    *cap = (*cap).max(key.len());
                }
                let key = key.as_bytes();
                match keys.iter_mut().find(|k| k.level == level && k.key == key) {
                    Some(known) => known.paths |= 1u64 << index,
                    None => keys.push(KeyAt {
                        level,
                        key,
                        paths: 1u64 << index,
                    }),
                }
            }
        }
        let longest_key = key_cap.iter().copied().max().unwrap_or(0);
        // Reserve what a normal document needs up front; an unusually large
        // `max_value_len` grows the buffer only when such a value arrives.
        let buf_cap = longest_key.max(limits.max_value_len.min(RESERVED_VALUE_BYTES));
        let depth_cap = usize::try_from(limits.max_depth.min(128)).unwrap_or(128);
        Scanner {
            limits,
            all,
            ends_at,
            key_cap,
            keys,
            frames: Vec::with_capacity(longest + 1),
            objects: Vec::with_capacity(depth_cap),
            slot: all,
            state: State::Value,
            in_key: false,
            live: false,
            capturing: false,
            overflow: false,
            cap: 0,
            buf: Vec::with_capacity(buf_cap),
            reserved: buf_cap,
            high: 0,
            base: 0,
        }
    }

    /// Feeds the next chunk (only new bytes). Events for watched paths go to
    /// `sink`; if it returns [`Flow::Stop`], scanning stops at once
    /// ([`Progress::Stopped`]) and later feeds return `Stopped`.
    pub fn feed<F: FnMut(Event<'_>) -> Flow>(&mut self, chunk: &[u8], sink: &mut F) -> Progress {
        match self.state {
            State::Stopped => return Progress::Stopped,
            State::Failed(error) => return Progress::Failed(error),
            _ => {}
        }
        match self.run(chunk, sink) {
            Ok(()) => {
                self.base += chunk.len() as u64;
                if self.state == State::Trailing {
                    Progress::Done
                } else {
                    Progress::NeedMore
                }
            }
            Err(Halt::Stop(consumed)) => {
                self.base += consumed as u64;
                self.state = State::Stopped;
                Progress::Stopped
            }
            Err(Halt::Syntax(at)) => {
                self.base += at as u64;
                let error = ScanError::Syntax { offset: self.base };
                self.state = State::Failed(error);
                Progress::Failed(error)
            }
            Err(Halt::TooDeep(at)) => {
                self.base += at as u64;
                let error = ScanError::TooDeep { offset: self.base };
                self.state = State::Failed(error);
                Progress::Failed(error)
            }
        }
    }

    /// End of input: `Done` if the document was complete, `Failed(Truncated)`
    /// otherwise (`Stopped` and `Failed` stay as they are).
    pub fn finish(&mut self) -> Progress {
        match self.state {
            State::Stopped => Progress::Stopped,
            State::Failed(error) => Progress::Failed(error),
            State::Trailing => Progress::Done,
            State::Num(num) if num.complete() && self.objects.is_empty() => {
                self.state = State::Trailing;
                Progress::Done
            }
            _ => {
                self.state = State::Failed(ScanError::Truncated);
                Progress::Failed(ScanError::Truncated)
            }
        }
    }

    /// Absolute number of bytes consumed so far in this document (since
    /// [`Scanner::new`] or the last [`Scanner::reset`]). After `Stopped` it
    /// is the offset just past the byte that completed the last event; after
    /// a syntax error, the offset of the offending byte.
    pub fn offset(&self) -> u64 {
        self.base
    }

    /// Ready for a new document, keeping the allocations a new scanner
    /// makes (used per SSE event on responses, and when a reader is kept
    /// for the next stream). Offsets start again from 0.
    pub fn reset(&mut self) {
        self.frames.clear();
        self.objects.clear();
        self.slot = self.all;
        self.state = State::Value;
        self.in_key = false;
        self.live = false;
        self.capturing = false;
        self.overflow = false;
        self.cap = 0;
        self.buf.clear();
        self.buf.shrink_to(self.reserved);
        self.high = 0;
        self.base = 0;
    }

    /// Paths that end at the value in `slot`: those with as many keys as
    /// there are open containers (all of them objects, or `slot` is empty).
    #[inline]
    fn targets(&self) -> u64 {
        self.slot & self.ends_at.get(self.objects.len()).copied().unwrap_or(0)
    }

    #[inline]
    fn value_done(&mut self) {
        self.slot = 0;
        self.state = if self.objects.is_empty() {
            State::Trailing
        } else {
            State::After
        };
    }

    #[inline]
    fn push_raw(&mut self, bytes: &[u8]) {
        if self.capturing {
            if self.buf.len() + bytes.len() > self.cap {
                self.capturing = false;
                self.overflow = true;
            } else {
                self.buf.extend_from_slice(bytes);
            }
        }
    }

    #[inline]
    fn push_code_point(&mut self, code_point: u32) {
        if self.capturing {
            // Surrogates never get here (they are paired or rejected first),
            // so the replacement character is unreachable.
            let c = char::from_u32(code_point).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut utf8 = [0u8; 4];
            let encoded = c.encode_utf8(&mut utf8);
            self.push_raw(encoded.as_bytes());
        }
    }

    fn start_string(&mut self, in_key: bool) {
        let (live, cap) = if in_key {
            let depth = self.objects.len();
            let live =
                depth == self.frames.len() && self.frames.last().is_some_and(|f| f.descend != 0);
            let cap = depth
                .checked_sub(1)
                .and_then(|level| self.key_cap.get(level))
                .copied()
                .unwrap_or(0);
            (live, cap)
        } else {
            (self.targets() != 0, self.limits.max_value_len)
        };
        self.in_key = in_key;
        self.live = live;
        self.capturing = live;
        self.overflow = false;
        self.cap = cap;
        self.buf.clear();
        self.high = 0;
        self.state = State::Str;
    }

    /// The key in `buf` is complete: find the watched paths it continues.
    fn match_key(&mut self) {
        self.slot = 0;
        if !self.live || self.overflow {
            return;
        }
        let Some(level) = self.objects.len().checked_sub(1) else {
            return;
        };
        let Some(frame) = self.frames.last_mut() else {
            return;
        };
        let read = self.buf.as_slice();
        let matched = self
            .keys
            .iter()
            .find(|k| k.level == level && k.paths & frame.descend != 0 && k.key == read)
            .map_or(0, |k| k.paths & frame.descend);
        self.slot = matched;
    }

    fn open<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        object: bool,
        at: usize,
        sink: &mut F,
    ) -> Result<(), Halt> {
        let depth = self.objects.len();
        if depth >= usize::try_from(self.limits.max_depth).unwrap_or(usize::MAX) {
            return Err(Halt::TooDeep(at));
        }
        let targets = self.targets();
        if self.slot != 0 {
            let descend = if object { self.slot & !targets } else { 0 };
            self.frames.push(Frame { targets, descend });
        }
        self.objects.push(object);
        self.slot = 0;
        self.state = if object {
            State::ObjFirst
        } else {
            State::ArrFirst
        };
        let offset = self.base + at as u64 + 1;
        if emit_each(targets, sink, |path| Event::Open {
            path,
            offset,
            object,
        }) {
            return Err(Halt::Stop(at + 1));
        }
        Ok(())
    }

    fn close<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        object: bool,
        at: usize,
        sink: &mut F,
    ) -> Result<(), Halt> {
        if self.objects.last() != Some(&object) {
            return Err(Halt::Syntax(at));
        }
        let empty = matches!(self.state, State::ObjFirst | State::ArrFirst);
        let mut targets = 0;
        if self.frames.len() == self.objects.len() {
            if let Some(frame) = self.frames.pop() {
                targets = frame.targets;
            }
        }
        self.objects.pop();
        self.value_done();
        let offset = self.base + at as u64;
        if emit_each(targets, sink, |path| Event::Close {
            path,
            offset,
            empty,
        }) {
            return Err(Halt::Stop(at + 1));
        }
        Ok(())
    }

    /// A number or literal ended; `consumed` bytes of the chunk are read.
    fn scalar_done<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        consumed: usize,
        value: Scalar<'static>,
        sink: &mut F,
    ) -> Result<(), Halt> {
        let targets = self.targets();
        self.value_done();
        let end = self.base + consumed as u64;
        if emit_each(targets, sink, |path| Event::Scalar { path, value, end }) {
            return Err(Halt::Stop(consumed));
        }
        Ok(())
    }

    /// The closing quote of a string is at `at`.
    fn string_done<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        at: usize,
        sink: &mut F,
    ) -> Result<(), Halt> {
        if self.in_key {
            self.match_key();
            self.state = State::Colon;
            return Ok(());
        }
        if !self.live {
            self.value_done();
            return Ok(());
        }
        let targets = self.targets();
        self.value_done();
        let value = if self.overflow {
            Scalar::TooLong
        } else {
            match core::str::from_utf8(&self.buf) {
                Ok(s) => Scalar::Str(s),
                Err(_) => return Err(Halt::Syntax(at)),
            }
        };
        let end = self.base + at as u64 + 1;
        if emit_each(targets, sink, |path| Event::Scalar { path, value, end }) {
            return Err(Halt::Stop(at + 1));
        }
        Ok(())
    }

    /// Starts the value whose first byte `b` is at `at`.
    fn start_value<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        b: u8,
        at: usize,
        sink: &mut F,
    ) -> Result<(), Halt> {
        match b {
            b'"' => self.start_string(false),
            b'{' => self.open(true, at, sink)?,
            b'[' => self.open(false, at, sink)?,
            b'-' => self.state = State::Num(Num::Minus),
            b'0' => self.state = State::Num(Num::Zero),
            b'1'..=b'9' => self.state = State::Num(Num::Int),
            b't' => self.state = State::Lit { word: 0, at: 1 },
            b'f' => self.state = State::Lit { word: 1, at: 1 },
            b'n' => self.state = State::Lit { word: 2, at: 1 },
            _ => return Err(Halt::Syntax(at)),
        }
        Ok(())
    }

    fn run<F: FnMut(Event<'_>) -> Flow>(&mut self, chunk: &[u8], sink: &mut F) -> Result<(), Halt> {
        let mut i = 0usize;
        while let Some(&b) = chunk.get(i) {
            match self.state {
                State::Str => {
                    i = self.string_run(chunk, i, sink)?;
                    continue;
                }
                State::Value => match b {
                    b' ' | b'\n' | b'\r' | b'\t' => {}
                    _ => self.start_value(b, i, sink)?,
                },
                State::ArrFirst => match b {
                    b' ' | b'\n' | b'\r' | b'\t' => {}
                    b']' => self.close(false, i, sink)?,
                    _ => self.start_value(b, i, sink)?,
                },
                State::ObjFirst => match b {
                    b' ' | b'\n' | b'\r' | b'\t' => {}
                    b'"' => self.start_string(true),
                    b'}' => self.close(true, i, sink)?,
                    _ => return Err(Halt::Syntax(i)),
                },
                State::Key => match b {
                    b' ' | b'\n' | b'\r' | b'\t' => {}
                    b'"' => self.start_string(true),
                    _ => return Err(Halt::Syntax(i)),
                },
                State::Colon => match b {
                    b' ' | b'\n' | b'\r' | b'\t' => {}
                    b':' => self.state = State::Value,
                    _ => return Err(Halt::Syntax(i)),
                },
                State::After => match b {
                    b' ' | b'\n' | b'\r' | b'\t' => {}
                    b',' => {
                        self.state = match self.objects.last() {
                            Some(true) => State::Key,
                            Some(false) => State::Value,
                            None => return Err(Halt::Syntax(i)),
                        }
                    }
                    b'}' => self.close(true, i, sink)?,
                    b']' => self.close(false, i, sink)?,
                    _ => return Err(Halt::Syntax(i)),
                },
                State::Trailing => match b {
                    b' ' | b'\n' | b'\r' | b'\t' => {}
                    _ => return Err(Halt::Syntax(i)),
                },
                State::Esc => {
                    let decoded = match b {
                        b'"' | b'\\' | b'/' => b,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.state = State::Hex { digits: 0, acc: 0 };
                            i += 1;
                            continue;
                        }
                        _ => return Err(Halt::Syntax(i)),
                    };
                    self.push_raw(&[decoded]);
                    self.state = State::Str;
                }
                State::Hex { digits, acc } => {
                    let nibble = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => return Err(Halt::Syntax(i)),
                    };
                    let acc = (acc << 4) | u16::from(nibble);
                    if digits < 3 {
                        self.state = State::Hex {
                            digits: digits + 1,
                            acc,
                        };
                    } else {
                        self.code_unit(acc, i)?;
                    }
                }
                State::LowBackslash => match b {
                    b'\\' => self.state = State::LowU,
                    _ => return Err(Halt::Syntax(i)),
                },
                State::LowU => match b {
                    b'u' => self.state = State::Hex { digits: 0, acc: 0 },
                    _ => return Err(Halt::Syntax(i)),
                },
                State::Lit { word, at } => {
                    let literal = LITERALS.get(usize::from(word)).copied().unwrap_or_default();
                    if literal.get(usize::from(at)) != Some(&b) {
                        return Err(Halt::Syntax(i));
                    }
                    if usize::from(at) + 1 == literal.len() {
                        let value = if word == 2 {
                            Scalar::Null
                        } else {
                            Scalar::Other
                        };
                        self.scalar_done(i + 1, value, sink)?;
                    } else {
                        self.state = State::Lit { word, at: at + 1 };
                    }
                }
                State::Num(num) => {
                    let next = match (num, b) {
                        (Num::Minus, b'0') => Num::Zero,
                        (Num::Minus, b'1'..=b'9') => Num::Int,
                        (Num::Int, b'0'..=b'9') => {
                            // Digit runs are common (timestamps, sizes).
                            let digits = chunk
                                .get(i..)
                                .unwrap_or_default()
                                .iter()
                                .take_while(|c| c.is_ascii_digit())
                                .count();
                            i += digits;
                            continue;
                        }
                        (Num::Zero | Num::Int, b'.') => Num::Dot,
                        (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
                        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::ExpStart,
                        (Num::ExpStart, b'+' | b'-') => Num::ExpSign,
                        (Num::ExpStart | Num::ExpSign | Num::Exp, b'0'..=b'9') => Num::Exp,
                        (num, _) if num.complete() => {
                            // The byte after the number belongs to what
                            // follows it: read it again in the new state.
                            self.scalar_done(i, Scalar::Other, sink)?;
                            continue;
                        }
                        _ => return Err(Halt::Syntax(i)),
                    };
                    self.state = State::Num(next);
                }
                State::Stopped | State::Failed(_) => return Err(Halt::Stop(i)),
            }
            i += 1;
        }
        Ok(())
    }

    /// The hot path: reads string contents from `at` (inside a string, no
    /// escape pending) as far as the chunk allows; returns where it stopped.
    /// Message text is skipped a span at a time, and the escapes that fit in
    /// the chunk are decoded here instead of one byte per trip through `run`.
    #[inline]
    fn string_run<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        chunk: &[u8],
        at: usize,
        sink: &mut F,
    ) -> Result<usize, Halt> {
        let mut i = at;
        loop {
            if self.capturing {
                let rest = chunk.get(i..).unwrap_or_default();
                let end = find_special(rest);
                self.push_raw(rest.get(..end).unwrap_or_default());
                i += end;
            } else {
                // Steps over the two-byte escapes too: what is left at `i`
                // is a quote, a control character, an escape the byte-wise
                // states decode, or the chunk's end.
                i = skip_plain(chunk, i);
            }
            match chunk.get(i) {
                None => return Ok(i),
                Some(b'"') => {
                    self.string_done(i, sink)?;
                    return Ok(i + 1);
                }
                Some(b'\\') => {
                    let decoded = match chunk.get(i + 1) {
                        Some(&c @ (b'"' | b'\\' | b'/')) => c,
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        // `\u`, an invalid escape, or the end of the chunk:
                        // the byte-wise states take it from here.
                        _ => {
                            self.state = State::Esc;
                            return Ok(i + 1);
                        }
                    };
                    self.push_raw(&[decoded]);
                    i += 2;
                }
                // A control character: JSON requires it escaped.
                Some(_) => return Err(Halt::Syntax(i)),
            }
        }
    }

    /// The fourth hex digit of `\uXXXX` (UTF-16 code unit `unit`) is at `at`.
    /// Surrogates must pair up, as serde_json requires for UTF-8 strings.
    fn code_unit(&mut self, unit: u16, at: usize) -> Result<(), Halt> {
        let is_high = (0xD800..=0xDBFF).contains(&unit);
        let is_low = (0xDC00..=0xDFFF).contains(&unit);
        if self.high != 0 {
            if !is_low {
                return Err(Halt::Syntax(at));
            }
            let code_point =
                0x1_0000 + ((u32::from(self.high - 0xD800) << 10) | u32::from(unit - 0xDC00));
            self.high = 0;
            self.push_code_point(code_point);
            self.state = State::Str;
        } else if is_high {
            self.high = unit;
            self.state = State::LowBackslash;
        } else if is_low {
            return Err(Halt::Syntax(at));
        } else {
            self.push_code_point(u32::from(unit));
            self.state = State::Str;
        }
        Ok(())
    }
}

/// Sends one event per path in `mask`; true if the sink asked to stop.
#[inline]
fn emit_each<'a, F: FnMut(Event<'_>) -> Flow>(
    mut mask: u64,
    sink: &mut F,
    event: impl Fn(usize) -> Event<'a>,
) -> bool {
    while mask != 0 {
        let path = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        if sink(event(path)) == Flow::Stop {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{Event, Flow, Limits, Progress, Scalar, Scanner, RESERVED_VALUE_BYTES};

    #[test]
    fn reset_gives_back_what_a_long_value_grew() {
        let limits = Limits {
            max_value_len: 8192,
            ..Limits::default()
        };
        let mut scanner = Scanner::new(&[&["id"]], limits);
        let reserved = scanner.buf.capacity();
        let body = format!(r#"{{"id":"{}"}}"#, "x".repeat(6000));
        let mut longest = 0;
        let progress = scanner.feed(body.as_bytes(), &mut |event| {
            if let Event::Scalar {
                value: Scalar::Str(s),
                ..
            } = event
            {
                longest = s.len();
            }
            Flow::Continue
        });
        assert_eq!((progress, longest), (Progress::Done, 6000));
        assert!(scanner.buf.capacity() >= 6000);
        scanner.reset();
        assert!(scanner.buf.capacity() <= RESERVED_VALUE_BYTES);
        assert_eq!(reserved, RESERVED_VALUE_BYTES);
    }
}
