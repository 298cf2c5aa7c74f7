/*
 * pmem_stack_format.h — the pmem-stack on-media format (docs/FORMAT.md) for C.
 *
 * Link with libpmem_stack_format.a, built from the Rust crate in format/capi
 * (see docs/C-ABI.md):
 *
 *   cargo build --release -p pmem-stack-format-capi                      # hosted
 *   cargo build --release -p pmem-stack-format-capi --features freestanding
 *                                          # no std: hypervisors, boot loaders
 *   cc -I include prog.c target/release/libpmem_stack_format.a
 *
 * Hand-written. tests/c_abi.rs checks every struct size, field offset and
 * constant here against the Rust definitions (format/src/capi.rs) with C11
 * static assertions, and runs tests/c/read_image.c against images the
 * pmem-stack tool wrote.
 *
 * Every function: never keeps a pointer after it returns; refuses a null or
 * misaligned pointer with PSF_ERR_INVALID_ARGUMENT; returns PSF_OK (0) or a
 * negative PSF_ERR_* code (psf_strerror names it). All integers in the
 * structs are in host byte order (the media is little-endian; the library
 * converts).
 */
#ifndef PMEM_STACK_FORMAT_H
#define PMEM_STACK_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Format constants. */
#define PSF_VERSION_MAJOR 1
#define PSF_VERSION_MINOR 1            /* 1.1: the reserve's owner table */
#define PSF_BLOCK_SIZE 4096u          /* bytes in a super block copy */
#define PSF_PRIMARY_OFFSET 4096u      /* byte offset of the primary copy */

/* reserve_mode values. */
#define PSF_MODE_NONE 0u
#define PSF_MODE_HYPERVISOR 1u
#define PSF_MODE_OS 2u
#define PSF_MODE_DEFAULT (-1)         /* psf_layout_request.mode: hypervisor, or none for a 0 reserve */

/* Format 1.1: a reserve shared by several owners (FORMAT.md §3.1). */
#define PSF_COMPAT_RESERVE_OWNERS 1ull /* compat_features bit of the owner table */
#define PSF_MAX_OWNERS 16u
#define PSF_OWNER_HYPERVISOR 1u
#define PSF_OWNER_OS 2u
#define PSF_OWNER_OTHER 3u

/* Return codes. */
#define PSF_OK 0
#define PSF_ERR_INVALID_ARGUMENT (-1)          /* null/misaligned pointer, value out of range */
#define PSF_ERR_LENGTH (-2)                    /* block is not 4096 bytes */
#define PSF_ERR_NO_MAGIC (-3)                  /* no magic: the copy is missing */
#define PSF_ERR_UNSUPPORTED_VERSION (-4)       /* newer major: do not interpret, do not write */
#define PSF_ERR_UNKNOWN_VERSION (-5)           /* major 0: corrupt */
#define PSF_ERR_CHECKSUM (-6)                  /* CRC32C mismatch: corrupt */
#define PSF_ERR_WRONG_LOCATION (-7)            /* self_offset != where read: another layout's copy */
#define PSF_ERR_PRIMARY_OFFSET (-8)
#define PSF_ERR_BACKUP_OFFSET (-9)
#define PSF_ERR_ALIGNMENT (-10)
#define PSF_ERR_LOGICAL_BLOCK_SIZE (-11)
#define PSF_ERR_RESERVE_MODE (-12)
#define PSF_ERR_NIL_UUID (-13)
#define PSF_ERR_ZERO_GENERATION (-14)
#define PSF_ERR_UNKNOWN_INCOMPAT_FEATURES (-15) /* newer format: do not interpret, do not write */
#define PSF_ERR_RESERVED_NOT_ZERO (-16)
#define PSF_ERR_DEVICE_TOO_SMALL (-17)
#define PSF_ERR_RESERVE_OFFSET (-18)
#define PSF_ERR_RESERVE_MISALIGNED (-19)
#define PSF_ERR_MODE_MISMATCH (-20)
#define PSF_ERR_DATA_OFFSET (-21)
#define PSF_ERR_DATA_SIZE (-22)
#define PSF_ERR_NO_ROOM_FOR_DATA (-23)
#define PSF_ERR_OS_RESERVE_TOO_SMALL (-24)
#define PSF_ERR_RESERVE_TOO_LARGE (-25)         /* planning */
#define PSF_ERR_MODE_NEEDS_RESERVE (-26)        /* planning */
#define PSF_ERR_NONE_TAKES_NO_RESERVE (-27)     /* planning */
#define PSF_ERR_OWNERS (-28)                    /* 1.1 owner table breaks its rules: corrupt */
#define PSF_ERR_OWNERS_CAPACITY (-29)           /* psf_owners: the array is too small */

/* Every field of a super block copy (FORMAT.md §3), plus what the library
 * found. 168 bytes, no implicit padding. */
