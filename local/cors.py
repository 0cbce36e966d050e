"""CORS as API Gateway's HTTP APIs do it, from the template's own ``CorsConfiguration``.

One reader, ``cors_policy``, turns the HttpApi's ``CorsConfiguration`` (intrinsics resolved with the stack's
parameters, so ``CorsAllowedOrigins`` counts) into a ``CorsPolicy``; the local HTTP front answers with it and
the template tests compare it with what SAM deploys (``x-amazon-apigateway-cors``).

What API Gateway does with a CORS configuration, and so the front:
- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered by the gateway
  itself, before any route or authorizer: 204, with the ``Access-Control-Allow-*`` headers and ``Max-Age``
  only when the origin is one of the allowed ones;
- any other request that carries an allowed ``Origin`` gets ``Access-Control-Allow-Origin`` (and the exposed
  headers) added to whatever answers it, the function or the gateway (401, 404); CORS headers the function
  sets itself are dropped; a request from any other origin gets no CORS header at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from local.template import StackResources

_API_TYPE = "AWS::Serverless::HttpApi"


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any]) -> CorsPolicy:
        """From SAM's ``CorsConfiguration`` (AllowOrigins, ...) with its intrinsics already resolved."""

        def names(key: str) -> tuple[str, ...]:
            return tuple(str(value) for value in configuration.get(key) or ())

        max_age = configuration.get("MaxAge")
        return cls(
            allow_origins=names("AllowOrigins"),
            allow_methods=names("AllowMethods"),
            allow_headers=names("AllowHeaders"),
            expose_headers=names("ExposeHeaders"),
            max_age=int(max_age) if max_age is not None else None,
            allow_credentials=bool(configuration.get("AllowCredentials", False)),
        )

    def allows(self, origin: str | None) -> bool:
        # Origins compare as the browser sends them: scheme, host and port, exactly (no wildcards: the
        # template's parameter pattern refuses them).
        return bool(origin) and origin in self.allow_origins

    @staticmethod
    def is_preflight(method: str, header_names: Iterable[str]) -> bool:
        lowered = {name.lower() for name in header_names}
        return method.upper() == "OPTIONS" and {"origin", "access-control-request-method"} <= lowered

    def preflight_headers(self, origin: str | None) -> dict[str, str]:
        """The headers of the gateway's 204 to a preflight from ``origin`` (none for an origin not allowed)."""
        return self._headers(
            origin,
            {
                "Access-Control-Allow-Methods": ",".join(self.allow_methods),
                "Access-Control-Allow-Headers": ",".join(self.allow_headers),
                "Access-Control-Max-Age": "" if self.max_age is None else str(self.max_age),
            },
        )

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """What the gateway adds to an actual answer for a request from ``origin``."""
        return self._headers(origin, {"Access-Control-Expose-Headers": ",".join(self.expose_headers)})

    def _headers(self, origin: str | None, specific: dict[str, str]) -> dict[str, str]:
        """The headers every CORS answer to an allowed ``origin`` has, plus ``specific`` ones that have a value."""
        if not self.allows(origin):
            return {}
        headers = {"Access-Control-Allow-Origin": str(origin)}
        headers.update((name, value) for name, value in specific.items() if value)
        if self.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers


def cors_policy(stack: StackResources) -> CorsPolicy | None:
    """The CORS policy of the stack's HTTP API (its one ``AWS::Serverless::HttpApi``), or None without one."""
    apis = stack.resources_of_type(_API_TYPE)
    if len(apis) != 1:
        raise ValueError(f"expected one {_API_TYPE} in the template, found {len(apis)}")
    (api,) = apis.values()
    configuration = stack.resolve(api.get("Properties", {}).get("CorsConfiguration"))
    if not configuration:  # absent, or Fn::If resolved to AWS::NoValue
        return None
    if configuration is True:
        raise ValueError("CorsConfiguration: true (every origin) is not modelled; list the origins")
    return CorsPolicy.from_configuration(configuration)


def without_cors_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A function's answer headers less its own CORS headers: the gateway's configuration replaces them."""
    return {name: value for name, value in headers.items() if not name.lower().startswith("access-control-")}
