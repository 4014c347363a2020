//! The scheduler against the real store in a temporary directory, driven by
//! a fake clock (the `now` passed to `tick`), and against fakes that refuse.

use std::sync::Arc;

use parking_lot::Mutex;
use store::{Refusal, SnapshotInfo, SnapshotKind, StoreError};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::schedule::config::ScheduleConfig;
use crate::schedule::policy::{current_slot, slot_name};

fn open_store(dir: &std::path::Path) -> store::Store {
    store::Store::open(store::StoreConfig::new(dir)).unwrap()
}

fn scheduler(store: &store::Store, dir: &std::path::Path, config: ScheduleConfig) -> Scheduler {
    let saved = SavedPolicies::load(dir).unwrap();
    Scheduler::new(Arc::new(store.clone()), config, saved, true, None)
}

fn names(store: &store::Store, volume: &str) -> Vec<String> {
    let mut n: Vec<String> =
        store::Store::snapshots(store, Some(volume)).into_iter().map(|s| s.name).collect();
    n.sort();
    n
}

fn new_volume(store: &store::Store, name: &str) {
    store.create_volume(name, 16 << 20, store::DEFAULT_CHUNK_SIZE).unwrap().unwrap();
}

#[test]
fn three_days_of_ticks_leave_what_the_policy_keeps_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    new_volume(&store, "pg");
    new_volume(&store, "scratch");
    let config: ScheduleConfig = toml::from_str("[volumes.scratch]\nenabled = false").unwrap();
    let s = scheduler(&store, dir.path(), config);
    // A manual snapshot is neither pruned nor counted.
    store.create_snapshot("pg", Some("before-upgrade"), SnapshotKind::Manual).unwrap().unwrap();

    // 2026-11-23 is a Monday; tick 3 s after each full hour for 72 hours.
    let start = datetime!(2026-11-23 00:00:03 UTC);
    let mut taken = 0;
    for h in 0..72 {
        let report = s.tick(start + Duration::hours(h));
        let pg = report.volumes.iter().find(|v| v.volume == "pg").unwrap();
        assert!(pg.failures.is_empty(), "{pg:?}");
        taken += usize::from(pg.taken.is_some());
        let scratch = report.volumes.iter().find(|v| v.volume == "scratch").unwrap();
        assert_eq!(scratch.taken, None, "scratch is disabled in the config");
    }
    assert_eq!(taken, 72);
    let mut expected: Vec<String> =
        (48..72).map(|h| slot_name(current_slot(start + Duration::hours(h)))).collect();
    expected.extend(["2026-11-23T00:00Z".into(), "2026-11-24T00:00Z".into()]);
    expected.push("before-upgrade".into());
    expected.sort();
    assert_eq!(names(&store, "pg"), expected);
    assert!(names(&store, "scratch").is_empty());
    assert!(
        store
            .snapshots(Some("pg"))
            .iter()
            .all(|s| { (s.kind == SnapshotKind::Scheduled) == (s.name != "before-upgrade") })
    );
    store.close().unwrap();
}

#[test]
fn held_and_cloned_snapshots_survive_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    new_volume(&store, "pg");
    let config: ScheduleConfig = toml::from_str("hourly = 2\ndaily = 0\nweekly = 0").unwrap();
    let s = scheduler(&store, dir.path(), config);
    let t = datetime!(2026-11-24 00:00:01 UTC);
    s.tick(t);
    s.tick(t + Duration::hours(1));
    store.set_snapshot_hold("pg", "2026-11-24T00:00Z", true).unwrap().unwrap();
    store.create_clone("pg@2026-11-24T01:00Z", "test1").unwrap().unwrap();
    for h in 2..8 {
        let report = s.tick(t + Duration::hours(h));
        assert!(report.volumes.iter().all(|v| v.failures.is_empty()), "{report:?}");
    }
    assert_eq!(
        names(&store, "pg"),
        ["2026-11-24T00:00Z", "2026-11-24T01:00Z", "2026-11-24T06:00Z", "2026-11-24T07:00Z"]
    );
    // The clone is a volume too: it gets its own schedule.
    assert_eq!(names(&store, "test1"), ["2026-11-24T06:00Z", "2026-11-24T07:00Z"]);
    // Released, the held one goes at the next tick.
    store.set_snapshot_hold("pg", "2026-11-24T00:00Z", false).unwrap().unwrap();
    let report = s.tick(t + Duration::hours(7) + Duration::minutes(5));
    let pg = report.volumes.iter().find(|v| v.volume == "pg").unwrap();
    assert_eq!(pg.pruned, ["2026-11-24T00:00Z"]);
    assert_eq!(pg.taken, None);
    store.close().unwrap();
}

