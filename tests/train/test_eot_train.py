"""The training recipe end to end on a synthetic corpus (needs the ``train`` extra: torch)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnx")

from transformers import GPT2LMHeadModel  # noqa: E402

from caesura.eot import EndOfTurnModel  # noqa: E402
from caesura.eot.model import empty_past  # noqa: E402
from caesura.train import switchboard as sb  # noqa: E402
from caesura.train.__main__ import main as train_main  # noqa: E402
from caesura.train.data import encode_contexts  # noqa: E402
from caesura.train.export import (  # noqa: E402
    _ort_scores,
    balanced_threshold,
    export_and_validate,
    load_checkpoint,
    pending_reference,
)
from caesura.train.finetune import (  # noqa: E402
    FinetuneConfig,
    WeightAverage,
    average_checkpoints,
)
from caesura.train.loop import (  # noqa: E402
    MuonAdamW,
    TrainConfig,
    autocast,
    make_optimizer,
    native_bf16,
    optimizer_step,
    orthogonalise,
    resolve_precision,
    score_contexts,
)
from caesura.train.model import (  # noqa: E402
    EotScorer,
    LastPositionScorer,
    ModelConfig,
    build_model,
    lm_loss,
    word_start_mask,
)
from caesura.train.text import int_to_words, stt_style, words_to_digits  # noqa: E402

WORDS = [
    "i",
    "want",
    "to",
    "book",
    "a",
    "table",
    "for",
    "two",
    "at",
    "seven",
    "please",
    "yes",
    "no",
    "the",
    "coffee",
    "latte",
    "uh",
    "um",
]


def _sentence(rng: random.Random) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]


def _switchboard(path: Path, convs: int, rng: random.Random) -> None:
    lines = ["conv\tspeaker\tstart\tend\tword"]
    for c in range(convs):
        t = 0.0
        for turn in range(12):
            spk = "AB"[turn % 2]
            for w in _sentence(rng):
                lines.append(f"sw{c:04d}\t{spk}\t{t:.3f}\t{t + 0.3:.3f}\t{w}")
                t += 0.3 + rng.choice([0.0, 0.0, 0.3])
            if rng.random() < 0.3:
                lines.append(f"sw{c:04d}\t{spk}\t{t:.3f}\t{t + 0.2:.3f}\t[noise]")
            t += 0.5
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def _written(path: Path, n: int, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        for i in range(n):
            turns = [
                {
                    "speaker": "user" if k % 2 == 0 else "system",
                    "text": " ".join(_sentence(rng)).capitalize() + rng.choice([".", "?", ""]),
                }
                for k in range(6)
            ]
            fh.write(json.dumps({"id": str(i), "turns": turns}) + "\n")


def _ami(path: Path, meetings: int, rng: random.Random) -> None:
    """Three speakers; word times fold pauses inside a segment, gaps only between segments."""
    lines = ["conv\tspeaker\tstart\tend\tword\tseg"]
    for m in range(meetings):
        t, seg = 0.0, 0
        for turn in range(15):
            spk = "ABC"[rng.randrange(3) if turn else 0]
            for _ in range(rng.choice([1, 1, 2])):
                seg += 1
                for w in _sentence(rng):
                    lines.append(f"M{m:03d}\t{spk}\t{t:.2f}\t{t + 0.35:.2f}\t{w.title()}\t{seg}")
                    t += 0.35
                t += rng.choice([0.4, 0.9, 1.5])
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def _earnings22(path: Path, calls: int, rng: random.Random) -> None:
    """Two speakers; about a quarter of the tokens without times, punctuation in a column."""
    lines = ["conv\tspeaker\tstart\tend\tword\tpunct"]
    for c in range(calls):
        t = 0.0
        for turn in range(10):
            words = _sentence(rng)
            for k, w in enumerate(words):
                timed = rng.random() > 0.25
                s, e = (f"{t:.2f}", f"{t + 0.3:.2f}") if timed else ("", "")
                punct = "." if k == len(words) - 1 else ""
                lines.append(f"call{c:03d}\t{turn % 2}\t{s}\t{e}\t{w}\t{punct}")
                t += 0.3 + rng.choice([0.0, 0.0, 0.4])
            t += 0.6
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def _commands(root: Path, rng: random.Random) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, splits in (
        ("snips", ("train", "train", "train", "validate")),
        ("clinc150", ("train", "val", "test", "oos_test")),
    ):
        with gzip.open(root / f"{name}.jsonl.gz", "wt") as fh:
            for i in range(80):
                text = " ".join(_sentence(rng)) + f" {i}"
                fh.write(json.dumps({"text": text, "split": splits[i % 4], "source": name}) + "\n")


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(0)
    eot = root / "eot"
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        _switchboard(eot / "switchboard" / f"{split}.tsv.gz", n, rng)
    _written(eot / "sgd" / "train.jsonl.gz", 60, rng)
    _written(eot / "sgd" / "dev.jsonl.gz", 20, rng)
    _written(eot / "multiwoz" / "val.jsonl.gz", 10, rng)
    _written(eot / "taskmaster4" / "all.jsonl.gz", 10, rng)
    for split, n in (("train", 6), ("dev", 3), ("eval", 3)):
        _ami(eot / "ami" / f"{split}.tsv.gz", n, rng)
    _earnings22(eot / "earnings22" / "all.tsv.gz", 10, rng)
    _commands(eot / "commands", rng)
    return root


@pytest.fixture(scope="module")
def trained(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    rc = train_main(
        [
            "--data",
            str(synthetic_data),
            "--out",
            str(out),
            "--steps",
            "6",
            "--batch",
            "4",
            "--vocab",
            "300",
            "--d-model",
            "32",
            "--layers",
            "1",
            "--heads",
            "2",
            "--ff",
            "64",
            "--context",
            "32",
            "--val-points",
            "40",
            "--threads",
            "1",
            "--finetune-steps",
            "3",
            "--finetune-ema",
            "0.9",
            "--precision",
            "bf16",  # both stages under bfloat16 autocast (fp32 adds no code path)
            "--no-export",
        ]
    )
    assert rc == 0
    return out


def test_the_threshold_keeps_every_set_near_its_own_best() -> None:
    labels = {"a": np.array([1, 1, 0, 0]), "b": np.array([1, 0, 0, 0])}
    scores = {"a": np.array([0.9, 0.6, 0.25, 0.1]), "b": np.array([0.3, 0.2, 0.1, 0.05])}
    thr = balanced_threshold(labels, scores)
    # "a" is separated by anything in (0.25, 0.6], "b" by (0.2, 0.3]: both only in (0.25, 0.3]
    assert 0.25 < thr <= 0.3
    # a hard set (no threshold does well on it) does not drag the others to its own best
    labels["hard"] = np.array([1, 0, 1, 0])
    scores["hard"] = np.array([0.2, 0.22, 0.21, 0.23])
    assert 0.25 < balanced_threshold(labels, scores) <= 0.3
    labels = {"a": np.array([1, 0])}
    assert 0.2 < balanced_threshold(labels, {"a": np.array([0.7, 0.2])}) <= 0.7


def test_training_run_writes_checkpoints(trained: Path) -> None:
    for name in ("best.pt", "last.pt", "tokenizer.json", "history.json", "recipe.json"):
        assert (trained / name).is_file(), name
    history = json.loads((trained / "history.json").read_text())
    assert history[-1]["step"] == 6
    # every corpus is validated on its own (each word-timed corpus, written, commands, short)
    for key in ("sb", "ami", "e22", "written", "commands", "short"):
        assert 0.0 <= history[-1][f"{key}_val_auc"] <= 1.0, key
    # stage 2 (pause fine-tuning): two seeded runs of 3 steps each, evaluated, averaged
    for run in range(2):
        stage2 = json.loads((trained / f"stage2-run{run}" / "history_stage2.json").read_text())
        assert stage2[-1]["step"] == 3
        assert 0.0 <= stage2[-1]["sb_val_auc"] <= 1.0
    assert (trained / "averaged.pt").is_file()
    recipe = json.loads((trained / "recipe.json").read_text())
    assert recipe["train"]["precision"] == "bf16"
    ckpt = torch.load(trained / "averaged.pt", map_location="cpu", weights_only=False)
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())


def test_stage_one_continues_from_a_checkpoint(
    trained: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    small = ["--vocab", "300", "--d-model", "32", "--layers", "1", "--heads", "2", "--ff", "64"]
    common = ["--data", str(synthetic_data), *small, "--context", "32", "--val-points", "40"]
    common += ["--threads", "1", "--batch", "4", "--finetune-minutes", "0", "--no-export"]
    first = torch.load(trained / "last.pt", map_location="cpu", weights_only=False)
    rc = train_main(
        [
            *common,
            "--out",
            str(tmp_path),
            "--steps",
            "4",
            "--continue-from",
            str(trained / "last.pt"),
        ]
    )
    assert rc == 0
    more = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    # the weights moved on from the first run's, the tokenizer is the first run's, and the
    # step count runs on across both
    assert more["step"] == 4
    assert more["total_step"] == first["step"] + 4
    assert (tmp_path / "tokenizer.json").read_text() == (trained / "tokenizer.json").read_text()
    moved = [not torch.equal(more["model"][k], v) for k, v in first["model"].items()]
    assert any(moved)
    # a different model shape is refused by name, before anything trains
    with pytest.raises(ValueError, match="not the configured"):
        train_main(
            [
                *common,
                "--out",
                str(tmp_path / "x"),
                "--steps",
                "1",
                "--d-model",
                "48",
                "--continue-from",
                str(trained / "last.pt"),
            ]
        )
    assert (
        train_main(
            [
                *common,
                "--out",
                str(tmp_path / "y"),
                "--from-checkpoint",
                str(trained / "last.pt"),
                "--continue-from",
                str(trained / "last.pt"),
            ]
        )
        == 2
    )


def test_weight_average_tracks_and_swaps() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    avg = WeightAverage(net, 0.75)
    with torch.no_grad():
        net[0].weight.add_(4.0)
    avg.update()
    averaged = avg.state_dict()
    # 0.75 * start + 0.25 * (start + 4) = start + 1; the integer batch counter is not averaged
    assert torch.allclose(averaged["0.weight"], start["0.weight"] + 1.0)
    assert torch.equal(averaged["0.bias"], start["0.bias"])
    assert averaged["1.num_batches_tracked"].dtype == torch.long
    live = net[0].weight.detach().clone()
    with avg.swapped_in():
        assert torch.allclose(net[0].weight, start["0.weight"] + 1.0)
    assert torch.equal(net[0].weight, live)
    with pytest.raises(ValueError, match="ema decay"):
        WeightAverage(net, 1.0)


def test_orthogonalise_flattens_the_spectrum() -> None:
    gen = torch.Generator().manual_seed(0)
    # singular values spread over 2.5 orders of magnitude, tall and wide, one and a stack
    u, _ = torch.linalg.qr(torch.randn(48, 16, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    tall = u @ torch.diag(torch.logspace(-1.5, 1, 16)) @ v.T
    for g in (tall, tall.T):
        sv = torch.linalg.svdvals(orthogonalise(g))
        # the quintic iteration's band around 1, not exactly 1
        assert sv.min() > 0.65, sv
        assert sv.max() < 1.25, sv
    stack = torch.randn(3, 16, 40, generator=gen)
    one_by_one = torch.stack([orthogonalise(m) for m in stack])
    assert torch.allclose(orthogonalise(stack), one_by_one, atol=1e-6)


def test_muon_adamw_partitions_and_trains() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, context=16, d_model=32, layers=2, heads=2, ff=64)
    lm = build_model(cfg)
    opt = MuonAdamW(lm, lr=3e-3, weight_decay=0.05)
    muon, decay, no_decay = (g["params"] for g in opt.param_groups)
    names = {id(p): n for n, p in lm.named_parameters()}
    # Muon: the blocks' weight matrices; AdamW: embeddings (decayed), biases and norms
    assert sorted(names[id(p)] for p in muon) == sorted(
        n for n, p in lm.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2
    )
    assert {names[id(p)] for p in decay} == {"transformer.wte.weight", "transformer.wpe.weight"}
    assert all(p.dim() == 1 for p in no_decay)
    assert len(muon) + len(decay) + len(no_decay) == len(names)
    # one schedule: the AdamW half reads the same group dicts the training loop sets lr on
    assert opt.adamw.param_groups == opt.param_groups[1:]
    assert all(a is b for a, b in zip(opt.adamw.param_groups, opt.param_groups[1:], strict=True))
    x = torch.randint(1, 64, (8, 17), generator=torch.Generator().manual_seed(1))

    def loss() -> torch.Tensor:
        logits = lm(input_ids=x[:, :-1]).logits
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 64), x[:, 1:].reshape(-1))

    first = optimizer_step(opt, lm, loss())
    for _ in range(30):
        last = optimizer_step(opt, lm, loss())
    assert last < 0.6 * first  # it learns one batch by heart
    with pytest.raises(ValueError, match="optimizer must be"):
        TrainConfig(optimizer="sgd")


def test_precision_choices() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    lin, x = torch.nn.Linear(4, 4), torch.ones(2, 4)
    with autocast("bf16", cpu):
        assert lin(x).dtype == torch.bfloat16
    with autocast("fp32", cpu):
        assert lin(x).dtype == torch.float32
    for bad in (lambda: TrainConfig(precision="fp16"), lambda: FinetuneConfig(precision="half")):
        with pytest.raises(ValueError, match="precision must be one of"):
            bad()
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("tf32", cpu)


def test_bf16_autocast_step_learns_and_keeps_float32_weights() -> None:
    torch.manual_seed(0)
    lm = build_model(ModelConfig(vocab_size=64, context=16, d_model=32, layers=1, heads=2, ff=64))
    opt = make_optimizer(lm, lr=3e-3, weight_decay=0.0)
    boundary = torch.zeros(64, dtype=torch.bool)
    boundary[10:40] = True
    xy = torch.randint(5, 64, (8, 17), generator=torch.Generator().manual_seed(2))
    losses = []
    for _ in range(30):
        with autocast("bf16", torch.device("cpu")):
            loss, _, _ = lm_loss(lm, xy[:, :-1], xy[:, 1:], eot_id=4, boundary=boundary)
        assert loss.dtype == torch.float32  # the loss is computed from float32 logits
        losses.append(optimizer_step(opt, lm, loss))
    assert losses[-1] < 0.6 * losses[0]
    assert all(p.dtype == torch.float32 for p in lm.parameters())


def test_average_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)) for _ in range(3)]
    paths = []
    for i, net in enumerate(nets):
        paths.append(tmp_path / f"run{i}.pt")
        torch.save({"model": net.state_dict(), "model_config": {"i": i}}, paths[-1])
    out = average_checkpoints(paths, tmp_path / "averaged.pt")
    avg = torch.load(out, weights_only=False)
    expect = sum(n[0].weight.detach() for n in nets) / 3
    assert torch.allclose(avg["model"]["0.weight"], expect)
    assert avg["model"]["1.num_batches_tracked"].dtype == torch.long
    assert avg["model_config"] == {"i": 0}  # the rest of the checkpoint comes from the first
    assert avg["averaged"] == [str(p) for p in paths]
    torch.save({"model": {"other.weight": torch.zeros(1)}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="same weights"):
        average_checkpoints([paths[0], tmp_path / "odd.pt"], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="no checkpoints"):
        average_checkpoints([], tmp_path / "x.pt")


def test_onnx_matches_pytorch(trained: Path, synthetic_data: Path, tmp_path: Path) -> None:
    out = export_and_validate(
        trained / "best.pt",
        trained / "tokenizer.json",
        synthetic_data,
        tmp_path / "export",
        val_points=40,
    )
    cfg = json.loads((out / "config.json").read_text())
    # the shipped threshold is chosen on every corpus's val set at once
    for key in ("sb_val", "ami_val", "e22_val", "written_val", "commands_val"):
        assert 0.0 <= cfg["metrics"][f"{key}_balanced_accuracy"] <= 1.0, key
        assert key in cfg["threshold_rule"]
    assert cfg["metrics"]["onnx_fp32_max_abs_diff"] < 1e-4
    assert cfg["metrics"]["onnx_int8_max_abs_diff"] < 0.05
    # the stage-1 checkpoint beside it gives the card its step count
    assert cfg["stage1_steps"] == 6
    assert "6 stage-1 steps in all" in (out / "MODEL_CARD.md").read_text()
    from tokenizers import Tokenizer  # noqa: PLC0415

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    scorer, mcfg, _ = load_checkpoint(trained / "best.pt", tok.token_to_id("<|eot|>"))
    contexts = [
        [("user", "i want to")],
        [("agent", "Yes."), ("user", "the coffee please")],
        [("user", "uh " * 40)],
    ]
    assert cfg["read_tokens"] == mcfg.context - 1  # one position left for a pending word
    ids = encode_contexts(tok, contexts, cfg["read_tokens"], cfg["window_hop"])
    assert 1 < cfg["window_hop"] <= cfg["read_tokens"] // 2
    assert cfg["read_tokens"] - cfg["window_hop"] < len(ids[-1]) <= cfg["read_tokens"]
    ref = score_contexts(scorer, ids)
    np.testing.assert_allclose(_ort_scores(out / "model_fp32.onnx", ids, 0), ref, atol=1e-5)
    # the runtime reads the exported (int8) folder and agrees with PyTorch
    model = EndOfTurnModel.load(out)
    got = model.predict_many(
        [
            [{"role": "user" if r == "user" else "assistant", "content": t} for r, t in c]
            for c in contexts
        ],
        batch_size=1,
    )
    np.testing.assert_allclose(got, ref, atol=0.05)
    # "words pending" scores: the graph's one-position extension equals re-running every
    # candidate continuation through the full PyTorch model
    assert cfg["metrics"]["onnx_fp32_next_max_abs_diff"] < 1e-4
    assert cfg["metrics"]["onnx_int8_next_max_abs_diff"] < 0.05
    k = cfg["pending_candidates"]
    starts = word_start_mask(tok.get_vocab(), mcfg.vocab_size)
    short = [x[-(mcfg.context - 1) :] for x in ids]  # room for the word to come
    slow = pending_reference(scorer, short, starts, k)
    fast = _ort_scores(out / "model_fp32.onnx", short, 0, next_words=k)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    # another question: a different answer (relative, since a tiny model's P(eot) can be ~0.003)
    assert not np.allclose(slow, score_contexts(scorer, short), rtol=1e-2, atol=0)
    # the next-word part sits behind an If: with no candidates it is skipped, not run empty
    import onnx  # noqa: PLC0415

    nodes = onnx.load(str(out / "model.onnx")).graph.node
    (gate,) = [n for n in nodes if n.op_type == "If"]
    branches = {a.name: a.g for a in gate.attribute}
    assert len(branches["then_branch"].node) > 10 * mcfg.layers
    assert [n.op_type for n in branches["else_branch"].node] == ["Identity"]
    np.testing.assert_array_equal(
        _ort_scores(out / "model.onnx", short, 0, next_words=0),
        _ort_scores(out / "model.onnx", short, 0),
    )
    pending = model.predict_many(
        [[{"role": "user", "content": t} for _, t in c[-1:]] for c in contexts[:1]],
        words_pending=True,
    )
    np.testing.assert_allclose(pending, slow[:1], atol=0.05)
    # keys and values out and in: a prefix's `present` then the rest of the tokens scores
    # like the whole context at once (both outputs), and extends `present` exactly
    import onnxruntime as ort  # noqa: PLC0415

    sess = ort.InferenceSession(str(out / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    whole = short[-1]
    cut = len(whole) - 3

    def run(new: list[int], past: np.ndarray, total: int) -> list[np.ndarray]:
        feed = {
            "input_ids": np.asarray([new], dtype=np.int64),
            "attention_mask": np.ones((1, total), dtype=np.int64),
            "past": past,
            "next_slots": np.zeros(k, dtype=np.float32),
        }
        return list(sess.run(["p_eot", "p_eot_next", "present"], feed))

    cold = run(whole, empty_past(sess, 1), len(whole))
    head = run(whole[:cut], empty_past(sess, 1), cut)
    warm = run(whole[cut:], head[2], len(whole))
    heads = int(cfg["architecture"]["heads"])
    head_dim = int(cfg["architecture"]["d_model"]) // heads
    assert cold[2].shape == (mcfg.layers, 2, 1, heads, len(whole), head_dim)
    for w, c in zip(warm, cold, strict=True):
        np.testing.assert_allclose(w, c, atol=1e-5)
    np.testing.assert_array_equal(warm[2][..., :cut, :], head[2])
    # the runtime's stream reuses them and agrees with predict
    stream = model.stream()
    chat = [{"role": "user", "content": "the coffee please and"}]
    first = stream.predict(chat)
    assert first == pytest.approx(model.predict(chat), abs=1e-6)  # nothing cached: same run
    chat = [{"role": "user", "content": "the coffee please and a tea"}]
    assert stream.predict(chat) == pytest.approx(model.predict(chat), abs=0.05)
    assert stream.cached_tokens == len(model.encode(chat))


def _random_lm(cfg: ModelConfig, *, seed: int) -> GPT2LMHeadModel:
    """A seeded GPT-2 with non-trivial weights (the fresh init is nearly uniform)."""
    torch.manual_seed(seed)
    lm = build_model(cfg, attn="eager").eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return lm


@pytest.mark.parametrize("k", [0, 1, 6])
def test_next_word_marginal_equals_explicit_continuations(k: int) -> None:
    """``LastPositionScorer.score`` with K candidates: sum_w P(w) P(eot | prefix + w) over the
    K likeliest word-starting tokens, normalised; K = 0 leaves P(eot) itself unchanged."""
    lm = _random_lm(
        ModelConfig(vocab_size=120, context=24, d_model=32, layers=2, heads=4, ff=64), seed=k
    )
    starts = torch.zeros(120, dtype=torch.bool)
    starts[10::3] = True  # some ids start words, the rest are continuations or special
    last = LastPositionScorer(lm, 4, starts).eval()
    x = torch.randint(5, 120, (3, 12))
    m = torch.ones_like(x)
    m[1, :5] = 0  # left padding
    with torch.no_grad():
        p_now, marg, _ = last.score(x, m, torch.zeros(k))
        torch.testing.assert_close(p_now, EotScorer(lm, 4)(x, m), rtol=1e-5, atol=1e-6)
        assert marg is not None
        assert marg.shape == (3,)
        if k == 0:
            return
        for r in range(3):
            real = x[r : r + 1, int((m[r] == 0).sum()) :]
            want = pending_reference(EotScorer(lm, 4), [real[0].tolist()], starts, k)
            torch.testing.assert_close(float(marg[r]), float(want[0]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("split", [1, 5, 11])
def test_scorer_with_past_keys_and_values_equals_one_pass(split: int) -> None:
    """``score(rest, past=present of the prefix)`` == ``score(prefix + rest)``: both scores,
    and ``present`` holds the whole context's keys and values (left padding allowed)."""
    lm = _random_lm(
        ModelConfig(vocab_size=120, context=24, d_model=32, layers=3, heads=4, ff=64), seed=split
    )
    last = LastPositionScorer(lm, 4).eval()
    x = torch.randint(5, 120, (2, 12))
    m = torch.ones_like(x)
    m[1, :4] = 0  # left padding, inside the prefix for split > 4
    slots = torch.zeros(3)
    with torch.no_grad():
        p_all, n_all, kv_all = last.score(x, m, slots)
        _, _, kv_head = last.score(x[:, :split], m[:, :split], None)
        p_inc, n_inc, kv_inc = last.score(x[:, split:], m, slots, past=kv_head)
    assert kv_all.shape == (3, 2, 2, 4, 12, 8)
    assert n_all is not None
    assert n_inc is not None
    torch.testing.assert_close(p_inc, p_all, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(n_inc, n_all, rtol=1e-5, atol=1e-6)
    real = m.to(torch.bool)  # padding's keys and values are masked out: any value will do
    for r in range(2):
        torch.testing.assert_close(
            kv_inc[:, :, r, :, real[r]], kv_all[:, :, r, :, real[r]], rtol=1e-5, atol=1e-5
        )
    torch.testing.assert_close(p_all, EotScorer(lm, 4)(x, m), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers", [1, 3])
def test_last_position_scorer_equals_full_forward(layers: int) -> None:
    # The export graph computes the last block for the last position only: same P(eot).
    lm = _random_lm(
        ModelConfig(vocab_size=200, context=40, d_model=48, layers=layers, heads=4, ff=96),
        seed=layers,
    )
    full, last = EotScorer(lm, 4).eval(), LastPositionScorer(lm, 4).eval()
    x = torch.randint(5, 200, (4, 33))
    m = torch.ones_like(x)
    m[1, :10] = 0  # left padding of different widths
    m[2, :32] = 0
    with torch.no_grad():
        ref, got = full(x, m), last(x, m)
    assert float(ref.std()) > 1e-4  # the rows really differ
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    # padding is ignored: row 2 scores like its single real token alone
    with torch.no_grad():
        alone = last(x[2:3, 32:], m[2:3, 32:])
    torch.testing.assert_close(alone, got[2:3], rtol=1e-5, atol=1e-6)


def test_pause_windows_tokenise_like_the_runtime(trained: Path, synthetic_data: Path) -> None:
    """Stage 2's conversation windows: per-word ids concatenate to exactly the ids of the
    linearised conversation, END labels sit right before ``<|eot|>``, HOLD labels inside a
    turn, one label per pause of the scored speaker."""
    from tokenizers import Tokenizer  # noqa: PLC0415

    from caesura.eot._text import linearise  # noqa: PLC0415
    from caesura.train.finetune import pause_windows  # noqa: PLC0415

    tok = Tokenizer.from_file(str(trained / "tokenizer.json"))
    eot, user = tok.token_to_id("<|eot|>"), tok.token_to_id("<|user|>")
    convs = sb.load_conversations(synthetic_data / "eot" / "switchboard" / "train.tsv.gz")
    pw = pause_windows(convs, tok, seed=3)
    assert len(pw.ids) == len(convs)
    for conv, ids, lab in zip(convs, pw.ids, pw.labels, strict=True):
        turns = sb.conversation_turns(conv)
        markers = [int(i) for i in ids if i in (user, tok.token_to_id("<|agent|>"))]
        roles = ["user" if m == user else "agent" for m in markers]
        text = "<|endoftext|>" + linearise(
            [(r, t.text) for r, t in zip(roles, turns, strict=True)], close_last=True
        )
        assert ids.tolist() == tok.encode(text).ids
        scored = roles.index("user")
        speaker = turns[scored].speaker
        points = [p for p in sb.decision_points(conv, turns) if p.speaker == speaker]
        assert int((lab == 1).sum()) == sum(p.label == "END" for p in points) > 0
        assert int((lab == 0).sum()) == sum(p.label == "HOLD" for p in points) > 0
        assert all(ids[i + 1] == eot for i in np.flatnonzero(lab == 1))
        assert all(ids[i + 1] != eot for i in np.flatnonzero(lab == 0))
    x, y = pw.sample(np.random.default_rng(0), 4, 32, 8)
    assert x.shape == y.shape == (4, 32)
    assert bool(((y >= 0).sum(dim=1) >= 1).all())  # every window ends at a labelled pause


def test_switchboard_extraction(synthetic_data: Path) -> None:
    convs = sb.load_conversations(synthetic_data / "eot" / "switchboard" / "val.tsv.gz")
    assert len(convs) == 4
    points = list(sb.iter_points(convs))
    labels = {p.label for _, _, p in points}
    assert labels == {"END", "HOLD"}
    for _, turns, p in points:
        assert p.duration > 0
        vis = sb.visible_turns(turns, p)
        assert vis[-1][0] == "user"
        assert vis[-1][1].split()[-1] == turns[p.turn_index].words[p.word_index].text
        hidden = sb.visible_turns(turns, p, lag=10.0)
        assert len(" ".join(t for _, t in hidden)) <= len(" ".join(t for _, t in vis))


def test_clean_word_and_backchannels() -> None:
    assert sb.clean_word("[laughter-yes]") == "yes"
    assert sb.clean_word("thi[s]-") == "thi-"
    assert sb.clean_word("them_1") == "them"
    assert sb.clean_word("[noise]") == ""
    assert sb.clean_word("Texas") == "texas"
    w = sb.Word
    conv = sb.Conversation(
        "c",
        (
            w("A", 0.0, 0.5, "so"),
            w("A", 0.5, 1.0, "i"),
            w("B", 1.1, 1.4, "uh-huh"),
            w("A", 1.6, 2.0, "think"),
            w("A", 2.0, 2.4, "so"),
            w("B", 3.0, 3.5, "really"),
            w("B", 3.5, 4.0, "interesting"),
        ),
    )
    turns = sb.conversation_turns(conv)
    assert [t.speaker for t in turns] == ["A", "B"]
    points = sb.decision_points(conv, turns)
    assert [(p.label, round(p.start, 2)) for p in points] == [("HOLD", 1.0), ("END", 2.4)]


def test_text_styles() -> None:
    rng = random.Random(0)
    assert int_to_words(125) == "one hundred twenty five"
    assert words_to_digits("twenty five dollars and five five") == "25 dollars and 5 5"
    assert stt_style("Book it for 7, please!", rng, p_words=1.0) == "book it for seven please"
    assert stt_style("Book it for 7, please!", rng, p_words=0.0) == "book it for 7 please"


def test_encoding_reads_only_the_tail_yet_equals_the_whole(trained: Path) -> None:
    """encode_contexts tokenises only the end of a long context; the window read is the same."""
    from tokenizers import Tokenizer  # noqa: PLC0415

    from caesura.eot._text import linearise, read_window  # noqa: PLC0415

    tok = Tokenizer.from_file(str(trained / "tokenizer.json"))
    rng = random.Random(5)
    contexts = [
        [
            (role, " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 50))))
            for role in rng.choice([["user"], ["agent", "user"], ["user", "agent", "user"]])
        ]
        for _ in range(200)
    ]
    whole = [
        read_window(e.ids, 32, 1)
        for e in tok.encode_batch([linearise(c, close_last=False) for c in contexts])
    ]
    assert any(len(linearise(c, close_last=False).split()) > 40 for c in contexts)
    assert encode_contexts(tok, contexts, 32) == whole
