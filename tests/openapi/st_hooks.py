"""Schemathesis hooks of scripts/openapi-check.sh (loaded through SCHEMATHESIS_HOOKS)."""

import json

import schemathesis

PROBLEM_MEMBERS = ("type", "title", "status", "detail", "code")


@schemathesis.check
def problem_json_errors(ctx, response, case):
    """Every error the server answers is an RFC 9457 problem document with a stable code,
    whether or not the operation lists that status."""
    if response.status_code < 400:
        return None
    # An HTTP function's own answer (any status, any body) is the function's to shape.
    if "x-plinth-invocation" in response.headers:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if content_type.split(";")[0].strip().lower() != "application/problem+json":
        raise AssertionError(
            f"{response.status_code} answered with content-type {content_type!r}, "
            "not application/problem+json"
        )
    try:
        body = json.loads(response.content or b"")
    except ValueError as e:
        raise AssertionError(f"{response.status_code}: the problem document is not JSON: {e}")
    missing = [m for m in PROBLEM_MEMBERS if m not in body]
    if missing:
        raise AssertionError(f"{response.status_code}: the problem lacks {missing}: {body}")
    if body["status"] != response.status_code:
        raise AssertionError(f"problem status {body['status']} != {response.status_code}")
    if body["type"] != f"urn:plinth:problem:{body['code']}":
        raise AssertionError(f"problem type {body['type']!r} does not name code {body['code']!r}")
    return True


# A rule set is TOML text: sent as it is, like text/plain.
schemathesis.serializer.alias("application/toml", "text/plain")
# A tenant export (POST .../import) is NDJSON text: sent as it is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
