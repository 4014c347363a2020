//! `clonebd`: the command-line front end of the clonebd admin API. Parses
//! arguments, finds the token, calls `clonebd_client::admin::AdminClient`, and
//! prints tables for people or `--json` for scripts.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use clonebd_client::admin::{
    AdminClient, AdminError, DEFAULT_ADMIN_URL, DiffDto, ExportDto, SnapshotDto, VolumeDto,
    split_snapshot,
};
use clonebd_client::size::{format_size, format_size_exact, parse_size};
use serde::Serialize;

// A crate root's modules live beside it; this keeps them out of src/bin/,
// where cargo would take each file for a binary of its own.
#[path = "clonebd/schedule.rs"]
mod schedule;

/// Default server data directory, where the token file lives.
const DEFAULT_DATA_DIR: &str = "./clonebd-data";
/// Token file name inside the data directory (the server's `admin::TOKEN_FILE`).
const TOKEN_FILE: &str = "admin.token";
/// Environment variable holding the token itself.
const TOKEN_ENV: &str = "CLONEBD_TOKEN";

/// Manage clonebd volumes, snapshots and clones through the server's admin API.
///
/// The admin token is taken from $CLONEBD_TOKEN, else from --token-file, else
/// from DATA/admin.token (DATA is --data, default ./clonebd-data).
#[derive(Debug, Parser)]
#[command(name = "clonebd", version)]
struct Cli {
    /// Admin API URL.
    #[arg(long, global = true, env = "CLONEBD_ADMIN", default_value = DEFAULT_ADMIN_URL, value_name = "URL")]
    admin: String,
    /// File holding the admin token.
    #[arg(long, global = true, env = "CLONEBD_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The server's data directory, to find DATA/admin.token.
    #[arg(long, global = true, default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, resize and delete volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Take, list, delete, hold and release snapshots (NAME@SNAP).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Make writable clones of snapshots or volumes.
    #[command(subcommand)]
    Clone(CloneCommand),
    /// Copy a clone's shared data so it no longer depends on its origin.
    Flatten {
        /// The clone.
        name: String,
    },
    /// Make a clone the volume it was cloned from; the old volume is kept as a rollback point.
    Promote {
        /// The clone to promote.
        clone: String,
    },
    /// Roll a volume back to one of its snapshots.
    Rollback {
        /// The snapshot, NAME@SNAP.
        snapshot: String,
    },
    /// Show the byte ranges that changed between two snapshots (or a snapshot and the live volume).
    Diff {
        /// Older side, NAME@SNAP.
        from: String,
        /// Newer side, NAME@SNAP or the live NAME.
        to: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run garbage collection now and report what it freed.
    Gc,
    /// List NBD exports.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Show and change the hourly snapshot schedule and its retention.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
}

#[derive(Debug, Subcommand)]
enum VolumeCommand {
    /// Create a thin volume.
    Create {
        /// Volume name.
        name: String,
        /// Size: bytes, or with K, M, G, T, P (powers of 1024), e.g. 10G.
        #[arg(long)]
        size: String,
        /// Copy-on-write unit, a power of two from 4K to 1M [default: 64K].
        #[arg(long)]
        chunk_size: Option<String>,
    },
    /// List volumes and clones.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one volume.
    Show {
        /// Volume name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Grow or shrink a volume.
    Resize {
        /// Volume name.
        name: String,
        /// New size, e.g. 20G.
        #[arg(long)]
        size: String,
    },
    /// Delete a volume or clone.
    Delete {
        /// Volume name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Take a snapshot; prints NAME@SNAP.
    Create {
        /// Volume name.
        volume: String,
        /// Snapshot name [default: chosen by the server from the time].
        #[arg(long)]
        name: Option<String>,
    },
    /// List snapshots, of one volume or of all.
    List {
        /// Only this volume's snapshots.
        volume: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot (refused while clones depend on it).
    Delete {
        /// NAME@SNAP.
        snapshot: String,
    },
    /// Keep a snapshot from retention.
    Hold {
        /// NAME@SNAP.
        snapshot: String,
    },
    /// Let retention delete a held snapshot again.
    Release {
        /// NAME@SNAP.
        snapshot: String,
    },
}

#[derive(Debug, Subcommand)]
enum CloneCommand {
    /// Create a writable clone of NAME@SNAP, or of NAME (through a new snapshot).
    Create {
        /// NAME@SNAP or NAME.
        source: String,
        /// Name of the new clone.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// List the exports an NBD client can open now.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let text = match run(cli) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("clonebd: {}", error_line(&err));
            return ExitCode::FAILURE;
        }
    };
    match io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        // `clonebd volume list | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clonebd: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The one line printed after `clonebd: `.
fn error_line(err: &anyhow::Error) -> String {
    match err.downcast_ref::<AdminError>() {
        Some(AdminError::Unauthorized) => {
            "unauthorized: missing or wrong admin token (see --token-file / CLONEBD_TOKEN)".into()
        }
        _ => format!("{err:#}"),
    }
}

/// Runs one command and returns what to print.
fn run(cli: Cli) -> anyhow::Result<String> {
    let token = resolve_token(std::env::var(TOKEN_ENV).ok(), cli.token_file.as_deref(), &cli.data)?;
    let client = AdminClient::new(cli.admin, token);
    Ok(match cli.command {
        Command::Volume(command) => volume(&client, command)?,
        Command::Snapshot(command) => snapshot(&client, command)?,
        Command::Clone(CloneCommand::Create { source, name }) => {
            let clone = client.create_clone(&source, &name)?;
            let origin = clone.origin.as_deref().unwrap_or(&source);
            format!("created clone {} from {origin}\n", clone.name)
        }
        Command::Flatten { name } => {
            let volume = client.flatten(&name)?;
            format!("flattened {}; it no longer depends on another volume\n", volume.name)
        }
        Command::Promote { clone } => {
            let promoted = client.promote(&clone)?;
            format!(
                "promoted {clone} to {volume}; the previous {volume} is kept as {rollback} (rollback point)\n",
                volume = promoted.volume,
                rollback = promoted.rollback_name
            )
        }
        Command::Rollback { snapshot } => {
            let (volume, snap) = snapshot_arg(&snapshot)?;
            client.rollback(volume, snap)?;
            format!("rolled {volume} back to {snapshot}\n")
        }
        Command::Diff { from, to, json } => {
            let diff = client.diff(&from, &to)?;
            if json { json_text(&diff)? } else { diff_text(&diff) }
        }
        Command::Gc => {
            let report = client.gc()?;
            format!(
                "gc freed {} chunks ({})\n",
                report.chunks_freed,
                format_size(report.bytes_freed)
            )
        }
        Command::Export(ExportCommand::List { json }) => {
            let exports = client.exports()?;
            if json { json_text(&exports)? } else { exports_table(&exports) }
        }
        Command::Schedule(command) => schedule::run(&client, command)?,
    })
}

fn volume(client: &AdminClient, command: VolumeCommand) -> anyhow::Result<String> {
    Ok(match command {
        VolumeCommand::Create { name, size, chunk_size } => {
            let size = parse_size(&size)?;
            let chunk_size = chunk_size.as_deref().map(parse_chunk_size).transpose()?;
            let v = client.create_volume(&name, size, chunk_size)?;
            format!(
                "created volume {}: {}, chunk {}\n",
                v.name,
                format_size(v.size),
                format_size(u64::from(v.chunk_size))
            )
        }
        VolumeCommand::List { json } => {
            let volumes = client.volumes()?;
            if json { json_text(&volumes)? } else { volumes_table(&volumes) }
        }
        VolumeCommand::Show { name, json } => {
            let v = client.volume(&name)?;
            if json { json_text(&v)? } else { volume_text(&v) }
        }
        VolumeCommand::Resize { name, size } => {
            let v = client.resize_volume(&name, parse_size(&size)?)?;
            format!("resized volume {} to {}\n", v.name, format_size(v.size))
        }
        VolumeCommand::Delete { name } => {
            client.delete_volume(&name)?;
            format!("deleted volume {name}\n")
        }
    })
}

fn snapshot(client: &AdminClient, command: SnapshotCommand) -> anyhow::Result<String> {
    Ok(match command {
        SnapshotCommand::Create { volume, name } => {
            format!("{}\n", client.create_snapshot(&volume, name.as_deref())?.export)
        }
        SnapshotCommand::List { volume, json } => {
            let snapshots = client.snapshots(volume.as_deref())?;
            if json { json_text(&snapshots)? } else { snapshots_table(&snapshots) }
        }
        SnapshotCommand::Delete { snapshot } => {
            let (volume, snap) = snapshot_arg(&snapshot)?;
            client.delete_snapshot(volume, snap)?;
            format!("deleted snapshot {snapshot}\n")
        }
        SnapshotCommand::Hold { snapshot } => {
            let (volume, snap) = snapshot_arg(&snapshot)?;
            format!("held {}\n", client.hold_snapshot(volume, snap)?.export)
        }
        SnapshotCommand::Release { snapshot } => {
            let (volume, snap) = snapshot_arg(&snapshot)?;
            format!("released {}\n", client.release_snapshot(volume, snap)?.export)
        }
    })
}

fn snapshot_arg(export: &str) -> anyhow::Result<(&str, &str)> {
    match split_snapshot(export) {
        Some(pair) => Ok(pair),
        None => bail!("expected a snapshot as NAME@SNAP, got {export:?}"),
    }
}

fn parse_chunk_size(text: &str) -> anyhow::Result<u32> {
    let bytes = parse_size(text)?;
    u32::try_from(bytes).map_err(|_| {
        anyhow::anyhow!("invalid chunk size {text:?}: use a power of two from 4K to 1M")
    })
}

fn resolve_token(
    env_token: Option<String>,
    token_file: Option<&Path>,
    data: &Path,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = env_token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Some(token.to_owned()));
    }
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?;
        return Ok(Some(text.trim().to_owned()));
    }
    let path = data.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        // No token at hand: the server will say 401 and we explain where to find one.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read token file {}", path.display())),
    }
}

