"""The one exception type a user sees as a clean one-line error."""


class FacsError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    The message names the offending file (or setting) and what is wrong with it.
    """
