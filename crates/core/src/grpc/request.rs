//! The request side of the gRPC binding: the ids of a call's first frame,
//! and the edit that gives a first turn a `context_id`.

use super::header_value;
use super::Call;
use crate::a2a::{Operation, Version};
use crate::mint::{BodyEdit, Splice};
use crate::proto::wire::{encode_varint, Event, Flow, Invalid, Progress, Reader};
use crate::verdict::{BodyReader, Candidate, GrpcMintSite as MintSite, Step, Verdict};

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
    /// The last occurrence of the Message field: protobuf parsers merge
    /// the occurrences of a message field in order, so a field written at
    /// the end of the last one is the field they keep.
    message: Option<(u64, u8, u64)>,
    context: Candidate,
    task: Candidate,
    /// The first frame ended, with its header offset and length.
    frame: Option<(u64, u32)>,
}

/// Reads the first frame of a gRPC request and decides its verdict once
/// the request body has ended, as `json::request::Extractor` does for JSON:
/// a field repeated in the frame is read last-wins, as protobuf parsers
/// read it (`context_id` sent twice: the second; the Message sent twice:
/// merged, its later fields winning), and a first turn is minted only once
/// the whole body is known to be valid frames.
pub struct RequestExtractor {
    reader: Reader,
    reading: Reading,
    found: Found,
}

/// A string field as an id: `None` is a value that is not UTF-8 or is
/// longer than the value limit.
fn candidate(value: Option<&str>) -> Candidate {
    match value {
        Some("") => Candidate::Empty(None),
        other => match header_value(other) {
            Ok(v) => Candidate::Valid(v),
            Err(()) => Candidate::Invalid,
        },
    }
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

    /// The verdict the fields read so far support, if they name a usable id.
    fn decide_partial(found: &Found, reading: Reading) -> Option<Verdict> {
        match reading {
            Reading::Send => {
                let task = match &found.task {
                    Candidate::Valid(t) => Some(t),
                    _ => None,
                };
                match (&found.context, task) {
                    (Candidate::Valid(c), Some(t)) => Some(Verdict::ContextAndTask {
                        context: c.clone(),
                        task: t.clone(),
                    }),
                    (Candidate::Valid(c), None) => Some(Verdict::Context(c.clone())),
                    (Candidate::Missing | Candidate::Empty(_), Some(t)) => {
                        Some(Verdict::Task(t.clone()))
                    }
                    _ => None,
                }
            }
            Reading::Context => match &found.context {
                Candidate::Valid(c) => Some(Verdict::Context(c.clone())),
                _ => None,
            },
            Reading::TaskId | Reading::TaskName => match &found.task {
                Candidate::Valid(t) => Some(Verdict::Task(t.clone())),
                _ => None,
            },
        }
    }

    /// The verdict of a whole body whose first frame was read.
    fn decide(found: &Found, reading: Reading, (frame_at, frame_len): (u64, u32)) -> Verdict {
        if let Some(verdict) = Self::decide_partial(found, reading) {
            return verdict;
        }
        let invalid = |c: &Candidate| matches!(c, Candidate::Invalid);
        if invalid(&found.context) || invalid(&found.task) {
            return Verdict::InvalidValue;
        }
        match (reading, found.message) {
            // No usable context_id or task_id: a first turn.
            (Reading::Send, Some((len_at, len_size, len))) => Verdict::MintGrpc(MintSite {
                frame_at,
                frame_len,
                len_at,
                len_size,
                len,
            }),
            _ => Verdict::Absent,
        }
    }

    fn record(found: &mut Found, reading: Reading, event: Event<'_>) {
        if found.frame.is_some() {
            // Only the first frame is read; later ones are only checked.
            return;
        }
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
            ) => found.message = Some((len_at, len_size, len)),
            (Reading::Send, Event::Str { target: 1, value }) => found.context = candidate(value),
            (Reading::Send, Event::Str { target: 2, value }) => found.task = candidate(value),
            (Reading::TaskId, Event::Str { value, .. }) => found.task = candidate(value),
            (Reading::TaskName, Event::Str { value, .. }) => {
                found.task = match value.and_then(task_of_name) {
                    Some(id) => candidate(Some(id)),
                    None => Candidate::Invalid,
                }
            }
            (Reading::Context, Event::Str { value, .. }) => found.context = candidate(value),
            _ => {}
        }
    }
}

