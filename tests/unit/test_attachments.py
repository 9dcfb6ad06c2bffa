"""Attachment files: stored by content hash, once, within the allowed types and size."""
import hashlib

import pytest

from helpdesk.common.errors import NotFound, ValidationFailed
from helpdesk.tickets.attachments import AttachmentStore

PDF = b"%PDF-1.7\n\x00\xff binary bytes\n"


@pytest.fixture
def store(tmp_path):
    return AttachmentStore(tmp_path / "attachments", 100, frozenset({"application/pdf", "text/plain"}))


def test_content_is_stored_under_its_sha256_and_read_back(store):
    digest = store.put(PDF)
    assert digest == hashlib.sha256(PDF).hexdigest()
    assert store.get(digest) == PDF


def test_the_same_content_is_stored_once(store, tmp_path):
    first, second = store.put(PDF), store.put(PDF)
    assert first == second
    files = [p for p in (tmp_path / "attachments").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [first]


def test_different_content_gets_different_files(store):
    assert store.put(PDF) != store.put(PDF + b"!")


def test_an_allowed_type_within_the_limit_passes(store):
    store.check("application/pdf", 100)


def test_a_type_outside_the_allow_list_names_content_type(store):
    with pytest.raises(ValidationFailed) as err:
        store.check("application/x-msdownload", 10)
    assert list(err.value.details) == ["content_type"]
    assert "application/pdf, text/plain" in err.value.details["content_type"][0]


def test_a_file_over_the_limit_names_the_content_field(store):
    with pytest.raises(ValidationFailed) as err:
        store.check("text/plain", 101)
    assert list(err.value.details) == ["content_b64"]
    assert "100 bytes" in err.value.details["content_b64"][0]


def test_an_empty_file_is_refused(store):
    with pytest.raises(ValidationFailed) as err:
        store.check("text/plain", 0)
    assert "content_b64" in err.value.details


def test_both_problems_are_reported_together(store):
    with pytest.raises(ValidationFailed) as err:
        store.check("image/bmp", 1000)
    assert set(err.value.details) == {"content_type", "content_b64"}


def test_missing_content_is_not_found(store):
    with pytest.raises(NotFound):
        store.get(hashlib.sha256(b"never stored").hexdigest())
