"""Deterministic fault points for crash tests.

``COMPOSER_FAULT=<step>`` makes the process that reaches ``point("<step>")`` kill itself with
SIGKILL right there, as a crash would, so tests can show that the next command converges from
every intermediate state without sleeping and hoping.
"""

from __future__ import annotations

import os
import signal


def point(step: str) -> None:
    if os.environ.get("COMPOSER_FAULT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
