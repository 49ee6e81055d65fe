//! Unit tests of the gRPC binding: calls, request extraction and minting
//! at every split, response learning.

use super::request::*;
use super::response::*;
use super::*;
use crate::a2a::{Operation, Version};
use crate::proto::wire::{encode_varint, Invalid};
use crate::verdict::{BodyReader, GrpcMintSite as MintSite, Step, Verdict};

pub use a2a_affinity_testkit::proto::{
    fields, fixed32, fixed64, frame, len, tag, uint, unframe, varint,
};

#[test]
fn the_encoder_matches_the_test_encoder() {
    for v in [
        0,
        1,
        127,
        128,
        300,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let mut out = Vec::new();
        encode_varint(&mut out, v);
        assert_eq!(out, varint(v), "{v}");
    }
}

/// Fields a reader must step over: every wire type, including a LEN
/// whose bytes look like a context_id field.
fn noise() -> Vec<u8> {
    [
        uint(9, 300),
        fixed64(10),
        fixed32(11),
        len(12, &len(2, b"decoy")),
        uint(13, u64::MAX),
    ]
    .concat()
}

const V0: Call = Call {
    version: Version::V0,
    operation: Operation::Send,
};
const V1: Call = Call {
    version: Version::V1,
    operation: Operation::Send,
};
fn call(version: Version, operation: Operation) -> Call {
    Call { version, operation }
}

fn run(call: Call, chunks: &[&[u8]]) -> Step {
    let mut e = RequestExtractor::new(call, 64).unwrap();
    for chunk in chunks {
        let step = e.feed(chunk);
        if step != Step::NeedMore {
            return step;
        }
    }
    e.finish()
}

