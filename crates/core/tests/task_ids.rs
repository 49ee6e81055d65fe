//! Task ids that carry their context (`task_id`): the shared vectors (the
//! Python package `agents/python` reads the same file), and every
//! task-only call of every binding routed by the carried contextId with no
//! store lookup, at every split of its body.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use a2a_affinity_core::config::Config;
use a2a_affinity_core::stats::{Counter, Outcome};
use a2a_affinity_core::stream::{Next, RequestHead};
use a2a_affinity_core::task_id::{context_of, encode};
use a2a_affinity_core::verdict::field_value;
use a2a_affinity_testkit::env::{run, MockEnv};
use a2a_affinity_testkit::proto::{self, len, V0, V1};
use a2a_affinity_testkit::splits;

const VECTORS: &str = include_str!("task_id_vectors.json");

fn vectors() -> serde_json::Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn config(json: &str) -> Config {
    Config::parse(json.as_bytes()).unwrap()
}

fn hex(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[test]
fn the_shared_vectors_encode_and_decode_alike() {
    let v = vectors();
    let encoded = v["encode"].as_array().unwrap();
    assert!(encoded.len() >= 10);
    for case in encoded {
        let context = case["context_id"].as_str().unwrap();
        let task = case["task_id"].as_str().unwrap();
        assert_eq!(
            encode(context, &hex(case["random"].as_str().unwrap())),
            task
        );
        assert_eq!(context_of(task, 256).as_deref(), Some(context), "{task}");
        // URL-unreserved characters only: the id goes into REST paths.
        assert!(task
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)));
        // A contextId longer than max_value_bytes is not used.
        assert_eq!(context_of(task, context.len() - 1), None);
    }
    for foreign in v["foreign"].as_array().unwrap() {
        let id = foreign.as_str().unwrap();
        assert_eq!(context_of(id, 256), None, "{id}");
    }
}

