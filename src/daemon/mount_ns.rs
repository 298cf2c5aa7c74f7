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
    // SAFETY: unshare with CLONE_NEWNS only affects this process's view of
    // mounts; no memory is involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let root = c"/";
    let none = c"none";
    // SAFETY: valid NUL-terminated strings; a null data pointer is allowed.
    let rc = unsafe {
        libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    for point in ublk_mount_points(&mountinfo, is_ublk_block_device) {
        let c_point = std::ffi::CString::new(point.clone()).map_err(io::Error::other)?;
        // SAFETY: a valid NUL-terminated path; MNT_DETACH only affects this
        // (private) namespace.
        if unsafe { libc::umount2(c_point.as_ptr(), libc::MNT_DETACH) } != 0 {
            let err = io::Error::last_os_error();
            // Already gone with a parent that was detached first.
            if err.raw_os_error() != Some(libc::EINVAL) && err.raw_os_error() != Some(libc::ENOENT)
            {
                log::warn!("could not detach {point} in the server's namespace: {err}");
            }
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

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_point(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ublk_mounts_are_picked_innermost_first() {
        let mountinfo = "\
22 1 0:21 / / rw - 9p host rw
30 22 259:1 / /mnt/a rw - xfs /dev/ublkb0 rw
31 30 259:2 / /mnt/a/b\\040c rw - ext4 /dev/ublkb1 rw
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
    }
}
