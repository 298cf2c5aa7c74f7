//! The C ABI: the format's decoding, validation and layout planning as
//! `extern "C"` functions with the `psf_` prefix, over `#[repr(C)]` structs.
//! `format/capi` builds this as `libpmem_stack_format.a`; the declarations
//! are in `include/pmem_stack_format.h` (hand-written; `tests/c_abi.rs`
//! compiles static asserts of every struct size, field offset and constant
//! there against the values below). `docs/C-ABI.md` says how to link it.
//!
//! Rules every function keeps: it never panics into the caller (no code path
//! here panics: no indexing or arithmetic that can fail, only checked calls;
//! the crate's few `expect`s are invariants the decoder establishes first),
//! checks every pointer for null and alignment before use and then returns
//! [`PSF_ERR_INVALID_ARGUMENT`], never keeps a pointer after it returns, and
//! reports failure as a negative `int` that [`psf_strerror`] names.

#![allow(non_camel_case_types)]

use core::ffi::c_char;

use crate::crc::crc32c_append;
use crate::geometry::{Alignment, GeometryError, LogicalBlockSize, ReserveMode, backup_offset_for};
use crate::layout::{LayoutError, LayoutRequest, ReserveRequest, plan};
use crate::superblock::{
    BLOCK_LEN, DecodeError, MAGIC, RawFields, SuperBlock, VERSION_MAJOR, VERSION_MINOR, checksum,
};

/// Success.
pub const PSF_OK: i32 = 0;
/// A null or misaligned pointer, or a value out of range.
pub const PSF_ERR_INVALID_ARGUMENT: i32 = -1;
/// The block is not 4096 bytes.
pub const PSF_ERR_LENGTH: i32 = -2;
/// No pmem-stack magic: the copy is missing.
pub const PSF_ERR_NO_MAGIC: i32 = -3;
/// An intact copy of a newer major version: unsupported, do not write.
pub const PSF_ERR_UNSUPPORTED_VERSION: i32 = -4;
/// A major version never written (0): corrupt.
pub const PSF_ERR_UNKNOWN_VERSION: i32 = -5;
/// The CRC32C does not match: corrupt.
pub const PSF_ERR_CHECKSUM: i32 = -6;
/// `self_offset` is not where the block was read: a copy of another layout.
pub const PSF_ERR_WRONG_LOCATION: i32 = -7;
/// `primary_offset` is not 4096.
pub const PSF_ERR_PRIMARY_OFFSET: i32 = -8;
/// `backup_offset` is not the last 4 KiB block of `device_size`.
pub const PSF_ERR_BACKUP_OFFSET: i32 = -9;
/// `align` is not 4K, 2M or 1G.
pub const PSF_ERR_ALIGNMENT: i32 = -10;
/// `logical_block_size` is not 512 or 4096.
pub const PSF_ERR_LOGICAL_BLOCK_SIZE: i32 = -11;
/// `reserve_mode` is unknown.
pub const PSF_ERR_RESERVE_MODE: i32 = -12;
/// `uuid` is nil.
pub const PSF_ERR_NIL_UUID: i32 = -13;
/// `generation` is 0.
pub const PSF_ERR_ZERO_GENERATION: i32 = -14;
/// Unknown incompatible feature bits: unsupported, do not write.
pub const PSF_ERR_UNKNOWN_INCOMPAT_FEATURES: i32 = -15;
/// A reserved byte is not zero.
pub const PSF_ERR_RESERVED_NOT_ZERO: i32 = -16;
/// The device is too small for two copies (layout rule).
pub const PSF_ERR_DEVICE_TOO_SMALL: i32 = -17;
/// `reserve_offset` is not what the layout rules derive.
pub const PSF_ERR_RESERVE_OFFSET: i32 = -18;
/// `reserve_size` is not a multiple of the alignment.
pub const PSF_ERR_RESERVE_MISALIGNED: i32 = -19;
/// `reserve_mode` none if and only if `reserve_size` is 0 — broken.
pub const PSF_ERR_MODE_MISMATCH: i32 = -20;
/// `data_offset` is not what the layout rules derive.
pub const PSF_ERR_DATA_OFFSET: i32 = -21;
/// `data_size` is not what the layout rules derive.
pub const PSF_ERR_DATA_SIZE: i32 = -22;
/// Less than one aligned block of data would remain.
pub const PSF_ERR_NO_ROOM_FOR_DATA: i32 = -23;
/// Mode os with less than 64 bytes of reserve per 4 KiB data page.
pub const PSF_ERR_OS_RESERVE_TOO_SMALL: i32 = -24;
/// Planning: the reserve leaves no aligned data block.
pub const PSF_ERR_RESERVE_TOO_LARGE: i32 = -25;
/// Planning: mode hypervisor or os with a zero reserve.
pub const PSF_ERR_MODE_NEEDS_RESERVE: i32 = -26;
/// Planning: mode none with a non-zero reserve.
pub const PSF_ERR_NONE_TAKES_NO_RESERVE: i32 = -27;

/// Format 1.1: the reserve's owner table breaks its rules (FORMAT.md §3.1).
pub const PSF_ERR_OWNERS: i32 = -28;
/// `psf_owners`: the caller's array holds fewer entries than the table.
pub const PSF_ERR_OWNERS_CAPACITY: i32 = -29;

