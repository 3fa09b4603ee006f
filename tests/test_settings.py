from __future__ import annotations

from pathlib import Path

import pytest

from drpo.errors import DrpoInputError
from drpo.settings import Settings, apply_local_model, load_settings, settings_from_dict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_defaults_are_the_small_embedded_demo() -> None:
    settings = Settings()
    assert settings.roles.base.provider == "local" and settings.roles.evaluator.model == "qwen2.5-0.5b"
    assert settings.search.beam_width == 2 and settings.search.depth == 3


def test_paper_yaml_has_the_papers_search() -> None:
    search = load_settings(EXAMPLES / "paper.yaml").search
    assert (search.beam_width, search.num_actions, search.depth, search.icl_k) == (2, 3, 20, 2)
    assert search.max_depth_increase == 10 and search.queries_per_depth == 1


@pytest.mark.parametrize("name", ["demo.yaml", "paper.yaml", "openai.yaml", "vllm.yaml", "ollama.yaml"])
def test_every_shipped_example_validates(name: str) -> None:
    load_settings(EXAMPLES / name)


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("search:\n  depth: 7\n  beam_width: 3\n")
    settings = load_settings(config, {"search": {"depth": 9}})
    assert settings.search.depth == 9 and settings.search.beam_width == 3


def test_local_model_flag_only_touches_local_roles() -> None:
    data = {"roles": {"evaluator": {"provider": "openai", "model": "gpt-4o"}}}
    settings = settings_from_dict(apply_local_model(data, "smollm2-135m"))
    assert settings.roles.base.model == "smollm2-135m"
    assert settings.roles.evaluator.model == "gpt-4o"
    assert settings.roles.base.max_tokens == 320  # a partial role keeps its role-specific defaults
    assert settings.roles.optimizer.temperature == 0.7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("search: [1, 2", "not valid YAML"),
        ("- a\n- b\n", "must hold a mapping"),
        ("search:\n  beam_width: 0\n", "search.beam_width"),
        ("searhc:\n  depth: 2\n", "searhc"),
        ("roles:\n  base:\n    provider: anthropic\n", "roles.base.provider"),
        ("roles:\n  base:\n    provider: openai_compatible\n", "needs base_url"),
        ("roles:\n  optimizer:\n    mode: completion\n", "only the base role"),
        ("roles:\n  base:\n    api_key_env: sk-abc123-secret\n", "environment variable name"),
    ],
)
def test_bad_config_gives_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(DrpoInputError, match=message) as info:
        load_settings(config)
    assert "\n" not in str(info.value)


def test_missing_config_file() -> None:
    with pytest.raises(DrpoInputError, match="config file not found"):
        load_settings(Path("/nonexistent/drpo.yaml"))


def test_snapshot_holds_env_var_names_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-very-secret-value")
    settings = settings_from_dict(
        {"roles": {"optimizer": {"provider": "openai", "model": "m", "api_key_env": "MY_KEY"}}}
    )
    assert "sk-very-secret-value" not in str(settings.snapshot())
    assert settings.snapshot()["roles"]["optimizer"]["api_key_env"] == "MY_KEY"


def test_load_settings_takes_a_path_as_text_too(tmp_path) -> None:
    """The README's Python example passes the config's name as a string."""
    from drpo.settings import load_settings

    config = tmp_path / "my.yaml"
    config.write_text("search: {depth: 7}\n")
    assert load_settings(str(config), {"search": {"beam_width": 3}}).search.depth == 7
