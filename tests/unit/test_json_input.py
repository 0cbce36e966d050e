"""The strict JSON reader: what json.loads takes, minus what would cost a 500 or reach Hilos other than as sent,
each refusal naming the field."""

import json
import sys

import pytest

from hilos_runner.errors import InvalidRequestError
from hilos_runner.json_input import MAX_DEPTH, loads


def refusal(text: str, location: str = "body") -> tuple[str, str]:
    with pytest.raises(InvalidRequestError) as refused:
        loads(text, location=location)
    (detail,) = refused.value.details
    return detail["field"], detail["reason"]


def test_ordinary_json_is_read_as_json_loads_reads_it():
    document = {"contact_list": [{"phone": "+5215512345678", "meta": {"a": [1, 2.5, None, True, "é", "😀"]}}]}
    text = json.dumps(document)
    assert loads(text) == json.loads(text) == document
    assert loads(json.dumps(document, ensure_ascii=False)) == document
    assert loads('{"x": "\\ud83d\\ude00"}') == {"x": "😀"}  # a surrogate pair is fine


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ('{"a": NaN}', "body.a", "NaN is not a JSON number"),
        ('{"a": [1, Infinity]}', "body.a.1", "Infinity is not a JSON number"),
        ('{"a": {"b": -Infinity}}', "body.a.b", "-Infinity is not a JSON number"),
        ('{"a": 1e999}', "body.a", "number too large"),
        ('{"a": 9007199254740992}', "body.a", "JSON's safe integers"),
        ('{"a": -9007199254740992}', "body.a", "JSON's safe integers"),
        ('{"a": 9223372036854775808}', "body.a", "JSON's safe integers"),
        ('{"a": [' + "9" * 5000 + "]}", "body.a.0", "JSON's safe integers"),
        ('{"a": {"b": 1, "b": 2}}', "body.a.b", "appears twice"),
        ('{"a": "\\ud800"}', "body.a", "lone surrogate"),
        ('{"a": ["x", "\\udc00y"]}', "body.a.1", "lone surrogate"),
        ('{"a": "x\\u0000"}', "body.a", "NUL"),
        ('{"a": [', "body.a.0", "not valid JSON: Expecting value"),
        ('{"a": 1} {}', "body", "not valid JSON: Extra data"),
    ],
)
def test_refused_naming_the_field(text: str, field: str, reason: str):
    found_field, found_reason = refusal(text)
    assert found_field == field
    assert reason in found_reason


def test_the_largest_safe_integers_are_fine():
    assert loads("[9007199254740991, -9007199254740991]") == [2**53 - 1, -(2**53 - 1)]


def test_depth_is_limited_before_parsing_even_when_brackets_hide_in_strings():
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads(at_limit)
    assert refusal("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))[1] == f"nested more than {MAX_DEPTH} levels deep"
    hidden = '[["]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", ' + "[" * 40 + "]" * 40 + "]]"
    assert "nested more than" in refusal(hidden)[1]
    escaped = '["\\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", ' + "[" * 40 + "]" * 40 + "]"
    assert "nested more than" in refusal(escaped)[1]


@pytest.mark.parametrize("depth", [10_000, 1_000_000])
def test_a_hostile_depth_is_refused_without_recursing(depth: int):
    # Refused from C-speed passes over the text, never by a parser that recurses per level: with the interpreter's
    # recursion limit at 200 (pytest itself needs some of it), a depth of a million still gets its clear 422.
    # (What it costs in time is make bench's business: tests never fail on timing.)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth, "[" * depth):
            field, reason = refusal(text)
            assert reason == f"nested more than {MAX_DEPTH} levels deep"
            assert len(field) <= 201
    finally:
        sys.setrecursionlimit(limit)


def test_the_location_prefixes_every_field():
    assert refusal('{"a": NaN}', location="")[0] == "a"
    assert refusal('{"a": NaN}', location="query.flow_execution_variables")[0] == "query.flow_execution_variables.a"