#[test]
fn a_restart_after_a_five_hour_gap_takes_the_missed_snapshot_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    new_volume(&store, "pg");
    let s = scheduler(&store, dir.path(), ScheduleConfig::default());
    assert_eq!(
        s.tick(datetime!(2026-11-24 08:00:02 UTC)).volumes[0].taken.as_deref(),
        Some("2026-11-24T08:00Z")
    );
    drop(s);
    store.close().unwrap();
    drop(store);

    // Down from 08:30 to 13:40. The timer's first run at start:
    let store = open_store(dir.path());
    let s = scheduler(&store, dir.path(), ScheduleConfig::default());
    let back = datetime!(2026-11-24 13:40 UTC);
    assert_eq!(s.tick(back).volumes[0].taken.as_deref(), Some("2026-11-24T13:00Z"));
    for later in [back + Duration::minutes(1), back + Duration::minutes(19)] {
        assert_eq!(s.tick(later).volumes[0].taken, None);
    }
    // A second restart within the same hour takes nothing either.
    drop(s);
    store.close().unwrap();
    drop(store);
    let store = open_store(dir.path());
    let s = scheduler(&store, dir.path(), ScheduleConfig::default());
    assert_eq!(s.tick(back + Duration::minutes(15)).volumes[0].taken, None);
    assert_eq!(names(&store, "pg"), ["2026-11-24T08:00Z", "2026-11-24T13:00Z"]);
    store.close().unwrap();
}

#[test]
fn scheduled_times_come_from_the_name_not_from_when_the_store_took_it() {
    let info = |name: &str, kind| SnapshotInfo {
        volume: "pg".into(),
        name: name.into(),
        created_unix: 1_700_000_000,
        kind,
        held: false,
        clones: vec![],
        written_since_previous: 0,
    };
    let f = facts(&[
        info("2030-01-01T05:00Z", SnapshotKind::Scheduled),
        info("2030-01-01T05:00Z", SnapshotKind::Manual),
        info("odd-name", SnapshotKind::Scheduled),
    ]);
    assert_eq!(f[0].created, datetime!(2030-01-01 05:00 UTC));
    assert!(f[0].scheduled);
    assert_eq!(f[1].created.unix_timestamp(), 1_700_000_000);
    assert_eq!(f[2].created.unix_timestamp(), 1_700_000_000);
}

/// A store of one volume whose take or prune can be made to refuse or fail.
#[derive(Default)]
struct FakeStore {
    snaps: Mutex<Vec<SnapshotInfo>>,
    refuse_delete: Mutex<Vec<String>>,
    fail_take: Mutex<bool>,
}

impl SnapshotStore for FakeStore {
    fn volume_names(&self) -> Vec<String> {
        vec!["pg".into()]
    }

    fn snapshots(&self, _: &str) -> Vec<SnapshotInfo> {
        self.snaps.lock().clone()
    }

    fn create_scheduled(
        &self,
        volume: &str,
        name: &str,
    ) -> Result<Result<SnapshotInfo, Refusal>, StoreError> {
        if *self.fail_take.lock() {
            // (StoreError cannot be made outside the store; a refusal takes the same path.)
            return Ok(Err(Refusal::NameTaken(format!("{volume}@{name} (disk on fire)"))));
        }
        let info = SnapshotInfo {
            volume: volume.into(),
            name: name.into(),
            created_unix: 0,
            kind: SnapshotKind::Scheduled,
            held: false,
            clones: vec![],
            written_since_previous: 0,
        };
        self.snaps.lock().push(info.clone());
        Ok(Ok(info))
    }

    fn delete_snapshot(&self, volume: &str, name: &str) -> Result<Result<(), Refusal>, StoreError> {
        if self.refuse_delete.lock().iter().any(|n| n == name) {
            return Ok(Err(Refusal::HasDependents {
                what: format!("snapshot {volume}@{name}"),
                dependents: vec!["late-clone".into()],
            }));
        }
        self.snaps.lock().retain(|s| s.name != name);
        Ok(Ok(()))
    }
}

