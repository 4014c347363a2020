//! The snapshot policy as a pure function of the clock and the snapshot
//! list: which snapshot to take now and which scheduled snapshots to prune.
//! No IO and no clock reads here, so a test can replay days in milliseconds.
//!
//! Retention is sanoid-style: keep the newest snapshot of each of the last
//! N hours, and the oldest snapshot of each of the last N days, ISO weeks and
//! months (the oldest, so the snapshot that stands for a day does not move
//! as the day goes on). Manual, held and cloned snapshots are never pruned.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, Time};

/// How many snapshots of each period to keep, and whether to take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicy {
    /// Take a snapshot every hour at minute 0 (UTC).
    pub enabled: bool,
    /// Newest snapshots of distinct hours to keep.
    pub hourly: u32,
    /// Days to keep one snapshot of.
    pub daily: u32,
    /// ISO weeks to keep one snapshot of.
    pub weekly: u32,
    /// Months to keep one snapshot of.
    pub monthly: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self { enabled: true, hourly: 24, daily: 7, weekly: 4, monthly: 0 }
    }
}

/// What the policy needs to know of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFacts {
    /// The snapshot's name (the part after `@`).
    pub name: String,
    /// When it was taken.
    pub created: OffsetDateTime,
    /// Taken by the schedule (only those are ever pruned).
    pub scheduled: bool,
    /// Held by an operator.
    pub held: bool,
    /// Clones depend on it.
    pub has_clones: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Take a scheduled snapshot with this name (the slot's UTC time).
    pub take: Option<String>,
    /// Delete these scheduled snapshots.
    pub prune: Vec<String>,
}

/// The start of the hour `now` falls in: the slot a snapshot is due for.
pub fn current_slot(now: OffsetDateTime) -> OffsetDateTime {
    let now = now.to_offset(time::UtcOffset::UTC);
    now.replace_time(Time::from_hms(now.hour(), 0, 0).unwrap_or(Time::MIDNIGHT))
}

/// The name of a scheduled snapshot for `slot`, e.g. `2026-11-24T13:00Z`.
pub fn slot_name(slot: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}Z",
        slot.year(),
        u8::from(slot.month()),
        slot.day(),
        slot.hour(),
        slot.minute()
    )
}

/// The slot a scheduled snapshot's name stands for: the inverse of
/// [`slot_name`]. `None` for any other name (manual names, `-2` suffixes).
pub fn parse_slot_name(name: &str) -> Option<OffsetDateTime> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]Z");
    let t = time::PrimitiveDateTime::parse(name, &fmt).ok()?.assume_utc();
    // Only the canonical spelling: "2026-11-24T13:05Z" is not a slot.
    (current_slot(t) == t && slot_name(t) == name).then_some(t)
}

/// The next time the policy should run after `now`: the next full hour.
pub fn next_tick(now: OffsetDateTime) -> OffsetDateTime {
    current_slot(now) + Duration::HOUR
}

/// Decides for one volume. `snapshots` may come in any order and include
/// manual ones. A missed slot (the server was down) is taken once, at the
/// current slot: hours that passed while down are not back-filled. The
/// slot's snapshot is taken only if the policy would keep it.
pub fn decide(
    now: OffsetDateTime,
    policy: &RetentionPolicy,
    snapshots: &[SnapshotFacts],
) -> Decision {
    let slot = current_slot(now);
    let mut scheduled: Vec<&SnapshotFacts> = snapshots.iter().filter(|s| s.scheduled).collect();
    scheduled.sort_by_key(|s| std::cmp::Reverse(s.created)); // newest first
    // Buckets are UTC hours, days, weeks and months whatever offset a time came with.
    let utc = |t: OffsetDateTime| t.to_offset(time::UtcOffset::UTC);

    let mut decision = Decision::default();
    let name = slot_name(slot);
    let due = policy.enabled
        && !scheduled.iter().any(|s| s.created >= slot)
        && !snapshots.iter().any(|s| s.name == name);
    let mut candidates: Vec<(OffsetDateTime, &str)> =
        scheduled.iter().map(|s| (utc(s.created), s.name.as_str())).collect();
    if due {
        // Newer than every scheduled snapshot (none is at or after `slot`),
        // so it goes first; it counts at its slot's time, as its name says.
        candidates.insert(0, (slot, name.as_str()));
    }

    let mut keep = std::collections::HashSet::new();
    keep_newest_per(&candidates, policy.hourly, |t| (t.date(), t.hour(), 0), &mut keep);
    keep_oldest_per(&candidates, policy.daily, |t| (t.year(), t.ordinal(), 0), &mut keep);
    keep_oldest_per(
        &candidates,
        policy.weekly,
        |t| {
            let (y, w, _) = t.to_iso_week_date();
            (y, u16::from(w), 0)
        },
        &mut keep,
    );
    keep_oldest_per(
        &candidates,
        policy.monthly,
        |t| (t.year(), u16::from(u8::from(t.month())), 0),
        &mut keep,
    );

    // Take it only if some period keeps it (with `hourly = 0, daily = 7` that
    // is the day's first slot), so nothing is taken only to be pruned an hour
    // later. Leaving it out changes nothing else: a snapshot the policy does
    // not keep shares each of its buckets with an older one.
    if due && keep.contains(name.as_str()) {
        decision.take = Some(name.clone());
    }
    for s in scheduled {
        if !keep.contains(s.name.as_str()) && !s.held && !s.has_clones {
            decision.prune.push(s.name.clone());
        }
    }
    decision
}

/// Keeps the newest snapshot in each of the newest `n` buckets.
fn keep_newest_per<'a, K: PartialEq>(
    newest_first: &[(OffsetDateTime, &'a str)],
    n: u32,
    bucket: impl Fn(OffsetDateTime) -> K,
    keep: &mut std::collections::HashSet<&'a str>,
) {
    let mut last: Option<K> = None;
    let mut buckets = 0;
    for (t, name) in newest_first {
        let b = bucket(*t);
        if last.as_ref() != Some(&b) {
            buckets += 1;
            if buckets > n {
                break;
            }
            keep.insert(name);
            last = Some(b);
        }
    }
}

/// Keeps the oldest snapshot in each of the newest `n` buckets.
fn keep_oldest_per<'a, K: PartialEq>(
    newest_first: &[(OffsetDateTime, &'a str)],
    n: u32,
    bucket: impl Fn(OffsetDateTime) -> K,
    keep: &mut std::collections::HashSet<&'a str>,
) {
    let mut current: Option<(K, &'a str)> = None;
    let mut buckets = 0;
    for (t, name) in newest_first {
        let b = bucket(*t);
        match &mut current {
            Some((k, oldest)) if *k == b => *oldest = name,
            _ => {
                if let Some((_, oldest)) = current.take() {
                    keep.insert(oldest);
                }
                buckets += 1;
                if buckets > n {
                    return;
                }
                current = Some((b, name));
            }
        }
    }
    if let Some((_, oldest)) = current {
        keep.insert(oldest);
    }
}

#[cfg(test)]
mod tests;
