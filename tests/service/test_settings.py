"""Settings from USERVEC_* environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from uservec.service.settings import Settings, get_settings


def test_environment_variables_with_the_prefix_configure_the_service(monkeypatch):
    monkeypatch.setenv("USERVEC_BUNDLE_PATH", "/bundles/v1")
    monkeypatch.setenv("USERVEC_MAX_K", "5")
    monkeypatch.setenv("USERVEC_DEFAULT_K", "3")
    monkeypatch.setenv("USERVEC_API_KEYS", " key-a, key-b ,")
    monkeypatch.setenv("USERVEC_ADMIN_API_KEYS", '["root"]')
    monkeypatch.setenv("USERVEC_BATCHING_ENABLED", "false")
    settings = Settings()
    assert settings.bundle_path == Path("/bundles/v1")
    assert (settings.max_k, settings.default_k) == (5, 3)
    assert settings.api_keys == ["key-a", "key-b"]
    assert settings.admin_api_keys == ["root"] and settings.admin_enabled
    assert settings.batching_enabled is False


def test_admin_is_off_without_an_admin_key_and_api_keys_do_not_open_it():
    assert not Settings().admin_enabled
    assert not Settings(api_keys=["a"]).admin_enabled
    assert Settings(api_keys=["a"], admin_api_keys=["b"]).admin_enabled


def test_a_key_cannot_be_both_an_api_key_and_an_admin_key():
    with pytest.raises(ValidationError, match="both API and admin keys"):
        Settings(api_keys=["a", "b"], admin_api_keys=["b"])


@pytest.mark.parametrize("values", [{"max_k": 0}, {"default_k": 20, "max_k": 10},
                                    {"max_body_bytes": 0}, {"port": 70000}])
def test_impossible_limits_are_refused(values):
    with pytest.raises(ValidationError):
        Settings(**values)


def test_get_settings_is_built_once(monkeypatch):
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("USERVEC_MAX_K", "70")
        assert get_settings() is get_settings()
        assert get_settings().max_k == 70
    finally:
        get_settings.cache_clear()
