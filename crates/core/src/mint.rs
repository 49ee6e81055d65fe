//! First-turn contextId: a fresh UUID v4 written into the message object.
//!
//! The first message of a conversation usually has no contextId, so Envoy
//! has no key to hash and the agent replica it lands on mints one that hashes
//! elsewhere. Giving the message a contextId before routing makes the first
//! turn land where every later turn will. All four official A2A SDKs adopt a
//! client-supplied contextId (A2A 1.0 section 3.4.1: agents MAY accept it).

use crate::verdict::MintSite;

/// Formats 16 random bytes as an RFC 9562 version 4 UUID.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format_uuid(&bytes)
}

/// 16 bytes as a lower-case hyphenated UUID (8-4-4-4-12 hex digits).
pub(crate) fn format_uuid(bytes: &[u8; 16]) -> String {
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

/// One change to a buffered body: the `remove` bytes at offset `at`, as the
/// core read them there, become `insert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splice {
    pub at: u64,
    pub remove: Vec<u8>,
    pub insert: Vec<u8>,
}

/// What the host must do to the request body it holds to give a first
/// turn its contextId: splices in ascending, non-overlapping order, and
/// the `content-length` to set when the request had one.
///
/// The host applies it to the bytes it has buffered, all of which the core
/// has read (a first turn is minted only once the whole document, or the
/// whole first gRPC frame, is known to be valid). `apply` checks every
/// removed byte against the body, so a body that is not the one the core
/// read is never edited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyEdit {
    pub splices: Vec<Splice>,
    /// The new `content-length`, if the request carried one.
    pub content_length: Option<u64>,
}

impl BodyEdit {
    /// How many bytes the body grows by.
    pub fn growth(&self) -> u64 {
        self.splices
            .iter()
            .map(|s| s.insert.len() as u64)
            .sum::<u64>()
            .saturating_sub(self.splices.iter().map(|s| s.remove.len() as u64).sum())
    }

    /// The offset past the last byte the edit touches: the host must hold
    /// at least this much of the body.
    pub fn end(&self) -> u64 {
        self.splices
            .iter()
            .map(|s| s.at + s.remove.len() as u64)
            .max()
            .unwrap_or(0)
    }

    /// The edited body; `None` when `body` does not hold the removed bytes
    /// where the core read them (the caller then leaves the body alone).
    pub fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        let growth = usize::try_from(self.growth()).ok()?;
        let mut out = Vec::with_capacity(body.len().checked_add(growth)?);
        let mut from = 0usize;
        for splice in &self.splices {
            let at = usize::try_from(splice.at).ok()?;
            let end = at.checked_add(splice.remove.len())?;
            if at < from || body.get(at..end)? != splice.remove.as_slice() {
                return None;
            }
            out.extend_from_slice(body.get(from..at)?);
            out.extend_from_slice(&splice.insert);
            from = end;
        }
        out.extend_from_slice(body.get(from..)?);
        Some(out)
    }
}

/// The edit that writes `"<key>":"<context_id>"` as the first member of the
/// JSON message object at `site`, or, when the message has a `null` or `""`
/// contextId, writes `"<context_id>"` in place of that value. `context_id` must need no JSON escaping
/// (a minted UUID does not).
pub fn json_edit(site: &MintSite, context_id: &str) -> BodyEdit {
    let close = Splice {
        at: site.close,
        remove: b"}".to_vec(),
        insert: b"}".to_vec(),
    };
    if let Some(span) = site.replace {
        // The message's `null` or `""` contextId gets the minted value.
        let mut insert = Vec::with_capacity(context_id.len() + 2);
        insert.push(b'"');
        insert.extend_from_slice(context_id.as_bytes());
        insert.push(b'"');
        return BodyEdit {
            splices: vec![
                Splice {
                    at: span.at,
                    remove: span.bytes().to_vec(),
                    insert,
                },
                close,
            ],
            content_length: None,
        };
    }
    let mut insert = Vec::with_capacity(site.key.len() + context_id.len() + 7);
    insert.extend_from_slice(b"{\"");
    insert.extend_from_slice(site.key.as_bytes());
    insert.extend_from_slice(b"\":\"");
    insert.extend_from_slice(context_id.as_bytes());
    insert.push(b'"');
    if !site.empty {
        insert.push(b',');
    }
    BodyEdit {
        splices: vec![
            Splice {
                at: site.open.saturating_sub(1),
                remove: b"{".to_vec(),
                insert,
            },
            // Changes nothing: checks that the message ends where it was read.
            close,
        ],
        content_length: None,
    }
}

/// The body with the contextId inserted (see `json_edit`); `None` when the
/// body does not have the message where the scanner saw it.
pub fn insert_context_id(body: &[u8], site: &MintSite, context_id: &str) -> Option<Vec<u8>> {
    if site.open == 0 || site.open > site.close {
        return None;
    }
    json_edit(site, context_id).apply(body)
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
            empty: body[open..close].trim().is_empty(),
            key,
            replace: None,
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
    fn a_null_or_empty_context_id_gets_the_value_in_place() {
        for (value, len) in [("null", 4u8), ("\"\"", 2)] {
            let body = format!(r#"{{"message":{{"contextId":{value},"messageId":"m"}}}}"#);
            let at = body.find(value).unwrap() as u64;
            let site = MintSite {
                replace: Some(crate::verdict::ValueSpan { at, len }),
                ..site(&body, "contextId")
            };
            let out = insert_context_id(body.as_bytes(), &site, "c-1").unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                r#"{"message":{"contextId":"c-1","messageId":"m"}}"#
            );
            // A span that does not hold the value is refused.
            let off = MintSite {
                replace: Some(crate::verdict::ValueSpan { at: at + 1, len }),
                ..site
            };
            assert_eq!(insert_context_id(body.as_bytes(), &off, "c-1"), None);
        }
    }

    #[test]
    fn refuses_a_site_that_does_not_match_the_body() {
        let body = br#"{"message":{"a":1}}"#;
        let good = MintSite {
            open: 12,
            close: 17,
            empty: false,
            key: "contextId",
            replace: None,
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
