//! `reserved`, `reserve split`, `reserve list`, `grow`: what the reserve's
//! owners claim, splitting it among several (format 1.1), and growing a
//! volume over a backing that grew.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use pmem_stack::backing::{Access, Backing};
use pmem_stack::daemon;
use pmem_stack::format::superblock::VERSION_MAJOR;
use pmem_stack::format::{Geometry, ReserveMode, SuperBlock};
use pmem_stack::layout::xen_reserve_for_pages;
use pmem_stack::metadata;
use pmem_stack::registry::{Entry, Registry};
use pmem_stack::retry;
use pmem_stack::size::{Exact, Human};
use pmem_stack::ublk::control::{self, DeviceState};
use pmem_stack::units::{PAGE_SHIFT, PAGE_SIZE};
use pmem_stack::volume::amend;

use super::args::{GrowArgs, OwnersListArgs, ReservedArgs, SplitArgs};
use super::render::{OwnerJson, Serving, info_json, info_text, owners_of};
use pmem_stack::recovery::DEVICE_LOCK_WAIT;

use super::add::Announce;
use super::service;
use super::usage::usage;
use super::{attachment, open_exclusive, print_json};

/// What an owner needs to claim its range (`reserved`).
#[derive(Debug, Serialize)]
struct Claim {
    owner: String,
    kind: &'static str,
    /// The volume's reserve mode (what a 1.0 reader sees).
    mode: ReserveMode,
    offset: u64,
    end: u64,
    size: u64,
    pages: u64,
    phys_start: Option<u64>,
    phys_end: Option<u64>,
    mfn_start: Option<u64>,
    mfn_end: Option<u64>,
}

fn claims(backing: &Backing, sb: &SuperBlock) -> Vec<Claim> {
    let base = backing.phys_start();
    owners_of(sb)
        .into_iter()
        .map(|o| {
            let end = o.offset + o.size;
            let phys = base.and_then(|b| Some((b.checked_add(o.offset)?, b.checked_add(end)?)));
            Claim {
                owner: o.owner,
                kind: o.kind,
                mode: sb.geometry.mode(),
                offset: o.offset,
                end,
                size: o.size,
                pages: o.size / PAGE_SIZE,
                phys_start: phys.map(|p| p.0),
                phys_end: phys.map(|p| p.1),
                mfn_start: phys.map(|p| p.0 >> PAGE_SHIFT),
                mfn_end: phys.map(|p| p.1 >> PAGE_SHIFT),
            }
        })
        .collect()
}

fn claim_text(c: &Claim) -> String {
    let mut line = format!(
        "{} ({}): bytes {}-{} of the backing ({}, {} pages)",
        c.owner,
        c.kind,
        c.offset,
        c.end,
        Human(c.size),
        c.pages
    );
    match (c.phys_start, c.phys_end, c.mfn_start, c.mfn_end) {
        (Some(ps), Some(pe), Some(ms), Some(me)) => {
            let _ = write!(
                line,
                "; phys {ps:#x}-{pe:#x}; MFN {ms:#x}-{me:#x} (ends exclusive)"
            );
        }
        _ => line.push_str("; physical address unknown (not a pmem namespace)"),
    }
    line
}

/// What `reserved` and `reserve list` say of a mode none volume.
const NO_RESERVE: &str = "no reserve (mode none): nothing to claim or split; a reserve takes a new layout ('pmem-stack format --force --reserve SIZE', which moves the data area)";

