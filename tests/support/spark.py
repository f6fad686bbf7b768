"""What the Spark tests (tests/spark) share besides the session fixture."""

from __future__ import annotations

import pytest

# PySpark (3.5) leaves the local sockets it reads results through for the garbage collector.
SOCKETS_LEFT_OPEN = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
