//! `map` and `unmap`: the data area as a device-mapper linear device, the
//! kernel's own (and, over an fsdax namespace, DAX-capable) way to serve it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use pmem_stack::dm::{self, DevNum, LinearTable, MapError, MapName, Mapper};
use pmem_stack::metadata;
use pmem_stack::registry::Registry;
use pmem_stack::server::Volume;

use super::args::{MapArgs, UnmapArgs};
use super::json::map_json;
use super::plan::plan_volume;
use super::{open_exclusive, print_json};

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