pub fn reserved(args: &ReservedArgs) -> Result<ExitCode> {
    let path = args.backing.display().to_string();
    let backing = Backing::open(&args.backing, Access::ReadOnly)?;
    let (sb, _) = metadata::open_volume(&backing).with_context(|| path.clone())?;
    if sb.geometry.mode() == ReserveMode::None {
        // Nothing to claim is an answer, not a failure: the same one
        // `reserve list` gives.
        if let Some(name) = &args.owner {
            bail!("{path}: the reserve has no owner '{name}': {NO_RESERVE}");
        }
        if args.json {
            print_json(&Vec::<()>::new())?;
        } else {
            println!("{path}: {NO_RESERVE}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut all = claims(&backing, &sb);
    if let Some(name) = &args.owner {
        let names: Vec<String> = all.iter().map(|c| c.owner.clone()).collect();
        all.retain(|c| &c.owner == name);
        if all.is_empty() {
            bail!(
                "{path}: the reserve has no owner '{name}'; its owners are: {}",
                names.join(", ")
            );
        }
    }
    if args.json {
        match (&args.owner, all.first()) {
            (Some(_), Some(one)) => print_json(one)?,
            _ => print_json(&all)?,
        }
    } else {
        println!(
            "{path}: reserve of volume {} ({} at byte {}, mode {})",
            sb.uuid,
            Human(sb.geometry.reserve_size()),
            sb.geometry.reserve_offset(),
            sb.geometry.mode()
        );
        for c in &all {
            println!("  {}", claim_text(c));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `reserve list --json` object.
#[derive(Debug, Serialize)]
struct ListJson {
    backing: String,
    uuid: String,
    format_version: String,
    generation: u64,
    mode: ReserveMode,
    reserve_offset: u64,
    reserve_size: u64,
    /// Whether the reserve has an owner table (format 1.1).
    split: bool,
    /// Bytes of the reserve no owner holds.
    unassigned: u64,
    owners: Vec<OwnerJson>,
}

fn list_json(path: &str, sb: &SuperBlock) -> ListJson {
    let g = &sb.geometry;
    ListJson {
        backing: path.to_string(),
        uuid: sb.uuid.to_string(),
        format_version: format!("{VERSION_MAJOR}.{}", sb.version_minor),
        generation: sb.generation,
        mode: g.mode(),
        reserve_offset: g.reserve_offset(),
        reserve_size: g.reserve_size(),
        split: !sb.owners.is_empty(),
        unassigned: if sb.owners.is_empty() {
            0
        } else {
            sb.owners.unassigned(g.reserve_size())
        },
        owners: owners_of(sb),
    }
}

fn print_list(path: &str, sb: &SuperBlock, json: bool) -> Result<()> {
    let list = list_json(path, sb);
    if json {
        return print_json(&list);
    }
    if sb.geometry.mode() == ReserveMode::None {
        println!("{path}: {NO_RESERVE}");
        return Ok(());
    }
    println!(
        "{path}: reserve {} at byte {} (mode {}), {}",
        Human(list.reserve_size),
        list.reserve_offset,
        list.mode,
        match list.owners.len() {
            _ if !list.split => "one owner (not split)".to_string(),
            1 => "held by one named owner (format 1.1)".to_string(),
            n => format!("split among {n} owners (format 1.1)"),
        }
    );
    println!(
        "  {:<31} {:<10} {:>16} {:>12}",
        "owner", "kind", "offset", "size"
    );
    for o in &list.owners {
        println!(
            "  {:<31} {:<10} {:>16} {:>12}",
            o.owner,
            o.kind,
            o.offset,
            Human(o.size).to_string()
        );
    }
    if list.unassigned > 0 {
        println!("  unassigned: {}", Human(list.unassigned));
    }
    Ok(())
}

pub fn list(args: &OwnersListArgs) -> Result<ExitCode> {
    let path = args.backing.display().to_string();
    let backing = Backing::open(&args.backing, Access::ReadOnly)?;
    let (sb, _) = metadata::open_volume(&backing).with_context(|| path.clone())?;
    print_list(&path, &sb, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Refuse a backing a pmem-stack device serves, saying `why` and `then`.
fn refuse_served(
    path: &Path,
    registry: &Registry,
    why: &dyn Fn() -> &'static str,
    then: &str,
) -> Result<()> {
    let Ok(backing) = Backing::open(path, Access::ReadOnly) else {
        return Ok(());
    };
    if let Some(entry) = attachment(registry, &backing) {
        let p = path.display();
        let id = entry.id;
        bail!(
            "{p}: is served as /dev/ublkb{id}; {}: 'pmem-stack del {id}', then {then}, then 'pmem-stack add {p}'",
            why()
        );
    }
    Ok(())
}

pub fn split(args: &SplitArgs) -> Result<ExitCode> {
    let registry = Registry::system();
    let path = args.backing.display().to_string();
    if let Err(err) = amend::check_specs(&args.owners) {
        usage!("cannot split the reserve of {path}: {err}");
    }
    refuse_served(
        &args.backing,
        &registry,
        &|| "the reserve's split cannot change while it is served (its owners may be using it)",
        &format!("'pmem-stack reserve split {path} …'"),
    )?;
    let backing = open_exclusive(&args.backing, &registry)?;
    let current = metadata::open_volume(&backing)
        .with_context(|| format!("cannot split the reserve of {path}"))?
        .0;
    if current.geometry.reserve_size() == 0 {
        return Err(amend::UpdateError::NoReserve)
            .with_context(|| format!("cannot split the reserve of {path}"));
    }
    let owners = amend::lay_out_owners(&args.owners, &current.geometry)
        .map_err(amend::UpdateError::from)
        .with_context(|| format!("cannot split the reserve of {path}"))?;
    let (_, next) = amend::plan_split(&backing, owners)
        .with_context(|| format!("cannot split the reserve of {path}"))?;
    amend::write_split(&backing, &next)
        .with_context(|| format!("splitting the reserve of {path}"))?;
    let (sb, _) = metadata::open_volume(&backing)?;
    print_list(&path, &sb, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Advice after a grow: reserves sized for the smaller data area.
fn grow_warnings(sb: &SuperBlock) -> Vec<String> {
    let g: &Geometry = &sb.geometry;
    let mut out = Vec::new();
    if sb.owners.is_empty() && g.mode() == ReserveMode::Hypervisor {
        let need = xen_reserve_for_pages(g.data_size() / PAGE_SIZE);
        if g.reserve_size() < need {
            out.push(format!(
                "the reserve ({}) is below what Xen's rule asks for the grown data area ({})",
                Human(g.reserve_size()),
                Human(need)
            ));
        }
    }
    for o in sb.owners.iter() {
        if let Some(need) = amend::auto_size(o.kind, g.data_size())
            && o.size < need
        {
            out.push(format!(
                "owner '{}' ({}) holds {}, below what its kind's rule asks for the grown data area ({})",
                o.name,
                o.kind,
                Human(o.size),
                Human(need)
            ));
        }
    }
    out
}

pub fn grow(args: &GrowArgs) -> Result<ExitCode> {
    let registry = Registry::system();
    let path = args.backing.display().to_string();
    let served = Backing::open(&args.backing, Access::ReadOnly)
        .ok()
        .and_then(|probe| attachment(&registry, &probe));
    if let Some(entry) = served {
        return grow_served(args, &registry, &entry);
    }
    let backing = open_exclusive(&args.backing, &registry)?;
    let plan = amend::plan_grow(&backing).with_context(|| format!("cannot grow {path}"))?;
    amend::write_grow(&backing, &plan).with_context(|| format!("growing {path}"))?;
    report_grown(args, &plan, &backing, None)
}

/// `grow` of a backing a device serves, on a kernel that resizes live ublk
/// devices (`UBLK_F_UPDATE_SIZE`, Linux 6.16+). The server cannot widen its
/// own mapping, engine and dirty map under running queues, so it is
/// replaced, exactly as `restart` replaces it: it flushes and exits without
/// removing the device, which waits quiesced (I/O queues in the kernel; a
/// mounted file system only waits). The volume then grows on the media as it
/// does offline — crash-safe at every write — and a successor attaches,
/// serving the larger data area and telling the kernel its new size. A crash
/// anywhere in between leaves a quiesced device that `recover` brings back
/// at whatever size the media then records, old or new.
fn grow_served(args: &GrowArgs, registry: &Registry, entry: &Entry) -> Result<ExitCode> {
    let p = args.backing.display().to_string();
    let id = entry.id;
    let context = || format!("cannot grow {p}");
    let refused = |why: &str| {
        anyhow!(
            "{p}: is served as /dev/ublkb{id}; {why}: 'pmem-stack del {id}', then 'pmem-stack grow {p}', then 'pmem-stack add {p}'"
        )
    };
    if !control::kernel_can_resize() {
        return Err(refused(
            "this kernel cannot resize a live ublk device (UBLK_F_UPDATE_SIZE needs Linux 6.16+)",
        ));
    }
    if !entry.recovery {
        return Err(refused(
            "the kernel did not grant it user recovery, so its server cannot hand it over to one serving the larger size",
        ));
    }
    // Whatever would refuse is found before the server is disturbed.
    let probe = Backing::open(&args.backing, Access::ReadOnly).with_context(context)?;
    amend::plan_grow(&probe).with_context(context)?;
    drop(probe);
    // Held until the volume has grown: a successor a service manager starts
    // meanwhile waits for it (see `Registry::lock_device`).
    let lock = registry
        .lock_device(id, DEVICE_LOCK_WAIT)
        .with_context(context)?;
    let info = control::device_info(id).with_context(context)?;
    let running = info.state == DeviceState::Live && !daemon::process_gone(info.pid);
    if running {
        service::hand_over(id, info.pid, entry.supervised).with_context(context)?;
    }
    let grown = grow_quiesced(&args.backing, entry);
    drop(lock);
    // Whether or not it grew, the device must not be left waiting.
    let attached = service::attach_successor(
        id,
        entry,
        entry.supervised && running,
        Announce::Nothing,
        registry,
    );
    let plan =
        grown.with_context(|| format!("growing {p} (/dev/ublkb{id} serves on at its old size)"))?;
    attached.with_context(|| {
        format!(
            "{p} grew, but /dev/ublkb{id} has no server: 'pmem-stack recover {id}' attaches one"
        )
    })?;
    let want = plan.after.geometry.data_size();
    let have = served_size(id, want).with_context(context)?;
    if have != want {
        bail!(
            "{p} grew to a {} data area, but /dev/ublkb{id} serves {} (the server's log says why): 'pmem-stack restart {id}' retries",
            Human(want),
            Human(have)
        );
    }
    let probe = Backing::open(&args.backing, Access::ReadOnly).with_context(context)?;
    report_grown(args, &plan, &probe, super::served_by(registry, &probe))
}

/// The size device `id` serves, once it is `want` or [`RESIZE_WAIT`] has
/// passed. A successor resizes the device just after the kernel shows it
/// live again, so the first look may still see the old size.
fn served_size(id: u32, want: u64) -> Result<u64> {
    let every = Duration::from_millis(50);
    Ok(retry::until(
        RESIZE_WAIT,
        every,
        |last| match control::device_size(id) {
            Ok(have) if have != want && !last => None,
            other => Some(other),
        },
    )?)
}

/// How long `grow` gives a successor to serve the new size.
const RESIZE_WAIT: Duration = Duration::from_secs(10);

/// The growing itself, while the device waits with no server.
fn grow_quiesced(path: &Path, entry: &Entry) -> Result<amend::GrowPlan> {
    // The old server's files close as it exits (or re-executes): wait for it.
    let backing = pmem_stack::recovery::open_released(path)?;
    if backing.identity() != entry.identity {
        bail!(
            "{} is no longer the backing /dev/ublkb{} served",
            path.display(),
            entry.id
        );
    }
    let plan = amend::plan_grow(&backing)?;
    amend::write_grow(&backing, &plan)?;
    Ok(plan)
}

fn report_grown(
    args: &GrowArgs,
    plan: &amend::GrowPlan,
    backing: &Backing,
    served: Option<Serving>,
) -> Result<ExitCode> {
    for warning in grow_warnings(&plan.after) {
        eprintln!("warning: {warning}");
    }
    let (sb, m) = metadata::open_volume(backing)?;
    if args.json {
        print_json(&info_json(backing, &sb, &m, served))?;
    } else {
        println!(
            "{}: data area grew from {} to {}",
            args.backing.display(),
            Exact(plan.before.geometry.data_size()),
            Exact(sb.geometry.data_size())
        );
        print!("{}", info_text(backing, &sb, &m, served.as_ref()));
    }
    Ok(ExitCode::SUCCESS)
}
