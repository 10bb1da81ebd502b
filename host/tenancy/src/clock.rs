//! The time that schedules work (webhook retries, disable windows): the system clock, which
//! tests may move forward so that rules spanning hours run in milliseconds. Everything
//! that waits on this clock wakes when it moves.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// The system clock's milliseconds since the Unix epoch (record timestamps, key creation).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub struct Clock {
    offset_ms: AtomicI64,
    moved: watch::Sender<i64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset_ms: AtomicI64::new(0),
            moved: watch::Sender::new(0),
        }
    }
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Move the clock forward (tests).
    pub fn advance(&self, by: Duration) {
        let total = self
            .offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed)
            + by.as_millis() as i64;
        self.moved.send_replace(total);
    }

    /// Wait until this clock reads `at_ms` or later.
    pub async fn sleep_until(&self, at_ms: i64) {
        let mut moved = self.moved.subscribe();
        loop {
            let now = self.now_ms();
            if now >= at_ms {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis((at_ms - now) as u64)) => {}
                _ = moved.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn moving_the_clock_wakes_sleepers() {
        let clock = std::sync::Arc::new(Clock::default());
        let at = clock.now_ms() + 3_600_000;
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(at).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(3_600));
        tokio::time::timeout(Duration::from_secs(2), sleeper)
            .await
            .expect("woke")
            .unwrap();
    }
}
