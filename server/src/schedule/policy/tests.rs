use time::macros::datetime;

use super::*;

/// Replays the scheduler loop: at each tick, decide, take, prune.
struct Replay {
    policy: RetentionPolicy,
    snaps: Vec<SnapshotFacts>,
    taken: Vec<String>,
}

impl Replay {
    fn new(policy: RetentionPolicy) -> Self {
        Self { policy, snaps: Vec::new(), taken: Vec::new() }
    }

    fn tick(&mut self, now: OffsetDateTime) -> Decision {
        let d = decide(now, &self.policy, &self.snaps);
        if let Some(name) = &d.take {
            // As the scheduler sees it: the time its name stands for.
            self.snaps.push(SnapshotFacts {
                name: name.clone(),
                created: parse_slot_name(name).unwrap(),
                scheduled: true,
                held: false,
                has_clones: false,
            });
            self.taken.push(name.clone());
        }
        self.snaps.retain(|s| !d.prune.contains(&s.name));
        d
    }

    fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.snaps.iter().map(|s| s.name.clone()).collect();
        n.sort();
        n
    }
}

#[test]
fn slot_names_are_utc_hours() {
    let t = datetime!(2026-11-24 13:05:12 UTC);
    assert_eq!(slot_name(current_slot(t)), "2026-11-24T13:00Z");
    assert_eq!(next_tick(t), datetime!(2026-11-24 14:00 UTC));
    let shifted = datetime!(2026-11-24 15:05:12 +2);
    assert_eq!(slot_name(current_slot(shifted)), "2026-11-24T13:00Z");
}

#[test]
fn three_days_of_hourly_ticks_keep_exactly_what_the_policy_says() {
    let mut r =
        Replay::new(RetentionPolicy { enabled: true, hourly: 24, daily: 7, weekly: 4, monthly: 0 });
    // 2026-11-23 is a Monday. Tick at minute 0 (+3 s of timer slack) for 72 hours.
    let start = datetime!(2026-11-23 00:00:03 UTC);
    for h in 0..72 {
        r.tick(start + Duration::hours(h));
    }
    assert_eq!(r.taken.len(), 72, "one snapshot per hour, never twice");
    let mut expected: Vec<String> =
        (48..72).map(|h| slot_name(current_slot(start + Duration::hours(h)))).collect();
    // Daily: the oldest (00:00) of each of the three days; the 25th's is
    // within the last 24 hours already.
    expected.push("2026-11-23T00:00Z".into());
    expected.push("2026-11-24T00:00Z".into());
    // Weekly: all three days are in ISO week 48, whose oldest is the 23rd 00:00.
    expected.sort();
    expected.dedup();
    assert_eq!(r.names(), expected);
}

#[test]
fn held_and_cloned_snapshots_survive_pruning() {
    let mut r =
        Replay::new(RetentionPolicy { enabled: true, hourly: 2, daily: 0, weekly: 0, monthly: 0 });
    let start = datetime!(2026-11-24 00:00:01 UTC);
    r.tick(start);
    r.tick(start + Duration::hours(1));
    r.snaps[0].held = true;
    r.snaps[1].has_clones = true;
    for h in 2..10 {
        r.tick(start + Duration::hours(h));
    }
    let names = r.names();
    assert!(names.contains(&"2026-11-24T00:00Z".to_string()), "held: {names:?}");
    assert!(names.contains(&"2026-11-24T01:00Z".to_string()), "cloned: {names:?}");
    assert_eq!(names.len(), 4, "{names:?}");
}

#[test]
fn manual_snapshots_are_never_pruned_nor_count_as_the_slot() {
    let mut r =
        Replay::new(RetentionPolicy { enabled: true, hourly: 1, daily: 0, weekly: 0, monthly: 0 });
    let t = datetime!(2026-11-24 10:20 UTC);
    r.snaps.push(SnapshotFacts {
        name: "before-upgrade".into(),
        created: t,
        scheduled: false,
        held: false,
        has_clones: false,
    });
    let d = r.tick(t + Duration::minutes(1));
    assert_eq!(d.take.as_deref(), Some("2026-11-24T10:00Z"));
    for h in 1..5 {
        r.tick(t + Duration::hours(h));
    }
    assert!(r.names().contains(&"before-upgrade".to_string()));
}

