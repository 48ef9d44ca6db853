"""Checkpoint → ONNX (P(eot) at the last position only) → int8 dynamic quantisation → assets.

The exported folder holds ``model.onnx`` (int8), ``tokenizer.json``, ``config.json`` (context,
special ids, languages, the shipped threshold, the architecture and the validation metrics),
``MODEL_CARD.md`` and ``sha256.json``; :meth:`caesura.eot.EndOfTurnModel.load` reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from caesura.eot._text import EOT, PAD
from caesura.eot.model import empty_past
from caesura.train.model import (
    EotScorer,
    LastPositionScorer,
    ModelConfig,
    build_model,
    word_start_mask,
)

__all__ = [
    "export_and_validate",
    "export_onnx",
    "gate_next_words",
    "load_checkpoint",
    "pending_reference",
    "quantise",
    "write_assets",
]

logger = logging.getLogger(__name__)

#: The name the export gives the model (config.json, model card, benchmark headers).
MODEL_NAME = "caesura-eot-en-v2.1"

PACKAGE_ASSETS = Path(__file__).resolve().parent.parent / "eot" / "assets"
ASSET_FILES = ("model.onnx", "tokenizer.json", "config.json")


def load_checkpoint(path: Path, eot_id: int) -> tuple[EotScorer, ModelConfig, dict[str, Any]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = ModelConfig(**ckpt["model_config"])
    lm = build_model(mcfg, attn="eager")
    lm.load_state_dict(ckpt["model"])
    lm.eval()
    return EotScorer(lm, eot_id).eval(), mcfg, ckpt


def export_onnx(
    scorer: EotScorer, path: Path, context: int, word_start: torch.Tensor | None = None
) -> None:
    """fp32 ONNX of :meth:`LastPositionScorer.score`.

    Inputs ``input_ids`` int64 [B, T] (left padded), ``attention_mask`` int64 [B, P + T],
    ``past`` float [layers, 2, B, heads, P, head_dim] (the keys and values of P earlier
    tokens, ``present`` of an earlier call; P = 0 for a fresh context) and ``next_slots``
    float [K] (only its length is read: how many next-word candidates to marginalise over,
    0 to skip that part); outputs ``p_eot`` float [B] (P(eot) now), ``p_eot_next`` float
    [B] (P(eot after one more word), meaningful when K > 0; :func:`gate_next_words` then
    skips that part at K = 0) and ``present`` (``past`` extended by ``input_ids``' keys and
    values). ``word_start``: the candidate ids (:func:`~caesura.train.model.word_start_mask`;
    default every non-special id).
    """
    last = _Export(LastPositionScorer(scorer.lm, scorer.eot_id, word_start).eval())
    cfg = scorer.lm.config
    n_past = 3
    x = torch.randint(5, 100, (2, min(16, context - 1 - n_past)), dtype=torch.long)
    m = torch.ones(2, n_past + x.shape[1], dtype=torch.long)
    m[1, :5] = 0
    hd = int(cfg.n_embd) // int(cfg.n_head)
    past = torch.randn(int(cfg.n_layer), 2, 2, int(cfg.n_head), n_past, hd)
    slots = torch.zeros(4)
    with torch.no_grad():
        torch.onnx.export(
            last,
            (x, m, past, slots),
            str(path),
            input_names=["input_ids", "attention_mask", "past", "next_slots"],
            output_names=["p_eot", "p_eot_next", "present"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "time"},
                "attention_mask": {0: "batch", 1: "total"},
                "past": {2: "batch", 4: "past_time"},
                "next_slots": {0: "candidates"},
                "p_eot": {0: "batch"},
                "p_eot_next": {0: "batch"},
                "present": {2: "batch", 4: "total"},
            },
            opset_version=17,
            dynamo=False,
        )


class _Export(torch.nn.Module):
    def __init__(self, scorer: LastPositionScorer) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        past: torch.Tensor,
        next_slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p, p_next, present = self.scorer.score(input_ids, attention_mask, next_slots, past)
        assert p_next is not None
        return p, p_next, present


def gate_next_words(path: Path) -> int:
    """Move the next-word part of an exported graph (every node downstream of ``next_slots``)
    into an ``If`` on ``Size(next_slots) > 0``, in place: with K = 0 none of its ~280 nodes
    is dispatched (they would run on empty tensors, ~5% of a plain call), and ``p_eot_next``
    is then ``p_eot``. Returns the number of nodes moved."""
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    model = onnx.load(str(path))
    graph = model.graph
    downstream = {"next_slots"}
    moved = []
    for node in graph.node:  # topologically sorted
        if any(i in downstream for i in node.input):
            moved.append(node)
            downstream.update(node.output)
    if "p_eot_next" not in downstream:
        raise ValueError(f"{path}: p_eot_next does not depend on next_slots")
    for node in moved:
        node.output[:] = ["p_eot_next_k" if o == "p_eot_next" else o for o in node.output]
    branch_out = helper.make_tensor_value_info("p_eot_next_k", TensorProto.FLOAT, None)
    then_branch = helper.make_graph(moved, "next_words", [], [branch_out])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["p_eot"], ["p_eot_again"])],
        "no_next_words",
        [],
        [helper.make_tensor_value_info("p_eot_again", TensorProto.FLOAT, None)],
    )
    moved_ids = {id(n) for n in moved}
    kept = [n for n in graph.node if id(n) not in moved_ids]
    gate = [
        helper.make_node("Size", ["next_slots"], ["next_slots_k"]),
        helper.make_node("Greater", ["next_slots_k", "next_slots_zero"], ["has_next_slots"]),
        helper.make_node(
            "If",
            ["has_next_slots"],
            ["p_eot_next"],
            then_branch=then_branch,
            else_branch=else_branch,
            name="next_words_if",
        ),
    ]
    del graph.node[:]
    graph.node.extend(kept + gate)
    graph.initializer.append(helper.make_tensor("next_slots_zero", TensorProto.INT64, [], [0]))
    infos = [v for v in graph.value_info if v.name not in downstream]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(moved)


#: Next-word candidates the shipped config marginalises over for "words pending" scores.
PENDING_CANDIDATES = 16


@torch.no_grad()
def pending_reference(
    scorer: EotScorer, ids: Sequence[Sequence[int]], word_start: torch.Tensor, k: int
) -> np.ndarray:
    """P(eot after one more word) computed the slow way, for checking the export: the
    ``k`` likeliest word-starting next tokens of each context, each appended and the whole
    sequence re-run through :class:`EotScorer`, averaged by their probabilities."""
    out = np.empty(len(ids), dtype=np.float32)
    positions = int(scorer.lm.config.n_positions)
    for r, seq in enumerate(ids):
        if len(seq) >= positions:
            raise ValueError(f"{len(seq)} tokens leave no position for the next word")
        x = torch.tensor([list(seq)])
        pos = torch.arange(x.shape[1])[None]
        h = scorer.lm.transformer(input_ids=x, position_ids=pos).last_hidden_state[:, -1]
        probs = torch.softmax(scorer.lm.lm_head(h).float(), dim=-1)[0] * word_start
        w, cand = probs.topk(k)
        ext = torch.cat([x.repeat(k, 1), cand[:, None]], dim=1)
        p = scorer(ext, torch.ones_like(ext))
        out[r] = float((w * p).sum() / w.sum())
    return out


#: The output projection decides the score directly and costs ~1% of the compute: keep fp32.
KEEP_FP32 = ("/lm_head/MatMul", "/lm_head_1/MatMul")


def quantise(src: Path, dst: Path, *, keep_fp32: Sequence[str] = KEEP_FP32) -> None:
    """int8 dynamic quantisation (onnxruntime.quantization) of the MatMul weights and of the
    token-embedding table, except the nodes in ``keep_fp32``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation only
            logger.warning("quant_pre_process failed; quantising the raw export", exc_info=True)
            shutil.copy(src, pre)
        quantize_dynamic(
            str(pre),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm", "Gather"],
            nodes_to_exclude=list(keep_fp32),
        )


