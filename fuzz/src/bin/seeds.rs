//! Writes the seed corpora of every target into `<dir>/<target>/`: the
//! request and response bodies the tests and benchmarks use (testkit),
//! behind each target's control bytes. `scripts/fuzz.sh` runs it before
//! fuzzing; libFuzzer then grows its own corpus next to them.

use std::fs;
use std::path::Path;

use a2a_affinity_testkit::bodies::{self, Text, CONTEXT_ID};
use a2a_affinity_testkit::proto::{self, frame, len, message, send, V0, V1};

fn write(dir: &Path, target: &str, name: &str, control: &[u8], body: &[u8]) -> std::io::Result<()> {
    let dir = dir.join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(name), [control, body].concat())
}

fn json_requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("rpc03", bodies::rpc03(CONTEXT_ID, "hello \\\"there\\\"").into_bytes()),
        ("rpc10-first-turn", bodies::rpc10_first_turn("hi").into_bytes()),
        ("rpc03-1k-last", bodies::body(1024, Text::Dense, false)),
        ("rpc03-1k-first", bodies::body(1024, Text::Prose, true)),
        ("raw-escapes", bodies::raw_message(b"a\\u00e9\\ud83d\\ude00", b"\\u0063tx-1")),
        (
            "rpc10-task",
            br#"{"jsonrpc":"2.0","id":"2","method":"SendMessage","params":{"message":{"taskId":"t-1","messageId":"m","role":"ROLE_USER","parts":[{"text":"x"}]}}}"#.to_vec(),
        ),
        (
            "rpc-get-task",
            br#"{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"id":"t-1","historyLength":2}}"#.to_vec(),
        ),
        (
            "rpc-get-task-carried",
            br#"{"jsonrpc":"2.0","id":3,"method":"GetTask","params":{"id":"c1.sY3R4LTE.9_N7i9gQGptfa9X1t9Akpw.rQefDA"}}"#.to_vec(),
        ),
        (
            "rpc-list-tasks",
            br#"{"jsonrpc":"2.0","id":4,"method":"ListTasks","params":{"contextId":"c-9","pageSize":10}}"#.to_vec(),
        ),
        (
            "rest-send",
            br#"{"message":{"messageId":"m-2","role":"ROLE_USER","contextId":"c-rest","parts":[{"text":"hi"}]},"configuration":{"blocking":true}}"#.to_vec(),
        ),
        (
            "rest-send-snake",
            br#"{"request":{"message_id":"m-3","role":"ROLE_USER","context_id":"c-snake","content":[{"text":"hi"}]}}"#.to_vec(),
        ),
        (
            "rest-first-turn",
            br#"{ "message" : { "messageId" : "m-4", "role" : "ROLE_USER", "parts" : [ ] } }"#.to_vec(),
        ),
    ]
}

fn grpc_requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "grpc-v0-send",
            send(V0, &message(Some(CONTEXT_ID), None, "hello")),
        ),
        (
            "grpc-v1-send",
            send(V1, &message(Some("c-1"), None, "hello")),
        ),
        (
            "grpc-v1-first-turn",
            send(V1, &message(None, None, "first")),
        ),
        (
            "grpc-v0-task",
            send(V0, &message(None, Some("t-1"), "again")),
        ),
        ("grpc-v0-get-task", frame(&len(1, b"tasks/t-1"))),
        (
            "grpc-v1-get-task",
            frame(&[len(1, b"tenant"), len(2, b"t-1")].concat()),
        ),
        (
            "grpc-v1-list-tasks",
            frame(&[len(2, b"c-1"), proto::uint(3, 10)].concat()),
        ),
        (
            "grpc-two-frames",
            [
                send(V1, &message(None, None, "one")),
                send(V1, &message(None, None, "two")),
            ]
            .concat(),
        ),
    ]
}

fn responses() -> Vec<(&'static str, u8, Vec<u8>)> {
    let task = [len(1, b"t-1"), len(2, b"c-1"), len(4, &len(1, b"done"))].concat();
    let msg = [len(1, b"m-1"), len(2, b"c-2"), len(3, b"t-2")].concat();
    vec![
        (
            "json-task",
            0,
            br#"{"jsonrpc":"2.0","id":1,"result":{"kind":"task","id":"t-1","contextId":"c-1","status":{"state":"completed"}}}"#.to_vec(),
        ),
        (
            "json-v1-message",
            0,
            br#"{"jsonrpc":"2.0","id":1,"result":{"message":{"messageId":"m","taskId":"t-2","contextId":"c-2","role":"ROLE_AGENT"}}}"#.to_vec(),
        ),
        ("json-rest-task", 0, br#"{"task":{"id":"t-3","contextId":"c-3"}}"#.to_vec()),
        (
            "sse-events",
            1,
            b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"status-update\",\r\ndata: \"taskId\":\"t-4\",\"contextId\":\"c-4\"}}\r\n\r\n: keep-alive\n\ndata:{\"result\":{\"artifactUpdate\":{\"taskId\":\"t-5\",\"contextId\":\"c-5\"}}}\n\n".to_vec(),
        ),
        ("grpc-send-task", 2, frame(&len(1, &task))),
        ("grpc-stream", 5, [frame(&len(2, &msg)), frame(&len(3, &[len(1, b"t-6"), len(2, b"c-6")].concat()))].concat()),
        ("grpc-get-task", 11, frame(&task)),
    ]
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let dir = Path::new(&dir);
    // stream: head index, flags (mint + learn + content-length), default
    // scan limit, default value limit, 3 cuts with a JSON response, seed.
    for (i, (name, body)) in json_requests().into_iter().enumerate() {
        for head in [0u8, 2] {
            let control = [head, 0b0001_0011, 200, 0, 0b0010_0011, i as u8, 7];
            write(dir, "stream", &format!("{name}-{head}"), &control, &body)?;
        }
        write(dir, "scan", name, &[5, 3, i as u8, 1], &body)?;
    }
    for (i, (name, body)) in grpc_requests().into_iter().enumerate() {
        let head = match name {
            n if n.contains("v0-send") || n.contains("v0-task") => 7,
            "grpc-v0-get-task" => 10,
            "grpc-v1-get-task" => 11,
            "grpc-v1-list-tasks" => 12,
            _ => 8,
        };
        let control = [head, 0b0101_0011, 200, 0, 0b0110_0011, i as u8, 3];
        write(dir, "stream", name, &control, &body)?;
        write(dir, "proto", name, &[head % 2, 63, 3, i as u8, 5], &body)?;
    }
    for (i, (name, kind, body)) in responses().into_iter().enumerate() {
        write(dir, "learner", name, &[kind, 3, 3, i as u8, 9], &body)?;
        write(
            dir,
            "scan",
            &format!("response-{name}"),
            &[5, 2, i as u8, 2],
            &body,
        )?;
    }
    let configs: [&[u8]; 3] = [
        br#"{"header":"x-context-id","max_scan_bytes":1048576}"#,
        br#"{"header":"X-A2A-Context","max_value_bytes":128,"max_scan_bytes":65536,"client_header":"strip","mint_context_id":false,"learn_tasks":true,"task_capacity":1024,"task_ttl_secs":600}"#,
        b" { \"task_ttl_secs\" : null , \"learn_tasks\" : false }\n",
    ];
    for (i, config) in configs.iter().enumerate() {
        write(dir, "config", &format!("config-{i}"), &[], config)?;
    }
    Ok(())
}
