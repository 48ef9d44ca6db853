"""caesura.ray and ``caesura segment --ray`` on a local Ray cluster (2 CPUs, started by the
tests): the same records as ``caesura segment``, bad files as rows, a killed actor retried."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from caesura import cli
from caesura.audio import read_audio, resample
from caesura.errors import MissingDependencyError
from caesura.ray import (
    RESULT_COLUMNS,
    RayOptions,
    SegmentOptions,
    discover,
    iter_records,
    result_schema,
    segment_dataset,
    to_record,
)

#: one corpus, every kind of input ``caesura segment`` meets
GOOD = ("good.wav", "sub/stereo.wav", "sub/tel_8k.wav", "cd_44k.flac", "sub/silence.wav")
BAD = ("corrupt.wav", "empty.wav", "sub/junk.flac")


@pytest.fixture(scope="module")
def speech(fixtures_dir):
    audio, sr = read_audio(fixtures_dir / "speech_16k.wav")
    assert sr == 16000
    return audio


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech):
    """good 16 kHz, stereo, 8 kHz, 44.1 kHz FLAC, silence; corrupt, empty and junk files."""
    root = tmp_path_factory.mktemp("ray") / "in"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(26)

    def noise(n):
        return (rng.standard_normal(n) * 0.003).astype(np.float32)

    sf.write(root / "good.wav", speech + noise(speech.size), 16000, subtype="PCM_16")
    stereo = np.stack([speech, 0.5 * speech + noise(speech.size)], axis=1)
    sf.write(root / "sub" / "stereo.wav", stereo, 16000, subtype="PCM_16")
    sf.write(root / "sub" / "tel_8k.wav", resample(speech, 16000, 8000), 8000, subtype="PCM_16")
    sf.write(root / "cd_44k.flac", resample(speech[: 8 * 16000], 16000, 44100), 44100)
    sf.write(root / "sub" / "silence.wav", noise(16000), 16000, subtype="FLOAT")
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt junk that is not a wav")
    (root / "empty.wav").write_bytes(b"")
    (root / "sub" / "junk.flac").write_bytes(rng.bytes(2000))
    (root / "notes.txt").write_text("not audio")
    return root


def cli_doc(capsys, *argv):
    """``caesura segment``'s JSON document (one process, no Ray)."""
    rc = cli.main(["segment", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1, err  # the bad files fail
    return json.loads(out)


def header(doc):
    return {"caesura": doc["caesura"], "options": doc["options"]}


def test_cli_ray_jsonl_is_caesura_segment_json(ray_cluster, corpus, capsys, tmp_path):
    """Same folder, same records in the same order; bad files are rows with their errors."""
    doc = cli_doc(capsys, str(corpus))
    target = tmp_path / "out.jsonl"
    rc = cli.main(["segment", str(corpus), "--ray", "-o", str(target), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{len(BAD)} of {len(GOOD) + len(BAD)} input(s) failed" in err
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["path"] for line in lines] == [f["path"] for f in doc["files"]]
    for line, record in zip(lines, doc["files"], strict=True):
        assert line == {**record, **header(doc)}
    by_name = {Path(f["path"]).relative_to(corpus).as_posix(): f for f in doc["files"]}
    assert sorted(by_name) == sorted(GOOD + BAD)
    assert all("error" in by_name[n] for n in BAD)
    assert all("error" not in by_name[n] for n in GOOD)
    assert by_name["sub/stereo.wav"]["segments"]
    assert by_name["cd_44k.flac"]["segments"]
    assert by_name["sub/tel_8k.wav"]["sample_rate"] == 8000
    assert by_name["cd_44k.flac"]["sample_rate"] == 44100
    assert by_name["sub/silence.wav"]["segments"] == []


@pytest.mark.parametrize(
    "flags",
    [
        ["--threshold", "0.3", "--min-silence-ms", "300", "--max-speech-s", "2"],
        ["--compat", "silero", "--neg-threshold", "0.2"],  # 44.1 kHz: refused, as the CLI does
    ],
)
def test_segment_dataset_with_cli_options(ray_cluster, corpus, capsys, flags):
    """The library function with the CLI's options object gives the CLI's records."""
    doc = cli_doc(capsys, str(corpus), *flags)
    args = cli.build_parser(["segment"]).parse_args(["segment", "x", *flags])
    options = SegmentOptions.from_args(args)
    paths = [path for path, error in discover([str(corpus)]) if error is None]
    assert paths == [f["path"] for f in doc["files"]]
    ds = ray_cluster.data.from_items([{"path": p} for p in paths])
    out = segment_dataset(ds, options, RayOptions(workers=2, batch_size=2))
    rows = {r["path"]: r for r in iter_records(out)}
    assert sorted(rows) == sorted(paths)
    for record in doc["files"]:
        assert to_record(rows[record["path"]], header=True) == {**record, **header(doc)}
    if "silero" in flags:
        assert "--compat silero" in rows[str(corpus / "cd_44k.flac")]["error"]


def test_bytes_column_and_uris(ray_cluster, corpus, capsys):
    """Rows holding the files' bytes, and file:// URIs read through pyarrow, give the records
    of the same files read from disk; a URI that does not exist is a row with its error."""
    paths = [str(corpus / n) for n in (*GOOD, *BAD)]
    doc = cli_doc(capsys, *paths)
    expected = {f["path"]: f for f in doc["files"]}
    items = [{"path": p, "bytes": Path(p).read_bytes()} for p in paths]
    rows = list(iter_records(segment_dataset(ray_cluster.data.from_items(items))))
    assert len(rows) == len(paths)
    for row in rows:
        assert to_record(row) == expected[row["path"]]
        assert list(row) == list(RESULT_COLUMNS)

    uris = [Path(p).as_uri() for p in paths[: len(GOOD)]]
    missing = (corpus / "nowhere.wav").as_uri()
    ds = ray_cluster.data.from_items([{"path": u} for u in [*uris, missing]])
    rows = {r["path"]: r for r in iter_records(segment_dataset(ds))}
    for path, uri in zip(paths, uris, strict=False):
        assert to_record(rows[uri]) == {**expected[path], "path": uri}
    assert rows[missing]["error"]
    assert rows[missing]["segments"] is None


def test_parquet_output(ray_cluster, corpus, capsys, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    doc = cli_doc(capsys, str(corpus))
    target = tmp_path / "segments.parquet"
    rc = cli.main(["segment", str(corpus), "--ray", "-o", str(target), "--ray-workers", "1"])
    assert rc == 1
    table = pq.read_table(target)
    assert table.schema == result_schema()
    rows = table.to_pylist()
    assert [to_record(r, header=True) for r in rows] == [{**f, **header(doc)} for f in doc["files"]]


# --------------------------------------------------------------------------------------------
# a worker that dies mid-batch
# --------------------------------------------------------------------------------------------


def _busy_actors() -> list[int]:
    """Pids of this machine's segmenting actors that are running (state R) right now."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if not (proc / "cmdline").read_bytes().startswith(b"ray::MapWorker(MapBatches("):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R":
                pids.append(int(proc.name))
        except OSError:  # gone
            continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_actor_is_retried_and_each_file_is_written_once(ray_cluster, speech, tmp_path):
    """An actor is killed (SIGKILL) while it segments a batch; Ray restarts it and runs the
    batch again; the output holds every file exactly once, each with its record."""
    long = tmp_path / "long.wav"  # 4 minutes: a batch keeps an actor busy for a while
    sf.write(long, np.tile(speech, 20), 16000, subtype="PCM_16")
    paths = []
    for i in range(8):
        copy = tmp_path / f"copy{i}.wav"
        copy.write_bytes(long.read_bytes())
        paths.append(str(copy))

    killed: list[int] = []
    done = threading.Event()

    def killer():
        while not done.is_set() and not killed:
            busy = _busy_actors()
            if busy:
                os.kill(busy[0], signal.SIGKILL)  # mid-batch: it is computing
                killed.append(busy[0])
            time.sleep(0.05)

    rows: list[dict] = []

    def consume():
        ds = ray_cluster.data.from_items([{"path": p} for p in paths])
        options = RayOptions(workers=2, batch_size=1)
        try:
            rows.extend(iter_records(segment_dataset(ds, ray_options=options)))
        finally:
            done.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (killer, consume)]
    for thread in threads:
        thread.start()
    threads[1].join(timeout=150)  # on a hang the test fails; ray.shutdown ends the actors
    done.set()
    assert not threads[1].is_alive(), "the run did not finish"
    assert len(killed) == 1
    assert sorted(r["path"] for r in rows) == sorted(paths)  # each file exactly once
    expected = cli.segment_record(long, SegmentOptions())
    assert expected["segments"]
    for row in rows:
        assert to_record(row) == {**expected, "path": row["path"]}


# --------------------------------------------------------------------------------------------
# without a cluster
# --------------------------------------------------------------------------------------------


def test_missing_ray_names_the_extra(monkeypatch, capsys, corpus):
    for name in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r"caesura\[ray\]"):
        segment_dataset(object())  # type: ignore[arg-type]
    assert cli.main(["segment", str(corpus), "--ray"]) == 2
    assert "pip install 'caesura[ray]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-f", "jsonl"], "-f jsonl is a --ray format; add --ray"),
        (["--ray", "-f", "csv"], "--ray writes -f jsonl or -f parquet"),
        (["--ray", "-f", "parquet"], "-f parquet needs -o FILE.parquet"),
        (["--ray", "--ray-workers", "0"], "workers must be >= 1"),
    ],
)
def test_ray_usage_errors_exit_2_before_any_cluster(capsys, corpus, argv, message):
    assert cli.main(["segment", str(corpus), *argv]) == 2
    assert message in capsys.readouterr().err


def test_batch_size_default_is_the_documented_one(capsys):
    with pytest.raises(SystemExit):
        cli.main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {RayOptions().batch_size})" in text
