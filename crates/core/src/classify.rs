//! What a request is, from its headers alone: which A2A binding carries
//! it and where its ids live, or why it is passed on uninspected. This sits
//! above the bindings: it asks the gRPC binding for its call table and
//! hands JSON bodies to the JSON binding.

use crate::grpc;

/// What the filter does with a request, decided from its headers alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classification {
    /// Not an A2A call with a JSON body: continue untouched.
    Pass(PassReason),
    /// A JSON-RPC call: the method and ids are in the body.
    JsonRpc,
    /// REST `message:send`, `message:stream` or plain `message`.
    RestSend { streaming: bool },
    /// REST call on one task (`/tasks/{id}`, `:cancel`, `:subscribe`,
    /// push-notification configs): the task id is in the path.
    RestTask { task_id: String },
    /// An A2A gRPC call with protobuf messages (see `grpc`).
    Grpc(grpc::Call),
}

/// Why a request is not inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassReason {
    /// Not a POST (and not a REST task route).
    Method,
    /// No content type, or one that is not JSON.
    ContentType,
    /// A compressed body cannot be read without decompressing it.
    ContentEncoding,
}

/// Classifies a request from `:method`, `:path`, `content-type` and
/// `content-encoding`.
pub fn classify(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Classification {
    if let Some(call) = grpc::classify(method, path, content_type) {
        return Classification::Grpc(call);
    }
    // `application/grpc+json` frames are length-prefixed, not JSON documents.
    if content_type.is_some_and(grpc::is_grpc) {
        return Classification::Pass(PassReason::ContentType);
    }
    // Byte searches (memchr) rather than `str` patterns: this runs on
    // every request.
    let path = memchr::memchr2(b'?', b'#', path.as_bytes())
        .and_then(|end| path.get(..end))
        .unwrap_or(path);
    // The agents' routers (Starlette under uvicorn or hypercorn, Express,
    // Spring) match the percent-decoded path, so `/message%3Asend` is
    // `/message:send` to them and must be to the filter. A path whose
    // escapes do not decode to UTF-8 names no task and is matched as it came.
    let decoded = decode_path(path);
    let path = match &decoded {
        Decoded::Escaped(p) => p.as_str(),
        Decoded::Plain | Decoded::NotUtf8 => path,
    };
    if !matches!(decoded, Decoded::NotUtf8) {
        if let Some(task_id) = rest_task_id(method, path) {
            return Classification::RestTask { task_id };
        }
    }
    if !method.eq_ignore_ascii_case("POST") {
        return Classification::Pass(PassReason::Method);
    }
    if !content_type.is_some_and(is_json_media_type) {
        return Classification::Pass(PassReason::ContentType);
    }
    if content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        return Classification::Pass(PassReason::ContentEncoding);
    }
    // REST routes are relative to the agent interface URL, so match on the
    // path suffix: `/message:send`, `/v1/message:send`, `/{tenant}/message:send`.
    let last = memchr::memrchr(b'/', path.as_bytes())
        .and_then(|slash| path.get(slash + 1..))
        .unwrap_or(path);
    match last {
        "message:send" | "message" => Classification::RestSend { streaming: false },
        "message:stream" => Classification::RestSend { streaming: true },
        _ => Classification::JsonRpc,
    }
}

/// `application/json`, `application/a2a+json` or any `+json` type,
/// parameters such as `; charset=utf-8` allowed.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = memchr::memchr(b';', content_type.as_bytes())
        .and_then(|end| content_type.get(..end))
        .unwrap_or(content_type)
        .trim();
    let Some((kind, subtype)) = memchr::memchr(b'/', essence.as_bytes())
        .and_then(|slash| Some((essence.get(..slash)?, essence.get(slash + 1..)?)))
    else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype
                    .get(subtype.len() - 5..)
                    .is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

