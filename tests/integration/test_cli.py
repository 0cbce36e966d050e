"""`hilos-runner` in-process against moto's SQS (and CloudFormation for --stack-name)."""

import csv
import io
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from hilos_runner.messages import QueuedRun, queued_run_json_schema
from hilos_runner_cli import main as cli
from hilos_runner_cli.api_commands import API_TOKEN_VARIABLE
from tests.helpers import FLOW_ID, RunsQueue, run_body

pytestmark = pytest.mark.usefixtures("aws")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_the_console_script_is_declared():
    (script,) = entry_points(group="console_scripts", name="hilos-runner")
    assert script.load() is cli.main


def test_a_2500_contact_csv_is_validated_chunked_and_sent(
    tmp_path: Path, runs_queue: RunsQueue, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BULK_MAX_CONTACTS", "1000")  # the API's limit; files given to the CLI have none
    rows = run_body(2500)["contact_list"]
    path = write_csv(tmp_path / "contacts.csv", rows, ["phone", "first_name"])

    status, out, err = run("enqueue", "--flow-id", FLOW_ID, "--queue-url", runs_queue.url, str(path))

    assert status == 0, err
    assert "contacts:       2500" in out
    assert "chunks:         10 (at most 250 contacts each)" in out
    assert "messages sent:  10" in out
    messages = [QueuedRun.model_validate(body) for body in runs_queue.take_bodies()]
    assert len(messages) == 10
    sent = sorted((c.phone for m in messages for c in m.contact_list), key=str)
    assert sent == sorted(row["phone"] for row in rows)
    assert all(str(m.flow_id) == FLOW_ID and m.bulk_id is None and m.idempotency_key is None for m in messages)


def test_bad_rows_are_all_reported_and_nothing_is_sent(tmp_path: Path, runs_queue: RunsQueue):
    rows = run_body(30)["contact_list"]
    rows[4]["phone"] = ""
    rows[11]["email"] = "nope"
    rows[29]["email"] = "also@nope"
    path = write_csv(tmp_path / "contacts.csv", rows, ["phone", "first_name", "email"])

    status, out, err = run("enqueue", "--flow-id", FLOW_ID, "--queue-url", runs_queue.url, str(path))

    assert status == 1
    assert out == ""
    assert "3 of 30 rows are not valid; nothing was queued" in err
    assert [line.split(":")[0].strip() for line in err.splitlines()[1:]] == ["row 6", "row 13, email", "row 31, email"]
    assert runs_queue.take_bodies() == []


def test_a_json_list_with_options_and_an_idempotency_key(tmp_path: Path, runs_queue: RunsQueue):
    path = tmp_path / "contacts.json"
    path.write_text(json.dumps(run_body(300)["contact_list"]))

    status, _, err = run(
        "enqueue",
        "--flow-id",
        FLOW_ID,
        "--queue-url",
        runs_queue.url,
        "--chunk-size",
        "100",
        "--has-priority",
        "--variables",
        '{"campaign": "spring"}',
        "--idempotency-key",
        "crm-2026-01",
        str(path),
    )

    assert status == 0, err
    messages = sorted(runs_queue.take_bodies(), key=lambda m: m["idempotency_key"])
    assert [m["idempotency_key"] for m in messages] == ["crm-2026-01-0", "crm-2026-01-1", "crm-2026-01-2"]
    assert all(m["has_priority"] is True and m["flow_execution_variables"] == {"campaign": "spring"} for m in messages)
    assert [len(m["contact_list"]) for m in messages] == [100, 100, 100]


def test_the_queue_comes_from_the_local_stack_file_by_default(tmp_path: Path, runs_queue: RunsQueue):
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(json.dumps({"queue_url": runs_queue.url, "aws_region": "us-east-1"}))
    path = write_csv(tmp_path / "c.csv", run_body(2)["contact_list"], ["phone", "first_name"])

    status, out, _ = run("enqueue", "--flow-id", FLOW_ID, "--stack-file", str(stack_file), str(path))

    assert status == 0
    assert f"queue:          {runs_queue.url}" in out
    assert len(runs_queue.take_bodies()) == 1


def test_the_queue_comes_from_a_deployed_stacks_output(tmp_path: Path, runs_queue: RunsQueue):
    import boto3

    boto3.client("cloudformation").create_stack(
        StackName="hilos-runner-dev",
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"RunsQueueUrl": {"Value": runs_queue.url}},
            }
        ),
    )
    path = write_csv(tmp_path / "c.csv", run_body(2)["contact_list"], ["phone", "first_name"])

    status, _, err = run("enqueue", "--flow-id", FLOW_ID, "--stack-name", "hilos-runner-dev", str(path))

    assert status == 0, err
    assert len(runs_queue.take_bodies()) == 1


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--stack-file", "/nonexistent/stack.json", "{file}"], "no local stack"),
        (["--queue-url", "https://q", "{dir}/contacts.xlsx"], "use a .csv or .json file"),
        (["--queue-url", "https://q", "{dir}/missing.csv"], "missing.csv"),
        (["--stack-name", "no-such-stack", "{file}"], "cannot read stack 'no-such-stack'"),
    ],
)
def test_usage_problems_are_one_line_and_exit_2(tmp_path: Path, argv: list[str], complaint: str):
    path = write_csv(tmp_path / "c.csv", run_body(1)["contact_list"], ["phone", "first_name"])
    argv = [a.format(file=path, dir=tmp_path) for a in argv]

    status, _, err = run("enqueue", "--flow-id", FLOW_ID, *argv)

    assert status == 2
    assert complaint in err


