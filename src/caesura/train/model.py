"""The end-of-turn model: a small GPT-2 causal LM (``transformers``) over linearised dialogue.

P(end of turn) is the softmax probability of ``<|eot|>`` as the next token after the open
user turn. :class:`EotScorer` computes it at the last position only (left padding allowed):
it is what is exported to ONNX.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

__all__ = [
    "EotScorer",
    "LastPositionScorer",
    "ModelConfig",
    "build_model",
    "eot_bce",
    "lm_loss",
    "word_start_mask",
]


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 4096
    context: int = 128
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.0

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


def word_start_mask(vocab: Mapping[str, int], size: int) -> torch.Tensor:
    """Bool ``[size]``: the ids of tokens that begin a word (byte-level BPE marks the leading
    space as ``Ġ``); special tokens and word continuations are ``False``."""
    mask = torch.zeros(size, dtype=torch.bool)
    for token, i in vocab.items():
        if token.startswith("Ġ") and 0 <= i < size:
            mask[i] = True
    return mask


def build_model(cfg: ModelConfig, *, attn: str = "sdpa") -> GPT2LMHeadModel:
    hf = GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.context,
        n_embd=cfg.d_model,
        n_layer=cfg.layers,
        n_head=cfg.heads,
        n_inner=cfg.ff,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        activation_function="gelu_new",
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    hf._attn_implementation = attn
    return GPT2LMHeadModel(hf)


class EotScorer(nn.Module):
    """``input_ids [B, T]`` (+ ``attention_mask``, left padded) → P(<|eot|>) ``[B]``."""

    def __init__(self, lm: GPT2LMHeadModel, eot_id: int) -> None:
        super().__init__()
        self.lm = lm
        self.eot_id = eot_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(torch.long)
        pos = (torch.cumsum(mask, dim=1) - 1).clamp(min=0)
        h = self.lm.transformer(
            input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False
        ).last_hidden_state[:, -1, :]
        logits = self.lm.lm_head(h)
        return torch.softmax(logits.float(), dim=-1)[:, self.eot_id]


def _dense(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GPT-2's ``Conv1D`` (weight ``[in, out]``) as MatMul + Add on the 3-D tensor: exports
    without the flatten/unflatten reshapes around a Gemm."""
    return torch.matmul(x, conv.weight) + conv.bias


