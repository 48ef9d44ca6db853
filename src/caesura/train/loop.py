"""Training loop: seeded, wall-clock bounded, periodic validation and best-checkpoint saving."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from caesura.train import PRECISIONS
from caesura.train.data import EvalSet, encode_contexts
from caesura.train.model import EotScorer, ModelConfig, build_model, lm_loss, word_start_mask

__all__ = [
    "MuonAdamW",
    "TrainConfig",
    "auc",
    "autocast",
    "check_precision",
    "left_pad",
    "make_optimizer",
    "native_bf16",
    "optimizer_step",
    "orthogonalise",
    "resolve_precision",
    "score_contexts",
    "selection_score",
    "train",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 6000
    max_minutes: float = 95.0
    stop_minutes: float | None = None  # stop early; the LR schedule still spans max_minutes
    batch: int = 16
    lr: float = 1.5e-3
    min_lr_frac: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.05
    eot_weight: float = 1.0
    spoken_share: float = 0.55  # share of the stage-1 windows from the spoken stream
    eval_every_minutes: float = 15.0
    threads: int = 2
    seed: int = 1234
    optimizer: str = "adamw"  # or "muon": Muon on the blocks' matrices, AdamW elsewhere
    precision: str = "fp32"  # "bf16", or "auto": bf16 where the hardware computes it natively

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer must be 'adamw' or 'muon', got {self.optimizer!r}")
        check_precision(self.precision)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively: a CUDA GPU, or a CPU
    with AMX or AVX-512 BF16 (elsewhere bfloat16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private: may go
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` → ``"bf16"`` where :func:`native_bf16`, else ``"fp32"``; explicit choices
    are kept."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """The forward pass's mixed precision: bfloat16 autocast for ``"bf16"`` (weights, the
    optimiser and the losses stay float32), nothing for ``"fp32"``. On a CPU with AMX a
    training step takes about half the time."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC (Mann-Whitney, ties counted half)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def selection_score(metrics: dict[str, float]) -> float:
    """The number checkpoints are chosen by: the mean validation AUC over every corpus
    evaluated (each word-timed corpus's END vs HOLD, written and command turns complete vs
    cut, short answers), so that no register is traded away for another."""
    vals = [v for k, v in metrics.items() if k.endswith("_auc") and not math.isnan(v)]
    return float(sum(vals) / len(vals)) if vals else 0.0


