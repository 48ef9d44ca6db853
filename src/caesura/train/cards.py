"""The model card (MODEL_CARD.md) written next to the exported model."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["model_card"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _window_rule(config: dict[str, Any]) -> str:
    hop = int(config.get("window_hop", 1))
    if hop <= 1:
        return ", the last ones of the dialogue"
    read = int(config.get("read_tokens", config["context"]))
    return (
        f"; the window starts on a {hop}-token grid of the dialogue, so a long dialogue is read"
        f" from its last {read - hop + 1} to {read} tokens and a growing one keeps its window"
    )


def model_card(config: dict[str, Any], benchmarks: dict[str, Any] | None = None) -> str:
    a = config["architecture"]
    m = config.get("metrics", {})
    lines = [
        f"# {config['name']}: semantic end-of-turn model (English)",
        "",
        "P(the user has finished their turn) from the recent transcript, for voice agents.",
        "A small GPT-2-style causal language model trained from scratch on dialogue text;",
        "the score is its probability that the end-of-turn token `<|eot|>` comes next after",
        "the user's words. Runs with onnxruntime + tokenizers only (`caesura.eot`).",
        "",
        "## Model",
        "",
        f"- GPT-2 (`transformers.GPT2LMHeadModel`), {a['layers']} layers, d_model {a['d_model']},"
        f" {a['heads']} heads, feed-forward {a['ff']}, context {a['context']} tokens,"
        f" {a['parameters'] / 1e6:.2f} M parameters (tied embeddings).",
        f"- Tokenizer: byte-level BPE, {a['vocab_size']} tokens, trained on the training text;"
        " special tokens `<|pad|> <|endoftext|> <|user|> <|agent|> <|eot|>`.",
        "- Input: `<|user|> words<|eot|><|agent|> words<|eot|><|user|> words`, the user's turn"
        " being scored left open — at most"
        f" {config.get('read_tokens', a['context'])} tokens by default"
        f" (`EndOfTurnModel.load(max_tokens=...)`, up to {a['context'] - 1}: one position is"
        " kept for a pending word)" + _window_rule(config) + ".",
        "- Export: ONNX (P(eot) at the last position only: the last block computes that"
        f" position alone), {config['quantisation']}. The graph takes the keys and values of"
        " earlier tokens (`past`) and returns them extended (`present`):"
        " `EndOfTurnModel.stream()` computes only the tokens a growing dialogue adds.",
        "",
        "## Training data",
        "",
        "- Word-timed conversation, train splits: Switchboard (ISIP MS-98 word alignments),"
        " AMI meetings (3-5 speakers; pauses only between transcriber segments), Earnings-22"
        " calls (75 of 125 calls; untimed tokens never border a pause). Turns are built from"
        " word timings; listener backchannels ('uh-huh', 'yeah', 'right', ...) do not take the"
        " floor; one speaker drawn as the user per conversation (two copies), the rest agent.",
        "- Untimed spoken text: Earnings-22 train calls as punctuated turns, Earnings-21,"
        " Rev16 podcasts (stage 1 only).",
        "- Written: Schema-Guided Dialogue train, MultiWOZ 2.1 val, Taskmaster-4; SNIPS and"
        " Clinc150 assistant commands (train splits), alone or after an agent's opening"
        " question; short answers ('yeah', 'no thanks') after agents' questions. Every turn"
        " randomly in streaming-STT style (lower case, no punctuation, numbers as words or"
        " digits) or as written (cased, punctuated).",
        "- Stage 1 objective: next-token cross-entropy on all the dialogue text plus a binary"
        " cross-entropy on P(<|eot|>) at every word boundary (the turn-is-over decision);"
        " windows of 32 x 128 tokens, 65% from conversation, AdamW, peak LR 2e-3, cosine"
        " schedule over the recipe's wall-clock budget.",
        "- Stage 2 (`caesura.train.finetune`, seeded runs from the stage-1 checkpoint, their"
        " best-on-val weights averaged): binary cross-entropy on P(<|eot|>) at the questions"
        " the runtime is asked: each word-timed corpus's train pauses (END vs HOLD, words"
        " visible under an STT lag of 0, 0.3 or 0.5 s), written turns and commands complete vs"
        " cut at a word boundary, short answers vs unfinished starts ('and', 'so um'); plus 8"
        " windows of whole conversations per step, scored at every pause of one speaker."
        " Checkpoints are chosen by the mean val AUC over every corpus.",
        "- Held out: Switchboard val/test (by conversation), AMI dev/eval (by meeting),"
        " Earnings-22 val/test (25 + 25 calls), SGD dev/test, MultiWOZ test, SNIPS validate,"
        " Clinc150 val/test.",
        "- Recipe: `nox -s train -- --data ../shared/data` (seeded, 2-core CPU, under 2 hours:"
        " 65 min of stage 1, 2 x 9 min of stage 2). Stage 1 can go on in a later session:"
        " `--continue-from RUN/last.pt --lr 0.001 --max-minutes 70` starts from that"
        " checkpoint's weights and tokenizer with a fresh optimizer and schedule (a warm"
        " restart), then runs stage 2 and the export as usual."
        + (
            f" This model: {config['stage1_steps']:,} stage-1 steps in all."
            if config.get("stage1_steps")
            else ""
        ),
        "",
        "## Threshold",
        "",
        f"`unlikely_threshold('en')` = {config['thresholds']['en']:.4f}"
        f" ({config['threshold_rule']}).",
        "",
    ]
    if config.get("pending_candidates"):
        lines += [
            "## Words still being recognised",
            "",
            "`predict(turns, words_pending=True)` answers P(the turn ends after one more word),"
            " for a pause the speech recogniser has not caught up with: the sum over the"
            f" {config['pending_candidates']} likeliest word-starting next tokens of"
            " P(token | words) x P(eot | words + token), normalised; each candidate is one more"
            " position of the same ONNX graph (`next_slots` input, `p_eot_next` output).",
            "",
        ]
    lines += [
        "## Validation metrics (at export)",
        "",
    ]
    for k, v in m.items():
        if k == "training":
            continue
        lines.append(f"- {k}: {_fmt(v)}")
    tr = m.get("training", {})
    if tr:
        lines.append(f"- training record of the shipped checkpoint: `{json.dumps(tr)}`")
    if benchmarks:
        lines += ["", "## Test metrics (benchmarks/eot_text.py, benchmarks/eot_speed.py)", ""]
        lines += ["```", benchmarks.get("text", json.dumps(benchmarks, indent=1)), "```"]
    lines += [
        "",
        "## Limitations",
        "",
        "- English only; other languages are reported unsupported (not scored).",
        "- Text only: prosody and pause length are not seen; combine with silence timing"
        " (`caesura.turn`).",
        "- Trained on telephone and meeting conversation, earnings calls, written task"
        " dialogues and assistant commands; a tiny model trained from scratch on a CPU budget:"
        " it is far from a large pretrained LM.",
        "",
        "## Licenses of the training data",
        "",
        "Switchboard ISIP MS-98 transcripts (freely released by Mississippi State University),"
        " AMI (CC BY 4.0), Earnings-21 / Earnings-22 (CC BY-SA 4.0), Rev16 transcripts"
        " (CC BY-SA 4.0), SGD (CC BY-SA 4.0), MultiWOZ (MIT), Taskmaster-4 (CC BY 4.0), SNIPS"
        " (CC0 1.0), Clinc150 (CC BY 3.0).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Rewrite ``MODEL_CARD.md`` from ``config.json`` plus benchmark results.

    ``python -m caesura.train.cards --assets DIR [--text eot_text.json] [--speed speed.txt]``
    """
    import argparse  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--assets", type=Path, required=True)
    ap.add_argument("--text", type=Path, default=None, help="benchmarks/eot_text.py --json output")
    ap.add_argument("--speed", type=Path, default=None, help="benchmarks/eot_speed.py output")
    args = ap.parse_args(argv)
    config = json.loads((args.assets / "config.json").read_text())
    bench: dict[str, Any] | None = None
    if args.text or args.speed:
        parts = []
        if args.text:
            parts.append(json.loads(args.text.read_text())["text"])
        if args.speed:
            parts.append(args.speed.read_text().strip())
        bench = {"text": "\n\n".join(parts)}
    (args.assets / "MODEL_CARD.md").write_text(model_card(config, bench))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
