//! Task ids that carry their context: version 1 of the format.
//!
//! An agent that mints its task ids in this format lets any gateway route a
//! task-only call (`tasks/get`, cancel, resubscribe, push configs, a
//! follow-up by taskId) to the replica that holds the task, with no store
//! of learned tasks: the id itself names the contextId the task was filed
//! under, so the call gets exactly the header value its conversation's
//! turns get.
//!
//! ```text
//! c1.<kind><context>.<random>.<check>
//! ```
//!
//! - `c1.`: the format and its version;
//! - `<kind><context>`: the contextId, losslessly. `u` and the 16 bytes of
//!   a canonical lower-case UUID in unpadded base64url (22 characters), or
//!   `s` and the contextId's UTF-8 bytes in unpadded base64url for any
//!   other contextId;
//! - `<random>`: 16 random bytes in unpadded base64url (22 characters), so
//!   every task of a context gets its own id;
//! - `<check>`: FNV-1a (32 bits) over every byte before the last `.`, big
//!   endian, in unpadded base64url (6 characters). An id that merely looks
//!   like the format (a foreign id that happens to start with `c1.`) fails
//!   it, except by a 1 in 2^32 chance, and is routed as any other id.
//!
//! Every character is URL-unreserved (`A-Z a-z 0-9 - _ .`), so the id goes
//! into REST paths as it is. For a minted contextId the id is 56
//! characters. Base64url is decoded strictly (no padding, no unused bits
//! set), so one id has one reading.
//!
//! Randomness is the agent's: this module only formats (`encode`, for the
//! tests and as the reference of the format) and reads (`context_of`).

/// The prefix of every version 1 id.
pub const PREFIX: &str = "c1.";

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The contextId a task id of this format carries, if `task_id` is one
/// (prefix, shape, strict base64url, check) and the contextId is usable
/// (`verdict::usable_value` with `max_value_bytes`). `None` for every other
/// id: it is then routed as before, by learned tasks.
pub fn context_of(task_id: &str, max_value_bytes: usize) -> Option<String> {
    let rest = task_id.strip_prefix(PREFIX)?;
    let (signed, check) = task_id.rsplit_once('.')?;
    if check.len() != 6 || decode_b64(check)? != fnv1a(signed.as_bytes()).to_be_bytes() {
        return None;
    }
    let mut parts = rest.split('.');
    let (Some(context), Some(random), Some(_check), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if random.len() != 22 || decode_b64(random)?.len() != 16 {
        return None;
    }
    let context = match context.as_bytes().split_first() {
        Some((b'u', uuid)) if uuid.len() == 22 => {
            let bytes: [u8; 16] = decode_b64(std::str::from_utf8(uuid).ok()?)?
                .try_into()
                .ok()?;
            crate::mint::format_uuid(&bytes)
        }
        Some((b's', text)) => {
            String::from_utf8(decode_b64(std::str::from_utf8(text).ok()?)?).ok()?
        }
        _ => return None,
    };
    crate::verdict::usable_value(&context, max_value_bytes).then_some(context)
}

/// The version 1 task id for `context_id` with these 16 random bytes.
pub fn encode(context_id: &str, random: &[u8; 16]) -> String {
    let mut out = String::from(PREFIX);
    match parse_uuid(context_id) {
        Some(bytes) => {
            out.push('u');
            encode_b64(&bytes, &mut out);
        }
        None => {
            out.push('s');
            encode_b64(context_id.as_bytes(), &mut out);
        }
    }
    out.push('.');
    encode_b64(random, &mut out);
    let check = fnv1a(out.as_bytes()).to_be_bytes();
    out.push('.');
    encode_b64(&check, &mut out);
    out
}

/// FNV-1a, 32 bits.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The 16 bytes of a canonical lower-case hyphenated UUID (any version).
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0usize;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        let byte = out.get_mut(nibbles / 2)?;
        *byte = (*byte << 4) | v;
        nibbles += 1;
    }
    Some(out)
}

fn encode_b64(bytes: &[u8], out: &mut String) {
    let sym = |v: u32| char::from(ALPHABET.get((v & 63) as usize).copied().unwrap_or(b'A'));
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for k in 0..=chunk.len() {
            out.push(sym(n >> (18 - 6 * k)));
        }
    }
}

/// Strict unpadded base64url: every character in the alphabet, no length
/// that leaves a lone character, and the unused low bits of the last
/// character zero.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        // Bits past the last whole byte must be zero.
        if n & (0x00ff_ffff >> (8 * bytes)) != 0 {
            return None;
        }
        for k in 0..bytes {
            out.push((n >> (16 - 8 * k)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn base64url_round_trips_and_is_strict() {
        for n in 0..40usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let mut s = String::new();
            encode_b64(&bytes, &mut s);
            assert_eq!(s.len(), (n * 4).div_ceil(3));
            assert_eq!(decode_b64(&s).unwrap(), bytes);
        }
        assert_eq!(decode_b64("AA").unwrap(), [0]);
        assert!(decode_b64("AB").is_none(), "unused bits set");
        assert!(decode_b64("A").is_none());
        assert!(decode_b64("AA==").is_none());
        assert!(decode_b64("A+").is_none());
        assert!(decode_b64("A/").is_none());
    }

    #[test]
    fn uuids_round_trip_in_22_characters() {
        let ctx = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let id = encode(ctx, &[7; 16]);
        assert_eq!(id.len(), 56, "{id}");
        assert!(id.starts_with("c1.u"));
        assert_eq!(context_of(&id, 256).as_deref(), Some(ctx));
        // Upper case is not canonical: carried byte for byte instead.
        let upper = ctx.to_ascii_uppercase();
        let id = encode(&upper, &[7; 16]);
        assert!(id.starts_with("c1.s"));
        assert_eq!(context_of(&id, 256).as_deref(), Some(upper.as_str()));
    }

    #[test]
    fn a_changed_character_fails_the_check() {
        let id = encode("ctx-1", &[1; 16]);
        for i in PREFIX.len()..id.len() {
            for c in [b'A', b'q', b'-', b'_', b'.'] {
                let mut b = id.clone().into_bytes();
                if b[i] == c {
                    continue;
                }
                b[i] = c;
                let other = String::from_utf8(b).unwrap();
                assert_eq!(context_of(&other, 256), None, "{other}");
            }
        }
    }
}