/// The task id of a REST task route: `GET .../tasks/{id}`,
/// `POST .../tasks/{id}:cancel`, `GET|POST .../tasks/{id}:subscribe`, and
/// `.../tasks/{id}/pushNotificationConfigs[/{configId}]`.
fn rest_task_id(method: &str, path: &str) -> Option<String> {
    // The segments after the last `tasks` segment, gathered from the end:
    // every route has one to three of them. (No allocation: this runs on
    // every request.)
    let mut after = [""; 3];
    let mut count = 0;
    let mut segments = path.rsplit('/');
    loop {
        let segment = segments.next()?;
        if segment == "tasks" {
            break;
        }
        *after.get_mut(count)? = segment;
        count += 1;
    }
    let after = after.get_mut(..count)?;
    after.reverse();
    let (raw_id, verb_ok) = match &*after {
        [id] => match id.rsplit_once(':') {
            Some((id, "cancel")) => (id, method.eq_ignore_ascii_case("POST")),
            Some((id, "subscribe")) => (
                id,
                method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("POST"),
            ),
            // A colon that starts no verb is part of the id (`GET
            // /tasks/{id}` takes any segment).
            Some(_) | None => (*id, method.eq_ignore_ascii_case("GET")),
        },
        [id, "pushNotificationConfigs"] | [id, "pushNotificationConfigs", _] => (*id, true),
        _ => return None,
    };
    if !verb_ok || raw_id.is_empty() {
        return None;
    }
    Some(raw_id.to_string())
}

enum Decoded {
    /// No `%`: the path as it came (no allocation on the common path).
    Plain,
    Escaped(String),
    /// The escapes decode to bytes that are not UTF-8.
    NotUtf8,
}

