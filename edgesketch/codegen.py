"""Codegen: Jinja2 only. Render codegen_templates/ with values chosen in Python; templates hold loops and ifs."""
from __future__ import annotations

import jinja2

from . import __version__
from .paths import templates_dir

_env = None


def environment() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
                                  keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return _env


def render(template: str, **ctx) -> str:
    """Render one template (a path under codegen_templates/) with the edgesketch version in scope."""
    return environment().get_template(template).render(version=__version__, **ctx)
