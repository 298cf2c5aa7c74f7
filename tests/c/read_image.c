/*
 * read_image: read a pmem-stack volume with the C ABI alone, as another OS or
 * hypervisor would, and print what `pmem-stack info --json` reports, one
 * `key=value` a line (tests/c_abi.rs compares the two field by field).
 *
 *   read_image IMAGE [RESERVE MODE ALIGN BLOCK_SIZE]
 *
 * With the four layout arguments (RESERVE: bytes or "auto"; MODE: default,
 * none, hypervisor or os; ALIGN, BLOCK_SIZE: bytes, 0 for the default) it
 * also prints the layout psf_plan gives for the image's size, as plan.*.
 *
 * Finding the backup: FORMAT.md §2 steps 1-3 (the last 4 KiB block; where a
 * valid primary says; where a damaged primary's claimed size puts it). The
 * step-4 scan for a grown backing is not done here.
 *
 * Exit: 0 with a current super block, 1 with none, 2 bad usage or I/O
 * error, 3 a newer format this library must not interpret.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pmem_stack_format.h"

enum state { MISSING, CORRUPT, STALE, OK };

static const char *const state_names[] = {"missing", "corrupt", "stale", "ok"};

struct copy {
    int found;                 /* a place to look was known */
    uint64_t offset;
    int rc;                    /* psf_validate's result */
    struct psf_superblock sb;
    uint8_t block[PSF_BLOCK_SIZE]; /* the copy as read, for psf_owners */
    enum state state;
};

static int read_copy(int fd, uint64_t size, uint64_t offset, struct copy *c)
{
    uint8_t *block = c->block;
    memset(c, 0, sizeof(*c));
    c->found = 1;
    c->offset = offset;
    if (offset > size || size - offset < PSF_BLOCK_SIZE) {
        c->rc = PSF_ERR_NO_MAGIC;
        return 0;
    }
    ssize_t n = pread(fd, block, PSF_BLOCK_SIZE, (off_t)offset);
    if (n != (ssize_t)PSF_BLOCK_SIZE) {
        fprintf(stderr, "read_image: cannot read 4096 bytes at %" PRIu64 ": %s\n",
                offset, n < 0 ? strerror(errno) : "short read");
        return -1;
    }
    c->rc = psf_validate(block, PSF_BLOCK_SIZE, offset, &c->sb);
    return 0;
}

static void classify(struct copy *c)
{
    if (c->rc == PSF_OK)
        c->state = OK;
    else if (c->rc == PSF_ERR_NO_MAGIC || !c->found)
        c->state = MISSING;
    else
        c->state = CORRUPT;
}

static const char *mode_name(uint32_t mode)
{
    switch (mode) {
    case PSF_MODE_NONE: return "none";
    case PSF_MODE_HYPERVISOR: return "hypervisor";
    case PSF_MODE_OS: return "os";
    default: return "?";
    }
}

static void print_uuid(const char *key, const uint8_t u[16])
{
    static const uint8_t nil[16];
    if (memcmp(u, nil, 16) == 0) {
        printf("%s=null\n", key);
        return;
    }
    printf("%s=", key);
    for (int i = 0; i < 16; i++)
        printf("%s%02x", (i == 4 || i == 6 || i == 8 || i == 10) ? "-" : "", u[i]);
    printf("\n");
}

/* FORMAT.md §2: the backup's place, steps 1-3. */
static int find_backup(int fd, uint64_t size, const struct copy *primary, struct copy *backup)
{
    uint64_t at;
    memset(backup, 0, sizeof(*backup));
    if (psf_backup_offset(size, &at) == PSF_OK) {
        if (read_copy(fd, size, at, backup) < 0)
            return -1;
        if (backup->rc != PSF_ERR_NO_MAGIC)
            return 0;
    }
    if (primary->rc == PSF_OK && (!backup->found || primary->sb.backup_offset != at))
        return read_copy(fd, size, primary->sb.backup_offset, backup);
    if (primary->rc != PSF_OK && primary->rc != PSF_ERR_NO_MAGIC && primary->sb.device_size < size
        && psf_backup_offset(primary->sb.device_size, &at) == PSF_OK) {
        struct copy claimed;
        if (read_copy(fd, size, at, &claimed) < 0)
            return -1;
        if (claimed.rc == PSF_OK)
            *backup = claimed;
    }
    return 0;
}

static int parse_u64(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end)
        return -1;
    *out = v;
    return 0;
}

static int print_plan(uint64_t size, char **arg)
{
    struct psf_layout_request req = {0};
    struct psf_layout plan;
    uint64_t align, lbs;
    if (strcmp(arg[0], "auto") == 0)
        req.reserve_auto = 1;
    else if (parse_u64(arg[0], &req.reserve_bytes) < 0)
        return -1;
    if (strcmp(arg[1], "default") == 0) req.mode = PSF_MODE_DEFAULT;
    else if (strcmp(arg[1], "none") == 0) req.mode = PSF_MODE_NONE;
    else if (strcmp(arg[1], "hypervisor") == 0) req.mode = PSF_MODE_HYPERVISOR;
    else if (strcmp(arg[1], "os") == 0) req.mode = PSF_MODE_OS;
    else return -1;
    if (parse_u64(arg[2], &align) < 0 || parse_u64(arg[3], &lbs) < 0 || lbs > UINT32_MAX)
        return -1;
    req.align = align;
    req.logical_block_size = (uint32_t)lbs;
    int rc = psf_plan(size, &req, &plan);
    if (rc != PSF_OK) {
        printf("plan.error=%s\n", psf_strerror(rc));
        return 0;
    }
    printf("plan.mode=%s\n", mode_name(plan.reserve_mode));
    printf("plan.align=%" PRIu64 "\n", plan.align);
    printf("plan.logical_block_size=%" PRIu32 "\n", plan.logical_block_size);
    printf("plan.reserve_offset=%" PRIu64 "\n", plan.reserve_offset);
    printf("plan.reserve_size=%" PRIu64 "\n", plan.reserve_size);
    printf("plan.data_offset=%" PRIu64 "\n", plan.data_offset);
    printf("plan.data_size=%" PRIu64 "\n", plan.data_size);
    printf("plan.backup_offset=%" PRIu64 "\n", plan.backup_offset);
    return 0;
}

