//! How volumes look to people (a to-scale bar and a table) and to programs
//! (the `info --json` object, whose keys are a contract).

use std::fmt::Write as _;

use serde::Serialize;

use pmem_stack::backing::{Backing, BackingKind};
use pmem_stack::format::geometry::{HEAD_SIZE, PRIMARY_OFFSET, SUPERBLOCK_SIZE};
use pmem_stack::format::superblock::VERSION_MAJOR;
use pmem_stack::format::{Geometry, Owners, ReserveMode, SuperBlock};
use pmem_stack::metadata::{CopyReport, CopyState, Metadata, describe_copy};
use pmem_stack::size::Human;
use pmem_stack::ublk::features::{IoPath, WriteCache};
use pmem_stack::units::PAGE_SHIFT;

/// What a region of the backing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegionKind {
    Head,
    Primary,
    Padding,
    Reserve,
    Data,
    Backup,
    Tail,
}

impl RegionKind {
    /// Its character in the bar.
    fn symbol(self) -> char {
        match self {
            RegionKind::Head => 'h',
            RegionKind::Primary => 'S',
            RegionKind::Reserve => 'R',
            RegionKind::Data => 'D',
            RegionKind::Backup => 'B',
            RegionKind::Padding | RegionKind::Tail => '.',
        }
    }

    /// Its name in the table.
    fn name(self) -> &'static str {
        match self {
            RegionKind::Head => "head",
            RegionKind::Primary => "primary",
            RegionKind::Padding => "padding",
            RegionKind::Reserve => "reserve",
            RegionKind::Data => "data",
            RegionKind::Backup => "backup",
            RegionKind::Tail => "tail",
        }
    }
}

/// One region of the bar.
struct Region {
    kind: RegionKind,
    offset: u64,
    size: u64,
}

fn regions(g: &Geometry) -> Vec<Region> {
    let backup = g.backup_offset();
    let mut all = vec![
        Region {
            kind: RegionKind::Head,
            offset: 0,
            size: HEAD_SIZE,
        },
        Region {
            kind: RegionKind::Primary,
            offset: PRIMARY_OFFSET,
            size: SUPERBLOCK_SIZE,
        },
        Region {
            kind: RegionKind::Padding,
            offset: PRIMARY_OFFSET + SUPERBLOCK_SIZE,
            size: g.reserve_offset() - (PRIMARY_OFFSET + SUPERBLOCK_SIZE),
        },
        Region {
            kind: RegionKind::Reserve,
            offset: g.reserve_offset(),
            size: g.reserve_size(),
        },
        Region {
            kind: RegionKind::Data,
            offset: g.data_offset(),
            size: g.data_size(),
        },
        Region {
            kind: RegionKind::Padding,
            offset: g.data_end(),
            size: backup - g.data_end(),
        },
        Region {
            kind: RegionKind::Backup,
            offset: backup,
            size: SUPERBLOCK_SIZE,
        },
    ];
    let end = backup + SUPERBLOCK_SIZE;
    if g.device_size() > end {
        all.push(Region {
            kind: RegionKind::Tail,
            offset: end,
            size: g.device_size() - end,
        });
    }
    all.retain(|r| r.size > 0);
    all
}

/// The layout as `width` characters, each region proportional to its size
/// (regions too small to show get one character, taken from the largest).
pub fn layout_bar(g: &Geometry, width: usize) -> String {
    let regions = regions(g);
    let total = g.device_size().max(1);
    let mut cells: Vec<usize> = regions
        .iter()
        .map(|r| {
            let exact = u128::from(r.size) * width as u128 / u128::from(total);
            // A share too large for a usize is wider than the bar: clamp.
            usize::try_from(exact).unwrap_or(width).max(1)
        })
        .collect();
    let sum: usize = cells.iter().sum();
    if let Some((largest, _)) = cells.iter().enumerate().max_by_key(|(_, c)| **c) {
        if sum > width {
            cells[largest] = cells[largest].saturating_sub(sum - width).max(1);
        } else {
            cells[largest] += width - sum;
        }
    }
    let mut bar = String::with_capacity(width + 2);
    bar.push('[');
    for (region, n) in regions.iter().zip(cells) {
        bar.extend(std::iter::repeat_n(region.kind.symbol(), n));
    }
    bar.push(']');
    bar
}

