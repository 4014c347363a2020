//! `Scheduler`: runs the pure policy against the store, one volume at a
//! time, and answers what the schedule of each volume is. It blocks (store
//! calls): async callers use `spawn_blocking`. The timer is in `timer.rs`.

use std::sync::Arc;

use parking_lot::Mutex;
use store::{Refusal, SnapshotInfo, SnapshotKind, StoreError};
use time::OffsetDateTime;
use tracing::{error, info, warn};

use super::config::{PolicyError, PolicyPatch, PolicySource, ScheduleConfig, validate_policy};
use super::policy::{RetentionPolicy, SnapshotFacts, decide, next_tick, parse_slot_name};
use super::saved::{SavedError, SavedPolicies};
use crate::error_chain::error_chain;
use crate::metrics::ScheduleMetrics;

/// What the scheduler needs of the store; `store::Store` is the real one,
/// tests use fakes that refuse.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Names of every volume and clone (not hidden origin nodes).
    fn volume_names(&self) -> Vec<String>;
    /// One volume's snapshots.
    fn snapshots(&self, volume: &str) -> Vec<SnapshotInfo>;
    /// Takes a scheduled snapshot named `name`.
    fn create_scheduled(
        &self,
        volume: &str,
        name: &str,
    ) -> Result<Result<SnapshotInfo, Refusal>, StoreError>;
    /// Deletes a snapshot; refused while held or cloned.
    fn delete_snapshot(&self, volume: &str, name: &str) -> Result<Result<(), Refusal>, StoreError>;
}

impl SnapshotStore for store::Store {
    fn volume_names(&self) -> Vec<String> {
        self.volumes().into_iter().map(|v| v.name).collect()
    }

    fn snapshots(&self, volume: &str) -> Vec<SnapshotInfo> {
        store::Store::snapshots(self, Some(volume))
    }

    fn create_scheduled(
        &self,
        volume: &str,
        name: &str,
    ) -> Result<Result<SnapshotInfo, Refusal>, StoreError> {
        self.create_snapshot(volume, Some(name), SnapshotKind::Scheduled)
    }

    fn delete_snapshot(&self, volume: &str, name: &str) -> Result<Result<(), Refusal>, StoreError> {
        store::Store::delete_snapshot(self, volume, name)
    }
}

/// One volume's schedule as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSchedule {
    /// The volume.
    pub volume: String,
    /// Its effective policy.
    pub policy: RetentionPolicy,
    /// The most specific layer that set it.
    pub source: PolicySource,
    /// When the timer runs next; `None` when the timer is off (`--no-schedule`).
    pub next_tick: Option<OffsetDateTime>,
    /// The newest scheduled snapshot's name.
    pub last_scheduled: Option<String>,
    /// How many scheduled snapshots the volume has.
    pub scheduled_count: usize,
}

/// What went wrong with one snapshot in a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickFailure {
    /// The snapshot's name.
    pub snapshot: String,
    /// True for a take, false for a prune.
    pub take: bool,
    /// The store's refusal or error.
    pub reason: String,
}

/// What one tick did to one volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeTick {
    /// The volume.
    pub volume: String,
    /// The scheduled snapshot taken, if one was due.
    pub taken: Option<String>,
    /// Scheduled snapshots deleted by retention.
    pub pruned: Vec<String>,
    /// Takes and prunes the store refused or failed.
    pub failures: Vec<TickFailure>,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// The time the policy ran at.
    pub now: OffsetDateTime,
    /// Every volume, in name order.
    pub volumes: Vec<VolumeTick>,
}

/// Setting or reading a schedule failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// No volume has that name.
    #[error("volume {0} not found")]
    NoSuchVolume(String),
    /// The resulting policy is not valid.
    #[error("invalid schedule for {volume}")]
    Policy {
        /// the volume
        volume: String,
        /// why
        #[source]
        source: PolicyError,
    },
    /// `schedules.json` could not be written.
    #[error("cannot save the schedule")]
    Saved(#[from] SavedError),
}

