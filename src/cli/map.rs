//! `map` and `unmap`: the data area as a device-mapper linear device, the
//! kernel's own (and, over an fsdax namespace, DAX-capable) way to serve it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use pmem_stack::backing::{Access, Backing};
use pmem_stack::dm::{self, DevNum, LinearTable, Map, MapError, MapName, Mapper};
use pmem_stack::metadata;
use pmem_stack::registry::Registry;
use pmem_stack::server::Volume;

use super::args::{MapArgs, UnmapArgs};
use super::serve::plan_volume;
use super::{open_exclusive, print_json};

/// One map in `list --json` (and `map --json`).
#[derive(Debug, Serialize)]
pub struct MapJson {
    /// Always `dm`.
    pub kind: &'static str,
    /// `/dev/mapper/NAME`.
    pub device: String,
    pub name: String,
    /// The kernel's name, `dm-N`.
    pub dm_device: String,
    pub backing: Option<String>,
    /// `live` or `suspended`.
    pub state: &'static str,
    /// Whether the device is DAX-capable (`queue/dax`).
    pub dax: bool,
    /// Where the table starts on the backing and how much it maps (from the
    /// kernel's table; the super block's when the table cannot be read).
    pub data_offset: Option<u64>,
    pub data_size: Option<u64>,
    pub reserve_offset: Option<u64>,
    pub reserve_size: Option<u64>,
    pub mode: Option<String>,
    pub uuid: Option<String>,
}

/// What `list` shows of `map`; `mapper` reads its table when there is one.
pub fn map_json(map: &Map, mapper: Option<&Mapper>) -> MapJson {
    let backing = map.backing_node();
    // The super block, read-only and shared (dm holds the backing).
    let sb = backing
        .as_ref()
        .and_then(|path| Backing::open(path, Access::ReadOnly).ok())
        .and_then(|b| metadata::open_volume(&b).ok())
        .map(|(sb, _)| sb);
    let table = mapper.and_then(|m| m.table(&map.name));
    let g = sb.as_ref().map(|sb| sb.geometry);
    MapJson {
        kind: "dm",
        device: map.node().display().to_string(),
        name: map.name.clone(),
        dm_device: map.kernel_name.clone(),
        backing: backing.map(|p| p.display().to_string()),
        state: if map.suspended { "suspended" } else { "live" },
        dax: map.dax,
        data_offset: table
            .and_then(|t| t.offset())
            .or(g.map(|g| g.data_offset())),
        data_size: table.and_then(|t| t.size()).or(map.size),
        reserve_offset: g.map(|g| g.reserve_offset()),
        reserve_size: g.map(|g| g.reserve_size()),
        mode: g.map(|g| g.mode().to_string()),
        uuid: map.volume.or(sb.map(|sb| sb.uuid)).map(|u| u.to_string()),
    }
}

/// Refuse a name some dm device already has.
fn refuse_taken(mapper: &Mapper, name: &MapName) -> Result<(), MapError> {
    if mapper.exists(name)? {
        Err(MapError::NameTaken(name.as_str().to_string()))
    } else {
        Ok(())
    }
}

pub fn map(args: &MapArgs) -> Result<ExitCode> {
    let context = || format!("cannot map {}", args.backing.display());
    // Everything that can refuse comes before the first write: what the
    // backing is, then whether device-mapper is there and the name free.
    let backing = open_exclusive(&args.backing, &Registry::system())?;
    let dev = dm::check_mappable(&backing).with_context(context)?;
    let mapper = Mapper::open().with_context(context)?;
    if let Some(name) = &args.name {
        refuse_taken(&mapper, name).with_context(context)?;
    }
    let volume = plan_volume(
        &backing,
        &args.layout.options(),
        args.force,
        "map is removed",
    )
    .with_context(context)?;
    if let (None, Volume::Existing(sb)) = (&args.name, &volume) {
        refuse_taken(&mapper, &MapName::for_volume(&sb.uuid)).with_context(context)?;
    }
    let sb = match volume {
        Volume::Existing(sb) => *sb,
        Volume::Format(plan) => {
            metadata::write_new_volume(&backing, plan.plan.geometry, plan.generation)
                .with_context(|| format!("formatting {}", args.backing.display()))?
        }
    };
    let table = LinearTable::for_volume(&sb.geometry, dev).with_context(context)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| MapName::for_volume(&sb.uuid));
    // dm claims the backing exclusively: our own claim must go first. Should
    // anything else claim it in between, the table load fails (EBUSY) and
    // nothing is left behind.
    drop(backing);
    log::info!("mapping {}: {}", args.backing.display(), table.line());
    let node = mapper
        .create(&name, &sb.uuid, &table)
        .with_context(context)?;
    if args.json {
        match dm::maps().iter().find(|m| m.name == name.as_str()) {
            Some(map) => print_json(&map_json(map, Some(&mapper)))?,
            None => bail!("{} was made but sysfs does not show it", node.display()),
        }
    } else {
        println!("{}", node.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The map `text` names: `NAME`, `/dev/mapper/NAME`, the map's device node
/// (`/dev/dm-N`), or the backing it maps.
fn resolve(text: &str) -> Result<String> {
    if let Some(name) = text.strip_prefix("/dev/mapper/") {
        return Ok(name.to_string());
    }
    if !text.contains('/') {
        return Ok(text.to_string());
    }
    let path = Path::new(text);
    let meta = std::fs::metadata(path).with_context(|| format!("{text}: cannot stat it"))?;
    if !meta.file_type().is_block_device() {
        bail!("{text}: is not a map, nor a block device that is mapped");
    }
    let dev = DevNum::of(meta.rdev());
    dm::map_at(dev)
        .or_else(|| dm::map_of(dev))
        .map(|m| m.name)
        .ok_or_else(|| MapError::NotMapped(path.to_path_buf()).into())
}

pub fn unmap(args: &UnmapArgs) -> Result<ExitCode> {
    let context = || format!("cannot unmap {}", args.map);
    let name = resolve(&args.map).with_context(context)?;
    let mapper = Mapper::open().with_context(context)?;
    mapper.remove(&name).with_context(context)?;
    println!("removed {}/{name}", dm::MAPPER_DIR);
    Ok(ExitCode::SUCCESS)
}
