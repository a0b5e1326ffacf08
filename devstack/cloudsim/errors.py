"""Error bodies, each in the shape its Microsoft service really uses."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from .timeutil import entra_timestamp, iso_seconds, utcnow

GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)


def json_bytes(body: Any, separators: tuple[str, str] | None = (",", ":")) -> bytes:
    """UTF-8 JSON as Microsoft's services send it. Text that holds a lone UTF-16 surrogate (a customer
    can store one through the APIs) has no UTF-8 form, so such a body travels as ASCII with `\\uXXXX`
    escapes, as JSON allows (RFC 8259 section 7)."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=separators).encode()
    except UnicodeEncodeError:
        return json.dumps(body, separators=separators).encode()


def json_response(
    body: Any,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json; charset=utf-8",
) -> web.Response:
    data = body if isinstance(body, bytes) else json_bytes(body, separators=None)
    response = web.Response(body=data, status=status, headers=headers)
    response.headers["Content-Type"] = content_type
    return response


def entra_error(
    status: int, error: str, code: int, description: str, *, extra_codes: list[int] | None = None
) -> web.Response:
    """Entra's token-endpoint error (aad-error-codes-reference-sample-error-response.json)."""
    now = utcnow()
    trace_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
            f"\r\nTimestamp: {entra_timestamp(now)}"
        ),
        "error_codes": [code, *(extra_codes or [])],
        "timestamp": entra_timestamp(now),
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return json_response(body, status=status, headers={"x-ms-request-id": trace_id})


def graph_error(
    status: int,
    code: str,
    message: str,
    *,
    request_id: str,
    client_request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Graph's error resource (https://learn.microsoft.com/graph/errors)."""
    inner: dict[str, Any] = {"date": iso_seconds(utcnow()).rstrip("Z"), "request-id": request_id}
    if client_request_id:
        inner["client-request-id"] = client_request_id
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return json_response(body, status=status, headers=headers, content_type="application/json")


def graph_throttled(*, request_id: str, retry_after: str | None, client_request_id: str | None = None) -> web.Response:
    """Body of graph-throttling-429-response-body.json; ``Retry-After`` may be fractional."""
    body = {
        "error": {
            "code": "TooManyRequests",
            "innerError": {
                "code": "429",
                "date": iso_seconds(utcnow()).rstrip("Z"),
                "message": "Please retry after",
                "request-id": request_id,
                "status": "429",
            },
            "message": "Please retry again later.",
        }
    }
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if client_request_id:
        headers["client-request-id"] = client_request_id
    return json_response(body, status=429, headers=headers, content_type="application/json")


def intune_message(message: str, url: str) -> str:
    """Intune wraps its own error object, serialized, in Graph's ``message``
    (OBSERVED-not-docs-intune-403-app-missing-permission-message.txt)."""
    return json.dumps(
        {
            "_version": 3,
            "Message": (
                f"{message} - Operation ID (for customer support): 00000000-0000-0000-0000-000000000000"
                f" - Activity ID: {uuid.uuid4()} - Url: {url}"
            ),
            "CustomApiErrorPhrase": "",
            "RetryAfter": None,
            "ErrorSourceService": "",
            "HttpHeaders": "{}",
        },
        indent=2,
    )


def defender_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """Defender's error shape (mde-error-*.json): code, message and the request id as target."""
    return json_response(
        {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}, status=status, headers=headers
    )


def partner_center_error(status: int, code: int, description: str, *, error_name: str = "") -> web.Response:
    body = {
        "code": code,
        "description": description,
        "errorName": error_name,
        "isRetryable": status >= 500 or status == 429,
        "data": [],
        "source": "PartnerFD",
    }
    return json_response(
        body, status=status, headers={"MS-CorrelationId": str(uuid.uuid4()), "MS-RequestId": str(uuid.uuid4())}
    )


def key_vault_error(
    status: int, code: str, message: str, *, inner: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """Key Vault's `KeyVaultError`: `{"error": {"code", "message", "innererror": {"code"}}}`, the inner error
    spelt `innererror` on the wire (azure-rest-api-specs, keyvault data-plane 7.4 `common.json`: the `Error`
    definition; `innerError` is only its client-side name)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return json_response({"error": error}, status=status, headers=headers)


def sim_error(status: int, message: str) -> web.Response:
    return json_response({"error": {"code": "SimulatorError", "message": message}}, status=status)
