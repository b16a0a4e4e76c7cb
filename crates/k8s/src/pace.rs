//! How often the controller and the agent take a round: at most one per
//! [`SETTLE`], so that a burst of events settles into the next round,
//! while an event after a quiet spell is taken at once — a new pod's Port
//! waits for neither loop more than it must.

use std::time::{Duration, Instant};

/// The least time from the start of one round to the start of the next.
pub const SETTLE: Duration = Duration::from_millis(100);

/// How long a round that an event asks for still waits, the last round
/// having started at `last`.
pub fn wait_after(last: Option<Instant>, now: Instant) -> Duration {
    last.map_or(Duration::ZERO, |l| {
        SETTLE.saturating_sub(now.saturating_duration_since(l))
    })
}

/// Waits what [`wait_after`] says.
pub async fn settle(last: Option<Instant>) {
    let wait = wait_after(last, Instant::now());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_after_a_quiet_spell_goes_at_once_and_one_in_a_burst_waits() {
        let start = Instant::now();
        assert_eq!(wait_after(None, start), Duration::ZERO);
        let later = |ms| start + Duration::from_millis(ms);
        assert_eq!(wait_after(Some(start), later(500)), Duration::ZERO);
        assert_eq!(wait_after(Some(start), later(100)), Duration::ZERO);
        assert_eq!(
            wait_after(Some(start), later(30)),
            Duration::from_millis(70)
        );
    }
}
