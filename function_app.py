"""Azure Functions entry points: thin trigger glue over the ``shared`` package."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func
from azurefunctions.extensions.bindings import servicebus

from shared import policies
from shared.alerts import handle_alert
from shared.runtime import runtime
from shared.settlement import received, settle

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.service_bus_queue_trigger(
    arg_name="message",
    queue_name="%COMMAND_QUEUE_NAME%",
    connection="ServiceBusConnection",
    auto_complete_messages=False,
)
def process_command(
    message: servicebus.ServiceBusReceivedMessage,
    message_actions: servicebus.ServiceBusMessageActions,
) -> None:
    """Execute one lifecycle command and settle its message explicitly."""
    rt = runtime()
    result = rt.processor.get().process(received(message))
    settle(message_actions, message, result.settlement, rt.settings.get().servicebus_timeout)


@app.timer_trigger(schedule="%POLICY_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def run_policies(timer: func.TimerRequest) -> None:
    """Enqueue one selector command per POLICIES entry; a past-due or repeated run of one slot makes the same ids."""
    rt = runtime()
    policies.run_policies(rt.bus.get(), rt.settings.get(), datetime.now(UTC))


@app.timer_trigger(schedule="%RETENTION_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def retention_cleanup(timer: func.TimerRequest) -> None:
    """Enqueue the retention policy's selector command (RETENTION_* shorthand); the fan-out does the rest."""
    rt = runtime()
    policies.run_retention(rt.bus.get(), rt.settings.get(), datetime.now(UTC))


@app.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Azure Monitor action-group webhook (common alert schema) -> lifecycle commands on the queue."""
    rt = runtime()
    result = handle_alert(req.get_body(), rt.settings.get(), rt.bus.get())
    return func.HttpResponse(json.dumps(result.body()), status_code=result.status, mimetype="application/json")
