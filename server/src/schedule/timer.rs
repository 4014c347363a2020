//! The timer loop: run the scheduler at start (so a slot missed while the
//! server was down is taken now, once), then at every full hour until
//! shutdown. All decisions are the scheduler's; this only waits.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{debug, error};

use super::policy::next_tick;
use super::scheduler::Scheduler;

/// The longest single sleep: the wall clock is read again after it, so a
/// suspend or a clock step delays a tick by at most this much.
const MAX_NAP: Duration = Duration::from_secs(60);

/// Runs until `stop` turns true (or its sender is gone).
pub(crate) async fn run(scheduler: Arc<Scheduler>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let now = OffsetDateTime::now_utc();
        let s = scheduler.clone();
        match tokio::task::spawn_blocking(move || s.tick(now)).await {
            Ok(report) => debug!(volumes = report.volumes.len(), "schedule tick done"),
            Err(e) => error!(error = %e, "schedule tick panicked"),
        }
        let next = next_tick(now);
        loop {
            let left = next - OffsetDateTime::now_utc();
            if !left.is_positive() {
                break;
            }
            let nap = Duration::try_from(left).unwrap_or(MAX_NAP).min(MAX_NAP);
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }
}
