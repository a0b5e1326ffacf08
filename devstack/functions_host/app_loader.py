"""Import function_app.py and describe its functions as typed ``FunctionSpec``s.

Mirrors what the Python worker does at indexing time: import the script (default
``function_app.py``, overridable with PYTHON_SCRIPT_FILE_NAME), find the FunctionApp,
and read each function's bindings. A function whose bindings this host cannot run is
reported "in error" and skipped while the others run, as the real host does.
https://learn.microsoft.com/azure/azure-functions/functions-reference-python#programming-model
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from .appsettings import MissingSettingError, resolve_setting_expr
from .routing import RouteTemplate, RouteTemplateError

log = logging.getLogger("devstack.functions_host")


class AppLoadError(RuntimeError):
    """function_app.py cannot be loaded at all (the host refuses to start)."""


@dataclass(frozen=True)
class HttpTriggerSpec:
    route: str
    methods: tuple[str, ...] | None  # None: every method
    auth_level: str  # "anonymous" | "function" | "admin"


@dataclass(frozen=True)
class TimerTriggerSpec:
    schedule: str  # after %SETTING% resolution
    schedule_expr: str  # as written in the binding
    run_on_startup: bool


@dataclass(frozen=True)
class QueueTriggerSpec:
    queue_name: str  # resolved, lower-case as the service stores it
    connection: str  # app-setting name


@dataclass(frozen=True)
class QueueOutputSpec:
    name: str  # parameter name or "$return"
    queue_name: str
    connection: str


Trigger = HttpTriggerSpec | TimerTriggerSpec | QueueTriggerSpec


@dataclass
class FunctionSpec:
    name: str
    func: Callable[..., Any]
    is_async: bool
    trigger_param: str
    trigger: Trigger
    queue_outputs: list[QueueOutputSpec] = field(default_factory=list)
    params: tuple[str, ...] = ()
    wants_context: bool = False
    http_return: bool = False  # HTTP response comes from the return value
    raw_bindings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def return_queue(self) -> QueueOutputSpec | None:
        return next((o for o in self.queue_outputs if o.name == "$return"), None)


@dataclass
class LoadedApp:
    functions: list[FunctionSpec]
    errors: dict[str, str]  # function name -> why it is in error


def _import_script(app_dir: Path, script: str) -> Any:
    path = app_dir / script
    if not path.exists():
        raise AppLoadError(f"{path} not found")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    module_name = path.stem
    # Re-use an already-imported module of that name only if it is this very file.
    existing = sys.modules.get(module_name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == path.resolve():
        return existing
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _find_app(module: Any) -> func.FunctionApp:
    app = getattr(module, "app", None)
    if isinstance(app, func.FunctionRegister):
        return app  # type: ignore[return-value]
    # The worker accepts any module-level FunctionApp, whatever its variable name.
    for value in vars(module).values():
        if isinstance(value, func.FunctionRegister) and not isinstance(value, func.Blueprint):
            return value  # type: ignore[return-value]
    raise AppLoadError(f"{module.__file__} defines no azure.functions.FunctionApp")


def _norm(binding: Mapping[str, Any]) -> dict[str, Any]:
    b = dict(binding)
    b["type"] = str(b.get("type", ""))
    b["direction"] = str(b.get("direction", "")).lower()
    return b


def _build_spec(fn: Any, env: Mapping[str, str]) -> FunctionSpec:
    name: str = fn.get_function_name()
    user_fn = fn.get_user_function()
    bindings = [_norm(json.loads(b)) for b in fn.get_raw_bindings()]
    where = f"function '{name}'"
    trigger_b = next((b for b in bindings if b["type"].lower().endswith("trigger")), None)
    if trigger_b is None:
        raise ValueError("no trigger binding")
    ttype = trigger_b["type"]
    trigger: Trigger
    if ttype == "httpTrigger":
        route = str(trigger_b.get("route") or name)
        try:
            RouteTemplate.parse(route)
        except RouteTemplateError as exc:
            raise ValueError(f"invalid route {route!r}: {exc}") from exc
        methods = trigger_b.get("methods")
        auth = str(trigger_b.get("authLevel") or "function").lower()
        trigger = HttpTriggerSpec(
            route=route,
            methods=tuple(str(m).upper() for m in methods) if methods else None,
            auth_level=auth,
        )
    elif ttype == "timerTrigger":
        expr = str(trigger_b.get("schedule") or "")
        trigger = TimerTriggerSpec(
            schedule=resolve_setting_expr(expr, env, f"{where} schedule"),
            schedule_expr=expr,
            run_on_startup=bool(trigger_b.get("runOnStartup", False)),
        )
    elif ttype == "queueTrigger":
        qn = resolve_setting_expr(str(trigger_b.get("queueName") or ""), env, f"{where} queueName")
        trigger = QueueTriggerSpec(queue_name=qn.lower(), connection=str(trigger_b.get("connection") or ""))
    else:
        raise ValueError(f"trigger type '{ttype}' is not supported by the local host")

    outputs: list[QueueOutputSpec] = []
    http_return = False
    for b in bindings:
        if b is trigger_b:
            continue
        if b["type"] == "http" and b["direction"] == "out":
            http_return = b.get("name") == "$return"
            continue
        if b["type"] == "queue" and b["direction"] == "out":
            qn = resolve_setting_expr(str(b.get("queueName") or ""), env, f"{where} output '{b.get('name')}'")
            outputs.append(QueueOutputSpec(str(b["name"]), qn.lower(), str(b.get("connection") or "")))
            continue
        raise ValueError(
            f"binding '{b.get('name')}' of type '{b['type']}' ({b['direction']}) "
            "is not supported by the local host"
        )

    sig = inspect.signature(user_fn)
    params = tuple(sig.parameters)
    known = {trigger_b["name"], *(o.name for o in outputs), "context"}
    unknown = [p for p in params if p not in known]
    if unknown:
        # Same check the Python worker makes at indexing time.
        raise ValueError(
            f"the following parameters are declared in Python but not in the bindings: {unknown}"
        )
    return FunctionSpec(
        name=name,
        func=user_fn,
        is_async=inspect.iscoroutinefunction(user_fn),
        trigger_param=str(trigger_b["name"]),
        trigger=trigger,
        queue_outputs=outputs,
        params=params,
        wants_context="context" in params and "context" not in {b["name"] for b in bindings},
        http_return=http_return,
        raw_bindings=bindings,
    )


def load_app(app_dir: Path, env: Mapping[str, str], script: str | None = None) -> LoadedApp:
    """Import the app and build specs. MissingSettingError propagates: the host must not start."""
    script = script or env.get("PYTHON_SCRIPT_FILE_NAME") or "function_app.py"
    module = _import_script(app_dir, script)
    app = _find_app(module)
    functions: list[FunctionSpec] = []
    errors: dict[str, str] = {}
    for fn in app.get_functions():
        name = fn.get_function_name() or fn.get_user_function().__name__
        # AzureWebJobs.<name>.Disabled=true disables a function.
        # https://learn.microsoft.com/azure/azure-functions/disable-function
        if str(env.get(f"AzureWebJobs.{name}.Disabled", "")).lower() in ("true", "1"):
            log.info("Function '%s' is disabled (AzureWebJobs.%s.Disabled)", name, name)
            continue
        try:
            functions.append(_build_spec(fn, env))
        except MissingSettingError:
            raise
        except (ValueError, TypeError) as exc:
            # The real host marks just this function as "in error" and runs the others.
            errors[name] = str(exc)
    return LoadedApp(functions, errors)
