"""Offline file segmentation speed: caesura's ``speech_timestamps`` vs silero-vad's
``get_speech_timestamps`` on whole files, 1 thread, same machine, same run.

    python benchmarks/vad_offline_speed.py --data ../shared/data

Files: ``vad/unlabeled/silero_test.wav`` (60 s, 16 kHz), ``vad/unlabeled/aepyx_8k.wav`` (169 s,
8 kHz) and the AMI debug clips (15 x 30 s). Peers: ``get_speech_timestamps`` with silero-vad's
ONNX model (``OnnxWrapper``) and with its default TorchScript model (``load_silero_vad()``).
Ours: the fast path (``compat=None``) and the exact-parity path (``compat="silero"``).
Target: fast path >= 3x faster than ``get_speech_timestamps``. Best of ``--repeat`` runs.
Exits 0 with "skipped: data not found" when the data folder is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from caesura.audio import read_audio
from caesura.vad.model import SileroVAD
from caesura.vad.offline import speech_timestamps


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--repeat", type=int, default=3)
    args, _ = ap.parse_known_args()
    root = Path(args.data)
    unl = root / "vad" / "unlabeled"
    if not unl.is_dir():
        print(f"vad_offline_speed: skipped: data not found at {unl}")
        return 0
    files = [unl / "silero_test.wav", unl / "aepyx_8k.wav"]
    files += sorted((root / "vad" / "ami_debug").glob("*.wav"))
    audios = []
    for f in files:
        x, sr = read_audio(f)
        if x.size:
            audios.append((f.name, x, sr))
    total_s = sum(x.size / sr for _, x, sr in audios)

    model = SileroVAD.load()
    speech_timestamps(audios[0][1], audios[0][2], model=model)  # warm up

    rows: list[tuple[str, float]] = []
    rows.append(
        (
            "caesura speech_timestamps (fast)",
            best_of(
                lambda: [speech_timestamps(x, sr, model=model) for _, x, sr in audios], args.repeat
            ),
        )
    )
    rows.append(
        (
            'caesura speech_timestamps(compat="silero")',
            best_of(
                lambda: [
                    speech_timestamps(x, sr, compat="silero", model=model) for _, x, sr in audios
                ],
                args.repeat,
            ),
        )
    )
    try:
        import torch  # noqa: PLC0415 (optional peer)
        from silero_vad import get_speech_timestamps, load_silero_vad  # noqa: PLC0415 (optional peer)
    except ImportError:
        print("note: silero-vad / torch not installed; peers skipped")
    else:
        torch.set_num_threads(1)
        tensors = [(torch.from_numpy(x.copy()), sr) for _, x, sr in audios]
        for label, ref in (
            ("silero-vad get_speech_timestamps (ONNX)", load_silero_vad(onnx=True)),
            ("silero-vad get_speech_timestamps (TorchScript)", load_silero_vad()),
        ):
            get_speech_timestamps(tensors[0][0], ref, sampling_rate=tensors[0][1])
            rows.append(
                (
                    label,
                    best_of(
                        lambda ref=ref: [
                            get_speech_timestamps(t, ref, sampling_rate=sr) for t, sr in tensors
                        ],
                        args.repeat,
                    ),
                )
            )

    print(
        f"# Offline segmentation speed: {len(audios)} files, {total_s:.0f} s of audio, 1 thread\n"
    )
    print(f"caesura model backend: {model.backend}\n")
    print("| implementation | wall s | x real time | speed-up of caesura fast |")
    print("|---|---|---|---|")
    fast = rows[0][1]
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {total_s / t:.0f}x | {t / fast:.2f}x |")
    peers = [t for name, t in rows if name.startswith("silero")]
    if peers:
        ratio = min(peers) / fast
        verdict = "PASS" if ratio >= 3 else "FAIL"
        print(
            "\ntarget: fast path >= 3x faster than get_speech_timestamps: "
            f"{ratio:.2f}x -> {verdict}"
        )
    # sanity: the fast path agrees with the exact path on these files
    same = sum(
        speech_timestamps(x, sr, model=model)
        == speech_timestamps(x, sr, compat="silero", model=model)
        for _, x, sr in audios
    )
    print(f"fast path identical to compat='silero' on {same}/{len(audios)} files")
    return 0 if np.isfinite(fast) else 1


if __name__ == "__main__":
    sys.exit(main())
