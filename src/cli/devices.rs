//! `list` and `del`: the devices pmem-stack serves.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use pmem_stack::daemon;
use pmem_stack::dm;
use pmem_stack::registry::{Entry, Registry};
use pmem_stack::size::Human;
use pmem_stack::ublk::control;

use super::args::{DelArgs, ListArgs, UdevIdArgs, parse_device_id};
use super::json::{DeviceJson, MapJson, device_json, map_json};
use super::print_json;
use super::usage::usage;

/// How long `del` waits for a server to flush and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// One entry of `list --json`: a ublk device or a map.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ListJson {
    Ublk(DeviceJson),
    Dm(MapJson),
}

/// Records of devices the kernel still has; records of vanished devices are
/// stale (the server was killed and the device deleted by someone else, or
/// the machine rebooted without clearing /run) and are removed.
fn current_entries(registry: &Registry) -> Vec<Entry> {
    let live = control::device_ids();
    registry
        .all()
        .into_iter()
        .filter(|e| {
            let present = live.contains(&e.id);
            if !present {
                let _ = registry.remove(e.id);
            }
            present
        })
        .collect()
}

/// One line of `list`'s table.
fn row(cells: [String; 9]) -> String {
    let [
        device,
        kind,
        state,
        server,
        pid,
        queues,
        backing,
        offset,
        size,
    ] = cells;
    format!(
        "{device:<12} {kind:<5} {state:<10} {server:<8} {pid:>7} {queues:>8}  {backing:<20} {offset:>14} {size:>12}"
    )
}

/// Unknown (no record) is "-", never a made-up 0.
fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn ublk_row(d: DeviceJson) -> String {
    row([
        d.device,
        "ublk".into(),
        d.state,
        if d.server_running { "running" } else { "dead" }.into(),
        d.pid.to_string(),
        format!("{}x{}", d.queues, d.depth),
        d.backing.unwrap_or_default(),
        or_dash(d.volume.data_offset),
        or_dash(d.volume.data_size.map(Human)),
    ])
}

fn dm_row(m: MapJson) -> String {
    row([
        m.device,
        "dm".into(),
        if m.dax {
            format!("{} dax", m.state)
        } else {
            m.state.to_string()
        },
        "kernel".into(),
        "-".into(),
        "-".into(),
        m.backing.unwrap_or_default(),
        or_dash(m.volume.data_offset),
        or_dash(m.volume.data_size.map(Human)),
    ])
}

