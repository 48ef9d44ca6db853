"""Shared helpers for the server tests: WAV writing, realtime clients, reference events."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable

import numpy as np
from websockets.sync.client import connect

from caesura.server.config import StreamOptions
from caesura.server.realtime import segmenter_options
from caesura.vad import SileroVAD
from caesura.vad.segmenter import Segmenter, SpeechEnd, SpeechStart


def wav_bytes(audio: np.ndarray, rate: int, *, sampwidth: int = 2, fmt: int = 1) -> bytes:
    """A RIFF/WAVE file: ``audio`` float [-1, 1] ``[n]`` or ``[n, ch]``; PCM16/24/32 or float32."""
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    _n, ch = a.shape
    if fmt == 3:
        raw = a.astype("<f4" if sampwidth == 4 else "<f8").tobytes()
    elif sampwidth == 2:
        raw = np.clip(np.round(a * 32767), -32768, 32767).astype("<i2").tobytes()
    elif sampwidth == 4:
        raw = np.clip(np.round(a * 2147483647), -(2**31), 2**31 - 1).astype("<i4").tobytes()
    elif sampwidth == 3:
        ints = np.clip(np.round(a * 8388607), -(2**23), 2**23 - 1).astype("<i4").reshape(-1)
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    else:
        raise ValueError(sampwidth)
    block = ch * sampwidth
    fmt_chunk = struct.pack("<HHIIHH", fmt, ch, rate, rate * block, block, sampwidth * 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    body += b"data" + struct.pack("<I", len(raw)) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm16(audio: np.ndarray) -> bytes:
    return np.clip(np.round(np.asarray(audio) * 32768), -32768, 32767).astype("<i2").tobytes()


def chunked(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    out, pos = [], 0
    for s in sizes:
        if pos >= len(data):
            break
        out.append(data[pos : pos + s])
        pos += s
    if pos < len(data):
        out.append(data[pos:])
    return out


def stream_events(
    url: str,
    frames: Iterable[bytes | str],
    *,
    settle_s: float = 1.0,
    headers: dict[str, str] | None = None,
    expect: int = 0,
) -> list[dict]:
    """Send ``frames`` over one WebSocket, then collect every text message until quiet.

    With ``expect``, first wait (up to 60 s) for that many messages however slow the server
    is (a loaded machine), then for ``settle_s`` of quiet to catch any extra ones.
    """
    out: list[dict] = []
    with connect(url, additional_headers=headers, max_size=None) as ws:
        for f in frames:
            ws.send(f)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            wait = max(deadline - time.monotonic(), 0.01) if len(out) < expect else settle_s
            try:
                msg = ws.recv(timeout=wait)
            except TimeoutError:
                break
            out.append(json.loads(msg))
    return out


def reference_events(audio16k: np.ndarray, options: StreamOptions | None = None) -> list[dict]:
    """What a session should emit: VADStream probabilities through the same Segmenter."""
    opts = options or StreamOptions()
    probs = SileroVAD.load().stream(16000).process(np.asarray(audio16k, dtype=np.float32))
    seg = Segmenter(segmenter_options(opts), sample_rate=16000, keep_audio=False)
    out: list[dict] = []
    for ev in seg.process(probs):
        if isinstance(ev, SpeechStart):
            out.append(
                {"event": "speech_start", "start": ev.start_sample, "sample": ev.detected_sample}
            )
        elif isinstance(ev, SpeechEnd):
            out.append(
                {
                    "event": "speech_end",
                    "start": ev.start_sample,
                    "end": ev.end_sample,
                    "sample": ev.detected_sample,
                }
            )
    return out
