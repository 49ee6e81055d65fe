//! From scanner events to a routing verdict.
//!
//! The extractor watches the body paths of one binding (the tables below)
//! and reads every key the way the agents' parsers do: the last occurrence
//! of a duplicate key wins (Python's `json`, serde_json), and a repeated
//! `params` or `message` object replaces everything the earlier one named.
//! So the verdict waits for the end of the body: a contextId, a taskId, a
//! task-only call or a first turn to mint. A first turn is minted only once
//! the whole body is known to be one valid JSON document, trailing bytes
//! included, so that a body the upstream would reject is never altered.
//! When the body is not read to its end (`max_scan_bytes`), the ids read so
//! far still route it (`Extractor::cut`), and nothing is minted.
//!
//! With `decide_at: first_id` ([`Extractor::decide_early`]) the verdict
//! comes with the first usable contextId of the message (with the message's
//! taskId if one came before it), or a task call's task id once the method
//! is known, and the scanner stops there. A first turn is still only known
//! at the end.

use super::scan::{Event, Flow, Limits, Progress, Scalar, Scanner};
use crate::a2a::{Operation, TaskIdField, Version};
use crate::verdict::{usable_value, BodyReader, Candidate, MintSite, Step, ValueSpan, Verdict};

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

/// The message object and what it names, as of its last occurrence.
#[derive(Debug, Default)]
struct MessageFound {
    /// Offset just after its `{`; `None` while no object is open or seen.
    open: Option<u64>,
    /// Its `}` offset, and whether it had no member.
    close: Option<(u64, bool)>,
    snake_case: bool,
    /// `contextId` and `context_id` kept apart, with which came last. A
    /// ProtoJSON parser (a2a-sdk 1.x for JSON-RPC 1.0 and both REST
    /// versions) takes the later spelling; a2a-sdk's 0.3 JSON-RPC model
    /// (pydantic, by alias) takes `contextId` whatever the order.
    context: Candidate,
    context_snake: Candidate,
    context_snake_last: bool,
    task: Candidate,
    task_snake: Candidate,
    task_snake_last: bool,
}

/// Which of two spellings the agent reads.
fn spelling<'a>(
    camel: &'a Candidate,
    snake: &'a Candidate,
    snake_last: bool,
    camel_first: bool,
) -> &'a Candidate {
    let snake_wins = if camel_first {
        !camel.present()
    } else {
        !camel.present() || (snake_last && snake.present())
    };
    if snake_wins {
        snake
    } else {
        camel
    }
}

impl MessageFound {
    /// The contextId the agent reads; `camel_first`: the 0.3 JSON-RPC rule.
    fn context(&self, camel_first: bool) -> &Candidate {
        spelling(
            &self.context,
            &self.context_snake,
            self.context_snake_last,
            camel_first,
        )
    }

    fn task(&self, camel_first: bool) -> &Candidate {
        spelling(
            &self.task,
            &self.task_snake,
            self.task_snake_last,
            camel_first,
        )
    }
}

/// What `params` (JSON-RPC) or the body (REST) names, as of the last
/// occurrence of each key.
#[derive(Debug, Default)]
struct ParamsFound {
    message: MessageFound,
    context: Candidate,
    id: Candidate,
    task_id: Candidate,
}

#[derive(Debug, Default)]
struct Found {
    /// `None`: no `method` key yet; `Some(None)`: not an A2A method.
    method: Option<Option<(Operation, Version)>>,
    params: ParamsFound,
}

/// Reads one request body and decides its verdict once the body has ended
/// (see the module documentation).
pub struct Extractor {
    scanner: Scanner<'static>,
    kind: BodyKind,
    max_value_bytes: usize,
    found: Found,
    /// The bytes fed so far end with a complete document (whitespace may
    /// follow; anything else would fail it).
    complete: bool,
    /// Decide at the first usable id (`decide_at: first_id`).
    early: bool,
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
            complete: false,
            early: false,
        }
    }

    /// Decide at the first usable id instead of the end of the body
    /// (`decide_at: first_id`); off in a new or reset extractor.
    pub fn decide_early(&mut self, early: bool) {
        self.early = early;
    }

    /// Ready for the next body, as if new (the scanner keeps what a new
    /// one would reserve).
    pub fn reset(&mut self) {
        self.scanner.reset();
        self.found = Found::default();
        self.complete = false;
        self.early = false;
    }

    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// The `max_value_bytes` it was made with.
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// Body bytes read so far.
    pub fn offset(&self) -> u64 {
        self.scanner.offset()
    }

    /// Feeds the next body bytes. The verdict waits for the end of the
    /// body (`finish`): a later duplicate key can still change it, and
    /// bytes after the document can still make it invalid. Invalid JSON is
    /// reported at once. Deciding early, the first usable id is the
    /// verdict, and nothing after it is read.
    pub fn feed(&mut self, chunk: &[u8]) -> Step {
        let kind = self.kind;
        let max = self.max_value_bytes;
        let early = self.early;
        let found = &mut self.found;
        let mut decided = None;
        let progress = self.scanner.feed(chunk, &mut |event| {
            let scalar = matches!(event, Event::Scalar { .. });
            found.record(kind, max, event);
            // Only a string (an id, or the method) can complete a verdict.
            if early && scalar {
                decided = found.decide_early();
                if decided.is_some() {
                    return Flow::Stop;
                }
            }
            Flow::Continue
        });
        self.complete = progress == Progress::Done;
        match (progress, decided) {
            (Progress::Failed(e), _) => Step::InvalidJson(e),
            (_, Some(verdict)) => Step::Decided(verdict),
            (Progress::NeedMore | Progress::Done | Progress::Stopped, None) => Step::NeedMore,
        }
    }

    /// The body ended: decide with what was read.
    pub fn finish(&mut self) -> Step {
        match self.scanner.finish() {
            Progress::Failed(e) => Step::InvalidJson(e),
            _ => Step::Decided(self.found.decide(self.kind)),
        }
    }

    /// The verdict from a body read only in part (see `BodyReader::cut`).
    /// When the bytes read may be the whole body and already hold the whole
    /// document (an ext_proc body message that ends with it but is not
    /// marked the last), it is decided as a whole one, first turns
    /// included: only bytes the filter never sees could still make it
    /// invalid.
    pub fn cut(&self, may_be_whole: bool) -> Option<Verdict> {
        if self.complete && may_be_whole {
            return Some(self.found.decide(self.kind));
        }
        self.found.decide_partial()
    }
}

