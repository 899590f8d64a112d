#!/usr/bin/env bash
# Prepares a fresh machine for the embedded default: system services' binaries, uv, the
# project's virtualenv from the lock file. Safe to run repeatedly.
#   --with-browser  also headless Chromium (Debian's chromium), which the test suite uses to
#                   render the built-in dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."

with_browser=0
for arg in "$@"; do
  case "$arg" in
    --with-browser) with_browser=1 ;;
    *) echo "usage: $0 [--with-browser]" >&2; exit 2 ;;
  esac
done

need_apt=()
have_pg() { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_pg || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ "$with_browser" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "error: missing ${need_apt[*]}. Install them (Debian: sudo apt-get install ${need_apt[*]})" >&2
    echo "       or point TRIAGE_SOURCE__DSN / TRIAGE_REDIS__URL at existing servers." >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv ..." >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv
fi
UV=$(command -v uv || echo "$("$PYTHON" -m site --user-base)/bin/uv")
# --compile-bytecode: the pipeline, its restarts and every process the tests start import
# river, scipy, holidays and the rest from .pyc files, also where PYTHONDONTWRITEBYTECODE
# is set (without them each start compiles those sources again: seconds per process).
UV_PYTHON_DOWNLOADS=never "$UV" sync --frozen --extra dev --python "$PYTHON" --quiet --compile-bytecode
.venv/bin/python -m compileall -q -j 0 api connectors evaluation models pipelines sinks triage >/dev/null

# Kafka, Kafka Connect and Debezium jars for the real production path run locally (tests
# marked real_kafka, the Kafka-mode demo); returns at once when they are already there.
bash infra/jvm/fetch.sh
