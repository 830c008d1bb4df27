"""One settings base for every entry point: CHURN_ names, deprecated old names, secret tokens."""

import logging
from datetime import date

import kafka.codec
import pytest

from models.settings import SharedSettings, markdown_table
from serving.settings import ServiceSettings
from streaming.settings import StreamSettings, load_settings
from tests.support import ROOT

SERVICE_VARS = ["REDIS_URL", "API_TOKENS", "CORS_ORIGINS", "MAX_BODY_BYTES", "CHURN_AS_OF",
                "CHURN_MODEL_TAG", "CHURN_REDIS_URL", "CHURN_API_TOKENS", "CHURN_CORS_ORIGINS",
                "CHURN_MAX_BODY_BYTES", "CHURN_PREDICTION_LOG"]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in SERVICE_VARS:
        monkeypatch.delenv(name, raising=False)


def test_prefixed_names_are_read(monkeypatch):
    monkeypatch.setenv("CHURN_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("CHURN_API_TOKENS", "one, two,,")
    monkeypatch.setenv("CHURN_CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("CHURN_MAX_BODY_BYTES", "1000")
    s = ServiceSettings()
    assert s.redis_url == "redis://cache:6379/0"
    assert s.tokens == ["one", "two"]
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.max_body_bytes == 1000


def test_old_names_still_work_with_one_warning_each(monkeypatch, caplog):
    monkeypatch.setenv("REDIS_URL", "redis://old:6379/0")
    monkeypatch.setenv("API_TOKENS", "legacy")
    with caplog.at_level(logging.WARNING):
        s = ServiceSettings()
    assert (s.redis_url, s.tokens) == ("redis://old:6379/0", ["legacy"])
    warned = sorted(r.getMessage() for r in caplog.records)
    assert warned == [
        "API_TOKENS is deprecated: set CHURN_API_TOKENS instead",
        "REDIS_URL is deprecated: set CHURN_REDIS_URL instead",
    ]


def test_the_prefixed_name_wins_and_silences_the_warning(monkeypatch, caplog):
    monkeypatch.setenv("REDIS_URL", "redis://old:6379/0")
    monkeypatch.setenv("CHURN_REDIS_URL", "redis://new:6379/0")
    with caplog.at_level(logging.WARNING):
        s = ServiceSettings()
    assert s.redis_url == "redis://new:6379/0"
    assert caplog.records == []


def test_tokens_are_secrets(monkeypatch):
    monkeypatch.setenv("CHURN_API_TOKENS", "s3cret-token")
    s = ServiceSettings()
    assert "s3cret-token" not in repr(s)
    assert "s3cret-token" not in str(s.model_dump())


def test_shared_settings_mean_the_same_to_every_entry_point(monkeypatch):
    monkeypatch.setenv("CHURN_AS_OF", "2026-06-30")
    monkeypatch.setenv("CHURN_MODEL_TAG", "churn_model:abc")
    for settings in (SharedSettings(), ServiceSettings(), StreamSettings()):
        assert settings.as_of_or_today() == date(2026, 6, 30)
        assert settings.tag() == "churn_model:abc"


@pytest.mark.parametrize(("lz4", "expected"), [(True, "lz4"), (False, "gzip")])
def test_the_bridge_compresses_with_gzip_unless_asked_auto_is_lz4_when_installed(
    monkeypatch, lz4, expected
):
    monkeypatch.delenv("CHURN_STREAM_COMPRESSION", raising=False)
    monkeypatch.setattr(kafka.codec, "has_lz4", lambda: lz4)
    assert load_settings([]).compression == "gzip"  # whatever is installed
    assert load_settings(["--compression", "auto"]).compression == expected
    assert load_settings(["--compression", "none"]).compression == "none"


def test_a_codec_without_its_library_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(kafka.codec, "has_zstd", lambda: False)
    with pytest.raises(SystemExit) as stopped:
        load_settings(["--compression", "zstd"])
    assert stopped.value.code == 2
    assert "zstd needs its Python library" in capsys.readouterr().err


def test_the_readmes_configuration_table_is_the_one_the_settings_generate():
    readme = (ROOT / "README.md").read_text()
    table = markdown_table(ServiceSettings)
    assert table in readme
    # Every service variable is in it, each with its documented default and meaning.
    for name, field in ServiceSettings.model_fields.items():
        assert field.description, name
        assert f"| `CHURN_{name.upper()}` |" in table
