"""The one fake Hilos of the in-process tests (the ``hilos`` fixture of tests/conftest.py), on the `requests` session
through ``responses``: no network.

By itself it behaves as Hilos does: a run call creates an execution (201), a status read answers it (404 for an id it
does not know), and both of Hilos' lists page it (newest first, DRF pagination); ``finish`` ends executions the way
the sandbox does (contacts whose phone ends in 7 fail, in 9 expire, each with a reason), ``move_all`` moves them to
any status. A test decides the fate of the next calls: lose a run call's answer after or before creating the
execution (``lose_next``), kill the caller after Hilos created a run (``kill_after_creating``), refuse phones, fail
list reads, or script the answers to run calls and status reads (``answer_runs``, ``answer_reads``, ``reply``).
``calls`` is every request it received, in order.

The local stack's sandbox (local/sandbox.py) is the same Hilos over real sockets; this one lets a test decide
each call's fate and runs inside the handlers' process.
"""

import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from tests.helpers import FLOW_ID, hilos_execution
from tests.reliability.faults import InvocationKilled

_RUN = re.compile(r".*/flow/(?P<flow>[0-9a-f-]{36})/run$")
_EXECUTION = re.compile(r".*/flow-execution/(?P<id>[0-9a-f-]{36})$")
_EXECUTIONS = re.compile(r".*/flow-execution(\?.*)?$")
_CONTACTS = re.compile(r".*/flow-execution-contact(\?.*)?$")
REASONS = {
    "FAILED": "The message could not be delivered to this phone number.",
    "EXPIRED": "The contact did not answer before the flow's wait time ran out.",
}


Reply = tuple[int, dict[str, str], str]
# A scripted answer: a function of the request (``reply(...)``; one that returns None leaves the request to what the
# fake does by itself), or an exception the caller gets instead of an answer (requests.ReadTimeout, ...).
Answer = Callable[[Any], Reply | None] | BaseException


def USUAL(_request: Any) -> None:
    """What the fake does by itself: create the run, show the execution."""


def reply(
    status: int, json_body: Any = None, *, text: str | None = None, headers: dict[str, str] | None = None
) -> Callable[[Any], Reply]:
    """An answer of ``status`` with ``json_body`` (JSON) or ``text`` (plain text), and ``headers``."""
    content_type = "text/plain" if json_body is None else "application/json"
    body = text if text is not None else ("" if json_body is None else json.dumps(json_body))
    return lambda _request: (status, {"Content-Type": content_type, **(headers or {})}, body)


def by_first_phone(answers: dict[str, Answer]) -> Answer:
    """Answer each run call as ``answers`` says for its first contact's phone (one phone per run in such tests)."""

    def answer(request: Any) -> Reply | None:
        chosen = answers[json.loads(request.body)["contact_list"][0]["phone"]]
        if isinstance(chosen, BaseException):
            raise chosen
        return chosen(request)

    return answer


