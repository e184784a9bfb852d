"""The layers keep to their jobs (issue 33): read from the source's imports (ast), so a shortcut across layers fails
here before it spreads. TensorFlow only in the teacher and distillation (and the bench), Jinja2 only in codegen,
pyserial only in the harness; nothing below the API imports it; only the CLI speaks in flags and nothing imports it;
the core never imports the bench."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "edgesketch"


def modules() -> dict[str, Path]:
    return {p.relative_to(PKG).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__"): p
            for p in sorted(PKG.rglob("*.py"))}


def imports(name: str, path: Path) -> set[str]:
    """Every module this one imports, anywhere in it (function bodies too): edgesketch modules by their name inside
    the package ("sketch", "bench.device"), others by their top-level name ("numpy")."""
    pkg = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name.split(".")[0] if not a.name.startswith("edgesketch.") else a.name[11:] for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg[:len(pkg) - n.level + 1]
                if n.module:
                    out.add(".".join(base + [n.module]))
                else:
                    out |= {".".join(base + [a.name]) for a in n.names}
            elif n.module and n.module.startswith("edgesketch"):
                out.add(n.module[11:] or "__init__")
            elif n.module:
                out.add(n.module.split(".")[0])
    return {o.removeprefix(".") for o in out}


GRAPH = {m: imports(m, p) for m, p in modules().items()}
CORE = [m for m in GRAPH if not m.startswith("bench") and m not in ("cli", "__main__")]


def who_imports(target: str) -> list[str]:
    return sorted(m for m, deps in GRAPH.items() if target in deps or any(d.startswith(target + ".") for d in deps))


@pytest.mark.parametrize("lib, allowed", [
    ("tensorflow", {"teacher", "distillation"}),
    ("keras", {"teacher", "distillation"}),
    ("jinja2", {"codegen"}),
    ("serial", {"harness"}),
    ("optuna", {"tuning"}),
])
def test_third_party_libraries_stay_in_their_layer(lib, allowed):
    assert set(who_imports(lib)) - {m for m in GRAPH if m.startswith("bench")} <= allowed


def test_only_the_command_line_speaks_in_flags_and_nothing_imports_it():
    assert who_imports("cli") == ["__main__"]
    for m, p in modules().items():
        if m in ("cli", "__main__") or m.startswith("bench"):
            continue
        text = p.read_text()
        for flag in ("--tables", "--bits", "--window", "--board", "--layout", "--hop", "--max-loss", "--class-names"):
            assert f'"{flag}' not in text and f"'{flag}" not in text and f" {flag} " not in text, (m, flag)


def test_the_core_does_not_import_the_bench_or_the_api():
    below_api = [m for m in CORE if m not in ("api", "__init__", "tuning")]
    for m in CORE:
        assert not any(d.startswith("bench") for d in GRAPH[m]), m
    for m in below_api:
        assert "api" not in GRAPH[m], m


def test_the_numpy_layers_import_no_framework():
    for m in ("sketch", "quantize", "cost", "protocol", "errors", "evaluate"):
        deps = GRAPH[m]
        assert not deps & {"tensorflow", "keras", "jinja2", "serial", "optuna", "torch"}, (m, deps)
        assert deps & {"api", "cli", "teacher", "codegen", "harness"} == set(), (m, deps)


def test_no_module_pretends_to_be_a_function():
    for m, p in modules().items():
        assert "__class__ = " not in p.read_text(), m
