"""ASP.NET Core style route templates, as the Functions host uses for HTTP triggers.

Supported: literal segments (case-insensitive), ``{name}``, ``{name?}`` (optional),
``{name=default}``, ``{*rest}`` / ``{**rest}`` (catch-all), constraints such as
``{id:guid}``, ``{n:int:min(1)}``, ``{s:regex(^a.*$)}``, and complex segments like
``{name}.{ext}``. When several templates match, the most specific wins the way ASP.NET's
route precedence orders them: literal > complex > constrained parameter > parameter >
optional > catch-all, compared segment by segment from the left.

https://learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#customize-the-http-endpoint
https://learn.microsoft.com/aspnet/core/fundamentals/routing#route-template-reference
https://learn.microsoft.com/aspnet/core/fundamentals/routing#route-constraints
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")


class RouteTemplateError(ValueError):
    """The route template is malformed."""


# Precedence ranks (lower is more specific), after ASP.NET's RoutePrecedence.
RANK_LITERAL = 1
RANK_COMPLEX = 2
RANK_CONSTRAINED = 3
RANK_PARAMETER = 4
RANK_OPTIONAL = 5
RANK_CATCH_ALL = 6

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_GUID_RE = re.compile(
    r"^(?:[0-9a-f]{32}"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}"
    r"|\([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\))$",
    re.IGNORECASE,
)


def _int_in(value: str, bounds: tuple[int, int]) -> bool:
    if not re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return False
    return bounds[0] <= int(value) <= bounds[1]


def _is_float(value: str) -> bool:
    return re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", value) is not None


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
        return True
    except ValueError:
        return False


def _is_guid(value: str) -> bool:
    if not _GUID_RE.match(value):
        return False
    uuid.UUID(value.strip("{}()"))
    return True


def _make_constraint(spec: str) -> Callable[[str], bool]:
    """Build a predicate for one inline constraint (``int``, ``min(1)``, ``regex(...)``)."""
    m = re.fullmatch(r"([A-Za-z]+)(?:\((.*)\))?", spec, re.DOTALL)
    if not m:
        raise RouteTemplateError(f"invalid route constraint {spec!r}")
    name, arg = m.group(1).lower(), m.group(2)
    simple: dict[str, Callable[[str], bool]] = {
        "int": lambda v: _int_in(v, _INT32),
        "long": lambda v: _int_in(v, _INT64),
        "bool": lambda v: v.lower() in ("true", "false"),
        "guid": _is_guid,
        "float": _is_float,
        "double": _is_float,
        "decimal": _is_float,
        "datetime": _is_datetime,
        "alpha": lambda v: bool(re.fullmatch(r"[a-zA-Z]+", v)),
        "required": lambda v: v != "",
    }
    if name in simple:
        if arg is not None:
            raise RouteTemplateError(f"constraint {name!r} takes no argument")
        return simple[name]
    if arg is None:
        raise RouteTemplateError(f"unknown route constraint {spec!r}")
    if name == "regex":
        # Route templates escape regex brackets/braces by doubling them ("[[", "{{").
        # ASP.NET's regex constraint is case-insensitive and not implicitly anchored.
        pattern = arg.replace("[[", "[").replace("]]", "]").replace("{{", "{").replace("}}", "}")
        rx = re.compile(pattern, re.IGNORECASE)
        return lambda v: rx.search(v) is not None
    nums = [a.strip() for a in arg.split(",")]
    try:
        n = [int(x) for x in nums]
    except ValueError as exc:
        raise RouteTemplateError(f"constraint {spec!r}: arguments must be integers") from exc
    if name == "minlength" and len(n) == 1:
        return lambda v: len(v) >= n[0]
    if name == "maxlength" and len(n) == 1:
        return lambda v: len(v) <= n[0]
    if name == "length" and len(n) == 1:
        return lambda v: len(v) == n[0]
    if name == "length" and len(n) == 2:
        return lambda v: n[0] <= len(v) <= n[1]
    if name == "min" and len(n) == 1:
        return lambda v: _int_in(v, _INT64) and int(v) >= n[0]
    if name == "max" and len(n) == 1:
        return lambda v: _int_in(v, _INT64) and int(v) <= n[0]
    if name == "range" and len(n) == 2:
        return lambda v: _int_in(v, _INT64) and n[0] <= int(v) <= n[1]
    raise RouteTemplateError(f"unknown route constraint {spec!r}")


@dataclass(frozen=True)
class Parameter:
    name: str
    constraints: tuple[Callable[[str], bool], ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    def accepts(self, value: str) -> bool:
        return all(c(value) for c in self.constraints)


Part = str | Parameter  # a segment is a list of literal text and parameters


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses (regex constraints may contain ':')."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _find_top_level(text: str, ch: str) -> int:
    depth = 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif c == ch and depth == 0:
            return i
    return -1


def _parse_parameter(body: str) -> Parameter:
    catch_all = False
    if body.startswith("**"):
        body, catch_all = body[2:], True
    elif body.startswith("*"):
        body, catch_all = body[1:], True
    default: str | None = None
    eq = _find_top_level(body, "=")
    if eq >= 0:
        body, default = body[:eq], body[eq + 1 :]
    optional = body.endswith("?")
    if optional:
        body = body[:-1]
    pieces = _split_top_level(body, ":")
    name = pieces[0].strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteTemplateError(f"invalid route parameter name {name!r}")
    if optional and default is not None:
        raise RouteTemplateError(f"parameter {name!r} cannot be both optional and have a default")
    constraints = tuple(_make_constraint(s) for s in pieces[1:] if s)
    return Parameter(name, constraints, optional, default, catch_all)


def _parse_segment(seg: str) -> list[Part]:
    parts: list[Part] = []
    lit: list[str] = []
    i = 0
    while i < len(seg):
        ch = seg[i]
        if ch == "{":
            if seg.startswith("{{", i):
                lit.append("{")
                i += 2
                continue
            # Find the matching '}' outside parentheses.
            depth, j = 0, i + 1
            while j < len(seg):
                if seg[j] == "(":
                    depth += 1
                elif seg[j] == ")":
                    depth -= 1
                elif seg[j] == "}" and depth <= 0:
                    break
                j += 1
            if j >= len(seg):
                raise RouteTemplateError(f"unclosed '{{' in segment {seg!r}")
            if lit:
                parts.append("".join(lit))
                lit = []
            if parts and isinstance(parts[-1], Parameter):
                raise RouteTemplateError(f"two parameters must be separated by a literal in {seg!r}")
            parts.append(_parse_parameter(seg[i + 1 : j]))
            i = j + 1
        elif ch == "}":
            if seg.startswith("}}", i):
                lit.append("}")
                i += 2
                continue
            raise RouteTemplateError(f"unmatched '}}' in segment {seg!r}")
        else:
            lit.append(ch)
            i += 1
    if lit:
        parts.append("".join(lit))
    return parts


@dataclass
class RouteTemplate:
    template: str
    segments: list[list[Part]] = field(default_factory=list)

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        text = template.strip().strip("/")
        if text.startswith("~"):
            text = text.lstrip("~/")
        segs = [_parse_segment(s) for s in text.split("/")] if text else []
        for idx, seg in enumerate(segs):
            if not seg and idx != len(segs) - 1:
                raise RouteTemplateError(f"empty segment in route {template!r}")
            for p in seg:
                if isinstance(p, Parameter) and p.catch_all and (idx != len(segs) - 1 or len(seg) != 1):
                    raise RouteTemplateError(f"a catch-all must be the whole last segment: {template!r}")
                if isinstance(p, Parameter) and p.optional and len(seg) > 1 and p is not seg[-1]:
                    raise RouteTemplateError(f"an optional parameter must end its segment: {template!r}")
        names = [p.name.lower() for seg in segs for p in seg if isinstance(p, Parameter)]
        if len(names) != len(set(names)):
            raise RouteTemplateError(f"duplicate route parameter in {template!r}")
        return cls(template, segs)

    @property
    def precedence(self) -> tuple[int, ...]:
        ranks: list[int] = []
        for seg in self.segments:
            if len(seg) == 1 and isinstance(seg[0], str):
                ranks.append(RANK_LITERAL)
            elif len(seg) > 1:
                ranks.append(RANK_COMPLEX)
            else:
                p = seg[0]
                assert isinstance(p, Parameter)
                if p.catch_all:
                    ranks.append(RANK_CATCH_ALL)
                elif p.optional:
                    ranks.append(RANK_OPTIONAL)
                elif p.constraints:
                    ranks.append(RANK_CONSTRAINED)
                else:
                    ranks.append(RANK_PARAMETER)
        return tuple(ranks)

    def match(self, path: str) -> dict[str, str] | None:
        """Match a request path (relative to the route prefix, no leading '/').

        Returns route values (URL-decoded) or None.
        """
        raw_segs = path.split("/") if path else []
        values: dict[str, str] = {}
        for idx, seg in enumerate(self.segments):
            if len(seg) == 1 and isinstance(seg[0], Parameter) and seg[0].catch_all:
                p = seg[0]
                rest = "/".join(raw_segs[idx:])
                value = unquote(rest)
                if value == "" and p.default is not None:
                    value = p.default
                if value != "" and not p.accepts(value):
                    return None
                if value != "":
                    values[p.name] = value
                return values
            if idx >= len(raw_segs):
                # Remaining template segments must all be optional / defaulted parameters.
                for rest_seg in self.segments[idx:]:
                    if len(rest_seg) != 1 or not isinstance(rest_seg[0], Parameter):
                        return None
                    rp = rest_seg[0]
                    if rp.default is not None:
                        values[rp.name] = rp.default
                    elif not (rp.optional or rp.catch_all):
                        return None
                return values
            if not self._match_segment(seg, raw_segs[idx], values):
                return None
        if len(raw_segs) > len(self.segments):
            return None
        return values

    @staticmethod
    def _match_segment(seg: list[Part], raw: str, values: dict[str, str]) -> bool:
        if len(seg) == 1 and isinstance(seg[0], str):
            return unquote(raw).lower() == seg[0].lower()
        # Build a regex for the (possibly complex) segment; literals case-insensitive.
        pattern = []
        params: list[Parameter] = []
        for p in seg:
            if isinstance(p, str):
                pattern.append(re.escape(p))
            else:
                params.append(p)
                pattern.append("(.*)?" if p.optional else "(.+)")
        m = re.fullmatch("".join(pattern), raw, re.IGNORECASE | re.DOTALL)
        if not m:
            return False
        for p, group in zip(params, m.groups(), strict=True):
            value = unquote(group or "")
            if value == "":
                if p.default is not None:
                    values[p.name] = p.default
                    continue
                if p.optional:
                    continue
                return False
            if not p.accepts(value):
                return False
            values[p.name] = value
        return True


@dataclass
class Route(Generic[T]):
    template: RouteTemplate
    methods: frozenset[str] | None  # None = every method
    target: T


@dataclass
class RouteMatch(Generic[T]):
    route: Route[T]
    values: dict[str, str]


class Router(Generic[T]):
    """Holds the HTTP routes of an app and picks the most specific match."""

    def __init__(self) -> None:
        self.routes: list[Route[T]] = []

    def add(self, template: str, methods: Iterable[str] | None, target: T) -> Route[T]:
        ms = frozenset(m.upper() for m in methods) if methods else None
        route = Route(RouteTemplate.parse(template), ms or None, target)
        self.routes.append(route)
        # Keep the list in precedence order so match() can return the first hit; ties keep
        # registration order, like the ASP.NET route table.
        self.routes.sort(key=lambda r: r.template.precedence)
        return route

    def match(self, method: str, path: str) -> RouteMatch[T] | None:
        """Match ``path`` (already stripped of the route prefix) and ``method``.

        A route whose template matches but whose methods do not is skipped: the Functions
        host answers 404, not 405, in that case (azure-functions-host#10098).
        """
        path = path.strip("/") if path != "/" else ""
        m_upper = method.upper()
        for route in self.routes:
            if route.methods is not None and m_upper not in route.methods:
                continue
            values = route.template.match(path)
            if values is not None:
                return RouteMatch(route, values)
        return None


def strip_prefix(path: str, prefix: str) -> str | None:
    """Remove the routePrefix (case-insensitive); None when the path is outside it."""
    p = path.lstrip("/")
    if not prefix:
        return p
    pl = prefix.lower()
    if p.lower() == pl:
        return ""
    if p.lower().startswith(pl + "/"):
        return p[len(prefix) + 1 :]
    return None


def sorted_by_precedence(templates: Sequence[str]) -> list[str]:
    """Helper for diagnostics/tests: templates in the order the router tries them."""
    return sorted(templates, key=lambda t: RouteTemplate.parse(t).precedence)
