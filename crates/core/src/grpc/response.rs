//! The response side of the gRPC binding: task -> context pairs learned
//! from response frames as they stream past.

use super::header_value;
use super::Call;
use crate::a2a::Operation;
use crate::proto::wire::{Event, Flow, Reader};

/// Reads the frames of a gRPC response as they stream past and yields the
/// (taskId, contextId) pairs they name; never holds the response. After an
/// unreadable frame (compressed, malformed) it reads nothing more, since the
/// next frame boundary is unknown.
pub struct ResponseLearner {
    reader: Reader,
    slots: Vec<Option<String>>,
    frame_learned: bool,
}

/// Response paths in pairs: path `2i` a task id, `2i + 1` its context id.
/// SendMessageResponse and StreamResponse: `task` = 1 (Task id = 1,
/// context_id = 2), `message` = 2 (task_id = 3, context_id = 2);
/// StreamResponse also `status_update` = 3 and `artifact_update` = 4
/// (task_id = 1, context_id = 2). The same numbers in v0.3 and v1.0.
const SEND_RESPONSE: &[&[u32]] = &[&[1, 1], &[1, 2], &[2, 3], &[2, 2]];
const STREAM_RESPONSE: &[&[u32]] = &[
    &[1, 1],
    &[1, 2],
    &[2, 3],
    &[2, 2],
    &[3, 1],
    &[3, 2],
    &[4, 1],
    &[4, 2],
];
/// GetTask and CancelTask answer a bare Task.
const TASK_RESPONSE: &[&[u32]] = &[&[1], &[2]];

impl ResponseLearner {
    /// `None` for calls whose responses name no task.
    pub fn new(call: Call, max_value_bytes: usize) -> Option<Self> {
        let targets = match call.operation {
            Operation::Send => SEND_RESPONSE,
            Operation::Stream | Operation::Resubscribe => STREAM_RESPONSE,
            Operation::GetTask | Operation::CancelTask => TASK_RESPONSE,
            _ => return None,
        };
        Some(ResponseLearner {
            reader: Reader::new(targets, max_value_bytes),
            slots: vec![None; targets.len()],
            frame_learned: false,
        })
    }

    /// Feeds the next response bytes; `learned` receives each pair found
    /// (at most one per frame).
    pub fn feed(&mut self, chunk: &[u8], learned: &mut dyn FnMut(&str, &str)) {
        let slots = &mut self.slots;
        let frame_learned = &mut self.frame_learned;
        self.reader.feed(chunk, &mut |event| {
            match event {
                Event::FrameEnd { .. } => {
                    slots.iter_mut().for_each(|s| *s = None);
                    *frame_learned = false;
                }
                Event::Str { target, value } if !*frame_learned => {
                    if let (Ok(v), Some(slot)) = (header_value(value), slots.get_mut(target)) {
                        slot.get_or_insert(v);
                    }
                    let pair = target / 2 * 2;
                    if let (Some(Some(task)), Some(Some(context))) =
                        (slots.get(pair), slots.get(pair + 1))
                    {
                        learned(task, context);
                        *frame_learned = true;
                    }
                }
                _ => {}
            }
            Flow::Continue
        });
    }

    /// Whether the stream so far ended on a frame boundary (for tests).
    pub fn at_frame_boundary(&self) -> bool {
        self.reader.at_frame_boundary()
    }
}
