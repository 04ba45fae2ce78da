"""``python -m bench --only NAME --merge``: the new figures replace that benchmark's, and
everything else in the results file stays, notes merged by hand included."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as runner


def test_merge_replaces_one_benchmark_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "latest.json"
    out.write_text(
        json.dumps(
            {
                "generated_at": "2026-12-01T00:00:00+00:00",
                "limiter_utilisation": 0.5,
                "sie_read_vs_stdlib_ratio": 1.2,
                "stock_contention_measured": {"note": "merged by hand"},
                "details": {"limiter": {"limiter_utilisation": 0.5}, "sie_read": {"x": 1}},
                "seconds": {"limiter": 60.0, "sie_read": 9.0, "total": 69.0},
            }
        )
    )

    def fake_limiter(_args: Any) -> dict[str, Any]:
        return {"limiter_utilisation": 0.98, "limiter_429s": 0}

    monkeypatch.setitem(runner.BENCHES, "limiter", fake_limiter)
    monkeypatch.setattr(sys, "argv", ["bench", "--only", "limiter", "--merge", "--out", str(out)])
    runner.main()
    result = json.loads(out.read_text())
    assert result["limiter_utilisation"] == 0.98
    assert result["details"]["limiter"] == {"limiter_utilisation": 0.98, "limiter_429s": 0}
    assert result["details"]["sie_read"] == {"x": 1}
    assert result["stock_contention_measured"] == {"note": "merged by hand"}
    assert result["merged_from"]["benchmarks"] == ["sie_read"]
    assert result["seconds"]["sie_read"] == 9.0