/// `reserve_mode` values (FORMAT.md §3).
pub const PSF_MODE_NONE: u32 = 0;
/// A hypervisor owns the reserve.
pub const PSF_MODE_HYPERVISOR: u32 = 1;
/// The OS's page array owns the reserve.
pub const PSF_MODE_OS: u32 = 2;
/// In [`psf_layout_request::mode`]: the default (hypervisor, or none for a
/// zero reserve).
pub const PSF_MODE_DEFAULT: i32 = -1;
/// Bytes in a super block copy.
pub const PSF_BLOCK_SIZE: u32 = 4096;
/// Byte offset of the primary copy.
pub const PSF_PRIMARY_OFFSET: u64 = crate::geometry::PRIMARY_OFFSET;
/// Major version this library reads.
pub const PSF_VERSION_MAJOR: u16 = VERSION_MAJOR;
/// Minor version this library writes and reads without reservation.
pub const PSF_VERSION_MINOR: u16 = VERSION_MINOR;

/// Every field of a super block copy, in host byte order, plus what the
/// library found. `psf_decode` fills it without trusting anything;
/// `psf_validate` fills it and says whether it is valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct psf_superblock {
    /// `PMEM-STACK-SUPER`, no terminator.
    pub magic: [u8; 16],
    pub version_major: u16,
    pub version_minor: u16,
    /// The checksum field as stored.
    pub checksum_stored: u32,
    /// The CRC32C of the block with the checksum field taken as 0.
    pub checksum_computed: u32,
    /// 1 when the two agree.
    pub checksum_ok: u8,
    /// 1 only when `psf_validate` accepted the copy (FORMAT.md §5).
    pub valid: u8,
    /// Zero.
    pub reserved0: [u8; 2],
    pub compat_features: u64,
    pub incompat_features: u64,
    /// Volume identity, in the byte order of its text form.
    pub uuid: [u8; 16],
    /// Namespace identity, all zero for none.
    pub parent_uuid: [u8; 16],
    pub generation: u64,
    pub self_offset: u64,
    pub primary_offset: u64,
    pub backup_offset: u64,
    pub device_size: u64,
    pub align: u64,
    pub logical_block_size: u32,
    /// `PSF_MODE_*`.
    pub reserve_mode: u32,
    pub reserve_offset: u64,
    pub reserve_size: u64,
    pub data_offset: u64,
    pub data_size: u64,
}

/// `psf_owner::kind` values (FORMAT.md §3.1).
pub const PSF_OWNER_HYPERVISOR: u32 = 1;
/// An operating system's page array.
pub const PSF_OWNER_OS: u32 = 2;
/// Anything else.
pub const PSF_OWNER_OTHER: u32 = 3;
/// How many owners a reserve has at most.
pub const PSF_MAX_OWNERS: u32 = 16;
/// The compatible feature bit of format 1.1's owner table.
pub const PSF_COMPAT_RESERVE_OWNERS: u64 = crate::owners::COMPAT_RESERVE_OWNERS;

/// One owner of a sub-range of the reserve (format 1.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct psf_owner {
    /// Byte offset on the backing.
    pub offset: u64,
    /// Bytes (a multiple of 4096).
    pub size: u64,
    /// `PSF_OWNER_*`.
    pub kind: u32,
    /// Zero.
    pub reserved0: u32,
    /// The name, NUL terminated (at most 31 bytes of `[A-Za-z0-9._-]`).
    pub name: [u8; 32],
}

/// What a layout is planned from (`pmem-stack format`'s options).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct psf_layout_request {
    /// Reserve size in bytes (rounded up to the alignment); ignored when
    /// `reserve_auto` is set.
    pub reserve_bytes: u64,
    /// 1: size the reserve by the mode's rule (`--reserve auto`).
    pub reserve_auto: u32,
    /// `PSF_MODE_*`, or `PSF_MODE_DEFAULT`.
    pub mode: i32,
    /// 4096, 2097152 or 1073741824; 0 for the default (2 MiB).
    pub align: u64,
    /// 512 or 4096; 0 for the default (512).
    pub logical_block_size: u32,
    /// Zero.
    pub reserved0: u32,
}

/// A planned layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct psf_layout {
    pub device_size: u64,
    pub align: u64,
    pub logical_block_size: u32,
    /// `PSF_MODE_*`.
    pub reserve_mode: u32,
    pub reserve_offset: u64,
    pub reserve_size: u64,
    pub data_offset: u64,
    pub data_size: u64,
    pub backup_offset: u64,
    /// Mode hypervisor: what Xen's rule asks for when `reserve_size` is
    /// below it (a warning, not an error); 0 otherwise.
    pub below_xen_rule: u64,
}

/// The code of a decoding failure.
const fn decode_code(err: &DecodeError) -> i32 {
    match err {
        DecodeError::Length(_) => PSF_ERR_LENGTH,
        DecodeError::NoMagic => PSF_ERR_NO_MAGIC,
        DecodeError::UnsupportedVersion { .. } => PSF_ERR_UNSUPPORTED_VERSION,
        DecodeError::UnknownVersion { .. } => PSF_ERR_UNKNOWN_VERSION,
        DecodeError::Checksum { .. } => PSF_ERR_CHECKSUM,
        DecodeError::WrongLocation { .. } => PSF_ERR_WRONG_LOCATION,
        DecodeError::PrimaryOffset(_) => PSF_ERR_PRIMARY_OFFSET,
        DecodeError::BackupOffset { .. } => PSF_ERR_BACKUP_OFFSET,
        DecodeError::Alignment(_) => PSF_ERR_ALIGNMENT,
        DecodeError::LogicalBlockSize(_) => PSF_ERR_LOGICAL_BLOCK_SIZE,
        DecodeError::ReserveMode(_) => PSF_ERR_RESERVE_MODE,
        DecodeError::NilUuid => PSF_ERR_NIL_UUID,
        DecodeError::ZeroGeneration => PSF_ERR_ZERO_GENERATION,
        DecodeError::Geometry(g) => geometry_code(g),
        DecodeError::UnknownIncompatFeatures(_) => PSF_ERR_UNKNOWN_INCOMPAT_FEATURES,
        DecodeError::ReservedNotZero(_) => PSF_ERR_RESERVED_NOT_ZERO,
        DecodeError::Owners(_) => PSF_ERR_OWNERS,
    }
}

