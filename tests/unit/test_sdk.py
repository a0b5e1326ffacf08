"""`shared/sdk.py` defers the Azure SDKs: start-up loads none of them, and every name it lists resolves."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared import sdk

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("azure.core", "azure.data", "azure.storage", "azure.identity", "azure.keyvault", "msal")


def _type_checking_names() -> dict[str, str]:
    tree = ast.parse((ROOT / "shared" / "sdk.py").read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    return {alias.asname or alias.name: node.module or ""
            for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


def test_the_type_checking_imports_and_the_runtime_table_agree() -> None:
    assert _type_checking_names() == sdk.SOURCES


@pytest.mark.parametrize("name", sorted(sdk.SOURCES))
def test_every_name_resolves_to_the_sdk_class(name: str) -> None:
    assert getattr(sdk, name) is getattr(importlib.import_module(sdk.SOURCES[name]), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="add it to SOURCES"):
        sdk.NoSuchThing  # noqa: B018


def test_importing_the_function_app_loads_no_azure_sdk() -> None:
    code = ("import json, sys; import function_app; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
