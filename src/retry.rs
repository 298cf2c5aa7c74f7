//! Trying something again until it answers or a deadline passes.
//!
//! Several steps wait on the kernel or another process for a bounded time:
//! a process to exit, a lock to free, a backing to be released, a resized
//! device to show its new size. They share one shape — try, and if the
//! answer is "not yet", sleep a little and try again, until a last try at
//! the deadline that must answer — so it is written once, here.

use std::time::{Duration, Instant};

/// Call `attempt` every `every` until it answers (`Some`), for at most
/// `timeout`. `attempt` is told whether this is its last try (the deadline
/// has passed); a last try must answer. Always tries at least once.
pub fn until<T>(
    timeout: Duration,
    every: Duration,
    mut attempt: impl FnMut(bool) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = Instant::now() >= deadline;
        if let Some(answer) = attempt(last) {
            return answer;
        }
        assert!(!last, "a last try must answer");
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_soon_as_it_can() {
        let mut tries = 0;
        let answer = until(Duration::from_secs(10), Duration::ZERO, |_| {
            tries += 1;
            (tries == 3).then_some(tries)
        });
        assert_eq!(answer, 3);
    }

    #[test]
    fn a_deadline_forces_the_last_try() {
        let mut tries = 0;
        let answer = until(
            Duration::from_millis(30),
            Duration::from_millis(5),
            |last| {
                tries += 1;
                last.then_some("gave up")
            },
        );
        assert_eq!(answer, "gave up");
        assert!(tries >= 2, "tried again before the deadline ({tries})");
    }

    #[test]
    fn no_time_still_tries_once() {
        assert_eq!(
            until(Duration::ZERO, Duration::ZERO, |last| last.then_some(1)),
            1
        );
    }
}
