//! Oracles and helpers shared by the fuzz targets: a JSON duplicate-key
//! check on top of serde_json, a plain reference walker for gRPC frames,
//! and input splitting. Each oracle is written independently of the core's
//! code so that a disagreement points at one of the two.

#![allow(clippy::indexing_slicing)]

use std::collections::HashSet;
use std::fmt;

use a2a_affinity_core::proto::wire::{Event, Flow, Invalid, Progress, Reader};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Reads control bytes off the front of a fuzz input; missing bytes are 0.
pub struct Control<'a> {
    data: &'a [u8],
}

impl<'a> Control<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Control { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// What follows the control bytes.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Cut points for a body of `len` bytes, from a seed: `count` sorted
/// offsets in `0..=len` (repeats allowed, which gives empty chunks).
pub fn cuts(len: usize, count: usize, seed: u32) -> Vec<usize> {
    let mut state = u64::from(seed) | 1 << 40;
    let mut points: Vec<usize> = (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % (len as u64 + 1)) as usize
        })
        .collect();
    points.sort_unstable();
    points
}

/// `body` cut at `points` (sorted): the test kit's cutter.
pub use a2a_affinity_testkit::splits::at as chunks;

/// A JSON value walked only to find out whether any object repeats a
/// member name (serde_json's `Value` silently keeps the last one).
struct Unique;

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate member name"));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

/// Whether `doc` is valid JSON (for serde_json) with no object that
/// repeats a member name.
pub fn json_without_duplicates(doc: &[u8]) -> bool {
    serde_json::from_slice::<Unique>(doc).is_ok()
}

/// What the reference walker and the core's reader report, in the core's
/// terms (values owned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoEvent {
    Open {
        target: usize,
        len_at: u64,
        len_size: u8,
        len: u64,
    },
    Close {
        target: usize,
    },
    Str {
        target: usize,
        value: Option<String>,
    },
    FrameEnd {
        frame_at: u64,
        len: u32,
    },
}

impl From<Event<'_>> for ProtoEvent {
    fn from(e: Event<'_>) -> Self {
        match e {
            Event::Open {
                target,
                len_at,
                len_size,
                len,
            } => ProtoEvent::Open {
                target,
                len_at,
                len_size,
                len,
            },
            Event::Close { target } => ProtoEvent::Close { target },
            Event::Str { target, value } => ProtoEvent::Str {
                target,
                value: value.map(str::to_owned),
            },
            Event::FrameEnd { frame_at, len } => ProtoEvent::FrameEnd { frame_at, len },
        }
    }
}

/// Where a walk of the whole input ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoEnd {
    /// Between frames: every frame complete.
    Boundary,
    /// The input ends inside a frame.
    Inside,
    Failed(Invalid),
}

/// The core's reader over `chunks`, never stopped early.
pub fn core_walk(
    targets: &'static [&'static [u32]],
    max_value: usize,
    chunks: &[&[u8]],
) -> (Vec<ProtoEvent>, ProtoEnd) {
    let mut reader = Reader::new(targets, max_value);
    let mut events = Vec::new();
    for chunk in chunks {
        let progress = reader.feed(chunk, &mut |e| {
            events.push(ProtoEvent::from(e));
            Flow::Continue
        });
        match progress {
            Progress::Failed(why) => return (events, ProtoEnd::Failed(why)),
            Progress::Stopped => return (events, ProtoEnd::Failed(Invalid::Truncated)),
            Progress::NeedMore => {}
        }
    }
    let end = if reader.at_frame_boundary() {
        ProtoEnd::Boundary
    } else {
        ProtoEnd::Inside
    };
    (events, end)
}

/// A reference walk of gRPC frames over the whole input at once, written
/// from the protobuf encoding rules: every field of a frame's message is
/// checked (tag, wire type, length within its message), watched messages
/// are entered, watched strings reported.
pub fn reference_walk(
    targets: &[&[u32]],
    max_value: usize,
    input: &[u8],
) -> (Vec<ProtoEvent>, ProtoEnd) {
    let mut walk = Walk {
        targets,
        max_value,
        input,
        events: Vec::new(),
    };
    let end = walk.frames();
    (walk.events, end)
}

struct Walk<'a> {
    targets: &'a [&'a [u32]],
    max_value: usize,
    input: &'a [u8],
    events: Vec<ProtoEvent>,
}

/// Why a message walk stopped early.
enum Stop {
    /// The input ran out (the frame is not all there yet).
    OutOfInput,
    Invalid(Invalid),
}

