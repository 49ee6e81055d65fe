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

/// The edit that puts a `context_id` field (field 2) first in the Message
/// at `site` and fixes the Message's length varint and the frame length to
/// match; every other byte stays. `None` for a site that cannot be (the
/// Message outside its frame, a frame that would outgrow 4 GiB).
pub fn mint_edit(site: &MintSite, context_id: &str) -> Option<BodyEdit> {
    let len_end = site.len_at.checked_add(u64::from(site.len_size))?;
    let frame_end = site.frame_at.checked_add(5 + u64::from(site.frame_len))?;
    if site.len_at < site.frame_at + 5
        || len_end.checked_add(site.len)? > frame_end
        || !(1..=10).contains(&site.len_size)
    {
        return None;
    }
    let mut field = vec![0x12];
    encode_varint(&mut field, context_id.len() as u64);
    field.extend_from_slice(context_id.as_bytes());
    let mut insert = Vec::with_capacity(10 + field.len());
    encode_varint(&mut insert, site.len + field.len() as u64);
    insert.extend_from_slice(&field);
    let grown = (insert.len() as u64).checked_sub(u64::from(site.len_size))?;
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
                insert,
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
