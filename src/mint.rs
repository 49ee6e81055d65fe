//! First-turn contextId: a fresh UUID v4 written into the message object.
//!
//! The first message of a conversation usually has no contextId, so Envoy
//! has no key to hash and the agent replica it lands on mints one that hashes
//! elsewhere. Giving the message a contextId before routing makes the first
//! turn land where every later turn will. All four official A2A SDKs adopt a
//! client-supplied contextId (a2a-wire reference, section 1.4; spec 1.0
//! section 3.4.1: agents MAY accept it).

use crate::extract::MintSite;

/// Formats 16 random bytes as an RFC 9562 version 4 UUID.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

/// The body with `"<key>":"<context_id>"` inserted as the first member of
/// the message object at `site`. `None` when `body` does not have the
/// message where the scanner saw it (the caller then leaves the body alone).
/// `context_id` must need no JSON escaping (a UUID does not).
pub fn insert_context_id(body: &[u8], site: &MintSite, context_id: &str) -> Option<Vec<u8>> {
    let open = usize::try_from(site.open).ok()?;
    let close = usize::try_from(site.close).ok()?;
    if open == 0
        || open > close
        || body.get(open - 1) != Some(&b'{')
        || body.get(close) != Some(&b'}')
    {
        return None;
    }
    let empty = body.get(open..close)?.iter().all(u8::is_ascii_whitespace);
    let (head, tail) = body.split_at(open);
    let mut out = Vec::with_capacity(body.len() + site.key.len() + context_id.len() + 6);
    out.extend_from_slice(head);
    out.push(b'"');
    out.extend_from_slice(site.key.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(context_id.as_bytes());
    out.push(b'"');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(tail);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(body: &str, key: &'static str) -> MintSite {
        // The message object is the first '{' after "message" or "request".
        let at = body
            .find("\"message\"")
            .or_else(|| body.find("\"request\""))
            .unwrap();
        let open = body[at..].find('{').unwrap() + at + 1;
        let mut depth = 1;
        let mut close = open;
        for (i, c) in body[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        MintSite {
            open: open as u64,
            close: close as u64,
            key,
        }
    }

    #[test]
    fn uuid_has_version_and_variant_bits() {
        let u = uuid_v4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let u = uuid_v4([0; 16]);
        assert_eq!(u, "00000000-0000-4000-8000-000000000000");
        let u = uuid_v4(*b"\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef");
        assert_eq!(u, "01234567-89ab-4def-8123-456789abcdef");
    }

    #[test]
    fn inserted_as_first_member_and_the_rest_is_unchanged() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"role":"user","parts":[{"kind":"text","text":"hi"}],"messageId":"m1"}}}"#;
        let out = insert_context_id(body.as_bytes(), &site(body, "contextId"), "c-1").unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            body.replace(r#""message":{"#, r#""message":{"contextId":"c-1","#)
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["params"]["message"]["contextId"], "c-1");
        assert_eq!(v["params"]["message"]["messageId"], "m1");
    }

    #[test]
    fn empty_message_gets_no_trailing_comma() {
        for body in [r#"{"message":{}}"#, "{\"message\":{ \n\t }}"] {
            let out = insert_context_id(body.as_bytes(), &site(body, "contextId"), "c").unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["message"]["contextId"], "c");
        }
    }

    #[test]
    fn snake_case_key_for_the_rest_request_form() {
        let body = r#"{"request":{"message_id":"m","role":"ROLE_USER","content":[{"text":"x"}]}}"#;
        let out = insert_context_id(body.as_bytes(), &site(body, "context_id"), "c").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request"]["context_id"], "c");
    }

    #[test]
    fn refuses_a_site_that_does_not_match_the_body() {
        let body = br#"{"message":{"a":1}}"#;
        let good = MintSite {
            open: 12,
            close: 17,
            key: "contextId",
        };
        assert!(insert_context_id(body, &good, "c").is_some());
        for bad in [
            MintSite { open: 0, ..good },
            MintSite { open: 11, ..good },
            MintSite { close: 16, ..good },
            MintSite { close: 99, ..good },
            MintSite {
                open: 19,
                close: 18,
                ..good
            },
        ] {
            assert_eq!(insert_context_id(body, &bad, "c"), None, "{bad:?}");
        }
    }
}
