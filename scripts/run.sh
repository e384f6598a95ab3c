#!/usr/bin/env bash
# The two Quick-start commands:
#   bash scripts/run.sh demo [mem1 demo options]   train + evaluate on embedded defaults
#   bash scripts/run.sh test [pytest options]       the test suite
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
what="${1:-}"
shift || true
case "$what" in
    demo) exec .venv/bin/mem1 demo "$@" ;;
    test) exec .venv/bin/python -m pytest "$@" ;;
    *) echo "usage: bash scripts/run.sh demo|test [options]" >&2; exit 2 ;;
esac
