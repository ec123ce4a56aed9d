"""Error codes every inference endpoint can return (for the OpenAPI docs).

The API key codes (401, 403) are added by the app only when keys are configured.
"""

INFERENCE_ERRORS = (
    "invalid_json",
    "payload_too_large",
    "request_timeout",
    "unsupported_media_type",
    "validation_error",
    "finite_number",
    "domain_required",
    "too_many_users",
    "too_many_events",
    "too_many_requests",
    "not_ready",
    "user_not_found",
    "state_unavailable",
)