class FakeHilos:
    def __init__(self, mock: responses.RequestsMock, *, page_size: int = 10) -> None:
        self.mock = mock
        self.page_size = page_size
        self.executions: list[dict[str, Any]] = []  # in creation order
        self.contacts: dict[str, list[dict[str, Any]]] = {}
        self.run_calls = 0
        self.run_bodies: list[dict[str, Any]] = []  # what each run call sent
        self.refused_phones: set[str] = set()  # a run with one of these is refused (400), as Hilos refuses a bad phone
        # The fate of the next run calls, first in first out: "after" (created, then the answer is lost),
        # "before" (the answer is lost, nothing created), "killed" (the caller dies before Hilos sees it).
        self.lose_next: list[str] = []
        # The run whose first contact has this phone is created, then the caller dies before reading the answer.
        self.kill_after_creating: str | None = None
        self.run_answers: list[Answer] = []  # scripted answers to run calls (answer_runs)
        self.read_answers: list[Answer] = []  # scripted answers to status reads (answer_reads)
        self.reads: Counter[str] = Counter()  # status reads per execution id
        self.list_failures: list[tuple[int, dict[str, str]]] = []  # next list reads answered with these
        self.list_reads: Counter[str] = Counter()
        mock.add_callback(responses.POST, _RUN, callback=self._run, content_type=None)
        mock.add_callback(responses.GET, _EXECUTION, callback=self._read, content_type=None)
        mock.add_callback(responses.GET, _CONTACTS, callback=self._list_contacts, content_type=None)
        mock.add_callback(responses.GET, _EXECUTIONS, callback=self._list_executions, content_type=None)

    # -- what tests look at and arrange -----------------------------------------------------------------
    @property
    def calls(self) -> Any:
        """Every request Hilos received, in order (``responses`` calls: ``.request``, ``.response``)."""
        return self.mock.calls

    @property
    def created(self) -> list[dict[str, Any]]:
        """Executions created by run calls (not those added by ``add_execution``)."""
        return [execution for execution in self.executions if execution["_by_run_call"]]

    @property
    def created_phones(self) -> list[str]:
        """The first contact's phone of each execution run calls created, in order."""
        return [self.contacts[execution["id"]][0]["contact"]["phone"] for execution in self.created]

    def execution(self, execution_id: str) -> dict[str, Any]:
        """The execution as Hilos holds it now (a test may change it)."""
        [found] = [execution for execution in self.executions if execution["id"] == execution_id]
        return found

    def answer_runs(self, *answers: Answer) -> None:
        """Answer the next run calls with ``answers`` in turn, the last one every call after (as ``responses``
        answers what was added for a URL)."""
        self.run_answers += answers

    def answer_reads(self, *answers: Answer) -> None:
        """Answer the next status reads with ``answers`` in turn, the last one every read after."""
        self.read_answers += answers

    def move_all(self, status: str, **counters_of: Callable[[int], int]) -> None:
        """Every execution to ``status``; counters computed from each one's num_contacts."""
        for execution in self.executions:
            execution["status"] = status
            execution.update({name: count(execution["num_contacts"]) for name, count in counters_of.items()})

    def add_execution(
        self,
        phones: list[str],
        *,
        flow_id: str = FLOW_ID,
        created_on: datetime | None = None,
        listed: int | None = None,
    ) -> str:
        """An execution someone else started (or Hilos made): ``listed`` contacts listed so far (all by default)."""
        execution = self._create(flow_id, [{"phone": phone} for phone in phones], by_run_call=False, when=created_on)
        if listed is not None:
            self.contacts[execution["id"]] = self.contacts[execution["id"]][:listed]
        return str(execution["id"])

    def finish(self, execution_id: str | None = None, status: str = "COMPLETED") -> None:
        """Every execution (or one) finished: each contact COMPLETED, or FAILED / EXPIRED by its phone's last digit,
        with Hilos' reason; the execution's counters to match."""
        for execution in self.executions:
            if execution_id is not None and execution["id"] != execution_id:
                continue
            counters = Counter[str]()
            for listed in self.contacts[execution["id"]]:
                phone = listed["contact"]["phone"]
                outcome = {"7": "FAILED", "9": "EXPIRED"}.get(phone[-1:], "COMPLETED")
                listed.update(status=outcome, reason=REASONS.get(outcome))
                counters[outcome.lower()] += 1
            execution.update(
                status=status, running=0, **{name: counters[name] for name in ("completed", "failed", "expired")}
            )

    # -- Hilos ----------------------------------------------------------------------------------------
    def _create(
        self, flow_id: str, contacts: list[dict[str, Any]], *, by_run_call: bool, when: datetime | None = None
    ) -> dict[str, Any]:
        execution = hilos_execution(
            id=str(uuid.uuid4()),
            num_contacts=len(contacts),
            created_on=(when or datetime.now(UTC)).isoformat(),
            flow=flow_id,
            _by_run_call=by_run_call,
        )
        self.executions.append(execution)
        self.contacts[execution["id"]] = [
            {
                "id": str(uuid.uuid4()),
                "contact": {
                    "id": str(contact.get("id") or uuid.uuid4()),
                    "phone": contact.get("phone") or "+15550000000",
                    "canonical_phone": "+" + re.sub(r"\D", "", contact.get("phone") or "15550000000"),
                    "first_name": contact.get("first_name"),
                    "last_name": contact.get("last_name"),
                    "email": contact.get("email"),
                    "meta": contact.get("meta") or {},
                },
                "status": "READY",
                "reason": None,
                "flow_name": "Fake flow",
                "is_chatbot_execution": False,
            }
            for contact in contacts
        ]
        return execution

    @staticmethod
    def _scripted(answers: list[Answer], request: Any) -> Reply | None:
        """The next scripted answer to ``request`` (None: answer as usual); an exception is raised."""
        if not answers:
            return None
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer(request)

    def _run(self, request: Any) -> Reply:
        self.run_calls += 1
        if (scripted := self._scripted(self.run_answers, request)) is not None:
            return scripted
        fate = self.lose_next.pop(0) if self.lose_next else None
        if fate == "killed":
            raise InvocationKilled
        if fate == "before":
            raise requests.ReadTimeout("read timed out")
        match = _RUN.match(request.url)
        assert match is not None
        body = json.loads(request.body)
        self.run_bodies.append(body)
        if any(contact.get("phone") in self.refused_phones for contact in body["contact_list"]):
            return 400, {}, json.dumps({"contact_list": [{"phone": ["Enter a valid phone number."]}]})
        execution = self._create(match["flow"], body["contact_list"], by_run_call=True)
        if body["contact_list"][0].get("phone") == self.kill_after_creating:
            raise InvocationKilled  # Hilos started the run; the caller dies before reading the answer
        if fate == "after":
            raise requests.ReadTimeout("read timed out")
        return 201, {}, json.dumps(_public(execution))

    def _read(self, request: Any) -> Reply:
        match = _EXECUTION.match(request.url)
        assert match is not None
        self.reads[match["id"]] += 1
        if (scripted := self._scripted(self.read_answers, request)) is not None:
            return scripted
        found = [e for e in self.executions if e["id"] == match["id"]]
        return (200, {}, json.dumps(_public(found[0]))) if found else (404, {}, json.dumps({"detail": "Not found."}))

    def _list_read(self, which: str) -> Reply | None:
        """Count a list read; the next forced failure, if any, is its answer."""
        self.list_reads[which] += 1
        if not self.list_failures:
            return None
        status, headers = self.list_failures.pop(0)
        return status, headers, json.dumps({"detail": "fault"})

    def _list_executions(self, request: Any) -> Reply:
        if (failure := self._list_read("executions")) is not None:
            return failure
        query = parse_qs(urlsplit(request.url).query)
        flow = query.get("flow", [None])[0]
        newest_first = sorted(
            (e for e in self.executions if flow is None or e["flow"] == flow),
            key=lambda e: e["created_on"],
            reverse=True,
        )
        return self._page(request, newest_first, self.page_size, public=True)

    def _list_contacts(self, request: Any) -> Reply:
        if (failure := self._list_read("contacts")) is not None:
            return failure
        query = parse_qs(urlsplit(request.url).query)
        execution_id = query["flow_execution"][0]
        size = int(query.get("page_size", [self.page_size])[0])
        return self._page(request, self.contacts.get(execution_id, []), size, public=False)

    @staticmethod
    def _page(request: Any, items: list[dict[str, Any]], size: int, *, public: bool) -> Reply:
        query = parse_qs(urlsplit(request.url).query)
        page = int(query.get("page", ["1"])[0])
        start = (page - 1) * size
        if page < 1 or (start >= len(items) and page != 1):
            return 404, {}, json.dumps({"detail": "Invalid page."})
        chunk = items[start : start + size]
        more = start + size < len(items)
        body = {
            "count": len(items),
            "next": f"https://api.hilos.io/api/next?page={page + 1}" if more else None,
            "previous": None,
            "results": [_public(item) for item in chunk] if public else chunk,
        }
        return 200, {}, json.dumps(body)


def _public(execution: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in execution.items() if not name.startswith("_")}


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)