impl BodyReader for Extractor {
    fn feed(&mut self, chunk: &[u8]) -> Step {
        Extractor::feed(self, chunk)
    }

    fn finish(&mut self) -> Step {
        Extractor::finish(self)
    }

    fn cut(&mut self, may_be_whole: bool) -> Option<Verdict> {
        Extractor::cut(self, may_be_whole)
    }
}

fn field_of(kind: BodyKind, path: usize) -> Option<(Field, bool)> {
    let (fields, paths) = match kind {
        BodyKind::JsonRpc => (RPC_FIELDS, RPC_PATHS),
        BodyKind::RestSend => (REST_FIELDS, REST_PATHS),
    };
    let field = *fields.get(path)?;
    let spelled = paths.get(path)?;
    let snake = match field {
        // The 0.3 REST `request` form has snake_case fields.
        Field::Message => spelled.first() == Some(&"request"),
        // `context_id`, `task_id`: the ProtoJSON field names.
        _ => spelled.last().is_some_and(|k| k.contains('_')),
    };
    Some((field, snake))
}

/// A scalar (or `None` for a container) at an id's place.
fn candidate(value: Option<Scalar<'_>>, end: u64, max: usize) -> Candidate {
    match value {
        Some(Scalar::Str("")) => Candidate::Empty(Some(ValueSpan {
            at: end.saturating_sub(2),
            len: 2,
        })),
        Some(Scalar::Null) => Candidate::Empty(Some(ValueSpan {
            at: end.saturating_sub(4),
            len: 4,
        })),
        Some(Scalar::Str(s)) if usable_value(s, max) => Candidate::Valid(s.to_string()),
        // A container, a number or boolean, a string too long or unusable.
        _ => Candidate::Invalid,
    }
}

impl Found {
    fn record(&mut self, kind: BodyKind, max: usize, event: Event<'_>) {
        let (path, scalar, end) = match event {
            Event::Scalar { path, value, end } => (path, Some(value), end),
            Event::Open {
                path,
                offset,
                object,
            } => {
                match field_of(kind, path) {
                    // A new occurrence replaces all that the last one named.
                    Some((Field::Params, _)) => self.params = ParamsFound::default(),
                    Some((Field::Message, snake)) => {
                        self.params.message = MessageFound {
                            open: object.then_some(offset),
                            snake_case: snake,
                            ..MessageFound::default()
                        };
                    }
                    _ => {}
                }
                (path, None, offset)
            }
            Event::Close {
                path,
                offset,
                empty,
            } => {
                if let Some((Field::Message, _)) = field_of(kind, path) {
                    let message = &mut self.params.message;
                    if message.open.is_some() {
                        message.close = Some((offset, empty));
                    }
                }
                return;
            }
        };
        let Some((field, snake)) = field_of(kind, path) else {
            return;
        };
        let params = &mut self.params;
        match field {
            Field::Method => {
                if scalar.is_some() {
                    self.method = Some(match scalar {
                        Some(Scalar::Str(name)) => crate::a2a::rpc_method(name),
                        _ => None,
                    });
                } else {
                    // An object or array as the method: no A2A method.
                    self.method = Some(None);
                }
            }
            // A scalar where an object belongs: nothing below it.
            Field::Params if scalar.is_some() => self.params = ParamsFound::default(),
            Field::Message if scalar.is_some() => params.message = MessageFound::default(),
            Field::Params | Field::Message => {}
            Field::MessageContextId if snake => {
                params.message.context_snake = candidate(scalar, end, max);
                params.message.context_snake_last = true;
            }
            Field::MessageContextId => {
                params.message.context = candidate(scalar, end, max);
                params.message.context_snake_last = false;
            }
            Field::MessageTaskId if snake => {
                params.message.task_snake = candidate(scalar, end, max);
                params.message.task_snake_last = true;
            }
            Field::MessageTaskId => {
                params.message.task = candidate(scalar, end, max);
                params.message.task_snake_last = false;
            }
            Field::ParamsContextId => params.context = candidate(scalar, end, max),
            Field::ParamsId => params.id = candidate(scalar, end, max),
            Field::ParamsTaskId => params.task_id = candidate(scalar, end, max),
        }
    }

