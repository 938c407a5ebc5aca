"""The validator against a generated corpus: valid samples of every allowed type pass, every attack is
refused with its reason (the samples and the corpus are built in tests/file_samples.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from storage.kinds import KINDS
from storage.names import ascii_fallback, check_name
from storage.rejections import REASONS, Rejected
from storage.validation import Facts, validate
from tests.file_samples import attack_corpus, jpeg_bytes, valid_samples


def write_sample(directory: Path, data: bytes) -> Path:
    path = directory / "upload.bin"
    path.write_bytes(data)
    return path


# ---- tests --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, data, kind", valid_samples(), ids=lambda v: v if isinstance(v, str) else "")
def test_valid_samples_pass(tmp_path, name, data, kind):
    verdict = validate(write_sample(tmp_path, data), KINDS[kind], name)
    assert verdict.size == len(data)
    assert len(verdict.sha256) == 64
    if kind == "recording":
        assert verdict.details["duration_seconds"] > 0
    if verdict.content_type.startswith("image/"):
        assert verdict.details["width"] > 0 and verdict.details["height"] > 0


CORPUS = attack_corpus()


@pytest.mark.parametrize("case, name, data, kind, code", CORPUS, ids=[c[0] for c in CORPUS])
def test_attack_corpus_is_refused_with_its_reason(tmp_path, case, name, data, kind, code):
    facts = Facts()
    with pytest.raises(Rejected) as refused:
        validate(write_sample(tmp_path, data), KINDS[kind], name, facts)
    assert refused.value.code == code, (case, refused.value.message)
    assert refused.value.message.startswith(REASONS[code])


def test_oversized_file_is_refused_by_the_worker_too(tmp_path):
    path = tmp_path / "big.jpg"
    with open(path, "wb") as f:
        f.truncate(KINDS["bso"].max_bytes + 1)
    with pytest.raises(Rejected) as refused:
        validate(path, KINDS["bso"], "big.jpg")
    assert refused.value.code == "too_large"


def test_motion_photo_style_appended_jpegs_are_accepted(tmp_path):
    """Phones append previews and depth maps as further JPEGs (MPO); that is not a polyglot."""
    data = jpeg_bytes() + jpeg_bytes(16, 16) + b"\x00" * 10
    assert validate(write_sample(tmp_path, data), KINDS["bso"], "IMG_0001.jpg").content_type == "image/jpeg"


def test_every_reason_is_russian_text():
    for code, message in REASONS.items():
        assert any("а" <= ch <= "я" for ch in message.lower()), code


@pytest.mark.parametrize("name, shown", [
    ("Чек №5 от 01.02.jpg", "Чек №5 от 01.02.jpg"),
    ("scan.final.PDF", "scan.final.PDF"),
    ("e\u0301.png", "\u00e9.png"),  # decomposed accents are composed (NFC)
])
def test_ordinary_names_are_kept(name, shown):
    assert check_name(name)[0] == shown


def test_ascii_fallback_of_names():
    assert ascii_fallback("Чек.jpg") == "file.jpg"
    assert ascii_fallback("report 2024.pdf") == "report 2024.pdf"
    assert '"' not in ascii_fallback('a"b.pdf') and "\n" not in ascii_fallback("a\nb.pdf")
