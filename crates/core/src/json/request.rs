//! From scanner events to a routing verdict.
//!
//! The extractor watches the body paths of one binding (the tables below) and
//! decides as early as the bytes allow: a valid contextId in the message
//! ends the scan at once; a message that closes with only a taskId asks for
//! the learned context of that task; a first-turn message (neither id) is
//! minted only once the whole document is known to be valid JSON, so that a
//! body the upstream would reject is never altered.

use super::scan::{Event, Flow, Limits, Progress, Scalar, Scanner};
use crate::a2a::{Operation, TaskIdField, Version};
use crate::verdict::{usable_value, BodyReader, Candidate, MintSite, Step, Verdict};

/// A body field the extractor watches; each has one or more JSON paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Method,
    Params,
    Message,
    MessageContextId,
    MessageTaskId,
    ParamsContextId,
    ParamsId,
    ParamsTaskId,
}

/// JSON-RPC paths and the field each one is. `context_id`/`task_id` are
/// accepted because ProtoJSON parsers (a2a-python 1.x) accept them.
pub const RPC_PATHS: &[&[&str]] = &[
    &["method"],
    &["params"],
    &["params", "message"],
    &["params", "message", "contextId"],
    &["params", "message", "context_id"],
    &["params", "message", "taskId"],
    &["params", "message", "task_id"],
    &["params", "contextId"],
    &["params", "id"],
    &["params", "taskId"],
];
pub const RPC_FIELDS: &[Field] = &[
    Field::Method,
    Field::Params,
    Field::Message,
    Field::MessageContextId,
    Field::MessageContextId,
    Field::MessageTaskId,
    Field::MessageTaskId,
    Field::ParamsContextId,
    Field::ParamsId,
    Field::ParamsTaskId,
];

/// REST send paths: the message is `message` (1.0, 0.3 proto json_name) or
/// `request` (the 0.3 field name, which a2a-sdk's 0.3 REST client sends,
/// with snake_case fields).
pub const REST_PATHS: &[&[&str]] = &[
    &["message"],
    &["message", "contextId"],
    &["message", "context_id"],
    &["message", "taskId"],
    &["message", "task_id"],
    &["request"],
    &["request", "contextId"],
    &["request", "context_id"],
    &["request", "taskId"],
    &["request", "task_id"],
];
pub const REST_FIELDS: &[Field] = &[
    Field::Message,
    Field::MessageContextId,
    Field::MessageContextId,
    Field::MessageTaskId,
    Field::MessageTaskId,
    Field::Message,
    Field::MessageContextId,
    Field::MessageContextId,
    Field::MessageTaskId,
    Field::MessageTaskId,
];

/// Which body shape is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    JsonRpc,
    RestSend,
}

#[derive(Debug, Default)]
struct Found {
    /// `None`: no `method` key yet; `Some(None)`: not an A2A method.
    method: Option<Option<(Operation, Version)>>,
    params_closed: bool,
    message_open: Option<u64>,
    /// The message's `}` offset, and whether it had no member.
    message_close: Option<(u64, bool)>,
    message_snake_case: bool,
    message_context: Candidate,
    message_task: Candidate,
    params_context: Candidate,
    params_id: Candidate,
    params_task_id: Candidate,
}

/// Reads one request body and decides its verdict.
pub struct Extractor {
    scanner: Scanner<'static>,
    kind: BodyKind,
    max_value_bytes: usize,
    found: Found,
}

impl Extractor {
    pub fn new(kind: BodyKind, max_value_bytes: usize) -> Self {
        let paths = match kind {
            BodyKind::JsonRpc => RPC_PATHS,
            BodyKind::RestSend => REST_PATHS,
        };
        let limits = Limits {
            max_value_len: max_value_bytes,
            ..Limits::default()
        };
        Extractor {
            scanner: Scanner::new(paths, limits),
            kind,
            max_value_bytes,
            found: Found::default(),
        }
    }

    /// Ready for the next body, as if new (the scanner keeps what a new
    /// one would reserve).
    pub fn reset(&mut self) {
        self.scanner.reset();
        self.found = Found::default();
    }

    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// Body bytes read so far.
    pub fn offset(&self) -> u64 {
        self.scanner.offset()
    }

