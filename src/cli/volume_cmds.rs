//! `format`, `info`, `check`: the offline commands.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use pmem_stack::backing::{Access, Backing};
use pmem_stack::format::ReserveMode;
use pmem_stack::layout::ReserveRequest;
use pmem_stack::metadata::{self, MetadataError};
use pmem_stack::registry::Registry;
use pmem_stack::size::Human;
use pmem_stack::update;
use pmem_stack::volume;

use super::args::{CheckArgs, FormatArgs, InfoArgs};
use super::render::{CopyJson, info_json, info_text};
use super::{open_exclusive, print_json, served_by};

pub fn format(args: &FormatArgs) -> Result<ExitCode> {
    let registry = Registry::system();
    let mut options = args.layout.options();
    // Check the options before opening anything, so a typo never costs a
    // device open (or a refusal message about the device).
    if options.request().is_none() && args.owners.is_empty() {
        return Err(volume::VolumeError::FormatNeedsReserve.into());
    }
    if !args.owners.is_empty()
        && (options.mode == Some(ReserveMode::None)
            || options.reserve == Some(ReserveRequest::Bytes(0)))
    {
        bail!(
            "--owner splits a reserve, and mode none has none; give --reserve SIZE|auto or leave it out"
        );
    }
    let backing = open_exclusive(&args.backing, &registry)?;
    if options.reserve.is_none() {
        // Owners without --reserve: a reserve that holds them all, sized
        // for the largest data area the backing could have.
        let need = update::reserve_for(&args.owners, backing.size())
            .with_context(|| format!("cannot format {}", args.backing.display()))?;
        options.reserve = Some(ReserveRequest::Bytes(need));
    }
    let plan = volume::plan_format(&backing, &options, args.force)
        .with_context(|| format!("cannot format {}", args.backing.display()))?;
    let owners = update::lay_out_owners(&args.owners, &plan.plan.geometry)
        .with_context(|| format!("cannot format {}", args.backing.display()))?;
    // With owners, each is sized by its own rule; the whole reserve's Xen
    // advice does not apply.
    if owners.is_empty() {
        for warning in &plan.plan.warnings {
            eprintln!("warning: {warning}");
        }
    }
    let sb = metadata::write_new_volume_with(&backing, plan.plan.geometry, owners, plan.generation)
        .with_context(|| format!("formatting {}", args.backing.display()))?;
    let m = metadata::read(&backing)?;
    if args.json {
        print_json(&info_json(&backing, &sb, &m, None))?;
    } else {
        print!("{}", info_text(&backing, &sb, &m, None));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn info(args: &InfoArgs) -> Result<ExitCode> {
    let backing = Backing::open(&args.backing, Access::ReadOnly)?;
    let (sb, m) = match metadata::open_volume(&backing) {
        Ok(found) => found,
        // A backing that shrank still has a readable layout worth showing.
        Err(MetadataError::Shrunk { needed, actual, .. }) => {
            let m = metadata::read(&backing)?;
            let sb = m.current.context("no valid super block")?;
            eprintln!(
                "warning: the backing is smaller than the volume ({} < {}); it cannot be served",
                Human(actual),
                Human(needed)
            );
            (sb, m)
        }
        Err(err) => {
            return Err(err).with_context(|| format!("{}", args.backing.display()));
        }
    };
    let served = served_by(&Registry::system(), &backing);
    if args.json {
        print_json(&info_json(&backing, &sb, &m, served))?;
    } else {
        print!("{}", info_text(&backing, &sb, &m, served.as_ref()));
    }
    Ok(ExitCode::SUCCESS)
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
            "the backing ({}) is smaller than the volume ({}): it cannot be served",
            Human(backing_size),
            Human(needed)
        ));
    }
    problems
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
                println!("{path}: run 'pmem-stack check --repair {path}' to rewrite the bad copy");
            }
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