impl BodyReader for RequestExtractor {
    fn feed(&mut self, chunk: &[u8]) -> Step {
        let reading = self.reading;
        let found = &mut self.found;
        let progress = self.reader.feed(chunk, &mut |event| {
            Self::record(found, reading, event);
            Flow::Continue
        });
        match progress {
            Progress::Failed(why) => Step::InvalidGrpc(why),
            _ => Step::NeedMore,
        }
    }

    fn finish(&mut self) -> Step {
        if let Some(why) = self.reader.failed {
            return Step::InvalidGrpc(why);
        }
        match self.found.frame {
            Some(frame) if self.reader.at_frame_boundary() => {
                Step::Decided(Self::decide(&self.found, self.reading, frame))
            }
            _ => Step::InvalidGrpc(Invalid::Truncated),
        }
    }

    /// A body that may be whole, cut right after whole frames (an ext_proc
    /// body message that holds the unary call's one frame but is not
    /// marked the last) is decided as a whole one; otherwise only a usable
    /// id routes it.
    fn cut(&mut self, may_be_whole: bool) -> Option<Verdict> {
        match self.found.frame {
            Some(frame)
                if may_be_whole
                    && self.reader.failed.is_none()
                    && self.reader.at_frame_boundary() =>
            {
                Some(Self::decide(&self.found, self.reading, frame))
            }
            _ => Self::decide_partial(&self.found, self.reading),
        }
    }
}

/// The edit that appends a `context_id` field (field 2) to the Message at
/// `site` (after any `context_id` it has, so it is the one a parser keeps)
/// and fixes the Message's length varint and the frame length to match;
/// every other byte stays. `None` for a site that cannot be (the Message
/// outside its frame, a frame that would outgrow 4 GiB).
pub fn mint_edit(site: &MintSite, context_id: &str) -> Option<BodyEdit> {
    let len_end = site.len_at.checked_add(u64::from(site.len_size))?;
    let frame_end = site.frame_at.checked_add(5 + u64::from(site.frame_len))?;
    let message_end = len_end.checked_add(site.len)?;
    if site.len_at < site.frame_at + 5
        || message_end > frame_end
        || !(1..=10).contains(&site.len_size)
    {
        return None;
    }
    let mut field = vec![0x12];
    encode_varint(&mut field, context_id.len() as u64);
    field.extend_from_slice(context_id.as_bytes());
    let mut length = Vec::with_capacity(10);
    encode_varint(&mut length, site.len + field.len() as u64);
    let grown = (length.len() as u64 + field.len() as u64).checked_sub(u64::from(site.len_size))?;
    let frame_len = u32::try_from(u64::from(site.frame_len) + grown).ok()?;
    Some(BodyEdit {
        splices: vec![
            // The uncompressed flag stays; the length after it grows.
            Splice {
                at: site.frame_at + 1,
                remove: site.frame_len.to_be_bytes().to_vec(),
                insert: frame_len.to_be_bytes().to_vec(),
            },
            Splice {
                at: site.len_at,
                // The varint as the body had it, minimal or not: for a
                // given value and width there is one encoding.
                remove: padded_varint(site.len, site.len_size),
                insert: length,
            },
            Splice {
                at: message_end,
                remove: Vec::new(),
                insert: field,
            },
        ],
        content_length: None,
    })
}

/// `value` as a varint of exactly `width` bytes.
fn padded_varint(value: u64, width: u8) -> Vec<u8> {
    (0..width)
        .map(|i| {
            let bits = value.checked_shr(7 * u32::from(i)).unwrap_or(0) as u8 & 0x7f;
            if i + 1 < width {
                bits | 0x80
            } else {
                bits
            }
        })
        .collect()
}

/// The body with the minted field in (see `mint_edit`); `None` when the
/// body does not have the frame and Message where the reader saw them.
pub fn insert_context_id(body: &[u8], site: &MintSite, context_id: &str) -> Option<Vec<u8>> {
    let frame_end = site.frame_at.checked_add(5 + u64::from(site.frame_len))?;
    if frame_end > body.len() as u64 {
        return None;
    }
    mint_edit(site, context_id)?.apply(body)
}
