"""Dependency providers of the tickets service (nameko's way of handing workers their tools)."""
from __future__ import annotations

from dataclasses import dataclass

from nameko.extensions import DependencyProvider

from helpdesk.common.config import Config, from_container
from helpdesk.tickets.attachments import AttachmentStore


@dataclass(frozen=True)
class Settings:
    config: Config
    store: AttachmentStore


class SettingsProvider(DependencyProvider):
    def setup(self):
        cfg = from_container(self.container)
        self.settings = Settings(cfg, AttachmentStore(cfg.data_dir / "attachments", cfg.attachment_max_bytes,
                                                      cfg.attachment_types))

    def get_dependency(self, worker_ctx):
        return self.settings
