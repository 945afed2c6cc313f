"""The one domain exception: a user mistake or bad input, reported as one line."""


class EdgesepError(Exception):
    """A problem the user can fix (bad file, bad option, incomplete run); the CLI prints it
    as a one-line error and exits non-zero, never with a traceback."""
