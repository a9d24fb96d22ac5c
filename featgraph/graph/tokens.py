"""Cypher text as tokens, for checks that strings, comments and quoted names must not fool.

The lexer follows LadybugDB's openCypher grammar: '…' and "…" strings with backslash escapes,
`…` names (a doubled backtick is one backtick), // and /* */ comments (whitespace to the engine),
parameters $name, $`name` and $0. Keywords are words compared case-insensitively; whether a word
is a keyword or a name is left to the caller, which errs on the side of refusing.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from featgraph.errors import BadInput

_OPEN, _CLOSE = "([{", ")]}"


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
                j += 2
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
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise BadInput(f"the query has an unterminated /* comment starting at character {i + 1}: close it with */")
            i = j + 2
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