#[test]
fn a_restart_after_a_five_hour_gap_takes_the_missed_snapshot_once() {
    let mut r = Replay::new(RetentionPolicy::default());
    let t = datetime!(2026-11-24 08:00:02 UTC);
    r.tick(t);
    // Down from 08:30 to 13:40: at start the 13:00 slot is due.
    let back = datetime!(2026-11-24 13:40 UTC);
    let d = r.tick(back);
    assert_eq!(d.take.as_deref(), Some("2026-11-24T13:00Z"));
    // The next ticks within the same hour take nothing more.
    assert_eq!(r.tick(back + Duration::minutes(1)).take, None);
    assert_eq!(r.tick(back + Duration::minutes(19)).take, None);
    assert_eq!(
        r.tick(datetime!(2026-11-24 14:00:01 UTC)).take.as_deref(),
        Some("2026-11-24T14:00Z")
    );
    assert_eq!(r.taken, ["2026-11-24T08:00Z", "2026-11-24T13:00Z", "2026-11-24T14:00Z"]);
}

#[test]
fn disabled_policy_takes_nothing_but_still_prunes() {
    let mut r =
        Replay::new(RetentionPolicy { enabled: true, hourly: 3, daily: 0, weekly: 0, monthly: 0 });
    let t = datetime!(2026-11-24 00:00:01 UTC);
    for h in 0..3 {
        r.tick(t + Duration::hours(h));
    }
    r.policy = RetentionPolicy { enabled: false, hourly: 1, daily: 0, weekly: 0, monthly: 0 };
    let d = r.tick(t + Duration::hours(3));
    assert_eq!(d.take, None);
    assert_eq!(d.prune.len(), 2);
}

#[test]
fn monthly_keeps_the_first_of_each_month() {
    let mut r =
        Replay::new(RetentionPolicy { enabled: true, hourly: 0, daily: 0, weekly: 0, monthly: 2 });
    // One tick per day for 70 days: Nov 1 .. Jan 9.
    let t = datetime!(2026-11-01 00:00:01 UTC);
    for d in 0..70 {
        r.tick(t + Duration::days(d));
    }
    assert_eq!(r.names(), ["2026-12-01T00:00Z", "2027-01-01T00:00Z"]);
}

#[test]
fn a_slot_is_taken_only_when_some_period_keeps_it() {
    let mut r =
        Replay::new(RetentionPolicy { enabled: true, hourly: 0, daily: 3, weekly: 0, monthly: 0 });
    let start = datetime!(2026-11-23 00:00:03 UTC);
    for h in 0..(5 * 24) {
        r.tick(start + Duration::hours(h));
    }
    // One snapshot per day, at its first slot; the last three days kept.
    assert_eq!(r.taken.len(), 5);
    assert_eq!(r.names(), ["2026-11-25T00:00Z", "2026-11-26T00:00Z", "2026-11-27T00:00Z"]);
}

#[test]
fn irregular_ticks_never_take_a_slot_twice_nor_keep_more_than_the_policy() {
    let policy = RetentionPolicy { enabled: true, hourly: 5, daily: 3, weekly: 2, monthly: 1 };
    let mut r = Replay::new(policy);
    let mut t = datetime!(2026-11-20 22:17:00 UTC);
    let bound = (policy.hourly + policy.daily + policy.weekly + policy.monthly) as usize;
    for i in 0..2000 {
        // 7 to 97 minutes apart, now and then a gap of most of a day.
        let step = if i % 173 == 0 { 1300 } else { 7 + (i * 37) % 91 };
        t += Duration::minutes(step);
        r.tick(t);
        assert!(r.snaps.len() <= bound, "{} kept at {t}: {:?}", r.snaps.len(), r.names());
        let newest = r.snaps.iter().map(|s| s.created).max().unwrap();
        assert_eq!(newest, current_slot(t), "the current slot is always there (hourly > 0)");
    }
    let mut taken = r.taken.clone();
    taken.dedup();
    assert_eq!(taken.len(), r.taken.len(), "a slot taken twice");
}

#[test]
fn slot_names_parse_back_and_nothing_else_does() {
    let t = datetime!(2026-11-24 13:00 UTC);
    assert_eq!(parse_slot_name(&slot_name(t)), Some(t));
    for name in
        ["2026-11-24T13:05Z", "2026-11-24T13:00:00Z", "before-upgrade", "2026-11-24T13:00Z-2", ""]
    {
        assert_eq!(parse_slot_name(name), None, "{name}");
    }
}
