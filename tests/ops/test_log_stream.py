"""The log follows ``sys.stderr``: a stream that was replaced and closed is never written to."""

from __future__ import annotations

import io
import logging
import sys

import pytest
import structlog

from engine.logging import configure


def test_events_after_a_captured_stream_closed_go_to_the_current_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen in CI: a command run under a test's capture configured the log on the capture
    stream; once closed, every later event raised and a Kafka worker's callback died with it."""
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    configure("INFO")
    structlog.get_logger("t").info("while.captured")
    logging.getLogger("faust.t").warning("library.while_captured")
    assert "while.captured" in captured.getvalue()
    assert "library.while_captured" in captured.getvalue()
    captured.close()
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    structlog.get_logger("t").info("after.close")  # used to raise: I/O operation on closed file
    logging.getLogger("faust.t").warning("library.after_close")
    assert "after.close" in later.getvalue()
    assert "library.after_close" in later.getvalue()
