"""Errors and warnings featgraph raises; the CLI turns them into one line on stderr.

`BadInput` is the user's to fix (exit 2); `FeatgraphError` is anything else we
anticipated (exit 1). Both carry a message that names the problem and the fix.
`BadValue` is a `BadInput` about one parameter: the library names the parameter
as the Python API spells it (`top_k`), the CLI as its flag (`--top-k`).
"""

from __future__ import annotations


class FeatgraphError(Exception):
    """A failure we can explain in one line (exit status 1)."""

    exit_code = 1


class BadInput(FeatgraphError):
    """Something the user passed is wrong (exit status 2)."""

    exit_code = 2


class BadValue(BadInput):
    """Parameter `param` has an invalid `value`; `requirement` says what it must be."""

    def __init__(self, param: str, value: object, requirement: str, value_first: bool = False):
        self.param, self.value, self.requirement, self.value_first = param, value, requirement, value_first
        super().__init__(self.message(param))

    def message(self, name: str) -> str:
        """The message with the parameter called `name` (`top_k` in Python, `--top-k` on the command line)."""
        if self.value_first:
            return f"{name} {self.value} {self.requirement}"
        return f"{name} {self.requirement}, got {self.value!r}"

    @property
    def flag(self) -> str:
        """The parameter as a command-line flag (`top_k` -> `--top-k`)."""
        return "--" + self.param.replace("_", "-")


class MissingValue(BadValue):
    """Required parameter `param` was not given; `requirement` says what it takes."""

    def __init__(self, param: str, requirement: str):
        super().__init__(param, None, requirement)

    def message(self, name: str) -> str:
        return f"{name} is required ({self.requirement})"


class FeatgraphWarning(UserWarning):
    """Something worked only partly (labels offline, cosines skipped); the CLI shows it as one line."""
