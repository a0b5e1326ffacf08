"""Just enough of a Bicep reader for the infra tests: no Bicep compiler runs here.

Comments are stripped first (outside strings), then declarations are found by keyword and their bodies
by bracket matching that skips string literals, so that a `}` inside a description cannot end a block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

INFRA = Path(__file__).resolve().parents[3] / "infra"
_OPEN = {"{": "}", "[": "]", "(": ")"}


def strip_comments(text: str) -> str:
    """`//` and `/* */` comments removed; string literals ('...' and '''...''') kept as they are."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif text[i] == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def block(text: str, start: int) -> str:
    """The text inside the bracket that opens at `start` (exclusive of both brackets)."""
    opener = text[start]
    assert opener in _OPEN, f"no bracket at {start}: {text[start:start + 20]!r}"
    stack = [_OPEN[opener]]
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            i += 1
            while i < len(text) and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
        elif ch in _OPEN:
            stack.append(_OPEN[ch])
        elif ch in "}])":
            assert ch == stack.pop(), f"unbalanced {ch!r} at {i}"
            if not stack:
                return text[start + 1 : i]
        i += 1
    raise AssertionError(f"bracket opened at {start} never closes")


def split_top(body: str) -> list[str]:
    """Items of an object or array body: split at newlines and commas outside brackets and strings."""
    items: list[str] = []
    depth, i, start = 0, 0, 0
    while i < len(body):
        ch = body[i]
        if ch == "'":
            i += 1
            while i < len(body) and body[i] != "'":
                i += 2 if body[i] == "\\" else 1
        elif ch in _OPEN:
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch in ",\n" and depth == 0:
            items.append(body[start:i])
            start = i + 1
        i += 1
    items.append(body[start:])
    return [item.strip() for item in items if item.strip()]


def top_level_keys(body: str) -> dict[str, str]:
    """`key: value` pairs at the outermost level of an object body (values as raw text), so that both
    multi-line objects and `{ name: 'x', value: y }` read the same."""
    keys: dict[str, str] = {}
    for item in split_top(body):
        m = re.match(r"(?:'([^']+)'|([A-Za-z_]\w*))\s*:(.*)\Z", item, re.S)
        if m:
            keys[m.group(1) or m.group(2)] = m.group(3).strip()
    return keys


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    api_version: str
    body: str
    existing: bool
    file: str
    # What stands between `=` and the body: `if (cond)`, `[for x in xs:`, `[for (x, i) in xs:` or nothing.
    header: str = ""

    @property
    def props(self) -> dict[str, str]:
        return top_level_keys(self.body)

    def get(self, dotted: str) -> str | None:
        """`properties.siteConfig.minTlsVersion` -> the raw value text, or None."""
        value: str | None = "{" + self.body + "}"
        for part in dotted.split("."):
            if value is None or not value.startswith("{"):
                return None
            value = top_level_keys(block(value, 0)).get(part)
        return value


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    decorators: tuple[str, ...]

    @property
    def allowed(self) -> list[str] | None:
        for deco in self.decorators:
            if deco.startswith("@allowed("):
                return [literal(v) for v in re.findall(r"'(?:[^'\\]|\\.)*'|-?\d+", deco)]
        return None

    @property
    def secure(self) -> bool:
        return any(d.startswith("@secure(") for d in self.decorators)


@dataclass(frozen=True)
class BicepFile:
    path: Path
    text: str  # comments stripped
    resources: list[Resource] = field(default_factory=list)
    params: dict[str, Param] = field(default_factory=dict)
    modules: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # symbol -> (path, params)
    outputs: dict[str, str] = field(default_factory=dict)  # name -> value text
    module_headers: dict[str, str] = field(default_factory=dict)  # symbol -> `if (cond)` or ""
    variables: dict[str, str] = field(default_factory=dict)  # name -> value text (a whole block if bracketed)


def literal(token: str) -> str:
    """A Bicep string or int literal as a Python string."""
    token = token.strip()
    if token.startswith("'") and token.endswith("'"):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _decl_body(text: str, match: re.Match[str]) -> str:
    brace = text.index("{", match.end())
    return block(text, brace)


def _decl_header(text: str, match: re.Match[str]) -> str:
    """`if (cond)` / `[for ... :` between a declaration's `=` and its body's `{`, stripped."""
    return text[match.end() : text.index("{", match.end())].strip()