/// The code of a broken layout rule.
const fn geometry_code(err: &GeometryError) -> i32 {
    match err {
        GeometryError::DeviceTooSmall { .. } => PSF_ERR_DEVICE_TOO_SMALL,
        GeometryError::ReserveOffset { .. } => PSF_ERR_RESERVE_OFFSET,
        GeometryError::ReserveSizeMisaligned { .. } => PSF_ERR_RESERVE_MISALIGNED,
        GeometryError::ModeMismatch { .. } => PSF_ERR_MODE_MISMATCH,
        GeometryError::DataOffset { .. } => PSF_ERR_DATA_OFFSET,
        GeometryError::DataSize { .. } => PSF_ERR_DATA_SIZE,
        GeometryError::NoRoomForData { .. } => PSF_ERR_NO_ROOM_FOR_DATA,
        GeometryError::OsReserveTooSmall { .. } => PSF_ERR_OS_RESERVE_TOO_SMALL,
    }
}

/// The code of a planning failure.
const fn layout_code(err: &LayoutError) -> i32 {
    match err {
        LayoutError::DeviceTooSmall { .. } => PSF_ERR_DEVICE_TOO_SMALL,
        LayoutError::ReserveTooLarge { .. } => PSF_ERR_RESERVE_TOO_LARGE,
        LayoutError::OsReserveTooSmall { .. } => PSF_ERR_OS_RESERVE_TOO_SMALL,
        LayoutError::ModeNeedsReserve { .. } => PSF_ERR_MODE_NEEDS_RESERVE,
        LayoutError::NoneTakesNoReserve => PSF_ERR_NONE_TAKES_NO_RESERVE,
    }
}

/// The message for a code, as a C string.
const fn message(code: i32) -> &'static core::ffi::CStr {
    match code {
        PSF_OK => c"success",
        PSF_ERR_INVALID_ARGUMENT => {
            c"invalid argument (null or misaligned pointer, or a value out of range)"
        }
        PSF_ERR_LENGTH => c"block is not 4096 bytes",
        PSF_ERR_NO_MAGIC => c"no pmem-stack magic",
        PSF_ERR_UNSUPPORTED_VERSION => {
            c"format version is newer than this library reads; upgrade it"
        }
        PSF_ERR_UNKNOWN_VERSION => c"format version was never written by any pmem-stack",
        PSF_ERR_CHECKSUM => c"checksum mismatch",
        PSF_ERR_WRONG_LOCATION => {
            c"copy records another offset than where it was read (a copy of another layout)"
        }
        PSF_ERR_PRIMARY_OFFSET => c"primary offset field is not 4096",
        PSF_ERR_BACKUP_OFFSET => c"backup offset field is not the last 4 KiB block",
        PSF_ERR_ALIGNMENT => c"alignment is not 4K, 2M or 1G",
        PSF_ERR_LOGICAL_BLOCK_SIZE => c"logical block size is not 512 or 4096",
        PSF_ERR_RESERVE_MODE => c"reserve mode is unknown",
        PSF_ERR_NIL_UUID => c"uuid is nil",
        PSF_ERR_ZERO_GENERATION => c"generation is 0",
        PSF_ERR_UNKNOWN_INCOMPAT_FEATURES => {
            c"unknown incompatible features: written by a newer pmem-stack; upgrade it"
        }
        PSF_ERR_RESERVED_NOT_ZERO => c"a reserved byte is not zero",
        PSF_ERR_DEVICE_TOO_SMALL => {
            c"device too small for two super blocks and one aligned data block"
        }
        PSF_ERR_RESERVE_OFFSET => c"reserve offset is not where the layout rules put it",
        PSF_ERR_RESERVE_MISALIGNED => c"reserve size is not a multiple of the alignment",
        PSF_ERR_MODE_MISMATCH => c"reserve mode does not match the reserve size",
        PSF_ERR_DATA_OFFSET => c"data offset is not where the layout rules put it",
        PSF_ERR_DATA_SIZE => c"data size is not what the layout rules give",
        PSF_ERR_NO_ROOM_FOR_DATA => c"the data area would be smaller than one aligned block",
        PSF_ERR_OS_RESERVE_TOO_SMALL => {
            c"reserve is smaller than mode os needs (64 bytes per 4 KiB data page)"
        }
        PSF_ERR_RESERVE_TOO_LARGE => c"reserve is too large: no aligned data block would remain",
        PSF_ERR_MODE_NEEDS_RESERVE => c"mode hypervisor or os needs a reserve larger than 0",
        PSF_ERR_NONE_TAKES_NO_RESERVE => c"mode none takes no reserve",
        PSF_ERR_OWNERS => c"the reserve's owner table breaks its rules",
        PSF_ERR_OWNERS_CAPACITY => c"the owner array is smaller than the owner table",
        _ => c"unknown error code",
    }
}

