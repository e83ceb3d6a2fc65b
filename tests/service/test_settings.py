"""service.config: settings come from KENSA_* variables; bad values are refused."""

import pytest
from pydantic import ValidationError

from service.config import Settings, get_settings


def test_defaults():
    s = Settings()  # conftest cleared every KENSA_* variable
    assert (s.model, s.device, s.host, s.port) == (None, "auto", "127.0.0.1", 8000)
    assert (s.max_batch, s.max_upload_mb, s.max_pixels) == (64, 20.0, 16_000_000)
    assert (s.api_keys, s.threshold) == ([], None)
    assert s.max_upload_bytes == 20 * 1024 * 1024


def test_environment_is_read_with_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("KENSA_MODEL", str(tmp_path))
    monkeypatch.setenv("KENSA_PORT", "9001")
    monkeypatch.setenv("KENSA_DEVICE", "cpu")
    monkeypatch.setenv("KENSA_API_KEYS", " alpha, beta ,,")
    monkeypatch.setenv("KENSA_THRESHOLD", "0.25")
    monkeypatch.setenv("KENSA_LOG_LEVEL", "WARNING")
    s = Settings()
    assert s.model == tmp_path and s.port == 9001 and s.device == "cpu"
    assert s.api_keys == ["alpha", "beta"]
    assert s.threshold == 0.25 and s.log_level == "warning"


def test_arguments_win_over_environment(monkeypatch):
    monkeypatch.setenv("KENSA_PORT", "9001")
    assert Settings(port=9002).port == 9002


@pytest.mark.parametrize("name,value", [("KENSA_THRESHOLD", "nan"), ("KENSA_DEVICE", "tpu"),
                                        ("KENSA_PORT", "0"), ("KENSA_QUEUE_SIZE", "0")])
def test_bad_values_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_get_settings_reads_once():
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_empty_threshold_and_model_mean_unset(monkeypatch):
    # docker compose hands `.env` lines like `KENSA_THRESHOLD=` over as empty strings
    monkeypatch.setenv("KENSA_THRESHOLD", "")
    monkeypatch.setenv("KENSA_MODEL", " ")
    s = Settings()
    assert s.threshold is None and s.model is None
