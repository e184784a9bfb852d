"""The generated C of the bench's sketches on the device, before and after a change to the C generator: instructions per
inference and flash on qemu-m4, qemu-m0 and qemu-uno, both layouts, and the generated C's lines split into data and
code. Every run is checked bit for bit against THE integer reference (edgesketch.sketch.int_scores).

    python examples/studies/c_runtime_cost.py --make                 # distil the bench's sketches (seed 0) into build/c-cost/
    python examples/studies/c_runtime_cost.py --out build/c-cost/after.json
    git worktree add /tmp/es-before <commit>                          # the generator to compare with
    PYTHONPATH=/tmp/es-before python examples/studies/c_runtime_cost.py --out build/c-cost/before.json
    python examples/studies/c_runtime_cost.py --compare build/c-cost/before.json build/c-cost/after.json
    python examples/studies/c_runtime_cost.py --render /tmp/rendered   # the generated files (outside the checkout:
                                                                       # duplicates --repo /tmp/rendered)

The sketches are the bench's (edgesketch/bench/run.py SKETCHES, distilled from its teachers with seed 0): the digits
wide-MLP teacher's six flat sketches, and the windowed defaults of the mnist1d and digits CNN teachers. Sizes are the
firmware's text+data minus the same firmware around an empty model (edgesketch.bench.device.run); instructions are the
firmware's counter around es_predict_q (exact under QEMU -icount, the QEMU plugin on qemu-uno).

Lines of generated C (the model's .c and .h files only; the hand-written runtime the generator ships beside them is
counted once, apart): a line is *data* when it belongs to a const array's or a const descriptor's initialiser (from
the `const ... = {` line to its `};`); *comments and blank* lines are counted apart; every other line (declarations,
macros, functions, statements) is *code*.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "c-cost"
BOARDS = ("qemu-m4", "qemu-m0", "qemu-uno")
# (name, teacher, data, distill.Config fields or "family", layouts): the bench's sketches (bench/run.py SKETCHES)
SKETCHES = [
    ("digits L16K6 int8", "digits-mlp", "sklearn:digits", dict(tables=16, bits=6, hyperplanes=48, taps=8), ("unrolled", "compact")),
    ("digits L16K6 int4", "digits-mlp", "sklearn:digits", dict(tables=16, bits=6, hyperplanes=48, taps=8, count_bits=4),
     ("unrolled", "compact")),
    ("digits L16K4 int4 window balanced", "digits-mlp", "sklearn:digits",
     dict(tables=16, bits=4, hyperplanes=32, taps=8, count_bits=4, selectors="window", signs="balanced"), ("unrolled", "compact")),
    ("digits 20KB L32K6 P96 s16", "digits-mlp", "sklearn:digits", dict(tables=32, bits=6, hyperplanes=96, taps=16), ("unrolled",)),
    ("digits representer L32K6", "digits-mlp", "sklearn:digits", dict(mode="representer", tables=32, bits=6), ("unrolled",)),
    ("digits L16K6 codebook 256", "digits-mlp", "sklearn:digits", dict(tables=16, bits=6, hyperplanes=48, taps=8, codebook=256),
     ("unrolled", "compact")),
    ("mnist1d windowed default", "mnist1d-cnn", "mnist1d", "family", ("unrolled", "compact")),
    ("digits CNN windowed default", "digits-cnn", "sklearn:digits", "family", ("unrolled", "compact")),
]
SAMPLES = 40


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def make(folder: Path) -> None:
    """Distil every sketch of SKETCHES (seed 0) from the bench's teachers into folder/<slug>.esk (kept if there)."""
    from edgesketch import data, esk, teacher
    from edgesketch.bench import teachers
    from edgesketch.distillation import Config, distill, family_defaults
    folder.mkdir(parents=True, exist_ok=True)
    for name, tname, source, cfg, _ in SKETCHES:
        path = folder / f"{_slug(name)}.esk"
        if path.exists():
            continue
        t = teacher.load(teachers.ensure(tname, str(ROOT / "build" / "teachers")))
        ds = data.load(source)
        kw = dict(family_defaults(t.input_shape)) if cfg == "family" else dict(cfg)
        t0 = time.time()
        sk = distill(t, ds.x_train.reshape(len(ds.x_train), -1), Config(**kw),
                     {"source": source, "class_names": [str(i) for i in range(t.n_outputs)], "input_shape": list(t.input_shape)})
        esk.save(sk, path, force=True)
        print(f"{name}: distilled in {time.time() - t0:.0f} s -> {path}", flush=True)


