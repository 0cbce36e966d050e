"""Phones: the formatting people type, + and the digits as typed, a country code that exists and a length that
country has; DEFAULT_PHONE_COUNTRY for numbers without a country code. The copied libphonenumber tables are the
pinned phonenumbers' own."""

import pytest

from hilos_runner.phone_data import PHONENUMBERS_VERSION
from hilos_runner.phones import PhoneError, normalise
from tests.phone_data import PHONE_DATA_FILE, render


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("+5215512345678", "+5215512345678"),  # WhatsApp's Mexican mobile id keeps its 1
        ("+52 1 (55) 1234-5678", "+5215512345678"),
        ("+52 55 1234 5678", "+525512345678"),  # and one without it stays without it
        ("  +1 415.555.0100 ", "+14155550100"),
        ("+54 9 11 1234-5678", "+5491112345678"),  # Argentinian mobile with its 9
        ("+44 7700 900123", "+447700900123"),
        ("+491234567890123", "+491234567890123"),  # 15 digits: E.164's most
    ],
)
def test_formatting_is_dropped_and_the_digits_kept_as_typed(typed: str, sent: str):
    assert normalise(typed) == sent


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("abc", "not a phone number"),
        ("call me maybe", "not a phone number"),
        ("+52155\x0012345678", "not a phone number"),
        ("+52 55 1234 5678 ext. 12", "not a phone number"),
        ("", "not a phone number"),
        ("()", "no digits"),
        ("(55) 1234 5678", "no country code"),
        ("0052 55 1234 5678", "write the international prefix 00 as +"),
        ("+999 1234 5678", "+999… is not a country calling code"),
        ("+52 55 1234", "+52 numbers have 10 digits after the country code, this one has 6"),
        ("+52 2 55 1234 5678", "this one has 11"),  # only a 1 may precede a Mexican mobile's 10 digits
        ("+4912345678901234", "has 16 digits; a phone number has at most 15"),
    ],
)
def test_what_is_not_a_phone_number_is_refused_saying_why(typed: str, reason: str):
    with pytest.raises(PhoneError) as refused:
        normalise(typed)
    assert reason in str(refused.value)


def test_a_default_country_puts_its_code_in_front_of_the_digits_as_typed():
    assert normalise("(55) 1234 5678", "MX") == "+525512345678"
    assert normalise("1 55 1234 5678", "MX") == "+5215512345678"
    assert normalise("+1 415 555 0100", "MX") == "+14155550100"  # a country code given wins
    with pytest.raises(PhoneError, match=r"\+52 numbers have 10 digits"):
        normalise("55 1234", "MX")


def test_default_phone_country_is_checked_at_cold_start():
    from hilos_runner.errors import ConfigurationError
    from hilos_runner.settings import Settings

    assert Settings.from_env({"DEFAULT_PHONE_COUNTRY": "mx"}).default_phone_country == "MX"
    assert Settings.from_env({}).default_phone_country is None
    assert Settings.from_env({"DEFAULT_PHONE_COUNTRY": ""}).default_phone_country is None  # the template's "none"
    with pytest.raises(ConfigurationError, match="DEFAULT_PHONE_COUNTRY"):
        Settings.from_env({"DEFAULT_PHONE_COUNTRY": "Mexico"})


def test_the_copied_tables_are_what_the_pinned_phonenumbers_renders():
    import phonenumbers

    assert phonenumbers.__version__ == PHONENUMBERS_VERSION
    assert PHONE_DATA_FILE.read_text() == render(), "run `python -m tests.phone_data`"


def test_phonenumbers_agrees_on_numbers_without_whatsapp_quirks():
    import phonenumbers

    for typed in ("+52 55 1234 5678", "+1 415 555 0100", "+44 7700 900123", "+54 9 11 1234 5678", "+55 11 91234 5678"):
        assert phonenumbers.is_possible_number(phonenumbers.parse(typed)), typed
        assert normalise(typed)
    for typed in ("+52 55 1234", "+1 415 555 01000", "+33 6 12"):
        assert not phonenumbers.is_possible_number(phonenumbers.parse(typed)), typed
        with pytest.raises(PhoneError):
            normalise(typed)
