#!/usr/bin/env bash
# Sets up ./.venv (scripts/setup.sh), installs headless Chromium for the report's browser test when
# it is missing and we may (root with apt-get), then runs ruff and the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian chromium for the HTML report test..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: chromium could not be installed; the browser test will be skipped"
fi
.venv/bin/python -m ruff check src tests benchmarks
# Two pytest workers (pytest-xdist), one torch thread each: the 2-core CI machine runs two tests at once.
export MEDPRUNE_TEST_THREADS=${MEDPRUNE_TEST_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${MEDPRUNE_TEST_WORKERS:-2}" "$@"
