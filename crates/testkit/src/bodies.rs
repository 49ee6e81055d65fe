//! A2A JSON bodies: the benchmark grid (1, 64 and 512 KiB `message/send`
//! bodies, the contextId first or last) and the small bodies tests send.

pub const CONTEXT_ID: &str = "9f1c2e4a-5b6d-4c8e-a0f1-23456789abcd";

/// The task id the benchmark's upstream (envoy/bench/upstream.yaml) names in
/// its answer to request `n`, the request id in UUID form: every answer a
/// new task, all ids of one length.
pub fn bench_task_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// Message text as JSON carries it. `Dense` has an escape every ~33 bytes
/// (quotes and line breaks), a pessimistic case for span skipping; `Prose`
/// has paragraphs of ~450 bytes with one quoted phrase and a blank line.
#[derive(Clone, Copy)]
pub enum Text {
    Dense,
    Prose,
}

fn text_of_len(kind: Text, len: usize) -> String {
    let unit = match kind {
        Text::Dense => r#"The agent should summarise the \"quarterly report\" and list open questions for the next turn.\n"#,
        Text::Prose => concat!(
            "Before we continue, please check the figures in the attached summary against the ",
            "ledger export from last month. The totals for the northern region looked too high ",
            "to me, in particular the line marked \\\"adjustments\\\", which nobody could explain in the ",
            "review meeting. If the difference comes from currency conversion, say so and show ",
            "the rate you used; otherwise list the entries that account for it.\\n\\n"
        ),
    };
    let mut text = String::with_capacity(len + unit.len());
    while text.len() < len {
        text.push_str(unit);
    }
    // Cut on an ASCII boundary that does not split an escape.
    let mut cut = len.min(text.len());
    while text[..cut].ends_with('\\') {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

/// A JSON-RPC 0.3 `message/send` body of about `size` bytes.
pub fn body(size: usize, kind: Text, context_first: bool) -> Vec<u8> {
    let envelope = |text: &str| {
        let (before, after) = if context_first {
            (format!(r#""contextId":"{CONTEXT_ID}","#), String::new())
        } else {
            (String::new(), format!(r#","contextId":"{CONTEXT_ID}""#))
        };
        format!(
            r#"{{"jsonrpc":"2.0","id":"b7d5","method":"message/send","params":{{"configuration":{{"blocking":true,"acceptedOutputModes":["text/plain"]}},"message":{{{before}"kind":"message","messageId":"1c0e","role":"user","parts":[{{"kind":"text","text":"{text}"}}]{after}}}}}}}"#
        )
    };
    let overhead = envelope("").len();
    let doc = envelope(&text_of_len(kind, size.saturating_sub(overhead)));
    doc.into_bytes()
}

/// One body of the benchmarks' grid, with its labels.
pub struct Case {
    pub size: &'static str,
    pub text: &'static str,
    pub position: &'static str,
    pub body: Vec<u8>,
}

/// Every body the benchmarks time: 1, 64 and 512 KiB, dense and prose text,
/// the contextId first and last.
pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    for (size, bytes) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("512KiB", 512 * 1024)] {
        for (text, kind) in [("dense", Text::Dense), ("prose", Text::Prose)] {
            for (position, context_first) in [("first", true), ("last", false)] {
                let body = body(bytes, kind, context_first);
                all.push(Case {
                    size,
                    text,
                    position,
                    body,
                });
            }
        }
    }
    all
}

/// A JSON-RPC 0.3 `message/send` naming context `ctx`.
pub fn rpc03(ctx: &str, text: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":"1","method":"message/send","params":{{"configuration":{{"blocking":true}},"message":{{"contextId":"{ctx}","kind":"message","messageId":"m-1","parts":[{{"kind":"text","text":"{text}"}}],"role":"user"}}}}}}"#
    )
}

/// A JSON-RPC 1.0 `SendMessage` first turn: neither contextId nor taskId.
pub fn rpc10_first_turn(text: &str) -> String {
    format!(
        r#"{{"method":"SendMessage","params":{{"message":{{"messageId":"m-1","role":"ROLE_USER","parts":[{{"text":"{text}"}}]}},"configuration":{{}}}},"id":"7","jsonrpc":"2.0"}}"#
    )
}

/// A JSON-RPC `message/send` body with one text part and a contextId, both
/// given as the raw bytes between their quotes.
pub fn raw_message(text: &[u8], context_id: &[u8]) -> Vec<u8> {
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"parts":[{"kind":"text","text":""#.to_vec();
    body.extend_from_slice(text);
    body.extend_from_slice(br#""}],"role":"user","contextId":""#);
    body.extend_from_slice(context_id);
    body.extend_from_slice(br#""}}}"#);
    body
}
