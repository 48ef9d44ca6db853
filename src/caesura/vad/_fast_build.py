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
streams at once. The front end runs as one batch of T*B windows:

* STFT: the padded window is cut into 5 hop-sized blocks; frame t is blocks t and t + 1 side by
  side (two Slices and a Concat), and one MatMul with the basis gives all 4 frames;
* magnitude: ``ReduceL2`` over (real, imaginary);
* first convolution (129 -> 128, 3 taps, the largest layer): one Gemm of every frame with the
  three taps side by side (``[129, 3*128]``, the weights once, not once per frame), then a
  constant 0/1 MatMul that adds tap k of frame t + k - 1 into output frame t (exact: it only
  adds values, in a fixed order, to zeros);
* the small strided convolutions over 4 -> 2 -> 1 frames: one Gemm each with a block-Toeplitz
  matrix (taps on the zero padding are simply absent);

then the LSTM as one ``LSTM`` node over the T steps with per-stream ``sequence_lens``, and the
output layer as one Gemm + Sigmoid over all T*B rows. Every operation works row by row (a GEMM
over rows or an elementwise op), so onnxruntime computes each row independently of the batch
and of T: batched and chunked runs are bit-identical to one window at a time.
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


def _conv_taps(w: np.ndarray, b: np.ndarray, t_in: int) -> tuple[Any, Any, Any]:
    """A 3-tap, pad-1, stride-1 convolution as a Gemm over frames plus a 0/1 combining matrix.

    ``w`` [out, in, 3]. Returns the Gemm weight ``[in, 3 * out]`` (tap k in columns
    ``k*out:(k+1)*out``), its bias (the convolution bias on the middle tap only: every output
    frame gets exactly one middle tap) and ``S`` ``[t_out, 3 * t_in]``: output frame t is the
    sum of row ``3 * ti + k`` of the Gemm output (frame ti, tap k) over ``ti = t + k - 1``.
    """
    c_out = w.shape[0]
    mat = np.concatenate([w[:, :, k].T for k in range(3)], axis=1).astype(np.float32)
    zeros = np.zeros(c_out, dtype=np.float32)
    bias = np.concatenate([zeros, b.astype(np.float32), zeros])
    comb = np.zeros((t_in, 3 * t_in), dtype=np.float32)
    for to in range(t_in):
        for k in range(3):
            ti = to + k - 1
            if 0 <= ti < t_in:
                comb[to, 3 * ti + k] = 1.0
    return mat.copy(), bias, comb


def build(rate: int, weights: dict[str, np.ndarray]) -> Any:
    """The compact graph for one rate as an ``onnx.ModelProto``.

    Inputs: ``input`` [T*B, L] (step-major: row t*B + b), ``seq_shape`` int64 [3] = [T, B, 128],
    ``h`` / ``c`` [1, B, 128], ``lengths`` int32 [B]. Outputs: ``output`` [T*B, 1],
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
    assert fft == 2 * hop
    wi, ri, bias = _lstm_weights(weights)
    w0, b0, comb0 = _conv_taps(
        weights["encoder.0.reparam_conv.weight"].astype(np.float32),
        weights["encoder.0.reparam_conv.bias"].astype(np.float32),
        frames,
    )
    c0 = w0.shape[1] // 3
    inits: dict[str, np.ndarray] = {
        "pads": np.array([0, 0, 0, pad], dtype=np.int64),
        "blocks": np.array([-1, blocks, hop], dtype=np.int64),
        "one": np.array([1], dtype=np.int64),
        "frames": np.array([frames], dtype=np.int64),
        "nblocks": np.array([blocks], dtype=np.int64),
        "zero": np.array([0], dtype=np.int64),
        "basis_t": basis.T.copy(),  # [fft, 2F]
        "reim": np.array([-1, frames, 2, bins], dtype=np.int64),
        "bins_rows": np.array([-1, bins], dtype=np.int64),
        "enc0_w": w0,
        "enc0_b": b0,
        "enc0_taps": np.array([-1, 3 * frames, c0], dtype=np.int64),
        "enc0_comb": comb0,
        "rows128": np.array([-1, 128], dtype=np.int64),
        "w_ih": wi.astype(np.float32),
        "w_hh": ri.astype(np.float32),
        "b_lstm": bias.astype(np.float32),
        "w_out": weights["decoder.decoder.2.weight"].reshape(1, 128).T.astype(np.float32).copy(),
        "b_out": weights["decoder.decoder.2.bias"].astype(np.float32),
    }
    nodes = [
        helper.make_node("Pad", ["input", "pads"], ["x_pad"], mode="reflect"),  # [N, L + pad]
        helper.make_node("Reshape", ["x_pad", "blocks"], ["x_blocks"]),  # [N, 5, hop]
        helper.make_node("Slice", ["x_blocks", "zero", "frames", "one"], ["first"]),
        helper.make_node("Slice", ["x_blocks", "one", "nblocks", "one"], ["second"]),
        helper.make_node("Concat", ["first", "second"], ["x_frames"], axis=2),  # [N, 4, fft]
        helper.make_node("MatMul", ["x_frames", "basis_t"], ["spec"]),  # [N, 4, 2F]
        helper.make_node("Reshape", ["spec", "reim"], ["spec4"]),  # [N, 4, 2, F]
        helper.make_node("ReduceL2", ["spec4"], ["mag"], axes=[2], keepdims=0),  # [N, 4, F]
        helper.make_node("Reshape", ["mag", "bins_rows"], ["mag_rows"]),  # [N*4, F]
        helper.make_node("Gemm", ["mag_rows", "enc0_w", "enc0_b"], ["enc0_y"]),  # [N*4, 3*128]
        helper.make_node("Reshape", ["enc0_y", "enc0_taps"], ["enc0_t"]),  # [N, 12, 128]
        helper.make_node("MatMul", ["enc0_comb", "enc0_t"], ["enc0"]),  # [N, 4, 128]
        helper.make_node("Relu", ["enc0"], ["enc0_relu"]),
    ]
    inits["enc0_flat"] = np.array([-1, frames * c0], dtype=np.int64)
    nodes.append(helper.make_node("Reshape", ["enc0_relu", "enc0_flat"], ["enc0_rows"]))
    prev, t_in = "enc0_rows", frames
    for i, stride in ((1, 2), (2, 2), (3, 1)):
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
        helper.make_node("Reshape", ["y_relu", "rows128"], ["y_rows"]),  # [T*B, 128]
        helper.make_node("Gemm", ["y_rows", "w_out", "b_out"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["output"]),  # [T*B, 1]
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
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1]),
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
