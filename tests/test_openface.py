"""OpenFace 2.x AU CSVs: both separators, AU mapping into the 21-AU vocabulary, onset..apex activity, bad files."""
from __future__ import annotations

import pytest

from mertool.data.aus import AU_VOCAB
from mertool.data.openface import aus_from_openface, read_openface_csv
from mertool.errors import MertoolError

# The 17 intensity and 18 presence AUs OpenFace 2.x writes, in its column order.
R_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
C_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)


def openface_csv(path, frames: dict[int, set[int]], sep: str = ", ", faces=(0,), success=None) -> str:
    """An OpenFace-shaped CSV: one row per frame (and face), AUxx_c = 1 for the AUs given for that frame."""
    header = ["frame", "face_id", "timestamp", "confidence", "success"] + \
        [f"AU{a:02d}_r" for a in R_AUS] + [f"AU{a:02d}_c" for a in C_AUS]
    lines = [sep.join(header)]
    for n, active in frames.items():
        for face in faces:
            ok = 1 if success is None else success.get(n, 1)
            row = [str(n), str(face), f"{(n - 1) / 30:.3f}", "0.98", str(ok)]
            row += [f"{2.5 if a in active else 0.0:.2f}" for a in R_AUS]
            row += [f"{1.0 if (a in active and face == 0) else 0.0:.1f}" for a in C_AUS]
            lines.append(sep.join(row))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("sep", [", ", ","], ids=["comma-space", "comma"])
def test_reads_both_separators_and_maps_aus(tmp_path, sep):
    f = openface_csv(tmp_path / "of.csv", {1: set(), 2: {12}, 3: {6, 12, 28}, 4: {6}}, sep=sep)
    of = read_openface_csv(f)
    assert of.aus == C_AUS and set(of.aus) <= set(AU_VOCAB)
    assert of.not_coded == (16, 18, 24)  # vocabulary AUs OpenFace does not code
    assert list(of.frames) == [1, 2, 3, 4]
    assert of.codes_between(1, 3) == (6, 12, 28)   # any frame from onset to apex
    assert of.codes_between(None, 2) == (12,)      # an image pair: the apex row
    assert of.codes_between(None, None) == (6,)    # default: the last row
    assert aus_from_openface(f, 1, 1) == ()


def test_other_faces_and_failed_frames_are_not_evidence(tmp_path):
    f = openface_csv(tmp_path / "of.csv", {1: {1, 2}, 2: {4}}, faces=(0, 1), success={2: 0})
    of = read_openface_csv(f)
    assert list(of.frames) == [1, 2]                 # face 1's rows are not read
    assert of.codes_between(1, 2) == (1, 2)          # frame 2 failed tracking: its AU4 does not count


def test_missing_columns_bad_rows_and_frames(tmp_path):
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("frame, face_id, timestamp, AU01_r\n1, 0, 0.0, 1.0\n")
    with pytest.raises(MertoolError, match=r"h\.csv: line 1: .*missing column\(s\) success, AU01_c"):
        read_openface_csv(bad_header)
    f = openface_csv(tmp_path / "of.csv", {1: {1}, 2: {2}})
    text = (tmp_path / "of.csv").read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join([text[0], text[1], "2, 0, 0.033"]) + "\n")
    with pytest.raises(MertoolError, match=r"short\.csv: line 3: 3 fields, the header has"):
        read_openface_csv(short)
    word = tmp_path / "word.csv"
    word.write_text("\n".join([text[0], text[1].replace("1.0", "yes", 1)]) + "\n")
    with pytest.raises(MertoolError, match=r"word\.csv: line 2: column AU\d\d_c = 'yes': expected a number"):
        read_openface_csv(word)
    with pytest.raises(MertoolError, match=r"of\.csv: frame 9 is not in the CSV \(frames 1\.\.2\)"):
        aus_from_openface(f, None, 9)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MertoolError, match="empty file"):
        read_openface_csv(empty)
    with pytest.raises(MertoolError, match="cannot read"):
        read_openface_csv(tmp_path / "absent.csv")
