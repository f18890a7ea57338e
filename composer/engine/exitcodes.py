"""Docker's exit codes for a container that could not start its command."""

from __future__ import annotations

CANNOT_EXECUTE = 126
NOT_FOUND = 127
COMPOSER_FAILED = 125


def start_failure_code(message: str) -> int:
    """127 when the command does not exist, 126 when it cannot be executed, else 125: what
    ``docker run`` exits with when the runtime refuses to start the process."""
    text = message.lower()
    if "executable file not found" in text or "no such file or directory" in text:
        return NOT_FOUND
    if "permission denied" in text or "exec format error" in text or "is a directory" in text:
        return CANNOT_EXECUTE
    return COMPOSER_FAILED