def line_kinds(text: str) -> dict:
    """Lines of C source split into data, code and comments/blank (the rule of the module docstring)."""
    out = {"data": 0, "code": 0, "comment": 0}
    in_comment = in_array = False
    for raw in text.splitlines():
        s = raw.strip()
        if in_comment or not s or s.startswith(("/*", "*", "//")):
            out["comment"] += 1
            if s.startswith("/*") and "*/" not in s:
                in_comment = True
            elif in_comment and "*/" in s:
                in_comment = False
            continue
        if in_array:
            out["data"] += 1
            if s.startswith("}"):
                in_array = False
            continue
        if re.match(r"^(static\s+)?const\b[^=]*=\s*\{", s):
            out["data"] += 1
            in_array = not s.rstrip().endswith("};")
            continue
        out["code"] += 1
    return out


def measure(folder: Path, boards, samples: int) -> dict:
    from edgesketch import codegen, data, esk
    from edgesketch.bench import device
    from edgesketch.sketch import int_scores, quantize_inputs
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, tname, source, cfg, layouts in SKETCHES:
            sk = esk.load(folder / f"{_slug(name)}.esk")
            ds = data.load(source)
            xq = quantize_inputs(sk, ds.x_test[:samples])
            ref = int_scores(sk, xq)
            for layout in layouts:
                files = codegen.generate(sk, layout)
                runtime = getattr(codegen, "runtime_files", lambda: {})()
                lines = {k: line_kinds(v) for k, v in files.items() if k.endswith((".c", ".h"))}
                row = {"sketch": name, "layout": layout, "lines": lines, "boards": {},
                       "runtime_lines": {k: line_kinds(v) for k, v in runtime.items()}}
                for b in boards:
                    try:
                        r = device.run(b, files, xq, sk.n_inputs, sk.n_outputs, Path(work), _slug(name) + "-" + layout)
                    except device.DoesNotFit:
                        row["boards"][b] = None
                        print(f"{name} {layout} {b}: does not fit", flush=True)
                        continue
                    ok = bool(np.array_equal(r.scores, ref))
                    if not ok:
                        raise SystemExit(f"{name} {layout} on {b}: the device differs from int_scores")
                    row["boards"][b] = {"instructions": r.instructions, "flash": r.flash, "ram": r.ram, "stack": r.stack,
                                        "fw_flash": r.fw_flash}
                    print(f"{name} {layout} {b}: {r.instructions:,} instructions, {r.flash:,} B flash, bit-exact", flush=True)
                rows.append(row)
    import edgesketch
    return {"edgesketch": edgesketch.__version__, "generator": str(Path(edgesketch.__file__).parent), "rows": rows}


def relines(folder: Path, path: Path) -> None:
    """Count the lines again (this generator, the rule above) into the measurements of `path`, in place."""
    from edgesketch import codegen, esk
    res = json.loads(path.read_text())
    runtime = getattr(codegen, "runtime_files", lambda: {})()
    for row in res["rows"]:
        name = row["sketch"]
        sk = esk.load(folder / f"{_slug(name)}.esk")
        files = codegen.generate(sk, row["layout"])
        row["lines"] = {k: line_kinds(v) for k, v in files.items() if k.endswith((".c", ".h"))}
        row["runtime_lines"] = {k: line_kinds(v) for k, v in runtime.items()}
    path.write_text(json.dumps(res, indent=1))


