"""Corpus segmentation throughput: one process vs Ray Data with 2 workers, same files, same run.

    python benchmarks/ray_segment.py --data ../shared/data
    python benchmarks/ray_segment.py --generated 20   # no data: 20 minutes of generated audio

Rows (both from one run, on the same files):

* ``one process``: ``caesura segment``'s per-file code (:func:`caesura.cli.segment_record`)
  over every file in turn, one model, 1 CPU; CPU-hours = its process CPU time.
* ``ray, 2 workers``: :func:`caesura.ray.segment_dataset` on a local Ray cluster started with
  ``num_cpus=2`` (actor pool of 2, one model each); CPU-hours = wall time x 2 CPUs (what the
  cluster holds), from submitting the Dataset to the last row back on the driver -- actor
  start-up and model loading included, cluster start-up (printed apart) not.

Printed: hours of audio per CPU-hour, the speed-up in wall time, and Ray's overhead per file:
``(ray CPU-seconds - one-process CPU-seconds) / files``. ``--data`` is searched for audio
files (``vad/`` below it when present); the run exits 0 with "skipped: data not found" when
it is absent and ``--generated`` is not given. Results are checked to be the same records.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from caesura.audio import AUDIO_SUFFIXES, read_audio
from caesura.cli import SegmentOptions, segment_record
from caesura.vad.model import SileroVAD

ROOT = Path(__file__).resolve().parent.parent


def find_files(data: Path, limit_s: float) -> list[Path]:
    import soundfile as sf  # noqa: PLC0415

    base = data / "vad" if (data / "vad").is_dir() else data
    files = sorted(f for f in base.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
    out, total = [], 0.0
    for f in files:
        if total >= limit_s:
            break
        try:
            info = sf.info(str(f))  # the header only: both runs decode the files anyway
        except Exception:
            continue  # the corpus' bad files are the tests' business, not the benchmark's
        out.append(f)
        total += info.frames / info.samplerate
    return out


def generate(folder: Path, minutes: float) -> list[Path]:
    """Files of 30 s to 5 min: the fixture's speech tiled, with seeded noise."""
    import soundfile as sf  # noqa: PLC0415

    speech, sr = read_audio(ROOT / "tests" / "fixtures" / "speech_16k.wav")
    rng = np.random.default_rng(26)
    files, left, i = [], minutes * 60, 0
    while left > 0:
        seconds = min(left, float(rng.choice([30, 60, 120, 300])))
        n = int(seconds * sr)
        audio = np.resize(speech, n) + rng.standard_normal(n).astype(np.float32) * 0.003
        path = folder / f"gen{i:04d}.wav"
        sf.write(path, audio, sr, subtype="PCM_16")
        files.append(path)
        left -= seconds
        i += 1
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--limit-minutes", type=float, default=30.0, help="audio to use from --data")
    ap.add_argument("--generated", type=float, default=None, metavar="MINUTES")
    ap.add_argument("--batch-size", type=int, default=4)
    args, _ = ap.parse_known_args()

    try:
        import ray  # noqa: PLC0415
        import ray.data  # noqa: PLC0415

        from caesura.ray import (  # noqa: PLC0415
            RayOptions,
            iter_records,
            segment_dataset,
            to_record,
        )
    except ImportError:
        print("ray_segment: skipped: ray not installed (pip install 'caesura[ray]')")
        return 0

    tmp = tempfile.TemporaryDirectory(prefix="caesura-ray-bench-")
    if args.generated is not None:
        files = generate(Path(tmp.name), args.generated)
        source = f"generated ({args.generated:g} min)"
    else:
        data = Path(args.data)
        if not data.is_dir():
            print(f"ray_segment: skipped: data not found at {data} (or pass --generated MINUTES)")
            return 0
        files = find_files(data, args.limit_minutes * 60)
        source = str(data)
    if not files:
        print(f"ray_segment: skipped: no audio files under {args.data}")
        return 0
    paths = [str(f) for f in files]
    options = SegmentOptions()

    # one process: the CLI's loop
    model = SileroVAD.load()
    t0, c0 = time.perf_counter(), time.process_time()
    single = [segment_record(p, options, model=model) for p in paths]
    one_wall, one_cpu = time.perf_counter() - t0, time.process_time() - c0
    audio_s = sum(r.get("duration_s", 0.0) for r in single)

    # Ray, 2 workers
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    start_s = time.perf_counter() - t0
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.from_items([{"path": p} for p in paths])
        t0 = time.perf_counter()
        rows = list(
            iter_records(
                segment_dataset(ds, options, RayOptions(workers=2, batch_size=args.batch_size))
            )
        )
        ray_wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    ray_cpu = ray_wall * 2
    by_path = {r["path"]: to_record(r) for r in rows}
    same = len(rows) == len(paths) and all(by_path[r["path"]] == r for r in single)

    hours = audio_s / 3600
    print(f"ray_segment: {len(paths)} files, {hours:.3f} h of audio from {source}")
    print(f"  ray cluster start-up (not counted): {start_s:.1f} s; records identical: {same}")
    print(f"  {'':16} {'wall s':>8} {'CPU s':>8} {'audio h / CPU h':>16} {'x realtime':>11}")
    for name, wall, cpu in (
        ("one process", one_wall, one_cpu),
        ("ray, 2 workers", ray_wall, ray_cpu),
    ):
        print(
            f"  {name:16} {wall:8.2f} {cpu:8.2f} {hours * 3600 / cpu:16.0f} {audio_s / wall:11.0f}"
        )
    print(f"  speed-up (wall): {one_wall / ray_wall:.2f}x")
    print(f"  ray overhead per file: {(ray_cpu - one_cpu) / len(paths) * 1000:.0f} ms CPU")
    tmp.cleanup()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
