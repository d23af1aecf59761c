#!/usr/bin/env bash
# Resident memory of the real console (release build) with a 100,000-task
# project open, in a 200x60 tmux terminal: after the first board frame, and
# after scrolling to the far end of the largest lane.
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres), psql and tmux.
# Usage: benches/console_rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."

db=mctl_bench_rss
url="host=127.0.0.1 port=5432 user=postgres dbname=$db"
socket="mctl-rss-$$"
cargo build --release --quiet
mctl="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/mctl"

psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
"$mctl" --database-url "$url" --project BENCH seed load --tasks 100000

tmux -L "$socket" new-session -d -x 200 -y 60 "'$mctl' --database-url '$url' --project BENCH"
trap 'tmux -L "$socket" kill-server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    tmux -L "$socket" capture-pane -p | grep -q "In Progress" && break
    sleep 0.1
done
sleep 1
pid=$(pgrep -f -- "--database-url $url --project BENCH" | head -n 1)
echo "after the first frame: $(grep VmRSS /proc/"$pid"/status)"
# Into the Done lane (the largest), to its last card and back to the top.
for key in l l l l l G; do tmux -L "$socket" send-keys "$key"; sleep 0.3; done
sleep 1
echo "after scrolling to the end of the largest lane: $(grep VmRSS /proc/"$pid"/status)"
for key in g 1 2 4 5 6 8 3 A; do tmux -L "$socket" send-keys "$key"; sleep 0.4; done
sleep 1
echo "after visiting every screen with the audit drawer open: $(grep VmRSS /proc/"$pid"/status)"
