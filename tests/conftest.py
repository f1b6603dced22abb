"""Test-wide setup: structlog events go nowhere (tests that read them use ``capture_logs``)."""

from __future__ import annotations

import structlog

structlog.configure(processors=[structlog.processors.KeyValueRenderer()],
                    logger_factory=structlog.ReturnLoggerFactory(),
                    cache_logger_on_first_use=False)
