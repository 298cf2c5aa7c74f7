//! The server's private mount namespace.
//!
//! A ublk server that ends up holding the last reference to a mount of its
//! own device deadlocks on exit (see libublk-rs#51). A server shares the
//! caller's mounts unless it is given a namespace of its own, so it gets a
//! private one: mounts made later in the caller's namespace do not propagate
//! into it, and the copies of ublk mounts that already exist (re-attaching to
//! a mounted device, or another server's device) are detached right away.
//! This is the only module that reads `/proc/self/mountinfo`, so its parsing
//! and unescaping live here too.

use std::io;

use rustix::io::Errno;
use rustix::mount::{MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

/// Give this process a private mount namespace without any mount of a ublk
/// device in it.
///
/// The copy `unshare` makes contains every mount that exists now; a copied
/// mount keeps its file system alive after the user unmounts the original,
/// and if that file system sits on a ublk device — ours (when re-attaching)
/// or another server's — deleting that device pulls it from under a file
/// system nobody can see, and a server holding a mount of its own device
/// deadlocks on exit. So every such copy is detached right away, and because
/// the namespace is private, later mounts never propagate into it.
pub fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: rustix marks unshare unsafe (and its safe `unshare` deprecated)
    // only for CLONE_FILES, after which other threads' file descriptors may
    // be missing from this thread's table. NEWNS leaves the fd table alone:
    // it gives this thread its own copy of the mount table (and, implied
    // CLONE_FS, its own root, working directory and umask); no memory or
    // descriptor any thread uses changes.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    for point in ublk_mount_points(&mountinfo, is_ublk_block_device) {
        match rustix::mount::unmount(point.as_str(), UnmountFlags::DETACH) {
            // MNT_DETACH only affects this (private) namespace.
            Ok(()) => {}
            // Already gone with a parent that was detached first.
            Err(Errno::INVAL | Errno::NOENT) => {}
            Err(err) => log::warn!("could not detach {point} in the server's namespace: {err}"),
        }
    }
    Ok(())
}

/// Whether block device `major:minor` is a ublk disk or one of its partitions.
fn is_ublk_block_device(major_minor: &str) -> bool {
    std::fs::canonicalize(format!("/sys/dev/block/{major_minor}"))
        .map(|path| {
            path.components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with("ublkb"))
        })
        .unwrap_or(false)
}

/// Mount points (innermost first) of the mounts in `mountinfo` whose device
/// `is_ublk` says is a ublk device.
fn ublk_mount_points(mountinfo: &str, is_ublk: impl Fn(&str) -> bool) -> Vec<String> {
    mountinfo
        .lines()
        .rev()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let device = fields.get(2)?;
            let point = fields.get(4)?;
            is_ublk(device).then(|| unescape_mount_point(point))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as a backslash and
/// three octal digits; anything else, including a backslash that does not
/// start such an escape, is taken literally.
fn unescape_mount_point(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match octal_escape(&bytes[i..]) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte that `rest` starts with an escape of (`\ooo`, at most `\377`).
fn octal_escape(rest: &[u8]) -> Option<u8> {
    let [b'\\', digits @ ..] = rest.get(..4)? else {
        return None;
    };
    let value = digits.iter().try_fold(0u32, |value, &digit| {
        (b'0'..=b'7')
            .contains(&digit)
            .then(|| value * 8 + u32::from(digit - b'0'))
    })?;
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ublk_mounts_are_picked_innermost_first() {
        let mountinfo = "\
22 1 0:21 / / rw - 9p host rw
30 22 259:1 / /mnt/a rw - xfs /dev/ublkb0 rw
31 30 259:2 / /mnt/a/b\\040c rw shared:5 master:1 - ext4 /dev/ublkb1 rw
32 22 7:0 / /mnt/loop rw - ext4 /dev/loop0 rw
";
        let points = ublk_mount_points(mountinfo, |dev| dev.starts_with("259:"));
        assert_eq!(points, vec!["/mnt/a/b c".to_string(), "/mnt/a".to_string()]);
    }

    #[test]
    fn mount_points_unescape() {
        assert_eq!(unescape_mount_point("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_point("/plain"), "/plain");
        assert_eq!(unescape_mount_point("/x\\134y"), "/x\\y");
        assert_eq!(unescape_mount_point("/t\\011\\012"), "/t\t\n");
        // Not escapes: too short, not octal, or more than a byte.
        assert_eq!(unescape_mount_point("/end\\04"), "/end\\04");
        assert_eq!(unescape_mount_point("/a\\"), "/a\\");
        assert_eq!(unescape_mount_point("/a\\08x"), "/a\\08x");
        assert_eq!(unescape_mount_point("/a\\777"), "/a\\777");
        assert_eq!(unescape_mount_point("/a\\\\040"), "/a\\ ");
    }
}
