//! The states a circuit can be in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The state of a circuit.
///
/// `Closed`, `Open` and `HalfOpen` are driven by outcomes and time; `Isolated` and `Disabled`
/// are manual overrides that hold until [`CircuitBreaker::automatic`](crate::CircuitBreaker::automatic)
/// or [`CircuitBreaker::reset`](crate::CircuitBreaker::reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow; outcomes are measured and may open the circuit.
    Closed,
    /// Calls are rejected at once until the break ends.
    Open,
    /// A limited number of probe calls test whether the service has recovered.
    HalfOpen,
    /// Forced open by an operator: every call is rejected until the override is lifted.
    Isolated,
    /// Forced closed by an operator: every call is admitted and measured, nothing trips.
    Disabled,
}

impl CircuitState {
    /// Every state, in a fixed order (handy for exporting one series per state).
    pub const ALL: [CircuitState; 5] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::Isolated,
        CircuitState::Disabled,
    ];

    /// Whether calls may be admitted in this state (in half-open, only up to the probe limit).
    pub const fn allows_requests(self) -> bool {
        matches!(self, Self::Closed | Self::HalfOpen | Self::Disabled)
    }

    /// Whether the circuit is reporting trouble: open, half-open or isolated.
    pub const fn is_failure_state(self) -> bool {
        matches!(self, Self::Open | Self::HalfOpen | Self::Isolated)
    }

    /// The state's place in [`ALL`](Self::ALL).
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::Isolated => 3,
            Self::Disabled => 4,
        }
    }

    /// The state's name in `snake_case`, as used in logs, JSON and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Isolated => "isolated",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
