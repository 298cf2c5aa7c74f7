//! Facts about a backing that only sysfs knows.
//!
//! The physical start address is what a hypervisor needs to claim the reserve
//! (Xen takes machine frame numbers), the namespace UUID becomes the super
//! block's parent UUID, and the region's persistence domain decides whether a
//! devdax mapping needs CPU cache write-back. Everything here is best effort:
//! a missing attribute is `None`, never an error, because an image file or a
//! plain block device simply has no such facts.

use std::fs;
use std::path::{Path, PathBuf};

use crate::format::Uuid;
use crate::units::{PMD_SIZE, SECTOR_SIZE};

/// The alignment of a devdax device that does not say otherwise: Linux's
/// default, a PMD.
pub const DAX_DEFAULT_ALIGN: u64 = PMD_SIZE;

/// Where a device's sysfs directory is, from its major:minor.
pub fn device_dir(block: bool, major: u32, minor: u32) -> PathBuf {
    let class = if block { "block" } else { "char" };
    PathBuf::from(format!("/sys/dev/{class}/{major}:{minor}"))
}

/// The kernel's name of a device (`pmem0`, `ublkb3`, `dax0.0`): the last
/// component of where its sysfs directory link points.
pub fn kernel_name(dev_dir: &Path) -> Option<String> {
    let target = fs::read_link(dev_dir).ok()?;
    Some(target.file_name()?.to_str()?.to_string())
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Parse a sysfs number, decimal or `0x` hex.
pub fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Physical address of byte 0 of a pmem block device (namespace, pfn device, or
/// a partition of one), from `device/resource` plus the partition start.
pub fn block_phys_start(dev_dir: &Path) -> Option<u64> {
    if dev_dir.join("partition").exists() {
        let start_sectors = parse_number(&read_trimmed(&dev_dir.join("start"))?)?;
        let parent = dev_dir.join("..");
        let base = parse_number(&read_trimmed(&parent.join("device/resource"))?)?;
        return base.checked_add(start_sectors.checked_mul(SECTOR_SIZE)?);
    }
    parse_number(&read_trimmed(&dev_dir.join("device/resource"))?)
}

/// Physical address of byte 0 of a devdax character device.
pub fn dax_phys_start(dev_dir: &Path) -> Option<u64> {
    parse_number(&read_trimmed(&dev_dir.join("resource"))?)
}

/// Size of a devdax character device in bytes.
pub fn dax_size(dev_dir: &Path) -> Option<u64> {
    parse_number(&read_trimmed(&dev_dir.join("size"))?)
}

/// Mapping alignment a devdax device requires ([`DAX_DEFAULT_ALIGN`] unless it
/// says otherwise).
pub fn dax_align(dev_dir: &Path) -> u64 {
    read_trimmed(&dev_dir.join("align"))
        .and_then(|s| parse_number(&s))
        .filter(|a| a.is_power_of_two())
        .unwrap_or(DAX_DEFAULT_ALIGN)
}

/// Whether `dev_dir` (a char device's sysfs directory) is a devdax device.
pub fn is_dax_char(dev_dir: &Path) -> bool {
    fs::read_link(dev_dir.join("subsystem"))
        .is_ok_and(|target| target.file_name().is_some_and(|n| n == "dax"))
}

/// UUID of the NVDIMM namespace under a device: the namespace's own `uuid`, or
/// (for pfn / dax / btt devices) that of the namespace their `namespace`
/// attribute names. Raw namespaces have none.
pub fn namespace_uuid(device_link: &Path) -> Option<Uuid> {
    if let Some(uuid) = read_trimmed(&device_link.join("uuid"))
        .as_deref()
        .and_then(Uuid::parse)
        .filter(|u| !u.is_nil())
    {
        // A pfn/dax device has its own uuid; prefer its namespace's.
        if let Some(ns) = read_trimmed(&device_link.join("namespace")).filter(|s| !s.is_empty()) {
            let ns_uuid = read_trimmed(&PathBuf::from("/sys/bus/nd/devices").join(ns).join("uuid"))
                .as_deref()
                .and_then(Uuid::parse)
                .filter(|u| !u.is_nil());
            if ns_uuid.is_some() {
                return ns_uuid;
            }
        }
        return Some(uuid);
    }
    let ns = read_trimmed(&device_link.join("namespace")).filter(|s| !s.is_empty())?;
    read_trimmed(&PathBuf::from("/sys/bus/nd/devices").join(ns).join("uuid"))
        .as_deref()
        .and_then(Uuid::parse)
        .filter(|u| !u.is_nil())
}

/// The persistence domain of the NVDIMM region above `dev_dir`
/// (`cpu_cache`, `memory_controller`), if sysfs reports one.
pub fn persistence_domain(dev_dir: &Path) -> Option<String> {
    let mut dir = fs::canonicalize(dev_dir).ok()?;
    loop {
        if let Some(domain) = read_trimmed(&dir.join("persistence_domain")) {
            return Some(domain);
        }
        if !dir.pop() || dir == Path::new("/sys") || dir == Path::new("/") {
            return None;
        }
    }
}

/// Who holds a block device open exclusively, as far as the system says:
/// a mount point or a stacked device (dm, md, ...).
pub fn block_holder(major: u32, minor: u32) -> Option<String> {
    let want = format!("{major}:{minor}");
    if let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") {
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.get(2) == Some(&want.as_str())
                && let Some(mount_point) = fields.get(4)
            {
                return Some(format!("mounted at {mount_point}"));
            }
        }
    }
    let holders = device_dir(true, major, minor).join("holders");
    let names: Vec<String> = fs::read_dir(holders)
        .ok()?
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // A device-mapper holder has a name users know it by.
            match read_trimmed(&e.path().join("dm/name")).filter(|n| !n.is_empty()) {
                Some(dm_name) => format!("{name} = /dev/mapper/{dm_name}"),
                None => name,
            }
        })
        .collect();
    if names.is_empty() {
        None
    } else {
        Some(format!("held by {}", names.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_both_bases() {
        assert_eq!(parse_number("0x140000000\n"), Some(0x1_4000_0000));
        assert_eq!(parse_number("2097152"), Some(2 << 20));
        assert_eq!(parse_number("0XFF"), Some(255));
        assert_eq!(parse_number("zz"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn fake_sysfs_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path().join("259:0");
        fs::create_dir_all(dev.join("device")).expect("mkdir");
        fs::write(dev.join("device/resource"), "0x140000000\n").expect("write");
        assert_eq!(block_phys_start(&dev), Some(0x1_4000_0000));

        fs::write(
            dev.join("device/uuid"),
            "0f2d4c1e-9a3b-4c5d-8e7f-102132435465\n",
        )
        .expect("write");
        assert_eq!(
            namespace_uuid(&dev.join("device")).map(|u| u.to_string()),
            Some("0f2d4c1e-9a3b-4c5d-8e7f-102132435465".to_string())
        );

        let dax = dir.path().join("dax");
        fs::create_dir_all(&dax).expect("mkdir");
        fs::write(dax.join("resource"), "0x150000000").expect("write");
        fs::write(dax.join("size"), "1054867456").expect("write");
        assert_eq!(dax_phys_start(&dax), Some(0x1_5000_0000));
        assert_eq!(dax_size(&dax), Some(1_054_867_456));
        assert_eq!(dax_align(&dax), 2 << 20);
        fs::write(dax.join("align"), "1073741824").expect("write");
        assert_eq!(dax_align(&dax), 1 << 30);

        fs::write(dir.path().join("persistence_domain"), "cpu_cache\n").expect("write");
        assert_eq!(persistence_domain(&dax).as_deref(), Some("cpu_cache"));
    }

    #[test]
    fn partition_start_is_added() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = dir.path().join("disk");
        let part = disk.join("pmem0p1");
        fs::create_dir_all(disk.join("device")).expect("mkdir");
        fs::create_dir_all(&part).expect("mkdir");
        fs::write(disk.join("device/resource"), "0x100000000").expect("write");
        fs::write(part.join("partition"), "1").expect("write");
        fs::write(part.join("start"), "2048").expect("write");
        assert_eq!(block_phys_start(&part), Some(0x1_0000_0000 + 2048 * 512));
    }
}
