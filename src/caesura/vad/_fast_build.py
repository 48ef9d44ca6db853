"""Build the compact "fast" Silero graphs from the weights of ``silero_vad.onnx`` (dev time).

Run ``python -m caesura.vad._fast_build`` (needs the ``onnx`` package, not a runtime
dependency) to regenerate ``assets/silero_vad_fast_{16k,8k}.onnx``; then update the sha256
values in ``caesura/vad/_fast.py`` to the ones it prints.

Silero v6.2 per window (16 kHz; 8 kHz in brackets): input = 64 [32] context + 512 [256]
samples, reflect-padded by 64 [32] on the right; STFT as a strided convolution with a
258 [130]-row basis, window 256 [128], hop 128 [64] -> 4 frames; magnitude; four 3-tap
convolutions with ReLU (129 [65] -> 128 -> 64 (stride 2) -> 64 (stride 2) -> 128); an LSTM
cell (128 -> 128) whose (h, c) is the stream state; ReLU, 1x1 convolution, sigmoid.

The original graph wraps this in nested ``If`` nodes (sample rate, batch size, empty state)
and shape arithmetic that onnxruntime re-evaluates on every call; the compact graph keeps only
the arithmetic, with the same weights, and takes a whole block of T window steps for B
streams at once: the front end runs as one batch of T*B windows -- the STFT as one MatMul
over hop-sized blocks (frame t = block t and block t+1), the magnitude as ``ReduceL2``, each
3-tap convolution over the 4 (then 2, 1) frames as one Gemm with a block-Toeplitz matrix --
and the LSTM as one ``LSTM`` node over the T steps with per-stream ``sequence_lens``. Every
operation is a GEMM over rows, so onnxruntime computes each row independently of the batch.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build", "extract_weights", "main"]

ASSETS = Path(__file__).resolve().parent / "assets"
SOURCE = ASSETS / "silero_vad.onnx"

_GEOMETRY = {
    # rate: (window, context, pad, fft_window, hop)
    16000: (512, 64, 64, 256, 128),
    8000: (256, 32, 32, 128, 64),
}


def extract_weights(source: Path = SOURCE) -> dict[int, dict[str, np.ndarray]]:
    """The per-rate weights of the original graph (``then`` branch = 16 kHz)."""
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415

    model = onnx.load(str(source))
    if_node = next(n for n in model.graph.node if n.op_type == "If")
    out: dict[int, dict[str, np.ndarray]] = {}
    for attr in if_node.attribute:
        rate = 16000 if attr.name == "then_branch" else 8000
        weights: dict[str, np.ndarray] = {}
        for node in attr.g.node:
            if node.op_type != "Constant":
                continue
            name = node.output[0].split("__")[-1]
            if name.startswith(("stft.", "encoder.", "decoder.")):
                weights[name] = numpy_helper.to_array(node.attribute[0].t).copy()
        out[rate] = weights
    return out


def _lstm_weights(w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch gate order (i, f, g, o) -> ONNX order (i, o, f, c)."""

    def reorder(m: np.ndarray) -> np.ndarray:
        i, f, g, o = np.split(m, 4, axis=0)
        return np.concatenate([i, o, f, g], axis=0)

    wi = reorder(w["decoder.rnn.weight_ih"])[None]
    ri = reorder(w["decoder.rnn.weight_hh"])[None]
    bias = np.concatenate([reorder(w["decoder.rnn.bias_ih"]), reorder(w["decoder.rnn.bias_hh"])])[
        None
    ]
    return wi, ri, bias


def _toeplitz(w: np.ndarray, b: np.ndarray, t_in: int, stride: int) -> tuple[Any, Any, int]:
    """A 3-tap, pad-1 convolution over ``t_in`` time-major frames as one matrix.

    ``w`` [out, in, 3]; the input row is ``[t_in * in]`` (frame after frame), the output row
    ``[t_out * out]``. Taps that fall on the zero padding are simply absent.
    """
    c_out, c_in, taps = w.shape
    t_out = (t_in + 2 - taps) // stride + 1
    mat = np.zeros((t_in * c_in, t_out * c_out), dtype=np.float32)
    for to in range(t_out):
        for k in range(taps):
            ti = to * stride + k - 1
            if 0 <= ti < t_in:
                mat[ti * c_in : (ti + 1) * c_in, to * c_out : (to + 1) * c_out] = w[:, :, k].T
    return mat, np.tile(b, t_out).astype(np.float32), t_out