fn kind_name(kind: BackingKind) -> &'static str {
    match kind {
        BackingKind::Block => "block device",
        BackingKind::Dax => "devdax device",
        BackingKind::File => "image file",
    }
}

/// A copy in JSON. Like every JSON object pmem-stack prints, it has all its
/// keys every time: a value that is unknown or does not apply is `null`,
/// never a missing key, so a reader tells "no value" from "not
/// understood" and one schema describes every output (see the man pages).
#[derive(Debug, Serialize)]
pub struct CopyJson {
    /// `null` only for a backup on a backing too small to hold one.
    pub offset: Option<u64>,
    pub state: CopyState,
    /// What is wrong with a copy that is not `ok` (`null` when it is).
    pub detail: Option<String>,
}

impl From<&CopyReport> for CopyJson {
    fn from(r: &CopyReport) -> CopyJson {
        CopyJson {
            offset: r.offset,
            state: r.state,
            detail: r.problem.as_ref().map(ToString::to_string),
        }
    }
}

/// The `info --json` object.
#[derive(Debug, Serialize)]
pub struct InfoJson {
    pub backing: String,
    pub backing_kind: BackingKind,
    pub backing_size: u64,
    pub format_version: String,
    pub uuid: String,
    pub parent_uuid: Option<String>,
    pub generation: u64,
    pub device_size: u64,
    pub align: u64,
    pub mode: ReserveMode,
    pub reserve_offset: u64,
    pub reserve_size: u64,
    pub data_offset: u64,
    pub data_size: u64,
    pub logical_block_size: u32,
    pub primary: CopyJson,
    pub backup: CopyJson,
    /// The reserve's physical range and its frame numbers; `null` when
    /// sysfs reports no physical address (an image file).
    pub reserve_phys_start: Option<u64>,
    pub reserve_phys_end: Option<u64>,
    pub reserve_mfn_start: Option<u64>,
    pub reserve_mfn_end: Option<u64>,
    /// The reserve's owners, as `reserve list --json` has them (none in
    /// mode none).
    pub owners: Vec<OwnerJson>,
    pub healthy: bool,
    pub served_by: Option<String>,
    /// `ublk` or `dm` (`list`'s `kind`), or null when not served.
    pub served_kind: Option<ServedKind>,
    /// Whether the serving device is DAX-capable (null when not served).
    pub dax: Option<bool>,
    /// How the serving device moves data (`list`'s `io_path`).
    pub io_path: Option<IoPath>,
    /// The serving ublk device's write cache (`list`'s `write_cache`).
    pub write_cache: Option<WriteCache>,
}

/// One owner of the reserve in JSON (`reserve list`, `info`; `reserved`'s
/// claims start with the same keys). An owner's name is `owner` wherever
/// pmem-stack prints one.
#[derive(Debug, Serialize)]
pub struct OwnerJson {
    pub owner: String,
    pub kind: &'static str,
    pub offset: u64,
    pub size: u64,
}

/// The owners of `sb`'s reserve (none in mode none). An unsplit reserve has
/// one owner, named (and of the kind) of its mode.
pub fn owners_of(sb: &SuperBlock) -> Vec<OwnerJson> {
    let g = &sb.geometry;
    if sb.owners.is_empty() {
        if g.mode() == ReserveMode::None {
            return Vec::new();
        }
        return vec![OwnerJson {
            owner: g.mode().as_str().to_string(),
            kind: g.mode().as_str(),
            offset: g.reserve_offset(),
            size: g.reserve_size(),
        }];
    }
    sb.owners
        .iter()
        .map(|o| OwnerJson {
            owner: o.name.to_string(),
            kind: o.kind.as_str(),
            offset: o.offset,
            size: o.size,
        })
        .collect()
}

/// Which of the two ways serves a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServedKind {
    /// `/dev/ublkbN`, by a pmem-stack server (`add`).
    Ublk,
    /// `/dev/mapper/NAME`, a device-mapper linear device (`map`).
    Dm,
}