/// The verdict of `body` in one piece, asserted equal for every
/// two-piece split and for one byte at a time.
fn verdict(call: Call, body: &[u8]) -> Step {
    let whole = run(call, &[body]);
    for at in 0..=body.len() {
        let (a, b) = body.split_at(at);
        assert_eq!(run(call, &[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(run(call, &bytes), whole, "byte at a time");
    whole
}

fn message(fields: &[Vec<u8>]) -> Vec<u8> {
    fields.concat()
}

#[test]
fn classifies_both_services_and_only_protobuf_grpc() {
    let grpc = Some("application/grpc");
    use Operation::*;
    use Version::*;
    let table = [
        ("/a2a.v1.A2AService/SendMessage", grpc, Some(call(V0, Send))),
        (
            "/a2a.v1.A2AService/SendStreamingMessage",
            Some("application/grpc+proto"),
            Some(call(V0, Stream)),
        ),
        (
            "/a2a.v1.A2AService/TaskSubscription",
            grpc,
            Some(call(V0, Resubscribe)),
        ),
        ("/a2a.v1.A2AService/SubscribeToTask", grpc, None),
        (
            "/lf.a2a.v1.A2AService/SubscribeToTask",
            grpc,
            Some(call(V1, Resubscribe)),
        ),
        (
            "/lf.a2a.v1.A2AService/GetTask",
            Some("Application/GRPC; charset=x"),
            Some(call(V1, GetTask)),
        ),
        (
            "/lf.a2a.v1.A2AService/ListTaskPushNotificationConfigs",
            grpc,
            Some(call(V1, PushConfigList)),
        ),
        (
            "/a2a.v1.A2AService/ListTaskPushNotificationConfig",
            grpc,
            Some(call(V0, PushConfigList)),
        ),
        (
            "/lf.a2a.v1.A2AService/ListTasks",
            grpc,
            Some(call(V1, ListTasks)),
        ),
        ("/a2a.v1.A2AService/ListTasks", grpc, None),
        (
            "/lf.a2a.v1.A2AService/SendMessage",
            Some("application/grpc+json"),
            None,
        ),
        (
            "/lf.a2a.v1.A2AService/SendMessage",
            Some("application/json"),
            None,
        ),
        ("/lf.a2a.v1.A2AService/SendMessage", None, None),
        ("/lf.a2a.v1.A2AService/Frobnicate", grpc, None),
        ("/x/lf.a2a.v1.A2AService/SendMessage", grpc, None),
        ("/a2a.v1.OtherService/SendMessage", grpc, None),
    ];
    for (path, ct, want) in table {
        assert_eq!(classify("POST", path, ct), want, "{path} {ct:?}");
    }
    assert_eq!(classify("GET", "/a2a.v1.A2AService/GetTask", grpc), None);
    for ct in [
        "application/grpc",
        "application/grpc+json",
        "APPLICATION/GRPC+proto; x=y",
    ] {
        assert!(is_grpc(ct), "{ct}");
    }
    for ct in ["application/grpcx", "application/json", "application/grp"] {
        assert!(!is_grpc(ct), "{ct}");
    }
}

#[test]
fn send_context_id_at_every_split_with_unknown_fields_around() {
    for (c, field) in [(V0, 1), (V1, 2)] {
        let msg = message(&[
            noise(),
            len(1, b"m-1"),
            len(2, b"ctx-42"),
            uint(4, 1),
            len(5, &len(1, b"hello")),
            noise(),
        ]);
        // Field 1 is the v1.0 tenant; in v0.3 it is the Message itself.
        let tenant = if field == 2 {
            len(1, b"tenant")
        } else {
            vec![]
        };
        let body = frame(&[noise(), tenant, len(field, &msg), noise()].concat());
        assert_eq!(
            verdict(c, &body),
            Step::Decided(Verdict::Context("ctx-42".into())),
            "{c:?}"
        );
    }
    // The v0.3 and v1.0 layouts are not confused with each other: in
    // v1.0 field 1 is the tenant string, in v0.3 field 2 the config.
    let v0_body = frame(&len(1, &len(2, b"c")));
    assert_eq!(
        verdict(V1, &v0_body),
        Step::Decided(Verdict::Absent),
        "v0.3 body on the v1.0 service"
    );
}

proptest::proptest! {
    /// Any bytes, any split: no panic, the same outcome as in one piece.
    #[test]
    fn arbitrary_bytes_at_any_split(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        at in 0usize..200,
        v1 in proptest::prelude::any::<bool>(),
    ) {
        let c = if v1 { V1 } else { V0 };
        let at = at.min(body.len());
        let (a, b) = body.split_at(at);
        proptest::prop_assert_eq!(run(c, &[a, b]), run(c, &[&body]));
        proptest::prop_assert_eq!(learn(c, &[a, b]), learn(c, &[&body]));
    }

    /// Arbitrary bytes inside a well-formed frame header and Message.
    #[test]
    fn arbitrary_message_bytes_at_any_split(
        inner in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        at in 0usize..140,
    ) {
        let body = frame(&len(2, &inner));
        let at = at.min(body.len());
        let (a, b) = body.split_at(at);
        let whole = run(V1, &[&body]);
        proptest::prop_assert_eq!(run(V1, &[a, b]), whole.clone());
        if let Step::Decided(Verdict::MintGrpc(site)) = whole {
            let out = insert_context_id(&body, &site, "c-1");
            proptest::prop_assert!(out.is_some());
            proptest::prop_assert_eq!(
                run(V1, &[&out.unwrap_or_default()]),
                Step::Decided(Verdict::Context("c-1".into()))
            );
        }
    }
}

#[test]
fn empty_fields_at_the_end_of_a_message_or_frame() {
    // An empty configuration closes the frame (as a2a-sdk sends it), an
    // empty unknown field closes the Message.
    let body = frame(&[len(2, &[len(1, b"m"), len(9, b"")].concat()), len(3, b"")].concat());
    assert!(matches!(
        verdict(V1, &body),
        Step::Decided(Verdict::MintGrpc(_))
    ));
    // An empty task_id ends the Message: the agents read it as no task,
    // so this is a first turn.
    let body = frame(&len(2, &[len(1, b"m"), len(3, b"")].concat()));
    assert!(matches!(
        verdict(V1, &body),
        Step::Decided(Verdict::MintGrpc(_))
    ));
    // An empty task id ends the frame: no task to look up.
    let body = frame(&[uint(3, 1), len(2, b"")].concat());
    assert_eq!(
        verdict(call(Version::V1, Operation::GetTask), &body),
        Step::Decided(Verdict::Absent)
    );
    // Empty frames and empty trailing fields between response frames.
    let task = len(1, &[len(1, b"t"), len(2, b"c"), len(4, b"")].concat());
    let body = [frame(b""), frame(&[task, len(9, b"")].concat()), frame(b"")].concat();
    assert_eq!(learned_at_every_split(V1, &body), vec![pair("t", "c")]);
}

#[test]
fn a_context_id_is_kept_until_the_body_ends_and_routes_a_cut_body() {
    let body = frame(&len(2, &[len(2, b"ctx"), len(5, &[7u8; 1000])].concat()));
    let mut e = RequestExtractor::new(V1, 64).unwrap();
    let head = body.len() - 1000;
    // A later context_id could still replace it: no verdict yet...
    assert_eq!(e.feed(&body[..head]), Step::NeedMore);
    // ...but a body read no further is routed by what was read.
    assert_eq!(e.cut(false), Some(Verdict::Context("ctx".into())));
    assert_eq!(e.feed(&body[head..]), Step::NeedMore);
    assert_eq!(e.finish(), Step::Decided(Verdict::Context("ctx".into())));
    // Nothing read yet: nothing to route by.
    let mut e = RequestExtractor::new(V1, 64).unwrap();
    assert_eq!(e.feed(&body[..8]), Step::NeedMore);
    assert_eq!(e.cut(false), None);
}

#[test]
fn repeated_fields_are_read_as_protobuf_parsers_read_them() {
    // A context_id sent twice: the last one.
    let body = frame(&len(
        2,
        &[len(2, b"first"), len(1, b"m"), len(2, b"last")].concat(),
    ));
    assert_eq!(
        verdict(V1, &body),
        Step::Decided(Verdict::Context("last".into()))
    );
    // The Message sent twice is merged: the later one's context_id wins,
    // and a field only the earlier one has is kept.
    let body = frame(
        &[
            len(2, &[len(2, b"first"), len(3, b"task")].concat()),
            len(2, &len(2, b"second")),
        ]
        .concat(),
    );
    assert_eq!(
        verdict(V1, &body),
        Step::Decided(Verdict::ContextAndTask {
            context: "second".into(),
            task: "task".into()
        })
    );
    let body = frame(&[len(2, &len(2, b"kept")), len(2, &len(1, b"m"))].concat());
    assert_eq!(
        verdict(V1, &body),
        Step::Decided(Verdict::Context("kept".into()))
    );
    // A later empty context_id takes the place of a usable one: a first
    // turn to the agent, so one to the filter.
    let body = frame(&len(2, &[len(2, b"ctx"), len(2, b"")].concat()));
    let Step::Decided(Verdict::MintGrpc(site)) = verdict(V1, &body) else {
        panic!("not minted");
    };
    let out = insert_context_id(&body, &site, "minted").unwrap();
    assert_eq!(
        verdict(V1, &out),
        Step::Decided(Verdict::Context("minted".into()))
    );
    // Only the first frame of the body is read; later frames are checked.
    let first = frame(&len(2, &len(2, b"one")));
    let second = frame(&len(2, &len(2, b"two")));
    let body = [first.clone(), second].concat();
    assert_eq!(
        verdict(V1, &body),
        Step::Decided(Verdict::Context("one".into()))
    );
    let body = [first, vec![0, 0, 0]].concat();
    assert_eq!(verdict(V1, &body), Step::InvalidGrpc(Invalid::Truncated));
}

#[test]
fn follow_up_with_only_a_task_id_asks_for_the_task() {
    for (c, field) in [(V0, 1), (V1, 2)] {
        let body = frame(&len(
            field,
            &[len(1, b"m"), len(3, b"task-9"), noise()].concat(),
        ));
        assert_eq!(
            verdict(c, &body),
            Step::Decided(Verdict::Task("task-9".into()))
        );
    }
}

#[test]
fn task_calls_of_both_versions() {
    use Operation::*;
    use Version::*;
    let task = |t: &str| Step::Decided(Verdict::Task(t.into()));
    let table: Vec<(Call, Vec<u8>, Step)> = vec![
        (call(V0, GetTask), len(1, b"tasks/t-1"), task("t-1")),
        (call(V0, CancelTask), len(1, b"tasks/t-1"), task("t-1")),
        (call(V0, Resubscribe), len(1, b"tasks/t-1"), task("t-1")),
        (
            call(V0, PushConfigGet),
            len(1, b"tasks/t-1/pushNotificationConfigs/c-2"),
            task("t-1"),
        ),
        (
            call(V0, PushConfigSet),
            [len(1, b"tasks/t-1"), len(2, b"c-2")].concat(),
            task("t-1"),
        ),
        (
            call(V0, GetTask),
            len(1, b"t-1"),
            Step::Decided(Verdict::InvalidValue),
        ),
        (
            call(V0, GetTask),
            len(1, b"tasks/"),
            Step::Decided(Verdict::InvalidValue),
        ),
        (
            call(V1, GetTask),
            [len(1, b"tenant"), len(2, b"t-1"), uint(3, 5)].concat(),
            task("t-1"),
        ),
        (call(V1, CancelTask), len(2, b"t-1"), task("t-1")),
        (call(V1, Resubscribe), len(2, b"t-1"), task("t-1")),
        (
            call(V1, PushConfigSet),
            [len(2, b"cfg"), len(3, b"t-1"), len(4, b"http://x")].concat(),
            task("t-1"),
        ),
        (
            call(V1, PushConfigGet),
            [len(2, b"t-1"), len(3, b"cfg")].concat(),
            task("t-1"),
        ),
        (
            call(V1, PushConfigDelete),
            [len(3, b"cfg"), len(2, b"t-1")].concat(),
            task("t-1"),
        ),
        (
            call(V1, PushConfigList),
            [len(4, b"ten"), len(1, b"t-1")].concat(),
            task("t-1"),
        ),
        (
            call(V1, ListTasks),
            [len(2, b"ctx-1"), uint(4, 10)].concat(),
            Step::Decided(Verdict::Context("ctx-1".into())),
        ),
        (
            call(V1, GetTask),
            uint(3, 5),
            Step::Decided(Verdict::Absent),
        ),
    ];
    for (c, msg, want) in table {
        assert_eq!(verdict(c, &frame(&[noise(), msg].concat())), want, "{c:?}");
    }
    assert!(RequestExtractor::new(call(V1, ExtendedCard), 64).is_none());
    assert!(!reads_request(call(V0, ExtendedCard)));
}

#[test]
fn unusable_values_are_invalid() {
    let long = [b'a'; 65];
    let exact = [b'a'; 64];
    for (value, want) in [
        // Control characters route; the header encodes them.
        (&b"a\nb"[..], Step::Decided(Verdict::Context("a\nb".into()))),
        (&b"\xff\xfe"[..], Step::Decided(Verdict::InvalidValue)),
        (&long[..], Step::Decided(Verdict::InvalidValue)),
        (
            &exact[..],
            Step::Decided(Verdict::Context(String::from_utf8(exact.to_vec()).unwrap())),
        ),
    ] {
        let body = frame(&len(2, &[len(2, value), len(5, b"x")].concat()));
        assert_eq!(verdict(V1, &body), want, "{value:?}");
    }
    // An empty context_id is no context: a first turn (the agents mint
    // their own for it).
    let body = frame(&len(2, &[len(2, b""), len(5, b"x")].concat()));
    assert!(matches!(
        verdict(V1, &body),
        Step::Decided(Verdict::MintGrpc(_))
    ));
    // An unusable task id beside a usable context: routed by the context;
    // alone: unusable.
    let body = frame(&len(
        1,
        &[len(2, b"c"), len(3, &long), len(1, b"m")].concat(),
    ));
    assert_eq!(
        verdict(V0, &body),
        Step::Decided(Verdict::Context("c".into()))
    );
    let body = frame(&len(1, &[len(3, &long), len(1, b"m")].concat()));
    assert_eq!(verdict(V0, &body), Step::Decided(Verdict::InvalidValue));
}

#[test]
fn malformed_or_compressed_frames_are_invalid() {
    let ok = len(2, &len(1, b"m"));
    let cases: Vec<(Vec<u8>, Invalid)> = vec![
        // Compressed flag, unknown flag.
        (
            [vec![1], 5u32.to_be_bytes().to_vec(), len(2, b"abc")].concat(),
            Invalid::Compressed,
        ),
        (
            [vec![2], 2u32.to_be_bytes().to_vec(), vec![8, 1]].concat(),
            Invalid::Flag,
        ),
        // Groups (start and end) and reserved wire types.
        (
            frame(&[tag(7, 3), tag(7, 4), ok.clone()].concat()),
            Invalid::Group,
        ),
        (frame(&[tag(7, 4), ok.clone()].concat()), Invalid::Group),
        (frame(&[tag(7, 6), ok.clone()].concat()), Invalid::WireType),
        (frame(&[tag(7, 7), ok.clone()].concat()), Invalid::WireType),
        // Field number 0.
        (
            frame(&[vec![0x02, 0x00], ok.clone()].concat()),
            Invalid::FieldNumber,
        ),
        // A varint cut by the end of its message, one cut by the end of
        // the frame, and one of 11 bytes.
        (
            frame(&len(2, &[tag(4, 0), vec![0x80]].concat())),
            Invalid::Truncated,
        ),
        (
            frame(&[tag(4, 0), vec![0x80, 0x80]].concat()),
            Invalid::Truncated,
        ),
        (
            frame(&[tag(4, 0), vec![0xff; 10], vec![1]].concat()),
            Invalid::Varint,
        ),
        (
            frame(&[tag(4, 0), vec![0xff; 9], vec![2]].concat()),
            Invalid::Varint,
        ),
        // A length past the end of the frame, fixed fields cut short.
        (
            frame(&[tag(5, 2), varint(50), vec![0; 3]].concat()),
            Invalid::Truncated,
        ),
        (frame(&[tag(5, 1), vec![0; 7]].concat()), Invalid::Truncated),
        (frame(&[tag(5, 5), vec![0; 3]].concat()), Invalid::Truncated),
        // A tag cut by the end of the frame.
        (
            frame(&[ok.clone(), vec![0x80]].concat()),
            Invalid::Truncated,
        ),
    ];
    for (body, why) in cases {
        assert_eq!(verdict(V1, &body), Step::InvalidGrpc(why), "{body:?}");
    }
    // The body ends inside the frame header or the message.
    let body = frame(&ok);
    for cut in [1, 4, 5, body.len() - 1] {
        assert_eq!(
            run(V1, &[&body[..cut]]),
            Step::InvalidGrpc(Invalid::Truncated),
            "cut at {cut}"
        );
    }
    // A 10-byte varint carrying bit 63 is valid.
    let body = frame(&[tag(4, 0), vec![0xff; 9], vec![1], len(2, &len(3, b"t"))].concat());
    assert_eq!(verdict(V1, &body), Step::Decided(Verdict::Task("t".into())));
}

fn mint_and_check(c: Call, message_field: u64, body: &[u8]) {
    let Step::Decided(Verdict::MintGrpc(site)) = verdict(c, body) else {
        panic!("no mint site for {body:?}");
    };
    let id = "0f0e0d0c-0b0a-4908-8706-050403020100";
    let out = insert_context_id(body, &site, id).unwrap();
    // The new frame decides as a contextId at every split.
    assert_eq!(verdict(c, &out), Step::Decided(Verdict::Context(id.into())));
    // Every top-level field is unchanged except the Message, which
    // gained context_id as its last field and kept the rest.
    let before = fields(unframe(body));
    let after = fields(unframe(&out));
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        if b.0 == message_field && b.1 == 2 {
            assert_eq!(a.2, [b.2.clone(), len(2, id.as_bytes())].concat());
        } else {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn first_turns_are_minted_only_when_the_frame_is_whole() {
    for (c, field) in [(V0, 1u32), (V1, 2)] {
        let msg = message(&[len(1, b"m-1"), uint(4, 1), len(5, &len(1, b"hi")), noise()]);
        let tenant = if field == 2 { len(1, b"t") } else { vec![] };
        let body = frame(&[tenant, noise(), len(field, &msg), len(3, b"cfg")].concat());
        mint_and_check(c, u64::from(field), &body);
        // Not before the frame ends: the configuration after the
        // Message may still hold anything.
        let mut e = RequestExtractor::new(c, 64).unwrap();
        assert_eq!(e.feed(&body[..body.len() - 1]), Step::NeedMore);
        // An empty Message is a first turn too.
        mint_and_check(c, u64::from(field), &frame(&len(field, b"")));
    }
    // The Message length varint grows from one byte to two, and from
    // two to three.
    for n in [100usize, 16_300] {
        let msg = len(5, &vec![b'x'; n]);
        let body = frame(&len(2, &msg));
        mint_and_check(V1, 2, &body);
    }
    // No Message at all: nothing to mint into.
    assert_eq!(
        verdict(V1, &frame(&len(3, b"cfg"))),
        Step::Decided(Verdict::Absent)
    );
    // A malformed field after the Message stops the mint.
    let body = frame(&[len(2, &len(1, b"m")), tag(9, 3)].concat());
    assert_eq!(verdict(V1, &body), Step::InvalidGrpc(Invalid::Group));
}

#[test]
fn insert_refuses_a_site_that_does_not_match_the_body() {
    let body = frame(&[len(1, b"t"), len(2, &len(1, b"m"))].concat());
    let Step::Decided(Verdict::MintGrpc(good)) = verdict(V1, &body) else {
        panic!("no site");
    };
    assert!(insert_context_id(&body, &good, "c").is_some());
    for bad in [
        MintSite {
            frame_at: 1,
            ..good
        },
        MintSite {
            frame_len: good.frame_len + 1,
            ..good
        },
        MintSite {
            len_at: good.len_at - 1,
            ..good
        },
        MintSite {
            len_size: 2,
            ..good
        },
        MintSite {
            len: good.len + 1,
            ..good
        },
        MintSite { len_at: 2, ..good },
    ] {
        assert_eq!(insert_context_id(&body, &bad, "c"), None, "{bad:?}");
    }
    assert_eq!(insert_context_id(&body[..body.len() - 1], &good, "c"), None);
}

fn learn(c: Call, chunks: &[&[u8]]) -> Vec<(String, String)> {
    let mut l = ResponseLearner::new(c, 64).unwrap();
    let mut pairs = Vec::new();
    for chunk in chunks {
        l.feed(chunk, &mut |t, ctx| {
            pairs.push((t.to_string(), ctx.to_string()))
        });
    }
    pairs
}

fn learned_at_every_split(c: Call, body: &[u8]) -> Vec<(String, String)> {
    let whole = learn(c, &[body]);
    for at in 0..=body.len() {
        let (a, b) = body.split_at(at);
        assert_eq!(learn(c, &[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(learn(c, &bytes), whole);
    whole
}

fn pair(t: &str, c: &str) -> (String, String) {
    (t.to_string(), c.to_string())
}

#[test]
fn stream_responses_teach_each_frame_at_every_split() {
    let history = len(5, &[len(3, b"other-task"), len(2, b"other-ctx")].concat());
    let task = len(
        1,
        &[len(1, b"t-1"), noise(), len(2, b"c-1"), history].concat(),
    );
    let status = len(3, &[len(2, b"c-2"), len(1, b"t-2"), len(3, b"x")].concat());
    let artifact = len(4, &[len(1, b"t-3"), len(2, b"c-3")].concat());
    let message = len(2, &[len(1, b"m"), len(2, b"c-4"), len(3, b"t-4")].concat());
    let no_task = len(2, &[len(1, b"m"), len(2, b"c-5")].concat());
    let body = [
        frame(&task),
        frame(&status),
        frame(b""),
        frame(&artifact),
        frame(&no_task),
        frame(&message),
    ]
    .concat();
    for version in [Version::V0, Version::V1] {
        for op in [Operation::Stream, Operation::Resubscribe] {
            assert_eq!(
                learned_at_every_split(call(version, op), &body),
                vec![
                    pair("t-1", "c-1"),
                    pair("t-2", "c-2"),
                    pair("t-3", "c-3"),
                    pair("t-4", "c-4"),
                ]
            );
        }
    }
    // SendMessage answers a Task or a Message; an event shape there is
    // not read.
    let body = [frame(&task), frame(&status), frame(&message)].concat();
    assert_eq!(
        learned_at_every_split(V1, &body),
        vec![pair("t-1", "c-1"), pair("t-4", "c-4")]
    );
    // GetTask and CancelTask answer a bare Task.
    let bare = frame(&[len(1, b"t-9"), len(3, &uint(1, 3)), len(2, b"c-9")].concat());
    for op in [Operation::GetTask, Operation::CancelTask] {
        assert_eq!(
            learned_at_every_split(call(Version::V1, op), &bare),
            vec![pair("t-9", "c-9")]
        );
    }
    assert!(ResponseLearner::new(call(Version::V1, Operation::ListTasks), 64).is_none());
}

#[test]
fn learning_stops_at_an_unreadable_frame() {
    let good = frame(&len(1, &[len(1, b"t-1"), len(2, b"c-1")].concat()));
    let mut compressed = good.clone();
    compressed[0] = 1;
    let bad = frame(&[tag(1, 3)].concat());
    for broken in [compressed, bad] {
        let body = [good.clone(), broken, good.clone()].concat();
        assert_eq!(learned_at_every_split(V1, &body), vec![pair("t-1", "c-1")]);
    }
    // Any string is learned as it is (the header encodes it when routing);
    // an empty one, or one that is not UTF-8, is not.
    let body = frame(&len(1, &[len(1, b"t-1"), len(2, b"c\r\n")].concat()));
    assert_eq!(
        learned_at_every_split(V1, &body),
        vec![pair("t-1", "c\r\n")]
    );
    for context in [&b""[..], b"\xff"] {
        let body = frame(&len(1, &[len(1, b"t-1"), len(2, context)].concat()));
        assert!(learned_at_every_split(V1, &body).is_empty());
    }
    let mut l = ResponseLearner::new(V1, 64).unwrap();
    l.feed(&good[..3], &mut |_, _| {});
    assert!(!l.at_frame_boundary());
    l.feed(&good[3..], &mut |_, _| {});
    assert!(l.at_frame_boundary());
}
