"""memsync's Azure Functions app: wiring only, one blueprint per area (see functions/)."""

import logging

import azure.functions as func

from functions.alerts import bp as alerts_bp
from functions.audit import bp as audit_bp
from functions.console import bp as console_bp
from functions.gdap import bp as gdap_bp
from functions.health import bp as health_bp
from functions.integrations import bp as integrations_bp
from functions.inventory import bp as inventory_bp
from functions.sync import bp as sync_bp

# The SDKs log every request URL at INFO; a webhook URL is a credential and Graph URLs are noise.
for noisy in ("azure", "httpx", "httpcore"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health_bp)
app.register_functions(integrations_bp)
app.register_functions(inventory_bp)
app.register_functions(sync_bp)
app.register_functions(alerts_bp)
app.register_functions(console_bp)
app.register_functions(gdap_bp)
app.register_functions(audit_bp)
