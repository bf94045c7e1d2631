"""Prepares a fresh server for schemathesis (scripts/openapi-check.sh), through the API
only: the first admin (from the setup token the server printed), a tenant with a rule
set that lets anyone use its `notes` collection (so document operations get past the
rules and reach the filter, order and patch code), a document, a service key, a signed-up
user, a deployed HTTP function, and a second tenant that the destructive admin operations
(delete, suspend) may have. Prints shell assignments for the script to `eval`.

Usage: setup.py BASE_URL SERVER_STDOUT_FILE
"""

import json
import re
import sys
import time
import urllib.error
import urllib.request

TENANT = "st-main"
SCRATCH = "st-scratch"
PASSWORD = "openapi-check-password"

RULES = """
[notes]
read = "true"
create = "true"
update = "true"
delete = "true"
"""

FUNCTION = """
export default async function (req) {
  return { status: 200, body: { method: req.method, path: req.path } };
}
"""

BUNDLE = {
    "plinth.toml": '[[http]]\nname = "echo"\nfunction = "echo"\n',
    "functions/echo.js": FUNCTION,
}


def call(base, method, path, body=None, token=None, content_type="application/json"):
    data = None
    headers = {}
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers["content-type"] = content_type
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            text = res.read().decode()
    except urllib.error.HTTPError as e:
        sys.exit(f"setup: {method} {path}: {e.code} {e.read().decode()}")
    return json.loads(text) if text else None


def wait_for(base, stdout_file):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                pass
            with open(stdout_file) as f:
                m = re.search(r'"token":"([^"]+)"', f.read())
            if m:
                return m.group(1)
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    sys.exit(f"setup: no server (or no setup token in its output) at {base}")


def main():
    base, stdout_file = sys.argv[1], sys.argv[2]
    setup_token = wait_for(base, stdout_file)
    admin = call(base, "POST", "/admin/v1/setup",
                 {"token": setup_token, "email": "admin@openapi.test", "password": PASSWORD})
    admin_token = admin["access_token"]
    for slug in (TENANT, SCRATCH):
        call(base, "POST", "/admin/v1/tenants", {"slug": slug}, admin_token)
    call(base, "PUT", f"/admin/v1/tenants/{TENANT}/rules", RULES, admin_token,
         content_type="application/toml")
    call(base, "POST", f"/admin/v1/tenants/{TENANT}/deploys", {"files": BUNDLE}, admin_token)
    key = call(base, "POST", f"/admin/v1/tenants/{TENANT}/keys", {"name": "openapi"},
               admin_token)["key"]
    session = call(base, "POST", f"/v1/t/{TENANT}/auth/signup",
                   {"email": "user@openapi.test", "password": PASSWORD})
    call(base, "PUT", f"/v1/t/{TENANT}/collections/notes/docs/first", {"n": 1}, key)
    values = {
        "ST_ADMIN_TOKEN": admin_token,
        "ST_SERVICE_KEY": key,
        "ST_USER_TOKEN": session["access_token"],
        "ST_USER_ID": session["user"]["id"],
        "ST_TENANT": TENANT,
        "ST_SCRATCH": SCRATCH,
    }
    for k, v in values.items():
        print(f"{k}='{v}'")


if __name__ == "__main__":
    main()
