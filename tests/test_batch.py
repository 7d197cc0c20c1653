"""Many videos: `facs analyze DIR -o OUT` with worker processes and on a Dask cluster (a local
one on loopback), resumable after kill -9, with a summary table; the same files every way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from web_helpers import cut_clip

from facs.analysis.batch import MANIFEST, SUMMARY
from facs.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, examples_dir) -> Path:
    """Eight short real clips (and nothing else) in one folder."""
    d = tmp_path_factory.mktemp("batch-in")
    src = examples_dir / "single_face.mp4"
    for i in range(8):
        cut_clip(src, d / f"clip{i}.mp4", width=240, frames=12, start=4 * i)
    return d


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("clip*.csv"))}


@pytest.fixture(scope="module")
def sequential(clips, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("batch-seq")
    assert main(["analyze", str(clips), "-o", str(out), "--model", "geometry", "--quiet"]) == 0
    return _outputs(out)


def test_workers_make_the_same_files_a_summary_and_a_manifest(clips, sequential, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["analyze", str(clips), "-o", str(out), "--model", "geometry", "--workers", "2"]
    assert main([*args, "--quiet"]) == 0
    assert _outputs(out) == sequential and len(sequential) == 8
    summary = (out / SUMMARY).read_text().splitlines()
    assert summary[0].startswith("video,output,frames,fps,faces,face_rate,error,AU01_clip")
    assert len(summary) == 9
    entries = json.loads((out / MANIFEST).read_text())["outputs"]
    assert sorted(entries) == sorted(sequential)
    capsys.readouterr()
    # Run again: everything is done already; nothing is rewritten.
    before = {p: p.stat().st_mtime_ns for p in out.glob("clip*.csv")}
    assert main([*args, "--quiet"]) == 0
    assert "8 of 8 already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("clip*.csv")} == before
    # A changed input is redone; so is everything with --force.
    (clips / "clip3.mp4").touch()
    assert main([*args, "--quiet"]) == 0
    assert "7 of 8 already done" in capsys.readouterr().out
    assert main([*args, "--quiet", "--force"]) == 0
    assert _outputs(out) == sequential


def test_kill_9_mid_batch_then_rerun_gives_the_same_files(clips, sequential, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facs.cli", "analyze", str(clips), "-o", str(out),
           "--model", "geometry", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("clip*.csv"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("clip*.csv")))
    assert 3 <= done < 8, done
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "already done" in res.stdout
    assert _outputs(out) == sequential
    assert len((out / SUMMARY).read_text().splitlines()) == 9
    assert not list(out.glob(".*.tmp*"))  # what the killed run was writing is cleaned up


def test_a_bad_input_fails_alone(clips, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("clip0.mp4", "clip1.mp4"):
        (folder / name).write_bytes((clips / name).read_bytes())
    (folder / "clip9.mp4").write_text("not a video\n" * 20)
    out = tmp_path / "out"
    code = main(["analyze", str(folder), "-o", str(out), "--model", "geometry", "--quiet",
                 "--workers", "2"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "clip9.mp4" in err and "not a video" in err
    assert sorted(p.name for p in out.glob("clip*.csv")) == ["clip0.csv", "clip1.csv"]
    rows = (out / SUMMARY).read_text().splitlines()
    assert len(rows) == 4 and "not a video" in rows[-1]


def test_a_dask_cluster_makes_the_same_files(clips, sequential, tmp_path):
    from distributed import Client, LocalCluster

    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:  # fmt: skip
        args = ["analyze", str(clips), "-o", str(out), "--model", "geometry", "--quiet",
                "--cluster", cluster.scheduler_address]  # fmt: skip
        assert main(args) == 0
        with Client(cluster.scheduler_address) as client:  # each worker, its share of cores
            threads = client.run(_threads)
    assert _outputs(out) == sequential
    assert len((out / SUMMARY).read_text().splitlines()) == 9
    assert set(threads.values()) == {(1, 1)}, threads


def _threads() -> tuple[int, int]:
    import cv2
    import torch

    return cv2.getNumThreads(), torch.get_num_threads()


def test_an_unreachable_cluster_is_one_line(clips, tmp_path, capsys):
    code = main(["analyze", str(clips), "-o", str(tmp_path / "o"), "--model", "geometry",
                 "--cluster", "tcp://127.0.0.1:9"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "cannot reach the Dask scheduler" in err[-1]


def test_stale_temporaries_of_outputs_manifest_and_summary_are_cleaned(tmp_path):
    from facs.analysis import batch

    stale = [".clip0.csv.a1.tmp", f".{batch.MANIFEST}.b2.tmp", f".{batch.SUMMARY}.c3.tmp"]
    for name in stale + ["keep.csv", ".other.tmp"]:
        (tmp_path / name).write_text("x")
    assert batch.clean_temporaries(tmp_path, [tmp_path / "clip0.csv"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp", "keep.csv"]