fn json_text(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push('\n');
    }
    text
}

fn volumes_table(volumes: &[VolumeDto]) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                format_size(v.size),
                format_size(u64::from(v.chunk_size)),
                format_size(v.written_bytes),
                v.origin.clone().unwrap_or_else(|| "-".into()),
                v.snapshot_count.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "SIZE", "CHUNK", "WRITTEN", "ORIGIN", "SNAPSHOTS"], &rows)
}

fn volume_text(v: &VolumeDto) -> String {
    format!(
        "name:       {}\nsize:       {} ({} bytes)\nchunk:      {}\nwritten:    {}\norigin:     {}\nsnapshots:  {}\ncreated:    {}\n",
        v.name,
        format_size(v.size),
        v.size,
        format_size(u64::from(v.chunk_size)),
        format_size(v.written_bytes),
        v.origin.as_deref().unwrap_or("-"),
        v.snapshot_count,
        v.created
    )
}

fn snapshots_table(snapshots: &[SnapshotDto]) -> String {
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|s| {
            vec![
                s.export.clone(),
                s.created.clone(),
                s.kind.clone(),
                if s.held { "yes".into() } else { "-".into() },
                format_size(s.written_since_previous),
                if s.clones.is_empty() { "-".into() } else { s.clones.join(",") },
            ]
        })
        .collect();
    table(&["SNAPSHOT", "CREATED", "KIND", "HELD", "WRITTEN", "CLONES"], &rows)
}

