"""``caesura segment`` at corpus scale, on Ray Data (``pip install 'caesura[ray]'``).

:func:`segment_dataset` takes a Ray Dataset of audio files -- a ``path`` column (local paths,
or URIs of any filesystem pyarrow opens: ``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ...),
optionally with a ``bytes`` column holding the files' contents, as
``ray.data.read_binary_files(..., include_paths=True)`` gives -- and returns a Dataset with one
row per file: the record ``caesura segment`` writes in its JSON ``files`` list, plus the JSON's
``caesura`` version and ``options``. Rows are built by the CLI's own code
(:func:`caesura.cli.segment_record`), so they are identical to ``caesura segment``'s output on
the same files; a file that cannot be read or segmented yields a row with its ``error``, never
a failed job.

The work runs in ``map_batches`` over a pool of actors, each loading one
:class:`~caesura.vad.model.SileroVAD` (one ONNX session, 1 thread) when it starts and
segmenting batch after batch with it. An actor that dies (its process is killed, its node is
lost) is restarted by Ray and the batch it was running is run again; Ray Data keeps only the
output of the attempt that finished, so every file is in the output exactly once.

``caesura segment PATH... --ray [ADDRESS]`` (:func:`run_cli`) runs the same from the shell
and writes JSONL (one record per line) or Parquet. The guide "Segment a corpus on Ray"
(docs/guides/ray.md) has the numbers and how it scales.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from caesura._version import __version__
from caesura.audio import AUDIO_SUFFIXES
from caesura.cli import SegmentOptions, _discover, output_is_dir, segment_record
from caesura.errors import InvalidOptionError, MissingDependencyError
from caesura.vad.model import SileroVAD

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

__all__ = [
    "RESULT_COLUMNS",
    "RayOptions",
    "SegmentOptions",
    "discover",
    "iter_records",
    "result_schema",
    "run_cli",
    "segment_dataset",
    "to_record",
]

logger = logging.getLogger(__name__)

#: The columns of :func:`segment_dataset`'s rows, in order: the fields of a file's record in
#: ``caesura segment``'s JSON (``error`` is null for a file that was segmented; the others are
#: null for one that failed), then the JSON's ``caesura`` version and ``options`` (as JSON text).
RESULT_COLUMNS = (
    "path",
    "sample_rate",
    "duration_s",
    "speech_s",
    "segments",
    "error",
    "caesura",
    "options",
)


@dataclass(frozen=True)
class RayOptions:
    """How :func:`segment_dataset` uses the cluster.

    ``workers``: actors in the pool, each holding one model and using ``cpus_per_worker`` CPUs
    (``None``: Ray scales the pool between 1 and the cluster's CPUs). ``batch_size``: files an
    actor segments per call; a batch is also what is run again when an actor dies, so keep it
    small for long files.
    """

    workers: int | None = None
    batch_size: int = 4
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise InvalidOptionError(f"workers must be >= 1 (or None), got {self.workers!r}")
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise InvalidOptionError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if not self.cpus_per_worker > 0:
            raise InvalidOptionError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker!r}")


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError("ray[data]", "ray", "segmenting on Ray") from exc


def result_schema() -> pa.Schema:
    """The Arrow schema of :func:`segment_dataset`'s rows (:data:`RESULT_COLUMNS`)."""
    pa = _require("pyarrow")
    segment = pa.struct(
        [
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("start_sample", pa.int64()),
            ("end_sample", pa.int64()),
        ]
    )
    types = {
        "path": pa.string(),
        "sample_rate": pa.int64(),
        "duration_s": pa.float64(),
        "speech_s": pa.float64(),
        "segments": pa.list_(segment),
        "error": pa.string(),
        "caesura": pa.string(),
        "options": pa.string(),
    }
    return pa.schema([(name, types[name]) for name in RESULT_COLUMNS])


def to_record(row: Mapping[str, Any], *, header: bool = False) -> dict[str, Any]:
    """A result row as ``caesura segment``'s JSON record of that file (null fields left out).

    ``header=True`` adds the JSON's ``caesura`` version and ``options`` (an object), the form of
    one line of ``caesura segment --ray``'s JSONL.
    """
    record = {
        k: row[k] for k in RESULT_COLUMNS[:6] if k in row and row[k] is not None
    }  # a failure keeps "path" and "error"; a success everything but "error"
    if "segments" in record:
        record["segments"] = [dict(s) for s in record["segments"]]
    if header:
        record["caesura"] = row["caesura"]
        record["options"] = json.loads(row["options"])
    return record


def _is_uri(path: str) -> bool:
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.isidentifier() and len(scheme) > 1


class _SegmenterBase:
    """A pool actor: one model, loaded once; segments batch after batch with it."""

    def __init__(self, options: SegmentOptions) -> None:
        self._options = options
        self._model = SileroVAD.load()
        self._options_json = json.dumps(options.json_options())
        self._schema = result_schema()
        self._pa = _require("pyarrow")
        self._fs = _require("pyarrow.fs")
        logger.debug("segmenting actor ready in pid %d", os.getpid())

    def _reader(self, uri: str) -> Callable[[], bytes]:
        def read() -> bytes:
            fs, path = self._fs.FileSystem.from_uri(uri)
            with fs.open_input_stream(path) as fh:
                return bytes(fh.read())

        return read

    def __call__(self, batch: pa.Table) -> pa.Table:
        if "path" not in batch.column_names:
            raise InvalidOptionError(
                f"segment_dataset needs a 'path' column, got columns {batch.column_names}"
            )
        paths = batch.column("path").to_pylist()
        has_bytes = "bytes" in batch.column_names
        blobs = batch.column("bytes").to_pylist() if has_bytes else [None] * len(paths)
        rows = []
        for path, blob in zip(paths, blobs, strict=True):
            name = str(path)
            data: bytes | Callable[[], bytes] | None = blob
            if data is None and _is_uri(name):
                data = self._reader(name)
            try:
                record = segment_record(name, self._options, model=self._model, data=data)
            except Exception as exc:  # a bug on one file must not fail the corpus
                logger.exception("segmenting %s failed", name)
                record = {"path": name, "error": f"internal error: {type(exc).__name__}: {exc}"}
            record["caesura"] = __version__
            record["options"] = self._options_json
            rows.append(record)
        return self._pa.Table.from_pylist(rows, schema=self._schema)


def _segmenter(options: SegmentOptions) -> type[_SegmenterBase]:
    """The actor class, the options built in: constructor arguments would live in Ray's object
    store, and an actor restarted after they were released hangs (ray-project/ray#53727)."""

    class _Segmenter(_SegmenterBase):
        def __init__(self) -> None:
            super().__init__(options)

    return _Segmenter


def segment_dataset(
    ds: Dataset,
    options: SegmentOptions | None = None,
    ray_options: RayOptions | None = None,
) -> Dataset:
    """Segment every file of ``ds``: one result row per input row (:data:`RESULT_COLUMNS`).

    ``ds`` has a ``path`` column (str) and optionally ``bytes`` (binary: the file's contents,
    then ``path`` only names it). A path without ``bytes`` is read by the actor: a local path
    (it must exist on the actor's node) or a URI pyarrow's filesystems open. ``options`` are
    ``caesura segment``'s (default: its defaults). Lazy, like every Ray Dataset: nothing runs
    until the result is consumed (``write_parquet``, ``iter_rows``, ...). Output order follows
    the input's only when ``DataContext.execution_options.preserve_order`` is set.
    """
    ray_data = _require("ray.data")
    opts = options if options is not None else SegmentOptions()
    ropts = ray_options if ray_options is not None else RayOptions()
    if ropts.workers is not None:
        compute = ray_data.ActorPoolStrategy(size=ropts.workers)
    else:
        cpus = max(1, int(_require("ray").cluster_resources().get("CPU", 1)))
        compute = ray_data.ActorPoolStrategy(min_size=1, max_size=cpus)
    result: Dataset = ds.map_batches(
        _segmenter(opts),
        batch_size=ropts.batch_size,
        batch_format="pyarrow",
        compute=compute,
        num_cpus=ropts.cpus_per_worker,
        # Ray Data's actor pools restart a dead actor and run its batch again by default
        # (max_restarts=-1, max_task_retries=-1); tests/ray/test_ray.py kills one to check
    )
    return result


# --------------------------------------------------------------------------------------------
# finding the files
# --------------------------------------------------------------------------------------------


def _discover_uri(uri: str) -> list[tuple[str, str | None]]:
    fs_mod = _require("pyarrow.fs")
    try:
        fs, root = fs_mod.FileSystem.from_uri(uri)
        info = fs.get_file_info(root)
        if info.type == fs_mod.FileType.File:
            return [(uri, None)]
        if info.type != fs_mod.FileType.Directory:
            return [(uri, "no such file or directory")]
        found = sorted(
            f.path
            for f in fs.get_file_info(fs_mod.FileSelector(root, recursive=True))
            if f.type == fs_mod.FileType.File and Path(f.path).suffix.lower() in AUDIO_SUFFIXES
        )
    except (OSError, ValueError) as exc:  # unknown scheme, no credentials, unreachable
        return [(uri, str(exc))]
    if not found:
        return [(uri, f"no {'/'.join(AUDIO_SUFFIXES)} files in this folder")]
    scheme = uri.partition("://")[0]
    return [(f"{scheme}://{p}", None) for p in found]


def discover(paths: Sequence[str], *, absolute: bool = False) -> list[tuple[str, str | None]]:
    """``caesura segment``'s inputs as ``(path, error)`` pairs, in its order.

    Local files and folders as the CLI finds them (folders recursively, each file once);
    URIs (``s3://bucket/prefix/``) through pyarrow's filesystems. ``error`` is set for a path
    that does not exist or a folder without audio files. ``absolute``: local paths made
    absolute (for a cluster whose workers do not share this process's working folder).
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for raw in paths:
        if _is_uri(raw) and not os.path.exists(raw):
            out.extend(_discover_uri(raw))
            continue
        inputs, _ = _discover([raw])
        for item in inputs:
            real = os.path.realpath(item.path)
            if item.error is None and real in seen:
                continue
            seen.add(real)
            name = os.path.abspath(item.path) if absolute else str(item.path)
            out.append((name, item.error))
    return out


# --------------------------------------------------------------------------------------------
# caesura segment --ray
# --------------------------------------------------------------------------------------------


def _records(
    inputs: Sequence[tuple[str, str | None]], results: Iterator[Mapping[str, Any]], opts_json: str
) -> Iterator[dict[str, Any]]:
    """Merge the cluster's rows (in input order) with the inputs that failed before it ran."""
    for path, error in inputs:
        if error is not None:
            yield {"path": path, "error": error, "caesura": __version__, "options": opts_json}
        else:
            yield dict(next(results))
    extra = next(results, None)  # also ends Ray's iterator before the cluster is shut down
    if extra is not None:
        raise RuntimeError(f"Ray returned a row for no input: {extra.get('path')!r}")


def _write_jsonl(records: Iterator[dict[str, Any]], out: TextIO) -> int:
    failed = 0
    for row in records:
        record = to_record(row, header=True)
        failed += "error" in record
        out.write(json.dumps(record) + "\n")
    return failed


def _write_parquet(records: Iterator[dict[str, Any]], target: Path) -> int:
    pa = _require("pyarrow")
    pq = _require("pyarrow.parquet")
    schema = result_schema()
    failed = 0
    chunk: list[dict[str, Any]] = []
    with pq.ParquetWriter(str(target), schema) as writer:
        for row in records:
            failed += row.get("error") is not None
            chunk.append(row)
            if len(chunk) >= 1024:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return failed


def _init_ray(address: str) -> bool:
    """Start (``"local"``) or join the cluster; True when this call connected."""
    ray = _require("ray")
    _require("ray.data")
    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return True


def iter_records(ds: Dataset) -> Iterator[dict[str, Any]]:
    """The rows of a result Dataset as plain Python dicts (lists and dicts, no numpy)."""
    for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from table.to_pylist()


def run_cli(args: argparse.Namespace, options: SegmentOptions) -> int:
    """``caesura segment --ray [ADDRESS]``: returns 0, or 1 when any input failed."""
    fmt = args.format
    if fmt is None:
        fmt = "parquet" if str(args.output or "").endswith(".parquet") else "jsonl"
    if fmt not in ("jsonl", "parquet"):
        raise InvalidOptionError(f"--ray writes -f jsonl or -f parquet, not -f {fmt}")
    if output_is_dir(args.output):
        raise InvalidOptionError("--ray writes one file: give -o FILE, not a folder")
    if fmt == "parquet" and args.output is None:
        raise InvalidOptionError("-f parquet needs -o FILE.parquet")
    ropts = RayOptions(
        workers=args.ray_workers,
        **({"batch_size": args.ray_batch_size} if args.ray_batch_size is not None else {}),
    )
    inputs = discover(args.paths, absolute=args.ray != "local")
    files = [path for path, error in inputs if error is None]
    for path, error in inputs:
        if error is not None:
            print(f"caesura segment: {path}: {error}", file=sys.stderr)

    connected = _init_ray(args.ray)
    try:
        ray_data = _require("ray.data")
        ctx = ray_data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows in the order of the inputs
        ctx.enable_progress_bars = not args.no_progress
        rows: Iterator[Mapping[str, Any]] = iter(())
        if files:
            ds = ray_data.from_items([{"path": p} for p in files])
            rows = iter_records(segment_dataset(ds, options, ropts))
        records = _records(inputs, rows, json.dumps(options.json_options()))
        if fmt == "parquet":
            target = Path(args.output)
            target.parent.mkdir(parents=True, exist_ok=True)
            failed = _write_parquet(records, target)
        elif args.output is None:
            failed = _write_jsonl(records, sys.stdout)
            sys.stdout.flush()
        else:
            target = Path(args.output)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", encoding="utf-8") as fh:
                failed = _write_jsonl(records, fh)
    finally:
        if connected:
            _require("ray").shutdown()
    if failed:
        print(f"caesura segment: {failed} of {len(inputs)} input(s) failed", file=sys.stderr)
        return 1
    return 0
