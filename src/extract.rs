//! From scanner events to a routing verdict.
//!
//! The extractor watches the body paths of one binding (see `a2a`) and
//! decides as early as the bytes allow: a valid contextId in the message
//! ends the scan at once; a message that closes with only a taskId asks for
//! the learned context of that task; a first-turn message (neither id) is
//! minted only once the whole document is known to be valid JSON, so that a
//! body the upstream would reject is never altered.

use crate::a2a::{
    Field, Operation, TaskIdField, Version, REST_FIELDS, REST_PATHS, RPC_FIELDS, RPC_PATHS,
};
use crate::scan::{Event, Flow, Limits, Progress, Scalar, ScanError, Scanner};

/// What the body says about routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The message (or a 1.0 `ListTasks`) names its context.
    Context(String),
    /// Only a task id: route to where that task's context lives.
    Task(String),
    /// A first-turn message with neither contextId nor taskId.
    Mint(MintSite),
    /// A gRPC first turn: the Message gets a `context_id` field.
    MintGrpc(crate::grpc::MintSite),
    /// The body names no context and no task.
    Absent,
    /// A contextId or taskId is present but unusable as a header value
    /// (empty, too long, a control character, not a string).
    InvalidValue,
}

/// Where a minted contextId goes: inside the message object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MintSite {
    /// Absolute body offset just after the message's `{`.
    pub open: u64,
    /// Absolute body offset of the message's `}`.
    pub close: u64,
    /// Key spelling matching the message: `context_id` for the 0.3 REST
    /// `request` form (snake_case fields), `contextId` everywhere else.
    pub key: &'static str,
}

/// Where the extractor stands after a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No verdict yet: send more body.
    NeedMore,
    /// Decided; the rest of the body is not needed.
    Decided(Verdict),
    /// The body is not valid JSON.
    InvalidJson(ScanError),
    /// The gRPC body is compressed or not valid protobuf.
    InvalidGrpc(crate::grpc::Invalid),
}

/// A request body reader of one binding: JSON (`Extractor`) or gRPC
/// (`grpc::RequestExtractor`).
pub trait BodyReader {
    /// Feeds the next body bytes.
    fn feed(&mut self, chunk: &[u8]) -> Step;
    /// The body ended: decide with what was read.
    fn finish(&mut self) -> Step;
}

/// Which body shape is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    JsonRpc,
    RestSend,
}

/// A contextId or taskId as read so far from one place in the body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Candidate {
    #[default]
    Missing,
    Valid(String),
    Invalid,
}

impl Candidate {
    /// The first usable value wins; an unusable one is remembered only so
    /// that the request is counted as carrying an invalid value.
    pub(crate) fn offer(&mut self, value: Result<String, ()>) {
        match (&*self, value) {
            (Candidate::Valid(_), _) => {}
            (_, Ok(v)) => *self = Candidate::Valid(v),
            (_, Err(())) => *self = Candidate::Invalid,
        }
    }
}

#[derive(Debug, Default)]
struct Found {
    /// `None`: no `method` key yet; `Some(None)`: not an A2A method.
    method: Option<Option<(Operation, Version)>>,
    params_closed: bool,
    message_open: Option<u64>,
    message_close: Option<u64>,
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

/// Whether a contextId or taskId can be a header value: a non-empty string
/// of at most `max` bytes with no control character (Envoy would reject
/// CR/LF/NUL; the others make unreadable logs and keys). Every binding and
/// the response learner use this one rule.
pub(crate) fn usable_value(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
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
            Event::Close { path, offset } => {
                match field_of(kind, path) {
                    Some((Field::Message, _))
                        if self.message_close.is_none() && self.message_open.is_some() =>
                    {
                        self.message_close = Some(offset);
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
        if let Some(close) = self.message_close {
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
