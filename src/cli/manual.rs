//! The manual's words, as data: what each command's page says beyond its
//! clap definition — a description, every JSON key with its meaning,
//! examples, exit status, files — and what the main page says about the
//! layout, sizes and on-media format versions.
//!
//! Why data in the program rather than hand-written roff: `docs.rs` renders
//! these tables together with the clap definition that parses the command
//! line (synopsis, options, possible values, defaults), so a page cannot
//! name an option the program lacks, and tests hold the tables to the
//! program: every command has a page and every page a command (below), and
//! every key the offline commands print is documented on that command's
//! page (`tests/manual.rs`). The text says what the code does; when a
//! command changes, its entry here changes with it.

/// One JSON key. `path` names a key inside an object as `parent.key` and a
/// key of the objects in an array as `parent[].key`; the keys of the
/// objects in a top-level array are written bare.
pub struct Key {
    pub path: &'static str,
    pub meaning: &'static str,
}

const fn k(path: &'static str, meaning: &'static str) -> Key {
    Key { path, meaning }
}

/// Keys under a heading (`""` for none).
pub struct KeyGroup {
    pub heading: &'static str,
    pub keys: &'static [Key],
}

/// What `--json` prints.
pub struct Json {
    /// The shape, in one or two sentences.
    pub shape: &'static str,
    pub groups: &'static [KeyGroup],
}

/// One piece of a section.
pub enum Block {
    /// A paragraph.
    Para(&'static str),
    /// Lines set as they are (a picture, a shell session).
    Pre(&'static [&'static str]),
    /// A list of terms (in bold) and what they mean.
    Items(&'static [(&'static str, &'static str)]),
}

/// A section of its own (`.SH TITLE`).
pub struct Section {
    pub title: &'static str,
    pub body: &'static [Block],
}

/// One example: what it does, then the command lines.
pub struct Example {
    pub what: &'static str,
    pub lines: &'static [&'static str],
}

/// The page of one command, `pmem-stack-WORDS(8)`.
pub struct Page {
    /// The command's words: `["format"]`, `["reserve", "split"]`.
    pub command: &'static [&'static str],
    /// DESCRIPTION, after the command's one-line summary.
    pub description: &'static [Block],
    /// Sections after OPTIONS (before JSON OUTPUT).
    pub sections: &'static [Section],
    pub json: Option<Json>,
    pub examples: &'static [Example],
    /// Exit statuses this command gives beyond (or instead of) the usual
    /// 0, 1 and 2, by status.
    pub exit_status: &'static [(&'static str, &'static str)],
    pub files: &'static [(&'static str, &'static str)],
    /// Other pages, as `name(section)`.
    pub see_also: &'static [&'static str],
}

/// Exit statuses every command's page shows (unless it says otherwise).
pub const COMMON_EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "Failure, with a one-line message on standard error. A refused or failed command leaves the backing unchanged.",
    ),
    (
        "2",
        "Bad usage: an unknown command or option, a missing, malformed or contradictory argument. Nothing was opened or written.",
    ),
];

/// Every exit status, for the main page.
pub const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success. For check: both super block copies are valid and agree.",
    ),
    (
        "1",
        "Failure, with a one-line message on standard error; for check, a problem was found (named on standard output, or in the JSON). A refused or failed command leaves the backing unchanged.",
    ),
    (
        "2",
        "Bad usage: an unknown command or option, a missing, malformed or contradictory argument. Nothing was opened or written.",
    ),
    (
        "75",
        "Only a server's own exit status (serve, add --foreground, recover --foreground): it handed its device over to a successor (restart or grow of a server without a service manager, or a stop while the device was in use), which the next server brings up through recovery.",
    ),
];

// Files, shared by the pages that touch them.
const RECORD: (&str, &str) = (
    "/run/pmem-stack/ublkbN.json",
    "pmem-stack's record of device N: backing, layout, volume uuid, server pid, queues, I/O choices. Written (atomically) before the device goes live; removed by del. list, del, recover, restart, info and the udev rule read it.",
);
const LOG: (&str, &str) = (
    "/run/pmem-stack/ublkbN.log",
    "A background server's log (mode 0600). A foreground server logs to standard error: the journal under systemd.",
);
const STATS: (&str, &str) = (
    "/run/pmem-stack/ublkbN.stats",
    "The server's request counters, rewritten every 250 ms (list's stats).",
);
const LOCK: (&str, &str) = (
    "/run/pmem-stack/ublkbN.lock",
    "Device N's lock: grow of a served backing holds it from before the hand-over until the volume has grown; recover (and so serve) waits for it, so a successor serves the grown volume.",
);
const LIBUBLK: (&str, &str) = (
    "/run/ublksrvd/NNNN.json",
    "libublk's own export of a device it started (parameters, server pid); pmem-stack neither reads it nor depends on it.",
);
const CONTROL: (&str, &str) = (
    "/dev/ublk-control",
    "The ublk driver's control device (modprobe ublk_drv): adding, recovering and deleting devices needs root.",
);
const DEVICES: (&str, &str) = (
    "/dev/ublkbN, /dev/ublkcN",
    "The block device a server serves, and the character device the server talks to the kernel through.",
);
const MAPPER: (&str, &str) = (
    "/dev/mapper/control, /dev/mapper/NAME",
    "device-mapper's control device, and the devices map makes.",
);
const SYSFS: (&str, &str) = (
    "/sys/block/pmemN/device/resource, /sys/bus/dax/devices/daxX.Y/resource",
    "The physical address of byte 0 of a namespace; the reserve's physical range and frame numbers are this plus its offsets. An image file has none.",
);
const UNIT: (&str, &str) = (
    "/etc/systemd/system/pmem-stack@.service",
    "The unit that serves a backing from boot to shutdown: systemctl enable --now pmem-stack@$(systemd-escape --path /dev/pmem0).service. It runs pmem-stack serve (Type=notify, Restart=on-failure, RestartForceExitStatus=75).",
);
const RULE: (&str, &str) = (
    "/etc/udev/rules.d/60-pmem-stack.rules",
    "Names every device /dev/disk/by-id/pmem-stack-UUID (and -partN) after its volume uuid, through the hidden helper pmem-stack udev-id ublkbN, which prints PMEM_STACK_UUID= and PMEM_STACK_ID= from the device's record.",
);

