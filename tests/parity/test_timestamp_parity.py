"""``speech_timestamps(..., compat="silero")`` against silero-vad 6.2.3's ``get_speech_timestamps``.

Run by ``nox -s parity`` (installs silero-vad and torch); skipped when silero_vad is not
importable. The reference model is silero-vad's own ``OnnxWrapper`` over its packaged
``silero_vad.onnx`` (the same file caesura bundles).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

silero_vad = pytest.importorskip("silero_vad", reason="silero-vad not installed (nox -s parity)")
torch = pytest.importorskip("torch")

from silero_vad import get_speech_timestamps, load_silero_vad  # noqa: E402
from silero_vad.utils_vad import get_speech_timestamps_from_probs  # noqa: E402

from caesura.audio import read_audio, resample  # noqa: E402
from caesura.vad.model import SileroVAD  # noqa: E402
from caesura.vad.offline import (  # noqa: E402
    speech_timestamps,
    timestamps_from_probabilities,
)


@pytest.fixture(scope="module")
def ref_model():
    torch.set_num_threads(1)
    return load_silero_vad(onnx=True)


@pytest.fixture(scope="module")
def model():
    return SileroVAD.load()


def reference(audio, model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "casting to 16000 manually" at 48 kHz
        return get_speech_timestamps(torch.from_numpy(audio.copy()), model, **kw)


@pytest.fixture(scope="module")
def silero_test(shared_data):
    path = shared_data / "vad" / "unlabeled" / "silero_test.wav"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    audio, sr = read_audio(path)
    assert sr == 16000
    return audio


@pytest.fixture(scope="module")
def synthetic(fixtures_dir):
    """~20 s of speech pieces, silences of many lengths, noise and an odd tail (seeded)."""
    speech, _sr = read_audio(fixtures_dir / "speech_16k.wav")
    rng = np.random.default_rng(20240917)
    parts = []
    for _ in range(14):
        n = int(rng.integers(1600, 40000))
        s = int(rng.integers(0, speech.size - n))
        parts.append(speech[s : s + n] * float(rng.uniform(0.3, 1.5)))
        gap = int(rng.choice([800, 1600, 3200, 6400, 16000]))
        parts.append((rng.standard_normal(gap) * 10 ** rng.uniform(-4, -2)).astype(np.float32))
    x = np.concatenate(parts).astype(np.float32)
    return np.clip(x[: x.size - 137], -1, 1).astype(np.float32)  # not a multiple of 512


def test_silero_test_wav_default_options(silero_test, model, ref_model):
    ours = speech_timestamps(silero_test, 16000, compat="silero", model=model)
    ref = reference(silero_test, ref_model)
    assert len(ref) > 5
    assert ours == ref


@pytest.mark.parametrize(
    "kw",
    [
        {"threshold": 0.3},
        {"threshold": 0.7, "min_silence_duration_ms": 300},
        {"threshold": 0.5, "neg_threshold": 0.2, "speech_pad_ms": 100},
        {"min_speech_duration_ms": 0, "min_silence_duration_ms": 0, "speech_pad_ms": 0},
        {"max_speech_duration_s": 3.0},
        {"max_speech_duration_s": 2.0, "use_max_poss_sil_at_max_speech": False},
        {"max_speech_duration_s": 1.5, "min_silence_at_max_speech": 200},
        {"return_seconds": True, "time_resolution": 3},
    ],
)
def test_silero_test_wav_option_sweep(silero_test, model, ref_model, kw):
    assert speech_timestamps(silero_test, 16000, compat="silero", model=model, **kw) == reference(
        silero_test, ref_model, **kw
    )


THRESHOLDS = [0.2, 0.5, 0.8]
SWEEP = [
    {"min_speech_duration_ms": ms, "min_silence_duration_ms": sil, "speech_pad_ms": pad}
    for ms, sil, pad in [(0, 0, 0), (250, 100, 30), (500, 50, 200), (100, 600, 10)]
] + [
    {"max_speech_duration_s": mx, "use_max_poss_sil_at_max_speech": use}
    for mx in (0.8, 2.5)
    for use in (True, False)
]


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("kw", SWEEP)
def test_synthetic_sweep_16k(synthetic, model, ref_model, threshold, kw):
    ours = speech_timestamps(
        synthetic, 16000, compat="silero", model=model, threshold=threshold, **kw
    )
    assert ours == reference(synthetic, ref_model, threshold=threshold, **kw)


@pytest.mark.parametrize(
    "kw", [{}, {"threshold": 0.35, "speech_pad_ms": 60}, {"return_seconds": True}]
)
def test_synthetic_8k(synthetic, model, ref_model, kw):
    x8 = resample(synthetic, 16000, 8000)
    ours = speech_timestamps(x8, 8000, compat="silero", model=model, **kw)
    assert ours == reference(x8, ref_model, sampling_rate=8000, **kw)
    assert ours


def test_synthetic_48k_decimated_like_silero(synthetic, model, ref_model):
    x48 = resample(synthetic, 16000, 48000)
    ours = speech_timestamps(x48, 48000, compat="silero", model=model)
    assert ours == reference(x48, ref_model, sampling_rate=48000)
    assert ours


def test_postprocessing_on_random_probabilities():
    """The post-processing alone over thousands of scripted probability sequences."""
    rng = np.random.default_rng(0)
    for _ in range(1500):
        n = int(rng.integers(1, 300))
        probs = np.repeat(rng.random(n // 4 + 1), rng.integers(1, 12, n // 4 + 1))[:n]
        probs = probs.astype(np.float32)
        sr = int(rng.choice([8000, 16000]))
        kw = {
            "threshold": float(rng.choice([0.1, 0.3, 0.5, 0.7])),
            "min_speech_duration_ms": int(rng.choice([0, 50, 250])),
            "max_speech_duration_s": float(rng.choice([math.inf, 0.5, 1.0, 2.0])),
            "min_silence_duration_ms": int(rng.choice([0, 50, 100, 300])),
            "speech_pad_ms": int(rng.choice([0, 30, 100])),
            "return_seconds": bool(rng.random() < 0.3),
            "time_resolution": int(rng.choice([1, 2, 3])),
            "min_silence_at_max_speech": int(rng.choice([0, 98, 200])),
            "use_max_poss_sil_at_max_speech": bool(rng.random() < 0.7),
        }
        if rng.random() < 0.3:
            kw["neg_threshold"] = float(rng.choice([0.05, 0.2]))
        window = 512 if sr == 16000 else 256
        length = int(n * window - rng.integers(0, window))
        step = int(rng.choice([1, 1, 3]))
        ref = get_speech_timestamps_from_probs(
            [float(p) for p in probs],
            sampling_rate=sr,
            audio_length_samples=length,
            step=step,
            **kw,
        )
        ours = timestamps_from_probabilities(
            probs, sample_rate=sr, audio_length_samples=length, step=step, **kw
        )
        assert ours == ref, kw


def test_fast_path_close_to_reference(silero_test, model, ref_model):
    """The default (fast) path: same segments up to a window where a probability sits on the
    threshold (fast kernel within 1e-4 of the reference)."""
    fast = speech_timestamps(silero_test, 16000, model=model)
    ref = reference(silero_test, ref_model)
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref, strict=True):
        assert abs(a["start"] - b["start"]) <= 512
        assert abs(a["end"] - b["end"]) <= 512