def _variables(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for m in re.finditer(r"^var\s+(\w+)\s*=\s*", text, re.M):
        start = m.end()
        if text[start] in _OPEN:
            found[m[1]] = text[start] + block(text, start) + _OPEN[text[start]]
        else:
            end = text.find("\n", start)
            found[m[1]] = text[start : None if end < 0 else end].strip()
    return found


def array_items(value: str) -> list[str]:
    """The items of a Bicep array literal `[ ... ]` (raw text each)."""
    value = value.strip()
    assert value.startswith("["), f"not an array: {value[:40]!r}"
    return split_top(block(value, 0))


def object_keys(value: str) -> dict[str, str]:
    """The `key: value` pairs of a Bicep object literal `{ ... }` (raw values)."""
    value = value.strip()
    assert value.startswith("{"), f"not an object: {value[:40]!r}"
    return top_level_keys(block(value, 0))


@cache
def load(path: Path) -> BicepFile:
    text = strip_comments(path.read_text(encoding="utf-8"))
    resources = [
        Resource(m["symbol"], m["type"], m["version"], _decl_body(text, m), bool(m["existing"]), path.name,
                 _decl_header(text, m))
        for m in re.finditer(
            r"^resource\s+(?P<symbol>\w+)\s+'(?P<type>[^'@]+)@(?P<version>[^']+)'\s*(?P<existing>existing)?\s*=",
            text, re.M)
    ]
    params: dict[str, Param] = {}
    decorators: list[str] = []
    lines = text.splitlines()
    for idx, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("@"):
            decorators.append(stripped)
            continue
        m = re.match(r"param\s+(\w+)\s+(\w+)(?:\s*=\s*(.+))?$", stripped)
        if m:
            params[m[1]] = Param(m[1], m[2], m[3].strip() if m[3] else None, tuple(decorators))
        if stripped or idx == len(lines) - 1:
            decorators = []
    modules = {}
    module_headers = {}
    for m in re.finditer(r"^module\s+(\w+)\s+'([^']+)'\s*=", text, re.M):
        body = _decl_body(text, m)
        params_text = top_level_keys(body).get("params", "{}")
        modules[m[1]] = (m[2], top_level_keys(block(params_text, 0)))
        module_headers[m[1]] = _decl_header(text, m)
    outputs = {m[1]: m[2].strip() for m in re.finditer(r"^output\s+(\w+)\s+\w+\s*=\s*(.+)$", text, re.M)}
    return BicepFile(path, text, resources, params, modules, outputs, module_headers, _variables(text))


def all_files() -> list[BicepFile]:
    return [load(p) for p in sorted(INFRA.rglob("*.bicep"))]


def resources_of(type_: str) -> list[Resource]:
    return [r for f in all_files() for r in f.resources if r.type == type_ and not r.existing]


def app_settings() -> dict[str, str]:
    """Every app setting declared in a `siteConfig.appSettings` array: name -> raw value text."""
    found: dict[str, str] = {}
    for f in all_files():
        for m in re.finditer(r"\bappSettings\s*:\s*\[", f.text):
            for entry in split_top(block(f.text, m.end() - 1)):
                assert entry.startswith("{"), f"{f.path.name}: not a literal app setting: {entry!r}"
                pairs = top_level_keys(block(entry, 0))
                name = literal(pairs["name"])
                assert name not in found, f"app setting {name} declared twice"
                found[name] = pairs.get("value", "")
    return found


def _top_level_find(expr: str, char: str) -> int:
    """Index of the first `char` outside strings and brackets, or -1."""
    depth, i = 0, 0
    while i < len(expr):
        ch = expr[i]
        if ch == "'":
            i += 1
            while i < len(expr) and expr[i] != "'":
                i += 2 if expr[i] == "\\" else 1
        elif ch in _OPEN:
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch == char and depth == 0:
            return i
        i += 1
    return -1


def _string_end(text: str, start: int) -> int:
    """Index of the quote that closes the string literal opening at `start`."""
    i = start + 1
    while i < len(text) and text[i] != "'":
        i += 2 if text[i] == "\\" else 1
    return i


def evaluate(expr: str, names: Mapping[str, object]) -> object:
    """Just enough Bicep evaluation for the infra tests: literals, `'...${x}...'`, `cond ? a : b`, `!x`,
    `empty(x)`, `replace(s, old, new)`, and the names given (parameters, or `environment().suffixes.storage`
    and the like, looked up by their text). Anything else is an error, so a test cannot pass by accident."""
    expr = expr.strip()
    question = _top_level_find(expr, "?")
    if question >= 0:
        rest = expr[question + 1 :]
        colon = _top_level_find(rest, ":")
        assert colon >= 0, f"ternary without ':' in {expr!r}"
        chosen = rest[:colon] if evaluate(expr[:question], names) else rest[colon + 1 :]
        return evaluate(chosen, names)
    if expr.startswith("!"):
        return not evaluate(expr[1:], names)
    if expr.startswith("(") and expr.endswith(")") and block(expr, 0) == expr[1:-1]:
        return evaluate(expr[1:-1], names)
    if expr.startswith("'") and _string_end(expr, 0) == len(expr) - 1:
        out, i, body = [], 0, expr[1:-1]
        while i < len(body):
            if body.startswith("${", i):
                inner = block(body, i + 1)
                out.append(str(evaluate(inner, names)))
                i += len(inner) + 3
            elif body[i] == "\\":
                out.append(body[i + 1])
                i += 2
            else:
                out.append(body[i])
                i += 1
        return "".join(out)
    if expr in names:
        return names[expr]
    if expr in ("true", "false"):
        return expr == "true"
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    call = re.fullmatch(r"(\w+)\((.*)\)", expr, re.S)
    if call and block(expr, len(call[1])) == call[2]:
        args = [evaluate(a, names) for a in split_top(call[2].replace("\n", " ")) if a]
        if call[1] == "empty":
            return not args[0]
        if call[1] == "replace":
            text, old, new = args
            assert isinstance(text, str) and isinstance(old, str) and isinstance(new, str)
            return text.replace(old, new)
    raise AssertionError(f"cannot evaluate {expr!r} with {sorted(names)}")