/// The path with its `%XX` escapes decoded, once, as an ASGI server hands
/// it to the router (`%2F` included: it then splits segments as a `/`
/// does); a `%` not followed by two hex digits stays as it is.
fn decode_path(path: &str) -> Decoded {
    if !path.contains('%') {
        return Decoded::Plain;
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex_value(hi).zip(hex_value(lo)),
            _ => None,
        };
        match escaped {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_or(Decoded::NotUtf8, Decoded::Escaped)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Classification::*;

    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn non_a2a_traffic_passes() {
        type Row<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            PassReason,
        );
        let table: &[Row] = &[
            (
                "GET",
                "/.well-known/agent-card.json",
                None,
                None,
                PassReason::Method,
            ),
            ("GET", "/", JSON, None, PassReason::Method),
            ("PUT", "/message:send", JSON, None, PassReason::Method),
            ("POST", "/", None, None, PassReason::ContentType),
            (
                "POST",
                "/",
                Some("text/plain"),
                None,
                PassReason::ContentType,
            ),
            (
                "POST",
                "/",
                Some("application/jsonx"),
                None,
                PassReason::ContentType,
            ),
            (
                "POST",
                "/",
                Some("application/+json"),
                None,
                PassReason::ContentType,
            ),
            (
                "POST",
                "/",
                Some("multipart/form-data"),
                None,
                PassReason::ContentType,
            ),
            ("POST", "/", Some("json"), None, PassReason::ContentType),
            ("POST", "/", JSON, Some("gzip"), PassReason::ContentEncoding),
            ("POST", "/", JSON, Some("br"), PassReason::ContentEncoding),
        ];
        for (method, path, ct, ce, why) in table {
            assert_eq!(
                classify(method, path, *ct, *ce),
                Pass(*why),
                "{method} {path} {ct:?} {ce:?}"
            );
        }
        assert_eq!(classify("POST", "/", JSON, Some("identity")), JsonRpc);
    }

    #[test]
    fn json_rpc_and_rest_sends_are_told_apart_by_path_suffix() {
        let table: &[(&str, &str, Option<&str>, Classification)] = &[
            ("POST", "/", JSON, JsonRpc),
            ("POST", "/a2a/v1/jsonrpc", JSON, JsonRpc),
            ("POST", "/agents/travel", JSON, JsonRpc),
            (
                "POST",
                "/v1/message:send",
                JSON,
                RestSend { streaming: false },
            ),
            ("POST", "/message:send", JSON, RestSend { streaming: false }),
            (
                "POST",
                "/tenant-a/message:send",
                JSON,
                RestSend { streaming: false },
            ),
            (
                "POST",
                "/a/b/v1/message:stream",
                JSON,
                RestSend { streaming: true },
            ),
            (
                "POST",
                "/message:stream?x=1",
                JSON,
                RestSend { streaming: true },
            ),
            (
                "POST",
                "/agent/message",
                JSON,
                RestSend { streaming: false },
            ),
            ("POST", "/messages", JSON, JsonRpc),
            ("POST", "/", Some("application/a2a+json"), JsonRpc),
            (
                "POST",
                "/",
                Some("application/json; charset=utf-8"),
                JsonRpc,
            ),
            ("POST", "/", Some("Application/JSON"), JsonRpc),
            ("POST", "/", Some("application/vnd.x+json;v=1"), JsonRpc),
            ("post", "/", JSON, JsonRpc),
            // Percent-encoded paths, read as the agents' routers decode them.
            (
                "POST",
                "/message%3Asend",
                JSON,
                RestSend { streaming: false },
            ),
            (
                "POST",
                "/v1/message%3asend",
                JSON,
                RestSend { streaming: false },
            ),
            (
                "POST",
                "/tenant-a/message%3Astream",
                JSON,
                RestSend { streaming: true },
            ),
            (
                "POST",
                "/v1%2Fmessage%3Asend",
                JSON,
                RestSend { streaming: false },
            ),
            (
                "POST",
                "/%6Dessage:send",
                JSON,
                RestSend { streaming: false },
            ),
            // Not an escape: matched as it came.
            ("POST", "/message%3", JSON, JsonRpc),
            ("POST", "/message%zzsend", JSON, JsonRpc),
            ("POST", "/message%ff:send", JSON, JsonRpc),
        ];
        for (method, path, ct, want) in table {
            assert_eq!(
                &classify(method, path, *ct, None),
                want,
                "{method} {path} {ct:?}"
            );
        }
    }

    #[test]
    fn rest_task_routes_carry_the_task_id() {
        let task = |id: &str| RestTask {
            task_id: id.to_string(),
        };
        let table: &[(&str, &str, Classification)] = &[
            ("GET", "/tasks/t-1", task("t-1")),
            ("GET", "/v1/tasks/t-1?historyLength=3", task("t-1")),
            ("GET", "/tenant-a/tasks/t-1", task("t-1")),
            ("POST", "/tasks/t-1:cancel", task("t-1")),
            ("POST", "/v1/tasks/t-1:cancel", task("t-1")),
            ("GET", "/tasks/t-1:subscribe", task("t-1")),
            ("POST", "/tasks/t-1:subscribe", task("t-1")),
            ("POST", "/v1/tasks/t-1/pushNotificationConfigs", task("t-1")),
            ("GET", "/tasks/t-1/pushNotificationConfigs", task("t-1")),
            ("GET", "/tasks/t-1/pushNotificationConfigs/c-9", task("t-1")),
            (
                "DELETE",
                "/tasks/t-1/pushNotificationConfigs/c-9",
                task("t-1"),
            ),
            ("GET", "/tasks/a%20b", task("a b")),
            ("POST", "/tasks/t-1%3Acancel", task("t-1")),
            ("POST", "/v1/tasks/t-1%3acancel", task("t-1")),
            ("GET", "/tasks/t-1%3Asubscribe", task("t-1")),
            ("GET", "/%74asks/t-1", task("t-1")),
            ("GET", "/tasks/t-1%2FpushNotificationConfigs", task("t-1")),
            ("GET", "/tasks/t%3A1", task("t:1")),
            // Decoded once, as the agents do: `%2541` is the task `%41`.
            ("GET", "/tasks/%2541", task("%41")),
        ];
        for (method, path, want) in table {
            assert_eq!(&classify(method, path, None, None), want, "{method} {path}");
        }
        // Not task routes: list, unknown verbs, wrong methods, bad escapes.
        for (method, path) in [
            ("GET", "/tasks"),
            ("GET", "/tasks/"),
            ("GET", "/tasks/t-1:cancel"),
            ("POST", "/tasks/t-1:frobnicate"),
            ("DELETE", "/tasks/t-1"),
            ("GET", "/tasks/t-1/history"),
            ("GET", "/tasks/a%2Fb"),
            ("GET", "/tasks/%ff"),
        ] {
            assert!(
                !matches!(classify(method, path, None, None), RestTask { .. }),
                "{method} {path}"
            );
        }
    }
}
