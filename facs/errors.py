"""The one exception type a user sees as a clean one-line error, and the one place that turns
any failure into that line (`explain`)."""


class FacsError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    The message names the offending file (or setting) and what is wrong with it.
    """


def explain(exc: BaseException) -> tuple[str, int]:
    """The one line a failure prints, and the exit status: 2 for bad input or a bad
    environment (a file that is missing, unreadable, corrupt, or cannot be written), 1 for a
    bug, which says what to report."""
    if isinstance(exc, FacsError):
        return f"error: {exc}", 2
    if isinstance(exc, OSError):
        where = exc.filename or "a file"
        what = exc.strerror or str(exc)
        if exc.filename2:
            where = f"{exc.filename} -> {exc.filename2}"
        return f"error: {where}: {what}", 2
    kind = type(exc).__module__.split(".")[0]
    if kind in ("lmdb", "zipfile") or isinstance(exc, (EOFError, UnicodeDecodeError)):
        return f"error: a corrupt or unreadable file ({type(exc).__name__}: {exc})", 2
    if isinstance(exc, MemoryError):
        return "error: out of memory", 2
    return (
        f"internal error: {type(exc).__name__}: {exc} (a bug in facs: please report it with "
        "the command and the output of the same command with --debug)",
        1,
    )
