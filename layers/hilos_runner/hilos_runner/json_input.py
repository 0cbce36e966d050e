"""JSON from callers (run and bulk bodies, queued messages, CSV ``meta`` cells, query parameters), read strictly.

``loads`` takes what ``json.loads`` takes, except what would reach Hilos other than as sent, or cost us a 500:

- nesting deeper than ``MAX_DEPTH`` levels (checked on the raw text before parsing, so a body nested 10,000
  deep costs a few string passes, not a RecursionError);
- ``NaN``, ``Infinity`` and numbers too large for a float (``1e999``): not JSON, and Hilos would get ``null``;
- whole numbers beyond JSON's safe integers, +-(2^53 - 1) (I-JSON, RFC 7493: what every JSON reader, JavaScript's
  included, holds exactly; it also keeps clear of Python's 4,300-digit limit): send such values as strings;
- the same key twice in one object (JSON leaves it undefined; ``json.loads`` keeps the last silently);
- strings with a lone surrogate escape (``"\\ud800"``): not Unicode, they cannot be sent on;
- NUL (``"\\u0000"``) in any string: databases refuse it in text (Hilos would fail on it, not we).

Each refusal is an ``InvalidRequestError`` naming the field (``body.contact_list.0.meta.a``) and the reason.
The fast path is the C parser with hooks; only a refused document is walked again, token by token, to find
the field a problem is in (bounded by the body size limits).
"""

import json
import math
import re
from typing import Any

from hilos_runner.errors import InvalidRequestError

# Levels of objects and arrays, the document's own included. A run body reaches a contact's meta at level 4.
MAX_DEPTH = 32
MAX_INTEGER = 2**53 - 1
_MAX_INTEGER_DIGITS = len(str(MAX_INTEGER))
_MAX_FIELD_CHARS = 200

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_TO_SQUARE = str.maketrans("{}", "[]")
# A \uD800-\uDFFF escape: maybe half of a surrogate pair, maybe alone (checked on the slow path).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _Refused(ValueError):
    """Raised by the parser hooks; the slow path finds where."""


def loads(text: str, *, location: str = "body") -> Any:
    """The JSON value in ``text``; raises ``InvalidRequestError`` naming the field (under ``location``)."""
    if _may_be_too_deep(text):
        _raise_first_problem(text, location, lenient=True)  # unpaired brackets: the parser says where
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_int=_integer,
            parse_float=_float,
        )
    except json.JSONDecodeError as error:
        path = _Walk(text, location).path_at(error.pos)
        reason = f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        raise InvalidRequestError("the body is not valid JSON", details=[_detail(path, reason)]) from None
    except (_Refused, ValueError, RecursionError):
        _raise_first_problem(text, location)
    if "\\u0000" in text or _SURROGATE_ESCAPE.search(text):
        _raise_first_problem(text, location, lenient=True)
    return value


