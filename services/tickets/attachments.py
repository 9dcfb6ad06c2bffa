"""Attachment files outside the database, addressed by their SHA-256 under the data folder."""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from helpdesk.common.errors import NotFound, ValidationFailed


class AttachmentStore:
    def __init__(self, root: Path, max_bytes: int, allowed_types: frozenset):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.allowed_types = allowed_types

    def check(self, content_type: str, size: int) -> None:
        errors = {}
        if content_type not in self.allowed_types:
            errors["content_type"] = [f"{content_type} is not allowed; allowed: {', '.join(sorted(self.allowed_types))}"]
        if size > self.max_bytes:
            errors["content_b64"] = [f"file of {size} bytes exceeds the limit of {self.max_bytes} bytes"]
        if size == 0:
            errors["content_b64"] = ["file is empty"]
        if errors:
            raise ValidationFailed.from_fields(errors)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, content: bytes) -> str:
        digest = hashlib.sha256(content).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{digest}.{uuid.uuid4().hex}")
            tmp.write_bytes(content)
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        return digest

    def get(self, digest: str) -> bytes:
        try:
            return self._path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"attachment content {digest} is missing from the store", {"sha256": digest})
