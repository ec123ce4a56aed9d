"""Service settings: one ``BaseSettings`` read from ``USERVEC_*`` environment variables.

Every limit the service enforces is a setting here, so operators tune them without code changes and
tests build apps with small limits (``create_app(Settings(max_users_per_request=2, ...))``).
List settings (``USERVEC_API_KEYS``) take a comma-separated string or a JSON list.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: Any) -> Any:
    """Accept ``"a,b"`` or ``'["a", "b"]'`` from the environment; blank entries are dropped."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    if isinstance(value, list | tuple):
        return [str(item).strip() for item in value if str(item).strip()]
    return value


class Settings(BaseSettings):
    """Service configuration; env prefix ``USERVEC_`` (e.g. ``USERVEC_BUNDLE_PATH``)."""

    model_config = SettingsConfigDict(env_prefix="USERVEC_", extra="ignore", frozen=True)

    # --- bundle
    #: bundle directory loaded at startup (none: live but not ready until POST /admin/reload)
    bundle_path: Path | None = None
    #: check every bundle file's sha256 on load (as `uservec bundle verify` does)
    verify_checksums: bool = True
    #: serve model.int8.onnx when the bundle ships one
    use_int8: bool = False

    # --- HTTP server (service.server.serve)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: how long SIGTERM waits for in-flight requests
    shutdown_timeout_s: float = Field(default=30.0, ge=0)
    log_level: str = "info"
    json_logs: bool = True

    #: a request whose body has not fully arrived this many seconds after its headers gets 408
    #: and its connection is closed; a slow upload never holds an in-flight slot meanwhile
    body_timeout_s: float = Field(default=5.0, gt=0)
    #: a connection whose request headers have not fully arrived this long after it opened (or
    #: after its previous response) is closed
    header_timeout_s: float = Field(default=5.0, gt=0)
    #: an idle keep-alive connection is closed after this many seconds (uvicorn's setting)
    keep_alive_timeout_s: int = Field(default=5, ge=1)
    #: largest request head (request line and headers) in bytes; more: the connection is closed
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)

    # --- auth
    #: bearer keys for the inference and bundle endpoints; empty = auth off (health, metrics
    #: and docs are always open)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: bearer keys for /admin/reload; empty = no admin endpoint at all. Separate from api_keys:
    #: a key may not be in both lists
    admin_api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    reload_on_sighup: bool = True

    # --- request limits
    max_users_per_request: int = Field(default=64, ge=1)
    #: hard cap per user; the model itself reads only the latest max_len events
    max_events_per_user: int = Field(default=1000, ge=1)
    #: ids in /recommend's request-level `exclude`, and in each user's
    max_exclude: int = Field(default=1000, ge=0)
    default_k: int = Field(default=10, ge=1)
    max_k: int = Field(default=100, ge=1)
    #: larger request bodies get 413
    max_body_bytes: int = Field(default=1 << 20, ge=1)
    #: API requests in flight at once; more get 429 with Retry-After
    max_concurrent_requests: int = Field(default=64, ge=1)
    retry_after_s: int = Field(default=1, ge=0)
    #: /health/ready answers 503 (reason "saturated") while a request was refused for lack of an
    #: in-flight slot within this many seconds: a load balancer then sends work elsewhere.
    #: 0 = readiness ignores saturation
    saturation_window_s: float = Field(default=2.0, ge=0)

    # --- inference
    #: coalesce concurrent requests into one onnxruntime run
    batching_enabled: bool = True
    #: rows (user sequences) of one onnxruntime run
    max_batch_size: int = Field(default=64, ge=1)
    #: how long a batch waits for more rows after its first
    max_batch_wait_ms: float = Field(default=2.0, ge=0)
    #: thread pool for onnxruntime and FAISS (also the number of concurrent batch runs)
    inference_threads: int = Field(default=2, ge=1)
    #: onnxruntime intra-op threads; 0 = its default (all cores)
    ort_intra_op_threads: int = Field(default=0, ge=0)

    # --- cache
    #: in-process LRU entries; 0 = no in-process cache
    cache_size: int = Field(default=10_000, ge=0)
    #: e.g. redis://host:6379/0; set = Redis replaces the in-process LRU
    redis_url: str | None = None
    redis_ttl_s: int = Field(default=3600, ge=1)
    #: socket connect and read timeout: a slow Redis is a miss, not a slow request
    redis_timeout_s: float = Field(default=0.1, gt=0)
    redis_max_connections: int = Field(default=32, ge=1)
    #: after a Redis error, skip Redis this long (each skip counts as an error)
    redis_retry_interval_s: float = Field(default=1.0, ge=0)
    cache_key_prefix: str = "uservec"

    # --- user state (docs/service.md#user-state)
    #: seconds a user's state lives in Redis after its last append; 0 = until deleted. The
    #: in-process store (no redis_url) keeps states until deleted or the process ends
    user_state_ttl_s: int = Field(default=0, ge=0)

    _split = field_validator("api_keys", "admin_api_keys", mode="before")(_split_list)

    @property
    def admin_enabled(self) -> bool:
        """/admin/reload exists only when an admin key is configured."""
        return bool(self.admin_api_keys)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) must not exceed max_k ({self.max_k})")
        shared = sorted(set(self.api_keys) & set(self.admin_api_keys))
        if shared:
            raise ValueError(f"{len(shared)} key(s) are both API and admin keys; an API key must "
                             "not be able to reload bundles: use separate keys")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, built once; tests pass their own to ``create_app``."""
    return Settings()
