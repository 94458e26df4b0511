//! Simulated time: integer nanoseconds, so that event ordering is exact.

use std::fmt;

/// A point in simulated time, nanoseconds since the run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(pub u64);

impl SimTime {
    /// The start of the run.
    pub const ZERO: SimTime = SimTime(0);

    /// Converts seconds (as the cost model gives them) to simulated time, rounding to the nanosecond.
    pub fn from_secs(seconds: f64) -> SimTime {
        SimTime((seconds.max(0.0) * 1e9).round() as u64)
    }

    /// This time plus a duration in seconds.
    pub fn after_secs(self, seconds: f64) -> SimTime {
        SimTime(self.0 + SimTime::from_secs(seconds).0)
    }

    /// Seconds since the start.
    pub fn as_secs(self) -> f64 {
        self.0 as f64 * 1e-9
    }

    /// Milliseconds since the start.
    pub fn as_ms(self) -> f64 {
        self.0 as f64 * 1e-6
    }

    /// Milliseconds from `earlier` to this time (0 when `earlier` is later).
    pub fn ms_since(self, earlier: SimTime) -> f64 {
        self.0.saturating_sub(earlier.0) as f64 * 1e-6
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}ms", self.as_ms())
    }
}
