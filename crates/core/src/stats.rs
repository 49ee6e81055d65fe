//! The filter's counters, as Envoy shows them at its admin `/stats`.
//!
//! Every request the filter inspects ends in exactly one outcome counter
//! (found, minted, task routed, task routed by its id, task unknown, absent, invalid value, invalid
//! JSON, scan limit, aborted); requests it does not inspect count as
//! passthrough.
//! `client_header_kept`, `task_learned` and `task_evicted` count events
//! beside those outcomes.

/// One counter. The discriminant indexes the root context's metric ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// The body's contextId was set as the header.
    ContextFound,
    /// An A2A body without a contextId, a taskId or anything to mint.
    ContextAbsent,
    /// No contextId in the body; the client's own header was left in place.
    ClientHeaderKept,
    /// The read stopped at `max_scan_bytes` (or at what the host showed)
    /// before the body was known to end, with no verdict in the bytes read.
    ScanLimit,
    /// The body is not valid JSON.
    InvalidJson,
    /// A contextId or taskId that cannot be a header value.
    InvalidValue,
    /// Not an A2A request with a JSON body: not inspected.
    Passthrough,
    /// A first turn got a fresh contextId.
    Minted,
    /// A taskId -> contextId pair was learned from a response.
    TaskLearned,
    /// A task-only call was routed by its learned context.
    TaskRouted,
    /// A task-only call whose task was never learned (or expired).
    TaskUnknown,
    /// A learned task was overwritten to make room.
    TaskEvicted,
    /// The stream ended (client gone, reset) before the body was decided.
    Aborted,
    /// A task-only call was routed by the contextId its task id carries
    /// (`task_id`), with no learned task.
    TaskIdRouted,
}

impl Counter {
    pub const ALL: [Counter; 14] = [
        Counter::ContextFound,
        Counter::ContextAbsent,
        Counter::ClientHeaderKept,
        Counter::ScanLimit,
        Counter::InvalidJson,
        Counter::InvalidValue,
        Counter::Passthrough,
        Counter::Minted,
        Counter::TaskLearned,
        Counter::TaskRouted,
        Counter::TaskUnknown,
        Counter::TaskEvicted,
        Counter::Aborted,
        Counter::TaskIdRouted,
    ];

    /// The stat name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::ContextFound => "a2a_affinity.context_found",
            Counter::ContextAbsent => "a2a_affinity.context_absent",
            Counter::ClientHeaderKept => "a2a_affinity.client_header_kept",
            Counter::ScanLimit => "a2a_affinity.scan_limit",
            Counter::InvalidJson => "a2a_affinity.invalid_json",
            Counter::InvalidValue => "a2a_affinity.invalid_value",
            Counter::Passthrough => "a2a_affinity.passthrough",
            Counter::Minted => "a2a_affinity.minted",
            Counter::TaskLearned => "a2a_affinity.task_learned",
            Counter::TaskRouted => "a2a_affinity.task_routed",
            Counter::TaskUnknown => "a2a_affinity.task_unknown",
            Counter::TaskEvicted => "a2a_affinity.task_evicted",
            Counter::Aborted => "a2a_affinity.aborted",
            Counter::TaskIdRouted => "a2a_affinity.task_id_routed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How an inspected request ended, or that it was not inspected: each
/// request gets exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    ContextFound,
    Minted,
    TaskRouted,
    TaskIdRouted,
    TaskUnknown,
    ContextAbsent,
    InvalidValue,
    InvalidJson,
    ScanLimit,
    Aborted,
    Passthrough,
}

impl Outcome {
    /// Every outcome, the inspected ones first.
    pub const ALL: [Outcome; 11] = [
        Outcome::ContextFound,
        Outcome::Minted,
        Outcome::TaskRouted,
        Outcome::TaskIdRouted,
        Outcome::TaskUnknown,
        Outcome::ContextAbsent,
        Outcome::InvalidValue,
        Outcome::InvalidJson,
        Outcome::ScanLimit,
        Outcome::Aborted,
        Outcome::Passthrough,
    ];

    pub fn counter(self) -> Counter {
        match self {
            Outcome::ContextFound => Counter::ContextFound,
            Outcome::Minted => Counter::Minted,
            Outcome::TaskRouted => Counter::TaskRouted,
            Outcome::TaskIdRouted => Counter::TaskIdRouted,
            Outcome::TaskUnknown => Counter::TaskUnknown,
            Outcome::ContextAbsent => Counter::ContextAbsent,
            Outcome::InvalidValue => Counter::InvalidValue,
            Outcome::InvalidJson => Counter::InvalidJson,
            Outcome::ScanLimit => Counter::ScanLimit,
            Outcome::Aborted => Counter::Aborted,
            Outcome::Passthrough => Counter::Passthrough,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_counter_in_index_order_with_unique_names() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert!(c.name().starts_with("a2a_affinity."));
        }
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }
}
