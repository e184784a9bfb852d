"""Typed errors. Core code raises them naming the argument at fault (`tables`, `force`); the CLI maps an argument to
its flag and prints the message on one line with a non-zero exit."""


class UserError(Exception):
    """A problem the user can fix. The message names the problem and the fix, on one line. `argument`: the name of
    the API argument at fault, if one is (the CLI shows it as its flag)."""

    exit_code = 2

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class ConfigError(UserError, ValueError):
    """An argument of the library API is out of range or inconsistent with another (`argument` names it)."""


class DataError(UserError, ValueError):
    """Input data (arrays, .npz files, a teacher) that cannot be used as given."""


class MissingExtra(UserError):
    """An optional dependency is not installed; the message names the extra that installs it, on one line."""


# top-level module -> the extra of edgesketch that installs it (pyproject.toml [project.optional-dependencies])
EXTRA_OF = {"tensorflow": "train", "keras": "train", "absl": "train", "sklearn": "train", "mnist1d": "train",
            "ai_edge_litert": "bench", "tflite_micro": "bench", "emlearn": "bench", "matplotlib": "bench",
            "optuna": "tune", "ray": "tune"}


def missing_extra(module: str, what: str, extra: str | None = None) -> MissingExtra | None:
    """The error for `what` (e.g. "edgesketch distill") failing to import `module`: install `extra` (default: the one
    that provides the module), or None for a module no extra provides (a real bug, not a lean install)."""
    root = (module or "").split(".")[0]
    extra = extra or EXTRA_OF.get(root)
    if extra is None:
        return None
    return MissingExtra(f"{what} needs the Python module {root}, which is not installed: pip install 'edgesketch[{extra}]'")


def require(what: str, *modules: str, extra: str | None = None) -> None:
    """Raise MissingExtra unless every module can be imported (looked up with find_spec: nothing is imported); the
    message names `extra`, or the extra that provides the first missing module."""
    from importlib.util import find_spec
    for m in modules:
        try:
            found = find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_extra(m, what, extra) or UserError(f"{what} needs the Python module {m}, which is not installed")
