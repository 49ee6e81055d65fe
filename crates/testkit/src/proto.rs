//! A small protobuf encoder and reader for building and checking gRPC
//! frames of A2A messages.

/// The v1.0 and v0.3 A2A gRPC service paths.
pub const V1: &str = "/lf.a2a.v1.A2AService";
pub const V0: &str = "/a2a.v1.A2AService";

pub fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

pub fn tag(field: u32, wire: u8) -> Vec<u8> {
    varint((u64::from(field) << 3) | u64::from(wire))
}

/// A length-delimited field.
pub fn len(field: u32, bytes: &[u8]) -> Vec<u8> {
    [tag(field, 2), varint(bytes.len() as u64), bytes.to_vec()].concat()
}

/// A varint field.
pub fn uint(field: u32, v: u64) -> Vec<u8> {
    [tag(field, 0), varint(v)].concat()
}

pub fn fixed64(field: u32) -> Vec<u8> {
    [tag(field, 1), vec![0x80; 8]].concat()
}

pub fn fixed32(field: u32) -> Vec<u8> {
    [tag(field, 5), vec![0x0a; 4]].concat()
}

/// An uncompressed gRPC frame around `message`.
pub fn frame(message: &[u8]) -> Vec<u8> {
    [
        vec![0],
        (message.len() as u32).to_be_bytes().to_vec(),
        message.to_vec(),
    ]
    .concat()
}

/// A Message: message_id = 1, context_id = 2, task_id = 3, role = 4,
/// parts/content = 5 (one text part).
pub fn message(context: Option<&str>, task: Option<&str>, text: &str) -> Vec<u8> {
    [
        len(1, b"m-1"),
        context.map(|c| len(2, c.as_bytes())).unwrap_or_default(),
        task.map(|t| len(3, t.as_bytes())).unwrap_or_default(),
        uint(4, 1),
        len(5, &len(1, text.as_bytes())),
    ]
    .concat()
}

/// A SendMessageRequest frame: v0.3 `request` = 1, v1.0 `tenant` = 1,
/// `message` = 2; an empty configuration after it, last in the frame, as
/// a2a-sdk sends it.
pub fn send(service: &str, msg: &[u8]) -> Vec<u8> {
    if service == V0 {
        frame(&[len(1, msg), len(2, b"")].concat())
    } else {
        frame(&[len(2, msg), len(3, b"")].concat())
    }
}

fn take_varint(m: &mut &[u8]) -> u64 {
    let (mut v, mut s) = (0u64, 0);
    loop {
        let b = m[0];
        *m = &m[1..];
        v |= u64::from(b & 0x7f) << s;
        s += 7;
        if b & 0x80 == 0 {
            return v;
        }
    }
}

/// Every field of a message: number, wire type, and the value's bytes as
/// they stand (a varint's own bytes, minimal or not). A plain reference
/// decoder with none of the filter's rules, for checks.
pub fn fields(mut m: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !m.is_empty() {
        let tag = take_varint(&mut m);
        let wire = (tag & 7) as u8;
        let value = match wire {
            0 => {
                let before = m;
                take_varint(&mut m);
                before[..before.len() - m.len()].to_vec()
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let v = m[..n].to_vec();
                m = &m[n..];
                v
            }
            2 => {
                let n = take_varint(&mut m) as usize;
                let v = m[..n].to_vec();
                m = &m[n..];
                v
            }
            _ => panic!("wire type {wire}"),
        };
        out.push((tag >> 3, wire, value));
    }
    out
}

/// The first length-delimited field `number` of a message.
pub fn field(m: &[u8], number: u64) -> Option<Vec<u8>> {
    fields(m)
        .into_iter()
        .find(|(n, w, _)| *n == number && *w == 2)
        .map(|(_, _, v)| v)
}

/// The message of a single-frame body, checking the frame length.
pub fn unframe(body: &[u8]) -> &[u8] {
    assert_eq!(body[0], 0, "uncompressed frame");
    let n = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(body.len(), 5 + n, "frame length matches the bytes");
    &body[5..]
}

/// The context_id the Message of a send frame carries.
pub fn send_context(service: &str, body: &[u8]) -> Option<String> {
    let message_field = if service == V0 { 1 } else { 2 };
    let msg = field(unframe(body), message_field)?;
    field(&msg, 2).map(|c| String::from_utf8(c).unwrap())
}
