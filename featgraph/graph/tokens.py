"""Cypher text as tokens, for checks that strings, comments and quoted names must not fool.

The lexer follows LadybugDB's grammar (src/antlr4/Cypher.g4 of LadybugDB/ladybug, the Kùzu fork) rule by rule
where a difference could hide a word from the caller:

- `/* … */`: `'/*' ( ~[*] | '*' ~[/] )* '*/'` — a `*` inside always takes the next character with it unless
  that is `/`, so stars pair up and `/* **/ x */` is one comment (it does not end at `**/`).
- `// …`: `'//' ~[\n\r]* CR? (LF | EOF)` — a carriage return not followed by a newline ends no comment (the
  engine then reads `/`, `/` and fails); such a comment is refused rather than guessed at.
- '…' and "…" strings: a backslash takes only \\ \' \" b f n r t, xHH, uHHHH or uHHHHHHHH (either case);
  any other escape makes the engine read the quote as an unknown character, so it is refused.
- `…` names: a doubled backtick is one backtick; no backslash escapes.
- parameters $name, $`name` and $0.

Keywords are words compared case-insensitively; whether a word is a keyword or a name is left to the caller,
which errs on the side of refusing.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from featgraph.errors import BadInput

_OPEN, _CLOSE = "([{", ")]}"
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = frozenset("\\'\"bBfFnNrRtT")


@dataclass(frozen=True)
class Token:
    kind: str  # word, name (backticked), string, param, number, punct
    text: str  # a name's or parameter's text unescaped, a string's with its quotes
    start: int
    end: int

    def word(self) -> str:
        """The keyword this token may be (lower case), or '' for anything but a bare word."""
        return self.text.lower() if self.kind == "word" else ""

    def is_punct(self, chars: str) -> bool:
        """Whether this is one of the punctuation characters `chars`."""
        return self.kind == "punct" and self.text in chars


def _starts_name(c: str) -> bool:
    return c.isidentifier() or unicodedata.category(c) == "Pc"


def _continues_name(c: str) -> bool:
    # The grammar's IdentifierPart is ID_Continue or a currency sign: `a$b` is one name.
    return ("_" + c).isidentifier() or unicodedata.category(c) in ("Pc", "Sc")


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, comments and whitespace dropped; an unterminated string, name or comment is BadInput."""
    out: list[Token] = []
    i, n = 0, len(text)

    def closing(quote: str, at: int, what: str) -> int:
        """Index just past the `quote` closing the string or name that opens at `at`."""
        j = at + 1
        while j < n:
            c = text[j]
            if c == "\\" and quote != "`":
                j += 1 + _escape_length(text, j + 1, at)
                continue
            if c == quote:
                if quote == "`" and text.startswith("``", j):
                    j += 2
                    continue
                return j + 1
            j += 1
        raise BadInput(f"the query has an unterminated {what} starting at character {at + 1}: close it")

    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            if "\r" in text[i + 2 : j - 1]:  # only the last character before the newline (or the end) may be CR
                raise BadInput(f"the // comment at character {i + 1} holds a carriage return that does not end "
                               "its line: end the line with a newline")
            i = j + 1
        elif text.startswith("/*", i):
            i = _comment_end(text, i)
        elif c in "'\"":
            j = closing(c, i, "string")
            out.append(Token("string", text[i:j], i, j))
            i = j
        elif c == "`":
            j = closing("`", i, "`name`")
            out.append(Token("name", text[i + 1 : j - 1].replace("``", "`"), i, j))
            i = j
        elif c == "$" and i + 1 < n and (text[i + 1] == "`" or text[i + 1].isdigit() or _starts_name(text[i + 1])):
            if text[i + 1] == "`":
                j = closing("`", i + 1, "$`name`")
                name = text[i + 2 : j - 1].replace("``", "`")
            else:
                j = i + 2
                digits = text[i + 1].isdigit()
                while j < n and (text[j].isdigit() if digits else _continues_name(text[j])):
                    j += 1
                name = text[i + 1 : j]
            out.append(Token("param", name, i, j))
            i = j
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            j = i
            while j < n and text[j].isdigit():
                j += 1
            if j + 1 < n and text[j] == "." and text[j + 1].isdigit():
                j += 1
                while j < n and text[j].isdigit():
                    j += 1
            k = j + 1 + (j + 1 < n and text[j + 1] == "-")
            if j < n and text[j] in "eE" and k < n and text[k].isdigit():
                j = k
                while j < n and text[j].isdigit():
                    j += 1
            out.append(Token("number", text[i:j], i, j))
            i = j
        elif _starts_name(c):
            j = i + 1
            while j < n and _continues_name(text[j]):
                j += 1
            out.append(Token("word", text[i:j], i, j))
            i = j
        else:
            out.append(Token("punct", c, i, i + 1))
            i += 1
    return out


