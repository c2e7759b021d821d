"""``samdesk serve`` options: model/checkpoint pairs, limits, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from samdesk import cli
from samdesk.commands.serve import settings_from


def parse(*argv: str):
    return settings_from(cli.build_parser().parse_args(["serve", *argv]))


def test_each_checkpoint_belongs_to_the_model_before_it(tmp_path: Path):
    mine = tmp_path / "fine-tuned.pt"
    mine.write_bytes(b"weights")
    settings = parse("--model", "sam2.1_hiera_tiny", "--checkpoint", str(mine),
                     "--model", "sam_vit_b", "--idle-unload", "300", "--cache-mb", "512",
                     "--api-key", "a", "--api-key", "b", "--allow-url-host", "images.lan",
                     "--max-body-mb", "8")
    assert settings.models == {"sam2.1_hiera_tiny": mine, "sam_vit_b": None}
    assert settings.idle_unload_s == 300 and settings.cache_bytes == 512 << 20
    assert settings.api_keys == ("a", "b") and settings.allow_url_hosts == ("images.lan",)
    assert settings.max_body_bytes == 8 << 20
    assert (settings.host, settings.port) == ("127.0.0.1", 9001)


def test_a_checkpoint_without_its_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["serve", "--checkpoint", "x.pt"])
    assert stopped.value.code == 2
    assert "--checkpoint must follow the --model it belongs to" in capsys.readouterr().err


def test_an_unknown_model_or_missing_file_is_one_line(capsys, tmp_path: Path):
    assert cli.main(["serve", "--model", "sam_vit_q"]) == 2
    assert capsys.readouterr().err.startswith("samdesk: error: --model: unknown model 'sam_vit_q'")
    missing = tmp_path / "nowhere.pt"
    assert cli.main(["serve", "--model", "sam_vit_b", "--checkpoint", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"samdesk: error: --checkpoint {missing}: no such file")