/// The fields of `block`, taken as they are (nothing validated), through
/// the format's own view of the block ([`RawFields`]): the offsets have one
/// source, `superblock::RawSuperBlock`.
fn raw_fields(block: &[u8; BLOCK_LEN]) -> psf_superblock {
    let raw = RawFields::read(block);
    let computed = checksum(block);
    psf_superblock {
        magic: raw.magic,
        version_major: raw.version_major,
        version_minor: raw.version_minor,
        checksum_stored: raw.checksum,
        checksum_computed: computed,
        checksum_ok: u8::from(raw.checksum == computed),
        valid: 0,
        reserved0: [0; 2],
        compat_features: raw.compat_features,
        incompat_features: raw.incompat_features,
        uuid: raw.uuid,
        parent_uuid: raw.parent_uuid,
        generation: raw.generation,
        self_offset: raw.self_offset,
        primary_offset: raw.primary_offset,
        backup_offset: raw.backup_offset,
        device_size: raw.device_size,
        align: raw.align,
        logical_block_size: raw.logical_block_size,
        reserve_mode: raw.reserve_mode,
        reserve_offset: raw.reserve_offset,
        reserve_size: raw.reserve_size,
        data_offset: raw.data_offset,
        data_size: raw.data_size,
    }
}

/// The bytes `buf`/`len` point at, if the pointer may be read.
///
/// # Safety
/// `buf` must be null or point to `len` readable bytes that stay unchanged
/// for `'a`.
unsafe fn input<'a>(buf: *const u8, len: usize) -> Option<&'a [u8]> {
    if buf.is_null() || len > isize::MAX.unsigned_abs() {
        return None;
    }
    // SAFETY: non-null (checked), `u8` needs no alignment, the length fits
    // `isize` (checked), and the caller promises `len` readable bytes that
    // do not change while the slice lives.
    Some(unsafe { core::slice::from_raw_parts(buf, len) })
}

/// Store `value` through `out`, if it is a usable pointer.
///
/// # Safety
/// `out` must be null or point to memory writable as a `T`.
unsafe fn store<T>(out: *mut T, value: T) -> Result<(), i32> {
    if out.is_null() || !out.is_aligned() {
        return Err(PSF_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-null and aligned (checked); the caller promises it is
    // writable as a `T`. `write` drops nothing (every `T` here is `Copy`).
    unsafe { out.write(value) };
    Ok(())
}

/// Read a `T` the caller passed by pointer.
///
/// # Safety
/// `ptr` must be null or point to an initialised `T`.
unsafe fn load<T: Copy>(ptr: *const T) -> Option<T> {
    if ptr.is_null() || !ptr.is_aligned() {
        return None;
    }
    // SAFETY: non-null and aligned (checked); the caller promises an
    // initialised `T`, and every `T` here is plain integers (any bit
    // pattern is valid).
    Some(unsafe { ptr.read() })
}

fn into_code(result: Result<(), i32>) -> i32 {
    match result {
        Ok(()) => PSF_OK,
        Err(code) => code,
    }
}

/// Copy the fields of a 4096-byte block into `*out` without trusting them
/// (`valid` = 0), and compute its checksum (`checksum_ok`). For looking at a
/// damaged copy — e.g. the `device_size` it claims (FORMAT.md §2, step 3).
///
/// Returns `PSF_OK` when the block is 4096 bytes with the magic (`*out`
/// filled), `PSF_ERR_NO_MAGIC` (`*out` filled too), `PSF_ERR_LENGTH` or
/// `PSF_ERR_INVALID_ARGUMENT` (`*out` untouched).
///
/// # Safety
/// `buf` must point to `len` readable bytes, `out` to a writable
/// `struct psf_superblock`; either may be null (an error).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn psf_decode(buf: *const u8, len: usize, out: *mut psf_superblock) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let Some(bytes) = (unsafe { input(buf, len) }) else {
        return PSF_ERR_INVALID_ARGUMENT;
    };
    let Ok(block) = <&[u8; BLOCK_LEN]>::try_from(bytes) else {
        return PSF_ERR_LENGTH;
    };
    let fields = raw_fields(block);
    let code = if fields.magic == MAGIC {
        PSF_OK
    } else {
        PSF_ERR_NO_MAGIC
    };
    // SAFETY: forwarded from this function's contract.
    match unsafe { store(out, fields) } {
        Ok(()) => code,
        Err(bad) => bad,
    }
}

/// The validated super block as C fields (`valid` = 1).
fn validated(sb: &SuperBlock, block: &[u8; BLOCK_LEN]) -> psf_superblock {
    let g = &sb.geometry;
    psf_superblock {
        valid: 1,
        version_minor: sb.version_minor,
        compat_features: sb.compat_features,
        incompat_features: sb.incompat_features,
        uuid: sb.uuid.0,
        parent_uuid: sb.parent_uuid.0,
        generation: sb.generation,
        device_size: g.device_size(),
        align: g.align().bytes(),
        logical_block_size: g.logical_block_size().bytes(),
        reserve_mode: g.mode().to_raw(),
        reserve_offset: g.reserve_offset(),
        reserve_size: g.reserve_size(),
        data_offset: g.data_offset(),
        data_size: g.data_size(),
        backup_offset: g.backup_offset(),
        ..raw_fields(block)
    }
}

