"""Where the non-Python parts live: next to the package in a checkout, or inside it in a wheel."""
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for cand in (_PKG / "_data" / name, _PKG.parent / name):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"edgesketch resource folder {name!r} is missing from the installation")


def boards_dir() -> Path: return _find("boards")
def firmware_dir() -> Path: return _find("firmware")
def templates_dir() -> Path: return _find("codegen_templates")
