#!/bin/sh
# Container entry point: on `bitseek serve`, build the demo collections into an empty data
# directory first, then exec the server so it becomes this process (PID 1 in a container) and
# receives SIGTERM itself: uvicorn then stops accepting, finishes in-flight requests and closes
# SQLite before exiting 0.
# Any other command (`bitseek train ...`, `sh`) is exec'd unchanged.
# BITSEEK_DEMO=0 skips the demo build.
set -eu

if [ "$#" -ge 2 ] && [ "$1" = "bitseek" ] && [ "$2" = "serve" ]; then
    data_dir="${BITSEEK_DATA_DIR:-data}"
    mkdir -p "$data_dir"
    # a marker survives an interrupted build, so the next start finishes it
    pending="$data_dir/.demo-pending"
    if [ "${BITSEEK_DEMO:-1}" != "0" ] && { [ -z "$(ls -A "$data_dir")" ] || [ -e "$pending" ]; }; then
        echo "bitseek-entrypoint: building the demo collections in $data_dir" >&2
        : > "$pending"
        # in the background so a SIGTERM during the build is passed on, not ignored by PID 1
        bitseek demo --if-missing --data-dir "$data_dir" &
        child=$!
        trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT
        status=0
        wait "$child" || status=$?
        if [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; then
            # wait was interrupted by the trap: collect the child's own exit status
            status=0
            wait "$child" || status=$?
        fi
        trap - TERM INT
        if [ "$status" -ne 0 ]; then
            echo "bitseek-entrypoint: demo build failed or was stopped (exit $status)" >&2
            exit "$status"
        fi
        rm -f "$pending"
    fi
fi

exec "$@"