#[test]
fn refused_prunes_are_skipped_and_a_failed_take_prunes_nothing() {
    let fake = Arc::new(FakeStore::default());
    let config: ScheduleConfig = toml::from_str("hourly = 1\ndaily = 0\nweekly = 0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = crate::metrics::Metrics::new();
    let s = Scheduler::new(
        fake.clone(),
        config,
        SavedPolicies::load(dir.path()).unwrap(),
        false,
        Some(metrics.schedule()),
    );
    let t = datetime!(2026-11-24 00:00:01 UTC);
    s.tick(t);
    s.tick(t + Duration::hours(1));
    // A clone of 01:00 appears between the decision and the delete.
    fake.refuse_delete.lock().push("2026-11-24T01:00Z".into());
    let report = s.tick(t + Duration::hours(2));
    let pg = &report.volumes[0];
    assert_eq!(pg.taken.as_deref(), Some("2026-11-24T02:00Z"));
    assert!(pg.pruned.is_empty());
    assert_eq!(pg.failures.len(), 1);
    assert!(!pg.failures[0].take);
    assert!(pg.failures[0].reason.contains("late-clone"), "{:?}", pg.failures);

    *fake.fail_take.lock() = true;
    let report = s.tick(t + Duration::hours(3));
    let pg = &report.volumes[0];
    assert_eq!((pg.taken.as_ref(), pg.pruned.len()), (None, 0));
    assert!(pg.failures[0].take && pg.failures[0].reason.contains("disk on fire"));
    assert_eq!(fake.snaps.lock().len(), 2, "nothing pruned after a failed take");
    assert_eq!(metrics.schedule().taken.get(), 3);
    assert_eq!(metrics.schedule().failures.get(), 2);
    assert!(metrics.render().contains("clonebd_schedule_snapshots_taken_total 3"));
}

#[test]
fn api_policies_override_the_config_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    new_volume(&store, "pg");
    let config: ScheduleConfig = toml::from_str("hourly = 12").unwrap();
    let now = datetime!(2026-11-24 13:05 UTC);
    let s = scheduler(&store, dir.path(), config.clone());
    let pg = s.schedule("pg", now).unwrap();
    assert_eq!((pg.policy.hourly, pg.source), (12, PolicySource::Config));
    assert_eq!(pg.next_tick, Some(datetime!(2026-11-24 14:00 UTC)));

    let patch = PolicyPatch { daily: Some(30), ..PolicyPatch::default() };
    let pg = s.set("pg", patch, now).unwrap();
    assert_eq!((pg.policy.hourly, pg.policy.daily, pg.source), (12, 30, PolicySource::Api));
    let patch = PolicyPatch { hourly: Some(48), ..PolicyPatch::default() };
    assert_eq!(s.set("pg", patch, now).unwrap().policy.daily, 30, "earlier fields stay");

    let bad =
        PolicyPatch { hourly: Some(0), daily: Some(0), weekly: Some(0), ..PolicyPatch::default() };
    assert!(matches!(s.set("pg", bad, now), Err(ScheduleError::Policy { .. })));
    assert!(matches!(s.set("ghost", patch, now), Err(ScheduleError::NoSuchVolume(_))));

    // A restart reads it back.
    let again = scheduler(&store, dir.path(), config.clone());
    let pg = again.schedule("pg", now).unwrap();
    assert_eq!((pg.policy.hourly, pg.policy.daily, pg.source), (48, 30, PolicySource::Api));
    let pg = again.reset("pg", now).unwrap();
    assert_eq!((pg.policy.hourly, pg.source), (12, PolicySource::Config));
    assert!(matches!(again.reset("ghost", now), Err(ScheduleError::NoSuchVolume(_))));
    let third = scheduler(&store, dir.path(), config);
    assert_eq!(third.schedule("pg", now).unwrap().source, PolicySource::Config);
    store.close().unwrap();
}

#[test]
fn the_schedule_shows_the_newest_scheduled_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    new_volume(&store, "pg");
    let s = scheduler(&store, dir.path(), ScheduleConfig::default());
    let t: OffsetDateTime = datetime!(2026-11-24 10:00:05 UTC);
    s.tick(t);
    s.tick(t + Duration::hours(1));
    store.create_snapshot("pg", Some("manual"), SnapshotKind::Manual).unwrap().unwrap();
    let all = s.schedules(t);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].last_scheduled.as_deref(), Some("2026-11-24T11:00Z"));
    assert_eq!(all[0].scheduled_count, 2);
    store.close().unwrap();
}
