"""What the card application is, for both its sides: the emulated card and the host.

The host side (protocol, terminal rules) needs these names but not the emulator.
"""

from __future__ import annotations

from enum import StrEnum

SSSE_NAME = "sx1.sh.社会保障".encode("gbk")  # DF name of the social security application


class LifeCycle(StrEnum):
    NOT_ACTIVATED = "NOT_ACTIVATED"
    ACTIVE = "ACTIVE"


class PinState(StrEnum):
    INITIAL = "INITIAL"
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