/// The volume object: `info --json`, `grow --json`, and `format --json`
/// without its two extra keys.
const VOLUME_KEYS: &[Key] = &[
    k("backing", "The backing's path, as given."),
    k(
        "backing_kind",
        "block (a block device such as /dev/pmem0), dax (a devdax device) or file (an image file).",
    ),
    k(
        "backing_size",
        "The backing's size now, in bytes (larger than device_size after it grew and before grow).",
    ),
    k(
        "format_version",
        "The volume's on-media format: \"1.0\", or \"1.1\" when its reserve is split among owners.",
    ),
    k(
        "uuid",
        "The volume's uuid (it stays across grow and reserve split).",
    ),
    k(
        "parent_uuid",
        "The uuid of the namespace the volume was formatted on, or null (an image file, or a namespace without one).",
    ),
    k(
        "generation",
        "The super block's generation: at format 1 on a blank backing (else one above the highest found there), one more at every reserve split and grow; a repair keeps it.",
    ),
    k(
        "device_size",
        "The backing size the volume was laid out for, in bytes.",
    ),
    k(
        "align",
        "The alignment of the reserve and the data area, in bytes.",
    ),
    k(
        "mode",
        "Who owns the reserve: hypervisor (Xen's frame table and M2P), os (the OS's page array) or none (no reserve).",
    ),
    k("reserve_offset", "The reserve's first byte on the backing."),
    k(
        "reserve_size",
        "The reserve's size in bytes (0 in mode none).",
    ),
    k("data_offset", "The data area's first byte on the backing."),
    k(
        "data_size",
        "The data area's size in bytes: the size of the served device.",
    ),
    k(
        "logical_block_size",
        "The served device's logical block size: 512 or 4096.",
    ),
    k(
        "primary",
        "The primary super block copy: an object with offset, state and detail.",
    ),
    k("primary.offset", "Where the copy is: byte 4096."),
    k(
        "primary.state",
        "ok (valid and agreeing), corrupt (carries the magic, fails validation), missing (no super block there) or stale (valid but older, or different at the same generation).",
    ),
    k(
        "primary.detail",
        "What is wrong with a copy that is not ok, in words; null when it is ok.",
    ),
    k("backup", "The backup copy, as primary."),
    k(
        "backup.offset",
        "Where the copy is: the last 4 KiB block of the backing as formatted; null (in check) on a backing too small to hold one.",
    ),
    k("backup.state", "As primary.state."),
    k("backup.detail", "As primary.detail."),
    k(
        "reserve_phys_start",
        "The reserve's physical start address (the backing's physical address from sysfs plus reserve_offset); null when sysfs reports none, e.g. for an image file.",
    ),
    k(
        "reserve_phys_end",
        "The reserve's physical end address, exclusive: [reserve_phys_start, reserve_phys_end); null likewise.",
    ),
    k(
        "reserve_mfn_start",
        "reserve_phys_start >> 12: the first 4 KiB machine frame (Xen's MFN); null likewise.",
    ),
    k(
        "reserve_mfn_end",
        "reserve_phys_end >> 12, exclusive; null likewise.",
    ),
    k(
        "owners",
        "The reserve's owners, as reserve list --json has them: one owner named after the mode for an unsplit reserve, none in mode none.",
    ),
    k("owners[].owner", "The owner's name."),
    k("owners[].kind", "hypervisor, os or other."),
    k("owners[].offset", "Its first byte on the backing."),
    k("owners[].size", "Its size in bytes (a multiple of 4096)."),
    k(
        "healthy",
        "Whether both copies are ok (check says what is wrong when not).",
    ),
    k(
        "served_by",
        "The device serving the data area now, /dev/ublkbN or /dev/mapper/NAME, or null.",
    ),
    k(
        "served_kind",
        "ublk or dm, as list's kind; null when not served.",
    ),
    k(
        "dax",
        "Whether the serving device is DAX-capable (a map over an fsdax namespace); null when not served.",
    ),
    k(
        "io_path",
        "How the serving ublk device moves data: direct, batch, user_copy or bounce_buffer; null when not served by ublk (or the kernel does not say).",
    ),
    k(
        "write_cache",
        "The serving ublk device's cache as declared to the kernel: write_back or write_through; null likewise.",
    ),
];

const FORMAT_KEYS: &[Key] = &[
    k(
        "dry_run",
        "true when --dry-run: the object is the layout format would write, and nothing was written.",
    ),
    k(
        "notes",
        "What the layout did to the sizes asked for (a --reserve rounded up to the alignment), one string each, as format also says on standard error; empty when nothing was rounded.",
    ),
];

const CHECK_KEYS: &[Key] = &[
    k("backing", "The backing's path, as given."),
    k(
        "healthy",
        "Whether both copies are ok after any repair: the exit status is 0 exactly when true.",
    ),
    k(
        "uuid",
        "The volume's uuid, from the current copy; null when no copy is valid.",
    ),
    k(
        "generation",
        "The current copy's generation; null when no copy is valid.",
    ),
    k(
        "primary",
        "The primary copy, after any repair: an object with offset, state and detail.",
    ),
    k("primary.offset", "Where the copy is: byte 4096."),
    k(
        "primary.state",
        "ok, corrupt, missing or stale (see pmem-stack-info(8)).",
    ),
    k(
        "primary.detail",
        "What is wrong with a copy that is not ok, in words; null when it is ok.",
    ),
    k("backup", "The backup copy, as primary."),
    k(
        "backup.offset",
        "Where the copy is; null on a backing too small to hold one.",
    ),
    k("backup.state", "As primary.state."),
    k("backup.detail", "As primary.detail."),
    k(
        "repaired",
        "The copies --repair rewrote from the good one: \"primary\", \"backup\", or none.",
    ),
    k(
        "problems",
        "Everything still wrong, one line each (a damaged copy, a backing smaller than the volume); empty when healthy.",
    ),
];

const CLAIM_KEYS: &[Key] = &[
    k(
        "owner",
        "The owner's name (an unsplit reserve's one owner is named after the mode: hypervisor or os).",
    ),
    k("kind", "hypervisor, os or other."),
    k(
        "mode",
        "The volume's reserve mode (what a 1.0 reader sees).",
    ),
    k("offset", "The owner's first byte on the backing."),
    k("end", "Its end on the backing, exclusive: [offset, end)."),
    k("size", "end - offset, in bytes (a multiple of 4096)."),
    k("pages", "size / 4096: the 4 KiB frames it holds."),
    k(
        "phys_start",
        "The physical address of offset (the backing's physical address from sysfs plus offset); null when sysfs reports none, e.g. for an image file.",
    ),
    k(
        "phys_end",
        "The physical address of end, exclusive; null likewise.",
    ),
    k(
        "mfn_start",
        "phys_start >> 12: the first machine frame number; null likewise.",
    ),
    k(
        "mfn_end",
        "phys_end >> 12, exclusive: [mfn_start, mfn_end); null likewise.",
    ),
];

const OWNER_LIST_KEYS: &[Key] = &[
    k("backing", "The backing's path, as given."),
    k("uuid", "The volume's uuid."),
    k(
        "format_version",
        "\"1.0\", or \"1.1\" when the reserve is split.",
    ),
    k(
        "generation",
        "The super block's generation (one more after each split).",
    ),
    k("mode", "The volume's reserve mode: hypervisor, os or none."),
    k("reserve_offset", "The reserve's first byte on the backing."),
    k("reserve_size", "The reserve's size in bytes."),
    k("split", "Whether an owner table is recorded (format 1.1)."),
    k(
        "unassigned",
        "Bytes of the reserve no owner holds (0 when not split).",
    ),
    k(
        "owners",
        "The owners in order from the reserve's start: one named after the mode when the reserve is not split, none in mode none.",
    ),
    k(
        "owners[].owner",
        "The owner's name (reserved --owner takes it).",
    ),
    k("owners[].kind", "hypervisor, os or other."),
    k("owners[].offset", "Its first byte on the backing."),
    k("owners[].size", "Its size in bytes (a multiple of 4096)."),
];

