"""A tiny Prometheus registry rendering the text exposition format (version 0.0.4).

Written here rather than depending on ``prometheus_client``: the server needs a handful of
counters, gauges and histograms, all updated from the event loop thread (the batched
inference worker reports its timings back on the loop), so no locking and no extra package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
    "ServerMetrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _fmt_value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)

    def _key(self, labels: dict[str, str]) -> Labels:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {sorted(labels)}")
        return tuple((k, str(labels[k])) for k in self.label_names)

    def samples(self) -> Iterable[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(_Metric):
    """A monotonically increasing value, optionally per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def set_total(self, total: float, **labels: str) -> None:
        """Copy in a total counted elsewhere (a hot-path plain int); never goes down."""
        key = self._key(labels)
        self._values[key] = max(self._values.get(key, 0.0), float(total))

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        for key, v in sorted(self._values.items()):
            yield f"{self.name}{_fmt_labels(key)} {_fmt_value(v)}"


class Gauge(_Metric):
    """A value that goes up and down; ``fn`` makes it computed at scrape time."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        fn: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {}
        self._fn = fn
        if not self.label_names:
            self._values[()] = 0.0

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: str) -> float:
        if self._fn is not None:
            return float(self._fn())
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        if self._fn is not None:
            yield f"{self.name} {_fmt_value(float(self._fn()))}"
            return
        for key, v in sorted(self._values.items()):
            yield f"{self.name}{_fmt_labels(key)} {_fmt_value(v)}"


class Histogram(_Metric):
    """Cumulative buckets + ``_sum`` + ``_count`` (no labels)."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        bs = sorted(float(b) for b in buckets)
        if not bs or bs[-1] != math.inf:
            bs.append(math.inf)
        self.buckets = tuple(bs)
        self._counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        v = float(value)
        for i, b in enumerate(self.buckets):
            if v <= b:
                self._counts[i] += 1
                break
        self.sum += v
        self.count += 1

    def samples(self) -> Iterable[str]:
        acc = 0
        for b, c in zip(self.buckets, self._counts, strict=True):
            acc += c
            yield f'{self.name}_bucket{{le="{_fmt_value(b)}"}} {acc}'
        yield f"{self.name}_sum {_fmt_value(self.sum)}"
        yield f"{self.name}_count {self.count}"


class Registry:
    """Metrics in registration order; :meth:`render` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} already registered")
        self._metrics[metric.name] = metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        m = Counter(name, help_text, labels)
        self.register(m)
        return m

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        fn: Callable[[], float] | None = None,
    ) -> Gauge:
        m = Gauge(name, help_text, labels, fn)
        self.register(m)
        return m

    def histogram(self, name: str, help_text: str, buckets: Sequence[float]) -> Histogram:
        m = Histogram(name, help_text, buckets)
        self.register(m)
        return m

    def render(self) -> str:
        return "".join(m.render() for m in self._metrics.values())


_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    """The metrics ``caesura serve`` exports (all names prefixed ``caesura_``)."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.http_requests = r.counter(
            "caesura_http_requests_total", "HTTP requests by route and status.", ("route", "status")
        )
        self.http_seconds = r.histogram(
            "caesura_http_request_seconds", "HTTP request handling time.", _LATENCY_BUCKETS
        )
        self.ws_sessions = r.gauge("caesura_ws_sessions", "Open realtime WebSocket sessions.")
        self.ws_sessions_total = r.counter(
            "caesura_ws_sessions_total", "Realtime WebSocket sessions accepted."
        )
        self.ws_rejected = r.counter(
            "caesura_ws_rejected_total", "Realtime sessions refused, by reason.", ("reason",)
        )
        self.ws_messages = r.counter(
            "caesura_ws_messages_total", "WebSocket messages received, by kind.", ("kind",)
        )
        self.audio_seconds = r.counter(
            "caesura_audio_seconds_total", "Seconds of audio received over WebSockets."
        )
        self.events = r.counter(
            "caesura_events_total", "Events sent to realtime clients, by event.", ("event",)
        )
        self.errors = r.counter(
            "caesura_errors_total", "Errors reported to clients, by error code.", ("error",)
        )
        self.windows = r.counter("caesura_vad_windows_total", "VAD windows inferred.")
        self.batches = r.counter("caesura_vad_batches_total", "Batched VAD inferences run.")
        self.batch_size = r.histogram(
            "caesura_vad_batch_size",
            "Windows per batched inference.",
            (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.batch_seconds = r.histogram(
            "caesura_vad_batch_seconds", "Time of one batched inference.", _LATENCY_BUCKETS
        )
        self.window_wait_seconds = r.histogram(
            "caesura_vad_window_latency_seconds",
            "From a window being complete to its probability being known.",
            _LATENCY_BUCKETS,
        )
        self.pending_windows = r.gauge(
            "caesura_vad_pending_windows", "Windows waiting for inference, all sessions."
        )
        self.backpressure = r.counter(
            "caesura_backpressure_total", "Times a session's reader paused on a full queue."
        )
        self.eot_predictions = r.counter(
            "caesura_eot_predictions_total", "End-of-turn predictions run."
        )
        self.eot_seconds = r.histogram(
            "caesura_eot_seconds", "Time of one end-of-turn prediction.", _LATENCY_BUCKETS
        )
        self.offline_jobs = r.gauge(
            "caesura_offline_jobs", "POST /v1/audio/vad jobs running or queued."
        )

    def render(self) -> str:
        return self.registry.render()