    fn operation(&self) -> Option<(Operation, Version)> {
        self.method.flatten()
    }

    /// Whether `contextId` wins over `context_id` whatever their order:
    /// a2a-sdk's 0.3 JSON-RPC model does that; ProtoJSON takes the later.
    fn camel_first(&self) -> bool {
        matches!(self.operation(), Some((_, Version::V0)))
    }

    /// The verdict of a whole, valid document, read the way the agents
    /// read it: the last occurrence of every key.
    fn decide(&self, kind: BodyKind) -> Verdict {
        let params = &self.params;
        let message = &params.message;
        let op = self.operation();
        if let Some(verdict) = self.decide_partial() {
            return verdict;
        }
        let sends = match kind {
            BodyKind::RestSend => true,
            BodyKind::JsonRpc => op.is_some_and(|(op, _)| op.sends_message()),
        };
        let camel_first = self.camel_first();
        if let (Some(open), Some((close, empty))) = (message.open, message.close) {
            let context = message.context(camel_first);
            let task = message.task(camel_first);
            if matches!(context, Candidate::Invalid) || matches!(task, Candidate::Invalid) {
                return Verdict::InvalidValue;
            }
            // No usable contextId or taskId (`decide_partial` took those):
            // a send is a first turn.
            if sends {
                // Write the minted id where the agent will read it: over
                // the empty value it reads, or as a new member.
                let snake = std::ptr::eq(context, &message.context_snake);
                let (key, replace) = match context {
                    Candidate::Empty(span) if snake => ("context_id", *span),
                    Candidate::Empty(span) => ("contextId", *span),
                    _ if message.snake_case => ("context_id", None),
                    _ => ("contextId", None),
                };
                return Verdict::Mint(MintSite {
                    open,
                    close,
                    empty,
                    key,
                    replace,
                });
            }
        }
        if let Some((op, version)) = op {
            if let Some(field) = op.task_id_field(version) {
                let candidate = match field {
                    TaskIdField::Id => &params.id,
                    TaskIdField::TaskId => &params.task_id,
                };
                if matches!(candidate, Candidate::Invalid) {
                    return Verdict::InvalidValue;
                }
            }
            if op == Operation::ListTasks && matches!(params.context, Candidate::Invalid) {
                return Verdict::InvalidValue;
            }
        }
        if matches!(message.context(camel_first), Candidate::Invalid) {
            return Verdict::InvalidValue;
        }
        Verdict::Absent
    }

    /// The verdict that needs no more of the body than was read: a usable
    /// contextId or taskId where the agents look for one.
    fn decide_partial(&self) -> Option<Verdict> {
        self.by_message_context()
            .or_else(|| self.by_message_task())
            .or_else(|| self.by_task_call())
    }

    /// What `decide_at: first_id` routes by as soon as it is read: the
    /// message's contextId (with its taskId, if that came first), or the
    /// id a task call names. A message's taskId alone waits: a contextId
    /// may follow it.
    fn decide_early(&self) -> Option<Verdict> {
        self.by_message_context().or_else(|| self.by_task_call())
    }

    fn by_message_context(&self) -> Option<Verdict> {
        let message = &self.params.message;
        let camel_first = self.camel_first();
        let Candidate::Valid(context) = message.context(camel_first) else {
            return None;
        };
        Some(match message.task(camel_first) {
            Candidate::Valid(task) => Verdict::ContextAndTask {
                context: context.clone(),
                task: task.clone(),
            },
            _ => Verdict::Context(context.clone()),
        })
    }

    /// A message with a taskId and no contextId (not even an invalid one).
    fn by_message_task(&self) -> Option<Verdict> {
        let message = &self.params.message;
        let camel_first = self.camel_first();
        if !matches!(
            message.context(camel_first),
            Candidate::Missing | Candidate::Empty(_)
        ) {
            return None;
        }
        match message.task(camel_first) {
            Candidate::Valid(task) => Some(Verdict::Task(task.clone())),
            _ => None,
        }
    }

    /// A task call's task id, or the contextId `ListTasks` filters by.
    fn by_task_call(&self) -> Option<Verdict> {
        let params = &self.params;
        let (op, version) = self.operation()?;
        if op == Operation::ListTasks {
            if let Candidate::Valid(c) = &params.context {
                return Some(Verdict::Context(c.clone()));
            }
        }
        let candidate = match op.task_id_field(version)? {
            TaskIdField::Id => &params.id,
            TaskIdField::TaskId => &params.task_id,
        };
        match candidate {
            Candidate::Valid(t) => Some(Verdict::Task(t.clone())),
            _ => None,
        }
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
