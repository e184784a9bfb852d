"""The one exception type for user mistakes: the CLI prints its message on one line and exits non-zero."""


class UserError(Exception):
    """A problem the user can fix. The message names the problem and the fix, on one line."""

    exit_code = 2