impl Walk<'_> {
    fn frames(&mut self) -> ProtoEnd {
        let mut at = 0usize;
        loop {
            if at == self.input.len() {
                return ProtoEnd::Boundary;
            }
            if self.input.len() - at < 5 {
                return ProtoEnd::Inside;
            }
            let header = &self.input[at..at + 5];
            match header[0] {
                0 => {}
                1 => return ProtoEnd::Failed(Invalid::Compressed),
                _ => return ProtoEnd::Failed(Invalid::Flag),
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            let start = at + 5;
            let end = start as u64 + u64::from(len);
            match self.message(start as u64, end, &mut Vec::new()) {
                Ok(()) => {}
                Err(Stop::OutOfInput) => return ProtoEnd::Inside,
                Err(Stop::Invalid(why)) => return ProtoEnd::Failed(why),
            }
            self.events.push(ProtoEvent::FrameEnd {
                frame_at: at as u64,
                len,
            });
            at = end as usize;
        }
    }

    fn byte(&self, at: u64, end: u64) -> Result<u8, Stop> {
        if at >= end {
            return Err(Stop::Invalid(Invalid::Truncated));
        }
        self.input.get(at as usize).copied().ok_or(Stop::OutOfInput)
    }

    /// A varint at `*at`, which must end before `end`.
    /// At most 10 bytes and 64 bits: the 10th byte may only carry the
    /// 64th bit, and an 11th byte is an error once it is seen.
    fn varint(&self, at: &mut u64, end: u64) -> Result<u64, Stop> {
        let mut value: u64 = 0;
        for i in 0..=10u32 {
            let b = self.byte(*at, end)?;
            *at += 1;
            let bits = u64::from(b & 0x7f);
            if i == 10 || (i == 9 && bits > 1) {
                return Err(Stop::Invalid(Invalid::Varint));
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Stop::Invalid(Invalid::Varint))
    }

    fn message(&mut self, mut at: u64, end: u64, path: &mut Vec<u32>) -> Result<(), Stop> {
        while at < end {
            let tag = self.varint(&mut at, end)?;
            let field = tag >> 3;
            if field == 0 || field > (1 << 29) - 1 {
                return Err(Stop::Invalid(Invalid::FieldNumber));
            }
            let field = field as u32;
            match tag & 7 {
                0 => {
                    self.varint(&mut at, end)?;
                }
                1 | 5 => {
                    let n = if tag & 7 == 1 { 8 } else { 4 };
                    if end - at < n {
                        return Err(Stop::Invalid(Invalid::Truncated));
                    }
                    at += n;
                }
                2 => {
                    let len_at = at;
                    let len = self.varint(&mut at, end)?;
                    if len > end - at {
                        return Err(Stop::Invalid(Invalid::Truncated));
                    }
                    let value_end = at + len;
                    path.push(field);
                    let exact = self.targets.iter().position(|t| *t == path.as_slice());
                    let container = self
                        .targets
                        .iter()
                        .any(|t| t.len() > path.len() && t.starts_with(path));
                    if container {
                        if let Some(target) = exact {
                            self.events.push(ProtoEvent::Open {
                                target,
                                len_at,
                                len_size: (at - len_at) as u8,
                                len,
                            });
                        }
                        self.message(at, value_end, path)?;
                        if let Some(target) = exact {
                            self.events.push(ProtoEvent::Close { target });
                        }
                    } else if let Some(target) = exact {
                        if value_end as usize > self.input.len() {
                            return Err(Stop::OutOfInput);
                        }
                        let bytes = &self.input[at as usize..value_end as usize];
                        let value = if bytes.len() > self.max_value {
                            None
                        } else {
                            std::str::from_utf8(bytes).ok().map(str::to_owned)
                        };
                        self.events.push(ProtoEvent::Str { target, value });
                    }
                    path.pop();
                    at = value_end;
                }
                3 | 4 => return Err(Stop::Invalid(Invalid::Group)),
                _ => return Err(Stop::Invalid(Invalid::WireType)),
            }
        }
        // A skipped value may reach past the input: the message is not
        // complete until its last byte has arrived.
        if end > self.input.len() as u64 {
            return Err(Stop::OutOfInput);
        }
        Ok(())
    }
}

/// The fields of one protobuf message: number, wire type, value bytes (a
/// varint's own bytes); `None` if the bytes are not a well-formed message.
pub fn proto_fields(mut m: &[u8]) -> Option<Vec<(u64, u8, &[u8])>> {
    fn varint<'a>(m: &mut &'a [u8]) -> Option<(u64, &'a [u8])> {
        let start = *m;
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = m.split_first()?;
            *m = rest;
            value |= u64::from(b & 0x7f).checked_shl(7 * i)?;
            if b & 0x80 == 0 {
                return Some((value, &start[..=i as usize]));
            }
        }
        None
    }
    let mut out = Vec::new();
    while !m.is_empty() {
        let (tag, _) = varint(&mut m)?;
        let wire = (tag & 7) as u8;
        let value = match wire {
            0 => varint(&mut m)?.1,
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let v = m.get(..n)?;
                m = &m[n..];
                v
            }
            2 => {
                let n = usize::try_from(varint(&mut m)?.0).ok()?;
                let v = m.get(..n)?;
                m = &m[n..];
                v
            }
            _ => return None,
        };
        out.push((tag >> 3, wire, value));
    }
    Some(out)
}

/// The first gRPC frame of `body`: its message and the bytes after it.
pub fn first_frame(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let header = body.get(..5)?;
    if header[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let message = body.get(5..5 + len)?;
    Some((message, &body[5 + len..]))
}

/// Every string value of a member named `contextId` or `context_id`
/// reachable from the root through objects only, at most `depth` deep.
pub fn json_context_ids(value: &serde_json::Value, depth: usize, out: &mut Vec<String>) {
    let Some(object) = value.as_object() else {
        return;
    };
    for (key, v) in object {
        if key == "contextId" || key == "context_id" {
            if let Some(s) = v.as_str() {
                out.push(s.to_owned());
            }
        }
        if depth > 1 {
            json_context_ids(v, depth - 1, out);
        }
    }
}

/// Whether serde_json rejects a document for one of the scanner's
/// documented differences rather than for its grammar: a number beyond
/// f64, or nesting past serde_json's 128 levels (the scanner reads to
/// `scan::MAX_DEPTH`). Strings it does not report are not checked for
/// UTF-8 either; callers test that apart.
pub fn beyond_serde_json(error: &serde_json::Error) -> bool {
    let text = error.to_string();
    text.contains("number out of range") || text.contains("recursion limit exceeded")
}
