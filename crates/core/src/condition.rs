//! Conditions an operator is told about once when they start and once when they end, not at
//! every check: a disk short of room for a snapshot, a clock off the replica set's time.

/// How a condition checked again and again changed since the last check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Starts,
    Ends,
}

impl Change {
    /// The change from `was` (the condition held at the last check) to `now`, if any.
    pub fn between(was: bool, now: bool) -> Option<Change> {
        match (was, now) {
            (false, true) => Some(Change::Starts),
            (true, false) => Some(Change::Ends),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_start_and_an_end_are_changes() {
        assert_eq!(Change::between(false, true), Some(Change::Starts));
        assert_eq!(Change::between(true, true), None);
        assert_eq!(Change::between(true, false), Some(Change::Ends));
        assert_eq!(Change::between(false, false), None);
    }
}
