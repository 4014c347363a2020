//! `clonebd schedule ...`: show and change the snapshot schedule of
//! volumes, and run the policy now (`tick`).

use anyhow::bail;
use clap::Subcommand;
use clonebd_client::admin::{AdminClient, ScheduleDto, SchedulePatch, TickDto};

use super::{json_text, table};

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Change a volume's policy; the fields not given keep their value.
    Set {
        /// Volume name.
        name: String,
        /// Take a snapshot every hour (false: only prune).
        #[arg(long, value_name = "true|false")]
        enabled: Option<bool>,
        /// Hourly snapshots to keep.
        #[arg(long, value_name = "N")]
        hourly: Option<u32>,
        /// Daily snapshots to keep (the first of each day).
        #[arg(long, value_name = "N")]
        daily: Option<u32>,
        /// Weekly snapshots to keep (the first of each ISO week).
        #[arg(long, value_name = "N")]
        weekly: Option<u32>,
        /// Monthly snapshots to keep (the first of each month).
        #[arg(long, value_name = "N")]
        monthly: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show every volume's schedule, or one volume's.
    Show {
        /// Only this volume.
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget what `schedule set` changed: the config file and defaults apply.
    Reset {
        /// Volume name.
        name: String,
    },
    /// Run the policy now for every volume: take due snapshots, prune old ones.
    Tick {
        /// Run as if it were this time (RFC 3339); the server must have been
        /// started with --enable-test-hooks.
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(client: &AdminClient, command: ScheduleCommand) -> anyhow::Result<String> {
    Ok(match command {
        ScheduleCommand::Set { name, enabled, hourly, daily, weekly, monthly, json } => {
            let patch = SchedulePatch { enabled, hourly, daily, weekly, monthly };
            if patch == SchedulePatch::default() {
                bail!("nothing to set: give --hourly, --daily, --weekly, --monthly or --enabled");
            }
            let s = client.set_schedule(&name, &patch)?;
            if json { json_text(&s)? } else { schedules_table(&[s]) }
        }
        ScheduleCommand::Show { name, json } => {
            let list = match name {
                Some(name) => vec![client.schedule(&name)?],
                None => client.schedules()?,
            };
            if json { json_text(&list)? } else { schedules_table(&list) }
        }
        ScheduleCommand::Reset { name } => {
            let s = client.reset_schedule(&name)?;
            format!("reset the schedule of {name}; it now comes from {}\n", s.source)
        }
        ScheduleCommand::Tick { now, json } => {
            let report = client.tick(now.as_deref())?;
            if json { json_text(&report)? } else { tick_text(&report) }
        }
    })
}

fn schedules_table(schedules: &[ScheduleDto]) -> String {
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            let p = &s.policy;
            vec![
                s.volume.clone(),
                if p.enabled { "yes".into() } else { "no".into() },
                format!("{}/{}/{}/{}", p.hourly, p.daily, p.weekly, p.monthly),
                s.source.clone(),
                s.scheduled_snapshots.to_string(),
                s.last_snapshot.clone().unwrap_or_else(|| "-".into()),
                s.next_tick.clone().unwrap_or_else(|| "off".into()),
            ]
        })
        .collect();
    table(&["VOLUME", "ENABLED", "KEEP H/D/W/M", "SOURCE", "SNAPSHOTS", "LAST", "NEXT"], &rows)
}

/// One line per volume the tick changed something for, then a total.
fn tick_text(report: &TickDto) -> String {
    let mut text = String::new();
    let (mut taken, mut pruned) = (0, 0);
    for v in &report.volumes {
        if let Some(t) = &v.taken {
            text.push_str(&format!("took {t}\n"));
            taken += 1;
        }
        for p in &v.pruned {
            text.push_str(&format!("pruned {p}\n"));
            pruned += 1;
        }
        for f in &v.failures {
            text.push_str(&format!("could not {} {}: {}\n", f.action, f.snapshot, f.reason));
        }
    }
    text.push_str(&format!("tick at {}: {taken} taken, {pruned} pruned\n", report.now));
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::tests::parse;
    use crate::{Cli, Command};

    #[test]
    fn schedule_commands_parse() {
        match parse(&[
            "schedule",
            "set",
            "pg",
            "--hourly",
            "24",
            "--daily",
            "7",
            "--enabled",
            "false",
        ])
        .command
        {
            Command::Schedule(ScheduleCommand::Set {
                name,
                enabled,
                hourly,
                daily,
                weekly,
                ..
            }) => {
                assert_eq!(name, "pg");
                assert_eq!(
                    (enabled, hourly, daily, weekly),
                    (Some(false), Some(24), Some(7), None)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["clonebd", "schedule", "set", "pg", "--hourly", "-1"]).is_err()
        );
        assert!(matches!(
            parse(&["schedule", "show"]).command,
            Command::Schedule(ScheduleCommand::Show { name: None, json: false })
        ));
        assert!(matches!(
            parse(&["schedule", "show", "pg", "--json"]).command,
            Command::Schedule(ScheduleCommand::Show { json: true, .. })
        ));
        assert!(matches!(
            parse(&["schedule", "reset", "pg"]).command,
            Command::Schedule(ScheduleCommand::Reset { .. })
        ));
        match parse(&["schedule", "tick", "--now", "2030-01-01T05:00:00Z"]).command {
            Command::Schedule(ScheduleCommand::Tick { now, .. }) => {
                assert_eq!(now.as_deref(), Some("2030-01-01T05:00:00Z"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn schedule_table_and_tick_text() {
        use clonebd_client::admin::{PolicyDto, TickFailureDto, VolumeTickDto};
        let s = ScheduleDto {
            volume: "pg".into(),
            policy: PolicyDto { enabled: true, hourly: 24, daily: 7, weekly: 4, monthly: 0 },
            source: "default".into(),
            next_tick: Some("2026-11-24T14:00:00Z".into()),
            last_snapshot: Some("pg@2026-11-24T13:00Z".into()),
            scheduled_snapshots: 30,
        };
        assert_eq!(
            schedules_table(&[s]),
            "VOLUME  ENABLED  KEEP H/D/W/M  SOURCE   SNAPSHOTS  LAST                  NEXT\n\
             pg      yes      24/7/4/0      default  30         pg@2026-11-24T13:00Z  2026-11-24T14:00:00Z\n"
        );
        let report = TickDto {
            now: "2026-11-24T14:00:01Z".into(),
            volumes: vec![VolumeTickDto {
                volume: "pg".into(),
                taken: Some("pg@2026-11-24T14:00Z".into()),
                pruned: vec!["pg@2026-11-23T13:00Z".into()],
                failures: vec![TickFailureDto {
                    snapshot: "pg@2026-11-23T12:00Z".into(),
                    action: "prune".into(),
                    reason: "has clones".into(),
                }],
            }],
        };
        assert_eq!(
            tick_text(&report),
            "took pg@2026-11-24T14:00Z\npruned pg@2026-11-23T13:00Z\n\
             could not prune pg@2026-11-23T12:00Z: has clones\n\
             tick at 2026-11-24T14:00:01Z: 1 taken, 1 pruned\n"
        );
    }
}
