"""`helpdesk erp …` on real databases: the first import with progress, the status table, the demo database."""
from __future__ import annotations

import json

from helpdesk import cli


def _env(monkeypatch, tmp_path, helios_url=None):
    monkeypatch.setenv("HELPDESK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HELPDESK_LOG_FORMAT", "text")
    monkeypatch.setenv("HELPDESK_LOG_LEVEL", "WARNING")
    if helios_url:
        monkeypatch.setenv("HELPDESK_ERP_HELIOS_URL", helios_url)
    else:
        monkeypatch.delenv("HELPDESK_ERP_HELIOS_URL", raising=False)


def test_full_sync_shows_progress_and_status_shows_each_table(monkeypatch, tmp_path, capsys):
    helios = f"sqlite:///{tmp_path / 'helios.db'}"
    _env(monkeypatch, tmp_path)
    assert cli.main(["erp", "demo-db", helios, "--organisations", "12"]) == 0
    assert "12 TabCisOrg" in capsys.readouterr().out
    assert cli.main(["erp", "sync", "--full"]) == 2  # no HELIOS configured: says so
    assert "HELPDESK_ERP_HELIOS_URL is not set" in capsys.readouterr().err

    _env(monkeypatch, tmp_path, helios)
    assert cli.main(["erp", "sync", "--full"]) == 0
    out = capsys.readouterr()
    assert "organisation" in out.err and "12/12 100.0 %" in out.err and "rows/s" in out.err
    assert cli.main(["erp", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["records"] == {"organisation": 12, "contact": 36, "employee": 10, "contract": 6}
    assert status["tables"]["contact"]["errors_in_row"] == 0
    assert cli.main(["erp", "status"]) == 0
    table = capsys.readouterr().out
    assert "HELIOS: configured" in table and "contract" in table and "waiting to be written" in table