def _ort_scores(
    path: Path, ids: Sequence[Sequence[int]], pad_id: int, batch: int = 1, next_words: int = 0
) -> np.ndarray:
    """``p_eot`` of an exported model (``p_eot_next`` over ``next_words`` candidates if > 0)."""
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    slots = np.zeros(next_words, dtype=np.float32)
    output = "p_eot_next" if next_words else "p_eot"
    out = np.empty(len(ids), dtype=np.float32)
    for s in range(0, len(ids), batch):
        chunk = ids[s : s + batch]
        width = max(len(c) for c in chunk)
        x = np.full((len(chunk), width), pad_id, dtype=np.int64)
        m = np.zeros((len(chunk), width), dtype=np.int64)
        for r, c in enumerate(chunk):
            x[r, width - len(c) :] = c
            m[r, width - len(c) :] = 1
        feed = {"input_ids": x, "attention_mask": m, "next_slots": slots}
        feed["past"] = empty_past(sess, len(chunk))
        out[s : s + len(chunk)] = sess.run([output], feed)[0]
    return out


def write_assets(
    folder: Path, *, onnx_path: Path, tokenizer_path: Path, config: dict[str, Any], card: str
) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    if onnx_path.resolve() != (folder / "model.onnx").resolve():
        shutil.copy(onnx_path, folder / "model.onnx")
    if tokenizer_path.resolve() != (folder / "tokenizer.json").resolve():
        shutil.copy(tokenizer_path, folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    (folder / "MODEL_CARD.md").write_text(card)
    sums = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ASSET_FILES}
    (folder / "sha256.json").write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")
    return sums


