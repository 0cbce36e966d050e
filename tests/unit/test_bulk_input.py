"""Reading bulk contact lists (JSON and CSV): everything validated first, every problem reported."""

import json
import uuid

import pytest

from hilos_runner.contacts_input import MAX_REPORTED_PROBLEMS, media_type_of, parse_contacts, variables_from_json
from hilos_runner.errors import InvalidRequestError, UnsupportedMediaTypeError


def problems(data: str | bytes, media: str = "csv", **options: object) -> tuple[str, list[tuple[str, str]]]:
    with pytest.raises(InvalidRequestError) as caught:
        parse_contacts(data, media, **options)  # type: ignore[arg-type]
    return caught.value.message, [(d["field"], d["reason"]) for d in caught.value.details]


class TestJson:
    def test_an_object_and_a_bare_list_are_both_accepted(self):
        as_object = parse_contacts('{"contact_list": [{"phone": "+5215500000001"}], "has_priority": true}', "json")
        as_list = parse_contacts('[{"phone": "+5215500000001"}]', "json", has_priority=True)
        assert as_object.model_dump() == as_list.model_dump()
        assert as_list.has_priority is True

    def test_options_given_twice_are_refused(self):
        _, found = problems(
            '{"contact_list": [{"phone": "+5215500000001"}], "has_priority": false}', "json", has_priority=True
        )
        assert found == [
            ("has_priority", "given both in the body and outside it (query parameter or option); give it once")
        ]

    def test_every_bad_contact_is_reported_with_its_index(self):
        contacts = [{"phone": "+5215500000001"}] * 10
        contacts[2] = {"phone": "+5215500000001", "email": "nope"}
        contacts[7] = {"first_name": "no phone"}
        message, found = problems(json.dumps(contacts), "json")
        assert message == "2 of 10 contacts are not valid; nothing was queued"
        assert [field for field, _ in found] == ["contact_list.2.email", "contact_list.7"]

    def test_a_contact_too_large_for_a_queued_message_is_refused_where_it_is(self):
        contacts = [{"phone": "+5215500000001"}, {"phone": "+5215500000002", "tags": [{"name": "t" * 100}] * 700}]
        _, found = problems(json.dumps(contacts), "json")
        assert found[0][0] == "contact_list.1"
        assert "fit a queued message" in found[0][1]

    @pytest.mark.parametrize(("data", "reason"), [("[1,", "not valid JSON"), ('"text"', "expected a JSON object")])
    def test_not_a_contact_list(self, data: str, reason: str):
        _, found = problems(data, "json")
        assert reason in found[0][1]

    def test_bytes_must_be_utf8(self):
        _, found = problems(b'[{"phone": "\xff"}]', "json")
        assert found == [("", "not UTF-8 (byte 12)")]


# What the CSV in test_every_bad_row_and_cell_is_reported_by_spreadsheet_row holds, in order.
EXPECTED_ROW_PROBLEMS = [
    ("row.3.is_deleted", "expected true or false"),
    ("row.3.default_assignees", "expected whole numbers separated by ';'"),
    ("row.3.meta", 'expected a JSON object, e.g. {"plan": "gold"}'),
    ("row.3.default_channel", "expected a whole number"),
    ("row.3.email", "value is not a valid email address"),
    ("row.4", "has 1 cells, the header has 6"),
    ("row.6", "a contact needs a phone (or the id of an existing Hilos contact)"),
]