/// Keys every `list --json` object has, ublk device or map.
const DEVICE_COMMON_KEYS: &[Key] = &[
    k(
        "kind",
        "ublk for a device a pmem-stack server serves, dm for a map.",
    ),
    k("device", "/dev/ublkbN, or /dev/mapper/NAME."),
    k("backing", "The backing it serves; null when unknown."),
    k(
        "state",
        "ublk: the kernel's state of the device, live, quiesced (no server: I/O waits until recover or a successor attaches), dead, fail_io, or gone when the kernel no longer has it; dm: live or suspended.",
    ),
    k(
        "dax",
        "Whether the device is DAX-capable: the kernel's queue/dax for a map, always false for ublk.",
    ),
    k(
        "data_offset",
        "Where the served data area starts on the backing (a map's from the kernel's table); null when unknown.",
    ),
    k("data_size", "The served size in bytes; null when unknown."),
    k(
        "reserve_offset",
        "The reserve's first byte on the backing; null when unknown.",
    ),
    k(
        "reserve_size",
        "The reserve's size in bytes; null when unknown.",
    ),
    k(
        "mode",
        "The reserve mode: hypervisor, os or none; null when unknown.",
    ),
    k("uuid", "The volume's uuid; null when unknown."),
];

const UBLK_KEYS: &[Key] = &[
    k("id", "N of /dev/ublkbN."),
    k(
        "pid",
        "The server's process id (the kernel's, else the record's).",
    ),
    k("server_running", "Whether that process is alive."),
    k("queues", "Hardware queues, one server thread each."),
    k("depth", "Requests in flight per queue."),
    k(
        "user_copy",
        "Whether the server copies with UBLK_F_USER_COPY; null when unknown.",
    ),
    k(
        "features",
        "The UBLK_F_* flags the kernel granted, by name (user_copy, user_recovery, user_recovery_reissue, quiesce, ...; an unknown flag as bitN).",
    ),
    k(
        "io_path",
        "How request data moves: direct, batch, user_copy or bounce_buffer; null when the kernel does not say.",
    ),
    k(
        "write_cache",
        "write_back (a write is durable after FLUSH) or write_through (durable when it completes), as declared to the kernel; null when unknown.",
    ),
    k(
        "affinity",
        "node (each queue thread may run on any CPU of its queue's NUMA nodes) or queue (pinned to its queue's CPUs).",
    ),
    k(
        "log",
        "The server's log file; null for a foreground server, which logs to standard error.",
    ),
    k(
        "stats",
        "The server's request counters, published every 250 ms; null when none were.",
    ),
    k("stats.reads", "READ requests served."),
    k("stats.writes", "WRITE requests served."),
    k("stats.flushes", "FLUSH requests served."),
    k(
        "stats.empty_flushes",
        "FLUSH requests that found nothing to write back.",
    ),
];

const DM_KEYS: &[Key] = &[
    k("name", "The map's name: NAME of /dev/mapper/NAME."),
    k("dm_device", "The kernel's name of the device, dm-N."),
];

const DEL_KEYS: &[Key] = &[
    k("id", "N of /dev/ublkbN."),
    k("device", "/dev/ublkbN."),
    k("removed", "Whether it was removed."),
    k("error", "Why not, in one line; null when removed."),
];

const DEVICE_GROUPS: &[KeyGroup] = &[
    KeyGroup {
        heading: "",
        keys: DEVICE_COMMON_KEYS,
    },
    KeyGroup {
        heading: "A ublk device (kind ublk) also has:",
        keys: UBLK_KEYS,
    },
];

const LIST_GROUPS: &[KeyGroup] = &[
    KeyGroup {
        heading: "Every object has:",
        keys: DEVICE_COMMON_KEYS,
    },
    KeyGroup {
        heading: "A ublk device (kind ublk) also has:",
        keys: UBLK_KEYS,
    },
    KeyGroup {
        heading: "A map (kind dm) also has:",
        keys: DM_KEYS,
    },
];

const MAP_GROUPS: &[KeyGroup] = &[
    KeyGroup {
        heading: "",
        keys: DEVICE_COMMON_KEYS,
    },
    KeyGroup {
        heading: "A map (kind dm) also has:",
        keys: DM_KEYS,
    },
];

const OWNER_LIST_JSON: Json = Json {
    shape: "One object: the reserve and its owners. Sizes and offsets are integer bytes.",
    groups: &[KeyGroup {
        heading: "",
        keys: OWNER_LIST_KEYS,
    }],
};

/// `--owner`, for format and reserve split.
const OWNERS_SECTION: Section = Section {
    title: "OWNERS",
    body: &[
        Block::Para(
            "--owner NAME[:KIND]=SIZE|auto|rest, repeated (at most 16), lays the owners out in the order given from the start of the reserve. NAME is 1 to 31 letters, digits, '.', '_' or '-'. KIND defaults to hypervisor for the names xen and hypervisor and to os for dom0, linux and os; any other name must say its kind (fw:other=64K).",
        ),
        Block::Para(
            "Ranges are 4 KiB aligned, whatever the volume's --align: a SIZE is rounded up to 4 KiB. auto sizes by the kind for the volume's data area (os: 64 bytes per 4 KiB page; hypervisor: Xen's 40 bytes per page plus slack, as --reserve auto; other has no auto). rest (one owner at most) takes what the others leave. Ranges are disjoint and inside the reserve; what no owner holds is unassigned.",
        ),
        Block::Para(
            "The table is recorded in both super block copies under the checksum, behind a compatible feature bit: the volume becomes format 1.1, and a 1.0 reader still reads it and sees one reserve. A volume without owners stays 1.0.",
        ),
    ],
};

