"""Build progress by stage: plain lines in a log (a real build, stderr piped), a tqdm bar on a
terminal (a pty), and Beam's own warnings hidden."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from pipeline_helpers import Cohort

from hcc_shards.build import progress

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "hcc_shards.cli")


def test_a_build_logs_each_stage_once_without_beam_warnings(small_cohort: Cohort, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)
    done = subprocess.run(
        [*CLI, "build", small_cohort.root, str(tmp_path / "out"), "--workers", "1", "--limit", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert not [line for line in lines if "apache_beam" in line], done.stderr[-3000:]
    finished = {}
    for line in lines:
        found = re.match(r"\[hcc-shards\] (\w+) (\d+)/(\d+) ", line)
        if found and found.group(2) == found.group(3):
            finished.setdefault(found.group(1), []).append(line)
    assert sorted(finished) == sorted(progress.STAGES), lines
    assert all(len(hits) == 1 for hits in finished.values()), finished  # each final state once
    # A stage first seen already finished has no rate; plain_line's rate and ETA are tested below.
    assert finished["cases"][0].startswith("[hcc-shards] cases 1/1 cases")
    assert lines[-1] == finished["commit"][0]  # the last line is printed once


def _fill(folder: Path, files: int, cases: int) -> None:
    for task in range(2):
        progress.mark_listed(str(folder), task, files // 2)
    for _ in range(files):
        progress.mark_indexed(str(folder))
    (folder / "total.json").write_text(f'{{"cases": {cases}}}')


def test_stages_read_from_a_progress_directory(tmp_path: Path) -> None:
    assert progress.read_stages(str(tmp_path), 2) == [progress.StageCount("listing", 0, 2)]
    _fill(tmp_path, 10, 3)
    stages = {c.stage: (c.done, c.total) for c in progress.read_stages(str(tmp_path), 2)}
    assert stages == {"listing": (2, 2), "index": (10, 10), "pair": (0, 0), "cases": (0, 3)}
    line = progress.plain_line(progress.StageCount("cases", 1, 3), 2.0)
    assert line == "[hcc-shards] cases 1/3 cases, 0.5/s, ETA 4s"


def test_on_a_terminal_the_view_draws_a_bar(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with os.fdopen(follower, "w") as terminal:
        assert progress.use_bar(terminal) or os.environ.get("CI")
        view = progress.ProgressView(terminal, bar=True)
        _fill(tmp_path, 10, 3)
        view.update(progress.read_stages(str(tmp_path), 2))
        for case in ("a", "b", "c"):
            (tmp_path / "done").mkdir(exist_ok=True)
            (tmp_path / "done" / case).touch()
            view.update(progress.read_stages(str(tmp_path), 2))
        view.close(progress.read_stages(str(tmp_path), 2))
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    text = shown.decode()
    assert "\r" in text  # a bar redrawn in place, not lines
    assert "[hcc-shards] cases: 100%" in text and "3/3" in text
    assert "[hcc-shards] index: 100%" in text
