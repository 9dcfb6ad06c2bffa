"""Small nameko dependency providers every service may use."""
from __future__ import annotations

from nameko.extensions import DependencyProvider

from helpdesk.common.config import from_container


class ConfigProvider(DependencyProvider):
    """Hands a service's workers the Config the process was started with."""

    def setup(self):
        self.config = from_container(self.container)

    def get_dependency(self, worker_ctx):
        return self.config