def _may_be_too_deep(text: str) -> bool:
    """Whether the brackets outside strings nest deeper than MAX_DEPTH (or do not pair up), in C-speed passes:
    each pass removes the innermost pairs."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    # Outside strings: every other piece between quotes, unless a string holds an escaped quote.
    outside = _STRING.sub("", text) if '\\"' in text else "".join(text.split('"')[::2])
    brackets = _NOT_BRACKET.sub("", outside).translate(_TO_SQUARE)
    for _ in range(MAX_DEPTH):
        shorter = brackets.replace("[]", "")
        if not shorter:
            return False
        if shorter == brackets:
            return True  # unpaired: not valid JSON; the walk or the parser says where
        brackets = shorter
    return True


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise _Refused("duplicate key")
    return value


def _constant(name: str) -> Any:
    raise _Refused(name)


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INTEGER_DIGITS:
        raise _Refused("integer too large")
    value = int(text)
    if abs(value) > MAX_INTEGER:
        raise _Refused("integer too large")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("number too large")
    return value


def _detail(path: list[str], reason: str) -> dict[str, str]:
    field = ".".join(part[:50] for part in path if part)
    return {"field": field if len(field) <= _MAX_FIELD_CHARS else field[:_MAX_FIELD_CHARS] + "…", "reason": reason}


def _raise_first_problem(text: str, location: str, *, lenient: bool = False) -> None:
    problem = _Walk(text, location).first_problem()
    if problem is None:
        if lenient:
            return
        problem = ([location], "not valid JSON")
    path, reason = problem
    raise InvalidRequestError("the body is not valid JSON or breaks its limits", details=[_detail(path, reason)])


_TOKEN = re.compile(
    r'\s*(?:(?P<string>"[^"\\]*(?:\\.[^"\\]*)*")|(?P<mark>[\[\]{}:,])'
    r"|(?P<number>-?(?:0|[1-9]\d*)(?P<fraction>\.\d+)?(?P<exponent>[eE][+-]?\d+)?)"
    r"|(?P<literal>true|false|null|NaN|-?Infinity))",
    re.DOTALL,
)


class _Frame:
    __slots__ = ("index", "is_object", "key", "keys")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.key: str | None = None
        self.keys: set[str] = set()
        self.index = 0

    def part(self) -> str:
        return (self.key or "") if self.is_object else str(self.index)


class _Walk:
    """The slow path: the document token by token, with the path to each; finds the first refused value."""

    def __init__(self, text: str, location: str) -> None:
        self._text = text
        self._location = location
        self._stack: list[_Frame] = []
        self._expect_key = False

    def _path(self) -> list[str]:
        return [self._location, *(frame.part() for frame in self._stack)]

    def path_at(self, offset: int) -> list[str]:
        for end, _ in self._tokens():
            if end > offset:
                break
        return self._path()

    def first_problem(self) -> tuple[list[str], str] | None:
        for _, problem in self._tokens():
            if problem is not None:
                return problem
        return None

    def _tokens(self) -> Any:
        """Yields (end offset, problem or None) per token; stops at the first text that is not a token."""
        position = 0
        while match := _TOKEN.match(self._text, position):
            position = match.end()
            yield position, self._step(match)
            if match.group("mark") is None and not self._stack:
                break  # the top-level value ended

    def _step(self, match: re.Match[str]) -> tuple[list[str], str] | None:
        if match.group("mark") is not None:
            return self._mark(match.group("mark"))
        if match.group("string") is not None:
            return self._string(match.group("string"))
        if match.group("literal") in ("NaN", "Infinity", "-Infinity"):
            return self._path(), f"{match.group('literal')} is not a JSON number"
        if match.group("number") is not None:
            return self._number_problem(match)
        return None

    def _mark(self, mark: str) -> tuple[list[str], str] | None:
        frame = self._stack[-1] if self._stack else None
        if mark in "{[":
            self._stack.append(_Frame(mark == "{"))
            self._expect_key = mark == "{"
            if len(self._stack) > MAX_DEPTH:
                return self._path()[:-1], f"nested more than {MAX_DEPTH} levels deep"
        elif mark in "}]" and self._stack:
            self._stack.pop()
        elif mark == "," and frame is not None:
            if frame.is_object:
                self._expect_key = True
            else:
                frame.index += 1
        elif mark == ":":
            self._expect_key = False
        return None

    def _string(self, token: str) -> tuple[list[str], str] | None:
        frame = self._stack[-1] if self._stack else None
        decoded = _decoded(token)
        if self._expect_key and frame is not None:
            frame.key = decoded if decoded is not None else token
            if frame.key in frame.keys:
                return self._path(), "this key appears twice in one object"
            frame.keys.add(frame.key)
        if decoded is None:
            return self._path(), "not valid Unicode text (a lone surrogate escape such as \\ud800)"
        if "\x00" in decoded:
            return self._path(), "contains NUL (\\u0000), which no text field takes"
        return None

    def _number_problem(self, match: re.Match[str]) -> tuple[list[str], str] | None:
        text = match.group("number")
        if match.group("fraction") or match.group("exponent"):
            if not math.isfinite(float(text)):
                return self._path(), "number too large"
            return None
        if len(text.lstrip("-")) > _MAX_INTEGER_DIGITS or abs(int(text)) > MAX_INTEGER:
            return self._path(), f"whole number beyond +-{MAX_INTEGER} (JSON's safe integers); send it as a string"
        return None


def _decoded(token: str) -> str | None:
    """A string token's text, or None when it holds a lone surrogate."""
    try:
        text = json.loads(token)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return None
    return str(text)
