"""The one exception type for errors a user can cause and fix."""

from __future__ import annotations


class SRForensicsError(Exception):
    """A user-fixable error: bad file, bad YAML, unknown name, missing weights.

    The message says what went wrong and what to do. The CLI prints it on one
    line and exits with status 2; internal bugs raise other exceptions and keep
    their traceback.
    """