/// The task-only calls of every binding, each naming `task`: (method,
/// path, content type, body).
fn task_calls(task: &str) -> Vec<(&'static str, String, &'static str, Vec<u8>)> {
    let json = "application/json";
    let rpc = |method: &str, params: String| {
        format!(r#"{{"jsonrpc":"2.0","id":"7","method":"{method}","params":{params}}}"#)
            .into_bytes()
    };
    let by_id = format!(r#"{{"id":"{task}","historyLength":2}}"#);
    let by_task_id = format!(r#"{{"taskId":"{task}","id":"cfg-1"}}"#);
    let set_config =
        format!(r#"{{"taskId":"{task}","pushNotificationConfig":{{"url":"http://h/cb"}}}}"#);
    let message = format!(
        r#"{{"message":{{"role":"user","parts":[{{"kind":"text","text":"2 pm"}}],"messageId":"m-2","taskId":"{task}"}}}}"#
    );
    let grpc = "application/grpc";
    let mut calls = vec![
        ("POST", "/".into(), json, rpc("tasks/get", by_id.clone())),
        ("POST", "/".into(), json, rpc("tasks/cancel", by_id.clone())),
        (
            "POST",
            "/".into(),
            json,
            rpc("tasks/resubscribe", by_id.clone()),
        ),
        (
            "POST",
            "/".into(),
            json,
            rpc("tasks/pushNotificationConfig/get", by_id.clone()),
        ),
        (
            "POST",
            "/".into(),
            json,
            rpc("tasks/pushNotificationConfig/set", set_config),
        ),
        ("POST", "/".into(), json, rpc("GetTask", by_id.clone())),
        ("POST", "/".into(), json, rpc("CancelTask", by_id.clone())),
        ("POST", "/".into(), json, rpc("SubscribeToTask", by_id)),
        (
            "POST",
            "/".into(),
            json,
            rpc("GetTaskPushNotificationConfig", by_task_id),
        ),
        (
            "POST",
            "/".into(),
            json,
            rpc("message/send", message.clone()),
        ),
        (
            "POST",
            "/".into(),
            json,
            rpc("SendMessage", message.clone()),
        ),
        (
            "POST",
            "/v1/message:send".into(),
            json,
            message.clone().into_bytes(),
        ),
        ("POST", "/message:stream".into(), json, message.into_bytes()),
        ("GET", format!("/v1/tasks/{task}"), json, vec![]),
        ("GET", format!("/tasks/{task}"), json, vec![]),
        (
            "POST",
            format!("/tasks/{task}:cancel"),
            json,
            b"{}".to_vec(),
        ),
        (
            "POST",
            format!("/tenant-a/tasks/{task}:subscribe"),
            json,
            vec![],
        ),
        (
            "GET",
            format!("/v1/tasks/{task}/pushNotificationConfigs"),
            json,
            vec![],
        ),
        (
            "POST",
            format!("{V0}/GetTask"),
            grpc,
            proto::frame(&len(1, format!("tasks/{task}").as_bytes())),
        ),
        (
            "POST",
            format!("{V1}/GetTask"),
            grpc,
            proto::frame(&len(2, task.as_bytes())),
        ),
        (
            "POST",
            format!("{V1}/CancelTask"),
            grpc,
            proto::frame(&len(2, task.as_bytes())),
        ),
        (
            "POST",
            format!("{V1}/SubscribeToTask"),
            grpc,
            proto::frame(&len(2, task.as_bytes())),
        ),
        (
            "POST",
            format!("{V1}/CreateTaskPushNotificationConfig"),
            grpc,
            proto::frame(&[len(1, b"tenant"), len(3, task.as_bytes())].concat()),
        ),
        (
            "POST",
            format!("{V1}/ListTaskPushNotificationConfigs"),
            grpc,
            proto::frame(&len(1, task.as_bytes())),
        ),
        (
            "POST",
            format!("{V0}/GetTaskPushNotificationConfig"),
            grpc,
            proto::frame(&len(
                1,
                format!("tasks/{task}/pushNotificationConfigs/cfg-1").as_bytes(),
            )),
        ),
        (
            "POST",
            format!("{V1}/SendMessage"),
            grpc,
            proto::send(V1, &proto::message(None, Some(task), "2 pm")),
        ),
        (
            "POST",
            format!("{V0}/SendMessage"),
            grpc,
            proto::send(V0, &proto::message(None, Some(task), "2 pm")),
        ),
    ];
    for call in &mut calls {
        if call.0 == "GET" {
            call.3.clear();
        }
    }
    calls
}

fn head<'a>(method: &'a str, path: &'a str, content_type: &'a str, body: &[u8]) -> RequestHead<'a> {
    RequestHead {
        method,
        path,
        content_type: Some(content_type),
        content_encoding: None,
        content_length: (!content_type.contains("grpc")).then_some(body.len() as u64),
        client_header: false,
    }
}

/// Every split of `body` (or no body at all).
fn splits_of(body: &[u8]) -> Vec<Vec<&[u8]>> {
    if body.is_empty() {
        return vec![vec![]];
    }
    splits::every_two(body).map(|s| s.to_vec()).collect()
}

#[test]
fn every_task_call_routes_by_the_carried_context_at_every_split() {
    let config = config("");
    let contexts = [
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "ctx-1",
        " padded ",
        "caf\u{e9} \u{1f600}",
        "50%",
    ];
    for (i, context) in contexts.iter().enumerate() {
        let task = encode(context, &[i as u8; 16]);
        let want = field_value(context).into_owned();
        for (method, path, content_type, body) in task_calls(&task) {
            for chunks in splits_of(&body) {
                let mut env = MockEnv::default();
                // A lookup would hold the request (`LookupTask`): none is made.
                env.store.defer = true;
                let h = head(method, &path, content_type, &body);
                let (_, held, next) = run(&config, &mut env, &h, &chunks);
                assert_eq!(
                    next,
                    Next::Continue,
                    "{path} {}",
                    String::from_utf8_lossy(&body)
                );
                assert_eq!(
                    held.header_values("x-context-id"),
                    std::slice::from_ref(&want),
                    "{method} {path} {}",
                    String::from_utf8_lossy(&body)
                );
                assert_eq!(held.body, body, "the body passes unchanged");
                assert_eq!(env.counter(Counter::TaskIdRouted), 1, "{path}");
                let total: u64 = Outcome::ALL.iter().map(|o| env.counter(o.counter())).sum();
                assert_eq!(total, 1);
            }
        }
    }
}

#[test]
fn other_ids_fall_back_to_learned_tasks() {
    let config = config("");
    let good = encode("ctx-1", &[3; 16]);
    // Same prefix and shape, last character changed: the check fails.
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for task in [
        forged.as_str(),
        "c1.sY3R4LTE.AAAAAAAAAAAAAAAAAAAAAA.AAAAAA",
        "t-1",
    ] {
        let mut env = MockEnv::default();
        for (method, path, content_type, body) in task_calls(task) {
            let h = head(method, &path, content_type, &body);
            let chunks: Vec<&[u8]> = if body.is_empty() { vec![] } else { vec![&body] };
            let (_, held, _) = run(&config, &mut env, &h, &chunks);
            assert!(
                held.header_values("x-context-id").is_empty(),
                "{task} {path}"
            );
        }
        assert_eq!(env.counter(Counter::TaskIdRouted), 0);
        assert_eq!(
            env.counter(Counter::TaskUnknown),
            task_calls(task).len() as u64
        );
        // Learned, the same id routes by the store.
        env.store
            .tasks
            .insert(task.into(), ("learned".into(), u64::MAX));
        let get = format!(
            r#"{{"jsonrpc":"2.0","id":"7","method":"GetTask","params":{{"id":"{task}"}}}}"#
        );
        let h = head("POST", "/", "application/json", get.as_bytes());
        let (_, held, _) = run(&config, &mut env, &h, &[get.as_bytes()]);
        assert_eq!(held.header_values("x-context-id"), ["learned"]);
        assert_eq!(env.counter(Counter::TaskRouted), 1);
    }
}

#[test]
fn the_carried_context_wins_over_the_store_and_works_without_learning() {
    let task = encode("ctx-carried", &[5; 16]);
    let get =
        format!(r#"{{"jsonrpc":"2.0","id":"7","method":"GetTask","params":{{"id":"{task}"}}}}"#);
    let h = head("POST", "/", "application/json", get.as_bytes());
    for json in ["", r#"{"learn_tasks":false}"#] {
        let config = config(json);
        let mut env = MockEnv::default();
        env.store
            .tasks
            .insert(task.clone(), ("learned".into(), u64::MAX));
        let (_, held, _) = run(&config, &mut env, &h, &[get.as_bytes()]);
        assert_eq!(held.header_values("x-context-id"), ["ctx-carried"]);
        assert_eq!(env.counter(Counter::TaskIdRouted), 1);
    }
    // Turned off: the store decides again (and without it, nothing).
    let config = config(r#"{"task_id_context":false}"#);
    let mut env = MockEnv::default();
    let (_, held, _) = run(&config, &mut env, &h, &[get.as_bytes()]);
    assert!(held.header_values("x-context-id").is_empty());
    assert_eq!(env.counter(Counter::TaskUnknown), 1);
    env.store
        .tasks
        .insert(task.clone(), ("learned".into(), u64::MAX));
    let (_, held, _) = run(&config, &mut env, &h, &[get.as_bytes()]);
    assert_eq!(held.header_values("x-context-id"), ["learned"]);
    assert_eq!(env.counter(Counter::TaskIdRouted), 0);
}

#[test]
fn a_message_with_both_ids_goes_where_its_task_id_points() {
    let config = config("");
    let task = encode("ctx-a", &[9; 16]);
    for (own, want, counter) in [
        ("ctx-a", "ctx-a", Counter::ContextFound),
        ("ctx-b", "ctx-a", Counter::TaskIdRouted),
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":"1","method":"SendMessage","params":{{"message":{{"role":"user","parts":[],"messageId":"m","contextId":"{own}","taskId":"{task}"}}}}}}"#
        );
        for [a, b] in splits::every_two(body.as_bytes()) {
            let mut env = MockEnv::default();
            env.store.defer = true;
            let h = head("POST", "/", "application/json", body.as_bytes());
            let (_, held, next) = run(&config, &mut env, &h, &[a, b]);
            assert_eq!(next, Next::Continue);
            assert_eq!(held.header_values("x-context-id"), [want]);
            assert_eq!(env.counter(counter), 1);
        }
    }
}
