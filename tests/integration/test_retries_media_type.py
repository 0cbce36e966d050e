"""The retry routes read JSON bodies only: any other media type is a 415 naming the header, before Powertools parses
the body (a multipart type without a boundary made its parser raise: a 500, found by `make fuzz`)."""

import pytest

from tests.helpers import call_run_api

RUN_ID = "6b1e9c6e-2b5f-4c43-9a59-1f0e7c7b1a11"


@pytest.mark.parametrize("path", [f"/runs/{RUN_ID}/retries", f"/bulk-runs/{RUN_ID}/retries"])
@pytest.mark.parametrize("content_type", ["multipart/form-data", "text/csv", "application/x-www-form-urlencoded"])
def test_a_retry_with_a_body_that_is_not_json_is_a_415(aws, path: str, content_type: str):
    answer = call_run_api("POST", path, "statuses=FAILED", headers={"Content-Type": content_type})
    assert answer.status == 415
    assert answer.body["code"] == "unsupported_media_type"
    assert [detail["field"] for detail in answer.body["details"]] == ["header.content-type"]


def test_a_retry_with_a_json_body_still_reaches_the_route(aws):
    answer = call_run_api("POST", f"/runs/{RUN_ID}/retries", {"statuses": ["FAILED"]})
    assert answer.status == 404  # no such run: the route answered
