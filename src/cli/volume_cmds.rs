//! `format`, `info`, `check`: the offline commands.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use pmem_stack::backing::{Access, Backing};
use pmem_stack::format::ReserveMode;
use pmem_stack::layout::ReserveRequest;
use pmem_stack::metadata::{self, MetadataError};
use pmem_stack::registry::Registry;
use pmem_stack::size::Exact;
use pmem_stack::volume::amend;
use pmem_stack::volume::{self, LayoutOptions};

use super::args::{CheckArgs, FormatArgs, InfoArgs};
use super::render::{CopyJson, info_json, info_text};
use super::usage::usage;
use super::{open_exclusive, print_json, served_by};

/// The checks `format` makes on its arguments alone, before anything is
/// opened: each failure is a usage error (exit 2).
fn check_format_usage(args: &FormatArgs, options: &LayoutOptions) -> Result<()> {
    let none = options.mode == Some(ReserveMode::None);
    let zero = options.reserve == Some(ReserveRequest::Bytes(0));
    if args.owners.is_empty() {
        if options.request().is_none() {
            usage!(
                "cannot format {}: no reserve given; pass --reserve SIZE|auto (or --reserve 0 for none), or --owner",
                args.backing.display()
            );
        }
        if none
            && options
                .reserve
                .is_some_and(|r| !matches!(r, ReserveRequest::Bytes(0)))
        {
            usage!("--mode none takes no reserve; use --reserve 0, or choose --mode hypervisor|os");
        }
        if zero
            && matches!(
                options.mode,
                Some(ReserveMode::Hypervisor | ReserveMode::Os)
            )
        {
            usage!(
                "--mode {} needs a reserve larger than 0",
                options.mode.unwrap_or(ReserveMode::None)
            );
        }
        return Ok(());
    }
    if none || zero {
        usage!(
            "--owner splits a reserve, and {} has none; give --reserve SIZE|auto or leave it out",
            if none {
                "--mode none"
            } else {
                "--reserve 0 (mode none)"
            }
        );
    }
    if let Err(err) = amend::check_specs(&args.owners) {
        usage!("cannot format {}: {err}", args.backing.display());
    }
    Ok(())
}

pub fn format(args: &FormatArgs) -> Result<ExitCode> {
    let registry = Registry::system();
    let mut options = args.layout.options();
    // Check the options before opening anything, so a typo never costs a
    // device open (or a refusal message about the device).
    check_format_usage(args, &options)?;
    let backing = if args.dry_run {
        Backing::open(&args.backing, Access::ReadOnly)?
    } else {
        open_exclusive(&args.backing, &registry)?
    };
    let cannot = || format!("cannot format {}", args.backing.display());
    if options.reserve.is_none() {
        // Owners without --reserve: a reserve that holds them all, sized
        // for the largest data area the backing could have.
        let need = amend::reserve_for(&args.owners, backing.size()).with_context(cannot)?;
        options.reserve = Some(ReserveRequest::Bytes(need));
    }
    let mut plan = volume::plan_format(&backing, &options, args.force).with_context(cannot)?;
    let owners = amend::lay_out_owners(&args.owners, &plan.plan.geometry).with_context(cannot)?;
    // Owners without --mode: the volume's mode is theirs when they share one
    // kind (one OS's page array makes a mode os reserve). Laid out first, so
    // an owner too small is named as such; the same reserve then gets that
    // mode's rules.
    let mode = amend::mode_for(&args.owners);
    if !owners.is_empty() && options.mode.is_none() && mode != plan.plan.geometry.mode() {
        options.mode = Some(mode);
        options.reserve = Some(ReserveRequest::Bytes(plan.plan.geometry.reserve_size()));
        plan = volume::plan_format(&backing, &options, args.force).with_context(cannot)?;
    }
    // With owners, each is sized by its own rule; the whole reserve's Xen
    // advice and its rounding (the owners asked for no size) do not apply.
    let mut notes = Vec::new();
    if owners.is_empty() {
        for warning in &plan.plan.warnings {
            eprintln!("warning: {warning}");
        }
        notes.clone_from(&plan.plan.notes);
    }
    for note in &notes {
        eprintln!("note: {note}");
    }
    let sb = if args.dry_run {
        metadata::new_volume(&backing, plan.plan.geometry, owners, plan.generation)?
    } else {
        metadata::write_new_volume_with(&backing, plan.plan.geometry, owners, plan.generation)
            .with_context(|| format!("formatting {}", args.backing.display()))?
    };
    let m = if args.dry_run {
        metadata::Metadata::as_written(&sb)
    } else {
        metadata::read(&backing)?
    };
    if args.json {
        let mut json =
            serde_json::to_value(info_json(&backing, &sb, &m, None)).context("encoding JSON")?;
        json["dry_run"] = args.dry_run.into();
        json["notes"] = notes.into();
        print_json(&json)?;
    } else if !args.quiet {
        if args.dry_run {
            println!(
                "dry run: nothing was written; 'format' without --dry-run writes this layout:"
            );
        }
        print!("{}", info_text(&backing, &sb, &m, None));
    }
    Ok(ExitCode::SUCCESS)
}

/// One backing as `info` shows it.
struct Shown {
    backing: Backing,
    sb: pmem_stack::format::SuperBlock,
    m: metadata::Metadata,
    served: Option<super::render::Serving>,
}