    /// Feeds the next body bytes.
    pub fn feed(&mut self, chunk: &[u8]) -> Step {
        let kind = self.kind;
        let max = self.max_value_bytes;
        let found = &mut self.found;
        let mut verdict = None;
        let progress = self.scanner.feed(chunk, &mut |event| {
            found.record(kind, max, event);
            verdict = found.decide(kind, false);
            if verdict.is_some() {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        match (verdict, progress) {
            (Some(v), _) => Step::Decided(v),
            (None, Progress::Failed(e)) => Step::InvalidJson(e),
            (None, Progress::Done) => {
                Step::Decided(self.found.decide(kind, true).unwrap_or(Verdict::Absent))
            }
            (None, Progress::NeedMore | Progress::Stopped) => Step::NeedMore,
        }
    }

    /// The body ended: decide with what was read.
    pub fn finish(&mut self) -> Step {
        match self.scanner.finish() {
            Progress::Failed(e) => Step::InvalidJson(e),
            _ => Step::Decided(
                self.found
                    .decide(self.kind, true)
                    .unwrap_or(Verdict::Absent),
            ),
        }
    }
}

impl BodyReader for Extractor {
    fn feed(&mut self, chunk: &[u8]) -> Step {
        Extractor::feed(self, chunk)
    }

    fn finish(&mut self) -> Step {
        Extractor::finish(self)
    }
}

fn field_of(kind: BodyKind, path: usize) -> Option<(Field, bool)> {
    let (fields, paths) = match kind {
        BodyKind::JsonRpc => (RPC_FIELDS, RPC_PATHS),
        BodyKind::RestSend => (REST_FIELDS, REST_PATHS),
    };
    let field = *fields.get(path)?;
    let snake = paths.get(path).and_then(|p| p.first()) == Some(&"request");
    Some((field, snake))
}

fn header_value(value: Scalar<'_>, max: usize) -> Result<String, ()> {
    match value {
        Scalar::Str(s) if usable_value(s, max) => Ok(s.to_string()),
        _ => Err(()),
    }
}

impl Found {
    fn record(&mut self, kind: BodyKind, max: usize, event: Event<'_>) {
        let (path, scalar) = match event {
            Event::Scalar { path, value } => (path, Some(value)),
            Event::Open {
                path,
                offset,
                object,
            } => {
                if let Some((Field::Message, snake)) = field_of(kind, path) {
                    if object && self.message_open.is_none() {
                        self.message_open = Some(offset);
                        self.message_snake_case = snake;
                    }
                }
                (path, None)
            }
            Event::Close {
                path,
                offset,
                empty,
            } => {
                match field_of(kind, path) {
                    Some((Field::Message, _))
                        if self.message_close.is_none() && self.message_open.is_some() =>
                    {
                        self.message_close = Some((offset, empty));
                    }
                    Some((Field::Params, _)) => self.params_closed = true,
                    _ => {}
                }
                (path, None)
            }
        };
        let Some((field, _)) = field_of(kind, path) else {
            return;
        };
        // A container where a string belongs is as unusable as a bad string.
        let value = || match scalar {
            Some(s) => header_value(s, max),
            None => Err(()),
        };
        match field {
            Field::Method => {
                if self.method.is_none() {
                    self.method = Some(match scalar {
                        Some(Scalar::Str(name)) => crate::a2a::rpc_method(name),
                        _ => None,
                    });
                }
            }
            Field::MessageContextId => self.message_context.offer(value()),
            Field::MessageTaskId => self.message_task.offer(value()),
            Field::ParamsContextId => self.params_context.offer(value()),
            Field::ParamsId => self.params_id.offer(value()),
            Field::ParamsTaskId => self.params_task_id.offer(value()),
            Field::Params | Field::Message => {}
        }
    }

    /// The verdict, if the bytes read so far settle it. `end`: the whole
    /// document has been read and is valid.
    fn decide(&self, kind: BodyKind, end: bool) -> Option<Verdict> {
        if let Candidate::Valid(c) = &self.message_context {
            return Some(Verdict::Context(c.clone()));
        }
        let op = self.method.flatten();
        if let (Some((Operation::ListTasks, _)), Candidate::Valid(c)) = (op, &self.params_context) {
            return Some(Verdict::Context(c.clone()));
        }
        let params_done = end || self.params_closed;
        if let Some((close, empty)) = self.message_close {
            if self.message_context == Candidate::Invalid {
                return Some(Verdict::InvalidValue);
            }
            match &self.message_task {
                Candidate::Valid(t) => return Some(Verdict::Task(t.clone())),
                Candidate::Invalid => return Some(Verdict::InvalidValue),
                Candidate::Missing => {}
            }
            let sends = match kind {
                BodyKind::RestSend => Some(true),
                BodyKind::JsonRpc => self
                    .method
                    .map(|m| m.is_some_and(|(op, _)| op.sends_message())),
            };
            match sends {
                // Minting rewrites the body: only a complete, valid document.
                Some(true) if end => {
                    return Some(Verdict::Mint(MintSite {
                        open: self.message_open.unwrap_or(close),
                        close,
                        empty,
                        key: if self.message_snake_case {
                            "context_id"
                        } else {
                            "contextId"
                        },
                    }))
                }
                Some(true) => return None,
                Some(false) => {}
                None if end => return Some(Verdict::Absent),
                None => return None,
            }
        }
        if let Some((op, version)) = op {
            if let Some(field) = op.task_id_field(version) {
                let candidate = match field {
                    TaskIdField::Id => &self.params_id,
                    TaskIdField::TaskId => &self.params_task_id,
                };
                match candidate {
                    Candidate::Valid(t) => return Some(Verdict::Task(t.clone())),
                    Candidate::Invalid if params_done => return Some(Verdict::InvalidValue),
                    _ => {}
                }
            }
            if op == Operation::ListTasks
                && self.params_context == Candidate::Invalid
                && params_done
            {
                return Some(Verdict::InvalidValue);
            }
            if params_done {
                return Some(Verdict::Absent);
            }
        } else if self.method == Some(None) && params_done {
            return Some(Verdict::Absent);
        }
        if end {
            if self.message_context == Candidate::Invalid {
                return Some(Verdict::InvalidValue);
            }
            return Some(Verdict::Absent);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tables_line_up() {
        assert_eq!(RPC_PATHS.len(), RPC_FIELDS.len());
        assert_eq!(REST_PATHS.len(), REST_FIELDS.len());
    }
}
