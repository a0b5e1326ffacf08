"""Just enough of a Bicep reader for the infra tests: no Bicep compiler runs here.

Comments are stripped first (outside strings), then declarations are found by keyword and their bodies
by bracket matching that skips string literals, so that a `}` inside a description cannot end a block.
"""

from __future__ import annotations

import re
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


def literal(token: str) -> str:
    """A Bicep string or int literal as a Python string."""
    token = token.strip()
    if token.startswith("'") and token.endswith("'"):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _decl_body(text: str, match: re.Match[str]) -> str:
    brace = text.index("{", match.end())
    return block(text, brace)


@cache
def load(path: Path) -> BicepFile:
    text = strip_comments(path.read_text(encoding="utf-8"))
    resources = [
        Resource(m["symbol"], m["type"], m["version"], _decl_body(text, m), bool(m["existing"]), path.name)
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
    for m in re.finditer(r"^module\s+(\w+)\s+'([^']+)'\s*=", text, re.M):
        body = _decl_body(text, m)
        params_text = top_level_keys(body).get("params", "{}")
        modules[m[1]] = (m[2], top_level_keys(block(params_text, 0)))
    outputs = {m[1]: m[2].strip() for m in re.finditer(r"^output\s+(\w+)\s+\w+\s*=\s*(.+)$", text, re.M)}
    return BicepFile(path, text, resources, params, modules, outputs)


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
