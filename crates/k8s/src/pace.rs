//! How soon the controller and the agent take a round that an event asks
//! for: after a pause as long as the last round took (twice its length
//! from its start), at most [`SETTLE`] from its start. A cheap round's
//! successor goes at once — a new pod's Port waits for no fixed pacing —
//! while a loop whose rounds are costly spends at most half its time in
//! them, and a burst of events gathers into the next round.

use std::time::{Duration, Instant};

/// The most a round waits after the start of the one before.
pub const SETTLE: Duration = Duration::from_millis(100);

/// A round: when it started and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    pub started: Instant,
    pub took: Duration,
}

impl Round {
    /// The round that started at `started` and ends now.
    pub fn ended(started: Instant) -> Self {
        Self {
            started,
            took: started.elapsed(),
        }
    }
}

/// How long a round that an event asks for at `now` still waits.
pub fn wait_after(last: Option<Round>, now: Instant) -> Duration {
    last.map_or(Duration::ZERO, |l| {
        let spacing = (l.took * 2).min(SETTLE);
        (l.started + spacing).saturating_duration_since(now)
    })
}

/// Waits what [`wait_after`] says.
pub async fn settle(last: Option<Round>) {
    let wait = wait_after(last, Instant::now());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_waits_as_long_as_the_last_took_and_never_more_than_settle() {
        let start = Instant::now();
        let later = |ms| start + Duration::from_millis(ms);
        let took = |ms| Round {
            started: start,
            took: Duration::from_millis(ms),
        };
        assert_eq!(wait_after(None, start), Duration::ZERO);
        // A cheap round: its successor goes once it is done.
        assert_eq!(
            wait_after(Some(took(1)), later(1)),
            Duration::from_millis(1)
        );
        assert_eq!(wait_after(Some(took(1)), later(5)), Duration::ZERO);
        // A costly one: as long again.
        assert_eq!(
            wait_after(Some(took(30)), later(30)),
            Duration::from_millis(30)
        );
        // A very costly one: at most SETTLE from its start.
        assert_eq!(wait_after(Some(took(400)), later(400)), Duration::ZERO);
        assert_eq!(
            wait_after(Some(took(80)), later(80)),
            Duration::from_millis(20)
        );
    }
}