const FORMAT: Page = Page {
    command: &["format"],
    description: &[
        Block::Para(
            "Writes a new pmem-stack layout on BACKING: the two super block copies, and nothing else. The first 4 KiB, the reserve and the data area are never written. The layout follows the rules in pmem-stack(8): the reserve at the first alignment boundary after the primary copy, the data area at the first boundary after the reserve, ending at the last boundary before the backup copy.",
        ),
        Block::Para(
            "--reserve SIZE|auto or --owner is required. --reserve 0 gives mode none (a pass-through that still carries the metadata); otherwise the mode defaults to hypervisor. --reserve auto sizes the reserve for the mode: 64 bytes per 4 KiB data page for os (Linux's map=dev; a smaller explicit reserve is refused with the minimum), or Xen's 40 bytes per page plus slack, in 2 MiB chunks, for hypervisor (a smaller one is accepted with a warning). With --owner and no --reserve, the reserve is sized to hold the owners.",
        ),
        Block::Para(
            "format refuses a backing that holds a pmem-stack volume, a damaged one, a newer version's volume or foreign data (a file system, a partition table, ...), saying what it found; --force overwrites it. It refuses a backing that is served, mapped or open by anything else. The write is crash-safe: the backup copy first, then the primary; a cut at any point leaves the old volume, the new one, or one a check --repair completes. --dry-run checks everything and shows the layout without writing.",
        ),
    ],
    sections: &[OWNERS_SECTION],
    json: Some(Json {
        shape: "One object: the volume as info --json prints it (see pmem-stack-info(8)), with two more keys. Every key is always there; a value that is unknown or does not apply is null. Sizes and offsets are integer bytes.",
        groups: &[
            KeyGroup {
                heading: "",
                keys: VOLUME_KEYS,
            },
            KeyGroup {
                heading: "format adds:",
                keys: FORMAT_KEYS,
            },
        ],
    }),
    examples: &[
        Example {
            what: "A 512 MiB reserve for Xen, the rest served as a block device:",
            lines: &["pmem-stack format /dev/pmem0 --reserve 512M"],
        },
        Example {
            what: "The OS's page array, sized by the rule, on 1 GiB alignment:",
            lines: &["pmem-stack format /dev/pmem0 --reserve auto --mode os --align 1G"],
        },
        Example {
            what: "A reserve shared by Xen and dom0 (format 1.1), each sized by its kind:",
            lines: &["pmem-stack format /dev/pmem0 --owner xen=auto --owner dom0=auto"],
        },
        Example {
            what: "See what an image file would get, writing nothing:",
            lines: &[
                "truncate -s 8G /srv/pmem.img",
                "pmem-stack format /srv/pmem.img --reserve auto --dry-run --json",
            ],
        },
    ],
    exit_status: &[],
    files: &[SYSFS],
    see_also: &[
        "pmem-stack-info(8)",
        "pmem-stack-check(8)",
        "pmem-stack-reserve-split(8)",
        "pmem-stack-add(8)",
    ],
};

const INFO: Page = Page {
    command: &["info"],
    description: &[
        Block::Para(
            "Shows the layout of the volume on BACKING, to scale: a bar of its regions (h head, S primary copy, R reserve, D data area, B backup copy, . padding) and a table of their offsets and sizes, with the reserve's mode, owners and physical range and frame numbers (MFNs) when sysfs reports where the namespace sits, and the device that serves the data area.",
        ),
        Block::Para(
            "Read-only; it works while the backing is served. A damaged copy is reported with what to run; a backing that shrank below the volume is still shown, with a warning. Several BACKINGs are shown one after another.",
        ),
    ],
    sections: &[],
    json: Some(Json {
        shape: "One object: the volume; with several BACKINGs, an array of them. Every key is always there; a value that is unknown or does not apply is null. Sizes and offsets are integer bytes.",
        groups: &[KeyGroup {
            heading: "",
            keys: VOLUME_KEYS,
        }],
    }),
    examples: &[
        Example {
            what: "The layout of a namespace:",
            lines: &["pmem-stack info /dev/pmem0"],
        },
        Example {
            what: "The reserve's machine frames, for Xen:",
            lines: &[
                "xl pmem-setup -m $(pmem-stack info /dev/pmem0 --json | jq '.reserve_mfn_start, .reserve_mfn_end')",
            ],
        },
    ],
    exit_status: &[(
        "1",
        "The backing could not be shown; with several, one of them could not (the others are shown).",
    )],
    files: &[RECORD, SYSFS],
    see_also: &[
        "pmem-stack-reserved(8)",
        "pmem-stack-check(8)",
        "pmem-stack-format(8)",
    ],
};

const SCAN_KEYS: &[Key] = &[
    k(
        "path",
        "The backing's path: a /dev/pmem* or /dev/dax* device found, or a PATH given.",
    ),
    k(
        "kind",
        "block, dax or file, as info's backing_kind; null when it could not be opened.",
    ),
    k(
        "size",
        "Its size in bytes; null when it could not be opened.",
    ),
    k(
        "state",
        "What it holds: volume, blank, foreign, damaged, unsupported or unreadable (see STATES).",
    ),
    k("uuid", "The volume's uuid; null unless state is volume."),
    k(
        "format_version",
        "The volume's format, \"1.0\" or \"1.1\"; null unless state is volume.",
    ),
    k(
        "healthy",
        "Whether both super block copies are ok and the volume fits the backing; null unless state is volume.",
    ),
    k("mode", "The reserve mode; null unless state is volume."),
    k(
        "data_size",
        "The data area's size in bytes; null unless state is volume.",
    ),
    k(
        "reserve_size",
        "The reserve's size in bytes; null unless state is volume.",
    ),
    k(
        "served_by",
        "/dev/ublkbN or /dev/mapper/NAME when the volume is served; else null.",
    ),
    k("served_kind", "ublk or dm when served; else null."),
    k(
        "foreign",
        "What was found instead of a volume (a file system, a partition table, ...), for state foreign; else empty.",
    ),
    k(
        "error",
        "Why, for states damaged, unsupported and unreadable; else null.",
    ),
];

const SCAN: Page = Page {
    command: &["scan"],
    description: &[Block::Para(
        "Looks at every /dev/pmem* block device and /dev/dax* character device, and at each PATH given (an image file or a device), and says what each holds. It only reads: each backing is opened read-only and shared, never exclusively, so it runs beside live servers, and nothing is written. A PATH naming a device already found is shown once.",
    )],
    sections: &[Section {
        title: "STATES",
        body: &[Block::Items(&[
            (
                "volume",
                "A pmem-stack volume with a valid super block copy.",
            ),
            ("blank", "Nothing recognisable: free to format."),
            (
                "foreign",
                "Someone else's data: a file system, a partition table, ... (named).",
            ),
            ("damaged", "pmem-stack super blocks, none of them usable."),
            (
                "unsupported",
                "A pmem-stack volume of a newer format than this binary reads.",
            ),
            ("unreadable", "It could not be opened or read."),
        ])],
    }],
    json: Some(Json {
        shape: "An array, one object per backing, in the order shown. Every key is always there; a value that does not apply is null.",
        groups: &[KeyGroup {
            heading: "",
            keys: SCAN_KEYS,
        }],
    }),
    examples: &[Example {
        what: "Where are the volumes on this machine, and an image file:",
        lines: &["pmem-stack scan /srv/pmem.img"],
    }],
    exit_status: &[(
        "1",
        "A PATH given could not be read (a device found that cannot be is only reported).",
    )],
    files: &[SYSFS],
    see_also: &["pmem-stack-info(8)", "pmem-stack-list(8)"],
};

