"""How the sandbox lookup tests talk to a Hilos sandbox of their own: its token, runs started on it, list pages
read and checked against Hilos' schemas, every page of a list, the sandbox's control and stats."""

from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from local.hilos_schema import (
    EXECUTION_CONTACT_LIST_SCHEMA,
    EXECUTION_LIST_SCHEMA,
    hilos_response_schemas,
    response_problems,
)
from local.sandbox import HilosSandbox
from local.sandbox_settings import SandboxSettings

TOKEN = "sandbox-lookup-test-token-8c2d"
AUTH = {"Authorization": f"Token {TOKEN}"}
COUNTERS = ("running", "completed", "failed", "expired", "canceled")
EXECUTIONS = "flow-execution"
CONTACTS = "flow-execution-contact"
SCHEMAS = {EXECUTIONS: EXECUTION_LIST_SCHEMA, CONTACTS: EXECUTION_CONTACT_LIST_SCHEMA}
ITEM_SCHEMAS = {
    EXECUTIONS: ("flow-execution", "FlowExecutionList"),
    CONTACTS: (CONTACTS, "FlowExecutionContactListSimple"),
}
# Phones ending in 7 fail, in 9 expire (the defaults); the others complete.
PHONES = ["+5215500000017", "+5215500000029", "+5215500000031", "+5215500000042", "+5215500000057"]
# The counters of a finished run of PHONES.
FINISHED_COUNTERS = {"running": 0, "completed": 2, "failed": 2, "expired": 1, "canceled": 0}


def started_sandbox() -> Iterator[HilosSandbox]:
    server = HilosSandbox(TOKEN, SandboxSettings())
    server.start()
    yield server
    server.stop()


def control(sandbox: HilosSandbox, **changes: Any) -> dict[str, Any]:
    answer = requests.post(f"{sandbox.url}/_sandbox/faults", json=changes, timeout=5)
    assert answer.status_code == 200, answer.text
    settings: dict[str, Any] = answer.json()
    return settings


def stats(sandbox: HilosSandbox) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()
    return answer


def post_run(sandbox: HilosSandbox, flow_id: str, contacts: list[dict[str, Any]], timeout: float = 5) -> Any:
    return requests.post(
        f"{sandbox.api_url}/flow/{flow_id}/run",
        json={"execute_for": "LIST", "contact_list": contacts},
        headers=AUTH,
        timeout=timeout,
    )


def start_run(sandbox: HilosSandbox, flow_id: str, phones: list[str] = PHONES) -> dict[str, Any]:
    answer = post_run(sandbox, flow_id, [{"phone": phone} for phone in phones])
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def lookup(sandbox: HilosSandbox, endpoint: str, token: str | None = TOKEN, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Token {token}"} if token is not None else {}
    return requests.get(f"{sandbox.api_url}/{endpoint}", params=params, headers=headers, timeout=5)


def checked(answer: requests.Response, endpoint: str) -> dict[str, Any]:
    """A 200 list page, valid against the schema Hilos documents for it, with documented fields only."""
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert response_problems(body, SCHEMAS[endpoint]) == []
    document, item_schema = ITEM_SCHEMAS[endpoint]
    declared = set(hilos_response_schemas(document)[item_schema]["properties"])
    for item in body["results"]:
        assert set(item) <= declared, f"undocumented fields: {set(item) - declared}"
    for link in (body["next"], body["previous"]):
        if link is not None:  # format: uri (jsonschema checks no uri format without rfc3987): absolute
            assert urlsplit(link).scheme == "http"
            assert urlsplit(link).netloc == urlsplit(answer.url).netloc
    return body


def page(sandbox: HilosSandbox, endpoint: str, **params: Any) -> dict[str, Any]:
    return checked(lookup(sandbox, endpoint, **params), endpoint)


def every_page(sandbox: HilosSandbox, endpoint: str, **params: Any) -> list[dict[str, Any]]:
    """What the layer's client does: page=1, 2, ... until next is null."""
    pages, number = [], 1
    while True:
        body = page(sandbox, endpoint, **params, page=number)
        pages.append(body)
        if body["next"] is None:
            return pages
        number += 1


def query(link: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(link).query)


def detail(sandbox: HilosSandbox, execution_id: str) -> dict[str, Any]:
    answer = requests.get(f"{sandbox.api_url}/flow-execution/{execution_id}", headers=AUTH, timeout=5)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def contacts_of(sandbox: HilosSandbox, execution_id: str, **params: Any) -> list[dict[str, Any]]:
    return [
        item
        for body in every_page(sandbox, CONTACTS, flow_execution=execution_id, **params)
        for item in body["results"]
    ]


def counted_statuses(contacts: list[dict[str, Any]]) -> dict[str, int]:
    """The contacts' statuses as the execution's counters count them (READY is in none)."""
    counts = Counter(item["status"].lower() for item in contacts if item["status"] != "READY")
    return {name: counts[name] for name in COUNTERS}