def balanced_threshold(labels: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> float:
    """One threshold for every register: the one whose largest *regret* over the sets is
    smallest, a set's regret being how much balanced accuracy (the mean of the rate of ends /
    complete turns at or above the threshold and of holds / cut turns below it) it loses
    against the best threshold for that set alone. No set is traded away for another, and the
    hardest set (whose best is lowest) does not decide alone."""
    pooled = np.concatenate(list(scores.values()))
    grid = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, 801)))
    bal = np.asarray(
        [
            [
                0.5 * float((scores[k][labels[k] == 1] >= thr).mean())
                + 0.5 * float((scores[k][labels[k] == 0] < thr).mean())
                for thr in grid
            ]
            for k in scores
        ]
    )  # sets x thresholds
    regret = bal.max(axis=1, keepdims=True) - bal
    return float(grid[int(regret.max(axis=0).argmin())])


def export_and_validate(
    checkpoint: Path,
    tokenizer_path: Path,
    data: Path | None,
    out: Path,
    *,
    install: bool = False,
    val_points: int = 4000,
    read_tokens: int | None = None,
    window_hop: int = 32,
) -> Path:
    """Export, quantise, check ONNX ≡ PyTorch, pick the threshold on every corpus's val, write
    the asset folder (and copy it into the package with ``install``).

    ``read_tokens``: the most context tokens the runtime reads by default (< the trained
    context; a shorter window is faster); ``window_hop``: the grid the window's start moves
    on (:func:`caesura.eot._text.read_window`); the threshold and validation metrics are
    computed with that window.
    """
    from caesura.train import data as tdata  # noqa: PLC0415
    from caesura.train.cards import model_card  # noqa: PLC0415
    from caesura.train.loop import auc, score_contexts  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(tokenizer_path))
    eot_id = tok.token_to_id(EOT)
    pad_id = tok.token_to_id(PAD)
    scorer, mcfg, ckpt = load_checkpoint(checkpoint, eot_id)
    read = mcfg.context - 1 if read_tokens is None else min(int(read_tokens), mcfg.context - 1)
    if window_hop < 1:
        raise ValueError(f"window_hop must be ≥ 1, got {window_hop}")
    window_hop = min(window_hop, max(1, read // 2))  # the runtime's bound too
    fp32 = out / "model_fp32.onnx"
    int8 = out / "model.onnx"
    word_start = word_start_mask(tok.get_vocab(), mcfg.vocab_size)
    export_onnx(scorer, fp32, mcfg.context, word_start)
    quantise(fp32, int8)
    for path in (fp32, int8):
        gate_next_words(path)
    metrics: dict[str, Any] = {
        "checkpoint_step": ckpt.get("step"),
        "training": ckpt.get("metrics", {}),
    }
    # ONNX vs PyTorch on a fixture
    fixture = tdata.encode_contexts(
        tok,
        [
            [("agent", "What time works for you?"), ("user", "tomorrow at")],
            [("agent", "What time works for you?"), ("user", "tomorrow at five pm")],
            [("user", "i want to book a table for")],
            [("user", "what time is it")],
        ],
        mcfg.context,
    )
    p_torch = score_contexts(scorer, fixture)
    p_fp32 = _ort_scores(fp32, fixture, pad_id)
    p_int8 = _ort_scores(int8, fixture, pad_id)
    metrics["onnx_fp32_max_abs_diff"] = float(np.abs(p_torch - p_fp32).max())
    metrics["onnx_int8_max_abs_diff"] = float(np.abs(p_torch - p_int8).max())
    logger.info("fixture torch %s fp32 %s int8 %s", p_torch, p_fp32, p_int8)
    n_next = PENDING_CANDIDATES
    short = [ids[-(mcfg.context - 1) :] for ids in fixture]  # room for the word to come
    q_torch = pending_reference(scorer, short, word_start, n_next)
    q_int8 = _ort_scores(int8, short, pad_id, next_words=n_next)
    metrics["onnx_fp32_next_max_abs_diff"] = float(
        np.abs(q_torch - _ort_scores(fp32, short, pad_id, next_words=n_next)).max()
    )
    metrics["onnx_int8_next_max_abs_diff"] = float(np.abs(q_torch - q_int8).max())
    threshold = 0.5
    rule = "0.5 (no validation data)"
    val = (
        tdata.validation_sets(data, val_points=val_points, max_turns=val_points // 4, seed=7)
        if data is not None
        else {}
    )
    if val:
        scores = {
            k: _ort_scores(int8, tdata.encode_contexts(tok, v.contexts, read, window_hop), pad_id)
            for k, v in val.items()
        }
        labels = {k: v.labels for k, v in val.items()}
        threshold = balanced_threshold(labels, scores)
        rule = (
            "the smallest largest loss of balanced accuracy against each val set's own best"
            " threshold ("
            + ", ".join(val)
            + "; turn ends vs mid-turn pauses with all words visible, complete vs cut turns)"
        )
        for k in val:
            y, sc = labels[k], scores[k]
            tpr = float((sc[y == 1] >= threshold).mean())
            tnr = float((sc[y == 0] < threshold).mean())
            metrics[f"{k}_auc_int8"] = auc(y, sc)
            metrics[f"{k}_balanced_accuracy"] = (tpr + tnr) / 2
            metrics[f"{k}_tpr_at_threshold"] = tpr
            metrics[f"{k}_points"] = len(y)
        logger.info(
            "val AUC int8 %s threshold %.4f",
            {k: round(metrics[f"{k}_auc_int8"], 4) for k in val},
            threshold,
        )
    config = {
        "format": "caesura-eot",
        "version": 1,
        "name": MODEL_NAME,
        "context": mcfg.context,
        "read_tokens": read,
        "window_hop": window_hop,
        "eot_id": eot_id,
        "pad_id": pad_id,
        "languages": ["en"],
        "thresholds": {"en": round(threshold, 6)},
        "threshold_rule": rule,
        "pending_candidates": n_next,
        "architecture": {
            "type": "gpt2",
            **mcfg.to_dict(),
            "parameters": sum(p.numel() for p in scorer.parameters()),
        },
        "quantisation": "onnxruntime dynamic int8 (per-channel QInt8 MatMul weights and"
        " embedding table; output projection kept fp32)",
        "metrics": metrics,
    }
    stage1 = Path(checkpoint).parent / "last.pt"  # the recipe's stage-1 checkpoint, if beside
    if stage1.is_file():
        s1 = torch.load(stage1, map_location="cpu", weights_only=False)
        config["stage1_steps"] = int(s1.get("total_step", s1.get("step", 0)))
    (out / "config.json").write_text(json.dumps(config, indent=1))
    sums = write_assets(
        out, onnx_path=int8, tokenizer_path=tokenizer_path, config=config, card=model_card(config)
    )
    logger.info("assets written to %s: %s", out, sums)
    if install:
        for name in (*ASSET_FILES, "MODEL_CARD.md", "sha256.json"):
            shutil.copy(out / name, PACKAGE_ASSETS / name)
        logger.info("installed into %s", PACKAGE_ASSETS)
    return out
