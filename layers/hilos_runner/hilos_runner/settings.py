"""Environment read once into a validated, immutable settings object.

Every knob of the service is an environment variable named like the field in upper case
(``hilos_api_url`` -> ``HILOS_API_URL``). A bad value fails the cold start loudly with the
variable named, instead of failing the first request in a confusing way.
"""

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from functools import cache
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from hilos_runner.errors import ConfigurationError
from hilos_runner.models import MAX_CONTACTS_PER_RUN


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    # Hilos upstream
    hilos_api_url: str = "https://api.hilos.io/api"
    hilos_run_path: str = "/flow/{flow_id}/run"
    hilos_execution_path: str = "/flow-execution/{execution_id}"
    # Hilos' lists, read to find a run whose answer was lost (reconciliation).
    hilos_executions_path: str = "/flow-execution"
    hilos_execution_contacts_path: str = "/flow-execution-contact"
    hilos_connect_timeout_seconds: float = Field(default=3.05, gt=0, le=30)
    # Stays below API Gateway's 30 s integration limit so a slow Hilos becomes our 504, not theirs.
    hilos_read_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    # Connection failures (nothing was sent) are retried this many times inside one call.
    hilos_connect_retries: int = Field(default=2, ge=0, le=5)
    # A status read is retried on read timeouts too (it is a GET), up to hilos_connect_retries times: with
    # this timeout every attempt together still fits API Gateway's 30 s (GET /runs/{id}?refresh=true).
    hilos_status_read_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Hilos token in Secrets Manager (name or ARN); the value is the bare token or {"token": "..."}
    hilos_token_secret_id: str = ""
    hilos_token_max_age_seconds: int = Field(default=300, ge=0, le=86_400)

    # DynamoDB
    executions_table_name: str = ""
    idempotency_table_name: str = ""
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)
    record_ttl_days: int = Field(default=90, ge=1, le=3650)

    # API limits
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=6_000_000)
    # POST /flows/{id}/bulk-runs takes whole contact files. Lambda's synchronous payload limit is 6 MB
    # for the whole event, in which the body is a JSON string (quotes escaped): 5 MB leaves room.
    bulk_max_body_bytes: int = Field(default=5_000_000, ge=1024, le=6_000_000)
    # Validating a contact costs ~0.1 ms of CPU: 20,000 stay well inside API Gateway's 30 s. Larger
    # lists: several submits, or the CLI (no limit), which puts them on the queue directly.
    bulk_max_contacts: int = Field(default=20_000, ge=1, le=100_000)

    # A contact's phone without a country code is taken as a number of this country (ISO 3166-1 alpha-2,
    # e.g. MX); unset, such a phone is refused (hilos_runner.phones).
    default_phone_country: str | None = None

    # Queued runs (SQS)
    runs_queue_url: str = ""
    # Contacts per queued message and per Hilos call (README, "Chunk size").
    bulk_chunk_size: int = Field(default=250, ge=1, le=MAX_CONTACTS_PER_RUN)
    # Records of one SQS batch processed at the same time by one worker invocation.
    worker_concurrency: int = Field(default=10, ge=1, le=64)
    # Time kept free after a Hilos call's worst case (connect retries + read timeout) for bookkeeping.
    worker_call_margin_seconds: float = Field(default=5.0, ge=0, le=120)
    # A failed record comes back after base * 2^(attempt-1) seconds, or after Hilos' Retry-After,
    # never later than the cap (SQS allows at most 12 h of visibility timeout per message).
    retry_base_delay_seconds: int = Field(default=10, ge=0, le=43_200)
    retry_after_max_seconds: int = Field(default=300, ge=1, le=43_200)
    # The queue's redrive maxReceiveCount: the attempt that reaches it is the last one.
    max_receive_count: int = Field(default=5, ge=1, le=1000)

    # Status sync (runs Hilos accepted, until Hilos finishes them)
    status_sync_batch_limit: int = Field(default=200, ge=1, le=10_000)  # records per scheduled invocation
    # A run is looked at again after a tenth of its age, within these bounds: a young run shows progress
    # within a minute or two, a long-running one costs a Hilos read an hour.
    status_sync_min_interval_seconds: int = Field(default=60, ge=0, le=86_400)
    status_sync_max_interval_seconds: int = Field(default=3600, ge=1, le=86_400)
    # Reconciliation: a run whose answer was lost (UNKNOWN, or SENDING past one call budget) is looked up in
    # Hilos' own lists (README, "Reliability"). "Not in Hilos" is concluded only this long after the send:
    # longer than any request Hilos might still be processing after we gave up on it.
    reconcile_grace_seconds: int = Field(default=300, ge=0, le=86_400)
    # Hilos' clock against ours: executions created this far outside the send window still count.
    reconcile_clock_skew_seconds: int = Field(default=120, ge=0, le=3600)
    # Resends of a run known not to have started (0: never resent; the run becomes FAILED "not started").
    reconcile_max_resends: int = Field(default=1, ge=0, le=5)
    # Pages of a flow's executions read per lookup; a lookup that would need more is inconclusive.
    reconcile_max_pages: int = Field(default=20, ge=1, le=1000)
    # A run still unresolved this long after its send counts in RunsUnresolved (alarmed).
    reconcile_alarm_after_seconds: int = Field(default=3600, ge=60, le=14 * 86_400)
    # How long the body sent to Hilos is kept (DynamoDB TTL) so a run found not started can be resent.
    request_body_ttl_hours: int = Field(default=48, ge=1, le=24 * 14)

    # EventBridge bus that receives "Hilos Run Finished" events.
    completion_event_bus_name: str = Field(default="default", min_length=1, max_length=1600)

    @field_validator("hilos_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        HttpUrl(value)  # raises a ValidationError naming the variable when it is not a URL
        return value.rstrip("/")

    @field_validator("hilos_executions_path", "hilos_execution_contacts_path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if not re.fullmatch(r"/[^{}?#]*", value):
            raise ValueError("must start with '/' and contain no braces, '?' or '#'")
        return value.rstrip("/")

    @field_validator("hilos_run_path")
    @classmethod
    def _run_path_has_flow_id(cls, value: str) -> str:
        return _path_with_one_placeholder(value, "flow_id")

    @field_validator("hilos_execution_path")
    @classmethod
    def _execution_path_has_execution_id(cls, value: str) -> str:
        return _path_with_one_placeholder(value, "execution_id")

    @field_validator("default_phone_country")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        from hilos_runner.phones import is_region

        if not value:
            return None  # the template passes "" for "none"
        if not is_region(value.upper()):
            raise ValueError("must be an ISO 3166-1 alpha-2 country code with a calling code, e.g. MX")
        return value.upper()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Settings":
        values = {name: environ[name.upper()] for name in cls.model_fields if name.upper() in environ}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(f"invalid settings: {problems}") from None

    def run_url(self, flow_id: object) -> str:
        return self.hilos_api_url + self.hilos_run_path.format(flow_id=flow_id)

    def execution_url(self, execution_id: object) -> str:
        return self.hilos_api_url + self.hilos_execution_path.format(execution_id=execution_id)

    def executions_url(self) -> str:
        return self.hilos_api_url + self.hilos_executions_path

    def execution_contacts_url(self) -> str:
        return self.hilos_api_url + self.hilos_execution_contacts_path

    def revisit_after(self, age_seconds: float) -> timedelta:
        """When the status sync looks at a run again: after a tenth of its age, within the interval bounds."""
        seconds = min(
            max(age_seconds / 10, self.status_sync_min_interval_seconds), self.status_sync_max_interval_seconds
        )
        return timedelta(seconds=seconds)

    @property
    def hilos_status_read_budget_seconds(self) -> float:
        """The longest one status read can take (every attempt, connect and read), plus the margin."""
        attempts = 1 + self.hilos_connect_retries
        per_attempt = self.hilos_connect_timeout_seconds + self.hilos_status_read_timeout_seconds
        return attempts * per_attempt + self.worker_call_margin_seconds

    @property
    def hilos_call_budget_seconds(self) -> float:
        """The longest one Hilos call can take (every connect attempt, then the read), plus the margin."""
        connect = self.hilos_connect_timeout_seconds * (1 + self.hilos_connect_retries)
        return connect + self.hilos_read_timeout_seconds + self.worker_call_margin_seconds


class Deadline(Protocol):
    """The Lambda context's clock, which the call budgets above are held against."""

    def get_remaining_time_in_millis(self) -> int: ...


def has_time_for(deadline: Deadline, budget_seconds: float) -> bool:
    """True when the invocation has ``budget_seconds`` left: a call started now ends before the timeout."""
    return deadline.get_remaining_time_in_millis() >= budget_seconds * 1000


def _path_with_one_placeholder(value: str, name: str) -> str:
    if not re.fullmatch(r"/[^{}]*\{" + name + r"\}[^{}]*", value):
        raise ValueError(f"must start with '/' and contain '{{{name}}}' and no other braces")
    return value


@cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env(os.environ)
