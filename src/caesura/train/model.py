"""The end-of-turn model: a small GPT-2 causal LM (``transformers``) over linearised dialogue.

P(end of turn) is the softmax probability of ``<|eot|>`` as the next token after the open
user turn. :class:`EotScorer` computes it at the last position only (left padding allowed):
it is what is exported to ONNX.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

__all__ = ["EotScorer", "ModelConfig", "build_model", "lm_loss"]


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
    lp = logp[..., eot_id][at]
    is_eot = (y[at] == eot_id).float()
    log1m = torch.log1p(-lp.exp().clamp(max=1 - 1e-6))
    bce = -(is_eot * lp + (1 - is_eot) * log1m).mean() if at.any() else lm_part * 0
    return lm_part + eot_weight * bce, lm_part.detach(), bce.detach()
