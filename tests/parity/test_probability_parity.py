"""Our probabilities against silero-vad's own ``OnnxWrapper`` (needs silero-vad + torch).

Run by ``nox -s parity``; skipped cleanly when silero-vad (or the shared data) is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caesura.audio import read_audio, resample
from caesura.errors import UnsupportedModelError
from caesura.vad import SileroVAD

silero_vad = pytest.importorskip("silero_vad", reason="silero-vad is not installed")
torch = pytest.importorskip("torch", reason="torch is not installed")

FAST_TOL = 1e-4


@pytest.fixture(scope="module")
def wrapper():
    return silero_vad.load_silero_vad(onnx=True)


def silero_probs(wrapper, audio: np.ndarray, rate: int) -> np.ndarray:
    """What get_speech_timestamps computes: windows of 512/256, the last zero-padded."""
    win = 512 if rate == 16000 else 256
    wrapper.reset_states()
    x = torch.from_numpy(audio)
    out = []
    for start in range(0, len(x), win):
        chunk = x[start : start + win]
        if len(chunk) < win:
            chunk = torch.nn.functional.pad(chunk, (0, win - len(chunk)))
        out.append(wrapper(chunk, rate).item())
    return np.asarray(out, dtype=np.float32)


def check(wrapper, audio: np.ndarray, rate: int) -> None:
    expected = silero_probs(wrapper, audio, rate)
    ref = SileroVAD.load(backend="onnx")
    fast = SileroVAD.load(backend="fast")
    # the reference path is bit-identical to silero-vad, offline and streaming
    np.testing.assert_array_equal(ref.probabilities(audio, rate), expected)
    stream = ref.stream(rate)
    streamed = np.concatenate(
        [stream.process(audio[i : i + 777]) for i in range(0, len(audio), 777)]
    )
    streamed = np.concatenate([streamed, stream.flush()])
    np.testing.assert_array_equal(streamed, expected)
    # the fast path within 1e-4
    np.testing.assert_allclose(fast.probabilities(audio, rate), expected, atol=FAST_TOL)
    s = fast.stream(rate)
    got = np.concatenate([s.process(audio), s.flush()])
    np.testing.assert_allclose(got, expected, atol=FAST_TOL)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_fixture_parity(wrapper, fixtures_dir: Path, rate):
    audio, sr = read_audio(fixtures_dir / "speech_16k.wav")
    check(wrapper, audio if rate == sr else resample(audio, sr, rate), rate)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_synthetic_parity(wrapper, rate):
    rng = np.random.default_rng(rate)
    n = 5 * rate
    t = np.arange(n) / rate
    audio = (
        0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)
        + 0.05 * rng.standard_normal(n)
    ).astype(np.float32)
    check(wrapper, audio, rate)


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "rate"),
    [("silero_test.wav", 16000), ("silero_test.wav", 8000), ("aepyx_8k.wav", 8000)],
)
def test_shared_data_parity(wrapper, shared_data: Path, name, rate):
    audio, sr = read_audio(shared_data / "vad" / "unlabeled" / name)
    if sr != rate:
        audio = resample(audio, sr, rate)
    check(wrapper, audio, rate)


PACKAGE_DATA = Path(silero_vad.__file__).parent / "data"


def test_v5_half_model_refused():
    path = PACKAGE_DATA / "silero_vad_half.onnx"
    if not path.exists():
        pytest.skip(f"{path} not shipped by this silero-vad")
    with pytest.raises(UnsupportedModelError, match="v5"):
        SileroVAD.load(path, cache=False)


def test_16k_only_export_refused_at_8k():
    path = PACKAGE_DATA / "silero_vad_16k_op15.onnx"
    if not path.exists():
        pytest.skip(f"{path} not shipped by this silero-vad")
    with pytest.raises(UnsupportedModelError, match="8000 Hz"):
        SileroVAD.load(path, cache=False)


def test_16k_only_export_accepted_at_16k_only():
    path = PACKAGE_DATA / "silero_vad_16k_op15.onnx"
    if not path.exists():
        pytest.skip(f"{path} not shipped by this silero-vad")
    try:
        model = SileroVAD.load(path, sample_rates=(16000,), cache=False)
    except UnsupportedModelError as exc:
        pytest.fail(f"a 16 kHz export of v6.2 should load at 16 kHz: {exc}")
    assert model.sample_rates == (16000,)
    assert model.stream(8000).model_rate == 16000  # 8 kHz input is resampled instead


def test_op18_ifless_export_at_16k():
    # this export agrees with v6.2 at 16 kHz only (its 8 kHz output differs by ~0.4)
    path = PACKAGE_DATA / "silero_vad_op18_ifless.onnx"
    if not path.exists():
        pytest.skip(f"{path} not shipped by this silero-vad")
    with pytest.raises(UnsupportedModelError, match="8000 Hz"):
        SileroVAD.load(path, cache=False)
    model = SileroVAD.load(path, sample_rates=(16000,), cache=False)
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    np.testing.assert_allclose(
        model.probabilities(audio, 16000),
        SileroVAD.load(backend="onnx").probabilities(audio, 16000),
        atol=1e-4,
    )
