"""APScheduler's "still running" warning is the send tick working off a backlog: not a warning."""

from __future__ import annotations

import logging

import pytest

import outreach.worker  # noqa: F401  (installs the filter)


def test_the_skipped_run_warning_is_demoted_and_other_warnings_stay(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("apscheduler.scheduler")
    with caplog.at_level(logging.INFO, logger="apscheduler.scheduler"):
        logger.warning('Execution of job "%s" skipped: maximum number of running instances reached (%d)', "tick", 1)
        logger.warning("Run time of job %s was missed by %s", "tick", "0:00:07")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Run time of job tick was missed by 0:00:07")
    ]
