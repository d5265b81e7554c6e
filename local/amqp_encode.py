"""A small AMQP 1.0 encoder that writes the smallest encoding of each value, as Microsoft.Azure.Amqp does.

The values are the ones proton's ``Data`` decoder gives (``emulators.servicebus.message.split``): its typed
wrappers (``ulong``, ``uint``, ``symbol``, ``timestamp`` ...) keep the AMQP type of every value, so a
section decoded from the wire and encoded here again keeps its types. proton's own encoder always writes
``list32``/``map32``; the .NET host writes ``list8``/``map8``/``smalluint`` ... and so does this module, so
the binding data the local host builds is byte-for-byte what the Functions host sends (a test re-encodes
a payload captured from Azure and compares).
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

from proton import (
    Described,
    byte,
    char,
    decimal32,
    decimal64,
    decimal128,
    float32,
    int32,
    short,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)

_NULL = b"\x40"


class EncodeError(TypeError):
    """A value of a type AMQP has no encoding for."""


def encode(value: Any) -> bytes:
    out = bytearray()
    _put(out, value)
    return bytes(out)


def described(code: int, value: Any) -> bytes:
    """A message section: the descriptor ``code`` (a smallulong) and its value."""
    return b"\x00\x53" + bytes([code]) + encode(value)


def _put(out: bytearray, value: Any) -> None:  # noqa: PLR0912 - one branch per AMQP type
    # proton's typed wrappers subclass int/str/float: test them before the plain types.
    if value is None:
        out += _NULL
    elif isinstance(value, bool):
        out += b"\x41" if value else b"\x42"
    elif isinstance(value, ulong):
        _put_unsigned(out, int(value), (b"\x44", b"\x53", b"\x80"), ">Q")
    elif isinstance(value, uint):
        _put_unsigned(out, int(value), (b"\x43", b"\x52", b"\x70"), ">I")
    elif isinstance(value, ushort):
        out += b"\x60" + struct.pack(">H", value)
    elif isinstance(value, ubyte):
        out += b"\x50" + struct.pack(">B", value)
    elif isinstance(value, byte):
        out += b"\x51" + struct.pack(">b", value)
    elif isinstance(value, short):
        out += b"\x61" + struct.pack(">h", value)
    elif isinstance(value, int32):
        out += b"\x54" + struct.pack(">b", value) if -128 <= value <= 127 else b"\x71" + struct.pack(">i", value)
    elif isinstance(value, timestamp):
        out += b"\x83" + struct.pack(">q", value)
    elif isinstance(value, int):  # AMQP long
        out += b"\x55" + struct.pack(">b", value) if -128 <= value <= 127 else b"\x81" + struct.pack(">q", value)
    elif isinstance(value, float32):
        out += b"\x72" + struct.pack(">f", value)
    elif isinstance(value, float):
        out += b"\x82" + struct.pack(">d", value)
    elif isinstance(value, decimal32 | decimal64 | decimal128):
        _put_decimal(out, value)
    elif isinstance(value, char):
        out += b"\x73" + struct.pack(">I", ord(value))
    elif isinstance(value, symbol):
        _put_variable(out, value.encode("ascii"), b"\xa3", b"\xb3")
    elif isinstance(value, str):
        _put_variable(out, value.encode("utf-8", "surrogatepass"), b"\xa1", b"\xb1")
    elif isinstance(value, bytes | bytearray | memoryview):
        _put_variable(out, bytes(value), b"\xa0", b"\xb0")
    elif isinstance(value, uuid.UUID):
        out += b"\x98" + value.bytes
    elif isinstance(value, Described):
        out += b"\x00"
        _put(out, value.descriptor)
        _put(out, value.value)
    elif isinstance(value, list | tuple):
        _put_compound(out, [encode(item) for item in value], b"\xc0", b"\xd0", empty=b"\x45")
    elif isinstance(value, dict):
        _put_compound(out, [encode(part) for pair in value.items() for part in pair], b"\xc1", b"\xd1")
    else:
        raise EncodeError(f"no AMQP encoding for {type(value).__name__}")


def _put_unsigned(out: bytearray, value: int, codes: tuple[bytes, bytes, bytes], fmt: str) -> None:
    zero, small, full = codes
    if value == 0:
        out += zero
    elif value < 256:
        out += small + bytes([value])
    else:
        out += full + struct.pack(fmt, value)


def _put_variable(out: bytearray, raw: bytes, small: bytes, large: bytes) -> None:
    out += small + bytes([len(raw)]) if len(raw) < 256 else large + struct.pack(">I", len(raw))
    out += raw


def _put_compound(out: bytearray, items: list[bytes], small: bytes, large: bytes, empty: bytes | None = None) -> None:
    if not items and empty is not None:
        out += empty
        return
    body = b"".join(items)
    if len(body) + 1 < 256 and len(items) < 256:
        out += small + bytes([len(body) + 1, len(items)])
    else:
        out += large + struct.pack(">II", len(body) + 4, len(items))
    out += body


def _put_decimal(out: bytearray, value: Any) -> None:
    if isinstance(value, decimal32):
        out += b"\x74" + struct.pack(">I", int(value))
    elif isinstance(value, decimal64):
        out += b"\x84" + struct.pack(">Q", int(value))
    else:
        out += b"\x94" + bytes(value)
