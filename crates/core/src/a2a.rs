//! The A2A protocol's vocabulary shared by every binding: versions,
//! operations and the JSON-RPC method names that name them.
//!
//! The A2A bindings put the conversation key in different places:
//! JSON-RPC (0.2/0.3 method names such as `message/send`, 1.0 names such as
//! `SendMessage`) at `params.message.contextId`; the HTTP+JSON (REST) binding
//! at `message.contextId` (0.3 also accepts the alias `request`, and
//! ProtoJSON parsers accept `context_id`); 1.0 `ListTasks` at
//! `params.contextId`; task-only calls carry a task id in `params.id`,
//! `params.taskId` or the URL path (A2A specification 1.0, sections 9-11, and the 0.3 JSON-RPC binding).

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
