"""The Hilos token, read from Secrets Manager through Powertools parameters.

Cached in the process for ``max_age`` seconds; a 401/403 from Hilos forces one fresh read (the
secret may have been rotated). The token is only ever returned to the Hilos client: it is not
logged, not put into exceptions, and ``repr`` of this object does not show it.
"""

import json
from typing import TYPE_CHECKING

from hilos_runner.errors import ConfigurationError, DependencyUnavailableError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

# Secrets Manager error codes that mean "the deployment is wrong", not "try again later".
_CONFIGURATION_ERROR_CODES = {
    "ResourceNotFoundException",
    "AccessDeniedException",
    "AccessDeniedError",
    "DecryptionFailure",
    "InvalidRequestException",
    "ValidationException",
}


class HilosTokenSource:
    def __init__(self, provider: "SecretsProvider", secret_id: str, max_age_seconds: int) -> None:
        if not secret_id:
            raise ConfigurationError("HILOS_TOKEN_SECRET_ID is not set")
        self._provider = provider
        self._secret_id = secret_id
        self._max_age = max_age_seconds

    def __repr__(self) -> str:
        return f"HilosTokenSource(secret_id={self._secret_id!r})"

    def get(self, *, force_refresh: bool = False) -> str:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            raw = self._provider.get(self._secret_id, max_age=self._max_age, force_fetch=force_refresh)
        except GetParameterError as exc:
            raise _secret_read_error(exc, self._secret_id) from None
        return _token_from_secret(raw, self._secret_id)


def _secret_read_error(exc: Exception, secret_id: str) -> Exception:
    # Powertools re-raises the botocore error inside its except block: it is the context.
    cause = exc.__cause__ or exc.__context__
    code = getattr(cause, "response", {}).get("Error", {}).get("Code", "")
    if code in _CONFIGURATION_ERROR_CODES:
        return ConfigurationError(
            f"the Hilos token secret {secret_id!r} cannot be read ({code}); "
            "check that it exists, holds a value and that the function may read it"
        )
    return DependencyUnavailableError(f"Secrets Manager is unavailable ({code or type(cause).__name__})")


def _token_from_secret(raw: object, secret_id: str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode()
    if not isinstance(raw, str):
        raise ConfigurationError(f"the Hilos token secret {secret_id!r} does not hold text")
    token = raw.strip()
    if token.startswith("{"):
        try:
            token = str(json.loads(token).get("token") or "").strip()  # {"token": null} holds no token
        except (ValueError, AttributeError):
            # The parser's message may quote the secret: say what is wrong without it.
            raise ConfigurationError(
                f'the Hilos token secret {secret_id!r} is neither a bare token nor JSON {{"token": "..."}}'
            ) from None
    if not token:
        raise ConfigurationError(f"the Hilos token secret {secret_id!r} holds no token")
    if token.lower().startswith("token "):
        token = token[6:].strip()  # people paste the whole header value; accept it
    return token
