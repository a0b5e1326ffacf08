"""The HTTP edge shared by the API's functions: JSON and problem responses, body reading, nextLink, and
the one boundary that turns any failure into a problem document (never a stack trace, never a secret).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import azure.functions as func

from shared.api.parsing import read_json_object
from shared.api.problems import PROBLEM_MEDIA_TYPE, ApiProblem, internal_error, problem_from_domain
from shared.errors import ActionableError, DomainError
from shared.settings import SettingsError

log = logging.getLogger("memsync.api")

Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]
_NO_STORE = {"Cache-Control": "no-store"}


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        headers={**_NO_STORE, **(headers or {})},
        mimetype="application/json",
        charset="utf-8",
    )


def problem_response(problem: ApiProblem) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(problem.to_json(), separators=(",", ":"), ensure_ascii=False),
        status_code=problem.status,
        headers={**_NO_STORE, **problem.headers},
        mimetype=PROBLEM_MEDIA_TYPE,
        charset="utf-8",
    )


def read_body(req: func.HttpRequest, *, required: bool = True) -> dict[str, Any] | None:
    return read_json_object(req.headers.get("content-type"), req.get_body() or b"", required=required)


def next_link(req: func.HttpRequest, query: Mapping[str, object]) -> str:
    """This URL with `query` (the validated parameters and the new continuation) as its query string.

    The link is absolute only when the request came in through the host name the platform gives the
    app (`WEBSITE_HOSTNAME`: https://learn.microsoft.com/azure/app-service/reference-app-settings ;
    Core Tools and the devstack host set it to the address they serve). Any other `Host` header (a
    custom domain, or a forged one) gets a relative link (path and query), resolved against the URL the
    client asked: a `Host` header is never reflected into a link a client follows with its key.

    The function key is not carried over (`code` would put a credential into every page); send it in
    the x-functions-key header when following nextLink.
    """
    parts = urlsplit(req.url)
    pairs = {
        k: ("true" if v is True else "false" if v is False else str(v))
        for k, v in query.items()
        if v is not None
    }
    served = os.environ.get("WEBSITE_HOSTNAME", "").strip().lower()
    if served and parts.netloc.lower() == served:
        return str(urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), "")))
    return str(urlunsplit(("", "", parts.path, urlencode(pairs), "")))


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"


def problem_boundary(handler: Handler) -> Handler:
    """Every outcome of `handler` as an HTTP response; unexpected exceptions become a 500 problem.

    Only the exception's type and where it was raised are logged: arguments and messages of errors
    from SDKs may carry request data, and a request may carry a secret.
    """
    @functools.wraps(handler)
    async def boundary(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return await handler(req)
        except ApiProblem as problem:
            return problem_response(problem)
        except DomainError as exc:
            # What the service refused (not found, conflict, ...), said as the API says it.
            return problem_response(problem_from_domain(exc))
        except ActionableError as exc:
            # A dependency (vault, Entra) said what is wrong and what to do; not the client's fault.
            log.warning("%s answered 503: %s", handler.__name__, exc.code.value)
            return problem_response(problem_from_domain(exc))
        except SettingsError as exc:
            # The message names the setting, never its value (shared.settings).
            return problem_response(
                ApiProblem(503, "memsync is not configured", str(exc), [], "not-configured")
            )
        except Exception as exc:  # noqa: BLE001  # the one catch-all of the API: a problem document, not a 500 page
            reference = uuid.uuid4().hex[:12]
            log.error(
                "%s failed with %s at %s (reference %s)",
                handler.__name__,
                type(exc).__name__,
                _where(exc),
                reference,
            )
            return problem_response(internal_error(reference))

    return boundary
