"""Errors the CLI turns into one line on stderr.

`BadInput` is the user's to fix (exit 2); `FeatgraphError` is anything else we
anticipated (exit 1). Both carry a message that names the problem and the fix.
"""

from __future__ import annotations


class FeatgraphError(Exception):
    """A failure we can explain in one line (exit status 1)."""

    exit_code = 1


class BadInput(FeatgraphError):
    """Something the user passed is wrong (exit status 2)."""

    exit_code = 2
