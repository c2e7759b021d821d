"""Whatever a command raises, the person gets one line and the log gets the traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from samdesk import errorlog
from samdesk.cli import main
from samdesk.commands import models as cmd_models


def fail_with(exc: BaseException):
    def run(args: object) -> int:
        raise exc
    return run


def test_an_unexpected_exception_is_one_line_and_a_logged_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = Path(os.environ["SAMDESK_LOG_DIR"]) / errorlog.LOG_NAME
    before = log.read_text(encoding="utf-8") if log.exists() else ""
    monkeypatch.setattr(cmd_models, "run_list", fail_with(IndexError("index out of range")))
    assert main(["models", "list"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("samdesk: error: IndexError: index out of range (details in ")
    assert str(log) in err
    added = log.read_text(encoding="utf-8")[len(before):]
    assert "samdesk models" in added and "Traceback (most recent call last)" in added
    assert "IndexError: index out of range" in added


def test_debug_shows_the_traceback_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cmd_models, "run_list", fail_with(ValueError("Invalid IPv6 URL")))
    with pytest.raises(ValueError, match="Invalid IPv6 URL"):
        main(["--debug", "models", "list"])


def test_an_error_a_person_can_fix_is_its_message_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from samdesk.errors import CliError

    monkeypatch.setattr(cmd_models, "run_list", fail_with(CliError("models folder: gone")))
    assert main(["models", "list"]) == 2
    assert capsys.readouterr().err == "samdesk: error: models folder: gone\n"


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cmd_models, "run_list", fail_with(KeyboardInterrupt()))
    assert main(["models", "list"]) == 130
    assert capsys.readouterr().err == "samdesk: interrupted\n"
