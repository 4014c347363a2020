//! Scheduled snapshots: the retention policy as a pure function
//! (`policy`), where each volume's policy comes from (`config`, `saved`),
//! the scheduler that applies it to the store (`scheduler`) and the timer
//! loop that runs it every hour (`timer`).
//!
//! ```text
//!   timer (tokio, hourly) ──┐
//!   POST /v1/schedule/tick ─┴─▶ Scheduler::tick ─▶ policy::decide ─▶ store: take, prune
//!                                   │
//!      default < [schedule] < [schedule.volumes.NAME] < DATA/schedules.json (API)
//! ```

mod config;
mod policy;
mod saved;
mod scheduler;
pub(crate) mod timer;

pub use config::{
    MAX_KEEP, PolicyError, PolicyPatch, PolicySource, ScheduleConfig, validate_policy,
};
pub use policy::{
    Decision, RetentionPolicy, SnapshotFacts, current_slot, decide, next_tick, parse_slot_name,
    slot_name,
};
pub use saved::{SCHEDULES_FILE, SavedError, SavedPolicies};
pub use scheduler::{
    ScheduleError, Scheduler, SnapshotStore, TickFailure, TickReport, VolumeSchedule, VolumeTick,
};