/// The schedule of every volume, and the runs of the policy.
pub struct Scheduler {
    store: Arc<dyn SnapshotStore>,
    config: ScheduleConfig,
    saved: Mutex<SavedPolicies>,
    /// One tick at a time (the timer and `POST /v1/schedule/tick`).
    running: Mutex<()>,
    timer: bool,
    metrics: Option<ScheduleMetrics>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("timer", &self.timer).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler over `store` with the config file's layer and the API
    /// layer; `timer` says whether the timer loop runs (for `next_tick`).
    pub fn new(
        store: Arc<dyn SnapshotStore>,
        config: ScheduleConfig,
        saved: SavedPolicies,
        timer: bool,
        metrics: Option<ScheduleMetrics>,
    ) -> Self {
        Self { store, config, saved: Mutex::new(saved), running: Mutex::new(()), timer, metrics }
    }

    /// `volume`'s effective policy and where it comes from.
    pub fn effective(&self, volume: &str) -> (RetentionPolicy, PolicySource) {
        let saved = self.saved.lock();
        self.config.resolve(volume, saved.get(volume))
    }

    /// Every volume's schedule, in name order.
    pub fn schedules(&self, now: OffsetDateTime) -> Vec<VolumeSchedule> {
        let mut names = self.store.volume_names();
        names.sort();
        names.into_iter().map(|v| self.describe(v, now)).collect()
    }

    /// One volume's schedule.
    pub fn schedule(
        &self,
        volume: &str,
        now: OffsetDateTime,
    ) -> Result<VolumeSchedule, ScheduleError> {
        if !self.store.volume_names().iter().any(|v| v == volume) {
            return Err(ScheduleError::NoSuchVolume(volume.to_owned()));
        }
        Ok(self.describe(volume.to_owned(), now))
    }

    /// Puts `patch`'s fields over `volume`'s API layer (fields it leaves out
    /// keep their value) and saves it.
    pub fn set(
        &self,
        volume: &str,
        patch: PolicyPatch,
        now: OffsetDateTime,
    ) -> Result<VolumeSchedule, ScheduleError> {
        if !self.store.volume_names().iter().any(|v| v == volume) {
            return Err(ScheduleError::NoSuchVolume(volume.to_owned()));
        }
        {
            let mut saved = self.saved.lock();
            let next = saved.get(volume).copied().unwrap_or_default().merged(&patch);
            let (policy, _) = self.config.resolve(volume, Some(&next));
            validate_policy(&policy)
                .map_err(|source| ScheduleError::Policy { volume: volume.to_owned(), source })?;
            saved.put(volume, Some(next))?;
        }
        info!(volume, ?patch, "schedule set");
        Ok(self.describe(volume.to_owned(), now))
    }

    /// Drops `volume`'s API layer: the config file and defaults apply again.
    /// Works for a deleted volume too, to clear what it left behind.
    pub fn reset(
        &self,
        volume: &str,
        now: OffsetDateTime,
    ) -> Result<VolumeSchedule, ScheduleError> {
        let exists = self.store.volume_names().iter().any(|v| v == volume);
        {
            let mut saved = self.saved.lock();
            if !exists && saved.get(volume).is_none() {
                return Err(ScheduleError::NoSuchVolume(volume.to_owned()));
            }
            saved.put(volume, None)?;
        }
        info!(volume, "schedule reset to the config file and defaults");
        Ok(self.describe(volume.to_owned(), now))
    }

    fn describe(&self, volume: String, now: OffsetDateTime) -> VolumeSchedule {
        let (policy, source) = self.effective(&volume);
        let snaps = self.store.snapshots(&volume);
        let scheduled: Vec<SnapshotFacts> =
            facts(&snaps).into_iter().filter(|f| f.scheduled).collect();
        let last_scheduled = scheduled.iter().max_by_key(|f| f.created).map(|f| f.name.clone());
        VolumeSchedule {
            volume,
            policy,
            source,
            next_tick: self.timer.then(|| next_tick(now)),
            last_scheduled,
            scheduled_count: scheduled.len(),
        }
    }

