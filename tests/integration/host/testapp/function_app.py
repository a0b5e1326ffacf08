"""Test app for the devstack functions host (integration tests only)."""

import json
import logging

import azure.functions as func

log = logging.getLogger(__name__)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")


@app.route(route="items/{id:int}", methods=["GET", "POST"])
async def get_item(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    log.info("get_item called for %s", req.route_params.get("id"))
    payload = {
        "id": int(req.route_params["id"]),
        "method": req.method,
        "q": req.params.get("q"),
        "body": req.get_body().decode(),
        "invocation_id": context.invocation_id,
    }
    return func.HttpResponse(json.dumps(payload), mimetype="application/json", status_code=200)


@app.route(route="items/special", methods=["GET"])
def special_item(req: func.HttpRequest) -> func.HttpResponse:
    # Literal segment must win over items/{id:int} / catch-all.
    return func.HttpResponse("special")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret stack detail")


@app.timer_trigger(schedule="%TEST_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False)
@app.queue_output(arg_name="out", queue_name="timer-fired", connection="AzureWebJobsStorage")
def tick(timer: func.TimerRequest, out: func.Out[str]) -> None:
    out.set(json.dumps({"past_due": timer.past_due}))


@app.queue_trigger(arg_name="msg", queue_name="%TEST_WORK_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="work-done", connection="AzureWebJobsStorage")
async def work(msg: func.QueueMessage, out: func.Out[str]) -> None:
    body = msg.get_body().decode()
    log.info("work got %s (dequeue %s)", body, msg.dequeue_count)
    out.set(f"done:{body}")


@app.queue_trigger(arg_name="msg", queue_name="always-fails", connection="AzureWebJobsStorage")
def always_fails(msg: func.QueueMessage) -> None:
    log.info("always_fails attempt %s", msg.dequeue_count)
    raise ValueError(f"cannot process {msg.get_body().decode()}")
