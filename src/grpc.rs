//! The A2A gRPC binding: which calls it has, where their ids sit in the
//! protobuf messages, and a reader that finds them in the request and
//! response streams without buffering them.
//!
//! A gRPC message travels as a length-prefixed frame: one flag byte
//! (1 = compressed), a 4-byte big-endian length, then the protobuf bytes
//! (gRPC over HTTP/2, "Length-Prefixed-Message"). The ids are strings a
//! field or two deep (a2a-wire reference, section 1.3): the v0.3 service
//! `a2a.v1.A2AService` puts the Message of a send at field 1, the v1.0
//! service `lf.a2a.v1.A2AService` at field 2, and both keep `context_id` at
//! field 2 and `task_id` at field 3 of the Message.

use crate::a2a::{Operation, Version};
use crate::extract::{usable_value, BodyReader, Candidate, Step, Verdict};

/// Deepest nesting any watched field path needs.
const MAX_DEPTH: usize = 3;

/// Protobuf field numbers are 29 bits wide.
const MAX_FIELD: u64 = (1 << 29) - 1;

/// An A2A gRPC call, from its `:path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub version: Version,
    pub operation: Operation,
}

/// The call a request is, when it is an A2A gRPC call the filter can read:
/// POST to `/a2a.v1.A2AService/<Rpc>` (v0.3) or `/lf.a2a.v1.A2AService/<Rpc>`
/// (v1.0) with content type `application/grpc` or `application/grpc+proto`.
/// Other gRPC codecs (`+json`) carry no protobuf and are not read.
pub fn classify(method: &str, path: &str, content_type: Option<&str>) -> Option<Call> {
    if !method.eq_ignore_ascii_case("POST") || !content_type.is_some_and(is_grpc_proto) {
        return None;
    }
    let (version, rpc) = if let Some(rpc) = path.strip_prefix("/a2a.v1.A2AService/") {
        (Version::V0, rpc)
    } else {
        (Version::V1, path.strip_prefix("/lf.a2a.v1.A2AService/")?)
    };
    use Operation::*;
    let operation = match (version, rpc) {
        (_, "SendMessage") => Send,
        (_, "SendStreamingMessage") => Stream,
        (_, "GetTask") => GetTask,
        (_, "CancelTask") => CancelTask,
        (Version::V0, "TaskSubscription") | (Version::V1, "SubscribeToTask") => Resubscribe,
        (_, "CreateTaskPushNotificationConfig") => PushConfigSet,
        (_, "GetTaskPushNotificationConfig") => PushConfigGet,
        (Version::V0, "ListTaskPushNotificationConfig")
        | (Version::V1, "ListTaskPushNotificationConfigs") => PushConfigList,
        (_, "DeleteTaskPushNotificationConfig") => PushConfigDelete,
        (Version::V1, "ListTasks") => ListTasks,
        (Version::V0, "GetAgentCard") | (Version::V1, "GetExtendedAgentCard") => ExtendedCard,
        _ => return None,
    };
    Some(Call { version, operation })
}

/// `application/grpc` and `application/grpc+proto`, parameters allowed.
pub fn is_grpc_proto(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/grpc")
        || essence.eq_ignore_ascii_case("application/grpc+proto")
}

/// Any gRPC content type: `application/grpc` or `application/grpc+<codec>`.
pub fn is_grpc(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence
        .get(..16)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        && matches!(essence.as_bytes().get(16), None | Some(b'+'))
}

/// Why a stream cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A frame with the compressed flag: reading it needs the codec.
    Compressed,
    /// A frame flag other than 0 or 1.
    Flag,
    /// The stream or a field ended inside a frame header, tag, varint or
    /// length-delimited value.
    Truncated,
    /// A varint longer than 10 bytes or wider than 64 bits.
    Varint,
    /// Field number 0 or above 2^29 - 1.
    FieldNumber,
    /// Wire type 3 or 4: groups are not part of proto3.
    Group,
    /// Wire type 6 or 7.
    WireType,
}

/// What the reader reports while it walks the watched paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event<'a> {
    /// A watched message field begins. Offsets are absolute stream offsets.
    Open {
        target: usize,
        len_at: u64,
        len_size: u8,
        len: u64,
    },
    /// The watched message field opened last ends.
    Close { target: usize },
    /// A watched string field: `None` when it is not UTF-8 or longer than
    /// the value limit.
    Str {
        target: usize,
        value: Option<&'a str>,
    },
    /// A frame's message ended; the frame header is at `frame_at`.
    FrameEnd { frame_at: u64, len: u32 },
}

#[derive(Clone, Copy, Debug)]
struct Region {
    /// The watched container this region is, if it is one.
    target: Option<usize>,
    /// Absolute offset just past its last byte.
    end: u64,
}

#[derive(Clone, Copy, Debug)]
enum Token {
    /// Reading a field tag (`value` accumulated so far; `shift == 0` means
    /// no byte of it read yet, a field boundary).
    Tag { value: u64, shift: u32 },
    /// Skipping a varint value.
    Varint { shift: u32 },
    /// Reading the length of a length-delimited field starting at `at`.
    Length {
        field: u32,
        value: u64,
        shift: u32,
        at: u64,
    },
    /// Skipping bytes up to `end`.
    Skip { end: u64 },
    /// Copying a watched string up to `end`.
    Capture { target: usize, end: u64 },
}

#[derive(Clone, Copy, Debug)]
enum Frame {
    /// `have` bytes of the 5-byte frame header read.
    Header {
        bytes: [u8; 5],
        have: usize,
    },
    Message,
}

/// Walks gRPC frames of protobuf messages incrementally: each call gets
/// only new bytes, any split point works, and memory is bounded by the
/// watched path depth and the value limit.
struct Reader {
    /// Watched field-number paths from a frame's top-level message.
    targets: &'static [&'static [u32]],
    max_value: usize,
    offset: u64,
    frame: Frame,
    frame_at: u64,
    frame_len: u32,
    /// The frame's message, then each watched container entered.
    regions: Vec<Region>,
    /// Field numbers of the entered containers.
    fields: Vec<u32>,
    token: Token,
    capture: Vec<u8>,
    failed: Option<Invalid>,
}

/// Whether the reader's caller wants more events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// What one `feed` got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Every byte read; more may come.
    NeedMore,
    /// The sink asked to stop.
    Stopped,
    Failed(Invalid),
}

/// One varint byte into an accumulator; `Ok(true)` when it was the last.
fn varint_step(value: &mut u64, shift: &mut u32, byte: u8) -> Result<bool, Invalid> {
    let bits = u64::from(byte & 0x7f);
    // The 10th byte may only carry the 64th bit.
    if *shift > 63 || (*shift == 63 && bits > 1) {
        return Err(Invalid::Varint);
    }
    *value |= bits << *shift;
    *shift += 7;
    Ok(byte & 0x80 == 0)
}

