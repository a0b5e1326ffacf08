"""From raw request parts (headers, body bytes, query values) to validated values, or an `ApiProblem`.

Pure functions over plain values, so the blueprint stays three moves and tests need no host. Every
problem with a request is collected and reported at once; nothing the client sent is echoed back. The one
thing a request cannot be checked against on its own is a continuation token's MAC, which needs the key:
`verify_continuation` and `sign_continuation` take it from a `ContinuationKeys`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from shared.api.models import (
    MultiTenantRegistration,
    SingleTenantRegistration,
    is_guid,
)
from shared.api.problems import (
    ApiProblem,
    FieldError,
    body_too_large,
    errors_from_validation,
    invalid_request,
    malformed_json,
    unsupported_media_type,
)
from shared.clients.keyvault import SigningKey
from shared.entities import Filter, entity
from shared.errors import FIELD_HINTS  # where a person finds each value: the action of a problem with it

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 64 * 1024
MAX_TOP = 1000
DEFAULT_TOP = 100
_MAX_TOKEN_CHARS = 4096
_MAX_SEARCH_CHARS = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_SURROGATE_ERRORS = 50
_MAX_FIELD_PATH = 100


# --- bodies -----------------------------------------------------------------------------------------


def _is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return False
    params = content_type.split(";")[1:]
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Which of two values would win differs between parsers; refuse rather than guess.
            raise ValueError("a key appears twice in one object")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json_object(
    content_type: str | None, body: bytes, *, required: bool = True, limit: int = MAX_BODY_BYTES
) -> dict[str, Any] | None:
    """The body as a JSON object. 415 for another media type, 413 past `limit`, 400 when not JSON.

    With `required=False` an empty body is None (POST .../sync takes an optional body).
    """
    if len(body) > limit:
        raise body_too_large(limit)
    if not body.strip():
        if not required:
            return None
        raise malformed_json("the body is empty")
    if not _is_json_media_type(content_type):
        raise unsupported_media_type()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed_json("it is not UTF-8") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise malformed_json("it is nested too deeply") from None
    except json.JSONDecodeError as exc:
        # Position only: the message of JSONDecodeError does not quote the document, but say less anyway.
        raise malformed_json(f"syntax error at line {exc.lineno}, column {exc.colno}") from None
    except ValueError as exc:
        raise malformed_json(str(exc)) from None
    if not isinstance(data, dict):
        raise malformed_json("the top level is not an object")
    if "\\u" in text:  # only a \uXXXX escape can make a lone surrogate out of valid UTF-8
        refused = _lone_surrogates(data)
        if refused:
            raise invalid_request(refused)
    return data


def _has_lone_surrogate(text: str) -> bool:
    # A str holds a surrogate code point only where JSON paired none with it ("\ud800" alone).
    return _SURROGATE.search(text) is not None


def _lone_surrogates(data: dict[str, Any]) -> list[FieldError]:
    """Every string of the body (member names too) holding a lone UTF-16 surrogate, named by its path.

    JSON's `\\uD800` escapes decode to text that has no UTF-8 form: it could be neither stored nor shown, so
    it is refused here, once for every field of every body, rather than fail later in a store. The walk is
    iterative: the document may be nested as deeply as the JSON parser allows."""
    found: list[FieldError] = []
    pending: list[tuple[str, Any]] = [("", data)]
    while pending and len(found) < _MAX_SURROGATE_ERRORS:
        path, value = pending.pop()
        if isinstance(value, str):
            if _has_lone_surrogate(value):
                found.append(_surrogate_error(path or "body"))
        elif isinstance(value, dict):
            for key, item in value.items():
                if _has_lone_surrogate(key):
                    # The name itself cannot be shown; say where it is and what it looks like, escaped.
                    shown = key.encode("utf-8", "backslashreplace").decode("ascii", "replace")
                    found.append(_surrogate_error(_join(path, shown)))
                    continue
                pending.append((_join(path, key), item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return sorted(found, key=lambda e: e.field)


def _join(path: str, key: str) -> str:
    text = f"{path}.{key}" if path else key
    return text if len(text) <= _MAX_FIELD_PATH else text[: _MAX_FIELD_PATH - 3] + "..."


def _surrogate_error(field: str) -> FieldError:
    return FieldError(
        field,
        "invalidCharacters",
        f"{field} holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair), which is not text",
        "Send the text as valid Unicode: pair each surrogate escape, or send the character itself in UTF-8.",
    )


def parse_model(model: type[M], data: Mapping[str, Any], *, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(errors_from_validation(exc, hints=FIELD_HINTS, prefix=prefix)) from None


def parse_registration(data: Mapping[str, Any]) -> MultiTenantRegistration | SingleTenantRegistration:
    """Pick the body's kind, then validate every field of that kind at once.

    The multi-tenant body (docs/api.md) is the commercial product's five fields plus options: a body without `kind` is a
    multi-tenant one, unless it names a `tenantId` and no `partnerTenantId`.
    """
    kind = data.get("kind")
    if kind is None:
        kind = "singleTenant" if "tenantId" in data and "partnerTenantId" not in data else "multiTenant"
        data = {**data, "kind": kind}
    if kind == "multiTenant":
        return parse_model(MultiTenantRegistration, data)
    if kind == "singleTenant":
        return parse_model(SingleTenantRegistration, data)
    raise invalid_request(
        [
            FieldError(
                "kind", "invalidValue", "kind must be 'multiTenant' or 'singleTenant'", FIELD_HINTS["kind"]
            )
        ]
    )


# --- path and query ---------------------------------------------------------------------------------


def parse_guid(value: str | None, field_name: str, what: str) -> str:
    """A path id: must be a GUID (so '..', '%2F', quotes and OData never reach a store)."""
    if not is_guid(value):
        raise invalid_request(
            [
                FieldError(
                    field_name,
                    "invalidGuid",
                    f"{field_name} must be a GUID, the id of {what}",
                    f"Use the id of {what} as the API returned it, e.g. from GET /api/integrations.",
                )
            ]
        )
    assert value is not None
    return value.lower()


def _one(params: Mapping[str, str], name: str) -> str | None:
    # azure.functions keeps the last value of a repeated parameter; a key match is case-sensitive there,
    # so accept the documented spelling only.
    value = params.get(name)
    return None if value is None else value


def parse_top(params: Mapping[str, str], errors: list[FieldError]) -> int:
    raw = _one(params, "top")
    if raw is None or raw == "":
        return DEFAULT_TOP
    if not re.fullmatch(r"\d{1,4}", raw) or not 1 <= int(raw) <= MAX_TOP:
        errors.append(
            FieldError(
                "top",
                "outOfRange",
                f"top must be a whole number from 1 to {MAX_TOP}",
                f"Send ?top= between 1 and {MAX_TOP}, or leave it out for {DEFAULT_TOP}.",
            )
        )
        return DEFAULT_TOP
    return int(raw)


def parse_bool(params: Mapping[str, str], name: str, default: bool, errors: list[FieldError]) -> bool:
    raw = _one(params, name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    errors.append(
        FieldError(
            name, "invalidValue", f"{name} must be true or false", f"Send ?{name}=true or ?{name}=false."
        )
    )
    return default


def parse_search(params: Mapping[str, str], errors: list[FieldError]) -> str | None:
    raw = _one(params, "search")
    if raw is None or raw == "":
        return None
    if len(raw) > _MAX_SEARCH_CHARS or _CONTROL.search(raw):
        errors.append(
            FieldError(
                "search",
                "invalidValue",
                f"search must be 1-{_MAX_SEARCH_CHARS} characters without control characters",
                "Send a shorter search text.",
            )
        )
        return None
    return raw


def wants_csv(params: Mapping[str, str], accept: str | None, errors: list[FieldError]) -> bool:
    """`?format=csv|json` decides; otherwise an Accept header that prefers text/csv over JSON."""
    fmt = _one(params, "format")
    if fmt:
        if fmt.lower() in ("csv", "json"):
            return fmt.lower() == "csv"
        errors.append(
            FieldError(
                "format",
                "invalidValue",
                "format must be csv or json",
                "Send ?format=csv for a CSV export, or leave it out for JSON.",
            )
        )
        return False
    if not accept:
        return False
    weights: dict[str, float] = {}
    for item in accept.split(","):
        media, *params_ = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params_:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    csv_q = weights.get("text/csv", 0.0)
    json_q = max(weights.get("application/json", 0.0), weights.get("*/*", 0.0) if csv_q == 0 else 0.0)
    return csv_q > 0 and csv_q >= json_q


# --- continuation tokens ----------------------------------------------------------------------------
# A token is `<payload>.<mac>`, both base64url without padding. The payload is the JSON
# {"k": <key version>, "p": <the store's position>}; the MAC is HMAC-SHA256, under the continuation key
# (shared.clients.keyvault.SigningKeys: a Key Vault secret shared by every instance), of the payload and
# of the query the token was issued for (the list, its ids and filters). A token of another list, tenant
# or filter, a changed position, or one made up without the key does not verify. Reading happens in two
# steps so that a malformed token is refused before any dependency is asked: `read_continuation` checks
# the shape, `verify_continuation` the MAC.

_TOKEN_VERSION = b"memsync-continuation/2"
_TOKEN_RE = re.compile(r"^([A-Za-z0-9_-]{2,})\.([A-Za-z0-9_-]{43})$")  # the MAC: 32 bytes in base64url
_KEY_VERSION_RE = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_MAX_POSITION_PARTS = 8


class ContinuationKeys(Protocol):
    """Where the continuation key comes from (shared.clients.keyvault.SigningKeys)."""

    async def current(self) -> SigningKey: ...

    async def find(self, version: str) -> SigningKey | None: ...


@dataclass(frozen=True)
class Continuation:
    """A continuation token as the client sent it back: well-formed, its MAC not yet checked."""

    payload: str
    mac: bytes
    key_version: str
    position: Any


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _mac(key: SigningKey, payload: str, scope: Mapping[str, object]) -> bytes:
    bound = json.dumps({k: scope[k] for k in sorted(scope)}, separators=(",", ":"), default=str)
    message = b"\n".join((_TOKEN_VERSION, payload.encode(), bound.encode()))
    return hmac.new(key.material, message, hashlib.sha256).digest()


def _plain_position(value: object, *, text_only: bool) -> bool:
    """What the stores' positions look like: a string, a list of strings, or an object of strings."""
    if isinstance(value, str):
        return bool(value)
    if text_only:
        return False
    if isinstance(value, list):
        return 0 < len(value) <= _MAX_POSITION_PARTS and all(isinstance(v, str) for v in value)
    if isinstance(value, dict):
        return 0 < len(value) <= _MAX_POSITION_PARTS and all(isinstance(v, str) for v in value.values())
    return False