def test_schema_prints_the_committed_schema(tmp_path: Path):
    status, out, _ = run("schema")
    assert status == 0
    assert out == queued_run_json_schema()
    assert run("schema", "--output", str(tmp_path / "s.json"))[0] == 0
    assert (tmp_path / "s.json").read_text() == out


def test_schema_event_prints_the_completion_event_schema(tmp_path: Path):
    from hilos_runner.completion_events import run_finished_json_schema

    status, out, _ = run("schema", "--event")
    assert status == 0
    assert out == run_finished_json_schema()
    assert out != queued_run_json_schema()
    assert run("schema", "--event", "--output", str(tmp_path / "e.json"))[0] == 0
    assert (tmp_path / "e.json").read_text() == out


def test_dry_run_checks_the_file_says_what_it_would_send_and_sends_nothing(tmp_path: Path, runs_queue: RunsQueue):
    rows = run_body(600)["contact_list"]
    rows[500]["phone"] = rows[3]["phone"].replace("+52", "+52 ")  # the same phone, spelled otherwise
    path = write_csv(tmp_path / "contacts.csv", rows, ["phone", "first_name"])

    status, out, err = run("enqueue", "--flow-id", FLOW_ID, "--queue-url", runs_queue.url, "--dry-run", str(path))

    assert status == 0, err
    assert "contacts:       599" in out
    assert "chunks:         3 (at most 250 contacts each)" in out
    assert "messages sent:  0 (--dry-run: nothing was sent)" in out
    assert "duplicates removed: 1" in err
    assert "row 502: same phone as row 5" in err
    assert runs_queue.take_bodies() == []


def test_on_duplicate_reject_refuses_the_file(tmp_path: Path, runs_queue: RunsQueue):
    rows = run_body(3)["contact_list"]
    rows[2]["phone"] = rows[0]["phone"]
    path = write_csv(tmp_path / "contacts.csv", rows, ["phone", "first_name"])

    status, _, err = run(
        "enqueue", "--flow-id", FLOW_ID, "--queue-url", runs_queue.url, "--on-duplicate", "reject", str(path)
    )

    assert status == 1
    assert "row 4: the same phone (or id) as row.2" in err
    assert runs_queue.take_bodies() == []


def test_contacts_and_retry_say_how_to_reach_the_api_when_they_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    run_id = "5b0e7c1a-2f7d-4c55-9a43-0d4e2a1b9c10"
    monkeypatch.delenv(API_TOKEN_VARIABLE, raising=False)
    for command in ("contacts", "retry"):
        status, _, err = run(command, run_id, "--stack-file", str(tmp_path / "none.json"))
        assert status == 2
        assert "no --api-url or --stack-name given and no local stack" in err

        status, _, err = run(command, run_id, "--api-url", "http://127.0.0.1:9")
        assert status == 2
        assert f"set {API_TOKEN_VARIABLE}" in err

    monkeypatch.setenv(API_TOKEN_VARIABLE, "a-jwt")
    status, _, err = run("contacts", run_id, "--api-url", "http://127.0.0.1:9")  # nothing listens on port 9
    assert status == 2
    assert "cannot reach the API at http://127.0.0.1:9" in err
    assert "a-jwt" not in err


def test_enqueue_prints_the_run_to_follow_for_each_message(tmp_path: Path, runs_queue: RunsQueue):
    from hilos_runner.worker import message_run_id

    path = write_csv(tmp_path / "c.csv", run_body(3)["contact_list"], ["phone", "first_name"])

    status, out, err = run(
        "enqueue", "--flow-id", FLOW_ID, "--queue-url", runs_queue.url, "--chunk-size", "2", str(path)
    )

    assert status == 0, err
    import boto3

    sent = boto3.client("sqs").receive_message(QueueUrl=runs_queue.url, MaxNumberOfMessages=10)["Messages"]
    expected = sorted(f"run:            {message_run_id(m['MessageId'])} (message {m['MessageId']})" for m in sent)
    assert len(expected) == 2
    assert sorted(line for line in out.splitlines() if line.startswith("run:")) == expected
    assert "follow:         GET /runs/<run id>" in out


def test_a_stack_name_without_a_region_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    path = write_csv(tmp_path / "c.csv", run_body(1)["contact_list"], ["phone", "first_name"])

    status, _, err = run("enqueue", "--flow-id", FLOW_ID, "--stack-name", "hilos-runner-dev", str(path))

    assert status == 2
    assert err == "hilos-runner: --stack-name hilos-runner-dev needs a region: give --region, or set AWS_REGION\n"


def test_an_aws_error_is_one_line_and_exit_1(runs_queue: RunsQueue):
    missing = runs_queue.url.rsplit("/", 1)[0] + "/no-such-queue"

    status, _, err = run("events", "--queue-url", missing, "--wait", "1")

    assert status == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hilos-runner: AWS refused ReceiveMessage: ")


def test_a_queue_that_refuses_the_messages_is_reported_per_chunk(tmp_path: Path, runs_queue: RunsQueue):
    path = write_csv(tmp_path / "c.csv", run_body(1)["contact_list"], ["phone", "first_name"])
    missing = runs_queue.url.rsplit("/", 1)[0] + "/no-such-queue"

    status, out, err = run("enqueue", "--flow-id", FLOW_ID, "--queue-url", missing, str(path))

    assert status == 1
    assert "messages sent:  0" in out
    assert "run:" not in out
    assert "chunk 0: AWS.SimpleQueueService.NonExistentQueue" in err