/// The device serving a backing, as `info` shows it.
#[derive(Debug, Clone)]
pub struct Serving {
    /// `/dev/ublkbN` or `/dev/mapper/NAME`.
    pub device: String,
    /// Which kind of device it is.
    pub kind: ServedKind,
    /// Its I/O path, when the kernel still describes a ublk device.
    pub io_path: Option<IoPath>,
    /// Its write cache, likewise.
    pub write_cache: Option<WriteCache>,
    /// Whether it is DAX-capable.
    pub dax: bool,
}

/// Physical range of the reserve, `[start, end)`, when sysfs knows where the
/// backing sits. Xen names it in machine frames: `address >> PAGE_SHIFT`.
pub fn reserve_phys(backing: &Backing, g: &Geometry) -> Option<(u64, u64)> {
    let base = backing.phys_start()?;
    let start = base.checked_add(g.reserve_offset())?;
    Some((start, start.checked_add(g.reserve_size())?))
}

/// Build the JSON object.
pub fn info_json(
    backing: &Backing,
    sb: &SuperBlock,
    m: &Metadata,
    served_by: Option<Serving>,
) -> InfoJson {
    let g = &sb.geometry;
    let phys = reserve_phys(backing, g);
    InfoJson {
        backing: backing.path().display().to_string(),
        backing_kind: backing.kind(),
        backing_size: backing.size(),
        format_version: format!("{VERSION_MAJOR}.{}", sb.version_minor),
        uuid: sb.uuid.to_string(),
        parent_uuid: (!sb.parent_uuid.is_nil()).then(|| sb.parent_uuid.to_string()),
        generation: sb.generation,
        device_size: g.device_size(),
        align: g.align().bytes(),
        mode: g.mode(),
        reserve_offset: g.reserve_offset(),
        reserve_size: g.reserve_size(),
        data_offset: g.data_offset(),
        data_size: g.data_size(),
        logical_block_size: g.logical_block_size().bytes(),
        primary: CopyJson::from(&m.primary),
        backup: CopyJson::from(&m.backup),
        reserve_phys_start: phys.map(|p| p.0),
        reserve_phys_end: phys.map(|p| p.1),
        reserve_mfn_start: phys.map(|p| p.0 >> PAGE_SHIFT),
        reserve_mfn_end: phys.map(|p| p.1 >> PAGE_SHIFT),
        owners: owners_of(sb),
        healthy: m.is_healthy(),
        io_path: served_by.as_ref().and_then(|s| s.io_path),
        write_cache: served_by.as_ref().and_then(|s| s.write_cache),
        served_kind: served_by.as_ref().map(|s| s.kind),
        dax: served_by.as_ref().map(|s| s.dax),
        served_by: served_by.map(|s| s.device),
    }
}