static void print_copy(const char *name, const struct copy *c)
{
    if (c->found)
        printf("%s.offset=%" PRIu64 "\n", name, c->offset);
    else
        printf("%s.offset=null\n", name);
    printf("%s.state=%s\n", name, state_names[c->state]);
    if (c->state == CORRUPT)
        printf("%s.error=%s\n", name, psf_strerror(c->rc));
}

/* The owner table of a valid copy (format 1.1); *n = 0 when not split. */
static int owners_of(const struct copy *c, struct psf_owner *owners, uint32_t *n)
{
    return psf_owners(c->block, PSF_BLOCK_SIZE, c->offset, owners, PSF_MAX_OWNERS, n);
}

/* psf_same_volume compares the 1.0 fields; two copies also agree on owners. */
static int same_owners(const struct copy *a, const struct copy *b)
{
    struct psf_owner oa[PSF_MAX_OWNERS], ob[PSF_MAX_OWNERS];
    uint32_t na, nb;
    if (owners_of(a, oa, &na) != PSF_OK || owners_of(b, ob, &nb) != PSF_OK || na != nb)
        return 0;
    return memcmp(oa, ob, na * sizeof(oa[0])) == 0;
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case PSF_OWNER_HYPERVISOR: return "hypervisor";
    case PSF_OWNER_OS: return "os";
    case PSF_OWNER_OTHER: return "other";
    default: return "?";
    }
}

static void print_owners(const struct copy *c)
{
    struct psf_owner owners[PSF_MAX_OWNERS];
    uint32_t n = 0;
    int rc = owners_of(c, owners, &n);
    if (rc != PSF_OK) {
        printf("owners.error=%s\n", psf_strerror(rc));
        return;
    }
    printf("owners=%" PRIu32 "\n", n);
    for (uint32_t i = 0; i < n; i++) {
        printf("owner.%" PRIu32 ".name=%s\n", i, owners[i].name);
        printf("owner.%" PRIu32 ".kind=%s\n", i, kind_name(owners[i].kind));
        printf("owner.%" PRIu32 ".offset=%" PRIu64 "\n", i, owners[i].offset);
        printf("owner.%" PRIu32 ".size=%" PRIu64 "\n", i, owners[i].size);
    }
}

/* FORMAT.md §8: the current copy, and the state of the other. */
static const struct copy *choose(struct copy *primary, struct copy *backup)
{
    classify(primary);
    classify(backup);
    if (primary->state != OK && backup->state != OK)
        return NULL;
    struct copy *current = primary, *other = backup;
    if (primary->state != OK || (backup->state == OK && backup->sb.generation > primary->sb.generation)) {
        current = backup;
        other = primary;
    }
    if (other->state == OK && (psf_same_volume(&current->sb, &other->sb) != 1
                               || !same_owners(current, other)))
        other->state = STALE;
    return current;
}

static void print_volume(const struct psf_superblock *sb)
{
    printf("format_version=%u.%u\n", (unsigned)sb->version_major, (unsigned)sb->version_minor);
    print_uuid("uuid", sb->uuid);
    print_uuid("parent_uuid", sb->parent_uuid);
    printf("generation=%" PRIu64 "\n", sb->generation);
    printf("device_size=%" PRIu64 "\n", sb->device_size);
    printf("align=%" PRIu64 "\n", sb->align);
    printf("mode=%s\n", mode_name(sb->reserve_mode));
    printf("reserve_offset=%" PRIu64 "\n", sb->reserve_offset);
    printf("reserve_size=%" PRIu64 "\n", sb->reserve_size);
    printf("data_offset=%" PRIu64 "\n", sb->data_offset);
    printf("data_size=%" PRIu64 "\n", sb->data_size);
    printf("logical_block_size=%" PRIu32 "\n", sb->logical_block_size);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 6) {
        fprintf(stderr, "usage: read_image IMAGE [RESERVE MODE ALIGN BLOCK_SIZE]\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "read_image: %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    uint64_t size = (uint64_t)st.st_size;
    struct copy primary, backup;
    if (read_copy(fd, size, PSF_PRIMARY_OFFSET, &primary) < 0
        || find_backup(fd, size, &primary, &backup) < 0)
        return 2;
    close(fd);
    if (psf_error_is_unsupported(primary.rc) || psf_error_is_unsupported(backup.rc)) {
        printf("error=%s\n", psf_strerror(psf_error_is_unsupported(primary.rc) ? primary.rc : backup.rc));
        return 3;
    }
    const struct copy *current = choose(&primary, &backup);
    if (current) {
        print_volume(&current->sb);
        print_owners(current);
    }
    print_copy("primary", &primary);
    print_copy("backup", &backup);
    printf("healthy=%s\n", primary.state == OK && backup.state == OK ? "true" : "false");
    if (argc == 6 && print_plan(size, argv + 2) < 0) {
        fprintf(stderr, "read_image: bad layout arguments\n");
        return 2;
    }
    return current ? 0 : 1;
}
