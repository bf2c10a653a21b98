"""One exception type for every user-facing failure: the CLI prints its message on one line and exits 2."""


class MertoolError(Exception):
    """A problem with the user's input (file, row, value) that the CLI reports in one line."""