const CHECK: Page = Page {
    command: &["check"],
    description: &[
        Block::Para(
            "Verifies both super block copies: each is read, its checksum and fields validated, and the two compared. It exits 0 when both are valid and agree, else 1, naming each problem: a copy that is corrupt, missing or stale, or a backing smaller than the volume.",
        ),
        Block::Para(
            "--repair rewrites a corrupt, stale or missing copy from the good one (the newest valid copy), crash-safely, and then checks again; it needs the backing to itself, so it is refused while the backing is served or mapped. A backing that was never formatted is an error, not a problem to repair.",
        ),
    ],
    sections: &[],
    json: Some(Json {
        shape: "One object. Every key is always there; a value that is unknown is null.",
        groups: &[KeyGroup {
            heading: "",
            keys: CHECK_KEYS,
        }],
    }),
    examples: &[Example {
        what: "Check, and repair if needed:",
        lines: &["pmem-stack check /dev/pmem0 || pmem-stack check --repair /dev/pmem0"],
    }],
    exit_status: &[
        (
            "0",
            "Both copies are valid and agree (after --repair: now).",
        ),
        (
            "1",
            "A problem was found (and, with --repair, remains), or the check could not be made.",
        ),
    ],
    files: &[],
    see_also: &["pmem-stack-info(8)"],
};

const ADD: Page = Page {
    command: &["add"],
    description: &[
        Block::Para(
            "Serves the data area of BACKING as the block device /dev/ublkbN, through the kernel's ublk driver and a pmem-stack server process, and prints /dev/ublkbN once the device is live. The server runs in the background (logging to /run/pmem-stack/ublkbN.log) unless --foreground. Needs root and the ublk_drv module.",
        ),
        Block::Para(
            "A formatted backing is served with the layout it records; a layout option that disagrees with it is an error (re-laying out is format --force's job). A blank backing is formatted first when --reserve is given; one that holds no volume that can be served (foreign data, damaged copies, a newer version's volume) is formatted anew only with --force. A backing already served or mapped, or open by anything else, is refused with what serves it.",
        ),
        Block::Para(
            "--io-path chooses how request data moves: auto takes the direct path over a block device that writes through where the kernel offers it (Linux 6.16+), user copy elsewhere where the kernel offers it (6.5+) and bounce buffers otherwise; direct (6.16+, not devdax) reads and writes the request's pages O_DIRECT against the backing, keeping no copy of the media in DRAM; batch (7.0+) hands requests over in batches. A path the kernel or backing cannot serve is refused before anything is written. --write-cache auto writes through over a block device and on devdax (every write durable when it completes) and writes back over an image file or on bounce buffers.",
        ),
        Block::Para(
            "If the server dies the device stays, quiesced: I/O waits, nothing fails, until recover attaches a new server or del removes it.",
        ),
    ],
    sections: &[],
    json: Some(Json {
        shape: "One object: the device as list --json prints it.",
        groups: DEVICE_GROUPS,
    }),
    examples: &[
        Example {
            what: "Format a blank namespace with a 512 MiB reserve and serve it:",
            lines: &[
                "modprobe ublk_drv",
                "pmem-stack add /dev/pmem0 --reserve 512M",
                "mkfs.xfs /dev/ublkb0 && mount /dev/ublkb0 /mnt",
            ],
        },
        Example {
            what: "Serve an image file on the direct path, four queues:",
            lines: &["pmem-stack add /srv/pmem.img --io-path direct --queues 4"],
        },
    ],
    exit_status: &[(
        "75",
        "With --foreground: the server handed the device over (restart, grow).",
    )],
    files: &[RECORD, LOG, STATS, LIBUBLK, CONTROL, DEVICES, RULE],
    see_also: &[
        "pmem-stack-del(8)",
        "pmem-stack-list(8)",
        "pmem-stack-recover(8)",
        "pmem-stack-serve(8)",
        "pmem-stack-map(8)",
    ],
};

const DEL: Page = Page {
    command: &["del"],
    description: &[Block::Para(
        "Flushes, stops and removes the device /dev/ublkbN (or, with --all, every device pmem-stack serves), waiting up to 60 seconds for its server to exit, and forgets its record. A device in use (mounted, or held by a stacked device such as dm or md) is refused while its server runs: unmount or release it first. A device whose server died is removed at once: I/O waiting on it fails. Maps are removed with unmap.",
    )],
    sections: &[],
    json: Some(Json {
        shape: "An array, one object per device it tried to remove.",
        groups: &[KeyGroup {
            heading: "",
            keys: DEL_KEYS,
        }],
    }),
    examples: &[Example {
        what: "Remove /dev/ublkb0, then everything else:",
        lines: &["pmem-stack del 0", "pmem-stack del --all"],
    }],
    exit_status: &[("1", "A device was not removed (each says why).")],
    files: &[RECORD, CONTROL],
    see_also: &[
        "pmem-stack-add(8)",
        "pmem-stack-list(8)",
        "pmem-stack-unmap(8)",
    ],
};

const LIST: Page = Page {
    command: &["list"],
    description: &[Block::Para(
        "Lists the devices pmem-stack serves: ublk devices (from their records, with what the kernel says now) first, then maps (device-mapper devices whose dm uuid is pmem-stack's). Records of devices the kernel no longer has are removed. Root is needed only to read a map's table; without it the offsets come from the super block.",
    )],
    sections: &[],
    json: Some(Json {
        shape: "An array, one object per device, ublk devices first. Keys whose value is unknown are null.",
        groups: LIST_GROUPS,
    }),
    examples: &[Example {
        what: "The backings being served:",
        lines: &["pmem-stack list --json | jq -r '.[].backing'"],
    }],
    exit_status: &[],
    files: &[RECORD, STATS, MAPPER],
    see_also: &[
        "pmem-stack-add(8)",
        "pmem-stack-map(8)",
        "pmem-stack-del(8)",
    ],
};

const RECOVER: Page = Page {
    command: &["recover"],
    description: &[
        Block::Para(
            "Attaches a new server to device N whose server died (a crash, kill -9) or handed it over: I/O that waited resumes without errors, and a mounted file system sees only a pause. The new server treats the whole data area as dirty, so its first FLUSH covers anything its predecessor acknowledged but had not flushed.",
        ),
        Block::Para(
            "It waits for the device's lock while a grow holds it, and serves the data area the media records then. --foreground keeps the server attached, as add --foreground.",
        ),
    ],
    sections: &[],
    json: Some(Json {
        shape: "One object: the device as list --json prints it.",
        groups: DEVICE_GROUPS,
    }),
    examples: &[Example {
        what: "After a server was killed:",
        lines: &["pmem-stack list", "pmem-stack recover 0"],
    }],
    exit_status: &[(
        "75",
        "With --foreground: the server handed the device over (restart, grow).",
    )],
    files: &[RECORD, LOG, LOCK, CONTROL],
    see_also: &[
        "pmem-stack-add(8)",
        "pmem-stack-restart(8)",
        "pmem-stack-serve(8)",
    ],
};

