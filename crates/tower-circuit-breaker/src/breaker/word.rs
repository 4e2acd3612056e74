//! The state word: the one atomic that the closed-state path reads and writes.
//!
//! ```text
//!  63            27 26                 3 2        0
//! +----------------+--------------------+----------+
//! |   generation   | consecutive fails  |   state  |
//! +----------------+--------------------+----------+
//! ```
//!
//! Every transition stores a new word with the generation plus one and a zero count, under the
//! breaker's lock. The generation has 37 bits: it comes back to a value only after 2^37
//! (1.4 × 10^11) transitions, four years of a transition every millisecond (an automatic cycle
//! waits out a break each time). A call's outcome is checked against it, and a probe's release
//! also checks that the probe still holds its slot, so even a ticket that lived through a wrap
//! frees nothing it does not hold. Outside the lock the word changes only by compare-and-swap of the count, so a
//! count update from an older generation can never land on a newer one, and the failure that
//! reaches the threshold is the only one that goes to the lock to open the circuit.

use crate::CircuitState;

pub(crate) const CLOSED: u64 = 0;
pub(crate) const OPEN: u64 = 1;
pub(crate) const HALF_OPEN: u64 = 2;
pub(crate) const ISOLATED: u64 = 3;
pub(crate) const DISABLED: u64 = 4;

const TAG_MASK: u64 = 0x7;
const COUNT_SHIFT: u32 = 3;
pub(crate) const COUNT_MAX: u32 = crate::config::MAX_FAILURE_THRESHOLD;
const COUNT_MASK: u64 = (COUNT_MAX as u64) << COUNT_SHIFT;
/// Where the generation starts, in the word and in a ticket's `meta`.
pub(crate) const GENERATION_SHIFT: u32 = 27;
/// The generation's bits.
pub(crate) const GENERATION_BITS: u32 = 64 - GENERATION_SHIFT;
const GENERATION_MAX: u64 = (1 << GENERATION_BITS) - 1;

// The count fits between the tag and the generation.
const _: () = assert!((COUNT_MAX as u64) < (1 << (GENERATION_SHIFT - COUNT_SHIFT)));

pub(crate) const fn pack(generation: u64, tag: u64, count: u32) -> u64 {
    (generation << GENERATION_SHIFT) | ((count as u64) << COUNT_SHIFT) | tag
}

pub(crate) const fn tag(word: u64) -> u64 {
    word & TAG_MASK
}

#[allow(clippy::cast_possible_truncation)] // masked to 24 bits
pub(crate) const fn count(word: u64) -> u32 {
    ((word & COUNT_MASK) >> COUNT_SHIFT) as u32
}

pub(crate) const fn with_count(word: u64, count: u32) -> u64 {
    (word & !COUNT_MASK) | ((count as u64) << COUNT_SHIFT)
}

pub(crate) const fn generation(word: u64) -> u64 {
    word >> GENERATION_SHIFT
}

/// The generation after `word`'s, wrapping after 2^37 transitions.
pub(crate) const fn next_generation(word: u64) -> u64 {
    (generation(word) + 1) & GENERATION_MAX
}

pub(crate) const fn same_generation(a: u64, b: u64) -> bool {
    generation(a) == generation(b)
}

/// Whether calls in this state are admitted without taking the lock.
pub(crate) const fn admits_freely(word: u64) -> bool {
    matches!(tag(word), CLOSED | DISABLED)
}

pub(crate) const fn state(word: u64) -> CircuitState {
    match tag(word) {
        OPEN => CircuitState::Open,
        HALF_OPEN => CircuitState::HalfOpen,
        ISOLATED => CircuitState::Isolated,
        DISABLED => CircuitState::Disabled,
        _ => CircuitState::Closed,
    }
}

pub(crate) const fn tag_of(state: CircuitState) -> u64 {
    match state {
        CircuitState::Closed => CLOSED,
        CircuitState::Open => OPEN,
        CircuitState::HalfOpen => HALF_OPEN,
        CircuitState::Isolated => ISOLATED,
        CircuitState::Disabled => DISABLED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_without_touching_each_other() {
        let word = pack(GENERATION_MAX, HALF_OPEN, COUNT_MAX);
        assert_eq!(generation(word), GENERATION_MAX);
        assert_eq!(tag(word), HALF_OPEN);
        assert_eq!(count(word), COUNT_MAX);
        let word = with_count(word, 7);
        assert_eq!(
            (generation(word), tag(word), count(word)),
            (GENERATION_MAX, HALF_OPEN, 7)
        );
    }

    #[test]
    fn generation_wraps_instead_of_overflowing() {
        assert_eq!(next_generation(pack(GENERATION_MAX, OPEN, 3)), 0);
        // Far from the 32 bits it once had: 2^32 transitions do not come back to the start.
        assert_eq!(generation(pack(1 << 32, CLOSED, 0)), 1 << 32);
    }

    #[test]
    fn every_state_has_its_own_tag() {
        for state in CircuitState::ALL {
            assert_eq!(super::state(pack(1, tag_of(state), 0)), state);
        }
    }
}
