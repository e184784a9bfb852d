"""Flash size and instruction count of generated models on Cortex-M (arm-none-eabi-gcc 12, -O2).

    python examples/studies/size_report.py            # the digits-shaped and P=64/L=32 sketches, both layouts, M4 and M0
    python examples/studies/size_report.py --no-count # sizes only
    python examples/studies/size_report.py --structure  # the small int4 sketch in each hash structure (--selectors, --signs)
    python examples/studies/size_report.py --sketch build/digits/digits.esk --firmware
                                              # a real sketch, plus whole PlatformIO firmware for qemu-m4 and qemu-m0

Sizes: arm-none-eabi-size (text, data, bss) of the model object, and the text of es_predict_q's call tree alone.
Instruction counts (needs the `unicorn` package: pip install unicorn): es_predict_q linked alone, run under
unicorn's Cortex-M model, every executed instruction counted from its first to its return (the bl into it and the
caller's own code are not counted), averaged over random inputs; its scores are checked against int_scores.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from edgesketch import codegen, esk  # noqa: E402
from edgesketch.sketch import int_scores, random_sketch  # noqa: E402

CPUS = {"cortex-m4": ["-mcpu=cortex-m4", "-mthumb"], "cortex-m0": ["-mcpu=cortex-m0", "-mthumb"],
        "cortex-m3": ["-mcpu=cortex-m3", "-mthumb"]}
SHAPES = {
    "digits P=48 s=8 L=16 K=6": dict(D=64, C=10, P=48, taps=8, L=16, K=6),
    "P=64 s=8 L=32 K=6": dict(D=64, C=10, P=64, taps=8, L=32, K=6),
}
_SMALL = dict(D=64, C=10, P=32, taps=8, L=16, K=4, count_bits=4)   # the bench's small sketch, in each hash structure
STRUCTURED = {"L16K4P32 int4": _SMALL, "L16K4P32 int4 window": dict(_SMALL, selectors="window"),
              "L16K4P32 int4 balanced": dict(_SMALL, signs="balanced"),
              "L16K4P32 int4 window+bal": dict(_SMALL, selectors="window", signs="balanced")}


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def build(sk, layout, cpu, work: Path, opt="-O2", extra=()):
    work.mkdir(parents=True, exist_ok=True)
    for name, text in {**codegen.generate(sk, layout), **codegen.runtime_files()}.items():
        (work / name).write_text(text)
    flags = [*CPUS[cpu], opt, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffunction-sections",
             "-fdata-sections", "-I", str(work), *extra]
    obj = work / "es_model.o"
    sh(["arm-none-eabi-gcc", *flags, "-c", str(work / "es_model.c"), "-o", str(obj)])
    text, data, bss = map(int, sh(["arm-none-eabi-size", str(obj)]).splitlines()[1].split()[:3])
    # es_predict_q alone, linked with the tables it reads (gc-sections drops es_predict, es_debug_q, ...)
    elf = work / "predict_q.elf"
    sh(["arm-none-eabi-gcc", *flags, "-nostdlib", "-nostartfiles", "-Wl,--gc-sections", "-Wl,-e,es_predict_q",
        "-Wl,-Ttext=0x1000", str(work / "es_model.c"), "-lc", "-lgcc", "-o", str(elf)])
    code = sum(int(l.split()[2], 16) for l in sh(["arm-none-eabi-objdump", "-h", str(elf)]).splitlines()
               if len(l.split()) > 2 and l.split()[1] == ".text")
    return dict(text=text, data=data, bss=bss, predict_code=code), elf


def count_instructions(elf: Path, cpu: str, sk, rows) -> tuple[float, int, int]:
    """Mean / min / max instructions of es_predict_q over rows, and check its scores."""
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_HOOK_CODE, UC_MODE_MCLASS, UC_MODE_THUMB, Uc
    from unicorn import arm_const as A

    model = {"cortex-m4": A.UC_CPU_ARM_CORTEX_M4, "cortex-m0": A.UC_CPU_ARM_CORTEX_M0,
             "cortex-m3": A.UC_CPU_ARM_CORTEX_M3}[cpu]
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(model)
    uc.mem_map(0, 0x100000)          # code, rodata, data, bss
    uc.mem_map(0x20000000, 0x10000)  # stack, input and output
    with open(elf, "rb") as f:
        e = ELFFile(f)
        for seg in e.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                uc.mem_write(seg["p_paddr"], seg.data())
        entry = e.get_section_by_name(".symtab").get_symbol_by_name("es_predict_q")[0]["st_value"] & ~1
    X, S, RET = 0x2000F000, 0x2000F800, 0x000FFFF0
    n = [0]
    uc.hook_add(UC_HOOK_CODE, lambda *a: n.__setitem__(0, n[0] + 1))
    counts, want = [], int_scores(sk, rows)
    for i, x in enumerate(rows):
        uc.mem_write(X, np.asarray(x, np.int8).tobytes())
        uc.reg_write(A.UC_ARM_REG_SP, 0x2000E000)
        uc.reg_write(A.UC_ARM_REG_R0, X)
        uc.reg_write(A.UC_ARM_REG_R1, S)
        uc.reg_write(A.UC_ARM_REG_LR, RET | 1)
        n[0] = 0
        uc.emu_start(entry | 1, RET)
        got = np.frombuffer(bytes(uc.mem_read(S, 4 * sk.n_outputs)), "<i4")
        if not np.array_equal(got, want[i]):
            raise AssertionError(f"{cpu}: emulated es_predict_q differs from int_scores on row {i}: {got} != {want[i]}")
        counts.append(n[0])
    return float(np.mean(counts)), min(counts), max(counts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-count", action="store_true", help="sizes only (no unicorn)")
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--cpus", default="cortex-m4,cortex-m0")
    ap.add_argument("--extra", default="", help="extra compiler flags, e.g. -DES_NO_DSP")
    ap.add_argument("--opt", default="-O2", help="optimisation flag (PlatformIO builds with -Os)")
    ap.add_argument("--sketch", help="a .esk file to report instead of the random sketches of the shapes above")
    ap.add_argument("--structure", action="store_true",
                    help="the int4 L16 K4 P32 sketch with random / window selectors and free / balanced signs instead")
    ap.add_argument("--firmware", action="store_true",
                    help="also export and build the whole firmware (PlatformIO, offline) for qemu-m4 and qemu-m0")
    args = ap.parse_args(argv)
    shapes = STRUCTURED if args.structure else SHAPES
    sketches = ({Path(args.sketch).name: esk.load(args.sketch)} if args.sketch else
                {name: random_sketch(**shape, count_dtype=np.int8, seed=1) for name, shape in shapes.items()})
    count = not args.no_count
    if count:
        try:
            import unicorn  # noqa: F401
        except ImportError:
            print("unicorn is not installed: sizes only (pip install unicorn for instruction counts)")
            count = False
    print(f"{'sketch':<26} {'layout':<9} {'cpu':<10} {'text':>6} {'data':>5} {'bss':>4} {'predict':>8} {'instr':>14}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, sk in sketches.items():
            rows = rng.integers(-128, 128, (args.rows, sk.n_inputs)).astype(np.int8)
            for layout in codegen.LAYOUTS:
                for cpu in args.cpus.split(","):
                    size, elf = build(sk, layout, cpu, Path(tmp) / f"{layout}_{cpu}", opt=args.opt,
                                      extra=args.extra.split())
                    ins = ""
                    if count:
                        mean, lo, hi = count_instructions(elf, cpu, sk, rows)
                        ins = f"{mean:,.0f} ({lo}-{hi})"
                    print(f"{name:<26} {layout:<9} {cpu:<10} {size['text']:>6} {size['data']:>5} {size['bss']:>4} "
                          f"{size['predict_code']:>8} {ins:>14}")
        if args.firmware:
            firmware_sizes(sketches, Path(tmp))


def firmware_sizes(sketches, tmp: Path):
    """arm-none-eabi-size of the whole firmware ELF (PlatformIO build, as `edgesketch export` writes it)."""
    from edgesketch import boards, build, export
    print(f"\nwhole firmware (pio run, offline): {'sketch':<22} {'layout':<9} {'board':<8} {'text':>7} {'data':>5} {'bss':>6}")
    for name, sk in sketches.items():
        for board in ("qemu-m4", "qemu-m0"):
            for layout in codegen.LAYOUTS:
                proj, _ = export.export(sk, boards.load(board), tmp / f"fw-{board}-{layout}", layout)
                size = build.elf_size(build.run_pio(proj, build.default_core_dir()))
                print(f"{'':<34} {name:<22} {layout:<9} {board:<8} {size.text:>7} {size.data:>5} {size.bss:>6}")


if __name__ == "__main__":
    main()