/// Validate the copy read at byte offset `read_at` of the backing, every
/// rule of FORMAT.md §5. `PSF_OK` (and `*out` filled, `valid` = 1) when it
/// is a usable super block; otherwise the first rule it breaks, with `*out`
/// filled as by `psf_decode` when the block has the right length.
/// `psf_error_is_unsupported` tells a newer format (do not write) from
/// damage.
///
/// # Safety
/// As for [`psf_decode`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn psf_validate(
    buf: *const u8,
    len: usize,
    read_at: u64,
    out: *mut psf_superblock,
) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let Some(bytes) = (unsafe { input(buf, len) }) else {
        return PSF_ERR_INVALID_ARGUMENT;
    };
    let Ok(block) = <&[u8; BLOCK_LEN]>::try_from(bytes) else {
        return PSF_ERR_LENGTH;
    };
    let (fields, code) = match SuperBlock::decode(block, read_at) {
        Ok(sb) => (validated(&sb, block), PSF_OK),
        Err(err) => (raw_fields(block), decode_code(&err)),
    };
    // SAFETY: forwarded from this function's contract.
    match unsafe { store(out, fields) } {
        Ok(()) => code,
        Err(bad) => bad,
    }
}

/// The owners of the reserve of the copy read at `read_at` (format 1.1),
/// after validating the copy as `psf_validate` does: `PSF_OK` with
/// `*count` owners stored in `owners[0..*count]`, in ascending offset
/// order — `*count` = 0 for a reserve that is not split (1.0: one owner,
/// named by `reserve_mode`). `PSF_ERR_OWNERS_CAPACITY` when `capacity` is
/// below the table's count (`*count` then says how many are needed;
/// `PSF_MAX_OWNERS` always suffices). Any other code: the rule the copy
/// breaks, nothing stored but `*count` = 0.
///
/// # Safety
/// `buf` must point to `len` readable bytes; `owners` to `capacity`
/// writable `struct psf_owner` (it may be null when `capacity` is 0);
/// `count` to a writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn psf_owners(
    buf: *const u8,
    len: usize,
    read_at: u64,
    owners: *mut psf_owner,
    capacity: usize,
    count: *mut u32,
) -> i32 {
    // SAFETY: forwarded from this function's contract.
    if unsafe { store(count, 0) }.is_err() {
        return PSF_ERR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded from this function's contract.
    let Some(bytes) = (unsafe { input(buf, len) }) else {
        return PSF_ERR_INVALID_ARGUMENT;
    };
    let Ok(block) = <&[u8; BLOCK_LEN]>::try_from(bytes) else {
        return PSF_ERR_LENGTH;
    };
    let sb = match SuperBlock::decode(block, read_at) {
        Ok(sb) => sb,
        Err(err) => return decode_code(&err),
    };
    let n = sb.owners.len();
    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
    if n > capacity {
        // SAFETY: forwarded from this function's contract (and `count`
        // was stored through above, so this succeeds).
        return match unsafe { store(count, n32) } {
            Ok(()) => PSF_ERR_OWNERS_CAPACITY,
            Err(bad) => bad,
        };
    }
    if n > 0 && (owners.is_null() || !owners.is_aligned()) {
        return PSF_ERR_INVALID_ARGUMENT;
    }
    for (i, o) in sb.owners.iter().enumerate() {
        let entry = psf_owner {
            offset: o.offset,
            size: o.size,
            kind: o.kind.to_raw(),
            reserved0: 0,
            name: *o.name.as_bytes(),
        };
        // SAFETY: `i < n <= capacity`, and the caller promises `capacity`
        // writable entries at the (checked non-null, aligned) `owners`.
        unsafe { owners.add(i).write(entry) };
    }
    // SAFETY: forwarded from this function's contract.
    into_code(unsafe { store(count, n32) })
}

/// A static, NUL-terminated English message for a `PSF_*` code (never null).
#[unsafe(no_mangle)]
pub extern "C" fn psf_strerror(code: i32) -> *const c_char {
    message(code).as_ptr()
}

/// 1 when `code` means an intact copy of a newer format (newer major, or
/// unknown incompatible features): the reader must not interpret the volume
/// and must not write to it. 0 otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn psf_error_is_unsupported(code: i32) -> i32 {
    i32::from(matches!(
        code,
        PSF_ERR_UNSUPPORTED_VERSION | PSF_ERR_UNKNOWN_INCOMPAT_FEATURES
    ))
}

/// Whether two valid copies hold the same super block, as FORMAT.md §8
/// compares them (every field but `self_offset` and the checksum): 1 if
/// so, 0 if not, `PSF_ERR_INVALID_ARGUMENT` for a null pointer or a copy
/// that is not `valid`.
///
/// # Safety
/// `a` and `b` must each be null or point to an initialised
/// `struct psf_superblock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn psf_same_volume(
    a: *const psf_superblock,
    b: *const psf_superblock,
) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let (Some(a), Some(b)) = (unsafe { load(a) }, unsafe { load(b) }) else {
        return PSF_ERR_INVALID_ARGUMENT;
    };
    if a.valid != 1 || b.valid != 1 {
        return PSF_ERR_INVALID_ARGUMENT;
    }
    let comparable = |s: psf_superblock| psf_superblock {
        self_offset: 0,
        checksum_stored: 0,
        checksum_computed: 0,
        ..s
    };
    i32::from(comparable(a) == comparable(b))
}

/// The byte offset of the backup copy on a backing of `device_size` bytes
/// (the last 4 KiB block), into `*out`. `PSF_ERR_DEVICE_TOO_SMALL` when
/// it would not lie after the primary copy.
///
/// # Safety
/// `out` must be null (an error) or point to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn psf_backup_offset(device_size: u64, out: *mut u64) -> i32 {
    let Some(offset) = backup_offset_for(device_size) else {
        return PSF_ERR_DEVICE_TOO_SMALL;
    };
    // SAFETY: forwarded from this function's contract.
    into_code(unsafe { store(out, offset) })
}