def build(rate: int, weights: dict[str, np.ndarray]) -> Any:
    """The compact graph for one rate as an ``onnx.ModelProto``.

    Inputs: ``input`` [T*B, L] (step-major: row t*B + b), ``seq_shape`` int64 [3] = [T, B, 128],
    ``h`` / ``c`` [1, B, 128], ``lengths`` int32 [B]. Outputs: ``output`` [T, 1, B, 1],
    ``h_n`` / ``c_n`` [1, B, 128] (the state after each stream's last valid step).
    """
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    window, context, pad, fft, hop = _GEOMETRY[rate]
    width = window + context
    blocks = (width + pad) // hop  # 5 blocks of one hop; frame t = blocks t and t + 1
    basis = weights["stft.forward_basis_buffer"][:, 0, :].astype(np.float32)  # [2F, fft]
    bins = basis.shape[0] // 2
    frames = blocks - 1
    wi, ri, bias = _lstm_weights(weights)
    inits: dict[str, np.ndarray] = {
        "pads": np.array([0, 0, 0, pad], dtype=np.int64),
        "blocks": np.array([-1, blocks, hop], dtype=np.int64),
        # frame t = block t @ basis[:, :hop].T + block t+1 @ basis[:, hop:].T
        "basis2": np.concatenate([basis[:, :hop].T, basis[:, hop:].T], axis=1).copy(),
        "a_start": np.array([0, 0], dtype=np.int64),
        "a_end": np.array([frames, 2 * bins], dtype=np.int64),
        "b_start": np.array([1, 2 * bins], dtype=np.int64),
        "b_end": np.array([blocks, 4 * bins], dtype=np.int64),
        "axes12": np.array([1, 2], dtype=np.int64),
        "reim": np.array([-1, frames, 2, bins], dtype=np.int64),
        "flat": np.array([-1, frames * bins], dtype=np.int64),
        "w_ih": wi.astype(np.float32),
        "w_hh": ri.astype(np.float32),
        "b_lstm": bias.astype(np.float32),
        "w_out": weights["decoder.decoder.2.weight"].reshape(1, 128).T.astype(np.float32).copy(),
        "b_out": weights["decoder.decoder.2.bias"].astype(np.float32),
    }
    assert fft == 2 * hop
    nodes = [
        helper.make_node("Pad", ["input", "pads"], ["x_pad"], mode="reflect"),  # [N, L + pad]
        helper.make_node("Reshape", ["x_pad", "blocks"], ["x_blocks"]),  # [N, 5, hop]
        helper.make_node("MatMul", ["x_blocks", "basis2"], ["half"]),  # [N, 5, 4F]
        helper.make_node("Slice", ["half", "a_start", "a_end", "axes12"], ["half_a"]),
        helper.make_node("Slice", ["half", "b_start", "b_end", "axes12"], ["half_b"]),
        helper.make_node("Add", ["half_a", "half_b"], ["spec"]),  # [N, 4, 2F]
        helper.make_node("Reshape", ["spec", "reim"], ["spec4"]),  # [N, 4, 2, F]
        helper.make_node("ReduceL2", ["spec4"], ["mag"], axes=[2], keepdims=0),  # [N, 4, F]
        helper.make_node("Reshape", ["mag", "flat"], ["enc_in"]),  # [N, 4F] time-major
    ]
    prev, t_in = "enc_in", frames
    for i, stride in enumerate((1, 2, 2, 1)):
        mat, b, t_in = _toeplitz(
            weights[f"encoder.{i}.reparam_conv.weight"].astype(np.float32),
            weights[f"encoder.{i}.reparam_conv.bias"].astype(np.float32),
            t_in,
            stride,
        )
        inits[f"enc{i}_w"], inits[f"enc{i}_b"] = mat, b
        nodes += [
            helper.make_node("Gemm", [prev, f"enc{i}_w", f"enc{i}_b"], [f"enc{i}"]),
            helper.make_node("Relu", [f"enc{i}"], [f"enc{i}_relu"]),
        ]
        prev = f"enc{i}_relu"
    assert t_in == 1
    nodes += [
        helper.make_node("Reshape", [prev, "seq_shape"], ["feats"]),  # [T, B, 128]
        helper.make_node(
            "LSTM",
            ["feats", "w_ih", "w_hh", "b_lstm", "lengths", "h", "c"],
            ["y", "h_n", "c_n"],
            hidden_size=128,
        ),  # y [T, 1, B, 128]
        helper.make_node("Relu", ["y"], ["y_relu"]),
        helper.make_node("MatMul", ["y_relu", "w_out"], ["logit0"]),
        helper.make_node("Add", ["logit0", "b_out"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["output"]),  # [T, 1, B, 1]
    ]
    graph = helper.make_graph(
        nodes,
        f"silero_vad_v6_2_fast_{rate // 1000}k",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width]),
            helper.make_tensor_value_info("seq_shape", TensorProto.INT64, [3]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "B", 128]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, "B", 128]),
            helper.make_tensor_value_info("lengths", TensorProto.INT32, ["B"]),
        ],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["T", 1, "B", 1]),
            helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [1, "B", 128]),
            helper.make_tensor_value_info("c_n", TensorProto.FLOAT, [1, "B", 128]),
        ],
        [numpy_helper.from_array(v, k) for k, v in sorted(inits.items())],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="caesura",
        doc_string=(
            "Silero VAD v6.2 (MIT, Silero Team) re-arranged by caesura/vad/_fast_build.py "
            "from silero_vad.onnx of the silero-vad 6.2.3 package"
        ),
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    """Write both graphs next to the source model and print their sha256."""
    del argv
    weights = extract_weights()
    for rate, w in sorted(weights.items(), reverse=True):
        data = build(rate, w).SerializeToString(deterministic=True)
        path = ASSETS / f"silero_vad_fast_{rate // 1000}k.onnx"
        path.write_bytes(data)
        print(f"{path.name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