struct psf_superblock {
    uint8_t magic[16];            /* "PMEM-STACK-SUPER", no terminator */
    uint16_t version_major;
    uint16_t version_minor;
    uint32_t checksum_stored;     /* the checksum field as stored */
    uint32_t checksum_computed;   /* CRC32C with the field taken as 0 */
    uint8_t checksum_ok;          /* 1 when the two agree */
    uint8_t valid;                /* 1 only when psf_validate accepted the copy */
    uint8_t reserved0[2];         /* zero */
    uint64_t compat_features;
    uint64_t incompat_features;
    uint8_t uuid[16];             /* byte order of the text form */
    uint8_t parent_uuid[16];      /* all zero: none */
    uint64_t generation;
    uint64_t self_offset;
    uint64_t primary_offset;
    uint64_t backup_offset;
    uint64_t device_size;
    uint64_t align;
    uint32_t logical_block_size;
    uint32_t reserve_mode;        /* PSF_MODE_* */
    uint64_t reserve_offset;
    uint64_t reserve_size;
    uint64_t data_offset;
    uint64_t data_size;
};

/* One owner of a sub-range of the reserve (format 1.1). 56 bytes. */
struct psf_owner {
    uint64_t offset;              /* byte offset on the backing */
    uint64_t size;                /* bytes, a multiple of 4096 */
    uint32_t kind;                /* PSF_OWNER_* */
    uint32_t reserved0;           /* zero */
    char name[32];                /* NUL terminated, 1-31 of [A-Za-z0-9._-] */
};

/* What a layout is planned from (pmem-stack format's options). 32 bytes. */
struct psf_layout_request {
    uint64_t reserve_bytes;       /* rounded up to the alignment; ignored if reserve_auto */
    uint32_t reserve_auto;        /* 1: size the reserve by the mode's rule */
    int32_t mode;                 /* PSF_MODE_* or PSF_MODE_DEFAULT */
    uint64_t align;               /* 4096, 2097152, 1073741824; 0: 2 MiB */
    uint32_t logical_block_size;  /* 512 or 4096; 0: 512 */
    uint32_t reserved0;           /* zero */
};

/* A planned layout (FORMAT.md §6-7). 72 bytes. */
struct psf_layout {
    uint64_t device_size;
    uint64_t align;
    uint32_t logical_block_size;
    uint32_t reserve_mode;        /* PSF_MODE_* */
    uint64_t reserve_offset;
    uint64_t reserve_size;
    uint64_t data_offset;
    uint64_t data_size;
    uint64_t backup_offset;
    uint64_t below_xen_rule;      /* hypervisor: Xen's rule when reserve_size is below it (a warning); else 0 */
};

/* Copy the fields of a 4096-byte block into *out without trusting them
 * (valid = 0) and compute its checksum (checksum_ok). PSF_OK with the
 * magic, PSF_ERR_NO_MAGIC without (both fill *out), PSF_ERR_LENGTH or
 * PSF_ERR_INVALID_ARGUMENT (*out untouched). For a damaged copy's claimed
 * device_size (FORMAT.md §2, step 3). */
int psf_decode(const uint8_t *buf, size_t len, struct psf_superblock *out);

/* Validate the copy read at byte offset read_at of the backing (every rule
 * of FORMAT.md §5). PSF_OK with *out filled and valid = 1; otherwise the
 * first rule broken, *out filled as by psf_decode when len is 4096. */
int psf_validate(const uint8_t *buf, size_t len, uint64_t read_at,
                 struct psf_superblock *out);

/* The owners of the reserve of the copy read at read_at, after validating
 * it as psf_validate does: PSF_OK with *count owners in owners[0..*count],
 * ascending by offset; *count = 0 when the reserve is not split (1.0: one
 * owner, named by reserve_mode). PSF_ERR_OWNERS_CAPACITY when capacity is
 * below the count (*count says how many are needed; PSF_MAX_OWNERS always
 * suffices). Otherwise the rule the copy breaks, *count = 0. owners may be
 * NULL when capacity is 0. psf_same_volume does not compare owner tables:
 * compare the owners of both copies too. */
int psf_owners(const uint8_t *buf, size_t len, uint64_t read_at,
               struct psf_owner *owners, size_t capacity, uint32_t *count);

/* Static NUL-terminated English text for a code; never NULL. */
const char *psf_strerror(int code);

/* 1 when code means an intact copy of a newer format (must not be
 * interpreted or written), else 0. */
int psf_error_is_unsupported(int code);

/* 1 if two valid copies hold the same super block (all fields but
 * self_offset and the checksum, FORMAT.md §8), 0 if not,
 * PSF_ERR_INVALID_ARGUMENT for NULL or a copy that is not valid. */
int psf_same_volume(const struct psf_superblock *a, const struct psf_superblock *b);

/* Offset of the backup copy on a backing of device_size bytes: the last
 * 4 KiB block. PSF_ERR_DEVICE_TOO_SMALL when it is not after the primary. */
int psf_backup_offset(uint64_t device_size, uint64_t *out);

/* The layout `pmem-stack format` writes for *req on a backing of
 * device_size bytes. */
int psf_plan(uint64_t device_size, const struct psf_layout_request *req,
             struct psf_layout *out);

/* Continue a CRC32C (FORMAT.md §4); start with crc = 0. A NULL buf
 * returns crc unchanged. */
uint32_t psf_crc32c(uint32_t crc, const uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* PMEM_STACK_FORMAT_H */
