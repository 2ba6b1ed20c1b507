"""The one exception type that the CLI reports as a one-line error instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad flag, missing folder, bad data); message is one line."""


def one_line(err: BaseException) -> str:
    """An exception's message folded onto one line (its type name if it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


class UsageError(UserError):
    """A bad flag or flag combination argparse cannot see: exit code 2, as argparse's own."""