const MAP: Page = Page {
    command: &["map"],
    description: &[
        Block::Para(
            "Maps the data area of a block device with the kernel's device-mapper, as one linear target, /dev/mapper/NAME (default pmem-stack-UUID, the volume's uuid), and prints its path. I/O stays in the kernel; over an fsdax namespace the map is DAX-capable (mount -o dax=always). The table covers exactly the data area: never the head, the super blocks or the reserve.",
        ),
        Block::Para(
            "Same rules as add for blank and foreign backings. Block devices only: a devdax device or an image file is served with add. While mapped, the backing is held: add, format, check --repair and a second map are refused until unmap. Maps outlive pmem-stack until unmap or a reboot.",
        ),
    ],
    sections: &[],
    json: Some(Json {
        shape: "One object: the map as list --json prints it.",
        groups: MAP_GROUPS,
    }),
    examples: &[Example {
        what: "DAX on an fsdax namespace:",
        lines: &[
            "ndctl create-namespace -m fsdax",
            "pmem-stack map /dev/pmem0 --reserve auto --name fast",
            "mkfs.xfs -m reflink=0 /dev/mapper/fast",
            "mount -o dax=always /dev/mapper/fast /mnt",
        ],
    }],
    exit_status: &[],
    files: &[MAPPER, SYSFS],
    see_also: &["pmem-stack-unmap(8)", "pmem-stack-add(8)", "dmsetup(8)"],
};

const UNMAP: Page = Page {
    command: &["unmap"],
    description: &[Block::Para(
        "Removes a map made by map, named by NAME, /dev/mapper/NAME or the backing it maps. It is refused while the map is mounted or open. The volume stays: map or add serves it again.",
    )],
    sections: &[],
    json: None,
    examples: &[Example {
        what: "Unmount and unmap by backing:",
        lines: &["umount /mnt && pmem-stack unmap /dev/pmem0"],
    }],
    exit_status: &[],
    files: &[MAPPER],
    see_also: &["pmem-stack-map(8)"],
};

const RESERVED: Page = Page {
    command: &["reserved"],
    description: &[
        Block::Para(
            "Prints what each owner of the reserve needs to claim its range: the device offsets, the physical start and end, the 4 KiB frame numbers (start and end MFN), the page count, its name, kind and the volume's mode. Ends are exclusive. An unsplit reserve has one owner, named after its mode. Physical addresses come from sysfs; an image file has none.",
        ),
        Block::Para(
            "Read-only; it works while the backing is served. A volume in mode none has no reserve and nothing to claim: reserved says so (with --json, an empty array), and --owner NAME is an error.",
        ),
    ],
    sections: &[],
    json: Some(Json {
        shape: "An array, one object per owner in order; with --owner NAME, that owner's object alone. Every key is always there; a value that is unknown is null. Sizes and offsets are integer bytes.",
        groups: &[KeyGroup {
            heading: "",
            keys: CLAIM_KEYS,
        }],
    }),
    examples: &[Example {
        what: "Xen's frames:",
        lines: &["pmem-stack reserved /dev/pmem0 --owner xen --json | jq '.mfn_start, .mfn_end'"],
    }],
    exit_status: &[],
    files: &[SYSFS],
    see_also: &["pmem-stack-reserve-list(8)", "pmem-stack-info(8)"],
};

const RESERVE: Page = Page {
    command: &["reserve"],
    description: &[Block::Para(
        "The reserve can be split into up to 16 named sub-ranges, each with an owner kind, hypervisor (Xen's frame table and M2P), os (an OS's page array) or other, so that Xen and the kernel that runs under it, or two OSes, each know which part is theirs. reserve split records the owners; reserve list shows them; reserved shows what each claims.",
    )],
    sections: &[],
    json: None,
    examples: &[Example {
        what: "Split the reserve between Xen and dom0, then look:",
        lines: &[
            "pmem-stack reserve split /dev/pmem0 --owner xen=auto --owner dom0=rest",
            "pmem-stack reserve list /dev/pmem0",
        ],
    }],
    exit_status: &[],
    files: &[],
    see_also: &[
        "pmem-stack-reserve-split(8)",
        "pmem-stack-reserve-list(8)",
        "pmem-stack-reserved(8)",
    ],
};

const RESERVE_SPLIT: Page = Page {
    command: &["reserve", "split"],
    description: &[
        Block::Para(
            "Records owners for sub-ranges of the reserve, replacing any split before. The volume becomes format 1.1; its uuid, layout and data stay. The metadata is rewritten crash-safely (backup copy, then primary, as format does): a cut at any write leaves the old split or the new one.",
        ),
        Block::Para(
            "Changing the split of a served backing is refused (its owners may be using it), saying what to do: del, reserve split, add. A volume in mode none has no reserve to split.",
        ),
    ],
    sections: &[OWNERS_SECTION],
    json: Some(OWNER_LIST_JSON),
    examples: &[Example {
        what: "Give Xen 512 MiB and dom0 the rest:",
        lines: &["pmem-stack reserve split /dev/pmem0 --owner xen=512M --owner dom0=rest"],
    }],
    exit_status: &[],
    files: &[RECORD],
    see_also: &[
        "pmem-stack-reserve-list(8)",
        "pmem-stack-reserved(8)",
        "pmem-stack-format(8)",
    ],
};

const RESERVE_LIST: Page = Page {
    command: &["reserve", "list"],
    description: &[Block::Para(
        "Lists the reserve's owners, in order from its start, with the unassigned rest. An unsplit reserve shows one owner named after its mode; a volume in mode none has none. Read-only.",
    )],
    sections: &[],
    json: Some(OWNER_LIST_JSON),
    examples: &[Example {
        what: "The owners' names:",
        lines: &["pmem-stack reserve list /dev/pmem0 --json | jq -r '.owners[].owner'"],
    }],
    exit_status: &[],
    files: &[],
    see_also: &["pmem-stack-reserve-split(8)", "pmem-stack-reserved(8)"],
};

const GROW: Page = Page {
    command: &["grow"],
    description: &[
        Block::Para(
            "After the namespace grew (ndctl create-namespace -e namespaceX.Y -f -s SIZE) or an image file did (truncate -s), records the new size: the backup copy moves to the new last 4 KiB block, the data area extends to the new aligned end; reserve, owners, uuid and data stay, and the old backup's block is zeroed. It is as crash-safe as format. Grow a file system on it with its own tool (resize2fs, xfs_growfs).",
        ),
        Block::Para(
            "Refused, writing nothing: a backing that did not grow (or grew by less than one alignment step), one that shrank below the volume, a damaged volume (check --repair first), and in mode os a data area whose page array would no longer fit the reserve. A reserve or owner now below its rule for the larger data area gives a warning.",
        ),
        Block::Para(
            "A served backing grows live on Linux 6.16+ (UBLK_F_UPDATE_SIZE): everything that could refuse is checked first; then the server flushes and exits without removing the device (I/O waits, quiesced), the volume grows on the media, and a successor (systemd's, under pmem-stack@.service, else one grow starts) serves the larger area and tells the kernel. grow holds the device's lock throughout. A crash in between leaves a quiesced device that recover brings back at whatever size the media records. On older kernels grow of a served backing is refused, saying to del, grow, then add.",
        ),
    ],
    sections: &[],
    json: Some(Json {
        shape: "One object: the volume after the grow, as info --json prints it. Every key is always there; a value that is unknown or does not apply is null.",
        groups: &[KeyGroup {
            heading: "",
            keys: VOLUME_KEYS,
        }],
    }),
    examples: &[Example {
        what: "Grow a served image file and the mounted ext4 on it:",
        lines: &[
            "truncate -s 64G /srv/pmem.img",
            "pmem-stack grow /srv/pmem.img",
            "resize2fs /dev/ublkb0",
        ],
    }],
    exit_status: &[],
    files: &[LOCK, RECORD],
    see_also: &[
        "pmem-stack-info(8)",
        "pmem-stack-restart(8)",
        "resize2fs(8)",
    ],
};

