"""Label readers: RTTM, Audacity label files, CSV -- and clear errors for bad or missing files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caesura.errors import CaesuraError, LabelFileError
from caesura.labels import (
    LabelSegment,
    detect_label_format,
    read_audacity,
    read_csv_labels,
    read_labels,
    read_rttm,
    speech_regions,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------ RTTM


def test_rttm_fixture(fixtures_dir: Path) -> None:
    labels = read_rttm(fixtures_dir / "ami_sample.rttm")
    assert labels.format == "rttm"
    assert labels.uris == ["sample"]
    first = labels.segments[0]
    assert first.uri == "sample"
    assert first.start == pytest.approx(6.690)
    assert first.end == pytest.approx(6.690 + 0.430)
    assert first.label == "speaker90"
    assert first.line == 1
    regions = speech_regions(labels.for_recording("sample"))
    assert regions.shape[1] == 2
    assert np.all(np.diff(regions[:, 0]) > 0)  # sorted and disjoint
    assert np.all(regions[1:, 0] > regions[:-1, 1])
    # overlapping speakers are merged: 18.05-21.49 and 18.15-18.59 are one region
    assert any(a == pytest.approx(18.05) and b == pytest.approx(21.49) for a, b in regions)


def test_rttm_many_recordings_and_other_record_types(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "ref.rttm",
        ";; comment\n"
        "SPKR-INFO a 1 <NA> <NA> <NA> unknown spk1 <NA> <NA>\n"
        "SPEAKER a 1 0.5 1.0 <NA> <NA> spk1 <NA> <NA>\n"
        "\n"
        "SPEAKER b 1 2.0 0.25 <NA> <NA> spk2 <NA> <NA>\n",
    )
    labels = read_labels(p)
    assert labels.uris == ["a", "b"]
    assert [s.line for s in labels.segments] == [3, 5]
    assert [(s.start, s.end) for s in labels.for_recording("b")] == [(2.0, 2.25)]
    assert labels.for_recording("c") == []


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("SPEAKER a 1 x 1.0 <NA> <NA> s <NA> <NA>", "onset 'x' is not a number"),
        ("SPEAKER a 1 1.0 -2 <NA> <NA> s <NA> <NA>", "duration must be >= 0"),
        ("SPEAKER a 1", "expected at least 5"),
        ("SPEEKER a 1 0 1 <NA> <NA> s <NA> <NA>", "unknown RTTM record type"),
        ("SPEAKER a 1 nan 1 <NA> <NA> s <NA> <NA>", "must be finite"),
    ],
)
def test_rttm_bad_line_names_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    p = write(tmp_path, "bad.rttm", "SPEAKER a 1 0.0 1.0 <NA> <NA> s <NA> <NA>\n" + line + "\n")
    with pytest.raises(LabelFileError, match=needle) as info:
        read_rttm(p)
    assert f"{p}:2:" in str(info.value)
    assert info.value.line == 2
    assert info.value.path == p


# -------------------------------------------------------------------------------- Audacity


def test_audacity_labels(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "labels.txt",
        "0.500000\t1.250000\thello there\n"
        "\\\t100.0\t4000.0\n"  # spectral selection line
        "2.000000\t3.000000\n"  # no label text
        "3.500000\t3.500000\tpoint\n",
    )
    labels = read_labels(p)
    assert labels.format == "audacity"
    assert [(s.start, s.end, s.label) for s in labels.segments] == [
        (0.5, 1.25, "hello there"),
        (2.0, 3.0, "speech"),
        (3.5, 3.5, "point"),
    ]
    assert labels.uris == []
    # a point label carries no speech
    np.testing.assert_allclose(speech_regions(labels.segments), [[0.5, 1.25], [2.0, 3.0]])


def test_audacity_bad_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "labels.txt", "0.5\t1.0\tok\n2.0\t1.5\tbackwards\n")
    with pytest.raises(LabelFileError, match=r"labels\.txt:2: end 1\.5 s is before start 2 s"):
        read_audacity(p)
    p = write(tmp_path, "labels2.txt", "0.5\t1.0\tok\njunk\n")
    with pytest.raises(LabelFileError, match=r"labels2\.txt:2: expected 'start<TAB>end"):
        read_audacity(p)


# ------------------------------------------------------------------------------------- CSV


def test_csv_without_header(tmp_path: Path) -> None:
    p = write(tmp_path, "ref.csv", "0.5,1.0\n2,3.25,extra\n")
    labels = read_labels(p)
    assert labels.format == "csv"
    assert [(s.start, s.end) for s in labels.segments] == [(0.5, 1.0), (2.0, 3.25)]


def test_csv_with_header_columns_by_name(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "ref.csv",
        "file,label,end_s,start_s\n/data/rec1.wav,spk,1.5,0.5\nrec2.wav,,4,3\n",
    )
    labels = read_csv_labels(p)
    assert labels.uris == ["rec1", "rec2"]
    assert [(s.uri, s.start, s.end, s.label) for s in labels.segments] == [
        ("rec1", 0.5, 1.5, "spk"),
        ("rec2", 3.0, 4.0, "speech"),
    ]


def test_csv_semicolon_delimiter(tmp_path: Path) -> None:
    p = write(tmp_path, "ref.csv", "start;end\n0,1\n")  # header decides the delimiter
    with pytest.raises(LabelFileError, match=r"ref\.csv:2: expected at least 2 column"):
        read_csv_labels(p)
    p = write(tmp_path, "ok.csv", "start;end\n0;1\n1.5;2\n")
    assert len(read_csv_labels(p)) == 2


def test_csv_bad_header_and_values(tmp_path: Path) -> None:
    p = write(tmp_path, "h.csv", "begin,until\n0,1\n")
    with pytest.raises(LabelFileError, match=r"h\.csv:1: header .* has no end column"):
        read_csv_labels(p)
    p = write(tmp_path, "v.csv", "start,end\n0,1\n1,abc\n")
    with pytest.raises(LabelFileError, match=r"v\.csv:3: end 'abc' is not a number"):
        read_csv_labels(p)
    p = write(tmp_path, "n.csv", "start,end\n-1,1\n")
    with pytest.raises(LabelFileError, match=r"n\.csv:2: start must be >= 0"):
        read_csv_labels(p)


# ----------------------------------------------------------------------- missing / bad files


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.rttm"
    with pytest.raises(LabelFileError, match="labels file not found") as info:
        read_labels(missing)
    assert str(missing) in str(info.value)
    # the error belongs to caesura's hierarchy and is a ValueError
    assert isinstance(info.value, CaesuraError)
    assert isinstance(info.value, ValueError)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="is a directory"):
        read_labels(tmp_path)


@pytest.mark.parametrize("name", ["empty.rttm", "empty.csv", "empty.txt"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    p = write(tmp_path, name, "")
    with pytest.raises(LabelFileError, match=str(p.name)):
        read_labels(p)


def test_rttm_with_comments_only_has_no_segments(tmp_path: Path) -> None:
    p = write(tmp_path, "c.rttm", ";; nothing here\n")
    with pytest.raises(LabelFileError, match="no speech segments"):
        read_labels(p)


def test_binary_file(tmp_path: Path, fixtures_dir: Path) -> None:
    p = tmp_path / "audio.rttm"
    p.write_bytes((fixtures_dir / "ami_sample_16k.wav").read_bytes()[:2000])
    with pytest.raises(LabelFileError, match=r"audio\.rttm"):
        read_labels(p)


def test_unknown_format_and_undetectable(tmp_path: Path) -> None:
    p = write(tmp_path, "x.lab", "hello world\n")
    with pytest.raises(LabelFileError, match="cannot tell the label format"):
        detect_label_format(p)
    with pytest.raises(LabelFileError, match="unknown label format 'textgrid'"):
        read_labels(p, format="textgrid")


def test_detect_format_by_content(tmp_path: Path) -> None:
    assert detect_label_format(write(tmp_path, "a.txt", "SPEAKER x 1 0 1\n")) == "rttm"
    assert detect_label_format(write(tmp_path, "b.txt", "0\t1\tx\n")) == "audacity"
    assert detect_label_format(write(tmp_path, "c.txt", "start,end\n0,1\n")) == "csv"
    assert detect_label_format(write(tmp_path, "d.txt", "0 1 x\n")) == "audacity"


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    p = write(tmp_path, "ref.txt", "SPEAKER r 1 0 1 <NA> <NA> s <NA> <NA>\n")
    assert read_labels(p, format="rttm").uris == ["r"]
    with pytest.raises(LabelFileError, match=r"ref\.txt:1: expected at least 2 columns"):
        read_labels(p, format="csv")


def test_speech_regions_merge_and_clip() -> None:
    segs = [LabelSegment(2.0, 3.0), LabelSegment(0.0, 1.0), LabelSegment(0.5, 1.5)]
    np.testing.assert_allclose(speech_regions(segs), [[0.0, 1.5], [2.0, 3.0]])
    np.testing.assert_allclose(speech_regions([(0.0, 5.0)], duration=2.0), [[0.0, 2.0]])
    assert speech_regions([]).shape == (0, 2)