def cosine_factor(progress: float, min_frac: float) -> float:
    """The cosine schedule's share of the peak learning rate at ``progress`` (clamped to 1),
    from 1 down to ``min_frac``; both stages use it."""
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _decay_groups(
    params: Iterable[torch.nn.Parameter], weight_decay: float
) -> list[dict[str, Any]]:
    """Parameter groups with weight decay on matrices only (not on biases and norms)."""
    params = list(params)
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def make_optimizer(lm: torch.nn.Module, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases and norms)."""
    return torch.optim.AdamW(_decay_groups(lm.parameters(), weight_decay), lr=lr, betas=(0.9, 0.98))


def orthogonalise(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration towards the nearest semi-orthogonal matrix, for
    one matrix or a stack ``[n, rows, cols]``, in float32 (``torch.optim.Muon`` iterates in
    bfloat16, ~10x slower on CPUs without native bfloat16)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (torch.linalg.matrix_norm(g, keepdim=True) + 1e-7)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


class MuonAdamW(torch.optim.Optimizer):
    """Muon (momentum 0.95, Nesterov) for the transformer blocks' weight matrices, AdamW for
    the rest (embeddings, biases, norms). Muon's update is scaled to AdamW's RMS
    (0.2 * sqrt(max dim)), so both follow one learning rate and schedule. Matrices of one
    shape are orthogonalised as one batch."""

    def __init__(self, lm: torch.nn.Module, *, lr: float, weight_decay: float) -> None:
        hidden = [p for n, p in lm.named_parameters() if p.dim() == 2 and ".h." in f".{n}"]
        ids = {id(p) for p in hidden}
        rest = [p for p in lm.parameters() if id(p) not in ids]
        super().__init__(
            [{"params": hidden, "weight_decay": weight_decay}, *_decay_groups(rest, weight_decay)],
            {"lr": lr},
        )
        self.adamw = torch.optim.AdamW(self.param_groups[1:], lr=lr, betas=(0.9, 0.98))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for p in group["params"]:
            if p.grad is not None:
                by_shape.setdefault(tuple(p.shape), []).append((p, p.grad))
        for shape, pairs in by_shape.items():
            params = [p for p, _ in pairs]
            grads = torch.stack([g for _, g in pairs])
            momentum = self.state[params[0]].get("momentum")
            if momentum is None or momentum.shape != grads.shape:
                momentum = torch.zeros_like(grads)
                self.state[params[0]]["momentum"] = momentum
            momentum.mul_(0.95).add_(grads)
            update = orthogonalise(grads.add_(momentum, alpha=0.95))
            step = -lr * 0.2 * max(shape) ** 0.5
            for p, u in zip(params, update, strict=True):
                p.mul_(1 - lr * wd)
                p.add_(u, alpha=step)
        self.adamw.step()


def optimizer_step(opt: torch.optim.Optimizer, lm: torch.nn.Module, loss: torch.Tensor) -> float:
    """Backward, clip the gradient norm at 1, step; returns the loss value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def left_pad(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists → (input_ids, attention_mask), left padded with id 0 (``<|pad|>``)."""
    width = max(len(q) for q in seqs)
    x = torch.zeros((len(seqs), width), dtype=torch.long)
    m = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, seq in enumerate(seqs):
        x[r, width - len(seq) :] = torch.tensor(seq)
        m[r, width - len(seq) :] = 1
    return x, m


@torch.no_grad()
def score_contexts(
    scorer: EotScorer, ids: Sequence[Sequence[int]], *, batch: int = 64
) -> np.ndarray:
    """P(eot) for already-encoded contexts (length-sorted batches, left padded)."""
    scorer.eval()
    order = np.argsort([len(x) for x in ids])
    res = np.empty(len(ids), dtype=np.float32)
    dev = next(scorer.parameters()).device
    for s in range(0, len(ids), batch):
        idx = order[s : s + batch]
        x, m = left_pad([ids[i] for i in idx])
        res[idx] = scorer(x.to(dev), m.to(dev)).cpu().numpy()
    return res


class _Sampler:
    def __init__(
        self, streams: Sequence[np.ndarray], weights: Sequence[float], length: int, seed: int
    ) -> None:
        self.streams = [torch.from_numpy(s.astype(np.int64)) for s in streams]
        w = np.asarray(weights, dtype=np.float64)
        self.weights = w / w.sum()
        self.length = length
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        src = self.rng.choice(len(self.streams), size=n, p=self.weights)
        rows = []
        for k in src:
            s = self.streams[k]
            o = int(self.rng.integers(0, len(s) - self.length - 1))
            rows.append(s[o : o + self.length + 1])
        return torch.stack(rows)


def train(
    *,
    tok: Tokenizer,
    streams: dict[str, np.ndarray],
    evals: dict[str, EvalSet],
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    out: Path,
    init: Path | None = None,
) -> Path:
    """Train; returns the path of the best checkpoint (by :func:`selection_score`).

    ``init`` continues from an earlier stage-1 checkpoint of the same model config (its
    weights only: a fresh optimizer and a fresh warmup + cosine schedule, a warm restart);
    the window sampler is then seeded apart from the first run so it does not replay it.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(tcfg.threads)
    torch.manual_seed(tcfg.seed)
    random.seed(tcfg.seed)
    np.random.seed(tcfg.seed)
    eot = tok.token_to_id("<|eot|>")
    boundary = word_start_mask(tok.get_vocab(), mcfg.vocab_size)
    boundary[eot] = True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lm = build_model(mcfg)
    start_step = 0
    if init is not None:
        ckpt = torch.load(init, map_location="cpu", weights_only=False)
        if ckpt["model_config"] != mcfg.to_dict():
            raise ValueError(
                f"{init} holds a model {ckpt['model_config']}, not the configured {mcfg.to_dict()}"
            )
        lm.load_state_dict(ckpt["model"])
        start_step = int(ckpt.get("total_step", ckpt["step"]))
        logger.info("continuing from %s (stage-1 step %d)", init, start_step)
    lm = lm.to(device)
    boundary = boundary.to(device)
    n_params = sum(p.numel() for p in lm.parameters())
    precision = resolve_precision(tcfg.precision, device)
    logger.info("model %s: %.2f M parameters on %s (%s)", mcfg, n_params / 1e6, device, precision)
    scorer = EotScorer(lm, eot)
    opt: torch.optim.Optimizer
    if tcfg.optimizer == "muon":
        opt = MuonAdamW(lm, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    else:
        opt = make_optimizer(lm, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    names = ["spoken", "written"]
    sampler = _Sampler(
        [streams[n] for n in names],
        [tcfg.spoken_share, 1 - tcfg.spoken_share],
        mcfg.context,
        tcfg.seed + start_step,
    )
    eval_ids = {k: encode_contexts(tok, v.contexts, mcfg.context) for k, v in evals.items()}
    t_start = time.time()
    budget = tcfg.max_minutes * 60
    last_eval = t_start
    best = -1.0
    best_path = out / "best.pt"
    history = []
    ema = None
    step = 0

    def evaluate(final: bool = False) -> None:
        nonlocal best, last_eval
        t0 = time.time()
        metrics: dict[str, float] = {}
        for k, v in evals.items():
            p = score_contexts(scorer, eval_ids[k])
            metrics[f"{k}_auc"] = auc(v.labels, p)
        lm.train()
        elapsed = (time.time() - t_start) / 60
        rec = {
            "step": step,
            "minutes": round(elapsed, 2),
            "tokens": step * tcfg.batch * mcfg.context,
            "loss_ema": ema,
            **metrics,
            "eval_s": round(time.time() - t0, 1),
        }
        history.append(rec)
        logger.info("eval %s", json.dumps(rec))
        ckpt = {
            "model": {k: v.cpu() for k, v in lm.state_dict().items()},
            "model_config": mcfg.to_dict(),
            "step": step,
            "total_step": start_step + step,
            "metrics": rec,
        }
        torch.save(ckpt, out / "last.pt")
        key = selection_score(metrics)
        if key > best:
            best = key
            torch.save(ckpt, best_path)
            logger.info("new best %.4f at step %d", best, step)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        last_eval = time.time()

    lm.train()
    while step < tcfg.steps:
        elapsed = time.time() - t_start
        if elapsed > budget:
            logger.info("wall-clock budget of %.1f min reached at step %d", tcfg.max_minutes, step)
            break
        if tcfg.stop_minutes is not None and elapsed > tcfg.stop_minutes * 60:
            logger.info("stopping stage 1 at %.1f min (step %d)", tcfg.stop_minutes, step)
            break
        progress = max(step / tcfg.steps, elapsed / budget)
        if step < tcfg.warmup:
            lr = tcfg.lr * (step + 1) / tcfg.warmup
        else:
            lr = tcfg.lr * cosine_factor(progress, tcfg.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        xy = sampler.batch(tcfg.batch).to(device)
        with autocast(precision, device):
            loss, lm_part, bce = lm_loss(
                lm, xy[:, :-1], xy[:, 1:], eot_id=eot, boundary=boundary, eot_weight=tcfg.eot_weight
            )
        v = optimizer_step(opt, lm, loss)
        step += 1
        ema = v if ema is None else 0.98 * ema + 0.02 * v
        if step % 50 == 0:
            tps = step * tcfg.batch * mcfg.context / (time.time() - t_start)
            logger.info(
                "step %d lr %.2e loss %.3f (lm %.3f eot %.3f) ema %.3f %.0f tok/s",
                step,
                lr,
                v,
                float(lm_part),
                float(bce),
                ema,
                tps,
            )
        if time.time() - last_eval > tcfg.eval_every_minutes * 60:
            evaluate()
    evaluate(final=True)
    return best_path