const RESTART: Page = Page {
    command: &["restart"],
    description: &[Block::Para(
        "Live upgrade: asks device N's server to hand over (SIGUSR1). It flushes and leaves the device without removing it, which the kernel quiesces (requests it held are re-issued), and a server of the binary now installed recovers it. A server under a service manager (pmem-stack@.service, NOTIFY_SOCKET set) re-executes itself: the same pid runs the binary at its command line's path, recovers the device and sends READY=1, and systemd restarts nothing (a restart of the unit would restart the fstab mounts that require it). Any other server exits with status 75 and restart starts the successor. Either way restart waits until the device is live again, and a mounted file system sees only a pause.",
    )],
    sections: &[],
    json: Some(Json {
        shape: "One object: the device under its new server, as list --json prints it.",
        groups: DEVICE_GROUPS,
    }),
    examples: &[Example {
        what: "After installing a new pmem-stack:",
        lines: &["pmem-stack restart 0"],
    }],
    exit_status: &[],
    files: &[RECORD, UNIT],
    see_also: &["pmem-stack-recover(8)", "pmem-stack-serve(8)"],
};

const SERVE: Page = Page {
    command: &["serve"],
    description: &[Block::Para(
        "What the pmem-stack@.service unit runs: serves BACKING in the foreground, adding its device as add --foreground does, or, when a device still serves the backing but its server died (a crash, or a hand-over), recovering that device, so a mounted file system only ever sees its I/O wait. With NOTIFY_SOCKET set (Type=notify) it sends READY=1 once the device is live, STATUS= lines for systemctl status, and STOPPING=1. SIGINT and SIGTERM flush, stop and remove the device; while the device is in use (mounted, or held by dm or md) they flush and hand it over instead (exit status 75), leaving it quiesced for the next server (the unit's next start, recover) rather than failing its user's I/O. SIGUSR1 (restart) hands over by re-executing itself when NOTIFY_SOCKET is set.",
    )],
    sections: &[],
    json: None,
    examples: &[
        Example {
            what: "Serve /dev/pmem0 from boot to shutdown:",
            lines: &[
                "systemctl enable --now pmem-stack@$(systemd-escape --path /dev/pmem0).service",
            ],
        },
        Example {
            what: "What the unit runs, by hand (Ctrl-C flushes and removes the device):",
            lines: &["pmem-stack serve /dev/pmem0"],
        },
    ],
    exit_status: &[(
        "75",
        "The server handed the device over: restart or grow without a service manager, or SIGTERM while the device was in use (the unit counts it a clean stop, SuccessExitStatus=75, and restarts it when the exit was not asked for).",
    )],
    files: &[UNIT, RECORD, LOCK, CONTROL],
    see_also: &[
        "pmem-stack-add(8)",
        "pmem-stack-restart(8)",
        "systemd.service(5)",
    ],
};

const COMPLETIONS: Page = Page {
    command: &["completions"],
    description: &[Block::Para(
        "Prints a completion script for SHELL, made from the same definition that parses the command line: commands, options and their values. scripts/install installs the bash, zsh and fish scripts.",
    )],
    sections: &[],
    json: None,
    examples: &[Example {
        what: "Install them by hand:",
        lines: &[
            "pmem-stack completions bash > /usr/local/share/bash-completion/completions/pmem-stack",
            "pmem-stack completions zsh > /usr/local/share/zsh/site-functions/_pmem-stack",
            "pmem-stack completions fish > /usr/local/share/fish/vendor_completions.d/pmem-stack.fish",
        ],
    }],
    exit_status: &[],
    files: &[
        (
            "/usr/local/share/bash-completion/completions/pmem-stack",
            "Where scripts/install puts the bash script (bash-completion loads it on first use).",
        ),
        (
            "/usr/local/share/zsh/site-functions/_pmem-stack",
            "The zsh script (a directory on zsh's default $fpath; compinit finds it).",
        ),
        (
            "/usr/local/share/fish/vendor_completions.d/pmem-stack.fish",
            "The fish script.",
        ),
    ],
    see_also: &[],
};

const MAN: Page = Page {
    command: &["man"],
    description: &[Block::Para(
        "Prints the manual page pmem-stack(8), or a command's page: man format prints pmem-stack-format(8), and man reserve split (or reserve-split) pmem-stack-reserve-split(8). --dir DIR writes every page into DIR, creating it, and prints each file's path.",
    )],
    sections: &[],
    json: None,
    examples: &[
        Example {
            what: "Read a page without installing it:",
            lines: &["pmem-stack man reserve split | man -l -"],
        },
        Example {
            what: "Install the pages:",
            lines: &["pmem-stack man --dir /usr/local/share/man/man8"],
        },
    ],
    exit_status: &[(
        "2",
        "COMMAND names no page (the message lists them), or a usage error.",
    )],
    files: &[(
        "/usr/local/share/man/man8/pmem-stack.8, pmem-stack-COMMAND.8",
        "Where scripts/install puts the pages.",
    )],
    see_also: &[],
};

/// Every command's page.
pub const PAGES: &[Page] = &[
    FORMAT,
    INFO,
    SCAN,
    CHECK,
    ADD,
    DEL,
    LIST,
    RECOVER,
    MAP,
    UNMAP,
    RESERVED,
    RESERVE,
    RESERVE_SPLIT,
    RESERVE_LIST,
    GROW,
    RESTART,
    SERVE,
    COMPLETIONS,
    MAN,
];

/// The page of the command `words`.
#[cfg(test)]
pub fn page(words: &[&str]) -> Option<&'static Page> {
    PAGES.iter().find(|p| p.command == words)
}

/// pmem-stack(8), after its generated synopsis: what the tool is.
pub const MAIN_DESCRIPTION: &[Block] = &[
    Block::Para(
        "pmem-stack carves a persistent-memory namespace into a reserved region, for a hypervisor's frame table and M2P (Xen) or the OS's page array, and a data area served as an ordinary block device, /dev/ublkbN, by a userspace driver on the kernel's ublk framework (or mapped with device-mapper). It writes its own super block, two copies with checksums and generation numbers, never touches the first 4 KiB or the reserve, and reports where the reserve is, as offsets, physical addresses and Xen machine frame numbers, so its owner can claim it.",
    ),
    Block::Para(
        "BACKING is a pmem block device (/dev/pmemN), a devdax device (/dev/daxX.Y) or a regular image file. Errors are one line on standard error. Every command has its own page, pmem-stack-COMMAND(8), listed below; --json output is a contract for other tools, documented key by key on those pages.",
    ),
];