pub fn list(args: &ListArgs) -> Result<ExitCode> {
    let registry = Registry::system();
    let maps = dm::maps();
    // The tables are read through /dev/mapper/control (root); without it
    // the offsets come from the super blocks.
    let mapper = if maps.is_empty() {
        None
    } else {
        dm::Mapper::open().ok()
    };
    let mut devices: Vec<ListJson> = current_entries(&registry)
        .iter()
        .map(|e| ListJson::Ublk(device_json(e)))
        .collect();
    devices.extend(
        maps.iter()
            .map(|m| ListJson::Dm(map_json(m, mapper.as_ref()))),
    );
    if args.json {
        print_json(&devices)?;
        return Ok(ExitCode::SUCCESS);
    }
    if devices.is_empty() {
        // Without the driver there can be none: say why.
        if control::check_driver().is_err() {
            println!("no pmem-stack devices (the ublk driver is not loaded: modprobe ublk_drv)");
        } else {
            println!("no pmem-stack devices");
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}",
        row([
            "DEVICE",
            "KIND",
            "STATE",
            "SERVER",
            "PID",
            "QUEUES",
            "BACKING",
            "DATA OFFSET",
            "DATA SIZE"
        ]
        .map(String::from))
    );
    for d in devices {
        println!(
            "{}",
            match d {
                ListJson::Ublk(d) => ublk_row(d),
                ListJson::Dm(m) => dm_row(m),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Delete one device: ask the kernel (which stops it, letting the server
/// flush), wait for the server to exit, forget the record.
fn delete_one(registry: &Registry, id: u32) -> Result<()> {
    let info = control::device_info(id)?;
    let server_running = !daemon::process_gone(info.pid);
    // Pulling a device from under a mounted file system loses its unwritten
    // data; refuse while the server can still serve the unmount. (With the
    // server dead, I/O waits forever, so unmounting hangs until the device is
    // gone: then deleting is the way out.)
    if server_running && let Some(holder) = control::holder(id) {
        bail!("/dev/ublkb{id} is in use ({holder}); unmount or release it first");
    }
    control::delete(id)?;
    if server_running && !daemon::wait_gone(info.pid, STOP_TIMEOUT) {
        bail!(
            "/dev/ublkb{id} was removed but its server (pid {}) has not exited after {} s",
            info.pid,
            STOP_TIMEOUT.as_secs()
        );
    }
    registry.remove(id).context("forgetting the device")?;
    Ok(())
}

/// One device in `del --json`.
#[derive(Debug, Serialize)]
struct Removal {
    id: u32,
    device: String,
    removed: bool,
    error: Option<String>,
}

/// Print what `del` did: a line per device (errors on stderr), or with
/// `--json` one array. Exit 1 when any device was not removed.
fn report_removals(results: Vec<(u32, Result<()>)>, json: bool) -> Result<ExitCode> {
    let failed = results.iter().any(|(_, r)| r.is_err());
    let removals: Vec<Removal> = results
        .into_iter()
        .map(|(id, result)| Removal {
            id,
            device: format!("/dev/ublkb{id}"),
            removed: result.is_ok(),
            error: result.err().map(|err| super::remedy::message(&err)),
        })
        .collect();
    if json {
        print_json(&removals)?;
    }
    for removal in &removals {
        match &removal.error {
            Some(err) => eprintln!("error: {err}"),
            None if !json => println!("removed {}", removal.device),
            None => {}
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn del(args: &DelArgs) -> Result<ExitCode> {
    let registry = Registry::system();
    if args.all {
        let entries = current_entries(&registry);
        // Nothing served (always so without the driver): nothing to do,
        // which is what --all asked for.
        if entries.is_empty() {
            if args.json {
                print_json(&Vec::<Removal>::new())?;
            } else {
                println!("nothing to remove: pmem-stack serves no devices");
            }
            return Ok(ExitCode::SUCCESS);
        }
        control::check_driver()?;
        let results = entries
            .into_iter()
            .map(|entry| (entry.id, delete_one(&registry, entry.id)))
            .collect();
        return report_removals(results, args.json);
    }
    // The argument first: a bad name is wrong whether or not ublk works here.
    let text = args.device.as_deref().unwrap_or_default();
    let Some(id) = parse_device_id(text) else {
        usage!(
            "'{text}' is not a device: give N or /dev/ublkbN (maps are removed with 'pmem-stack unmap')"
        );
    };
    control::check_driver()?;
    if !control::device_ids().contains(&id) {
        let _ = registry.remove(id);
        bail!("/dev/ublkb{id} does not exist ('pmem-stack list' shows the devices)");
    }
    if registry.load(id)?.is_none() {
        bail!("/dev/ublkb{id} is not a pmem-stack device; remove it with the tool that created it");
    }
    if args.json {
        return report_removals(vec![(id, delete_one(&registry, id))], true);
    }
    delete_one(&registry, id)?;
    println!("removed /dev/ublkb{id}");
    Ok(ExitCode::SUCCESS)
}

/// `udev-id ublkbN`: the udev rule's import of the device's volume uuid, from
/// the server's record (written before the device appears). The uuid is the
/// volume's, so `/dev/disk/by-id/pmem-stack-<uuid>` names the same data on
/// every boot whatever N the kernel hands out.
pub fn udev_id(args: &UdevIdArgs) -> Result<ExitCode> {
    let id = parse_device_id(&args.device)
        .ok_or_else(|| anyhow!("'{}' is not a ublk device name", args.device))?;
    let registry = Registry::system();
    let entry = registry
        .load(id)?
        .ok_or_else(|| anyhow!("/dev/ublkb{id} is not served by pmem-stack (no record)"))?;
    println!("PMEM_STACK_UUID={}", entry.uuid);
    println!("PMEM_STACK_ID={}", entry.id);
    Ok(ExitCode::SUCCESS)
}