def render(folder: Path, out: Path) -> None:
    """Write each sketch's generated es_model.c and es_model.h (this generator) into out/<sketch>-<layout>/: to read
    them, or to run `duplicates --repo OUT` over them (it does not read the .j2 templates themselves)."""
    from edgesketch import codegen, esk
    for name, _, _, _, layouts in SKETCHES:
        sk = esk.load(folder / f"{_slug(name)}.esk")
        for layout in layouts:
            d = out / f"{_slug(name)}-{layout}"
            d.mkdir(parents=True, exist_ok=True)
            for k, v in codegen.generate(sk, layout).items():
                if k.startswith("es_model"):
                    (d / k).write_text(v)
    print(f"wrote {out}")


def compare(a: dict, b: dict, boards) -> str:
    key = lambda r: (r["sketch"], r["layout"])
    before = {key(r): r for r in a["rows"]}
    head = "| sketch | layout | " + " | ".join(f"{x} instr | {x} flash" for x in boards) + " |"
    lines = [head, "|---|---|" + "---|---|" * len(boards)]
    worst = 0.0
    for r in b["rows"]:
        o = before.get(key(r))
        cells = []
        for x in boards:
            n, m = r["boards"].get(x), (o or {}).get("boards", {}).get(x)
            if n is None or m is None:
                cells += ["n/a", "n/a"]
                continue
            for f in ("instructions", "flash"):
                d = (n[f] - m[f]) / m[f] if m[f] else 0.0
                worst = max(worst, d)
                cells.append(f"{m[f]:,} -> {n[f]:,} ({100 * d:+.1f}%)")
        lines.append(f"| {r['sketch']} | {r['layout']} | " + " | ".join(cells) + " |")
    lines.append(f"\nlargest increase: {100 * worst:+.1f}%")
    lines.append("\nGenerated C (es_model.c and es_model.h), lines:\n\n| sketch | layout | data | code | comment/blank |\n|---|---|---|---|---|")
    for r in b["rows"]:
        o = before.get(key(r))
        tot = lambda row: {k: sum(v[k] for v in row["lines"].values()) for k in ("data", "code", "comment")}
        n, m = tot(r), tot(o) if o else None
        lines.append(f"| {r['sketch']} | {r['layout']} | " + " | ".join(
            (f"{m[k]:,} -> {n[k]:,}" if m else f"{n[k]:,}") for k in ("data", "code", "comment")) + " |")
    rt = b["rows"][0].get("runtime_lines") or {}
    if rt:
        lines.append("\nThe runtime (hand-written, shared by every model), lines:\n\n| file | data | code | comment/blank |\n|---|---|---|---|")
        lines += [f"| {k} | {v['data']} | {v['code']} | {v['comment']} |" for k, v in sorted(rt.items())]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make", action="store_true", help="distil the sketches into --sketches first")
    ap.add_argument("--sketches", default=str(OUT / "sketches"))
    ap.add_argument("--out", help="write the measurements here (JSON)")
    ap.add_argument("--boards", nargs="+", default=list(BOARDS))
    ap.add_argument("--samples", type=int, default=SAMPLES)
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--relines", metavar="JSON", help="count the generated lines again into JSON (this generator)")
    ap.add_argument("--render", metavar="DIR", help="write every sketch's generated model files into DIR (this "
                    "generator; for example to run duplicates over them)")
    a = ap.parse_args(argv)
    if a.render:
        render(Path(a.sketches), Path(a.render))
        return 0
    if a.relines:
        relines(Path(a.sketches), Path(a.relines))
        return 0
    if a.compare:
        print(compare(*(json.loads(Path(p).read_text()) for p in a.compare), a.boards))
        return 0
    if a.make:
        make(Path(a.sketches))
    if a.out:
        res = measure(Path(a.sketches), a.boards, a.samples)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
