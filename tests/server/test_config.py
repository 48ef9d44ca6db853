"""Configuration, auth helpers, metrics rendering, CLI parsing (no server needed)."""

from __future__ import annotations

import argparse

import pytest

from caesura import cli as caesura_cli
from caesura.errors import InvalidOptionError
from caesura.server.auth import check_token, extract_token
from caesura.server.cli import add_serve_arguments, config_from_args
from caesura.server.config import (
    ServerConfig,
    StreamOptions,
    parse_listen,
    stream_options_from_query,
)
from caesura.server.metrics import Registry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9093", ("127.0.0.1", 9093)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        (":9093", ("0.0.0.0", 9093)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9093", ("::1", 9093)),
    ],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "9093", "host:", "host:abc", "host:70000", "::1:80"])
def test_parse_listen_bad(text):
    with pytest.raises(InvalidOptionError):
        parse_listen(text)


def test_env_and_flags():
    cfg = ServerConfig.from_env({"VAD_LISTEN": "0.0.0.0:9094", "CAESURA_TOKEN": "s3cret"})
    assert (cfg.host, cfg.port, cfg.token) == ("0.0.0.0", 9094, "s3cret")
    assert ServerConfig.from_env({}).listen == "127.0.0.1:9093"
    parser = add_serve_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--listen", "127.0.0.1:9999", "--min-silence-ms", "800"])
    cfg = config_from_args(args, env={"VAD_LISTEN": "0.0.0.0:1"})
    assert (cfg.host, cfg.port) == ("127.0.0.1", 9999)  # the flag wins over the environment
    assert cfg.stream.min_silence_ms == 800
    args = parser.parse_args([])
    assert config_from_args(args, env={"VAD_LISTEN": "0.0.0.0:1"}).port == 1


def _vad_flags(parser: argparse.ArgumentParser, title: str) -> dict[str, tuple[str, object]]:
    group = next(g for g in parser._action_groups if g.title == title)
    return {a.option_strings[0]: (a.dest, a.default) for a in group._group_actions}


def test_segment_and_serve_share_the_vad_flags():
    segment = argparse.ArgumentParser()
    caesura_cli.configure(segment)
    serve = add_serve_arguments(argparse.ArgumentParser())
    seg = _vad_flags(segment, "VAD options")
    srv = _vad_flags(serve, "realtime VAD defaults (clients may override per connection)")
    shared = {
        "--threshold": "threshold",
        "--neg-threshold": "neg_threshold",
        "--min-speech-ms": "min_speech_ms",
        "--min-silence-ms": "min_silence_ms",
        "--speech-pad-ms": "speech_pad_ms",
        "--max-speech-s": "max_speech_s",
    }
    for flags in (seg, srv):
        assert {flag: dest for flag, (dest, _) in flags.items() if flag in shared} == shared
    assert set(seg) - set(shared) == {"--compat"}
    assert set(srv) - set(shared) == {"--eot-threshold", "--no-turn"}
    # same names, per-command defaults: silero's offline ones vs the realtime server's
    assert seg["--min-silence-ms"][1] == 100
    assert srv["--min-silence-ms"][1] == StreamOptions().min_silence_ms == 600
    args = ["--threshold", "0.6", "--neg-threshold", "0.4", "--min-silence-ms", "700"]
    for parser in (segment, serve):
        ns = parser.parse_args([*args, "x.wav"] if parser is segment else args)
        assert (ns.threshold, ns.neg_threshold, ns.min_silence_ms) == (0.6, 0.4, 700.0)
    with pytest.raises(ValueError, match="no VAD flag"):
        caesura_cli.add_vad_options(
            argparse.ArgumentParser(),
            threshold=0.5,
            min_speech_ms=0,
            min_silence_ms=0,
            speech_pad_ms=0,
            max_speech_s=1,
            help_texts={"hangover": "typo"},
        )


def test_stream_options_from_query():
    base = StreamOptions()
    got = stream_options_from_query(base, {"threshold": "0.7", "turn": "false", "token": "x"})
    assert got.threshold == 0.7
    assert got.turn is False
    assert stream_options_from_query(base, {}) is base
    for bad in (
        {"threshold": "0"},
        {"threshold": "nan"},
        {"speed": "1"},
        {"min_silence_ms": "1e9"},
        {"include_samples": "2"},
    ):
        with pytest.raises(InvalidOptionError):
            stream_options_from_query(base, bad)


def test_server_config_validation():
    with pytest.raises(InvalidOptionError):
        ServerConfig(max_batch=0)
    with pytest.raises(InvalidOptionError):
        ServerConfig(token="")
    with pytest.raises(InvalidOptionError):
        ServerConfig(port=70000)


def test_auth_helpers():
    assert extract_token({"authorization": "Bearer abc"}) == "abc"
    assert extract_token({"authorization": "bearer  abc "}) == "abc"
    assert extract_token({"authorization": "Basic abc"}, {"token": "x"}) is None
    assert extract_token({}, {"token": "q"}) == "q"
    assert extract_token({}, {"access_token": "q"}) == "q"
    assert check_token(None, None)
    assert check_token("abc", "abc")
    assert not check_token("abc", "abd")
    assert not check_token("abc", None)


def test_metrics_exposition():
    r = Registry()
    c = r.counter("x_total", "Things.", ("kind",))
    c.inc(kind='a"b')
    c.inc(2, kind="c")
    g = r.gauge("y", "A gauge.")
    g.set(1.5)
    h = r.histogram("z_seconds", "Times.", (0.1, 1.0))
    h.observe(0.05)
    h.observe(5)
    text = r.render()
    assert '# TYPE x_total counter\nx_total{kind="a\\"b"} 1\nx_total{kind="c"} 2\n' in text
    assert "y 1.5\n" in text
    assert 'z_seconds_bucket{le="0.1"} 1\nz_seconds_bucket{le="1"} 1\n' in text
    assert 'z_seconds_bucket{le="+Inf"} 2\nz_seconds_sum 5.05\nz_seconds_count 2\n' in text
    with pytest.raises(ValueError, match="only goes up"):
        c.inc(-1, kind="a")
