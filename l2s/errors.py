"""User-facing errors.

`UserError` is what bad input raises anywhere in l2s: the CLI prints its message on one line and exits
with code 2 (never a traceback). Messages say what was wrong and how to fix it.
"""


class UserError(Exception):
    """Bad input from the user: printed as one line by the CLI, exit code 2."""

    exit_code = 2
