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
