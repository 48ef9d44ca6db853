"""VAD quality: frame scores, segment F1, event delays and false triggers.

    python benchmarks/vad_quality.py --data ../shared/data

Data: ``vad/ami_debug`` (15 x 30 s AMI meeting clips, RTTM speaker turns -> speech labels, UEM,
scored with a 0.25 s collar around every reference boundary) clean and mixed with the shared
noises (pink, white, exercise bike; whole-clip power ratio) at 10/5/0 dB; ``vad/noise`` files
(no speech) for false triggers per minute.

Reported:
1. frame level (every system on its own frame grid, labels at frame centres): ROC-AUC, TPR at
   5% FPR, F1 at the system's default operating point -- Silero probabilities (ours), an RMS
   energy detector, WebRTC VAD (score = number of aggressiveness modes 0-3 voting speech;
   F1 at mode 2);
2. streaming segmenters: segment F1 (segments -> 10 ms frames vs labels, same collar),
   speech-start and speech-end event delays (decision time minus the labelled boundary;
   median / p90 over boundaries matched within [-0.25 s, +2 s]), for our Segmenter (defaults,
   energy gate off/on, a hangover sweep) beside silero-vad's VADIterator on the same audio;
3. false triggers per minute on the noise files; the energy gate's share of skipped windows and
   CPU time.

Exits 0 with "skipped: data not found" when the data folder is absent.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caesura.audio import read_audio, resample
from caesura.vad.model import SileroVAD
from caesura.vad.segmenter import SegmenterOptions, SpeechEnd, SpeechStart
from caesura.vad.session import VADSession

SR = 16000
COLLAR = 0.25
CHUNK = 320  # 20 ms streaming chunks
SNRS = (10, 5, 0)
NOISES = ("pink_noise.wav", "white_noise.wav", "exercise_bike.wav")


# ------------------------------------------------------------------------------------ data
def load_rttm(path: Path) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text().splitlines():
        p = line.split()
        if len(p) >= 5 and p[0] == "SPEAKER":
            s = float(p[3])
            out.setdefault(p[1], []).append((s, s + float(p[4])))
    return out


def merge(segs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    res: list[list[float]] = []
    for s, e in sorted(segs):
        if res and s <= res[-1][1]:
            res[-1][1] = max(res[-1][1], e)
        else:
            res.append([s, e])
    return [(a, b) for a, b in res]


@dataclass
class Clip:
    name: str
    audio: np.ndarray
    ref: list[tuple[float, float]]
    uem: tuple[float, float]


def load_ami(root: Path) -> list[Clip]:
    ami = root / "vad" / "ami_debug"
    rttm: dict[str, list[tuple[float, float]]] = {}
    uem: dict[str, tuple[float, float]] = {}
    for split in ("train", "development", "test"):
        for k, v in load_rttm(ami / f"debug.{split}.rttm").items():
            rttm.setdefault(k, []).extend(v)
        for line in (ami / f"debug.{split}.uem").read_text().splitlines():
            p = line.split()
            uem[p[0]] = (float(p[2]), float(p[3]))
    clips = []
    for name in sorted(uem):
        x, sr = read_audio(ami / f"{name}.wav")
        if sr != SR:
            x = resample(x, sr, SR)
        clips.append(Clip(name, x, merge(rttm.get(name, [])), uem[name]))
    return clips


def mix(
    clean: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    start = int(rng.integers(0, max(1, noise.size - clean.size)))
    n = np.resize(noise[start:], clean.size).astype(np.float64)
    ps = float(np.mean(clean.astype(np.float64) ** 2))
    pn = float(np.mean(n**2)) or 1e-12
    n *= math.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    y = clean + n
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


# ------------------------------------------------------------------------------------ scoring
def frame_labels(centers: np.ndarray, ref: list[tuple[float, float]], uem: tuple[float, float]):
    """(label, scored mask) for frame centres; collar around every reference boundary."""
    lab = np.zeros(centers.size, dtype=bool)
    mask = (centers >= uem[0]) & (centers < uem[1])
    for s, e in ref:
        lab |= (centers >= s) & (centers < e)
        mask &= np.abs(centers - s) > COLLAR
        mask &= np.abs(centers - e) > COLLAR
    return lab, mask


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos = scores[labels]
    neg = scores[~labels]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    sv = allv[order]
    # average ranks for ties
    i = 0
    while i < sv.size:
        j = i
        while j + 1 < sv.size and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    rp = ranks[: pos.size].sum()
    return float((rp - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float = 0.05) -> float:
    neg = np.sort(scores[~labels])[::-1]
    k = math.floor(fpr * neg.size)
    thr = neg[k] if k < neg.size else -np.inf
    return float(np.mean(scores[labels] > thr))


def f1(pred: np.ndarray, labels: np.ndarray) -> float:
    tp = float(np.sum(pred & labels))
    fp = float(np.sum(pred & ~labels))
    fn = float(np.sum(~pred & labels))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def seg_frames(segs: list[tuple[float, float]], dur: float, step: float = 0.01):
    centers = (np.arange(int(dur / step)) + 0.5) * step
    pred = np.zeros(centers.size, dtype=bool)
    for s, e in segs:
        pred |= (centers >= s) & (centers < e)
    return centers, pred


def boundary_delays(refs: list[float], decisions: list[float]) -> list[float]:
    out = []
    dec = np.array(sorted(decisions))
    for r in refs:
        ok = dec[(dec >= r - COLLAR) & (dec <= r + 2.0)]
        if ok.size:
            out.append(float(ok[0] - r))
    return out


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) if v else float("nan")


# ------------------------------------------------------------------------------------ systems
def energy_scores(x: np.ndarray, win: int = 512):
    n = x.size // win
    w = x[: n * win].astype(np.float64).reshape(n, win)
    db = 10 * np.log10(np.mean(w * w, axis=1) + 1e-12)
    return (np.arange(n) + 0.5) * win / SR, db


def webrtc_scores(x: np.ndarray):
    import webrtcvad  # noqa: PLC0415 (optional peer)

    frame = 480  # 30 ms
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    n = pcm.size // frame
    score = np.zeros(n)
    for mode in range(4):
        v = webrtcvad.Vad(mode)
        for i in range(n):
            score[i] += v.is_speech(pcm[i * frame : (i + 1) * frame].tobytes(), SR)
    return (np.arange(n) + 0.5) * frame / SR, score


@dataclass
class StreamResult:
    segments: list[tuple[float, float]]
    starts: list[float]  # decision times
    ends: list[float]
    cpu_s: float
    gated: int = 0
    windows: int = 0


def run_ours(model: SileroVAD, x: np.ndarray, opts: SegmenterOptions, gate: float | None):
    sess = VADSession(model, sample_rate=SR, options=opts, energy_gate=gate, keep_audio=False)
    t = time.process_time()
    ev = []
    for i in range(0, x.size, CHUNK):
        ev += sess.feed(x[i : i + CHUNK])
    gated, inferred = sess.windows_gated, sess.windows_inferred
    ev += sess.flush()
    cpu = time.process_time() - t
    segs = [(e.start_s, e.end_s) for e in ev if isinstance(e, SpeechEnd)]
    return StreamResult(
        segs,
        [e.detected_s for e in ev if isinstance(e, SpeechStart)],
        [e.detected_s for e in ev if isinstance(e, SpeechEnd) and e.reason != "flush"],
        cpu,
        gated,
        gated + inferred,
    )


def run_vaditerator(ref_model, x: np.ndarray):
    import torch  # noqa: PLC0415 (optional peer)
    from silero_vad import VADIterator  # noqa: PLC0415 (optional peer)

    it = VADIterator(ref_model, sampling_rate=SR)
    t = time.process_time()
    segs, starts, ends = [], [], []
    cur = None
    xt = torch.from_numpy(x)
    for i in range(0, x.size - 511, 512):
        r = it(xt[i : i + 512])
        now = (i + 512) / SR
        if r and "start" in r:
            cur = r["start"] / SR
            starts.append(now)
        elif r and "end" in r:
            ends.append(now)
            if cur is not None:
                segs.append((cur, r["end"] / SR))
            cur = None
    if cur is not None:
        segs.append((cur, x.size / SR))
    it.reset_states()
    return StreamResult(segs, starts, ends, time.process_time() - t)


# ------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--quick", action="store_true", help="clean condition only")
    args, _ = ap.parse_known_args()
    root = Path(args.data)
    if not (root / "vad" / "ami_debug").is_dir():
        print(f"vad_quality: skipped: data not found at {root / 'vad' / 'ami_debug'}")
        return 0
    try:
        import webrtcvad  # noqa: F401, PLC0415

        have_webrtc = True
    except ImportError:
        have_webrtc = False
        print("note: webrtcvad-wheels not installed; WebRTC column skipped")
    try:
        import torch  # noqa: PLC0415 (optional peer)
        from silero_vad import load_silero_vad  # noqa: PLC0415 (optional peer)

        torch.set_num_threads(1)
        ref_model = load_silero_vad(onnx=True)
    except ImportError:
        ref_model = None
        print("note: silero-vad not installed; VADIterator column skipped")

    model = SileroVAD.load()
    clips = load_ami(root)
    noises = {}
    for n in NOISES:
        y, sr = read_audio(root / "vad" / "noise" / n)
        noises[n] = resample(y, sr, SR) if sr != SR else y
    rng = np.random.default_rng(2024)
    conditions: list[tuple[str, list[np.ndarray]]] = [("clean", [c.audio for c in clips])]
    if not args.quick:
        for snr in SNRS:
            mixed = [mix(c.audio, noises[NOISES[i % 3]], snr, rng) for i, c in enumerate(clips)]
            conditions.append((f"{snr} dB", mixed))

    defaults = SegmenterOptions()
    configs: list[tuple[str, SegmenterOptions, float | None]] = [
        ("caesura (defaults)", defaults, None),
        ("caesura + gate -85 dBFS", defaults, -85.0),
        ("caesura + gate -60 dBFS", defaults, -60.0),
        ("caesura threshold=0.5", defaults.replace(threshold=0.5), None),
    ]
    for ms in (200, 300, 500):
        if ms != defaults.min_silence_ms:
            configs.append((f"caesura min_silence={ms}", defaults.replace(min_silence_ms=ms), None))
    configs.append(
        (
            "caesura VADIterator-like",
            SegmenterOptions(threshold=0.5, min_speech_ms=0, min_silence_ms=160, pre_roll_ms=0),
            None,
        )
    )

    print(f"# VAD quality on AMI debug clips ({len(clips)} x 30 s), collar {COLLAR} s\n")
    print(f"defaults: {defaults}\n")
    print("## 1. frame level\n")
    print("| condition | system | ROC-AUC | TPR@5%FPR | F1 |")
    print("|---|---|---|---|---|")
    stream_rows = []
    for cond, audios in conditions:
        sys_scores: dict[str, tuple[list, list]] = {
            "silero (caesura)": ([], []),
            "energy": ([], []),
        }
        if have_webrtc:
            sys_scores["webrtc"] = ([], [])
        f1_thr = {"silero (caesura)": 0.5, "energy": -40.0, "webrtc": 2.5}
        for c, x in zip(clips, audios, strict=True):
            p = model.probabilities(x, SR)
            cen = (np.arange(p.size) + 0.5) * 512 / SR
            per = {"silero (caesura)": (cen, p), "energy": energy_scores(x)}
            if have_webrtc:
                per["webrtc"] = webrtc_scores(x)
            for k, (cc, sc) in per.items():
                lab, mask = frame_labels(cc, c.ref, c.uem)
                sys_scores[k][0].append(sc[mask])
                sys_scores[k][1].append(lab[mask])
        for k, (s_list, l_list) in sys_scores.items():
            s = np.concatenate(s_list)
            lab = np.concatenate(l_list)
            print(
                f"| {cond} | {k} | {roc_auc(s, lab):.3f} | {tpr_at_fpr(s, lab):.3f} "
                f"| {f1(s >= f1_thr[k], lab):.3f} |"
            )

        # streaming segmenters
        systems = list(configs)
        results: dict[str, list[StreamResult]] = {name: [] for name, _, _ in systems}
        if ref_model is not None:
            results["silero VADIterator"] = []
        for _c, x in zip(clips, audios, strict=True):
            for name, o, gate in systems:
                results[name].append(run_ours(model, x, o, gate))
            if ref_model is not None:
                results["silero VADIterator"].append(run_vaditerator(ref_model, x))
        for name, rs in results.items():
            preds, labs = [], []
            sd, ed = [], []
            for c, r in zip(clips, rs, strict=True):
                cen, pred = seg_frames(r.segments, c.audio.size / SR)
                lab, mask = frame_labels(cen, c.ref, c.uem)
                preds.append(pred[mask])
                labs.append(lab[mask])
                sd += boundary_delays([s for s, _ in c.ref if s > COLLAR], r.starts)
                ed += boundary_delays([e for _, e in c.ref if e < c.uem[1] - COLLAR], r.ends)
            nref_s = sum(1 for c in clips for s, _ in c.ref if s > COLLAR)
            nref_e = sum(1 for c in clips for _, e in c.ref if e < c.uem[1] - COLLAR)
            gated = sum(r.gated for r in rs)
            wins = sum(r.windows for r in rs)
            stream_rows.append(
                (
                    cond,
                    name,
                    f1(np.concatenate(preds), np.concatenate(labs)),
                    pct(sd, 50),
                    pct(sd, 90),
                    len(sd) / max(nref_s, 1),
                    pct(ed, 50),
                    pct(ed, 90),
                    len(ed) / max(nref_e, 1),
                    sum(r.cpu_s for r in rs),
                    (gated / wins) if wins else float("nan"),
                )
            )

    print("\n## 2. streaming segmenters (20 ms chunks)\n")
    print(
        "| condition | system | segment F1 | start delay median / p90 (s) | starts matched "
        "| end delay median / p90 (s) | ends matched | CPU s | windows gated |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in stream_rows:
        cond, name, sf1, s50, s90, sm, e50, e90, em, cpu, g = row
        gs = "-" if math.isnan(g) else f"{100 * g:.1f}%"
        print(
            f"| {cond} | {name} | {sf1:.3f} | {s50:.3f} / {s90:.3f} | {100 * sm:.0f}% "
            f"| {e50:.3f} / {e90:.3f} | {100 * em:.0f}% | {cpu:.2f} | {gs} |"
        )

    # verdict: defaults vs VADIterator per condition
    by = {(r[0], r[1]): r for r in stream_rows}
    if ref_model is not None:
        print(
            "\n### defaults vs VADIterator (end-of-speech median at equal or better segment F1)\n"
        )
        for cond, _ in conditions:
            a = by[(cond, "caesura (defaults)")]
            b = by[(cond, "silero VADIterator")]
            ok = a[6] < b[6] and a[2] >= b[2] - 1e-9
            print(
                f"- {cond}: end median {a[6]:.3f} s vs {b[6]:.3f} s, segment F1 {a[2]:.3f} vs "
                f"{b[2]:.3f} -> {'PASS' if ok else 'FAIL'}"
            )

    # false triggers on noise
    print("\n## 3. false triggers per minute on the noise files (no speech)\n")
    noise_files = sorted(
        p
        for p in (root / "vad" / "noise").rglob("*")
        if p.suffix.lower() in (".wav", ".ogg") and "ir" not in p.parent.name
    )
    trig: dict[str, float] = {}
    total_min = 0.0
    gate_cpu = {"off": 0.0, "on": 0.0}
    gate_skip = [0, 0]
    webrtc_trig = 0
    for p in noise_files:
        y, sr = read_audio(p)
        y = resample(y, sr, SR) if sr != SR else y
        if y.size < 1024:
            continue
        total_min += y.size / SR / 60
        for name, o, gate in configs[:2]:  # defaults, gate -85
            r = run_ours(model, y, o, gate)
            trig[name] = trig.get(name, 0) + len(r.starts)
            gate_cpu["on" if gate else "off"] += r.cpu_s
            if gate:
                gate_skip[0] += r.gated
                gate_skip[1] += r.windows
        if ref_model is not None:
            r = run_vaditerator(ref_model, y)
            trig["silero VADIterator"] = trig.get("silero VADIterator", 0) + len(r.starts)
        if have_webrtc:
            _, sc = webrtc_scores(y)
            d = sc >= 3
            webrtc_trig += int(np.sum(d[1:] & ~d[:-1]) + (d[0] if d.size else 0))
    print(f"{len(noise_files)} files, {total_min:.2f} min\n")
    print("| system | triggers / min |")
    print("|---|---|")
    for k, v in trig.items():
        print(f"| {k} | {v / total_min:.2f} |")
    if have_webrtc:
        print(f"| webrtc mode 2 (raw frame onsets) | {webrtc_trig / total_min:.2f} |")
    print(
        f"\nenergy gate on the noise files: {gate_skip[0]}/{gate_skip[1]} windows skipped "
        f"({100 * gate_skip[0] / max(gate_skip[1], 1):.1f}%), CPU {gate_cpu['on']:.2f} s "
        f"with gate vs {gate_cpu['off']:.2f} s without"
    )
    # gate on digital silence alone (the case it exists for)
    ds = np.zeros(SR * 60, dtype=np.float32)
    off = run_ours(model, ds, defaults, None)
    on = run_ours(model, ds, defaults, -85.0)
    print(
        f"energy gate on 60 s of digital silence: CPU {on.cpu_s:.3f} s vs {off.cpu_s:.3f} s "
        f"without ({100 * on.gated / max(on.windows, 1):.0f}% windows skipped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
