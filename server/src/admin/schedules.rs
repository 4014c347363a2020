//! `Schedules`: what the admin API needs of the snapshot scheduler, in wire
//! types. The implementation for `schedule::Scheduler` is the only admin
//! code that sees scheduler types; `schedule_error` is where its errors
//! become HTTP statuses. Every method blocks (store reads): call it from
//! `spawn_blocking`.

use axum::http::StatusCode;
use time::OffsetDateTime;

use super::catalog::rfc3339;
use super::error::ApiError;
use super::types::{
    PolicyDto, ScheduleDto, SetScheduleRequest, TickDto, TickFailureDto, VolumeTickDto,
};
use crate::error_chain::error_chain;
use crate::schedule::{PolicyPatch, ScheduleError, Scheduler, TickReport, VolumeSchedule};

/// The scheduler as the admin API sees it.
pub trait Schedules: Send + Sync + 'static {
    /// Every volume's schedule.
    fn list(&self, now: OffsetDateTime) -> Vec<ScheduleDto>;
    /// One volume's schedule.
    fn get(&self, volume: &str, now: OffsetDateTime) -> Result<ScheduleDto, ApiError>;
    /// Sets some fields of a volume's policy.
    fn set(
        &self,
        volume: &str,
        request: SetScheduleRequest,
        now: OffsetDateTime,
    ) -> Result<ScheduleDto, ApiError>;
    /// Back to the config file and defaults.
    fn reset(&self, volume: &str, now: OffsetDateTime) -> Result<ScheduleDto, ApiError>;
    /// Runs the policy for every volume as of `now`.
    fn tick(&self, now: OffsetDateTime) -> TickDto;
}

impl Schedules for Scheduler {
    fn list(&self, now: OffsetDateTime) -> Vec<ScheduleDto> {
        self.schedules(now).into_iter().map(schedule_dto).collect()
    }

    fn get(&self, volume: &str, now: OffsetDateTime) -> Result<ScheduleDto, ApiError> {
        self.schedule(volume, now).map(schedule_dto).map_err(|e| schedule_error(&e))
    }

    fn set(
        &self,
        volume: &str,
        r: SetScheduleRequest,
        now: OffsetDateTime,
    ) -> Result<ScheduleDto, ApiError> {
        let patch = PolicyPatch {
            enabled: r.enabled,
            hourly: r.hourly,
            daily: r.daily,
            weekly: r.weekly,
            monthly: r.monthly,
        };
        Scheduler::set(self, volume, patch, now).map(schedule_dto).map_err(|e| schedule_error(&e))
    }

    fn reset(&self, volume: &str, now: OffsetDateTime) -> Result<ScheduleDto, ApiError> {
        Scheduler::reset(self, volume, now).map(schedule_dto).map_err(|e| schedule_error(&e))
    }

    fn tick(&self, now: OffsetDateTime) -> TickDto {
        tick_dto(Scheduler::tick(self, now))
    }
}

/// The one place a scheduler error becomes an HTTP status.
pub(crate) fn schedule_error(err: &ScheduleError) -> ApiError {
    match err {
        ScheduleError::NoSuchVolume(_) => ApiError::not_found(err.to_string()),
        ScheduleError::Policy { source, .. } => ApiError::bad_request(format!("{err}: {source}")),
        // Writing schedules.json failed: a server fault, details in the log.
        _ => {
            let chain = error_chain(err);
            tracing::error!(error = %chain, "schedule change failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, chain)
        }
    }
}

fn schedule_dto(s: VolumeSchedule) -> ScheduleDto {
    let p = s.policy;
    ScheduleDto {
        policy: PolicyDto {
            enabled: p.enabled,
            hourly: p.hourly,
            daily: p.daily,
            weekly: p.weekly,
            monthly: p.monthly,
        },
        source: s.source.as_str().to_owned(),
        next_tick: s.next_tick.map(|t| rfc3339(t.unix_timestamp())),
        last_snapshot: s.last_scheduled.map(|n| format!("{}@{n}", s.volume)),
        scheduled_snapshots: s.scheduled_count,
        volume: s.volume,
    }
}

fn tick_dto(report: TickReport) -> TickDto {
    TickDto {
        now: rfc3339(report.now.unix_timestamp()),
        volumes: report
            .volumes
            .into_iter()
            .map(|v| {
                let export = |n: &str| format!("{}@{n}", v.volume);
                VolumeTickDto {
                    taken: v.taken.as_deref().map(export),
                    pruned: v.pruned.iter().map(|n| export(n)).collect(),
                    failures: v
                        .failures
                        .iter()
                        .map(|f| TickFailureDto {
                            snapshot: export(&f.snapshot),
                            action: if f.take { "take" } else { "prune" }.to_owned(),
                            reason: f.reason.clone(),
                        })
                        .collect(),
                    volume: v.volume,
                }
            })
            .collect(),
    }
}
