#!/usr/bin/env bash
# Installs headless Chromium for the bench report tests (tests/bench/test_bench_report_html.py),
# which load the HTML report in a real browser and fail on console errors.
#
# Idempotent and never fails its caller: when Chromium is already there it does nothing; when
# it cannot install (not root, no apt-get, no network, too slow) it says so and exits 0, and
# the Chromium tests then skip with a message.
#
#   RADSTREAM_NO_CHROMIUM_INSTALL=1   skip the install attempt
#   CHROMIUM_INSTALL_TIMEOUT=SECONDS  bound on each apt-get step (default 600)
set -u

say() { echo "install-chromium: $*"; }

for candidate in "${CHROMIUM:-}" chromium chromium-browser; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "${RADSTREAM_NO_CHROMIUM_INSTALL:-0}" = "1" ]; then
    say "RADSTREAM_NO_CHROMIUM_INSTALL=1; not installing (the Chromium tests will skip)."
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    say "not root; not installing (the Chromium tests will skip)." \
        "Install it with: sudo apt-get install chromium"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get; not installing (the Chromium tests will skip)."
    exit 0
fi

limit="${CHROMIUM_INSTALL_TIMEOUT:-600}"
bounded() {
    if command -v timeout >/dev/null 2>&1; then
        timeout --kill-after=30 "$limit" "$@"
    else
        "$@"
    fi
}

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp "${TMPDIR:-/tmp}/install-chromium.XXXXXX.log")"
say "installing chromium with apt-get (at most ${limit} s per step; log: $log)"
if bounded apt-get update -qq >"$log" 2>&1 \
    && bounded apt-get install -y -qq -o DPkg::Lock::Timeout=60 chromium >>"$log" 2>&1 \
    && command -v chromium >/dev/null 2>&1; then
    say "installed $(chromium --version 2>/dev/null | head -n 1)"
    rm -f "$log"
else
    say "could not install chromium (the Chromium tests will skip); last lines of $log:"
    tail -n 5 "$log" | sed 's/^/    /'
fi
exit 0
