//! The protobuf frame walker (`proto::wire::Reader`) against a reference
//! walk of the whole input: the same events in the same order, the same
//! end (between frames, inside one, or the same error), whatever the
//! chunking. Field paths are those the gRPC binding watches.
#![no_main]

use a2a_affinity_fuzz::{chunks, core_walk, cuts, reference_walk, Control};

/// The watched paths of the gRPC request and response readers.
const TARGETS: &[&[&[u32]]] = &[
    &[&[1], &[1, 2], &[1, 3]],
    &[&[2], &[2, 2], &[2, 3]],
    &[
        &[1, 1],
        &[1, 2],
        &[2, 3],
        &[2, 2],
        &[3, 1],
        &[3, 2],
        &[4, 1],
        &[4, 2],
    ],
    &[&[1], &[2]],
    &[&[3]],
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut control = Control::new(data);
    let targets = TARGETS[usize::from(control.byte()) % TARGETS.len()];
    let max_value = usize::from(control.byte() % 64);
    let count = usize::from(control.byte() % 12);
    let seed = u32::from(control.u16());
    let input = control.rest();
    let whole = core_walk(targets, max_value, &[input]);
    let cut = chunks(input, &cuts(input.len(), count, seed));
    let chunked = core_walk(targets, max_value, &cut);
    assert_eq!(whole, chunked, "chunking changed the walk: {cut:?}");
    let reference = reference_walk(targets, max_value, input);
    assert_eq!(
        whole, reference,
        "walker and reference disagree on {input:?}"
    );
});