impl Reader {
    fn new(targets: &'static [&'static [u32]], max_value: usize) -> Self {
        Reader {
            targets,
            max_value,
            offset: 0,
            frame: Frame::Header {
                bytes: [0; 5],
                have: 0,
            },
            frame_at: 0,
            frame_len: 0,
            regions: Vec::with_capacity(MAX_DEPTH + 1),
            fields: Vec::with_capacity(MAX_DEPTH),
            token: Token::Tag { value: 0, shift: 0 },
            capture: Vec::new(),
            failed: None,
        }
    }

    /// Between frames, or at a field boundary of a complete frame.
    fn at_frame_boundary(&self) -> bool {
        matches!(self.frame, Frame::Header { have: 0, .. })
    }

    fn fail(&mut self, why: Invalid) -> Progress {
        self.failed = Some(why);
        Progress::Failed(why)
    }

    /// The watched target a field at the current depth is, and whether it
    /// is a container (some longer target runs through it).
    fn target_of(&self, field: u32) -> (Option<usize>, bool) {
        let depth = self.fields.len();
        let mut exact = None;
        let mut container = false;
        for (i, t) in self.targets.iter().enumerate() {
            if t.len() <= depth
                || t.get(..depth) != Some(self.fields.as_slice())
                || t.get(depth) != Some(&field)
            {
                continue;
            }
            if t.len() == depth + 1 {
                exact = exact.or(Some(i));
            } else {
                container = true;
            }
        }
        (exact, container)
    }

    fn feed(&mut self, chunk: &[u8], sink: &mut dyn FnMut(Event<'_>) -> Flow) -> Progress {
        if let Some(why) = self.failed {
            return Progress::Failed(why);
        }
        let mut i = 0usize;
        loop {
            if let Frame::Header {
                mut bytes,
                mut have,
            } = self.frame
            {
                let Some(&b) = chunk.get(i) else {
                    return Progress::NeedMore;
                };
                if let Some(slot) = bytes.get_mut(have) {
                    *slot = b;
                }
                have += 1;
                i += 1;
                self.offset += 1;
                if have < bytes.len() {
                    self.frame = Frame::Header { bytes, have };
                    continue;
                }
                let [flag, l0, l1, l2, l3] = bytes;
                match flag {
                    0 => {}
                    1 => return self.fail(Invalid::Compressed),
                    _ => return self.fail(Invalid::Flag),
                }
                self.frame_len = u32::from_be_bytes([l0, l1, l2, l3]);
                self.frame_at = self.offset - 5;
                self.regions.clear();
                self.fields.clear();
                self.regions.push(Region {
                    target: None,
                    end: self.offset + u64::from(self.frame_len),
                });
                self.token = Token::Tag { value: 0, shift: 0 };
                self.frame = Frame::Message;
                continue;
            }
            let Some(&region) = self.regions.last() else {
                return self.fail(Invalid::Truncated);
            };
            if matches!(self.token, Token::Tag { shift: 0, .. }) && self.offset == region.end {
                self.regions.pop();
                let flow = if self.regions.is_empty() {
                    self.frame = Frame::Header {
                        bytes: [0; 5],
                        have: 0,
                    };
                    sink(Event::FrameEnd {
                        frame_at: self.frame_at,
                        len: self.frame_len,
                    })
                } else {
                    self.fields.pop();
                    match region.target {
                        Some(target) => sink(Event::Close { target }),
                        None => Flow::Continue,
                    }
                };
                if flow == Flow::Stop {
                    return Progress::Stopped;
                }
                continue;
            }
            if self.offset >= region.end {
                // A tag, varint or length ran past its enclosing message.
                return self.fail(Invalid::Truncated);
            }
            let rest = chunk.get(i..).unwrap_or(&[]);
            if rest.is_empty() {
                return Progress::NeedMore;
            }
            match self.token {
                Token::Skip { end } | Token::Capture { end, .. } => {
                    let room = usize::try_from(end - self.offset).unwrap_or(usize::MAX);
                    let take = room.min(rest.len());
                    if let Token::Capture { .. } = self.token {
                        let keep = (self.max_value + 1).saturating_sub(self.capture.len());
                        self.capture
                            .extend_from_slice(rest.get(..take.min(keep)).unwrap_or(&[]));
                    }
                    i += take;
                    self.offset += take as u64;
                    if self.offset == end {
                        if let Token::Capture { target, .. } = self.token {
                            let value = if self.capture.len() > self.max_value {
                                None
                            } else {
                                std::str::from_utf8(&self.capture).ok()
                            };
                            let flow = sink(Event::Str { target, value });
                            self.capture.clear();
                            if flow == Flow::Stop {
                                self.token = Token::Tag { value: 0, shift: 0 };
                                return Progress::Stopped;
                            }
                        }
                        self.token = Token::Tag { value: 0, shift: 0 };
                    }
                }
                Token::Tag {
                    mut value,
                    mut shift,
                } => {
                    let b = rest.first().copied().unwrap_or(0);
                    i += 1;
                    self.offset += 1;
                    match varint_step(&mut value, &mut shift, b) {
                        Err(why) => return self.fail(why),
                        Ok(false) => self.token = Token::Tag { value, shift },
                        Ok(true) => {
                            if let Err(why) = self.on_tag(value, region.end) {
                                return self.fail(why);
                            }
                        }
                    }
                }
                Token::Varint { mut shift } => {
                    let b = rest.first().copied().unwrap_or(0);
                    i += 1;
                    self.offset += 1;
                    let mut ignored = 0;
                    match varint_step(&mut ignored, &mut shift, b) {
                        Err(why) => return self.fail(why),
                        Ok(false) => self.token = Token::Varint { shift },
                        Ok(true) => self.token = Token::Tag { value: 0, shift: 0 },
                    }
                }
                Token::Length {
                    field,
                    mut value,
                    mut shift,
                    at,
                } => {
                    let b = rest.first().copied().unwrap_or(0);
                    i += 1;
                    self.offset += 1;
                    match varint_step(&mut value, &mut shift, b) {
                        Err(why) => return self.fail(why),
                        Ok(false) => {
                            self.token = Token::Length {
                                field,
                                value,
                                shift,
                                at,
                            }
                        }
                        Ok(true) => {
                            if value > region.end - self.offset {
                                return self.fail(Invalid::Truncated);
                            }
                            let end = self.offset + value;
                            self.token = Token::Tag { value: 0, shift: 0 };
                            match self.target_of(field) {
                                (exact, true) if self.fields.len() < MAX_DEPTH => {
                                    self.regions.push(Region { target: exact, end });
                                    self.fields.push(field);
                                    if let Some(target) = exact {
                                        let len_size = u8::try_from(self.offset - at).unwrap_or(0);
                                        let flow = sink(Event::Open {
                                            target,
                                            len_at: at,
                                            len_size,
                                            len: value,
                                        });
                                        if flow == Flow::Stop {
                                            return Progress::Stopped;
                                        }
                                    }
                                }
                                // An empty value is complete at once: it may
                                // end its message, where no byte follows.
                                (Some(target), false) if value == 0 => {
                                    if sink(Event::Str {
                                        target,
                                        value: Some(""),
                                    }) == Flow::Stop
                                    {
                                        return Progress::Stopped;
                                    }
                                }
                                (Some(target), false) => {
                                    self.token = Token::Capture { target, end };
                                }
                                _ if value == 0 => {}
                                _ => self.token = Token::Skip { end },
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_tag(&mut self, tag: u64, region_end: u64) -> Result<(), Invalid> {
        let field = tag >> 3;
        if field == 0 || field > MAX_FIELD {
            return Err(Invalid::FieldNumber);
        }
        let field = u32::try_from(field).map_err(|_| Invalid::FieldNumber)?;
        let fixed = |n: u64| {
            if region_end - self.offset < n {
                Err(Invalid::Truncated)
            } else {
                Ok(Token::Skip {
                    end: self.offset + n,
                })
            }
        };
        self.token = match tag & 7 {
            0 => Token::Varint { shift: 0 },
            1 => fixed(8)?,
            2 => Token::Length {
                field,
                value: 0,
                shift: 0,
                at: self.offset,
            },
            5 => fixed(4)?,
            3 | 4 => return Err(Invalid::Group),
            _ => return Err(Invalid::WireType),
        };
        Ok(())
    }
}

/// A usable header value, by the JSON side's rule (the reader has already
/// turned a value over the length limit into `None`).
fn header_value(value: Option<&str>) -> Result<String, ()> {
    match value {
        Some(s) if usable_value(s, usize::MAX) => Ok(s.to_string()),
        _ => Err(()),
    }
}

/// Where a minted contextId goes in a gRPC request: a `context_id` field
/// put first in the send's Message, which sits directly in the frame's
/// top-level message in both versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MintSite {
    /// Offset of the frame's flag byte.
    pub frame_at: u64,
    /// The frame's message length.
    pub frame_len: u32,
    /// Offset of the Message field's length varint.
    pub len_at: u64,
    /// Bytes of that varint.
    pub len_size: u8,
    /// The Message's length.
    pub len: u64,
}

/// What a request's fields mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// Targets: 0 the Message, 1 its context_id, 2 its task_id.
    Send,
    /// Target 0 is the task id itself.
    TaskId,
    /// Target 0 is a v0.3 resource name, `tasks/{id}[/...]`.
    TaskName,
    /// Target 0 is the contextId (1.0 `ListTasks`).
    Context,
}

/// The watched paths of a request and how to read them; `None` for calls
/// that carry no id.
fn request_fields(call: Call) -> Option<(&'static [&'static [u32]], Reading)> {
    use Operation::*;
    use Version::*;
    Some(match (call.operation, call.version) {
        (Send | Stream, V0) => (&[&[1], &[1, 2], &[1, 3]], Reading::Send),
        (Send | Stream, V1) => (&[&[2], &[2, 2], &[2, 3]], Reading::Send),
        // v0.3: GetTaskRequest/CancelTaskRequest/TaskSubscriptionRequest
        // `name`, Get/Delete push config `name`, Create/List `parent`, all
        // field 1 and all "tasks/{id}..." resource names.
        (
            GetTask | CancelTask | Resubscribe | PushConfigSet | PushConfigGet | PushConfigList
            | PushConfigDelete,
            V0,
        ) => (&[&[1]], Reading::TaskName),
        (GetTask | CancelTask | Resubscribe, V1) => (&[&[2]], Reading::TaskId),
        // v1.0: Create takes a TaskPushNotificationConfig (task_id = 3);
        // Get/Delete requests have task_id = 2, List task_id = 1.
        (PushConfigSet, V1) => (&[&[3]], Reading::TaskId),
        (PushConfigGet | PushConfigDelete, V1) => (&[&[2]], Reading::TaskId),
        (PushConfigList, V1) => (&[&[1]], Reading::TaskId),
        (ListTasks, V1) => (&[&[2]], Reading::Context),
        _ => return None,
    })
}

/// Whether a request of this call has an id to read.
pub fn reads_request(call: Call) -> bool {
    request_fields(call).is_some()
}

/// The task id in a v0.3 resource name `tasks/{id}` or
/// `tasks/{id}/pushNotificationConfigs/{config}`.
fn task_of_name(name: &str) -> Option<&str> {
    let id = name.strip_prefix("tasks/")?.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

#[derive(Debug, Default)]
struct Found {
    message: Option<(u64, u8, u64)>,
    message_closed: bool,
    context: Candidate,
    task: Candidate,
    /// The first frame ended, with its header offset and length.
    frame: Option<(u64, u32)>,
}

/// Reads the first frame of a gRPC request and decides its verdict, as
/// `extract::Extractor` does for JSON: a valid contextId decides at once; a
/// Message that ends with only a task_id asks for the learned context; a
/// first turn is minted only once the whole first frame has been read and
/// is valid.
///
/// A field repeated in one message is read first-wins, like a duplicate JSON
/// key, although protobuf parsers keep the last: serializers write each
/// field once, so only a hand-made frame can tell the two apart.
pub struct RequestExtractor {
    reader: Reader,
    reading: Reading,
    found: Found,
}

impl RequestExtractor {
    /// `None` for calls that carry no id (see `reads_request`).
    pub fn new(call: Call, max_value_bytes: usize) -> Option<Self> {
        let (targets, reading) = request_fields(call)?;
        Some(RequestExtractor {
            reader: Reader::new(targets, max_value_bytes),
            reading,
            found: Found::default(),
        })
    }

    fn decide(found: &Found, reading: Reading) -> Option<Verdict> {
        let end = found.frame.is_some();
        match reading {
            Reading::Send => {
                if let Candidate::Valid(c) = &found.context {
                    return Some(Verdict::Context(c.clone()));
                }
                if !found.message_closed && !end {
                    return None;
                }
                if found.context == Candidate::Invalid {
                    return Some(Verdict::InvalidValue);
                }
                match &found.task {
                    Candidate::Valid(t) => return Some(Verdict::Task(t.clone())),
                    Candidate::Invalid => return Some(Verdict::InvalidValue),
                    Candidate::Missing => {}
                }
                // Minting rewrites the frame: only once it is whole and valid.
                let (frame_at, frame_len) = found.frame?;
                Some(match found.message {
                    Some((len_at, len_size, len)) => Verdict::MintGrpc(MintSite {
                        frame_at,
                        frame_len,
                        len_at,
                        len_size,
                        len,
                    }),
                    None => Verdict::Absent,
                })
            }
            Reading::TaskId | Reading::TaskName | Reading::Context => {
                let candidate = match reading {
                    Reading::Context => &found.context,
                    _ => &found.task,
                };
                match candidate {
                    Candidate::Valid(v) if reading == Reading::Context => {
                        Some(Verdict::Context(v.clone()))
                    }
                    Candidate::Valid(v) => Some(Verdict::Task(v.clone())),
                    Candidate::Invalid if end => Some(Verdict::InvalidValue),
                    _ if end => Some(Verdict::Absent),
                    _ => None,
                }
            }
        }
    }

    fn record(found: &mut Found, reading: Reading, event: Event<'_>) {
        let value = header_value;
        match (reading, event) {
            (_, Event::FrameEnd { frame_at, len }) => found.frame = Some((frame_at, len)),
            (
                Reading::Send,
                Event::Open {
                    target: 0,
                    len_at,
                    len_size,
                    len,
                },
            ) => {
                found.message.get_or_insert((len_at, len_size, len));
            }
            (Reading::Send, Event::Close { target: 0 }) => found.message_closed = true,
            (
                Reading::Send,
                Event::Str {
                    target: 1,
                    value: v,
                },
            ) => found.context.offer(value(v)),
            (
                Reading::Send,
                Event::Str {
                    target: 2,
                    value: v,
                },
            ) => found.task.offer(value(v)),
            (Reading::TaskId, Event::Str { value: v, .. }) => found.task.offer(value(v)),
            (Reading::TaskName, Event::Str { value: v, .. }) => {
                found.task.offer(value(v.and_then(task_of_name)))
            }
            (Reading::Context, Event::Str { value: v, .. }) => found.context.offer(value(v)),
            _ => {}
        }
    }
}

impl BodyReader for RequestExtractor {
    fn feed(&mut self, chunk: &[u8]) -> Step {
        let reading = self.reading;
        if self.found.frame.is_some() {
            return Step::Decided(Self::decide(&self.found, reading).unwrap_or(Verdict::Absent));
        }
        let found = &mut self.found;
        let mut verdict = None;
        let progress = self.reader.feed(chunk, &mut |event| {
            Self::record(found, reading, event);
            verdict = Self::decide(found, reading);
            if verdict.is_some() {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        match (verdict, progress) {
            (Some(v), _) => Step::Decided(v),
            (None, Progress::Failed(why)) => Step::InvalidGrpc(why),
            (None, _) => Step::NeedMore,
        }
    }

    fn finish(&mut self) -> Step {
        match Self::decide(&self.found, self.reading) {
            Some(v) => Step::Decided(v),
            None => Step::InvalidGrpc(self.reader.failed.unwrap_or(Invalid::Truncated)),
        }
    }
}

/// The body with a `context_id` field (field 2) inserted first in the
/// Message at `site`, the Message's length varint and the frame length
/// fixed to match, every other byte unchanged. `None` when the body does not
/// have the frame and Message where the reader saw them.
pub fn insert_context_id(body: &[u8], site: &MintSite, context_id: &str) -> Option<Vec<u8>> {
    let frame_at = usize::try_from(site.frame_at).ok()?;
    let len_at = usize::try_from(site.len_at).ok()?;
    let len_end = len_at.checked_add(usize::from(site.len_size))?;
    let frame_end = frame_at
        .checked_add(5)?
        .checked_add(usize::try_from(site.frame_len).ok()?)?;
    let message_end = len_end.checked_add(usize::try_from(site.len).ok()?)?;
    if body.get(frame_at) != Some(&0)
        || body.get(frame_at + 1..frame_at + 5)? != site.frame_len.to_be_bytes()
        || len_at < frame_at + 5
        || message_end > frame_end
        || frame_end > body.len()
    {
        return None;
    }
    let (mut len, mut shift) = (0u64, 0u32);
    let varint = body.get(len_at..len_end)?;
    for (i, &b) in varint.iter().enumerate() {
        let last = varint_step(&mut len, &mut shift, b).ok()?;
        if last != (i + 1 == varint.len()) {
            return None;
        }
    }
    if len != site.len {
        return None;
    }
    let mut field = vec![0x12];
    encode_varint(&mut field, context_id.len() as u64);
    field.extend_from_slice(context_id.as_bytes());
    let mut new_len = Vec::with_capacity(10);
    encode_varint(&mut new_len, site.len + field.len() as u64);
    let grown = (new_len.len() + field.len()).checked_sub(usize::from(site.len_size))?;
    let frame_len = u32::try_from(u64::from(site.frame_len) + grown as u64).ok()?;
    let mut out = Vec::with_capacity(body.len() + grown);
    out.extend_from_slice(body.get(..=frame_at)?);
    out.extend_from_slice(&frame_len.to_be_bytes());
    out.extend_from_slice(body.get(frame_at + 5..len_at)?);
    out.extend_from_slice(&new_len);
    out.extend_from_slice(&field);
    out.extend_from_slice(body.get(len_end..)?);
    Some(out)
}

fn encode_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads the frames of a gRPC response as they stream past and yields the
/// (taskId, contextId) pairs they name; never holds the response. After an
/// unreadable frame (compressed, malformed) it reads nothing more, since the
/// next frame boundary is unknown.
pub struct ResponseLearner {
    reader: Reader,
    slots: Vec<Option<String>>,
    frame_learned: bool,
}

/// Response paths in pairs: path `2i` a task id, `2i + 1` its context id.
/// SendMessageResponse and StreamResponse: `task` = 1 (Task id = 1,
/// context_id = 2), `message` = 2 (task_id = 3, context_id = 2);
/// StreamResponse also `status_update` = 3 and `artifact_update` = 4
/// (task_id = 1, context_id = 2). The same numbers in v0.3 and v1.0.
const SEND_RESPONSE: &[&[u32]] = &[&[1, 1], &[1, 2], &[2, 3], &[2, 2]];
const STREAM_RESPONSE: &[&[u32]] = &[
    &[1, 1],
    &[1, 2],
    &[2, 3],
    &[2, 2],
    &[3, 1],
    &[3, 2],
    &[4, 1],
    &[4, 2],
];
/// GetTask and CancelTask answer a bare Task.
const TASK_RESPONSE: &[&[u32]] = &[&[1], &[2]];

impl ResponseLearner {
    /// `None` for calls whose responses name no task.
    pub fn new(call: Call, max_value_bytes: usize) -> Option<Self> {
        let targets = match call.operation {
            Operation::Send => SEND_RESPONSE,
            Operation::Stream | Operation::Resubscribe => STREAM_RESPONSE,
            Operation::GetTask | Operation::CancelTask => TASK_RESPONSE,
            _ => return None,
        };
        Some(ResponseLearner {
            reader: Reader::new(targets, max_value_bytes),
            slots: vec![None; targets.len()],
            frame_learned: false,
        })
    }

    /// Feeds the next response bytes; `learned` receives each pair found
    /// (at most one per frame).
    pub fn feed(&mut self, chunk: &[u8], learned: &mut dyn FnMut(&str, &str)) {
        let slots = &mut self.slots;
        let frame_learned = &mut self.frame_learned;
        self.reader.feed(chunk, &mut |event| {
            match event {
                Event::FrameEnd { .. } => {
                    slots.iter_mut().for_each(|s| *s = None);
                    *frame_learned = false;
                }
                Event::Str { target, value } if !*frame_learned => {
                    if let (Ok(v), Some(slot)) = (header_value(value), slots.get_mut(target)) {
                        slot.get_or_insert(v);
                    }
                    let pair = target / 2 * 2;
                    if let (Some(Some(task)), Some(Some(context))) =
                        (slots.get(pair), slots.get(pair + 1))
                    {
                        learned(task, context);
                        *frame_learned = true;
                    }
                }
                _ => {}
            }
            Flow::Continue
        });
    }

    /// Whether the stream so far ended on a frame boundary (for tests).
    pub fn at_frame_boundary(&self) -> bool {
        self.reader.at_frame_boundary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A small protobuf encoder for building test frames.
    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(&mut out, v);
        // Cross-check the encoder against the plain definition.
        let mut plain = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                plain.push(b);
                break;
            }
            plain.push(b | 0x80);
        }
        assert_eq!(out, plain);
        out
    }
    fn tag(field: u32, wire: u8) -> Vec<u8> {
        varint((u64::from(field) << 3) | u64::from(wire))
    }
    fn len(field: u32, bytes: &[u8]) -> Vec<u8> {
        [tag(field, 2), varint(bytes.len() as u64), bytes.to_vec()].concat()
    }
    fn uint(field: u32, v: u64) -> Vec<u8> {
        [tag(field, 0), varint(v)].concat()
    }
    fn fixed64(field: u32) -> Vec<u8> {
        [tag(field, 1), vec![0x80; 8]].concat()
    }
    fn fixed32(field: u32) -> Vec<u8> {
        [tag(field, 5), vec![0x0a; 4]].concat()
    }
    fn frame(message: &[u8]) -> Vec<u8> {
        [
            vec![0],
            (message.len() as u32).to_be_bytes().to_vec(),
            message.to_vec(),
        ]
        .concat()
    }
    /// Fields a reader must step over: every wire type, including a LEN
    /// whose bytes look like a context_id field.
    fn noise() -> Vec<u8> {
        [
            uint(9, 300),
            fixed64(10),
            fixed32(11),
            len(12, &len(2, b"decoy")),
            uint(13, u64::MAX),
        ]
        .concat()
    }

    const V0: Call = Call {
        version: Version::V0,
        operation: Operation::Send,
    };
    const V1: Call = Call {
        version: Version::V1,
        operation: Operation::Send,
    };
    fn call(version: Version, operation: Operation) -> Call {
        Call { version, operation }
    }

    fn run(call: Call, chunks: &[&[u8]]) -> Step {
        let mut e = RequestExtractor::new(call, 64).unwrap();
        for chunk in chunks {
            let step = e.feed(chunk);
            if step != Step::NeedMore {
                return step;
            }
        }
        e.finish()
    }

    /// The verdict of `body` in one piece, asserted equal for every
    /// two-piece split and for one byte at a time.
    fn verdict(call: Call, body: &[u8]) -> Step {
        let whole = run(call, &[body]);
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(run(call, &[a, b]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(run(call, &bytes), whole, "byte at a time");
        whole
    }

    fn message(fields: &[Vec<u8>]) -> Vec<u8> {
        fields.concat()
    }

    #[test]
    fn classifies_both_services_and_only_protobuf_grpc() {
        let grpc = Some("application/grpc");
        use Operation::*;
        use Version::*;
        let table = [
            ("/a2a.v1.A2AService/SendMessage", grpc, Some(call(V0, Send))),
            (
                "/a2a.v1.A2AService/SendStreamingMessage",
                Some("application/grpc+proto"),
                Some(call(V0, Stream)),
            ),
            (
                "/a2a.v1.A2AService/TaskSubscription",
                grpc,
                Some(call(V0, Resubscribe)),
            ),
            ("/a2a.v1.A2AService/SubscribeToTask", grpc, None),
            (
                "/lf.a2a.v1.A2AService/SubscribeToTask",
                grpc,
                Some(call(V1, Resubscribe)),
            ),
            (
                "/lf.a2a.v1.A2AService/GetTask",
                Some("Application/GRPC; charset=x"),
                Some(call(V1, GetTask)),
            ),
            (
                "/lf.a2a.v1.A2AService/ListTaskPushNotificationConfigs",
                grpc,
                Some(call(V1, PushConfigList)),
            ),
            (
                "/a2a.v1.A2AService/ListTaskPushNotificationConfig",
                grpc,
                Some(call(V0, PushConfigList)),
            ),
            (
                "/lf.a2a.v1.A2AService/ListTasks",
                grpc,
                Some(call(V1, ListTasks)),
            ),
            ("/a2a.v1.A2AService/ListTasks", grpc, None),
            (
                "/lf.a2a.v1.A2AService/SendMessage",
                Some("application/grpc+json"),
                None,
            ),
            (
                "/lf.a2a.v1.A2AService/SendMessage",
                Some("application/json"),
                None,
            ),
            ("/lf.a2a.v1.A2AService/SendMessage", None, None),
            ("/lf.a2a.v1.A2AService/Frobnicate", grpc, None),
            ("/x/lf.a2a.v1.A2AService/SendMessage", grpc, None),
            ("/a2a.v1.OtherService/SendMessage", grpc, None),
        ];
        for (path, ct, want) in table {
            assert_eq!(classify("POST", path, ct), want, "{path} {ct:?}");
        }
        assert_eq!(classify("GET", "/a2a.v1.A2AService/GetTask", grpc), None);
        for ct in [
            "application/grpc",
            "application/grpc+json",
            "APPLICATION/GRPC+proto; x=y",
        ] {
            assert!(is_grpc(ct), "{ct}");
        }
        for ct in ["application/grpcx", "application/json", "application/grp"] {
            assert!(!is_grpc(ct), "{ct}");
        }
    }

    #[test]
    fn send_context_id_at_every_split_with_unknown_fields_around() {
        for (c, field) in [(V0, 1), (V1, 2)] {
            let msg = message(&[
                noise(),
                len(1, b"m-1"),
                len(2, b"ctx-42"),
                uint(4, 1),
                len(5, &len(1, b"hello")),
                noise(),
            ]);
            // Field 1 is the v1.0 tenant; in v0.3 it is the Message itself.
            let tenant = if field == 2 {
                len(1, b"tenant")
            } else {
                vec![]
            };
            let body = frame(&[noise(), tenant, len(field, &msg), noise()].concat());
            assert_eq!(
                verdict(c, &body),
                Step::Decided(Verdict::Context("ctx-42".into())),
                "{c:?}"
            );
        }
        // The v0.3 and v1.0 layouts are not confused with each other: in
        // v1.0 field 1 is the tenant string, in v0.3 field 2 the config.
        let v0_body = frame(&len(1, &len(2, b"c")));
        assert_eq!(
            verdict(V1, &v0_body),
            Step::Decided(Verdict::Absent),
            "v0.3 body on the v1.0 service"
        );
    }

    proptest::proptest! {
        /// Any bytes, any split: no panic, the same outcome as in one piece.
        #[test]
        fn arbitrary_bytes_at_any_split(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            at in 0usize..200,
            v1 in proptest::prelude::any::<bool>(),
        ) {
            let c = if v1 { V1 } else { V0 };
            let at = at.min(body.len());
            let (a, b) = body.split_at(at);
            proptest::prop_assert_eq!(run(c, &[a, b]), run(c, &[&body]));
            proptest::prop_assert_eq!(learn(c, &[a, b]), learn(c, &[&body]));
        }

        /// Arbitrary bytes inside a well-formed frame header and Message.
        #[test]
        fn arbitrary_message_bytes_at_any_split(
            inner in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            at in 0usize..140,
        ) {
            let body = frame(&len(2, &inner));
            let at = at.min(body.len());
            let (a, b) = body.split_at(at);
            let whole = run(V1, &[&body]);
            proptest::prop_assert_eq!(run(V1, &[a, b]), whole.clone());
            if let Step::Decided(Verdict::MintGrpc(site)) = whole {
                let out = insert_context_id(&body, &site, "c-1");
                proptest::prop_assert!(out.is_some());
                proptest::prop_assert_eq!(
                    run(V1, &[&out.unwrap_or_default()]),
                    Step::Decided(Verdict::Context("c-1".into()))
                );
            }
        }
    }

    #[test]
    fn empty_fields_at_the_end_of_a_message_or_frame() {
        // An empty configuration closes the frame (as a2a-sdk sends it), an
        // empty unknown field closes the Message.
        let body = frame(&[len(2, &[len(1, b"m"), len(9, b"")].concat()), len(3, b"")].concat());
        assert!(matches!(
            verdict(V1, &body),
            Step::Decided(Verdict::MintGrpc(_))
        ));
        // An empty task_id ends the Message: unusable.
        let body = frame(&len(2, &[len(1, b"m"), len(3, b"")].concat()));
        assert_eq!(verdict(V1, &body), Step::Decided(Verdict::InvalidValue));
        // An empty task id ends the frame.
        let body = frame(&[uint(3, 1), len(2, b"")].concat());
        assert_eq!(
            verdict(call(Version::V1, Operation::GetTask), &body),
            Step::Decided(Verdict::InvalidValue)
        );
        // Empty frames and empty trailing fields between response frames.
        let task = len(1, &[len(1, b"t"), len(2, b"c"), len(4, b"")].concat());
        let body = [frame(b""), frame(&[task, len(9, b"")].concat()), frame(b"")].concat();
        assert_eq!(learned_at_every_split(V1, &body), vec![pair("t", "c")]);
    }

    #[test]
    fn a_context_id_decides_before_the_rest_of_the_frame_arrives() {
        let body = frame(&len(2, &[len(2, b"ctx"), len(5, &[7u8; 1000])].concat()));
        let mut e = RequestExtractor::new(V1, 64).unwrap();
        let head = body.len() - 1000;
        assert_eq!(
            e.feed(&body[..head]),
            Step::Decided(Verdict::Context("ctx".into()))
        );
    }

    #[test]
    fn follow_up_with_only_a_task_id_asks_for_the_task() {
        for (c, field) in [(V0, 1), (V1, 2)] {
            let body = frame(&len(
                field,
                &[len(1, b"m"), len(3, b"task-9"), noise()].concat(),
            ));
            assert_eq!(
                verdict(c, &body),
                Step::Decided(Verdict::Task("task-9".into()))
            );
        }
    }

    #[test]
    fn task_calls_of_both_versions() {
        use Operation::*;
        use Version::*;
        let task = |t: &str| Step::Decided(Verdict::Task(t.into()));
        let table: Vec<(Call, Vec<u8>, Step)> = vec![
            (call(V0, GetTask), len(1, b"tasks/t-1"), task("t-1")),
            (call(V0, CancelTask), len(1, b"tasks/t-1"), task("t-1")),
            (call(V0, Resubscribe), len(1, b"tasks/t-1"), task("t-1")),
            (
                call(V0, PushConfigGet),
                len(1, b"tasks/t-1/pushNotificationConfigs/c-2"),
                task("t-1"),
            ),
            (
                call(V0, PushConfigSet),
                [len(1, b"tasks/t-1"), len(2, b"c-2")].concat(),
                task("t-1"),
            ),
            (
                call(V0, GetTask),
                len(1, b"t-1"),
                Step::Decided(Verdict::InvalidValue),
            ),
            (
                call(V0, GetTask),
                len(1, b"tasks/"),
                Step::Decided(Verdict::InvalidValue),
            ),
            (
                call(V1, GetTask),
                [len(1, b"tenant"), len(2, b"t-1"), uint(3, 5)].concat(),
                task("t-1"),
            ),
            (call(V1, CancelTask), len(2, b"t-1"), task("t-1")),
            (call(V1, Resubscribe), len(2, b"t-1"), task("t-1")),
            (
                call(V1, PushConfigSet),
                [len(2, b"cfg"), len(3, b"t-1"), len(4, b"http://x")].concat(),
                task("t-1"),
            ),
            (
                call(V1, PushConfigGet),
                [len(2, b"t-1"), len(3, b"cfg")].concat(),
                task("t-1"),
            ),
            (
                call(V1, PushConfigDelete),
                [len(3, b"cfg"), len(2, b"t-1")].concat(),
                task("t-1"),
            ),
            (
                call(V1, PushConfigList),
                [len(4, b"ten"), len(1, b"t-1")].concat(),
                task("t-1"),
            ),
            (
                call(V1, ListTasks),
                [len(2, b"ctx-1"), uint(4, 10)].concat(),
                Step::Decided(Verdict::Context("ctx-1".into())),
            ),
            (
                call(V1, GetTask),
                uint(3, 5),
                Step::Decided(Verdict::Absent),
            ),
        ];
        for (c, msg, want) in table {
            assert_eq!(verdict(c, &frame(&[noise(), msg].concat())), want, "{c:?}");
        }
        assert!(RequestExtractor::new(call(V1, ExtendedCard), 64).is_none());
        assert!(!reads_request(call(V0, ExtendedCard)));
    }

    #[test]
    fn unusable_values_are_invalid() {
        let long = [b'a'; 65];
        let exact = [b'a'; 64];
        for (value, want) in [
            (&b""[..], Step::Decided(Verdict::InvalidValue)),
            (&b"a\nb"[..], Step::Decided(Verdict::InvalidValue)),
            (&b"\xff\xfe"[..], Step::Decided(Verdict::InvalidValue)),
            (&long[..], Step::Decided(Verdict::InvalidValue)),
            (
                &exact[..],
                Step::Decided(Verdict::Context(String::from_utf8(exact.to_vec()).unwrap())),
            ),
        ] {
            let body = frame(&len(2, &[len(2, value), len(5, b"x")].concat()));
            assert_eq!(verdict(V1, &body), want, "{value:?}");
        }
        // A later valid value does not rescue an invalid task id.
        let body = frame(&len(1, &[len(3, b""), len(1, b"m")].concat()));
        assert_eq!(verdict(V0, &body), Step::Decided(Verdict::InvalidValue));
    }

    #[test]
    fn malformed_or_compressed_frames_are_invalid() {
        let ok = len(2, &len(1, b"m"));
        let cases: Vec<(Vec<u8>, Invalid)> = vec![
            // Compressed flag, unknown flag.
            (
                [vec![1], 5u32.to_be_bytes().to_vec(), len(2, b"abc")].concat(),
                Invalid::Compressed,
            ),
            (
                [vec![2], 2u32.to_be_bytes().to_vec(), vec![8, 1]].concat(),
                Invalid::Flag,
            ),
            // Groups (start and end) and reserved wire types.
            (
                frame(&[tag(7, 3), tag(7, 4), ok.clone()].concat()),
                Invalid::Group,
            ),
            (frame(&[tag(7, 4), ok.clone()].concat()), Invalid::Group),
            (frame(&[tag(7, 6), ok.clone()].concat()), Invalid::WireType),
            (frame(&[tag(7, 7), ok.clone()].concat()), Invalid::WireType),
            // Field number 0.
            (
                frame(&[vec![0x02, 0x00], ok.clone()].concat()),
                Invalid::FieldNumber,
            ),
            // A varint cut by the end of its message, one cut by the end of
            // the frame, and one of 11 bytes.
            (
                frame(&len(2, &[tag(4, 0), vec![0x80]].concat())),
                Invalid::Truncated,
            ),
            (
                frame(&[tag(4, 0), vec![0x80, 0x80]].concat()),
                Invalid::Truncated,
            ),
            (
                frame(&[tag(4, 0), vec![0xff; 10], vec![1]].concat()),
                Invalid::Varint,
            ),
            (
                frame(&[tag(4, 0), vec![0xff; 9], vec![2]].concat()),
                Invalid::Varint,
            ),
            // A length past the end of the frame, fixed fields cut short.
            (
                frame(&[tag(5, 2), varint(50), vec![0; 3]].concat()),
                Invalid::Truncated,
            ),
            (frame(&[tag(5, 1), vec![0; 7]].concat()), Invalid::Truncated),
            (frame(&[tag(5, 5), vec![0; 3]].concat()), Invalid::Truncated),
            // A tag cut by the end of the frame.
            (
                frame(&[ok.clone(), vec![0x80]].concat()),
                Invalid::Truncated,
            ),
        ];
        for (body, why) in cases {
            assert_eq!(verdict(V1, &body), Step::InvalidGrpc(why), "{body:?}");
        }
        // The body ends inside the frame header or the message.
        let body = frame(&ok);
        for cut in [1, 4, 5, body.len() - 1] {
            assert_eq!(
                run(V1, &[&body[..cut]]),
                Step::InvalidGrpc(Invalid::Truncated),
                "cut at {cut}"
            );
        }
        // A 10-byte varint carrying bit 63 is valid.
        let body = frame(&[tag(4, 0), vec![0xff; 9], vec![1], len(2, &len(3, b"t"))].concat());
        assert_eq!(verdict(V1, &body), Step::Decided(Verdict::Task("t".into())));
    }

    /// Parses a frame's top-level message into (field, wire, payload) with
    /// the reader's own rules off: a plain reference decoder for checks.
    fn fields(mut m: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
        fn take_varint(m: &mut &[u8]) -> u64 {
            let mut v = 0;
            let mut shift = 0;
            loop {
                let b = m[0];
                *m = &m[1..];
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    return v;
                }
            }
        }
        let mut out = Vec::new();
        while !m.is_empty() {
            let t = take_varint(&mut m);
            let wire = (t & 7) as u8;
            let n = match wire {
                0 => {
                    let before = m;
                    take_varint(&mut m);
                    out.push((t >> 3, wire, before[..before.len() - m.len()].to_vec()));
                    continue;
                }
                1 => 8,
                5 => 4,
                2 => take_varint(&mut m) as usize,
                _ => panic!("wire {wire}"),
            };
            out.push((t >> 3, wire, m[..n].to_vec()));
            m = &m[n..];
        }
        out
    }

    fn unframe(body: &[u8]) -> &[u8] {
        assert_eq!(body[0], 0);
        let n = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        assert_eq!(body.len(), 5 + n, "frame length matches the bytes");
        &body[5..]
    }

    fn mint_and_check(c: Call, message_field: u64, body: &[u8]) {
        let Step::Decided(Verdict::MintGrpc(site)) = verdict(c, body) else {
            panic!("no mint site for {body:?}");
        };
        let id = "0f0e0d0c-0b0a-4908-8706-050403020100";
        let out = insert_context_id(body, &site, id).unwrap();
        // The new frame decides as a contextId at every split.
        assert_eq!(verdict(c, &out), Step::Decided(Verdict::Context(id.into())));
        // Every top-level field is unchanged except the Message, which
        // gained context_id as its first field and kept the rest.
        let before = fields(unframe(body));
        let after = fields(unframe(&out));
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            if b.0 == message_field && b.1 == 2 {
                assert_eq!(a.2, [len(2, id.as_bytes()), b.2.clone()].concat());
            } else {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn first_turns_are_minted_only_when_the_frame_is_whole() {
        for (c, field) in [(V0, 1u32), (V1, 2)] {
            let msg = message(&[len(1, b"m-1"), uint(4, 1), len(5, &len(1, b"hi")), noise()]);
            let tenant = if field == 2 { len(1, b"t") } else { vec![] };
            let body = frame(&[tenant, noise(), len(field, &msg), len(3, b"cfg")].concat());
            mint_and_check(c, u64::from(field), &body);
            // Not before the frame ends: the configuration after the
            // Message may still hold anything.
            let mut e = RequestExtractor::new(c, 64).unwrap();
            assert_eq!(e.feed(&body[..body.len() - 1]), Step::NeedMore);
            // An empty Message is a first turn too.
            mint_and_check(c, u64::from(field), &frame(&len(field, b"")));
        }
        // The Message length varint grows from one byte to two, and from
        // two to three.
        for n in [100usize, 16_300] {
            let msg = len(5, &vec![b'x'; n]);
            let body = frame(&len(2, &msg));
            mint_and_check(V1, 2, &body);
        }
        // No Message at all: nothing to mint into.
        assert_eq!(
            verdict(V1, &frame(&len(3, b"cfg"))),
            Step::Decided(Verdict::Absent)
        );
        // A malformed field after the Message stops the mint.
        let body = frame(&[len(2, &len(1, b"m")), tag(9, 3)].concat());
        assert_eq!(verdict(V1, &body), Step::InvalidGrpc(Invalid::Group));
    }

    #[test]
    fn insert_refuses_a_site_that_does_not_match_the_body() {
        let body = frame(&[len(1, b"t"), len(2, &len(1, b"m"))].concat());
        let Step::Decided(Verdict::MintGrpc(good)) = verdict(V1, &body) else {
            panic!("no site");
        };
        assert!(insert_context_id(&body, &good, "c").is_some());
        for bad in [
            MintSite {
                frame_at: 1,
                ..good
            },
            MintSite {
                frame_len: good.frame_len + 1,
                ..good
            },
            MintSite {
                len_at: good.len_at - 1,
                ..good
            },
            MintSite {
                len_size: 2,
                ..good
            },
            MintSite {
                len: good.len + 1,
                ..good
            },
            MintSite { len_at: 2, ..good },
        ] {
            assert_eq!(insert_context_id(&body, &bad, "c"), None, "{bad:?}");
        }
        assert_eq!(insert_context_id(&body[..body.len() - 1], &good, "c"), None);
    }

    fn learn(c: Call, chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut l = ResponseLearner::new(c, 64).unwrap();
        let mut pairs = Vec::new();
        for chunk in chunks {
            l.feed(chunk, &mut |t, ctx| {
                pairs.push((t.to_string(), ctx.to_string()))
            });
        }
        pairs
    }

    fn learned_at_every_split(c: Call, body: &[u8]) -> Vec<(String, String)> {
        let whole = learn(c, &[body]);
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(learn(c, &[a, b]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(learn(c, &bytes), whole);
        whole
    }

    fn pair(t: &str, c: &str) -> (String, String) {
        (t.to_string(), c.to_string())
    }

    #[test]
    fn stream_responses_teach_each_frame_at_every_split() {
        let history = len(5, &[len(3, b"other-task"), len(2, b"other-ctx")].concat());
        let task = len(
            1,
            &[len(1, b"t-1"), noise(), len(2, b"c-1"), history].concat(),
        );
        let status = len(3, &[len(2, b"c-2"), len(1, b"t-2"), len(3, b"x")].concat());
        let artifact = len(4, &[len(1, b"t-3"), len(2, b"c-3")].concat());
        let message = len(2, &[len(1, b"m"), len(2, b"c-4"), len(3, b"t-4")].concat());
        let no_task = len(2, &[len(1, b"m"), len(2, b"c-5")].concat());
        let body = [
            frame(&task),
            frame(&status),
            frame(b""),
            frame(&artifact),
            frame(&no_task),
            frame(&message),
        ]
        .concat();
        for version in [Version::V0, Version::V1] {
            for op in [Operation::Stream, Operation::Resubscribe] {
                assert_eq!(
                    learned_at_every_split(call(version, op), &body),
                    vec![
                        pair("t-1", "c-1"),
                        pair("t-2", "c-2"),
                        pair("t-3", "c-3"),
                        pair("t-4", "c-4"),
                    ]
                );
            }
        }
        // SendMessage answers a Task or a Message; an event shape there is
        // not read.
        let body = [frame(&task), frame(&status), frame(&message)].concat();
        assert_eq!(
            learned_at_every_split(V1, &body),
            vec![pair("t-1", "c-1"), pair("t-4", "c-4")]
        );
        // GetTask and CancelTask answer a bare Task.
        let bare = frame(&[len(1, b"t-9"), len(3, &uint(1, 3)), len(2, b"c-9")].concat());
        for op in [Operation::GetTask, Operation::CancelTask] {
            assert_eq!(
                learned_at_every_split(call(Version::V1, op), &bare),
                vec![pair("t-9", "c-9")]
            );
        }
        assert!(ResponseLearner::new(call(Version::V1, Operation::ListTasks), 64).is_none());
    }

    #[test]
    fn learning_stops_at_an_unreadable_frame() {
        let good = frame(&len(1, &[len(1, b"t-1"), len(2, b"c-1")].concat()));
        let mut compressed = good.clone();
        compressed[0] = 1;
        let bad = frame(&[tag(1, 3)].concat());
        for broken in [compressed, bad] {
            let body = [good.clone(), broken, good.clone()].concat();
            assert_eq!(learned_at_every_split(V1, &body), vec![pair("t-1", "c-1")]);
        }
        // Values the header could not carry are not learned.
        let body = frame(&len(1, &[len(1, b"t-1"), len(2, b"c\r\n")].concat()));
        assert!(learned_at_every_split(V1, &body).is_empty());
        let mut l = ResponseLearner::new(V1, 64).unwrap();
        l.feed(&good[..3], &mut |_, _| {});
        assert!(!l.at_frame_boundary());
        l.feed(&good[3..], &mut |_, _| {});
        assert!(l.at_frame_boundary());
    }
}
