"""Stage 2: fine-tune P(<|eot|>) on the decisions the product actually faces.

Stage 1 (:mod:`caesura.train.loop`) is language modelling over all the dialogue text with an
extra binary loss at *every* word boundary. Most of those boundaries are trivially
"not done" (mid-phrase), while the runtime is only ever asked at a *pause*. This stage trains
the same scorer head on exactly those questions, read at the last position of the context the
runtime feeds:

- Switchboard train pauses: END (the other speaker takes the floor) vs HOLD (the speaker goes
  on after a 0.2-5 s pause), with the words visible at the query under a random STT lag of 0,
  0.3 or 0.5 s (the lags the benchmarks report);
- written turns (SGD train, MultiWOZ val, Taskmaster-4): complete vs cut at a word boundary,
  in STT style or as written.

Besides those single questions (one label per context), every step also reads a few
128-token windows of whole Switchboard train conversations and applies the same loss at
*every* pause of the scored speaker inside them (all words visible): one forward pass then
answers ~10 pause questions instead of one (``windows_per_step``; 0 turns it off).

The loss is binary cross-entropy on P(eot); a small learning rate keeps the language model
from drifting. Wall-clock bounded like stage 1; keeps the best checkpoint by Switchboard val AUC.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from caesura.eot._text import AGENT, SEP, USER
from caesura.train import data as tdata
from caesura.train import switchboard as sb
from caesura.train.data import EvalSet
from caesura.train.loop import (
    auc,
    autocast,
    check_precision,
    cosine_factor,
    left_pad,
    make_optimizer,
    optimizer_step,
    resolve_precision,
    score_contexts,
    selection_score,
)
from caesura.train.model import EotScorer, ModelConfig, build_model, eot_bce

__all__ = [
    "FinetuneConfig",
    "PauseWindows",
    "WeightAverage",
    "average_checkpoints",
    "build_finetune_set",
    "finetune",
    "pause_windows",
    "window_bce",
]

logger = logging.getLogger(__name__)

LAGS = (0.0, 0.0, 0.3, 0.5)  # lag 0 twice: the headline metric is all-words-visible


@dataclass(frozen=True)
class FinetuneConfig:
    max_minutes: float = 20.0
    max_steps: int | None = None  # stop after this many steps; the cosine then spans them
    batch: int = 32
    lr: float = 3e-4
    min_lr_frac: float = 0.1
    warmup: int = 30
    weight_decay: float = 0.05
    windows_per_step: int = 8  # whole-conversation windows labelled at every pause
    window_min_context: int = 32  # a window's pauses with less left context are not scored
    eval_every_minutes: float = 5.0
    ema_decay: float = 0.0  # > 0: evaluate and keep an exponential moving average of weights
    lags: tuple[float, ...] = LAGS  # STT lags of the single pause questions (build_finetune_set)
    threads: int = 2
    seed: int = 1234
    precision: str = "fp32"  # "bf16", or "auto": bf16 where the hardware computes it natively

    def __post_init__(self) -> None:
        check_precision(self.precision)


def build_finetune_set(
    convs: dict[str, list[sb.Conversation]],
    written: list[list[tuple[str, str]]],
    seed: int,
    lags: tuple[float, ...] = LAGS,
    *,
    commands: list[list[tuple[str, str]]] | None = None,
    max_points: int | None = 60000,
) -> dict[str, EvalSet]:
    """Labelled contexts for stage 2: each word-timed corpus's pauses (its conversations split
    evenly between ``lags``; at most ``max_points`` per corpus), written truncations, command
    truncations and short answers after an agent's question (from ``written``)."""
    rng = random.Random(seed)
    out: dict[str, EvalSet] = {}
    for name, corpus in convs.items():
        shuffled = list(corpus)
        rng.shuffle(shuffled)
        parts = [shuffled[i :: len(lags)] for i in range(len(lags))]
        per = None if max_points is None else max(1, max_points // len(lags))
        out[name] = tdata.concat_sets(
            [
                tdata.pause_eval(p, lag=lag, max_points=per, seed=seed + i)
                for i, (p, lag) in enumerate(zip(parts, lags, strict=True))
            ]
        )
    out["written"] = _both_styles(written, seed)
    if commands:
        out["commands"] = _both_styles(commands, seed + 2)
    out["short"] = tdata.short_answer_set(written, seed=seed + 4)
    return out


def _both_styles(dialogues: list[list[tuple[str, str]]], seed: int) -> EvalSet:
    """Complete vs cut turns: the first half of ``dialogues`` in streaming-STT style, the
    second half as written."""
    half = len(dialogues) // 2
    return tdata.concat_sets(
        [
            tdata.written_truncation_eval(dialogues[:half], style="stt", seed=seed),
            tdata.written_truncation_eval(dialogues[half:], style="written", seed=seed + 1),
        ]
    )


# Stage 2's share of each set's single questions per step (renormalised over the sets present).
SET_SHARES = {
    "switchboard": 0.33,
    "ami": 0.22,
    "earnings22": 0.12,
    "written": 0.2,
    "commands": 0.08,
    "short": 0.05,
}


@dataclass
class PauseWindows:
    """Linearised conversations (token ids) with a label at each pause of the scored speaker:
    ``labels[i]`` is 1 (END) or 0 (HOLD) where the model's output at position ``i`` is the
    question "is the turn over?" (the last token of the word before the pause), else -1."""

    ids: list[np.ndarray]
    labels: list[np.ndarray]

    def sample(
        self, rng: np.random.Generator, n: int, length: int, min_context: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` windows ``[n, length]`` (right padded with 0) and their labels (-1 = none),
        each window ending at a random labelled position (so it has one at least)."""
        x = torch.zeros((n, length), dtype=torch.long)
        y = torch.full((n, length), -1.0)
        for r in range(n):
            k = int(rng.integers(0, len(self.ids)))
            ids, lab = self.ids[k], self.labels[k]
            where = np.flatnonzero(lab >= 0)
            end = int(where[rng.integers(0, len(where))]) + 1
            start = max(0, end - length)
            w_lab = lab[start:end].astype(np.float32).copy()
            if start > 0:  # too little left context at the head of a cut window
                w_lab[:min_context] = -1.0
            x[r, : end - start] = torch.from_numpy(ids[start:end].astype(np.int64))
            y[r, : end - start] = torch.from_numpy(w_lab)
        return x, y


def pause_windows(convs: list[sb.Conversation], tok: Tokenizer, seed: int) -> PauseWindows:
    """:class:`PauseWindows` of word-timed conversations, tokenised exactly as
    :func:`caesura.eot._text.linearise` renders them (each word with its leading space is its
    own pre-token, so per-word ids concatenate to the whole text's ids). The scored speaker
    (role "user") is drawn at random per conversation; the other speaker's turns are context."""
    rng = random.Random(seed)
    user_id, agent_id = tok.token_to_id(USER), tok.token_to_id(AGENT)
    sep_id, eot = tok.token_to_id(SEP), tdata.eot_id(tok)
    words = sorted({w.text for c in convs for w in c.words})
    word_ids = dict(
        zip(words, (e.ids for e in tok.encode_batch([" " + w for w in words])), strict=True)
    )
    out_ids: list[np.ndarray] = []
    out_labels: list[np.ndarray] = []
    for conv in convs:
        turns = sb.conversation_turns(conv)
        user = rng.choice(sorted({t.speaker for t in turns}))
        marks = {
            (p.turn_index, p.word_index): 1 if p.label == "END" else 0
            for p in sb.decision_points(conv, turns)
            if p.speaker == user
        }
        ids: list[int] = [sep_id]
        labels: list[int] = [-1]
        for ti, turn in enumerate(turns):
            ids.append(user_id if turn.speaker == user else agent_id)
            labels.append(-1)
            for wi, w in enumerate(turn.words):
                piece = word_ids[w.text]
                ids.extend(piece)
                labels.extend([-1] * (len(piece) - 1) + [marks.get((ti, wi), -1)])
            ids.append(eot)
            labels.append(-1)
        if any(v >= 0 for v in labels):
            out_ids.append(np.asarray(ids, dtype=np.int32))
            out_labels.append(np.asarray(labels, dtype=np.int8))
    return PauseWindows(out_ids, out_labels)


def window_bce(lm: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eot_id: int) -> torch.Tensor:
    """Binary cross-entropy of P(<|eot|>) at the labelled positions of right-padded windows."""
    logits = lm(input_ids=x).logits.float()
    at = y >= 0
    return eot_bce(logits[at].log_softmax(dim=-1)[:, eot_id], y[at])


class WeightAverage:
    """Exponential moving average of a module's floating-point parameters and buffers
    (``avg = decay * avg + (1 - decay) * w`` after every optimiser step)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.module, self.decay = module, decay
        self.avg = {
            k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self) -> None:
        """Fold the module's current weights into the average (after an optimiser step)."""
        for k, v in self.module.state_dict().items():
            if k in self.avg:
                self.avg[k].lerp_(v.detach(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The module's state with the averaged weights in place of the live ones."""
        return {k: self.avg.get(k, v).clone() for k, v in self.module.state_dict().items()}

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Run the module with the averaged weights; the live ones come back afterwards."""
        live = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.state_dict())
        try:
            yield
        finally:
            self.module.load_state_dict(live)


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Average the weights of checkpoints fine-tuned from one start (a "model soup") into
    ``out``. Stage-2 runs that differ only in their seed land ±0.01 val AUC apart; their
    average scores above the best of them."""
    if not paths:
        raise ValueError("no checkpoints to average")
    cks = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    first = cks[0]["model"]
    for p, ck in zip(paths, cks, strict=True):
        if ck["model"].keys() != first.keys():
            raise ValueError(f"{p} does not have the same weights as {paths[0]}")
    avg = {
        k: (sum(ck["model"][k].double() for ck in cks) / len(cks)).to(v.dtype)
        if v.is_floating_point()
        else v
        for k, v in first.items()
    }
    torch.save({**cks[0], "model": avg, "averaged": [str(p) for p in paths]}, out)
    return out


def finetune(
    *,
    checkpoint: Path,
    tok: Tokenizer,
    train_sets: dict[str, EvalSet],
    evals: dict[str, EvalSet],
    cfg: FinetuneConfig,
    out: Path,
    windows: PauseWindows | None = None,
) -> Path:
    """Fine-tune ``checkpoint``; return the best stage-2 checkpoint (else the input).

    ``windows`` (see :func:`pause_windows`) adds ``cfg.windows_per_step`` labelled
    conversation windows to every step."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    mcfg = ModelConfig(**ckpt["model_config"])
    lm = build_model(mcfg)
    lm.load_state_dict(ckpt["model"])
    eot = tdata.eot_id(tok)
    scorer = EotScorer(lm, eot)
    enc = {k: tdata.encode_contexts(tok, v.contexts, mcfg.context) for k, v in train_sets.items()}
    labels = {k: torch.from_numpy(v.labels.astype(np.float32)) for k, v in train_sets.items()}
    eval_ids = {k: tdata.encode_contexts(tok, v.contexts, mcfg.context) for k, v in evals.items()}
    cpu = torch.device("cpu")
    precision = resolve_precision(cfg.precision, cpu)
    logger.info("stage 2 examples: %s (%s)", {k: len(v) for k, v in enc.items()}, precision)
    opt = make_optimizer(lm, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = WeightAverage(lm, cfg.ema_decay) if cfg.ema_decay > 0 else None
    history: list[dict[str, float]] = []
    best_path = out / "best_stage2.pt"

    def evaluate(step: int) -> float:
        with ema.swapped_in() if ema is not None else contextlib.nullcontext():
            metrics = {
                f"{k}_auc": auc(v.labels, score_contexts(scorer, eval_ids[k]))
                for k, v in evals.items()
            }
        rec = {"stage": 2, "step": step, "minutes": round((time.time() - t0) / 60, 2), **metrics}
        history.append(rec)
        logger.info("stage 2 eval %s", json.dumps(rec))
        (out / "history_stage2.json").write_text(json.dumps(history, indent=1))
        return selection_score(metrics)

    t0 = time.time()
    best = evaluate(0)
    best_is_input = True
    budget = cfg.max_minutes * 60
    step = 0
    last_eval = time.time()
    names = list(enc)
    share = np.array([SET_SHARES.get(k, 0.1) for k in names])
    share = share / share.sum()
    loss_ema: float | None = None
    scorer.train()

    def done() -> bool:
        return time.time() - t0 >= budget or (cfg.max_steps is not None and step >= cfg.max_steps)

    while not done():
        # the cosine spans the wall-clock budget, or the step limit when that comes first (a
        # step-bounded run anneals the same however loaded the machine is)
        progress = (time.time() - t0) / budget
        if cfg.max_steps is not None:
            progress = max(progress, step / cfg.max_steps)
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        lr *= cosine_factor(progress, cfg.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        counts = rng.multinomial(cfg.batch, share)
        seqs: list[list[int]] = []
        ys = []
        for name, n in zip(names, counts, strict=True):
            rows = rng.integers(0, len(enc[name]), size=n)
            seqs.extend(enc[name][i] for i in rows)
            ys.append(labels[name][torch.from_numpy(rows)])
        x, m = left_pad(seqs)
        y = torch.cat(ys)
        window = None
        if windows is not None and windows.ids and cfg.windows_per_step > 0:
            wx, wy = windows.sample(rng, cfg.windows_per_step, mcfg.context, cfg.window_min_context)
            window = (wx, wy) if bool((wy >= 0).any()) else None
        with autocast(precision, cpu):  # forward passes only: BCE on probabilities refuses it
            p = scorer(x, m).clamp(1e-6, 1 - 1e-6)
            window_loss = window_bce(lm, *window, eot) if window is not None else None
        loss = torch.nn.functional.binary_cross_entropy(p, y)
        if window_loss is not None:
            loss = loss + window_loss
        v = optimizer_step(opt, lm, loss)
        if ema is not None:
            ema.update()
        step += 1
        loss_ema = v if loss_ema is None else 0.98 * loss_ema + 0.02 * v
        if step % 25 == 0:
            logger.info("stage 2 step %d lr %.2e bce %.4f ema %.4f", step, lr, v, loss_ema)
        if done() or time.time() - last_eval > cfg.eval_every_minutes * 60:
            score = evaluate(step)
            scorer.train()
            last_eval = time.time()
            if score > best:
                best, best_is_input = score, False
                weights = ema.state_dict() if ema is not None else lm.state_dict()
                state = {"model": weights, "stage2_step": step, "metrics": history[-1]}
                torch.save({**ckpt, **state}, best_path)
                logger.info("stage 2 new best %.4f at step %d", best, step)
    return checkpoint if best_is_input else best_path