/// Read one backing's volume for `info`; `several` names the backing in a
/// warning, which would otherwise not say whose it is.
fn show(path: &std::path::Path, several: bool) -> Result<Shown> {
    let backing = Backing::open(path, Access::ReadOnly)?;
    let (sb, m) = match metadata::open_volume(&backing) {
        Ok(found) => found,
        // A backing that shrank still has a readable layout worth showing.
        Err(MetadataError::Shrunk { needed, actual, .. }) => {
            let m = metadata::read(&backing)?;
            let sb = m.current.context("no valid super block")?;
            let whose = if several {
                format!("{}: ", path.display())
            } else {
                String::new()
            };
            eprintln!(
                "warning: {whose}the backing is smaller than the volume needs ({} < {}); it cannot be served",
                Exact(actual),
                Exact(needed)
            );
            (sb, m)
        }
        Err(err) => {
            return Err(err).with_context(|| format!("{}", path.display()));
        }
    };
    let served = served_by(&Registry::system(), &backing);
    Ok(Shown {
        backing,
        sb,
        m,
        served,
    })
}

/// `info BACKING…`: one block of text per backing (a blank line between),
/// or with `--json` one object — an array of them when several are given.
/// A backing that cannot be shown prints its one-line error on stderr and
/// the others are still shown; then the exit status is 1.
pub fn info(args: &InfoArgs) -> Result<ExitCode> {
    if let [path] = args.backings.as_slice() {
        let s = show(path, false)?;
        if args.json {
            print_json(&info_json(&s.backing, &s.sb, &s.m, s.served))?;
        } else {
            print!("{}", info_text(&s.backing, &s.sb, &s.m, s.served.as_ref()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    let mut objects = Vec::new();
    let mut first = true;
    for path in &args.backings {
        let s = match show(path, true) {
            Ok(s) => s,
            Err(err) => {
                eprintln!("error: {}", super::remedy::message(&err));
                failed = true;
                continue;
            }
        };
        if args.json {
            objects.push(info_json(&s.backing, &s.sb, &s.m, s.served));
        } else {
            if !first {
                println!();
            }
            first = false;
            print!("{}", info_text(&s.backing, &s.sb, &s.m, s.served.as_ref()));
        }
    }
    if args.json {
        print_json(&objects)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, Serialize)]
struct CheckJson {
    backing: String,
    healthy: bool,
    uuid: Option<String>,
    generation: Option<u64>,
    primary: CopyJson,
    backup: CopyJson,
    repaired: Vec<&'static str>,
    problems: Vec<String>,
}

/// Everything wrong with the metadata, one line each.
fn problems(m: &metadata::Metadata, backing_size: u64) -> Vec<String> {
    let mut problems: Vec<String> = [&m.primary, &m.backup]
        .iter()
        .filter(|r| r.state != metadata::CopyState::Ok)
        .map(|r| {
            let place = match r.offset {
                Some(offset) => format!("at byte {offset}"),
                None => "(the backing has no room for it)".to_string(),
            };
            format!(
                "{} copy {place}: {}",
                r.slot.name(),
                metadata::describe_copy(r)
            )
        })
        .collect();
    if let Some(sb) = m.current
        && let Err(MetadataError::Shrunk { needed, .. }) =
            metadata::check_fits(&sb.geometry, backing_size)
    {
        problems.push(format!(
            "the backing ({}) is smaller than the volume needs ({}): it cannot be served",
            Exact(backing_size),
            Exact(needed)
        ));
    }
    problems
}

/// What to do about an unhealthy volume: `check --repair` only where it can
/// work (a valid copy to repair from, a backing large enough to hold it);
/// otherwise the way out the error itself names.
fn check_advice(m: &metadata::Metadata, backing_size: u64, path: &str) -> String {
    let blocked = match m.require_current() {
        Err(err) => Some(anyhow::Error::from(err)),
        Ok(sb) => metadata::check_fits(&sb.geometry, backing_size)
            .err()
            .map(anyhow::Error::from),
    };
    match blocked {
        None => format!("run 'pmem-stack check --repair {path}' to rewrite the bad copy"),
        Some(err) => format!("cannot repair: {}", super::remedy::message(&err)),
    }
}

pub fn check(args: &CheckArgs) -> Result<ExitCode> {
    let registry = Registry::system();
    let backing = if args.repair {
        open_exclusive(&args.backing, &registry)?
    } else {
        Backing::open(&args.backing, Access::ReadOnly)?
    };
    let path = args.backing.display().to_string();
    let before = metadata::read(&backing).with_context(|| path.clone())?;
    // Nothing to check on a backing that was never formatted; damaged copies
    // (no valid one) are reported below like any other problem.
    if let Err(err @ MetadataError::NotFormatted) = before.require_current() {
        return Err(err).with_context(|| path.clone());
    }
    let mut after = before.clone();
    let mut repaired = Vec::new();
    if args.repair && !before.is_healthy() {
        let outcome =
            metadata::repair(&backing).with_context(|| format!("cannot repair {path}"))?;
        repaired = outcome.rewritten.iter().map(|s| s.name()).collect();
        after = outcome.after;
    }
    let problems = problems(&after, backing.size());
    let healthy = problems.is_empty();

    if args.json {
        print_json(&CheckJson {
            backing: path,
            healthy,
            uuid: after.current.map(|sb| sb.uuid.to_string()),
            generation: after.current.map(|sb| sb.generation),
            primary: CopyJson::from(&after.primary),
            backup: CopyJson::from(&after.backup),
            repaired,
            problems,
        })?;
    } else {
        for slot in &repaired {
            println!("{path}: rewrote the {slot} copy from the good one");
        }
        if healthy {
            let sb = after.current.context("healthy implies a super block")?;
            println!(
                "{path}: ok: both super block copies are valid and agree (uuid {}, generation {})",
                sb.uuid, sb.generation
            );
        } else {
            for problem in &problems {
                println!("{path}: {problem}");
            }
            if !args.repair {
                println!("{path}: {}", check_advice(&after, backing.size(), &path));
            }
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
