"""The one exception type that the CLI reports as a one-line error instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad flag, missing folder, bad data); message is one line."""
