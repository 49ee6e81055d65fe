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
    /// The message names its context and a task. The task's learned
    /// context wins when the task is known: the agent holding the task is
    /// the one that can answer, also when the two ids do not match (it
    /// rejects the mismatch). An unknown task routes by the contextId.
    ContextAndTask { context: String, task: String },
    /// Only a task id: route to where that task's context lives.
    Task(String),
    /// A first-turn message: no taskId, and a contextId that is missing,
    /// `null` or `""` (the agents mint their own for those).
    Mint(MintSite),
    /// A gRPC first turn: the Message gets a `context_id` field.
    MintGrpc(GrpcMintSite),
    /// The body names no context and no task.
    Absent,
    /// A contextId or taskId is present but unusable: not a string, or
    /// longer than `max_value_bytes`.
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
    /// The message's own `null` or `""` contextId, whose value the minted
    /// one replaces (a second member would lose to it: the agents keep the
    /// last of a duplicate key). `None`: the member is inserted.
    pub replace: Option<ValueSpan>,
}

/// Where a `null` or `""` value sits in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueSpan {
    /// Absolute offset of its first byte.
    pub at: u64,
    /// 4 for `null`, 2 for `""`.
    pub len: u8,
}

impl ValueSpan {
    /// The bytes the body holds there.
    pub fn bytes(self) -> &'static [u8] {
        if self.len == 4 {
            b"null"
        } else {
            b"\"\""
        }
    }
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
    /// The body will not be read to its end (`max_scan_bytes`, or a host
    /// that shows only part of it): the verdict the bytes read support, if
    /// they name a usable contextId or taskId. Nothing is minted from part
    /// of a body. `may_be_whole`: the host shows no more, and the bytes
    /// read may be all there is (an ext_proc body message not marked the
    /// last); when they hold exactly one whole document or whole frames,
    /// they are decided as a whole body. The core cuts at `max_scan_bytes`
    /// only where the body may go on past it, so there it never is.
    fn cut(&mut self, may_be_whole: bool) -> Option<Verdict>;
}

/// A contextId or taskId as read so far from one place in the body. Each
/// occurrence replaces the one before: the agents' parsers (Python's
/// `json`, protobuf) keep the last of a duplicate key or repeated field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Candidate {
    #[default]
    Missing,
    Valid(String),
    /// `null` or `""` (protobuf: an empty string), which the agents read as
    /// no id; for JSON, where the value sits.
    Empty(Option<ValueSpan>),
    /// Present but unusable: not a string, or longer than `max_value_bytes`.
    Invalid,
}

impl Candidate {
    /// Present with some value (`Empty` included).
    pub fn present(&self) -> bool {
        !matches!(self, Candidate::Missing)
    }
}

/// Whether a contextId or taskId can route: a non-empty string of at most
/// `max` bytes. Every binding and the response learner use this one rule;
/// any such string becomes a valid header value through `field_value`.
pub fn usable_value(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max
}

/// The header value for a contextId: the id itself when it is already a
/// valid HTTP field value that every HTTP/1.1 and HTTP/2 implementation
/// takes as it is (visible ASCII, with spaces only inside), else the id
/// percent-encoded. HTTP forbids leading or trailing whitespace and control
/// characters in a field value (RFC 9110 section 5.5, RFC 9113 section
/// 8.2.1), and HTTP/2 upstreams built on Python's `h2` (hypercorn) reset the
/// connection for them; bytes above 0x7F are allowed but not everywhere.
///
/// Encoding: every byte outside `!`..=`~` (so every space, control
/// character and UTF-8 byte of a non-ASCII character), and `%` itself,
/// becomes `%XX` (upper-case hex). Since `%` is always encoded when any
/// byte is, two different ids never share a value, and the same id always
/// gives the same value, so its turns hash alike.
pub fn field_value(id: &str) -> std::borrow::Cow<'_, str> {
    let bytes = id.as_bytes();
    let plain = |b: u8| (0x21..=0x7e).contains(&b) && b != b'%';
    let inner_space_ok =
        bytes.first().is_some_and(|&b| plain(b)) && bytes.last().is_some_and(|&b| plain(b));
    if inner_space_ok && bytes.iter().all(|&b| plain(b) || b == b' ') {
        return std::borrow::Cow::Borrowed(id);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Where a minted contextId goes in a gRPC request: a `context_id` field
/// appended to the last occurrence of the send's Message, which sits
/// directly in the frame's top-level message in both versions.
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

#[cfg(test)]
mod tests {
    use super::field_value;

    #[test]
    fn field_values_are_the_id_or_its_percent_encoding() {
        for plain in [
            "ctx-1",
            "9f1c2e4a-5b6d-4c8e-a0f1-23456789abcd",
            "a b",
            "a  b",
            "~!*",
        ] {
            assert_eq!(field_value(plain), plain);
        }
        for (id, want) in [
            (" ctx", "%20ctx"),
            ("ctx ", "ctx%20"),
            (" ", "%20"),
            ("a\tb", "a%09b"),
            ("a\nb", "a%0Ab"),
            ("a\0", "a%00"),
            ("a\u{7f}", "a%7F"),
            ("ctx-\u{e9}", "ctx-%C3%A9"),
            // `%` is encoded whenever anything is, and on its own too, so
            // no two ids share a value.
            ("100%", "100%25"),
            ("%20ctx", "%2520ctx"),
            (" a%", "%20a%25"),
        ] {
            assert_eq!(field_value(id), want, "{id:?}");
        }
        // Every encoded value is visible ASCII only.
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain(['\u{e9}', '\u{1f600}'])
            .collect();
        assert!(field_value(&all)
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b)));
    }
}
