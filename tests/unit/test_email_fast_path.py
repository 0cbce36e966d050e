"""The plain-email fast path in models.py may only accept what email-validator accepts."""

import pytest
from email_validator import EmailNotValidError, validate_email

from hilos_runner.models import is_plain_email

ADDRESSES = [
    "ana@example.com",
    "ana.maria+promo@mail.example.co",
    "o'brien@example.ie",
    "x@y.io",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "ana@localhost",
    "ana@printer.local",
    "ana@example.test",
    "ana@example.invalid",
    "ana@sub.example.arpa",
    "ana@ab--cd.com",
    "ana@xn--bcher-kva.example",
    "ana@example.c0m",
    "ana@-example.com",
    "ana@example-.com",
    "ana..b@example.com",
    ".ana@example.com",
    "ana.@example.com",
    "ana@example",
    "ana@123.456",
    "ana@[127.0.0.1]",
    '"ana b"@example.com',
    "ana@exámple.com",
    "ána@example.com",
    "ana@" + "a" * 64 + ".com",
    "ana@" + ".".join(["abcdefghi"] * 30) + ".com",
    "",
    "@example.com",
    "ana@",
]


def email_validator_accepts(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@pytest.mark.parametrize("address", ADDRESSES)
def test_fast_path_never_accepts_what_email_validator_refuses(address: str):
    if is_plain_email(address):
        assert email_validator_accepts(address), address


def test_fast_path_takes_the_common_addresses():
    # The point of the fast path: ordinary addresses must not fall through to the slow validator.
    assert is_plain_email("ana@example.com")
    assert is_plain_email("ana.maria+promo@mail.example.co")
