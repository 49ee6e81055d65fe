//! Which A2A binding and operation a request is, and where its ids live.
//!
//! The A2A bindings put the conversation key in different places:
//! JSON-RPC (0.2/0.3 method names such as `message/send`, 1.0 names such as
//! `SendMessage`) at `params.message.contextId`; the HTTP+JSON (REST) binding
//! at `message.contextId` (0.3 also accepts the alias `request`, and
//! ProtoJSON parsers accept `context_id`); 1.0 `ListTasks` at
//! `params.contextId`; task-only calls carry a task id in `params.id`,
//! `params.taskId` or the URL path (a2a-wire reference, sections 1.1-1.2).

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
    Grpc(crate::grpc::Call),
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
    if let Some(call) = crate::grpc::classify(method, path, content_type) {
        return Classification::Grpc(call);
    }
    // `application/grpc+json` frames are length-prefixed, not JSON documents.
    if content_type.is_some_and(crate::grpc::is_grpc) {
        return Classification::Pass(PassReason::ContentType);
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    if let Some(task_id) = rest_task_id(method, path) {
        return Classification::RestTask { task_id };
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
    let last = path.rsplit('/').next().unwrap_or("");
    match last {
        "message:send" | "message" => Classification::RestSend { streaming: false },
        "message:stream" => Classification::RestSend { streaming: true },
        _ => Classification::JsonRpc,
    }
}

/// `application/json`, `application/a2a+json` or any `+json` type,
/// parameters such as `; charset=utf-8` allowed.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
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
            Some(_) => return None,
            None => (*id, method.eq_ignore_ascii_case("GET")),
        },
        [id, "pushNotificationConfigs"] | [id, "pushNotificationConfigs", _] => (*id, true),
        _ => return None,
    };
    if !verb_ok || raw_id.is_empty() {
        return None;
    }
    percent_decode(raw_id)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A2A protocol generation a JSON-RPC method name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// 0.2 and 0.3 names (`message/send`, `tasks/get`, ...).
    V0,
    /// 1.0 names (`SendMessage`, `GetTask`, ...).
    V1,
}

/// The A2A operation of a JSON-RPC call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Send,
    Stream,
    GetTask,
    CancelTask,
    Resubscribe,
    PushConfigSet,
    PushConfigGet,
    PushConfigList,
    PushConfigDelete,
    ListTasks,
    ExtendedCard,
}

/// Maps a JSON-RPC method name to its operation and version.
pub fn rpc_method(name: &str) -> Option<(Operation, Version)> {
    use Operation::*;
    use Version::*;
    Some(match name {
        "message/send" => (Send, V0),
        "message/stream" => (Stream, V0),
        "tasks/get" => (GetTask, V0),
        "tasks/cancel" => (CancelTask, V0),
        "tasks/resubscribe" => (Resubscribe, V0),
        "tasks/pushNotificationConfig/set" => (PushConfigSet, V0),
        "tasks/pushNotificationConfig/get" => (PushConfigGet, V0),
        "tasks/pushNotificationConfig/list" => (PushConfigList, V0),
        "tasks/pushNotificationConfig/delete" => (PushConfigDelete, V0),
        "agent/getAuthenticatedExtendedCard" => (ExtendedCard, V0),
        "SendMessage" => (Send, V1),
        "SendStreamingMessage" => (Stream, V1),
        "GetTask" => (GetTask, V1),
        "CancelTask" => (CancelTask, V1),
        "SubscribeToTask" => (Resubscribe, V1),
        "CreateTaskPushNotificationConfig" => (PushConfigSet, V1),
        "GetTaskPushNotificationConfig" => (PushConfigGet, V1),
        "ListTaskPushNotificationConfigs" => (PushConfigList, V1),
        "DeleteTaskPushNotificationConfig" => (PushConfigDelete, V1),
        "ListTasks" => (ListTasks, V1),
        "GetExtendedAgentCard" => (ExtendedCard, V1),
        _ => return None,
    })
}