/// The Rust request a C request stands for.
fn request(req: &psf_layout_request) -> Result<LayoutRequest, i32> {
    let reserve = match req.reserve_auto {
        0 => ReserveRequest::Bytes(req.reserve_bytes),
        1 => ReserveRequest::Auto,
        _ => return Err(PSF_ERR_INVALID_ARGUMENT),
    };
    let mode = match req.mode {
        PSF_MODE_DEFAULT => None,
        raw => Some(
            u32::try_from(raw)
                .ok()
                .and_then(ReserveMode::from_raw)
                .ok_or(PSF_ERR_INVALID_ARGUMENT)?,
        ),
    };
    let align = match req.align {
        0 => Alignment::DEFAULT,
        bytes => Alignment::from_bytes(bytes).ok_or(PSF_ERR_ALIGNMENT)?,
    };
    let logical_block_size = match req.logical_block_size {
        0 => LogicalBlockSize::DEFAULT,
        bytes => LogicalBlockSize::from_bytes(bytes).ok_or(PSF_ERR_LOGICAL_BLOCK_SIZE)?,
    };
    Ok(LayoutRequest {
        reserve,
        mode,
        align,
        logical_block_size,
    })
}

/// Plan the layout `pmem-stack format` would write for `*req` on a backing
/// of `device_size` bytes (FORMAT.md §6–7), into `*out`. `PSF_OK`, or the
/// rule the request breaks (`PSF_ERR_RESERVE_TOO_LARGE`,
/// `PSF_ERR_DEVICE_TOO_SMALL`, `PSF_ERR_OS_RESERVE_TOO_SMALL`, …).
///
/// # Safety
/// `req` must be null or point to an initialised `struct
/// psf_layout_request`, `out` to a writable `struct psf_layout`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn psf_plan(
    device_size: u64,
    req: *const psf_layout_request,
    out: *mut psf_layout,
) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let Some(req) = (unsafe { load(req) }) else {
        return PSF_ERR_INVALID_ARGUMENT;
    };
    let planned = request(&req).and_then(|r| plan(device_size, &r).map_err(|e| layout_code(&e)));
    let p = match planned {
        Ok(p) => p,
        Err(code) => return code,
    };
    let g = p.geometry;
    let layout = psf_layout {
        device_size: g.device_size(),
        align: g.align().bytes(),
        logical_block_size: g.logical_block_size().bytes(),
        reserve_mode: g.mode().to_raw(),
        reserve_offset: g.reserve_offset(),
        reserve_size: g.reserve_size(),
        data_offset: g.data_offset(),
        data_size: g.data_size(),
        backup_offset: g.backup_offset(),
        below_xen_rule: p.below_xen_rule.unwrap_or(0),
    };
    // SAFETY: forwarded from this function's contract.
    into_code(unsafe { store(out, layout) })
}

