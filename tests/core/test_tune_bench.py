"""caesura bench: runs benchmark scripts, records the exact command, keeps going on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import caesura.bench as bench_module
from caesura.bench import BUSY_CPUS, discover, run_benchmark
from caesura.cli import main as cli_main

SCRIPT = """
import argparse, json
ap = argparse.ArgumentParser()
ap.add_argument("--data")
ap.add_argument("--json")
ap.add_argument("--fail", action="store_true")
a = ap.parse_args()
print("system        us/window")
print("caesura B=32       12.5")
print("peer               40.0")
if a.json:
    rows = [{"system": "caesura B=32", "us_per_window": 12.5},
            {"system": "peer", "us_per_window": 40.0}]
    open(a.json, "w").write(json.dumps({"rows": rows}))
raise SystemExit(3 if a.fail else 0)
"""


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    d = tmp_path / "repo" / "benchmarks"
    d.mkdir(parents=True)
    (d / "vad_speed.py").write_text(SCRIPT)
    (d / "broken.py").write_text("raise SystemExit('no peers installed')\n")
    (d / "_helpers.py").write_text("")
    return d


def test_discover_orders_known_first(bench_dir: Path) -> None:
    assert list(discover(bench_dir)) == ["vad_speed", "broken"]


def test_run_benchmark_records_command_output_json_and_plot(
    bench_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "docs" / "benchmarks"
    res = run_benchmark(
        "vad_speed",
        bench_dir / "vad_speed.py",
        out_dir=out,
        data=tmp_path,
        python=sys.executable,
        invoked_as=f"caesura bench vad_speed --data {tmp_path} --python {sys.executable}",
    )
    assert res.ok
    text = (out / "results" / "vad_speed.txt").read_text()
    # the machine's absolute paths are shown relative to the repository, so anyone can rerun
    produced = next(line for line in text.splitlines() if line.startswith("# produced by:"))
    assert str(tmp_path) not in produced
    assert f"--data {os.path.relpath(tmp_path, bench_dir.parent)} " in produced
    first = text.splitlines()[0]
    assert first.startswith("$ python benchmarks/vad_speed.py --data ")
    assert "--json" in first
    assert "# produced by: caesura bench vad_speed" in text
    assert "# machine:" in text
    assert "# load: " in text
    assert "caesura B=32       12.5" in text
    assert json.loads((out / "results" / "vad_speed.json").read_text())["rows"][0]["system"]
    if res.plot is not None:  # matplotlib installed
        assert res.plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs /proc/stat (Linux)")
def test_run_benchmark_flags_timings_taken_on_a_busy_machine(tmp_path: Path) -> None:
    """A process spinning beside the benchmark (a training run, a test suite) is measured
    and the results are flagged, so inflated timings are not quoted as the product's."""
    script = tmp_path / "repo" / "benchmarks" / "idle.py"
    script.parent.mkdir(parents=True)
    script.write_text("import time\ntime.sleep(1.5)\nprint('done')\n")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it start spinning
        res = run_benchmark("idle", script, out_dir=tmp_path / "out", data=None)
    finally:
        spinner.kill()
        spinner.wait()
    assert res.ok
    assert res.results_txt is not None
    load = next(ln for ln in res.results_txt.read_text().splitlines() if ln.startswith("# load:"))
    busy = float(load.split("kept ")[1].split(" of ")[0])
    assert busy > BUSY_CPUS, load
    assert "WARNING: timings are inflated" in load


def test_cli_bench_continues_after_a_failure(
    bench_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = cli_main(
        ["bench", "--benchmarks-dir", str(bench_dir), "--out", str(out), "--no-progress"]
    )
    assert code == 1
    printed = capsys.readouterr()
    assert "=== vad_speed: ok" in printed.out
    assert "=== broken: FAILED (exit 1)" in printed.out
    assert "no peers installed" in (out / "results" / "broken.txt").read_text()
    assert "1 benchmark(s) failed: broken" in printed.err


def test_cli_bench_list_and_unknown(bench_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "--benchmarks-dir", str(bench_dir), "--list"]) == 0
    assert "vad_speed" in capsys.readouterr().out
    assert cli_main(["bench", "--benchmarks-dir", str(bench_dir), "nope"]) == 2
    assert "unknown benchmark(s) nope" in capsys.readouterr().err


def test_cli_bench_list_outside_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # an installed caesura: no benchmarks/ beside the package, none in the current folder
    site = tmp_path / "venv" / "site-packages" / "caesura" / "bench.py"
    monkeypatch.setattr(bench_module, "__file__", str(site))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("vad_speed", "eot_text", "server_load"):
        assert name in out
    assert "not installed with the package" in out
    assert "git clone https://github.com/caesura-voice/caesura" in out
    # running one says the same, instead of a bare "run from a checkout"
    assert cli_main(["bench", "vad_speed"]) == 2
    assert "git clone https://github.com/caesura-voice/caesura" in capsys.readouterr().err


def test_run_benchmark_relative_out_is_the_callers(
    bench_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the script runs in the repository; a relative --out must still mean the caller's folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = run_benchmark("vad_speed", bench_dir / "vad_speed.py", out_dir=Path("out"), data=None)
    assert res.ok
    assert (elsewhere / "out" / "results" / "vad_speed.json").is_file()
    assert (elsewhere / "out" / "results" / "vad_speed.txt").is_file()
    assert not (bench_dir.parent / "out").exists()
