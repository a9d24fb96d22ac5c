"""How long-running library calls report progress, without printing anything themselves.

A caller passes a `ProgressFactory`: called once per task with a description and
its total (None when unknown), it returns a function to call with each amount of
work done. The CLI passes one that draws rich progress bars; the default does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

Advance = Callable[[int], None]
ProgressFactory = Callable[[str, "int | None"], Advance]


def no_progress(description: str, total: int | None) -> Advance:
    return lambda n: None