def encode_continuation(position: object, scope: Mapping[str, object], key: SigningKey) -> str:
    """The token for `position` in the list that `scope` describes, signed with `key`."""
    payload = _b64encode(json.dumps({"k": key.version, "p": position}, separators=(",", ":")).encode())
    return f"{payload}.{_b64encode(_mac(key, payload, scope))}"


def _not_ours() -> FieldError:
    return FieldError(
        "continuation",
        "invalidContinuation",
        "continuation is not a token this API issued for this query",
        "Follow nextLink exactly as returned, with the same filters; or start again without continuation.",
    )


def _start_again() -> FieldError:
    return FieldError(
        "continuation",
        "invalidContinuation",
        "continuation was signed with a key this API no longer uses",
        "Start the listing again without continuation, then follow nextLink as returned.",
    )


def read_continuation(
    params: Mapping[str, str], errors: list[FieldError], *, text_only: bool = False
) -> Continuation | None:
    """The shape of `?continuation=`: None when absent (the first page) or refused (a problem in `errors`).

    Whatever the client sent, the outcome is a token or a problem, never an exception: bytes that are not
    base64url, JSON that is not an object, fields of the wrong type. `text_only`: the list's position is
    a string."""
    raw = _one(params, "continuation")
    if raw is None or raw == "":
        return None
    match = _TOKEN_RE.fullmatch(raw) if len(raw) <= _MAX_TOKEN_CHARS else None
    if match is None:
        errors.append(_not_ours())
        return None
    payload, mac = match.groups()
    try:
        data = json.loads(_b64decode(payload), parse_constant=_no_constants)
        signature = _b64decode(mac)
    except (binascii.Error, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        errors.append(_not_ours())
        return None
    version = data.get("k") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or set(data) != {"k", "p"}
        or not isinstance(version, str)
        or not _KEY_VERSION_RE.fullmatch(version)
        or not _plain_position(data["p"], text_only=text_only)
    ):
        errors.append(_not_ours())
        return None
    return Continuation(payload, signature, version, data["p"])


