/* A QEMU TCG plugin that gives an emulated AVR an exact instruction counter (QEMU 7.2's AVR has none that works:
 * under -icount its Timer1 stops QEMU with "Bad icount read", and without -icount the timers follow host time).
 *
 * The plugin counts every guest instruction it runs (an inline add before each one). The firmware asks for the count
 * with one marker instruction, MOV r1, r1 (gcc never emits it: r1 is avr-gcc's zero register), placed right before it
 * reads a volatile struct { uint8_t magic[8]; uint32_t count; } (firmware/bsp/avr.h): just before the marker runs,
 * the plugin writes the number of instructions run so far (mod 2^32, little-endian) into count. QEMU gives plugins
 * no instruction bytes on AVR, so the plugin finds the markers in the firmware's ELF (argument elf=PATH, the file
 * QEMU runs): every instruction QEMU translates at an address holding 0x2C11 is one. To find the struct in QEMU's
 * memory the firmware writes the 8 magic bytes at start-up with immediate stores (so they exist nowhere else as a
 * run); the first marker scans QEMU's read-write mappings (/proc/self/maps) for them, once, and needs exactly one
 * match. A count differs from the chip's cycle count: it is instructions, like minstret under -icount on RV32.
 *
 * Build (edgesketch.emulate does it): gcc -O2 -shared -fPIC es_icount_plugin.c -o es_icount_plugin.so
 * Use: qemu-system-avr -M uno -bios fw.elf -plugin ./es_icount_plugin.so,elf=fw.elf ...
 * The few declarations of QEMU's plugin API (qemu-plugin.h, API version 1, QEMU 7.2) it uses are written out below,
 * as Debian ships no qemu-plugin.h. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- the slice of qemu-plugin.h (API version 1) used here */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op, void *ptr,
                                                uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_outs(const char *string);
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;
QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv);

/* ---- the counter */
#define FLASH_MAX (256u * 1024u)                     /* program memory of the largest AVR */
static uint8_t flash[FLASH_MAX];                     /* the firmware's program image, from its ELF */
static uint32_t flash_len;
static const uint8_t magic[8] = {0x65, 0x73, 0x2d, 0x69, 0x63, 0x6e, 0x74, 0x21};   /* "es-icnt!" */
static uint64_t insns;                               /* instructions run so far (one vCPU) */
static uint8_t *count_at;                            /* the guest's count field in QEMU's memory */
static bool failed;

static void fail(const char *msg)
{
    char line[200];
    failed = true;
    snprintf(line, sizeof line, "es_icount_plugin: %s; the firmware reads no instruction counts\n", msg);
    qemu_plugin_outs(line);
}

/* The one place in a read-write mapping of this process that holds the 8 magic bytes. */
static uint8_t *find_magic(void)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    uint8_t *found = NULL;
    int n = 0;
    if (maps == NULL)
        return NULL;
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' || perms[1] != 'w')
            continue;
        for (uint8_t *p = (uint8_t *)lo, *end = (uint8_t *)hi; p < end;) {
            uint8_t *q = memmem(p, (size_t)(end - p), magic, sizeof magic);
            if (q == NULL)
                break;
            found = q;
            n++;
            p = q + 1;
        }
    }
    fclose(maps);
    return n == 1 ? found : NULL;
}

static void on_marker(unsigned int vcpu_index, void *userdata)
{
    uint32_t v = (uint32_t)insns;
    (void)vcpu_index;
    (void)userdata;
    if (count_at == NULL) {
        if (failed)
            return;
        uint8_t *m = find_magic();
        if (m == NULL) {
            fail("the magic bytes are not in QEMU's memory exactly once");
            return;
        }
        count_at = m + sizeof magic;
    }
    memcpy(count_at, &v, sizeof v);                 /* the host is little-endian, like the AVR */
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);   /* a byte address in program memory */
        if (pc + 1 < flash_len && flash[pc] == 0x11 && flash[pc + 1] == 0x2c)   /* MOV r1, r1 */
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &insns, 1);
    }
}

static uint32_t le(const uint8_t *p, int n)
{
    uint32_t v = 0;
    while (n--)
        v = v << 8 | p[n];
    return v;
}

/* The program image: every PT_LOAD segment of a 32-bit little-endian ELF loaded below AVR's data space (0x800000) at
 * its physical address, as QEMU's -bios loader places it. 0 on success. */
static int load_elf(const char *path)
{
    static uint8_t file[4u * FLASH_MAX];
    FILE *f = fopen(path, "rb");
    size_t n;
    uint32_t ph, i, phnum, phsize;
    if (f == NULL)
        return -1;
    n = fread(file, 1, sizeof file, f);
    fclose(f);
    if (n < 52 || memcmp(file, "\177ELF", 4) != 0 || file[4] != 1 || file[5] != 1)
        return -1;
    ph = le(file + 28, 4);
    phsize = le(file + 42, 2);
    phnum = le(file + 44, 2);
    for (i = 0; i < phnum; i++) {
        const uint8_t *h = file + ph + i * phsize;
        uint32_t off = le(h + 4, 4), paddr = le(h + 12, 4), filesz = le(h + 16, 4);
        if ((size_t)(ph + (i + 1) * phsize) > n || le(h, 4) != 1 || paddr >= 0x800000u)
            continue;
        if ((size_t)off + filesz > n || paddr + filesz > FLASH_MAX)
            return -1;
        memcpy(flash + paddr, file + off, filesz);
        if (paddr + filesz > flash_len)
            flash_len = paddr + filesz;
    }
    return flash_len > 0 ? 0 : -1;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    if (argc != 1 || strncmp(argv[0], "elf=", 4) != 0) {
        qemu_plugin_outs("es_icount_plugin: takes one argument, elf=PATH (the firmware QEMU runs)\n");
        return -1;
    }
    if (load_elf(argv[0] + 4) != 0) {
        qemu_plugin_outs("es_icount_plugin: cannot read the program image from the ELF given as elf=\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    return 0;
}