/// Continue a CRC32C (FORMAT.md §4) over `len` bytes at `buf`; start with
/// `crc` = 0. Returns `crc` unchanged for a null `buf`.
///
/// # Safety
/// `buf` must be null or point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn psf_crc32c(crc: u32, buf: *const u8, len: usize) -> u32 {
    // SAFETY: forwarded from this function's contract.
    match unsafe { input(buf, len) } {
        Some(bytes) => crc32c_append(crc, bytes),
        None => crc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Geometry;
    use crate::superblock::CHECKSUM_OFFSET;
    use crate::uuid::Uuid;

    /// The C view reads the fields through the format's own raw struct: a
    /// field moved in `RawSuperBlock` moves here too, and this test pins
    /// what each C field holds against the decoder's reading of the same
    /// block (both slots, so the self offset differs).
    #[test]
    fn the_c_view_and_the_decoder_read_the_same_fields() {
        let sb = sample();
        for slot in [crate::Slot::Primary, crate::Slot::Backup] {
            let block = sb.encode(slot);
            let c = raw_fields(&block);
            let g = &sb.geometry;
            assert_eq!(c.magic, MAGIC);
            assert_eq!(
                (c.version_major, c.version_minor),
                (VERSION_MAJOR, sb.version_minor)
            );
            assert_eq!(c.checksum_ok, 1);
            assert_eq!(c.uuid, sb.uuid.0);
            assert_eq!(c.parent_uuid, sb.parent_uuid.0);
            assert_eq!(c.generation, sb.generation);
            assert_eq!(c.self_offset, slot.offset(g));
            assert_eq!(
                (c.primary_offset, c.backup_offset),
                (4096, g.backup_offset())
            );
            assert_eq!(
                (c.device_size, c.align),
                (g.device_size(), g.align().bytes())
            );
            assert_eq!(c.logical_block_size, g.logical_block_size().bytes());
            assert_eq!(
                (c.reserve_offset, c.reserve_size, c.data_offset, c.data_size),
                (
                    g.reserve_offset(),
                    g.reserve_size(),
                    g.data_offset(),
                    g.data_size()
                )
            );
            assert_eq!(SuperBlock::decode(&block, slot.offset(g)), Ok(sb));
        }
    }

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn sample() -> SuperBlock {
        SuperBlock {
            version_minor: 0,
            compat_features: 0,
            incompat_features: 0,
            uuid: Uuid([0x5A; 16]),
            parent_uuid: Uuid([0xA5; 16]),
            generation: 3,
            geometry: Geometry::derive(
                2 * GIB,
                Alignment::M2,
                LogicalBlockSize::B4096,
                ReserveMode::Os,
                32 * MIB,
            )
            .expect("valid"),
            owners: crate::owners::Owners::NONE,
        }
    }

    fn validate(block: &[u8], at: u64) -> (i32, psf_superblock) {
        let mut out = psf_superblock::default();
        // SAFETY: a live slice and a local struct.
        let rc = unsafe { psf_validate(block.as_ptr(), block.len(), at, &raw mut out) };
        (rc, out)
    }

    #[test]
    fn a_valid_copy_comes_out_field_for_field() {
        let sb = sample();
        let block = sb.encode(crate::Slot::Backup);
        let at = sb.geometry.backup_offset();
        let (rc, out) = validate(&block, at);
        assert_eq!(rc, PSF_OK);
        assert_eq!((out.valid, out.checksum_ok), (1, 1));
        assert_eq!(out.magic, MAGIC);
        assert_eq!((out.version_major, out.version_minor), (1, 0));
        assert_eq!(out.checksum_stored, checksum(&block));
        assert_eq!((out.uuid, out.parent_uuid), ([0x5A; 16], [0xA5; 16]));
        assert_eq!(out.generation, 3);
        assert_eq!((out.self_offset, out.primary_offset), (at, 4096));
        assert_eq!((out.backup_offset, out.device_size), (at, 2 * GIB));
        assert_eq!((out.align, out.logical_block_size), (2 * MIB, 4096));
        assert_eq!(out.reserve_mode, PSF_MODE_OS);
        assert_eq!((out.reserve_offset, out.reserve_size), (2 * MIB, 32 * MIB));
        assert_eq!(out.data_offset, 34 * MIB);
        assert_eq!(out.data_size, sb.geometry.data_size());
        // psf_decode gives the same fields, only not vouched for.
        let mut raw = psf_superblock::default();
        // SAFETY: a live array and a local struct.
        let rc = unsafe { psf_decode(block.as_ptr(), block.len(), &raw mut raw) };
        assert_eq!(rc, PSF_OK);
        assert_eq!(psf_superblock { valid: 1, ..raw }, out);
    }

    #[test]
    fn each_failure_has_its_code() {
        let sb = sample();
        let block = sb.encode(crate::Slot::Primary);
        assert_eq!(validate(&block[..100], 4096).0, PSF_ERR_LENGTH);
        assert_eq!(validate(&[0u8; 4096], 4096).0, PSF_ERR_NO_MAGIC);
        assert_eq!(validate(&block, 8192).0, PSF_ERR_WRONG_LOCATION);
        let mut damaged = block;
        damaged[0x90] ^= 1;
        let (rc, out) = validate(&damaged, 4096);
        assert_eq!(rc, PSF_ERR_CHECKSUM);
        assert_eq!((out.valid, out.checksum_ok), (0, 0));
        assert_eq!(
            out.device_size,
            2 * GIB,
            "the claimed size is still readable"
        );
        assert_eq!(psf_error_is_unsupported(rc), 0);
        let mut newer = block;
        newer[0x10] = 2;
        let sum = checksum(&newer);
        newer[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&sum.to_le_bytes());
        let (rc, _) = validate(&newer, 4096);
        assert_eq!(rc, PSF_ERR_UNSUPPORTED_VERSION);
        assert_eq!(psf_error_is_unsupported(rc), 1);
    }

    #[test]
    fn null_and_misaligned_pointers_are_refused() {
        let block = sample().encode(crate::Slot::Primary);
        let mut out = psf_superblock::default();
        // SAFETY: null pointers are part of the contract.
        unsafe {
            assert_eq!(
                psf_validate(core::ptr::null(), 4096, 4096, &raw mut out),
                PSF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                psf_validate(block.as_ptr(), 4096, 4096, core::ptr::null_mut()),
                PSF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                psf_decode(core::ptr::null(), 0, &raw mut out),
                PSF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                psf_backup_offset(GIB, core::ptr::null_mut()),
                PSF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                psf_plan(GIB, core::ptr::null(), core::ptr::null_mut()),
                PSF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                psf_same_volume(core::ptr::null(), &raw const out),
                PSF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(psf_crc32c(7, core::ptr::null(), 10), 7);
        }
        let mut words = [0u64; 3];
        let misaligned = words
            .as_mut_ptr()
            .cast::<u8>()
            .wrapping_add(1)
            .cast::<u64>();
        // SAFETY: the pointer is into a live array; the function must refuse
        // it for its alignment before writing.
        let rc = unsafe { psf_backup_offset(GIB, misaligned) };
        assert_eq!(rc, PSF_ERR_INVALID_ARGUMENT);
        assert_eq!(words, [0; 3]);
    }

    #[test]
    fn same_volume_ignores_only_the_place() {
        let sb = sample();
        let (_, primary) = validate(&sb.encode(crate::Slot::Primary), 4096);
        let (_, backup) = validate(&sb.encode(crate::Slot::Backup), sb.geometry.backup_offset());
        // SAFETY: local structs.
        unsafe {
            assert_eq!(psf_same_volume(&raw const primary, &raw const backup), 1);
            let newer = psf_superblock {
                generation: 4,
                ..backup
            };
            assert_eq!(psf_same_volume(&raw const primary, &raw const newer), 0);
            let unchecked = psf_superblock { valid: 0, ..backup };
            assert_eq!(
                psf_same_volume(&raw const primary, &raw const unchecked),
                PSF_ERR_INVALID_ARGUMENT
            );
        }
    }

    #[test]
    fn plan_is_the_planner() {
        let req = psf_layout_request {
            reserve_bytes: 0,
            reserve_auto: 1,
            mode: PSF_MODE_DEFAULT,
            align: 0,
            logical_block_size: 0,
            reserved0: 0,
        };
        let mut out = psf_layout::default();
        // SAFETY: local structs.
        let rc = unsafe { psf_plan(2 * GIB, &raw const req, &raw mut out) };
        assert_eq!(rc, PSF_OK);
        let p = plan(2 * GIB, &LayoutRequest::new(ReserveRequest::Auto, None)).expect("fits");
        assert_eq!(out.reserve_size, p.geometry.reserve_size());
        assert_eq!(out.reserve_mode, PSF_MODE_HYPERVISOR);
        assert_eq!((out.align, out.logical_block_size), (2 * MIB, 512));
        assert_eq!(out.backup_offset, 2 * GIB - 4096);
        let too_large = psf_layout_request {
            reserve_auto: 0,
            reserve_bytes: 2 * GIB,
            ..req
        };
        // SAFETY: local structs.
        let rc = unsafe { psf_plan(2 * GIB, &raw const too_large, &raw mut out) };
        assert_eq!(rc, PSF_ERR_RESERVE_TOO_LARGE);
        let odd = psf_layout_request { align: 8192, ..req };
        // SAFETY: local structs.
        let rc = unsafe { psf_plan(2 * GIB, &raw const odd, &raw mut out) };
        assert_eq!(rc, PSF_ERR_ALIGNMENT);
        let bad_mode = psf_layout_request { mode: 3, ..req };
        // SAFETY: local structs.
        let rc = unsafe { psf_plan(2 * GIB, &raw const bad_mode, &raw mut out) };
        assert_eq!(rc, PSF_ERR_INVALID_ARGUMENT);
    }

    #[test]
    fn every_code_has_its_own_message() {
        let mut seen = std::collections::HashSet::new();
        for code in PSF_ERR_OWNERS_CAPACITY..=PSF_OK {
            let text = message(code);
            assert_ne!(text, c"unknown error code", "{code}");
            assert!(seen.insert(text), "{code} repeats a message");
            assert!(!psf_strerror(code).is_null());
        }
        assert_eq!(message(1), c"unknown error code");
        assert_eq!(message(-30), c"unknown error code");
    }

    /// `sample()` with its reserve split between xen and linux, encoded.
    fn split_block() -> [u8; BLOCK_LEN] {
        use crate::owners::{Owner, OwnerKind, OwnerName, Owners};
        let mut sb = sample();
        let mut owners = Owners::NONE;
        for (name, kind, offset, size) in [
            ("xen", OwnerKind::Hypervisor, 2 * MIB, 8 * MIB),
            ("linux", OwnerKind::Os, 10 * MIB, 24 * MIB),
        ] {
            let name = OwnerName::new(name).expect("name");
            owners
                .push(Owner {
                    kind,
                    name,
                    offset,
                    size,
                })
                .expect("room");
        }
        sb.set_owners(owners);
        sb.encode(crate::superblock::Slot::Primary)
    }

    #[test]
    fn owners_over_the_abi() {
        let block = split_block();
        let at = crate::geometry::PRIMARY_OFFSET;
        let mut out = [psf_owner::default(); 16];
        let mut n = 99u32;
        // SAFETY: a live block, a local array of 16 and a local count.
        let rc = unsafe {
            psf_owners(
                block.as_ptr(),
                block.len(),
                at,
                out.as_mut_ptr(),
                16,
                &raw mut n,
            )
        };
        assert_eq!((rc, n), (PSF_OK, 2));
        assert_eq!(&out[1].name[..6], b"linux\0");
        assert_eq!(
            (out[1].offset, out[1].size, out[1].kind),
            (10 * MIB, 24 * MIB, PSF_OWNER_OS)
        );
        // Too small an array: the count needed, nothing else.
        // SAFETY: as above.
        let rc = unsafe {
            psf_owners(
                block.as_ptr(),
                block.len(),
                at,
                out.as_mut_ptr(),
                1,
                &raw mut n,
            )
        };
        assert_eq!((rc, n), (PSF_ERR_OWNERS_CAPACITY, 2));
        // No count pointer; a damaged copy.
        // SAFETY: as above, with a null count.
        let rc = unsafe {
            psf_owners(
                block.as_ptr(),
                block.len(),
                at,
                out.as_mut_ptr(),
                16,
                core::ptr::null_mut(),
            )
        };
        assert_eq!(rc, PSF_ERR_INVALID_ARGUMENT);
        let mut bad = block;
        bad[0xB0] ^= 1;
        // SAFETY: as above.
        let rc = unsafe {
            psf_owners(
                bad.as_ptr(),
                bad.len(),
                at,
                out.as_mut_ptr(),
                16,
                &raw mut n,
            )
        };
        assert_eq!((rc, n), (PSF_ERR_CHECKSUM, 0));
        // An unsplit copy has no owners; the array may be null then.
        let plain = sample().encode(crate::superblock::Slot::Primary);
        // SAFETY: a live block, a null array of capacity 0, a local count.
        let rc = unsafe {
            psf_owners(
                plain.as_ptr(),
                plain.len(),
                at,
                core::ptr::null_mut(),
                0,
                &raw mut n,
            )
        };
        assert_eq!((rc, n), (PSF_OK, 0));
    }

    #[test]
    fn crc_over_the_abi_is_the_check_value() {
        let data = b"123456789";
        // SAFETY: a live array.
        let rc = unsafe { psf_crc32c(0, data.as_ptr(), data.len()) };
        assert_eq!(rc, 0xE306_9283);
    }
}
