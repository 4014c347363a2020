//! The schedule DTOs of the admin API (the server's `admin::types`
//! `PolicyDto`, `ScheduleDto`, `SetScheduleRequest`, `TickDto`).

use serde::{Deserialize, Serialize};

/// A retention policy (see the server's `admin::types::PolicyDto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDto {
    /// Snapshots are taken every hour.
    pub enabled: bool,
    /// Hourly snapshots kept.
    pub hourly: u32,
    /// Daily snapshots kept.
    pub daily: u32,
    /// Weekly snapshots kept.
    pub weekly: u32,
    /// Monthly snapshots kept.
    pub monthly: u32,
}

/// One volume's snapshot schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDto {
    /// The volume.
    pub volume: String,
    /// Its effective policy.
    pub policy: PolicyDto,
    /// `default`, `config`, `config-volume` or `api`.
    pub source: String,
    /// When the timer runs next (RFC 3339); `None` when it is off.
    pub next_tick: Option<String>,
    /// The newest scheduled snapshot, `VOLUME@SLOT`.
    pub last_snapshot: Option<String>,
    /// How many scheduled snapshots the volume has.
    pub scheduled_snapshots: usize,
}

/// Fields to change in a volume's policy; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulePatch {
    /// Take snapshots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Hourly snapshots kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// Daily snapshots kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// Weekly snapshots kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// Monthly snapshots kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
}

/// A take or prune the store refused or failed during a tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickFailureDto {
    /// `VOLUME@SLOT`.
    pub snapshot: String,
    /// `take` or `prune`.
    pub action: String,
    /// The store's message.
    pub reason: String,
}

/// What one run of the policy did to one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeTickDto {
    /// The volume.
    pub volume: String,
    /// The snapshot taken.
    pub taken: Option<String>,
    /// Snapshots pruned.
    pub pruned: Vec<String>,
    /// Refusals and errors.
    pub failures: Vec<TickFailureDto>,
}

/// What one run of the policy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickDto {
    /// The time it ran at.
    pub now: String,
    /// Every volume.
    pub volumes: Vec<VolumeTickDto>,
}
