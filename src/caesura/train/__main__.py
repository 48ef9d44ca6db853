"""``python -m caesura.train --data ../shared/data``: the whole recipe, seeded, in one command.

Builds the data, trains the tokenizer and the model (wall-clock bounded), keeps the
checkpoint with the best Switchboard-val AUC, then exports it (ONNX, int8) with its tokenizer,
config and model card; ``--install`` copies the result into ``src/caesura/eot/assets``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

from caesura.train import PRECISIONS

logger = logging.getLogger("caesura.train")


def _lags(text: str) -> tuple[float, ...]:
    try:
        lags = tuple(float(x) for x in text.split(","))
    except ValueError:
        lags = ()
    if not lags or any(not 0.0 <= lag <= 5.0 for lag in lags):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated lags in seconds (0-5), got {text!r}"
        )
    return lags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m caesura.train", description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder (has eot/)")
    ap.add_argument("--out", type=Path, default=Path("build/eot-train"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=4500, help="stage 1 steps (LR schedule span)")
    ap.add_argument(
        "--max-minutes", type=float, default=65.0, help="stage 1 wall-clock cap (slow machines)"
    )
    ap.add_argument(
        "--stop-minutes",
        type=float,
        default=None,
        help="stop stage 1 early (its LR schedule still follows --max-minutes)",
    )
    ap.add_argument(
        "--finetune-minutes",
        type=float,
        default=9.0,
        help="stage 2 budget: P(eot) fine-tuned on pause decisions (0 = skip)",
    )
    ap.add_argument(
        "--finetune-steps",
        type=int,
        default=None,
        help="stage 2 step limit per run (its LR schedule then spans these steps)",
    )
    ap.add_argument(
        "--finetune-windows",
        type=int,
        default=None,
        help="stage 2: conversation windows labelled at every pause, per step (0 = none;"
        " default: FinetuneConfig's)",
    )
    ap.add_argument(
        "--finetune-runs",
        type=int,
        default=2,
        help="stage 2 runs (seeds seed, seed+1, ...) of --finetune-minutes each, averaged",
    )
    ap.add_argument(
        "--finetune-batch",
        type=int,
        default=None,
        help="stage 2 single questions per step (default: FinetuneConfig's)",
    )
    ap.add_argument(
        "--finetune-lr",
        type=float,
        default=None,
        help="stage 2 peak learning rate (default: FinetuneConfig's)",
    )
    ap.add_argument(
        "--finetune-ema",
        type=float,
        default=None,
        help="stage 2: keep and evaluate a moving average of the weights (decay; default off)",
    )
    ap.add_argument(
        "--finetune-lags",
        type=_lags,
        default=None,
        help="stage 2: STT lags (s) of the single pause questions, comma separated"
        " (default: caesura.train.finetune.LAGS, lag 0 twice, 0.3 and 0.5)",
    )
    ap.add_argument("--from-checkpoint", type=Path, default=None, help="skip stage 1")
    ap.add_argument(
        "--continue-from",
        type=Path,
        default=None,
        help="stage 1 continues from this stage-1 checkpoint (its weights and the tokenizer"
        " beside it; fresh optimizer and LR schedule): more stage-1 time across sessions",
    )
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument(
        "--optimizer",
        choices=("adamw", "muon"),
        default="adamw",
        help="stage 1: AdamW, or Muon on the blocks' matrices (AdamW for the rest)",
    )
    ap.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="both stages' forward passes: float32 (the shipped model's), bfloat16 autocast"
        " (about 2x faster per stage-1 step on a GPU or a CPU with AMX / AVX-512 BF16), or"
        " auto (bf16 where the hardware has it, float32 elsewhere)",
    )
    ap.add_argument(
        "--spoken-share",
        type=float,
        default=0.65,
        help="share of stage-1 windows from conversation (the rest: written dialogues, commands)",
    )
    ap.add_argument("--eot-weight", type=float, default=1.0)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument(
        "--read-tokens",
        type=int,
        default=96,
        help="the most context tokens the runtime reads by default (< --context; 96 scored"
        " best on Switchboard val and is 25%% faster than 128)",
    )
    ap.add_argument(
        "--window-hop",
        type=int,
        default=32,
        help="the read window's start moves on a grid of this many tokens, so a growing"
        " dialogue keeps its window and a stream reuses its keys and values (1: slide token"
        " by token)",
    )
    ap.add_argument("--eval-every-minutes", type=float, default=15.0)
    ap.add_argument("--val-points", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit-convs", type=int, default=None, help="debug: use fewer conversations")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--install", action="store_true", help="copy the export into the package")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    eot_dir = args.data / "eot"
    if not (eot_dir / "switchboard" / "train.tsv.gz").is_file():
        print(
            f"no end-of-turn corpora under {eot_dir}; pass --data ../shared/data", file=sys.stderr
        )
        return 2

    from tokenizers import Tokenizer  # noqa: PLC0415

    from caesura.eot._text import linearise  # noqa: PLC0415
    from caesura.train import corpora  # noqa: PLC0415
    from caesura.train import data as tdata  # noqa: PLC0415
    from caesura.train.loop import TrainConfig, train  # noqa: PLC0415
    from caesura.train.model import ModelConfig  # noqa: PLC0415

    t0 = time.time()
    rng = random.Random(args.seed)
    train_convs = tdata.timed_corpora(args.data, "train")
    if args.limit_convs:
        train_convs = {k: v[: args.limit_convs] for k, v in train_convs.items()}
    written_raw = tdata.written_train_raw(args.data)  # SGD train, MultiWOZ val, Taskmaster-4
    commands_train = None
    if (eot_dir / "commands").is_dir():
        commands_train = tdata.command_dialogues(
            corpora.load_commands(args.data, "train"), args.seed
        )
        if args.limit_convs:
            commands_train = commands_train[: args.limit_convs * 10]
    logger.info(
        "word-timed conversations: %s (%.0f s)",
        {k: len(v) for k, v in train_convs.items()},
        time.time() - t0,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    streams: dict[str, Any] = {}
    if args.from_checkpoint is not None and args.continue_from is not None:
        print(
            "--from-checkpoint skips stage 1; --continue-from continues it: pick one",
            file=sys.stderr,
        )
        return 2
    if args.from_checkpoint is not None:
        # Resume at stage 2: the tokenizer is the one stage 1 trained (saved beside it).
        tok = Tokenizer.from_file(str(args.from_checkpoint.parent / "tokenizer.json"))
        tok.save(str(out / "tokenizer.json"))
    else:
        # every word-timed conversation twice (a different speaker as the user each time),
        # then the untimed spoken text (earnings calls, podcasts)
        spoken = [
            d
            for convs in train_convs.values()
            for d in tdata.conversation_dialogues(convs, rng)
            + tdata.conversation_dialogues(convs, rng)
        ] + tdata.text_dialogues(args.data, rng)
        wr = tdata.written_dialogues(written_raw, rng)
        if commands_train:
            wr += [[(r, tdata.styled(t, rng)) for r, t in d] for d in commands_train]
        # short complete answers to agents' questions ("yeah", "no thanks") as closed turns
        short = tdata.short_answer_set(written_raw, seed=args.seed)
        wr += [
            [*c[:-1], ("user", tdata.styled(c[-1][1], rng))]
            for c, y in zip(short.contexts, short.labels, strict=True)
            if y == 1
        ]
        if args.limit_convs:
            wr = wr[: args.limit_convs * 10]
        rng.shuffle(spoken)
        logger.info(
            "dialogues: spoken %d, written %d (%.0f s)", len(spoken), len(wr), time.time() - t0
        )
        if args.continue_from is not None:
            tok = Tokenizer.from_file(str(args.continue_from.parent / "tokenizer.json"))
        else:
            tok = tdata.train_tokenizer(
                (linearise(d, close_last=True) for d in spoken[: len(spoken) // 2] + wr),
                args.vocab,
            )
        tok.save(str(out / "tokenizer.json"))
        streams = {
            "spoken": tdata.token_stream(tok, spoken),
            "written": tdata.token_stream(tok, wr),
        }
        logger.info(
            "tokens: %s (%.0f s)", {k: len(v) for k, v in streams.items()}, time.time() - t0
        )
    evals = tdata.validation_sets(
        args.data,
        val_points=args.val_points,
        max_turns=250,
        seed=args.seed,
        limit_convs=args.limit_convs,
    )
    evals["short_val"] = tdata.short_answer_set(
        tdata.load_written(eot_dir / "sgd" / "dev.jsonl.gz"), max_items=150, seed=args.seed
    )
    mcfg = ModelConfig(
        vocab_size=tok.get_vocab_size(),
        context=args.context,
        d_model=args.d_model,
        layers=args.layers,
        heads=args.heads,
        ff=args.ff,
    )
    tcfg = TrainConfig(
        steps=args.steps,
        max_minutes=args.max_minutes,
        stop_minutes=args.stop_minutes,
        batch=args.batch,
        lr=args.lr,
        eot_weight=args.eot_weight,
        spoken_share=args.spoken_share,
        eval_every_minutes=args.eval_every_minutes,
        threads=args.threads,
        seed=args.seed,
        optimizer=args.optimizer,
        precision=args.precision,
    )
    (out / "recipe.json").write_text(
        json.dumps({"argv": sys.argv, "model": mcfg.to_dict(), "train": tcfg.__dict__}, indent=1)
    )
    if args.from_checkpoint is None:
        train(
            tok=tok,
            streams=streams,
            evals=evals,
            mcfg=mcfg,
            tcfg=tcfg,
            out=out,
            init=args.continue_from,
        )
        # The end of the cosine schedule, not the best-on-val checkpoint: late checkpoints
        # differ on the 1,500 val points by noise (±0.01 AUC) while the final one has seen
        # the most text (best.pt stays beside it for reference).
        best = out / "last.pt"
    else:
        best = args.from_checkpoint
    logger.info("stage 1 done in %.1f min; continuing from %s", (time.time() - t0) / 60, best)
    if args.finetune_minutes > 0:
        from caesura.train.finetune import (  # noqa: PLC0415
            FinetuneConfig,
            average_checkpoints,
            build_finetune_set,
            finetune,
            pause_windows,
        )

        if args.limit_convs:
            written_raw = written_raw[: args.limit_convs * 10]
        given = {
            "windows_per_step": args.finetune_windows,
            "batch": args.finetune_batch,
            "lr": args.finetune_lr,
            "ema_decay": args.finetune_ema,
            "lags": args.finetune_lags,
        }
        base = FinetuneConfig(
            max_minutes=args.finetune_minutes,
            max_steps=args.finetune_steps,
            threads=args.threads,
            seed=args.seed,
            precision=args.precision,
            **{k: v for k, v in given.items() if v is not None},
        )
        sets = build_finetune_set(
            train_convs, written_raw, args.seed, base.lags, commands=commands_train
        )
        pooled = [c for convs in train_convs.values() for c in convs]
        windows = pause_windows(pooled, tok, args.seed) if base.windows_per_step else None
        stage1, bests = best, []
        for run in range(args.finetune_runs):
            fcfg = dataclasses.replace(base, seed=args.seed + run)
            run_out = out if args.finetune_runs == 1 else out / f"stage2-run{run}"
            bests.append(
                finetune(
                    checkpoint=stage1,
                    tok=tok,
                    train_sets=sets,
                    evals=evals,
                    cfg=fcfg,
                    out=run_out,
                    windows=windows,
                )
            )
        best = bests[0] if len(bests) == 1 else average_checkpoints(bests, out / "averaged.pt")
        logger.info("stage 2 done at %.1f min; best checkpoint %s", (time.time() - t0) / 60, best)
    if args.no_export:
        return 0
    try:
        from caesura.train.export import export_and_validate  # noqa: PLC0415

        export_and_validate(
            best,
            out / "tokenizer.json",
            args.data,
            out / "export",
            install=args.install,
            read_tokens=args.read_tokens,
            window_hop=args.window_hop,
        )
    except Exception:
        logger.exception("export failed; the checkpoint is at %s", best)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