def _comment_end(text: str, at: int) -> int:
    """Index just past the /* comment opening at `at`, as the grammar ends it: `*` pairs with the next character
    unless that is `/`."""
    j, n = at + 2, len(text)
    while j < n:
        if text[j] == "*":
            if j + 1 < n and text[j + 1] == "/":
                return j + 2
            j += 2  # the star and whatever follows it (another star included)
        else:
            j += 1
    raise BadInput(f"the query has an unterminated /* comment starting at character {at + 1}: close it with */")


def _escape_length(text: str, j: int, at: int) -> int:
    """Characters the escape after a backslash takes (text[j:]), as the grammar's EscapedChar; BadInput otherwise."""
    c = text[j : j + 1]
    if c and c in _ESCAPES:
        return 1
    digits = {"x": 2, "X": 2, "u": 4, "U": 4}.get(c, 0)  # \uHHHHHHHH: the last four are plain characters
    hexes = text[j + 1 : j + 1 + digits]
    if digits and len(hexes) == digits and all(h in _HEX for h in hexes):
        return 1 + digits
    shown = text[j - 1 : j + 1] if c else "\\"
    raise BadInput(f"the string starting at character {at + 1} holds the escape {shown!r}, which the engine does not "
                   "read: write \\\\ for a backslash")


def parameters(tokens: list[Token]) -> list[str]:
    """The parameters the query refers to ($name), in order of first use."""
    return list(dict.fromkeys(t.text for t in tokens if t.kind == "param"))


def return_items(text: str, tokens: list[Token]) -> list[tuple[str, bool]] | None:
    """The first top-level RETURN's items as (alias, True) or (the expression as written, False), as Neo4j names columns.

    None when there is no such RETURN or it cannot be split reliably (`*`, an empty item).
    A UNION's later parts must name their columns as the first part does, so the first RETURN names them.
    """
    depth, begin = 0, None
    for i, t in enumerate(tokens):
        if t.is_punct(_OPEN):
            depth += 1
        elif t.is_punct(_CLOSE):
            depth -= 1
        elif depth == 0 and t.word() == "return":
            begin = i + 1
            break
    if begin is None:
        return None
    if begin < len(tokens) and tokens[begin].word() == "distinct":
        begin += 1
    items: list[list[Token]] = [[]]
    depth = 0
    for t in tokens[begin:]:
        if t.is_punct(_OPEN):
            depth += 1
        elif t.is_punct(_CLOSE):
            depth -= 1
            if depth < 0:
                break
        elif depth == 0 and (t.word() in ("order", "skip", "limit", "union") or t.is_punct(";")):
            break
        elif depth == 0 and t.is_punct(","):
            items.append([])
            continue
        items[-1].append(t)
    out = []
    for item in items:
        if not item or (len(item) == 1 and item[0].is_punct("*")):
            return None
        if len(item) >= 3 and item[-2].word() == "as" and item[-1].kind in ("word", "name"):
            out.append((item[-1].text, True))
        elif len(item) == 1 and item[0].kind in ("word", "name"):
            out.append((item[0].text, False))  # a variable is named by its name, `a b` as a b
        else:
            out.append((text[item[0].start : item[-1].end], False))
    return out