def open_continuation(
    token: Continuation, scope: Mapping[str, object], key: SigningKey | None, errors: list[FieldError]
) -> Any:
    """The position of a token whose MAC verifies under `key` for `scope`; None and a problem otherwise.
    `key` is None when the token names a key version that is not the continuation key's."""
    if key is None:
        errors.append(_start_again())
        return None
    if not hmac.compare_digest(token.mac, _mac(key, token.payload, scope)):
        errors.append(_not_ours())
        return None
    return token.position


async def verify_continuation(
    token: Continuation | None, scope: Mapping[str, object], keys: ContinuationKeys
) -> Any:
    """The store's position of a token read by `read_continuation` (None for the first page); a 400
    problem naming `continuation` when it does not verify."""
    if token is None:
        return None
    errors: list[FieldError] = []
    position = open_continuation(token, scope, await keys.find(token.key_version), errors)
    if errors:
        raise invalid_request(errors)
    return position


async def sign_continuation(position: object, scope: Mapping[str, object], keys: ContinuationKeys) -> str:
    """The token of the next page's `position`, signed with the current continuation key."""
    return encode_continuation(position, scope, await keys.current())


@dataclass(frozen=True)
class AssetQuery:
    """A validated query of an entity's list: what the store is asked, nothing the client typed unchecked.

    `filters` holds a value for each filter the entity declares (`shared.entities.Filter`), by parameter."""

    top: int
    continuation: Any  # the store's position, once `token` is verified (`at`); None for the first page
    search: str | None
    filters: dict[str, Any]
    csv: bool
    token: Continuation | None = None

    @property
    def removed(self) -> bool:
        return bool(self.filters.get("removed", False))

    @property
    def compliance_state(self) -> str | None:
        value = self.filters.get("complianceState")
        return value if isinstance(value, str) else None

    def scope(self, kind: str, integration_id: str, tenant_id: str) -> dict[str, object]:
        return _asset_scope(kind, integration_id, tenant_id, self.search, self.filters)

    def at(self, position: Any) -> AssetQuery:
        """This query from the verified position of its token (`verify_continuation`)."""
        return replace(self, continuation=position, token=None)


