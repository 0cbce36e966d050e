"""The API as a browser uses it: the example page (examples/web/, served by the stack on its allowed origin)
calling the API across origins, the same page from an origin that is not allowed, and Swagger UI."""

import json
import uuid
from typing import Any

import pytest

from local.running_stack import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

FINISH_TIMEOUT_MS = 60_000  # a bound, not a measurement: the sync moves a run one stage a second
# The sandbox completes contacts whose phone ends in anything but 7 (failed) or 9 (expired).
CONTACTS = "+5215500000011,Ana\n+5215500000022,Luis"


def open_example_page(page: Any, url: str, stack: RunningStack, flow_id: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#api-url") == stack.info["api_url"]  # from the page's config.json
    page.fill("#token", stack.info["api_token"])
    page.fill("#flow-id", flow_id)


def test_the_example_page_starts_a_run_that_reaches_completed(web_stack: RunningStack, page: Any):
    from playwright.sync_api import expect

    flow_id = str(uuid.uuid4())
    open_example_page(page, web_stack.info["web_url"], web_stack, flow_id)
    page.fill("#contacts", CONTACTS)

    page.click("#start-run")

    row = page.locator("tr[data-kind=run]")
    expect(row).to_have_attribute("data-status", "COMPLETED", timeout=FINISH_TIMEOUT_MS)
    expect(row.locator(".counters")).to_contain_text("completed 2")
    assert page.locator("#error").is_hidden()
    [call] = web_stack.calls_for(flow_id)
    assert (call["status"], call["num_contacts"]) == (201, 2)
    record = web_stack.api("GET", f"/runs/{row.get_attribute('data-id')}").json()
    assert (record["status"], record["flow_id"], record["hilos_execution_id"]) == (
        "COMPLETED",
        flow_id,
        call["execution_id"],
    )


def test_the_example_page_uploads_a_csv_as_a_bulk_run_and_follows_it_to_the_end(web_stack: RunningStack, page: Any):
    from playwright.sync_api import expect

    flow_id = str(uuid.uuid4())
    open_example_page(page, web_stack.info["web_url"], web_stack, flow_id)
    csv = "phone,first_name\n+5215500000031,Ana\n+5215500000042,Luis\n+5215500000053,Eva\n"
    page.set_input_files("#csv-file", files=[{"name": "contacts.csv", "mimeType": "text/csv", "buffer": csv.encode()}])

    page.click("#start-bulk")

    row = page.locator("tr[data-kind=bulk]")
    expect(row.locator(".contacts")).to_have_text("3")
    expect(row.locator(".status")).to_have_class("status finished", timeout=FINISH_TIMEOUT_MS)
    expect(row.locator(".counters")).to_contain_text("completed 3")
    assert sum(call["num_contacts"] for call in web_stack.calls_for(flow_id) if call["status"] == 201) == 3


def test_the_same_page_from_an_origin_not_allowed_is_blocked_by_the_browser(web_stack: RunningStack, page: Any):
    from playwright.sync_api import expect

    # http://127.0.0.1:<port> is another origin than the allowed http://localhost:<port>: same files, same API.
    other_origin_url = web_stack.info["web_url"].replace("//localhost:", "//127.0.0.1:")
    console = []
    page.on("console", lambda message: console.append(message.text))
    flow_id = str(uuid.uuid4())
    open_example_page(page, other_origin_url, web_stack, flow_id)

    page.click("#start-run")

    expect(page.locator("#error")).to_contain_text("could not reach")
    assert any("blocked by CORS policy" in line for line in console), console
    # The preflight got no Access-Control-Allow-Origin, so the browser never sent the POST: nothing started.
    assert web_stack.calls_for(flow_id) == []
    assert web_stack.api("GET", f"/flows/{flow_id}/runs").json()["items"] == []


def test_swagger_opens_without_a_token_and_authorize_then_try_it_out_starts_a_run(web_stack: RunningStack, page: Any):
    from playwright.sync_api import expect

    flow_id = str(uuid.uuid4())
    page.goto(web_stack.info["api_url"] + "/swagger")  # no Authorization header: a browser cannot send one
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("hilos-runner")

    page.click(".swagger-ui .auth-wrapper button.authorize")
    page.locator(".auth-container input").fill(web_stack.info["api_token"])
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".auth-btn-wrapper button.btn-done")

    operation = page.locator(".opblock-post", has=page.locator('[data-path="/flows/{flow_id}/runs"]'))
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator('input[placeholder="flow_id"]').fill(flow_id)
    body = {"contact_list": [{"phone": "+5215500000064", "first_name": "Ana"}]}
    operation.locator("textarea.body-param__text").fill(json.dumps(body))
    operation.locator("button.execute").click()

    status = operation.locator(".live-responses-table tr.response .response-col_status")
    expect(status).to_have_text("201")
    [call] = web_stack.calls_for(flow_id)
    assert (call["status"], call["num_contacts"]) == (201, 1)
