"""function_app.py as the Functions worker indexes it: triggers, binding metadata, a cold import."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
from azurefunctions.extensions.bindings import servicebus

from tests.support import indexed_functions

ROOT = Path(__file__).resolve().parents[2]


def _functions() -> dict[str, func.Function]:
    return indexed_functions()


def _bindings(name: str) -> list[dict[str, Any]]:
    # get_raw_bindings() is exactly the JSON the worker hands to the host.
    return [json.loads(raw) for raw in _functions()[name].get_raw_bindings()]


def test_queue_trigger_binding_is_what_the_host_needs() -> None:
    (trigger,) = _bindings("process_command")
    assert trigger == {
        "direction": "IN",
        "type": "serviceBusTrigger",
        "name": "message",
        "connection": "ServiceBusConnection",
        "queueName": "%COMMAND_QUEUE_NAME%",
        "autoCompleteMessages": False,
    }


def test_settlement_parameter_is_the_one_unbound_sdk_client_type() -> None:
    # The worker accepts exactly one parameter missing from the bindings, and only if it is
    # annotated with the registered settlement client type.
    user_function = _functions()["process_command"].get_user_function()
    parameters = inspect.signature(user_function, eval_str=True).parameters
    bound = {binding["name"] for binding in _bindings("process_command")}
    unbound = [p for name, p in parameters.items() if name not in bound]
    assert [p.annotation for p in unbound] == [servicebus.ServiceBusMessageActions]
    assert parameters["message"].annotation is servicebus.ServiceBusReceivedMessage


def test_import_reads_no_setting_and_opens_no_socket() -> None:
    # A fresh interpreter with no app settings and sockets that refuse to connect: importing
    # the app must still work, because nothing slow or networked belongs on the cold-start path.
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('network call at import time')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import function_app\n"
        "print(len(function_app.app.get_functions()))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 1
