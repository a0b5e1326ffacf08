"""RFC 9457 problem documents (`application/problem+json`), as docs/api.md (Errors) shapes them.

Every 4xx and 5xx the API sends is one `ApiProblem`: `type`, `title`, `status`, `detail` and `errors`, a
list of `{field, code, message, action}`. A validation failure lists every bad field at once. Nothing a
client sent is ever copied into a message: pydantic's `input` (which would echo a secret) is dropped and
messages are built from field names and our own text only.
https://www.rfc-editor.org/rfc/rfc9457
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import (
    ActionableError,
    ChangedMeanwhile,
    Conflict,
    ConsentFailed,
    CredentialsRejected,
    DomainError,
    ErrorCode,
    ErrorInfo,
    FieldProblem,
    InvalidInput,
    NotFound,
    PartnerTokenRefused,
    PreconditionFailed,
    ServiceUnavailable,
    SigninNotStarted,
)

if TYPE_CHECKING:
    from pydantic import ValidationError

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "urn:memsync:problem:"
_MAX_FIELD_CHARS = 100  # an unknown field's name is client text; keep what we echo short


@dataclass(frozen=True)
class FieldError:
    """One entry of `errors[]`: which input, what is wrong with it, and what the person should do.

    The API's own checks (media type, JSON, GUIDs, query parameters) use codes of their own; what the domain
    refused arrives as a `FieldProblem` (`of`)."""

    field: str
    code: str
    message: str
    action: str

    @classmethod
    def of(cls, problem: FieldProblem) -> FieldError:
        return cls(problem.field, problem.code.value, problem.message, problem.action)

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message, "action": self.action}


@dataclass
class ApiProblem(Exception):
    """A request the API answers with a problem document; raised by the parsers, and made from what a
    service refused by `problem_from_domain`."""

    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    slug: str = "error"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.title)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": _TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "errors": [e.to_json() for e in self.errors],
        }


# Codes of values that are well-formed but cannot be accepted (an expiry date already past): a request
# whose every problem is one of these is a 422, RFC 9110 section 15.5.21; with any other problem, a 400.
UNPROCESSABLE_CODES = frozenset({"dateInPast"})


# Problem types. Each is a function so the detail can name the resource without echoing client input.
def invalid_request(errors: list[FieldError], detail: str | None = None) -> ApiProblem:
    count = len(errors)
    return ApiProblem(
        422 if errors and all(e.code in UNPROCESSABLE_CODES for e in errors) else 400,
        "The request is not valid",
        detail or f"{count} problem{'s' if count != 1 else ''} with the request; see errors[].",
        errors,
        "invalid-request",
    )


def malformed_json(reason: str) -> ApiProblem:
    return ApiProblem(
        400,
        "The body is not valid JSON",
        f"The request body could not be read as a JSON object: {reason}.",
        [
            FieldError(
                "body",
                "malformedJson",
                f"The body is not a JSON object: {reason}.",
                "Send one UTF-8 JSON object, as the OpenAPI document at /api/openapi.json describes.",
            )
        ],
        "malformed-json",
    )


def unsupported_media_type(allowed: str = "application/json") -> ApiProblem:
    return ApiProblem(
        415,
        "Unsupported media type",
        f"This operation accepts only {allowed} bodies.",
        [
            FieldError(
                "Content-Type",
                "unsupportedMediaType",
                f"The Content-Type header must be {allowed}.",
                f"Send the header 'Content-Type: {allowed}'.",
            )
        ],
        "unsupported-media-type",
    )


def body_too_large(limit: int) -> ApiProblem:
    return ApiProblem(
        413,
        "The body is too large",
        f"The request body exceeds {limit} bytes.",
        [
            FieldError(
                "body",
                "bodyTooLarge",
                f"The body may hold at most {limit} bytes.",
                "Send a smaller body; split large tenantFilter lists into include or exclude only.",
            )
        ],
        "body-too-large",
    )


def not_found(what: str, field_name: str, hint: str) -> ApiProblem:
    return ApiProblem(
        404,
        "Not found",
        f"No {what} with that id.",
        [FieldError(field_name, "notFound", f"No {what} with that id exists.", hint)],
        "not-found",
    )


def conflict(code: str, field_name: str, message: str, action: str) -> ApiProblem:
    return ApiProblem(409, "Conflict", message, [FieldError(field_name, code, message, action)], "conflict")


def credentials_rejected(errors: list[FieldError]) -> ApiProblem:
    return ApiProblem(
        422,
        "The credentials were not accepted",
        "memsync tried the credentials before storing anything; see errors[] for what Microsoft refused "
        "and how to fix it. Nothing was stored.",
        errors,
        "credentials-rejected",
    )


def internal_error(reference: str) -> ApiProblem:
    return ApiProblem(
        500,
        "Internal error",
        f"memsync could not complete the request (reference {reference}).",
        [
            FieldError(
                "",
                ErrorCode.INTERNAL.value,
                "An unexpected error occurred; nothing secret was logged.",
                f"Retry the request; if it keeps failing, search the function logs for {reference}.",
            )
        ],
        "internal-error",
    )


def service_unavailable(error: ActionableError | ErrorInfo, retry_after_seconds: int = 30) -> ApiProblem:
    info = error.info if isinstance(error, ActionableError) else error
    return ApiProblem(
        503,
        "A dependency is unavailable",
        info.message,
        [FieldError("", info.code.value, info.message, info.action)],
        "service-unavailable",
        {"Retry-After": str(retry_after_seconds)},
    )


def problem_from_domain(exc: DomainError | ActionableError) -> ApiProblem:
    """What a service refused (or a dependency's actionable failure), as the API's problem document."""
    if isinstance(exc, ActionableError):
        # A dependency (vault, Entra) said what is wrong and what to do; not the client's fault.
        return service_unavailable(exc)
    errors = [FieldError.of(p) for p in exc.problems]
    if isinstance(exc, NotFound):
        return ApiProblem(404, "Not found", exc.message, errors, "not-found")
    if isinstance(exc, Conflict):
        return ApiProblem(409, "Conflict", exc.message, errors, "conflict")
    if isinstance(exc, ChangedMeanwhile):
        return ApiProblem(412, "Precondition failed", exc.message, errors, "changed-meanwhile")
    if isinstance(exc, InvalidInput):
        return invalid_request(errors)
    if isinstance(exc, CredentialsRejected):
        return credentials_rejected(errors)
    if isinstance(exc, ServiceUnavailable):
        return service_unavailable(exc.error, exc.retry_after_seconds)
    if isinstance(exc, ConsentFailed):
        if exc.retriable:
            return ApiProblem(503, "The consent was not made", exc.message, errors, "consent-failed",
                              {"Retry-After": str(exc.retry_after_seconds)})
        return ApiProblem(422, "The consent was not made", exc.message, errors, "consent-failed")
    if isinstance(exc, SigninNotStarted):
        return ApiProblem(422, "The sign-in could not start", exc.message, errors, "signin-failed")
    if isinstance(exc, PreconditionFailed):
        return ApiProblem(422, "The request cannot be carried out yet", exc.message, errors,
                          "precondition-failed")
    if isinstance(exc, PartnerTokenRefused):
        return ApiProblem(502, "Entra ID refused the partner admin's token", exc.message, errors,
                          "signin-failed")
    return ApiProblem(400, "The request is not valid", exc.message, errors, "invalid-request")


# --- pydantic ValidationError -> errors[] -------------------------------------------------------------

# pydantic's error types mapped to our codes; our own validators raise PydanticCustomError whose type
# already is one of our codes (see shared.api.models).
_PYDANTIC_CODES = {
    "missing": "required",
    "extra_forbidden": "unknownField",
    "string_type": "invalidType",
    "bool_type": "invalidType",
    "list_type": "invalidType",
    "dict_type": "invalidType",
    "model_type": "invalidType",
    "model_attributes_type": "invalidType",
    "int_type": "invalidType",
    "int_parsing": "invalidType",
    "string_too_short": "invalidLength",
    "string_too_long": "invalidLength",
    "too_short": "invalidLength",
    "too_long": "invalidLength",
    "literal_error": "invalidValue",
    "enum": "invalidValue",
    "union_tag_invalid": "invalidValue",
    "union_tag_not_found": "required",
    "greater_than_equal": "outOfRange",
    "less_than_equal": "outOfRange",
}

_OWN_MESSAGES = {
    "required": "is required",
    "unknownField": "is not a field of this request",
    "invalidType": "has the wrong JSON type",
}


def _field_path(loc: tuple[int | str, ...], tags: frozenset[str]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif i == 0 and item in tags:
            continue  # the discriminated union's tag (multiTenant / singleTenant), not a field
        else:
            parts.append(("." if parts else "") + str(item))
    text = "".join(parts)
    return text if len(text) <= _MAX_FIELD_CHARS else text[: _MAX_FIELD_CHARS - 3] + "..."


def errors_from_validation(
    exc: ValidationError,
    *,
    hints: dict[str, str],
    tags: frozenset[str] = frozenset(),
    prefix: str = "",
) -> list[FieldError]:
    """Every validation failure as an `errors[]` entry; `input` and `ctx` are never used."""
    found: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        etype = str(err["type"])
        path = _field_path(tuple(err["loc"]), tags)
        if etype in ("union_tag_invalid", "union_tag_not_found"):
            path = "kind"
        path = prefix + path if path else (prefix.rstrip(".") or "body")
        code = _PYDANTIC_CODES.get(
            etype, etype if etype[:1].islower() and etype.isalnum() else "invalidValue"
        )
        # pydantic's own message never includes the input; ours (custom errors) are plain text too.
        message = _OWN_MESSAGES.get(code) if code in _OWN_MESSAGES else str(err["msg"])
        if code == "unknownField":
            action = "Remove the field; /api/openapi.json lists the fields this request accepts."
        else:
            leaf = path.split(".")[-1].split("[")[0]
            action = (
                hints.get(leaf) or hints.get(path) or "Correct the value; /api/openapi.json describes it."
            )
        key = (path, code)
        if key in seen:
            continue
        seen.add(key)
        found.append(FieldError(path, code, f"{path} {message}" if message else path, action))
    return found
