"""Azure Functions entry points: thin trigger glue over the ``shared`` package."""

from __future__ import annotations

import azure.functions as func
from azurefunctions.extensions.bindings import servicebus

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
    result = runtime().processor.get().process(received(message))
    settle(message_actions, message, result.settlement)
