"""A contact's phone: the formatting people type in, the digits Hilos gets.

``normalise("+52 1 (55) 1234-5678")`` is ``"+5215512345678"``: spaces, dashes, dots and parentheses are
dropped, the digits are kept exactly as typed. Nothing is added to or taken from the number itself: WhatsApp
ids keep their country quirks (Mexican mobiles as ``+52 1 …``, Argentinian ones as ``+54 9 …``), and a
trunk prefix typed after a country code is the caller's to fix, not ours to guess.

A number is "possibly a phone number" when its country calling code exists and the digits after it have a
length some number of that country has (libphonenumber's metadata, copied into hilos_runner.phone_data). A
number typed without ``+`` has no country code: it is refused, unless DEFAULT_PHONE_COUNTRY names the country
to assume, whose calling code is then put in front of the digits as typed.
"""

import re

from hilos_runner.phone_data import CALLING_CODES, POSSIBLE_LENGTHS

# What people type around the digits. Anything else (letters, "ext.", NUL, "/", "#") is not a phone number.
_TYPED = re.compile(r"\+?[0-9 .()\-]+")
_FORMATTING = str.maketrans("", "", " .()-+")
# E.164: at most 15 digits, country code included.
MAX_DIGITS = 15
# WhatsApp ids of Mexican mobiles keep the "1" Mexico dropped from dialling in 2019 (libphonenumber no
# longer knows it): +52 1 plus the 10 digits of the national number.
_WHATSAPP_MOBILE_PREFIXES = {"52": "1"}


class PhoneError(ValueError):
    """Why a text is not a phone number; the message is meant for the caller."""


def normalise(text: str, default_country: str | None = None) -> str:
    """``text`` as ``+<digits>``; raises ``PhoneError`` saying why it is not a phone number."""
    typed = text.strip()
    if not _TYPED.fullmatch(typed):
        raise PhoneError("not a phone number: use digits, an optional leading +, spaces, dashes, dots, parentheses")
    digits = typed.translate(_FORMATTING)
    if not digits:
        raise PhoneError("not a phone number: no digits")
    if typed.startswith("+"):
        code = _calling_code_of(digits)
        national = digits[len(code) :]
    elif digits.startswith("00"):
        raise PhoneError("write the international prefix 00 as +, e.g. +52 55 1234 5678")
    elif default_country is None:
        raise PhoneError(
            "no country code: start the number with + and its country code (e.g. +52 55 1234 5678), or set "
            "DEFAULT_PHONE_COUNTRY"
        )
    else:
        code, national = CALLING_CODES[default_country], digits
        digits = code + digits
    _check_length(code, national)
    return "+" + digits


def _calling_code_of(digits: str) -> str:
    # Country calling codes are a prefix code: at most one of the first 1, 2 or 3 digits is assigned.
    for length in (1, 2, 3):
        if digits[:length] in POSSIBLE_LENGTHS:
            return digits[:length]
    raise PhoneError(f"+{digits[:3]}… is not a country calling code")


def _check_length(code: str, national: str) -> None:
    lengths = POSSIBLE_LENGTHS[code]
    if len(code) + len(national) > MAX_DIGITS:
        raise PhoneError(f"has {len(code) + len(national)} digits; a phone number has at most {MAX_DIGITS}")
    if len(national) in lengths:
        return
    mobile = _WHATSAPP_MOBILE_PREFIXES.get(code)
    if mobile and national.startswith(mobile) and len(national) - len(mobile) in lengths:
        return
    expected = " or ".join(str(length) for length in lengths)
    raise PhoneError(f"+{code} numbers have {expected} digits after the country code, this one has {len(national)}")


def schema_pattern() -> str:
    """The regular expression (JSON Schema ``pattern``) of the phones ``normalise`` takes without a default
    country: what generated clients and testers see in the OpenAPI document. Built from the same tables."""
    formatting = r"[ .()\-]*"
    digit = "[0-9]" + formatting
    countries = []
    for code, lengths in POSSIBLE_LENGTHS.items():
        counts = [length for length in lengths if len(code) + length <= MAX_DIGITS]
        mobile = _WHATSAPP_MOBILE_PREFIXES.get(code)
        national = [f"(?:{digit}){{{count}}}" for count in counts]
        if mobile:
            national += [
                f"{mobile}{formatting}(?:{digit}){{{count}}}" for count in counts if len(code) + count < MAX_DIGITS
            ]
        prefix = "".join(character + formatting for character in code)
        countries.append(f"{prefix}(?:{'|'.join(national)})")
    return rf"^\s*\+{formatting}(?:{'|'.join(countries)})\s*$"


def is_region(value: str) -> bool:
    """True for an ISO 3166-1 alpha-2 region that has a calling code (DEFAULT_PHONE_COUNTRY's values)."""
    return value in CALLING_CODES
