//! The JSON objects `list --json` is made of, and that `add`, `recover`,
//! `restart` and `map` print for the one device they made: a ublk device
//! ([`DeviceJson`]) or a map ([`MapJson`]). Both carry the volume they serve
//! in the same keys, in the same order ([`VolumeJson`], flattened), so a
//! tool reads either the same way. Kept apart from the commands that print
//! them, which use each other's objects.

use serde::Serialize;

use pmem_stack::backing::{Access, Backing};
use pmem_stack::daemon;
use pmem_stack::dm::{Map, Mapper};
use pmem_stack::engine::StatsSnapshot;
use pmem_stack::metadata;
use pmem_stack::registry::{Entry, Registry};
use pmem_stack::ublk::affinity::Affinity;
use pmem_stack::ublk::control;
use pmem_stack::ublk::features::{Features, IoPath, WriteCache};

/// The volume a device or a map serves; `null` where it cannot be read.
#[derive(Debug, Default, Serialize)]
pub struct VolumeJson {
    pub data_offset: Option<u64>,
    pub data_size: Option<u64>,
    pub reserve_offset: Option<u64>,
    pub reserve_size: Option<u64>,
    pub mode: Option<String>,
    pub uuid: Option<String>,
}

/// One device in `list --json` (and `add --json`).
#[derive(Debug, Serialize)]
pub struct DeviceJson {
    /// Always `ublk` (maps are `dm`).
    pub kind: &'static str,
    pub id: u32,
    pub device: String,
    pub backing: Option<String>,
    pub state: String,
    pub pid: i32,
    pub server_running: bool,
    pub queues: u16,
    pub depth: u16,
    #[serde(flatten)]
    pub volume: VolumeJson,
    pub user_copy: Option<bool>,
    /// The `UBLK_F_*` flags the kernel granted the device, by name.
    pub features: Vec<String>,
    /// How request data moves (`direct`, `batch`, `user_copy` or
    /// `bounce_buffer`).
    pub io_path: Option<IoPath>,
    /// `write_back` (FLUSH makes writes durable) or `write_through` (every
    /// write is durable when it completes), as the device declared it.
    pub write_cache: Option<WriteCache>,
    /// Where the queue threads run: `node` (any CPU of their queue's NUMA
    /// nodes) or `queue` (pinned to the queue's CPUs).
    pub affinity: Option<Affinity>,
    pub log: Option<String>,
    /// The server's request counters (published every 250 ms), if any.
    pub stats: Option<StatsSnapshot>,
    /// A ublk device is never DAX-capable.
    pub dax: bool,
}

impl DeviceJson {
    /// When the record cannot be read (should not happen): what we know.
    pub fn minimal(id: u32, pid: i32) -> DeviceJson {
        DeviceJson {
            kind: "ublk",
            id,
            device: format!("/dev/ublkb{id}"),
            backing: None,
            state: "live".into(),
            pid,
            server_running: true,
            queues: 0,
            depth: 0,
            volume: VolumeJson::default(),
            user_copy: None,
            features: Vec::new(),
            io_path: None,
            write_cache: None,
            affinity: None,
            log: None,
            dax: false,
            stats: None,
        }
    }
}

/// A record combined with what the kernel says now.
pub fn device_json(entry: &Entry) -> DeviceJson {
    let info = control::device_info(entry.id).ok();
    let pid = info.map_or(entry.pid, |i| i.pid);
    DeviceJson {
        kind: "ublk",
        id: entry.id,
        device: format!("/dev/ublkb{}", entry.id),
        backing: Some(entry.backing.display().to_string()),
        state: info.map_or_else(|| "gone".to_string(), |i| i.state.name()),
        pid,
        server_running: !daemon::process_gone(pid),
        queues: info.map_or(entry.queues, |i| i.queues),
        depth: info.map_or(entry.depth, |i| i.depth),
        volume: VolumeJson {
            data_offset: Some(entry.data_offset),
            data_size: Some(entry.data_size),
            reserve_offset: Some(entry.reserve_offset),
            reserve_size: Some(entry.reserve_size),
            mode: Some(entry.mode.to_string()),
            uuid: Some(entry.uuid.to_string()),
        },
        user_copy: Some(entry.user_copy),
        features: info.map(|i| Features(i.flags).names()).unwrap_or_default(),
        io_path: info.map(|i| IoPath::of(Features(i.flags))),
        write_cache: info.and_then(|_| control::device_write_cache(entry.id).ok()),
        affinity: Some(entry.affinity),
        log: entry.log.as_ref().map(|p| p.display().to_string()),
        dax: false,
        stats: Registry::system().load_stats(entry.id),
    }
}

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
    #[serde(flatten)]
    pub volume: VolumeJson,
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
        volume: VolumeJson {
            data_offset: table
                .and_then(|t| t.offset())
                .or(g.map(|g| g.data_offset())),
            data_size: table.and_then(|t| t.size()).or(map.size),
            reserve_offset: g.map(|g| g.reserve_offset()),
            reserve_size: g.map(|g| g.reserve_size()),
            mode: g.map(|g| g.mode().to_string()),
            uuid: map.volume.or(sb.map(|sb| sb.uuid)).map(|u| u.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume() -> VolumeJson {
        VolumeJson {
            data_offset: Some(1 << 30),
            data_size: Some(2 << 30),
            reserve_offset: Some(2 << 20),
            reserve_size: Some(512 << 20),
            mode: Some("hypervisor".into()),
            uuid: Some("0f2d4c1e-9a3b-4c5d-8e7f-102132435465".into()),
        }
    }

    /// The text other tools parse: every key, in this order, the volume's
    /// keys where they always stood (flattening the shared struct must not
    /// move them).
    #[test]
    fn a_device_and_a_map_print_the_same_volume_keys_in_place() {
        let mut device = DeviceJson::minimal(3, 42);
        device.volume = volume();
        let text = serde_json::to_string(&device).expect("json");
        assert_eq!(
            text,
            concat!(
                r#"{"kind":"ublk","id":3,"device":"/dev/ublkb3","backing":null,"state":"live","#,
                r#""pid":42,"server_running":true,"queues":0,"depth":0,"#,
                r#""data_offset":1073741824,"data_size":2147483648,"reserve_offset":2097152,"#,
                r#""reserve_size":536870912,"mode":"hypervisor","#,
                r#""uuid":"0f2d4c1e-9a3b-4c5d-8e7f-102132435465","user_copy":null,"features":[],"#,
                r#""io_path":null,"write_cache":null,"affinity":null,"log":null,"stats":null,"#,
                r#""dax":false}"#
            )
        );
        let map = MapJson {
            kind: "dm",
            device: "/dev/mapper/m".into(),
            name: "m".into(),
            dm_device: "dm-0".into(),
            backing: Some("/dev/pmem0".into()),
            state: "live",
            dax: true,
            volume: VolumeJson::default(),
        };
        assert_eq!(
            serde_json::to_string(&map).expect("json"),
            concat!(
                r#"{"kind":"dm","device":"/dev/mapper/m","name":"m","dm_device":"dm-0","#,
                r#""backing":"/dev/pmem0","state":"live","dax":true,"data_offset":null,"#,
                r#""data_size":null,"reserve_offset":null,"reserve_size":null,"mode":null,"uuid":null}"#
            )
        );
    }
}