class LastPositionScorer(nn.Module):
    """The same P(<|eot|>) as :class:`EotScorer`, written out for export.

    Only the last position's output is read, so the last block computes its query, attention,
    projection and MLP for that position alone (the keys and values still cover every
    position); the blocks before it run in full. Plain tensor ops on the GPT-2 weights keep
    the ONNX graph free of the library's mask plumbing. Equal to :class:`EotScorer` to float
    rounding (tested).
    """

    def __init__(
        self, lm: GPT2LMHeadModel, eot_id: int, word_start: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.lm = lm
        self.eot_id = eot_id
        vocab = int(lm.config.vocab_size)
        if word_start is None:
            word_start = torch.ones(vocab, dtype=torch.bool)
            word_start[: eot_id + 1] = False
        if word_start.shape != (vocab,):
            raise ValueError(f"word_start must be a bool mask over the {vocab} vocabulary ids")
        #: next-word candidates: ids that start a word (no special tokens, no continuations)
        self.register_buffer("word_start", word_start.to(torch.bool), persistent=False)
        self.heads = int(lm.config.n_head)
        self.head_dim = int(lm.config.n_embd) // self.heads
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, H * hd]`` → ``[B, H, T, hd]``."""
        return x.reshape(x.shape[0], -1, self.heads, self.head_dim).transpose(1, 2)

    def _merge(self, o: torch.Tensor) -> torch.Tensor:
        """``[B, H, T, hd]`` → ``[B, T, H * hd]``."""
        return o.transpose(1, 2).reshape(o.shape[0], -1, self.heads * self.head_dim)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """``q`` ``[B, Tq, H * hd]``; ``k``, ``v`` already split ``[B, H, Tk, hd]``."""
        q = self._split(q)
        w = torch.matmul(q, k.transpose(-1, -2)) * self.scale + bias
        return self._merge(torch.matmul(torch.softmax(w, dim=-1), v))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.score(input_ids, attention_mask, None)[0]

    def score(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        next_slots: torch.Tensor | None,
        past: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(P(eot) [B], P(eot after the next word) [B] or None, present)``.

        With ``next_slots`` (any tensor whose length K is the number of candidates; K may be
        0), the second score marginalises over the K most likely next tokens that start a
        word: sum_w P(w | prefix) P(eot | prefix + w) / sum_w P(w | prefix). Each candidate
        is one extra position that attends to the prefix's keys and values (no re-run of
        the prefix), so K candidates cost about K positions of compute.

        ``past`` ``[layers, 2, B, H, P, head_dim]``: the keys and values of P tokens that
        precede ``input_ids`` (``present`` of an earlier call; P may be 0);
        ``attention_mask`` then covers all P + T tokens. ``present`` is ``past`` extended by
        the keys and values of ``input_ids``, so a dialogue that grows by a few words costs
        those words' compute only.
        """
        tr = self.lm.transformer
        mask = attention_mask.to(torch.long)
        pos = (torch.cumsum(mask, dim=1) - 1).clamp(min=0)
        t = input_ids.shape[1]
        h = tr.wte(input_ids) + tr.wpe(pos[:, -t:])
        total = mask.shape[1]
        neg = torch.finfo(h.dtype).min
        keep = mask[:, None, None, :].to(torch.bool)  # [B, 1, 1, P+T] keys that are real tokens
        causal = torch.ones(total, total, dtype=torch.bool, device=h.device).tril()[None, None]
        full_bias = torch.where(causal[:, :, -t:, :] & keep, 0.0, neg)  # [B, 1, T, P+T]
        last_bias = torch.where(keep, 0.0, neg)  # [B, 1, 1, P+T]: the last query sees every key
        blocks = list(tr.h)
        kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, blk in enumerate(blocks):
            last = i == len(blocks) - 1
            a = blk.ln_1(h)
            q, k, v = _dense(blk.attn.c_attn, a).split(a.shape[-1], dim=2)
            k, v = self._split(k), self._split(v)  # [B, H, T, hd]
            if past is not None:
                k = torch.cat([past[i, 0], k], dim=2)
                v = torch.cat([past[i, 1], v], dim=2)
            kv.append((k, v))
            if last:
                h = h[:, -1:, :]
                q = q[:, -1:, :]
            o = self._attend(q, k, v, last_bias if last else full_bias)
            h = h + _dense(blk.attn.c_proj, o)
            h = h + _dense(blk.mlp.c_proj, blk.mlp.act(_dense(blk.mlp.c_fc, blk.ln_2(h))))
        present = torch.stack([torch.stack(pair) for pair in kv])
        probs = torch.softmax(self.lm.lm_head(tr.ln_f(h[:, -1, :])).float(), dim=-1)
        p_eot = probs[:, self.eot_id]
        if next_slots is None:
            return p_eot, None, present
        # candidates: the K likeliest next tokens that start a word (the prefix is complete)
        starts = self.word_start.to(probs.dtype)
        w, cand = torch.topk(probs * starts, next_slots.shape[0], dim=-1)  # [B, K]
        # the position after the prefix (clamped: a full context is only ever scored with K = 0)
        nxt = mask.sum(dim=1, keepdim=True).clamp(max=tr.wpe.num_embeddings - 1)
        e = tr.wte(cand) + tr.wpe(nxt)
        for blk, (k, v) in zip(blocks, kv, strict=True):
            a = blk.ln_1(e)
            qe, ke, ve = _dense(blk.attn.c_attn, a).split(a.shape[-1], dim=2)
            e = e + _dense(blk.attn.c_proj, self._attend_next(qe, (ke, ve), (k, v), last_bias))
            e = e + _dense(blk.mlp.c_proj, blk.mlp.act(_dense(blk.mlp.c_fc, blk.ln_2(e))))
        p_next = torch.softmax(self.lm.lm_head(tr.ln_f(e)).float(), dim=-1)[..., self.eot_id]
        marg = (w * p_next).sum(dim=-1) / w.sum(dim=-1).clamp(min=1e-12)
        return p_eot, marg, present

    def _attend_next(
        self,
        q: torch.Tensor,
        new: tuple[torch.Tensor, torch.Tensor],
        prefix: tuple[torch.Tensor, torch.Tensor],
        bias: torch.Tensor,
    ) -> torch.Tensor:
        """K independent one-token continuations: each query [B, K] sees the prefix's keys
        (``bias`` masks padding) and its own key, not the other candidates'."""
        q = self._split(q)  # [B, H, K, hd]
        kn, vn = self._split(new[0]), self._split(new[1])
        k, v = prefix  # [B, H, T, hd]
        w_prefix = torch.matmul(q, k.transpose(-1, -2)) * self.scale + bias  # [B, H, K, T]
        w_self = (q * kn).sum(dim=-1, keepdim=True) * self.scale  # [B, H, K, 1]
        att = torch.softmax(torch.cat([w_prefix, w_self], dim=-1), dim=-1)
        return self._merge(torch.matmul(att[..., :-1], v) + att[..., -1:] * vn)


def lm_loss(
    lm: GPT2LMHeadModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eot_id: int,
    boundary: torch.Tensor,
    pad_id: int = 0,
    eot_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy + ``eot_weight`` x binary CE of P(eot) at word boundaries.

    ``boundary`` is a bool lookup table over the vocabulary: targets that start a new word
    (or are ``<|eot|>``) mark the positions where "is the turn over?" is the real question.
    Returns (total, lm, eot-bce).
    """
    logits = lm(input_ids=x).logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    valid = y != pad_id
    nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    lm_part = (nll * valid).sum() / valid.sum().clamp(min=1)
    at = boundary[y] & valid
    is_eot = (y[at] == eot_id).float()
    bce = eot_bce(logp[..., eot_id][at], is_eot) if at.any() else lm_part * 0
    return lm_part + eot_weight * bce, lm_part.detach(), bce.detach()


def eot_bce(log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy from log P(<|eot|>) (a softmax entry) and 0/1 targets."""
    log1m = torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))
    return -(target * log_p + (1 - target) * log1m).mean()
