"""Test-wide setup: quiet structlog (tests that read events use ``capture_logs``)."""

from __future__ import annotations

import logging

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                    logger_factory=structlog.PrintLoggerFactory(),
                    cache_logger_on_first_use=False)