/// Where a task-only call keeps its task id in `params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskIdField {
    /// `params.id`
    Id,
    /// `params.taskId`
    TaskId,
}

impl Operation {
    /// Whether a message without contextId and taskId starts a conversation.
    pub fn sends_message(self) -> bool {
        matches!(self, Operation::Send | Operation::Stream)
    }

    /// The field holding the task id of a task-only call. For push-config
    /// get/list/delete, `params.id` is the task in 0.x but the config in 1.0,
    /// where the task moved to `params.taskId`.
    pub fn task_id_field(self, version: Version) -> Option<TaskIdField> {
        use Operation::*;
        match (self, version) {
            (GetTask | CancelTask | Resubscribe, _) => Some(TaskIdField::Id),
            (PushConfigSet, _) => Some(TaskIdField::TaskId),
            (PushConfigGet | PushConfigList | PushConfigDelete, Version::V0) => {
                Some(TaskIdField::Id)
            }
            (PushConfigGet | PushConfigList | PushConfigDelete, Version::V1) => {
                Some(TaskIdField::TaskId)
            }
            _ => None,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use Classification::*;

    const JSON: Option<&str> = Some("application/json");

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
            ("GET", "/tasks/a%2Fb", task("a/b")),
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
            ("GET", "/tasks/%zz"),
        ] {
            assert!(
                !matches!(classify(method, path, None, None), RestTask { .. }),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn method_names_of_every_version() {
        use Operation::*;
        use Version::*;
        let table = [
            ("message/send", Send, V0),
            ("message/stream", Stream, V0),
            ("tasks/get", GetTask, V0),
            ("tasks/cancel", CancelTask, V0),
            ("tasks/resubscribe", Resubscribe, V0),
            ("tasks/pushNotificationConfig/set", PushConfigSet, V0),
            ("tasks/pushNotificationConfig/get", PushConfigGet, V0),
            ("tasks/pushNotificationConfig/list", PushConfigList, V0),
            ("tasks/pushNotificationConfig/delete", PushConfigDelete, V0),
            ("SendMessage", Send, V1),
            ("SendStreamingMessage", Stream, V1),
            ("GetTask", GetTask, V1),
            ("CancelTask", CancelTask, V1),
            ("SubscribeToTask", Resubscribe, V1),
            ("CreateTaskPushNotificationConfig", PushConfigSet, V1),
            ("GetTaskPushNotificationConfig", PushConfigGet, V1),
            ("ListTaskPushNotificationConfigs", PushConfigList, V1),
            ("DeleteTaskPushNotificationConfig", PushConfigDelete, V1),
            ("ListTasks", ListTasks, V1),
        ];
        for (name, op, v) in table {
            assert_eq!(rpc_method(name), Some((op, v)), "{name}");
        }
        assert_eq!(rpc_method("tools/call"), None);
        assert_eq!(rpc_method("sendmessage"), None);
    }

    #[test]
    fn push_config_task_id_moved_between_versions() {
        use Operation::*;
        assert_eq!(
            PushConfigGet.task_id_field(Version::V0),
            Some(TaskIdField::Id)
        );
        assert_eq!(
            PushConfigGet.task_id_field(Version::V1),
            Some(TaskIdField::TaskId)
        );
        assert_eq!(
            PushConfigDelete.task_id_field(Version::V0),
            Some(TaskIdField::Id)
        );
        assert_eq!(
            PushConfigList.task_id_field(Version::V1),
            Some(TaskIdField::TaskId)
        );
        assert_eq!(
            PushConfigSet.task_id_field(Version::V0),
            Some(TaskIdField::TaskId)
        );
        assert_eq!(GetTask.task_id_field(Version::V1), Some(TaskIdField::Id));
        assert_eq!(Send.task_id_field(Version::V1), None);
        assert_eq!(ListTasks.task_id_field(Version::V1), None);
    }

    #[test]
    fn path_tables_line_up() {
        assert_eq!(RPC_PATHS.len(), RPC_FIELDS.len());
        assert_eq!(REST_PATHS.len(), REST_FIELDS.len());
    }
}