fn exports_table(exports: &[ExportDto]) -> String {
    let rows: Vec<Vec<String>> = exports
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                format_size(e.size),
                if e.read_only { "ro".into() } else { "rw".into() },
                e.description.clone(),
            ]
        })
        .collect();
    table(&["NAME", "SIZE", "MODE", "DESCRIPTION"], &rows)
}

/// Offsets are shown exactly (rounding an offset would point at the wrong
/// place); the total is rounded for reading.
fn diff_text(diff: &DiffDto) -> String {
    let rows: Vec<Vec<String>> = diff
        .ranges
        .iter()
        .map(|r| vec![format_size_exact(r.offset), format_size_exact(r.length)])
        .collect();
    let plural = if diff.ranges.len() == 1 { "" } else { "s" };
    format!(
        "{}total: {} range{plural}, {} changed\n",
        table(&["OFFSET", "LENGTH"], &rows),
        diff.ranges.len(),
        format_size(diff.total_bytes)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::CommandFactory;
    use clonebd_client::admin::RangeDto;

    use super::*;

    /// Parses `clonebd ARGS`, failing the test with clap's message.
    pub(crate) fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("clonebd").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_command() {
        let mut cli = Cli::command();
        let help = cli.render_long_help().to_string();
        for command in [
            "volume", "snapshot", "clone", "flatten", "promote", "rollback", "diff", "gc",
            "export", "schedule",
        ] {
            assert!(help.contains(command), "{command} missing from:\n{help}");
        }
        assert!(help.contains("--admin"), "{help}");
        assert!(help.contains("CLONEBD_ADMIN"), "{help}");
        assert!(help.contains("--token-file"), "{help}");
        assert!(help.contains("--data"), "{help}");
        let nested = [
            ("volume", &["create", "list", "show", "resize", "delete"][..]),
            ("snapshot", &["create", "list", "delete", "hold", "release"][..]),
            ("clone", &["create"][..]),
            ("export", &["list"][..]),
            ("schedule", &["set", "show", "reset", "tick"][..]),
        ];
        for (group, subcommands) in nested {
            let help = cli.find_subcommand_mut(group).unwrap().render_long_help().to_string();
            for sub in subcommands {
                assert!(help.contains(sub), "{group} {sub} missing from:\n{help}");
            }
        }
    }

    #[test]
    fn volume_commands_parse() {
        let cli = parse(&[
            "--admin",
            "http://h:1",
            "volume",
            "create",
            "pg",
            "--size",
            "10G",
            "--chunk-size",
            "64K",
        ]);
        assert_eq!(cli.admin, "http://h:1");
        match cli.command {
            Command::Volume(VolumeCommand::Create { name, size, chunk_size }) => {
                assert_eq!((name.as_str(), size.as_str()), ("pg", "10G"));
                assert_eq!(chunk_size.as_deref(), Some("64K"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["volume", "list", "--json"]).command,
            Command::Volume(VolumeCommand::List { json: true })
        ));
        assert!(matches!(
            parse(&["volume", "resize", "pg", "--size", "20G"]).command,
            Command::Volume(VolumeCommand::Resize { .. })
        ));
        assert!(matches!(
            parse(&["volume", "delete", "pg"]).command,
            Command::Volume(VolumeCommand::Delete { .. })
        ));
        // Global flags go anywhere.
        let cli = parse(&["volume", "list", "--token-file", "/t", "--data", "/d"]);
        assert_eq!(cli.token_file.as_deref(), Some(Path::new("/t")));
        assert_eq!(cli.data, Path::new("/d"));
        assert!(
            Cli::try_parse_from(["clonebd", "volume", "create", "pg"]).is_err(),
            "--size is required"
        );
    }

    #[test]
    fn snapshot_and_other_commands_parse() {
        match parse(&["snapshot", "create", "pg", "--name", "before-upgrade"]).command {
            Command::Snapshot(SnapshotCommand::Create { volume, name }) => {
                assert_eq!((volume.as_str(), name.as_deref()), ("pg", Some("before-upgrade")));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["snapshot", "list"]).command,
            Command::Snapshot(SnapshotCommand::List { volume: None, json: false })
        ));
        match parse(&["snapshot", "list", "pg", "--json"]).command {
            Command::Snapshot(SnapshotCommand::List { volume, json }) => {
                assert_eq!(volume.as_deref(), Some("pg"));
                assert!(json);
            }
            other => panic!("{other:?}"),
        }
        for sub in ["delete", "hold", "release"] {
            parse(&["snapshot", sub, "pg@s1"]);
        }
        assert!(matches!(parse(&["clone", "create", "pg@s1", "test1"]).command, Command::Clone(_)));
        assert!(matches!(parse(&["flatten", "test1"]).command, Command::Flatten { .. }));
        assert!(matches!(parse(&["promote", "test1"]).command, Command::Promote { .. }));
        assert!(matches!(parse(&["rollback", "pg@s1"]).command, Command::Rollback { .. }));
        assert!(matches!(
            parse(&["diff", "pg@a", "pg", "--json"]).command,
            Command::Diff { json: true, .. }
        ));
        assert!(matches!(parse(&["gc"]).command, Command::Gc));
        assert!(matches!(
            parse(&["export", "list", "--json"]).command,
            Command::Export(ExportCommand::List { json: true })
        ));
    }

    #[test]
    fn token_precedence_env_then_file_then_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "from-file\n").unwrap();
        std::fs::write(data.join(TOKEN_FILE), "from-data\n").unwrap();

        let env = Some("from-env".to_owned());
        assert_eq!(resolve_token(env, Some(&file), &data).unwrap().as_deref(), Some("from-env"));
        assert_eq!(
            resolve_token(Some(" ".into()), Some(&file), &data).unwrap().as_deref(),
            Some("from-file")
        );
        assert_eq!(resolve_token(None, None, &data).unwrap().as_deref(), Some("from-data"));
        assert_eq!(resolve_token(None, None, dir.path()).unwrap(), None);
        let err = resolve_token(None, Some(&dir.path().join("nope")), &data).unwrap_err();
        assert!(format!("{err:#}").starts_with("cannot read token file "), "{err:#}");
    }

    #[test]
    fn bad_arguments_give_one_clear_line() {
        let err = snapshot_arg("pg").unwrap_err();
        assert_eq!(error_line(&err), "expected a snapshot as NAME@SNAP, got \"pg\"");
        assert_eq!(snapshot_arg("pg@s1").unwrap(), ("pg", "s1"));
        let err = parse_chunk_size("8G").unwrap_err();
        assert_eq!(error_line(&err), "invalid chunk size \"8G\": use a power of two from 4K to 1M");
        assert_eq!(parse_chunk_size("64K").unwrap(), 65536);
        let err = anyhow::Error::from(AdminError::Unauthorized);
        assert_eq!(
            error_line(&err),
            "unauthorized: missing or wrong admin token (see --token-file / CLONEBD_TOKEN)"
        );
        let err = anyhow::Error::from(AdminError::Api {
            status: 409,
            message: "name pg is already taken".into(),
        });
        assert_eq!(error_line(&err), "name pg is already taken");
    }

    #[test]
    fn tables_are_aligned() {
        let volumes = [
            VolumeDto {
                name: "pg".into(),
                size: 10 << 30,
                chunk_size: 65536,
                origin: None,
                written_bytes: 3 << 29,
                snapshot_count: 2,
                created: "2026-11-24T13:05:12Z".into(),
            },
            VolumeDto {
                name: "test1".into(),
                size: 10 << 30,
                chunk_size: 65536,
                origin: Some("pg@s1".into()),
                written_bytes: 0,
                snapshot_count: 0,
                created: "2026-11-24T13:05:12Z".into(),
            },
        ];
        assert_eq!(
            volumes_table(&volumes),
            "NAME   SIZE    CHUNK   WRITTEN  ORIGIN  SNAPSHOTS\n\
             pg     10 GiB  64 KiB  1.5 GiB  -       2\n\
             test1  10 GiB  64 KiB  0 B      pg@s1   0\n"
        );
    }

    #[test]
    fn diff_shows_exact_ranges_and_a_total() {
        let diff = DiffDto {
            ranges: vec![
                RangeDto { offset: 0, length: 65536 },
                RangeDto { offset: (1 << 30) + 65536, length: 131072 },
            ],
            total_bytes: 196608,
        };
        assert_eq!(
            diff_text(&diff),
            "OFFSET       LENGTH\n\
             0 B          64 KiB\n\
             1048640 KiB  128 KiB\n\
             total: 2 ranges, 192 KiB changed\n"
        );
    }
}
