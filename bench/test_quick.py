"""Every benchmark still runs, quickly, and reports sane ratios.

Not collected by the default ``pytest`` run (``testpaths = ["tests"]``): run it with
``.venv/bin/pytest -q bench/test_quick.py``. Goals are not asserted here: the quick sizes
are too small, and the CI machine too noisy, for a pass/fail on a ratio to mean anything.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# "--quick < 10 s" is the contract; the margin absorbs a busy shared machine.
QUICK_BUDGET = 30.0


@pytest.mark.parametrize(
    "script",
    [
        "bench_planning.py",
        "bench_latency.py",
        "bench_delivery.py",
        "bench_intake.py",
        "bench_instances.py",
        "bench_idle.py",
        "bench_scale.py",
    ],
)
def test_quick_mode_runs_and_reports_finite_ratios(script: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["quick"] is True
    assert result["figures"], "no figure reported"
    for figure in result["figures"]:
        assert math.isfinite(figure["ratio"]) and figure["ratio"] > 0, figure
        assert figure["value"] > 0 and figure["baseline"] > 0, figure
    assert not result["details"].get("non_2xx_answers"), "the sandboxes answered errors"
    assert elapsed < QUICK_BUDGET, f"{script} --quick took {elapsed:.1f} s"
