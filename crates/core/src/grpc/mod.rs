//! The A2A gRPC binding: which calls it has and where their ids sit in the
//! protobuf messages. `request` reads the ids of a call (and writes a
//! minted one); `response` learns task -> context pairs from the answers.
//! Both walk frames with `proto::wire`.
//!
//! A gRPC message travels as a length-prefixed frame: one flag byte
//! (1 = compressed), a 4-byte big-endian length, then the protobuf bytes
//! (gRPC over HTTP/2, "Length-Prefixed-Message"). The ids are strings a
//! field or two deep (the A2A protos, `a2a.proto` of 0.3 and 1.0): the v0.3 service
//! `a2a.v1.A2AService` puts the Message of a send at field 1, the v1.0
//! service `lf.a2a.v1.A2AService` at field 2, and both keep `context_id` at
//! field 2 and `task_id` at field 3 of the Message.

use crate::a2a::{Operation, Version};
use crate::verdict::usable_value;

pub mod request;
pub mod response;
#[cfg(test)]
mod tests;

pub use request::RequestExtractor;
pub use response::ResponseLearner;

/// An A2A gRPC call, from its `:path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub version: Version,
    pub operation: Operation,
}

/// The call a request is, when it is an A2A gRPC call the filter can read:
/// POST to `/a2a.v1.A2AService/<Rpc>` (v0.3) or `/lf.a2a.v1.A2AService/<Rpc>`
/// (v1.0) with content type `application/grpc` or `application/grpc+proto`.
/// Other gRPC codecs (`+json`) carry no protobuf and are not read.
pub fn classify(method: &str, path: &str, content_type: Option<&str>) -> Option<Call> {
    if !method.eq_ignore_ascii_case("POST") || !content_type.is_some_and(is_grpc_proto) {
        return None;
    }
    let (version, rpc) = if let Some(rpc) = path.strip_prefix("/a2a.v1.A2AService/") {
        (Version::V0, rpc)
    } else {
        (Version::V1, path.strip_prefix("/lf.a2a.v1.A2AService/")?)
    };
    use Operation::*;
    let operation = match (version, rpc) {
        (_, "SendMessage") => Send,
        (_, "SendStreamingMessage") => Stream,
        (_, "GetTask") => GetTask,
        (_, "CancelTask") => CancelTask,
        (Version::V0, "TaskSubscription") | (Version::V1, "SubscribeToTask") => Resubscribe,
        (_, "CreateTaskPushNotificationConfig") => PushConfigSet,
        (_, "GetTaskPushNotificationConfig") => PushConfigGet,
        (Version::V0, "ListTaskPushNotificationConfig")
        | (Version::V1, "ListTaskPushNotificationConfigs") => PushConfigList,
        (_, "DeleteTaskPushNotificationConfig") => PushConfigDelete,
        (Version::V1, "ListTasks") => ListTasks,
        (Version::V0, "GetAgentCard") | (Version::V1, "GetExtendedAgentCard") => ExtendedCard,
        _ => return None,
    };
    Some(Call { version, operation })
}

/// `application/grpc` and `application/grpc+proto`, parameters allowed.
pub fn is_grpc_proto(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/grpc")
        || essence.eq_ignore_ascii_case("application/grpc+proto")
}

/// Any gRPC content type: `application/grpc` or `application/grpc+<codec>`.
pub fn is_grpc(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence
        .get(..16)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        && matches!(essence.as_bytes().get(16), None | Some(b'+'))
}

/// A usable header value, by the JSON side's rule (the reader has already
/// turned a value over the length limit into `None`).
pub(crate) fn header_value(value: Option<&str>) -> Result<String, ()> {
    match value {
        Some(s) if usable_value(s, usize::MAX) => Ok(s.to_string()),
        _ => Err(()),
    }
}
