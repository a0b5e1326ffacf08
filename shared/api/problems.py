"""RFC 9457 problem documents (`application/problem+json`), as CONTRACT section 3 shapes them.

Every 4xx and 5xx the API sends is one `ApiProblem`: `type`, `title`, `status`, `detail` and `errors`, a
list of `{field, code, message, action}`. A validation failure lists every bad field at once. Nothing a
client sent is ever copied into a message: pydantic's `input` (which would echo a secret) is dropped and
messages are built from field names and our own text only.
https://www.rfc-editor.org/rfc/rfc9457
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import ActionableError, ErrorCode

if TYPE_CHECKING:
    from pydantic import ValidationError

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "urn:memsync:problem:"
_MAX_FIELD_CHARS = 100  # an unknown field's name is client text; keep what we echo short

# Registration codes of CONTRACT section 3: what a credential check may answer.
CONTRACT_CREDENTIAL_CODES = frozenset(
    {
        ErrorCode.INVALID_SECRET,
        ErrorCode.SECRET_EXPIRED,
        ErrorCode.APP_NOT_FOUND_IN_TENANT,
        ErrorCode.CONSENT_MISSING,
        ErrorCode.PERMISSION_MISSING,
        ErrorCode.TENANT_NOT_FOUND,
        ErrorCode.UNREACHABLE,
    }
)


@dataclass(frozen=True)
class FieldError:
    """One entry of `errors[]`: which input, what is wrong with it, and what the person should do."""

    field: str
    code: str
    message: str
    action: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message, "action": self.action}


@dataclass
class ApiProblem(Exception):
    """A request the API answers with a problem document; raised by parsers and services alike."""

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


# Problem types. Each is a function so the detail can name the resource without echoing client input.
def invalid_request(errors: list[FieldError], detail: str | None = None) -> ApiProblem:
    count = len(errors)
    return ApiProblem(
        400,
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


def service_unavailable(error: ActionableError) -> ApiProblem:
    return ApiProblem(
        503,
        "A dependency is unavailable",
        error.info.message,
        [FieldError("", error.code.value, error.info.message, error.info.action)],
        "service-unavailable",
        {"Retry-After": "30"},
    )


def field_error_from(error: ActionableError, field_name: str) -> FieldError:
    """An `ActionableError` (already mapped from AADSTS) as an `errors[]` entry on `field_name`."""
    code = error.code
    if code not in CONTRACT_CREDENTIAL_CODES:
        # CONTRACT's registration codes are a closed list; a disabled app is an app that is not usable
        # there, anything else is "could not get a token" with the original text and action.
        code = ErrorCode.APP_NOT_FOUND_IN_TENANT if code == ErrorCode.APP_DISABLED else ErrorCode.UNREACHABLE
    return FieldError(field_name, code.value, error.info.message, error.info.action)


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
