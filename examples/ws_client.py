"""Stream a WAV file to ``caesura serve``'s realtime endpoint and print the events.

    pip install '.[server]'  # from a clone; once released: pip install 'caesura[server]'
    caesura serve &
    python examples/ws_client.py tests/fixtures/speech_16k.wav
    python examples/ws_client.py tests/fixtures/speech_16k.wav --fast \\
        --transcript "book a table for two"
    python examples/ws_client.py tests/fixtures/ami_sample_16k.wav --http --fast

The file (any rate / channels) is converted to PCM16LE mono 16 kHz and sent in 20 ms binary
frames at real-time pace (``--fast``: as fast as the server accepts), followed by 1 s of
silence. With ``--transcript`` the client also sends the text as a final transcript after
the first ``speech_end`` -- the server's turn engine answers with an ``end_of_turn`` event
(its reason, the silence waited and the end-of-turn probability) once the user is done.
``--http`` first sends the whole file to ``POST /v1/audio/vad``.

The client needs only what ``caesura[server]`` installs. Like the server, it reads
``VAD_LISTEN`` (the address to reach; default 127.0.0.1:9093) and ``CAESURA_TOKEN`` (the bearer
token; ``--token`` overrides it). A refused connection (wrong token, server not running)
exits with status 1 and says why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import websockets

from caesura.audio import decode_wav, resample, to_mono
from caesura.errors import CaesuraError


class RefusedError(Exception):
    """The server turned the client away (the message says why)."""


def default_url() -> str:
    host = os.environ.get("VAD_LISTEN", "127.0.0.1:9093")
    if host.startswith("0.0.0.0:"):  # listening on every interface: reach it on loopback
        host = "127.0.0.1:" + host.split(":", 1)[1]
    return f"ws://{host}/v1/audio/realtime_vad"


def pcm16_16k(path: Path) -> bytes:
    frames, rate = decode_wav(path.read_bytes())
    audio = to_mono(frames)
    if rate != 16000:
        audio = resample(audio, rate, 16000)
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    return np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2").tobytes()


async def stream(args: argparse.Namespace) -> None:
    try:
        data = pcm16_16k(args.wav)
    except (OSError, CaesuraError) as exc:
        raise RefusedError(f"cannot read {args.wav}: {exc}") from None
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    url = f"{args.url}?include_samples=true"
    try:
        ws = await websockets.connect(url, additional_headers=headers)
    except (OSError, websockets.InvalidHandshake) as exc:
        raise RefusedError(
            f"cannot connect to {args.url}: {exc} (is `caesura serve` running?)"
        ) from None
    async with ws:
        t0 = time.perf_counter()
        sent_transcript = False
        refused: list[str] = []

        async def receive() -> None:
            nonlocal sent_transcript
            async for msg in ws:
                ev = json.loads(msg)
                stamp = f"[{time.perf_counter() - t0:6.2f} s]"
                if "error" in ev:
                    refused.append(f"{ev['error']}: {ev.get('message', '')}")
                    return
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
        try:
            for i, pos in enumerate(range(0, len(data), step)):
                if reader.done():
                    break
                await ws.send(data[pos : pos + step])
                if not args.fast:
                    await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.perf_counter()))
            if not reader.done():
                await asyncio.wait([reader], timeout=2.0)
            await ws.close()
        except websockets.ConnectionClosed:
            pass
        try:
            await reader
        except websockets.ConnectionClosed as exc:
            if not refused:
                refused.append(f"the server closed the connection ({exc})")
        if refused:
            hint = " (check --token / CAESURA_TOKEN)" if refused[0].startswith("unauth") else ""
            raise RefusedError(f"server refused the stream: {refused[0]}{hint}")


def _multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), boundary


def http(args: argparse.Namespace) -> None:
    base = args.url.replace("ws://", "http://").replace("wss://", "https://")
    base = base.rsplit("/v1/", 1)[0]
    body, boundary = _multipart("audio", args.wav.name, args.wav.read_bytes())
    request = urllib.request.Request(
        f"{base}/v1/audio/vad",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            print("POST /v1/audio/vad ->", r.status, r.read().decode())
    except urllib.error.HTTPError as exc:
        raise RefusedError(f"POST /v1/audio/vad -> {exc.code}: {exc.read().decode()}") from None
    except OSError as exc:
        raise RefusedError(f"cannot reach {base}: {exc} (is `caesura serve` running?)") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("wav", type=Path)
    p.add_argument("--url", default=default_url(), help="default: from VAD_LISTEN, %(default)s")
    p.add_argument("--token", default=os.environ.get("CAESURA_TOKEN"), help="env CAESURA_TOKEN")
    p.add_argument("--transcript", default=None)
    p.add_argument("--fast", action="store_true", help="do not pace at real time")
    p.add_argument("--http", action="store_true", help="also call POST /v1/audio/vad")
    args = p.parse_args(argv)
    try:
        if args.http:
            http(args)
        asyncio.run(stream(args))
    except RefusedError as exc:
        print(f"ws_client: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
