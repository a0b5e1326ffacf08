"""The app's functions as function_app.py wires them, for tests that call or inspect them.

`FunctionApp.get_functions()` may run once per app (it records names to refuse duplicates), and other
tests call it on `function_app.app`; so a fresh app is built from the same blueprints here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import azure.functions as func


@lru_cache(maxsize=1)
def app_functions() -> tuple[tuple[str, Any, tuple[dict[str, Any], ...]], ...]:
    import function_app

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for value in vars(function_app).values():
        if isinstance(value, func.Blueprint):
            app.register_functions(value)
    return tuple(
        (f.get_function_name(), f.get_user_function(), tuple(json.loads(b) for b in f.get_raw_bindings()))
        for f in app.get_functions()
    )


def user_functions() -> dict[str, Any]:
    return {name: fn for name, fn, _ in app_functions()}