class TestCsv:
    def test_typed_columns_and_absent_cells(self):
        text = (
            "\ufeffphone , tags,default_assignees,meta,is_deleted,overwrite_meta,default_channel,id\n"
            '+5215500000001,a; b ;,1;2,"{""k"": [1]}",FALSE,true,4,\n'
            "\n"
            ",,,,,,,5b0e7c1a-2f7d-4c55-9a43-0d4e2a1b9c10\n"
        )
        request = parse_contacts(text, "csv", flow_execution_variables={"x": 1})
        assert request.model_dump(exclude_unset=True) == {
            "contact_list": [
                {
                    "phone": "+5215500000001",
                    "tags": [{"name": "a"}, {"name": "b"}],
                    "default_assignees": [1, 2],
                    "meta": {"k": [1]},
                    "is_deleted": False,
                    "overwrite_meta": True,
                    "default_channel": 4,
                },
                {"id": uuid.UUID("5b0e7c1a-2f7d-4c55-9a43-0d4e2a1b9c10")},
            ],
            "flow_execution_variables": {"x": 1},
        }

    def test_cells_are_kept_as_written(self):
        request = parse_contacts('phone,first_name\n+5215500000001," Ana "\n', "csv")
        assert request.contact_list[0].first_name == " Ana "

    def test_every_bad_row_and_cell_is_reported_by_spreadsheet_row(self):
        text = (
            "phone,email,is_deleted,default_assignees,meta,default_channel\n"
            "+5215500000001,ok@example.com,,,,\n"
            "+5215500000002,bad,maybe,1;x,[1],two\n"
            "+5215500000003\n"
            ",,,,,\n"  # a blank row: skipped, like an empty line
            ",ana@example.com,,,,\n"
        )
        message, found = problems(text)
        assert message == "3 of 4 rows are not valid; nothing was queued"
        # pydantic's wording may vary (a "Value error, " prefix); the start of each reason is ours.
        assert [
            (field, reason.removeprefix("Value error, ")[: len(expected)])
            for (field, reason), (_, expected) in zip(found, EXPECTED_ROW_PROBLEMS, strict=True)
        ] == EXPECTED_ROW_PROBLEMS

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (
                "phone,phone_number",
                [
                    (
                        "row.1.column.2",
                        "unknown column 'phone_number' (not a contact field); other data goes in the meta column, "
                        "as a JSON object",
                    )
                ],
            ),
            ("phone,,email", [("row.1.column.2", "empty column name")]),
            ("phone,email,phone", [("row.1.column.3", "column 'phone' appears twice")]),
        ],
    )
    def test_a_bad_header_is_reported_before_any_row(self, header: str, expected: list):
        message, found = problems(header + "\n+5215500000001,x,y\n")
        assert message == "the CSV header is not valid; nothing was queued"
        assert found == expected

    def test_an_empty_file_and_a_header_without_rows(self):
        assert problems("")[1] == [("row.1", "no header row")]
        assert problems("phone\n")[1][0][0] == "contact_list"

    def test_problems_are_capped_and_the_rest_counted(self):
        text = "phone,email\n" + "+5215500000001,bad\n" * (MAX_REPORTED_PROBLEMS + 5)
        message, found = problems(text)
        assert message.startswith(f"{MAX_REPORTED_PROBLEMS + 5} of {MAX_REPORTED_PROBLEMS + 5} rows")
        assert len(found) == MAX_REPORTED_PROBLEMS + 1
        assert found[-1] == ("", "... and 5 more problems not listed")

    def test_the_api_puts_paths_under_body(self):
        _, found = problems("phone,email\n+5215500000001,bad\n", location="body")
        assert found[0][0] == "body.row.2.email"


@pytest.mark.parametrize(
    ("good", "bad", "media"),
    [
        (
            '[{"phone": "+5215500000001"}, {"phone": "+5215500000002"}]',
            '[{"phone": "+5215500000001"}, {"phone": "+5215500000002"}, {"nope": 1}]',
            "json",
        ),
        (
            "phone,email\n+5215500000001,\n+5215500000002,\n",
            "phone,email\n+5215500000001,\n+5215500000002,\n+5215500000003,bad\n",
            "csv",
        ),
    ],
)
def test_too_many_contacts_are_refused_before_any_is_validated(good: str, bad: str, media: str):
    assert len(parse_contacts(good, media, max_contacts=2).contact_list) == 2  # type: ignore[arg-type]
    _, found = problems(bad, media, max_contacts=2)
    assert found == [("contact_list", "at most 2 contacts")]  # the bad third contact was never looked at


@pytest.mark.parametrize(
    ("content_type", "media"),
    [
        (None, "json"),
        ("application/json; charset=utf-8", "json"),
        ("text/csv", "csv"),
        ("Text/CSV;charset=utf-8", "csv"),
    ],
)
def test_media_types(content_type: str | None, media: str):
    assert media_type_of(content_type) == media


def test_other_media_types_are_refused():
    with pytest.raises(UnsupportedMediaTypeError):
        media_type_of("application/vnd.ms-excel")


def test_variables_outside_the_body_must_be_a_json_object():
    assert variables_from_json('{"a": 1}', field="query.v") == {"a": 1}
    assert variables_from_json(None, field="query.v") is None
    with pytest.raises(InvalidRequestError) as caught:
        variables_from_json("[1]", field="query.v")
    assert caught.value.details == [{"field": "query.v", "reason": "not a JSON object"}]
