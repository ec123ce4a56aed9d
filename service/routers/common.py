"""Error codes every inference endpoint can return (for the OpenAPI docs)."""

INFERENCE_ERRORS = (
    "invalid_json",
    "missing_api_key",
    "invalid_api_key",
    "payload_too_large",
    "unsupported_media_type",
    "validation_error",
    "too_many_users",
    "too_many_events",
    "too_many_requests",
    "not_ready",
)
