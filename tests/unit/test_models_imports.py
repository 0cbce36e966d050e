"""The email fast path's copy of email-validator's special-use domains, and the cold-start import it saves."""

import subprocess
import sys
from pathlib import Path

import email_validator

from hilos_runner import models

LAYER_DIR = Path(__file__).resolve().parents[2] / "layers" / "hilos_runner"


def test_the_special_use_domains_are_email_validators():
    assert frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES) == models.SPECIAL_USE_DOMAINS


def test_plain_addresses_do_not_import_email_validator_but_others_do():
    script = (
        "import sys\n"
        "from hilos_runner.models import Contact\n"
        "Contact(phone='+5215512345678', email='ana@example.com')\n"
        "assert 'email_validator' not in sys.modules, 'imported for a plain address'\n"
        "Contact(phone='+5215512345678', email='josé@example.com')\n"
        "assert 'email_validator' in sys.modules\n"
    )
    done = subprocess.run(  # noqa: S603  (our own fixed script)
        [sys.executable, "-c", script],
        cwd=LAYER_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
