"""Stream a WAV file to ``caesura serve``'s realtime endpoint and print the events.

    pip install '.[server]'  # from a clone; once released: pip install 'caesura[server]'
    caesura serve &                                   # 127.0.0.1:9093
    python examples/ws_client.py tests/fixtures/speech_16k.wav
    python examples/ws_client.py speech.wav --transcript "book a table for two" --fast

The file (any rate / channels) is converted to PCM16LE mono 16 kHz and sent in 20 ms binary
frames at real-time pace (``--fast``: as fast as the server accepts), followed by 1 s of
silence. With ``--transcript`` the client also sends the text as a final transcript after
the first ``speech_end`` -- the server answers with an ``end_of_turn`` event carrying the
end-of-turn probability. Also shows the HTTP endpoint (``--http``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import websockets

from caesura.audio import decode_wav, resample, to_mono


def pcm16_16k(path: Path) -> bytes:
    frames, rate = decode_wav(path.read_bytes())
    audio = to_mono(frames)
    if rate != 16000:
        audio = resample(audio, rate, 16000)
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    return np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2").tobytes()


async def stream(args: argparse.Namespace) -> None:
    data = pcm16_16k(args.wav)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    url = f"{args.url}?include_samples=true"
    async with websockets.connect(url, additional_headers=headers) as ws:
        t0 = time.perf_counter()
        sent_transcript = False

        async def receive() -> None:
            nonlocal sent_transcript
            async for msg in ws:
                ev = json.loads(msg)
                stamp = f"[{time.perf_counter() - t0:6.2f} s]"
                if "error" in ev:
                    print(stamp, "ERROR", ev["error"], "-", ev["message"])
                    continue
                extra = ""
                if "sample" in ev:
                    extra = f"  (audio position {ev['sample'] / 16000:.2f} s)"
                print(stamp, json.dumps(ev), extra)
                if ev.get("event") == "speech_end" and args.transcript and not sent_transcript:
                    sent_transcript = True
                    await ws.send(
                        json.dumps({"type": "transcript", "text": args.transcript, "final": True})
                    )

        reader = asyncio.create_task(receive())
        step = 640  # bytes = 20 ms
        for i, pos in enumerate(range(0, len(data), step)):
            await ws.send(data[pos : pos + step])
            if not args.fast:
                await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.perf_counter()))
        await asyncio.sleep(2.0)
        await ws.close()
        await reader


def http(args: argparse.Namespace) -> None:
    base = args.url.replace("ws://", "http://").replace("wss://", "https://")
    base = base.rsplit("/v1/", 1)[0]
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    r = httpx.post(
        f"{base}/v1/audio/vad",
        headers=headers,
        files={"audio": ("audio.wav", args.wav.read_bytes())},
        timeout=120,
    )
    print("POST /v1/audio/vad ->", r.status_code, r.text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("wav", type=Path)
    p.add_argument("--url", default="ws://127.0.0.1:9093/v1/audio/realtime_vad")
    p.add_argument("--token", default=None)
    p.add_argument("--transcript", default=None)
    p.add_argument("--fast", action="store_true", help="do not pace at real time")
    p.add_argument("--http", action="store_true", help="also call POST /v1/audio/vad")
    args = p.parse_args()
    if args.http:
        http(args)
    asyncio.run(stream(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
