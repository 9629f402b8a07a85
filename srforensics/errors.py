"""The one exception type for errors a user can cause and fix."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


class SRForensicsError(Exception):
    """A user-fixable error: bad file, bad YAML, unknown name, missing weights.

    The message says what went wrong and what to do. The CLI prints it on one
    line and exits with status 2; internal bugs raise other exceptions and keep
    their traceback.
    """


def check_fields(
    data: Iterable[str],
    allowed: Iterable[str],
    where: str,
    *,
    error: type[SRForensicsError] = SRForensicsError,
    takes: str | None = None,
) -> None:
    """Refuse the keys of ``data`` (a YAML mapping's, say) that are not ``allowed``: one
    ``error`` naming each, with the nearest allowed name, and what ``where`` takes
    (``takes``; default: ``allowed: ...``)."""
    allowed = sorted(allowed)
    unknown = sorted(set(data) - set(allowed))
    if not unknown:
        return
    named = []
    for name in unknown:
        close = get_close_matches(str(name), allowed, n=1)
        named.append(f"{name} (did you mean {close[0]}?)" if close else str(name))
    takes = takes or f"allowed: {', '.join(allowed) or 'none'}"
    raise error(f"{where}: unknown field(s) {', '.join(named)}; {takes}")