/// pmem-stack(8)'s own sections, after COMMANDS.
pub const MAIN_SECTIONS: &[Section] = &[
    Section {
        title: "LAYOUT",
        body: &[
            Block::Pre(&[
                "| head | primary | pad | reserve | data area | pad | backup |",
                "0      4K        8K    A         A           A     last 4K",
            ]),
            Block::Para(
                "(A: an alignment boundary.) The head (the first 4 KiB) is never written. The primary super block copy is bytes 4096 to 8191; the backup copy is the last 4 KiB block of the backing as formatted. The reserve starts at the first alignment boundary after the primary copy, the data area at the first boundary after the reserve, and the data area ends at the last boundary before the backup copy. The alignment (--align) is 4K, 2M (the default) or 1G; the data area is at least one alignment step.",
            ),
            Block::Para(
                "The reserve holds no persistent data: pmem-stack never reads or writes it, and its owner may overwrite it at any time. Its mode says whose it is: hypervisor (Xen's frame table and M2P, 40 bytes per 4 KiB data page plus slack), os (the OS's page array, 64 bytes per 4 KiB data page, as Linux's map=dev) or none (no reserve: --reserve 0). --reserve auto sizes it by the mode's rule. A reserve may be split among named owners (format 1.1): see pmem-stack-reserve-split(8). The reserve's physical range is the namespace's physical address (from sysfs) plus its offsets; Xen's machine frame numbers are that address >> 12.",
            ),
        ],
    },
    Section {
        title: "ON-MEDIA FORMAT",
        body: &[
            Block::Para(
                "Format 1.0 is the layout above with one reserve. Format 1.1 adds, behind a compatible feature bit, a table of up to 16 owners of sub-ranges of the reserve; a volume without owners is written as 1.0, byte for byte. A reader accepts every minor version of a major it knows: a 1.0 reader reads a 1.1 volume and sees one reserve, but does not rewrite it. A volume of a newer major is never interpreted. The specification, with test vectors, is FORMAT.md in the source.",
            ),
            Block::Para(
                "Writes are crash-safe: a format, reserve split or grow writes the backup copy, then the primary, each made durable, with a generation above the copies before; a cut at any point leaves the old volume or the new one. The current super block is the valid copy with the highest generation (each copy carries a CRC32C), and check --repair rewrites a bad or stale copy from it.",
            ),
        ],
    },
    Section {
        title: "DEVICES AND SERVERS",
        body: &[Block::Para(
            "add starts a server process per device. If it dies, the device stays, quiesced: I/O waits and nothing fails until recover attaches a new server (or del removes the device). restart replaces a running server with the binary now installed, and grow of a served backing replaces it with one serving the larger size, both without unmounting. The unit pmem-stack@.service serves a backing from boot to shutdown and recovers it after a crash; the udev rule gives every device a stable name, /dev/disk/by-id/pmem-stack-UUID.",
        )],
    },
];

/// pmem-stack(8)'s ENVIRONMENT.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "NOTIFY_SOCKET",
        "Set by systemd for Type=notify services: a foreground server sends READY=1 once its device is live, STATUS= lines and STOPPING=1 (sd_notify(3)).",
    ),
    (
        "RUST_LOG",
        "Log level (error, warn, info, debug, trace). The commands print warnings only unless it is set.",
    ),
    (
        "PMEM_STACK_RUN_DIR",
        "The directory of the device records instead of /run/pmem-stack (for tests).",
    ),
    (
        "PMEM_STACK_RING",
        "How a server's queue threads set up their io_uring: coop (the default: COOP_TASKRUN) or defer (SINGLE_ISSUER and DEFER_TASKRUN). For measuring one against the other (bench/README.md); any other value makes add, recover and serve fail before they touch the device.",
    ),
    (
        "PMEM_STACK_IO_THREADS",
        "How many threads serve each hardware queue, each an interleaved share of its tags (per-I/O daemons, UBLK_F_PER_IO_DAEMON, Linux 6.16+): 1, the default, to 16. For measuring (bench/README.md); extra threads keep the queue's own CPUs. A value out of range, or above 1 on a kernel without per-I/O daemons, makes add, recover and serve fail before they touch the device.",
    ),
    (
        "PMEM_STACK_READS",
        "Where a device on the user-copy I/O path that writes through (the default over /dev/pmemN before Linux 6.16; from 6.16 add --io-path user-copy) reads from: direct, the default (the namespace opened O_DIRECT, through the queue's staging buffer: no page cache), or mapping (the block device's page cache, filled by page faults). For measuring (bench/README.md). Any other value makes add, recover and serve fail before they touch the device.",
    ),
];

/// pmem-stack(8)'s FILES: every file any page names.
pub const MAIN_FILES: &[(&str, &str)] = &[
    RECORD, LOG, STATS, LOCK, LIBUBLK, CONTROL, DEVICES, MAPPER, SYSFS, UNIT, RULE,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Cli;
    use clap::CommandFactory;

    /// Every visible command's words, nested ones included.
    fn commands(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut words = prefix.to_vec();
            words.push(sub.get_name().to_string());
            out.push(words.clone());
            commands(sub, &words, out);
        }
    }

    #[test]
    fn every_command_has_a_page_and_every_page_a_command() {
        let mut all = Vec::new();
        commands(&Cli::command(), &[], &mut all);
        let pages: Vec<Vec<String>> = PAGES
            .iter()
            .map(|p| p.command.iter().map(|w| (*w).to_string()).collect())
            .collect();
        for words in &all {
            assert!(pages.contains(words), "no page for {words:?}");
        }
        for words in &pages {
            assert!(all.contains(words), "a page for no command: {words:?}");
        }
        assert_eq!(all.len(), pages.len(), "one page per command");
    }

    #[test]
    fn a_page_documents_json_exactly_when_the_command_has_json() {
        let cli = Cli::command();
        for page in PAGES {
            let mut cmd = &cli;
            for word in page.command {
                cmd = cmd.find_subcommand(word).expect("a command");
            }
            let has_json = cmd.get_arguments().any(|a| a.get_long() == Some("json"));
            assert_eq!(has_json, page.json.is_some(), "{:?}", page.command);
        }
    }

    #[test]
    fn every_page_describes_its_command_and_shows_an_example() {
        for page in PAGES {
            assert!(!page.description.is_empty(), "{:?}", page.command);
            let runs = format!("pmem-stack {}", page.command.join(" "));
            assert!(
                page.examples
                    .iter()
                    .flat_map(|e| e.lines)
                    .any(|l| l.contains(&runs)),
                "{:?}: no example runs it",
                page.command
            );
        }
    }

    #[test]
    fn keys_are_unique_within_a_page() {
        for page in PAGES {
            let Some(json) = &page.json else { continue };
            let mut seen = std::collections::HashSet::new();
            for key in json.groups.iter().flat_map(|g| g.keys) {
                assert!(
                    seen.insert(key.path),
                    "{:?}: {} twice",
                    page.command,
                    key.path
                );
            }
        }
    }
}