/// The notes column of `info`'s table for one region.
fn region_note(
    kind: RegionKind,
    g: &Geometry,
    owners: &Owners,
    m: &Metadata,
    phys: Option<(u64, u64)>,
    served_by: Option<&Serving>,
) -> String {
    match kind {
        RegionKind::Head => "never written by pmem-stack".to_string(),
        RegionKind::Primary => describe_copy(&m.primary),
        RegionKind::Backup => describe_copy(&m.backup),
        RegionKind::Reserve => {
            let mut note = format!("mode {}, never touched by pmem-stack", g.mode());
            if !owners.is_empty() {
                let _ = write!(
                    note,
                    "; {} ({})",
                    match owners.len() {
                        1 => "held by one owner".to_string(),
                        n => format!("shared by {n} owners"),
                    },
                    owners
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if let Some((start, end)) = phys {
                let _ = write!(
                    note,
                    "; phys {start:#x}-{end:#x} (MFN {:#x}-{:#x})",
                    start >> PAGE_SHIFT,
                    end >> PAGE_SHIFT
                );
            }
            note
        }
        RegionKind::Data => match served_by {
            Some(Serving {
                device,
                kind: ServedKind::Dm,
                dax,
                ..
            }) => format!(
                "mapped as {device} (device-mapper linear, {})",
                if *dax { "DAX" } else { "no DAX" }
            ),
            Some(Serving {
                device,
                io_path: Some(path),
                write_cache,
                ..
            }) => format!(
                "served as {device} (ublk, {} I/O path{})",
                path.name(),
                write_cache.map_or(String::new(), |c| format!(", {}", c.name()))
            ),
            Some(Serving { device, .. }) => format!("served as {device} (ublk)"),
            None => "not served".to_string(),
        },
        RegionKind::Padding | RegionKind::Tail => String::new(),
    }
}

/// The human form of `info`.
pub fn info_text(
    backing: &Backing,
    sb: &SuperBlock,
    m: &Metadata,
    served_by: Option<&Serving>,
) -> String {
    let g = &sb.geometry;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}, {}): pmem-stack volume {VERSION_MAJOR}.{}, uuid {}, generation {}",
        backing.path().display(),
        kind_name(backing.kind()),
        Human(backing.size()),
        sb.version_minor,
        sb.uuid,
        sb.generation
    );
    if !sb.parent_uuid.is_nil() {
        let _ = writeln!(out, "namespace uuid {}", sb.parent_uuid);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  {}", layout_bar(g, 72));
    let _ = writeln!(
        out,
        "  h head (never written)  S primary  R reserve  D data  B backup  . padding"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<9} {:>16} {:>12}  notes",
        "region", "offset", "size"
    );
    let phys = reserve_phys(backing, g);
    for region in regions(g) {
        let _ = writeln!(
            out,
            "  {:<9} {:>16} {:>12}  {}",
            region.kind.name(),
            region.offset,
            Human(region.size).to_string(),
            region_note(region.kind, g, &sb.owners, m, phys, served_by)
        );
    }
    let _ = writeln!(
        out,
        "\n  align {}, logical block size {}, formatted for {} ({} bytes)",
        g.align(),
        g.logical_block_size().bytes(),
        Human(g.device_size()),
        g.device_size()
    );
    if backing.size() > g.device_size() {
        let _ = writeln!(
            out,
            "  note: the backing grew by {} since it was formatted; that space is unused",
            Human(backing.size() - g.device_size())
        );
    }
    for report in [&m.primary, &m.backup] {
        if report.state != CopyState::Ok {
            let _ = writeln!(
                out,
                "  warning: the {} copy is {}; run 'pmem-stack check --repair {}'",
                report.slot.name(),
                report.state.name(),
                backing.path().display()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmem_stack::layout::{LayoutRequest, ReserveRequest, plan};

    /// The layout `add --reserve` gives with every other option at its default.
    fn geometry(size: u64, reserve: u64) -> Geometry {
        plan(
            size,
            &LayoutRequest::new(ReserveRequest::Bytes(reserve), None),
        )
        .expect("fits")
        .geometry
    }

    #[test]
    fn bar_is_to_scale_and_shows_every_region() {
        let bar = layout_bar(&geometry(2 << 30, 512 << 20), 64);
        assert_eq!(bar.chars().count(), 66);
        for symbol in ['h', 'S', 'R', 'D', 'B'] {
            assert!(bar.contains(symbol), "{bar}");
        }
        // 512 MiB of 2 GiB: a quarter of the width, give or take the tiny ones.
        let r = bar.chars().filter(|&c| c == 'R').count();
        assert!((15..=17).contains(&r), "{bar}");
        let d = bar.chars().filter(|&c| c == 'D').count();
        assert!((42..=48).contains(&d), "{bar}");
        // Order: head, primary, padding, reserve, data, padding, backup.
        let order: String = bar.chars().fold(String::new(), |mut acc, c| {
            if !acc.ends_with(c) {
                acc.push(c);
            }
            acc
        });
        assert_eq!(order, "[hS.RD.B]");
    }

    #[test]
    fn pass_through_bar_has_no_reserve() {
        let bar = layout_bar(&geometry(64 << 20, 0), 40);
        assert!(!bar.contains('R'), "{bar}");
        assert_eq!(bar.chars().count(), 42);
    }
}
