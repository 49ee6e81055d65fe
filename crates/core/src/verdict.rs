//! What a request body says about routing, in the words every binding
//! shares: the verdict (a context, a task to look up, a first turn to
//! mint, nothing usable) and where a minted contextId would go. The
//! bindings (`json::request`, `grpc::request`) produce these; the stream
//! (`stream`) acts on them.

use crate::json::scan::ScanError;
use crate::proto::wire::Invalid;

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
    MintGrpc(GrpcMintSite),
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
    /// The message has no member (so the inserted one takes no comma).
    pub empty: bool,
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
    InvalidGrpc(Invalid),
}

/// A request body reader of one binding: JSON (`Extractor`) or gRPC
/// (`grpc::RequestExtractor`).
pub trait BodyReader {
    /// Feeds the next body bytes.
    fn feed(&mut self, chunk: &[u8]) -> Step;
    /// The body ended: decide with what was read.
    fn finish(&mut self) -> Step;
}

/// A contextId or taskId as read so far from one place in the body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Candidate {
    #[default]
    Missing,
    Valid(String),
    Invalid,
}

impl Candidate {
    /// The first usable value wins; an unusable one is remembered only so
    /// that the request is counted as carrying an invalid value.
    pub fn offer(&mut self, value: Result<String, ()>) {
        match (&*self, value) {
            (Candidate::Valid(_), _) => {}
            (_, Ok(v)) => *self = Candidate::Valid(v),
            (_, Err(())) => *self = Candidate::Invalid,
        }
    }
}

/// Whether a contextId or taskId can be a header value: a non-empty string
/// of at most `max` bytes with no control character (Envoy would reject
/// CR/LF/NUL; the others make unreadable logs and keys). Every binding and
/// the response learner use this one rule.
pub fn usable_value(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// Where a minted contextId goes in a gRPC request: a `context_id` field
/// put first in the send's Message, which sits directly in the frame's
/// top-level message in both versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcMintSite {
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