def _asset_scope(
    kind: str, integration_id: str, tenant_id: str, search: str | None, filters: Mapping[str, Any]
) -> dict[str, object]:
    """What a continuation token is bound to: the list and every filter (a token of another list, or of the
    same list with other filters, is refused)."""
    scope: dict[str, object] = {"kind": kind, "i": integration_id, "t": tenant_id,
                                "r": bool(filters.get("removed", False)), "s": search,
                                "c": filters.get("complianceState")}
    scope |= {k: v for k, v in filters.items() if k not in ("removed", "complianceState")}
    return scope


def _parse_filter(params: Mapping[str, str], spec: Filter, errors: list[FieldError]) -> Any:
    if spec.kind == "bool":
        if spec.default is None and not _one(params, spec.param):
            return None  # a filter without a default is not applied when absent
        return parse_bool(params, spec.param, bool(spec.default), errors)
    raw = _one(params, spec.param)
    if raw is None or raw == "":
        return None
    for value in spec.values:
        if raw.lower() == value.lower():
            return value
    errors.append(FieldError(spec.param, "invalidValue", f"{spec.param} must be one of " + ", ".join(spec.values),
                             spec.hint))
    return None


def unknown_parameters(
    params: Mapping[str, str], known: list[str], errors: list[FieldError], *, what: str = "this list"
) -> None:
    """A problem for each query parameter that is not one of `known` (nor `code`, the function key), the
    first ten, each naming the ones that are."""
    for name in sorted(k for k in params if k not in {*known, "code"})[:10]:
        shown = name if len(name) <= 40 and not _CONTROL.search(name) else name[:37] + "..."
        errors.append(FieldError(shown, "unknownParameter", f"{shown} is not a query parameter of {what}",
                                 "Use " + ", ".join(known) + "."))


def parse_asset_query(
    params: Mapping[str, str], accept: str | None, *, kind: str, integration_id: str, tenant_id: str
) -> AssetQuery:
    """The query of an entity's list route: the common parameters and the filters the entity declares."""
    declared = entity(kind)
    errors: list[FieldError] = []
    own = [f.param for f in declared.filters]
    unknown_parameters(params, ["top", "continuation", "search", "format", *own], errors)
    top = parse_top(params, errors)
    search = parse_search(params, errors)
    filters = {spec.param: _parse_filter(params, spec, errors) for spec in declared.filters}
    csv = wants_csv(params, accept, errors)
    token = read_continuation(params, errors, text_only=True)  # the asset store's position is its row key
    if errors:
        raise invalid_request(errors)
    return AssetQuery(top, None, search, filters, csv, token)


def parse_order(params: Mapping[str, str], allowed: tuple[str, ...], errors: list[FieldError]) -> str:
    """`?orderBy=` of a plain list: one of `allowed` (the first is the default)."""
    value = _one(params, "orderBy")
    if value is None or value == "":
        return allowed[0]
    if value not in allowed:
        errors.append(FieldError("orderBy", "invalidValue", "orderBy must be one of " + ", ".join(allowed),
                                 "Send one of these values, or leave orderBy out."))
        return allowed[0]
    return value


def parse_page(
    params: Mapping[str, str], orders: tuple[str, ...] | None = None
) -> tuple[int, Continuation | None]:
    """`top` and the continuation token (not yet verified) of a plain list (integrations, tenants); with
    `orders`, `orderBy` is one of them (read again with `parse_order`)."""
    errors: list[FieldError] = []
    top = parse_top(params, errors)
    token = read_continuation(params, errors)
    if orders is not None:
        parse_order(params, orders, errors)
    if errors:
        raise invalid_request(errors)
    return top, token


__all__ = [
    "MAX_BODY_BYTES",
    "ApiProblem",
    "AssetQuery",
    "Continuation",
    "encode_continuation",
    "parse_asset_query",
    "read_continuation",
    "sign_continuation",
    "verify_continuation",
]