    /// Runs the policy once for every volume at `now`: takes the due
    /// snapshot, then prunes. A volume whose take failed is not pruned this
    /// time (the policy counted the new snapshot among those it keeps). A
    /// refused prune (a hold or a clone that appeared meanwhile) is logged
    /// and skipped.
    pub fn tick(&self, now: OffsetDateTime) -> TickReport {
        let _one = self.running.lock();
        let mut names = self.store.volume_names();
        names.sort();
        let volumes: Vec<VolumeTick> =
            names.into_iter().map(|v| self.tick_volume(v, now)).collect();
        if let Some(m) = &self.metrics {
            m.last_run.set(OffsetDateTime::now_utc().unix_timestamp());
            for v in &volumes {
                m.taken.inc_by(u64::from(v.taken.is_some()));
                m.pruned.inc_by(v.pruned.len() as u64);
                m.failures.inc_by(v.failures.len() as u64);
            }
        }
        TickReport { now, volumes }
    }

    fn tick_volume(&self, volume: String, now: OffsetDateTime) -> VolumeTick {
        let (policy, _) = self.effective(&volume);
        let decision = decide(now, &policy, &facts(&self.store.snapshots(&volume)));
        let mut out = VolumeTick { volume, ..VolumeTick::default() };
        let volume = out.volume.as_str();
        if let Some(name) = decision.take {
            let reason = match self.store.create_scheduled(volume, &name) {
                Ok(Ok(_)) => None,
                Ok(Err(refusal)) => Some(refusal.to_string()),
                Err(e) => Some(error_chain(&e)),
            };
            match reason {
                None => {
                    info!(snapshot = %format!("{volume}@{name}"), "scheduled snapshot taken");
                    out.taken = Some(name);
                }
                Some(reason) => {
                    error!(snapshot = %format!("{volume}@{name}"), %reason, "scheduled snapshot failed; not pruning this volume now");
                    out.failures.push(TickFailure { snapshot: name, take: true, reason });
                    return out;
                }
            }
        }
        for name in decision.prune {
            match self.store.delete_snapshot(volume, &name) {
                Ok(Ok(())) => {
                    info!(snapshot = %format!("{volume}@{name}"), "scheduled snapshot pruned");
                    out.pruned.push(name);
                }
                Ok(Err(refusal)) => {
                    warn!(snapshot = %format!("{volume}@{name}"), %refusal, "prune refused; keeping it");
                    out.failures.push(TickFailure {
                        snapshot: name,
                        take: false,
                        reason: refusal.to_string(),
                    });
                }
                Err(e) => {
                    let reason = error_chain(&e);
                    error!(snapshot = %format!("{volume}@{name}"), %reason, "prune failed");
                    out.failures.push(TickFailure { snapshot: name, take: false, reason });
                }
            }
        }
        out
    }
}

/// What the policy needs of each snapshot. A scheduled snapshot's time is
/// the slot its name stands for, not when the store took it: a snapshot
/// for 13:00 taken at 13:00:02 (or by a test at any real time) is 13:00's.
pub(crate) fn facts(snaps: &[SnapshotInfo]) -> Vec<SnapshotFacts> {
    snaps
        .iter()
        .map(|s| {
            let scheduled = s.kind == SnapshotKind::Scheduled;
            let taken = OffsetDateTime::from_unix_timestamp(s.created_unix)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let created = if scheduled { parse_slot_name(&s.name).unwrap_or(taken) } else { taken };
            SnapshotFacts {
                name: s.name.clone(),
                created,
                scheduled,
                held: s.held,
                has_clones: !s.clones.is_empty(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
