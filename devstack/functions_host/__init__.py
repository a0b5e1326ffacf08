"""A local twin of the Azure Functions host (``func start``) for Python v2 apps.

Core Tools cannot be installed in this environment, so this package runs the functions
declared in ``function_app.py`` with the same observable semantics as the real host:
HTTP routing and keys, NCRONTAB timers, Storage-queue triggers with poison queues, and
queue output bindings. See ``python -m devstack.functions_host --help``.
"""
