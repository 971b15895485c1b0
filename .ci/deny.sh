#!/usr/bin/env bash
# Supply-chain checks (cargo-deny: advisories, licenses, bans, sources; policy in deny.toml),
# fully offline. Tool and advisory database live outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.20.2
CACHE="$HOME/.cache/vworkspace"
ROOT="$CACHE/cargo-deny"
DENY="$ROOT/bin/cargo-deny"
# Must match deny.toml's db-path. The subfolder is cargo-deny's name for its default
# https://github.com/RustSec/advisory-db (a hash of the URL, checked for 0.20.2: re-check it
# when VERSION changes, e.g. `cargo-deny -L debug check advisories` prints the path it opens).
DBS="$CACHE/advisory-db"
DB="$DBS/advisory-db-3157b0e258782691"
SNAPSHOT=../shared/rustsec-advisory-db

# Install once (compiles from crates.io, a few minutes); reuse while the version matches.
if [[ "$("$DENY" --version 2>/dev/null)" != "cargo-deny $VERSION" ]]; then
  time CARGO_TARGET_DIR="$CACHE/target-deny" \
    cargo install --locked --force "cargo-deny@$VERSION" --root "$ROOT"
fi
"$DENY" --version

checks=(licenses bans sources)
if [[ -d "$SNAPSHOT/crates" ]]; then
  # The live database can't be fetched: lay the shared snapshot (read-only there) where
  # cargo-deny expects its clone, as a git checkout dated to the snapshot, so that
  # maximum-db-staleness measures the snapshot's real age.
  day=$(grep -oEm1 '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$SNAPSHOT/SNAPSHOT.md" || date -u +%F)
  rm -rf "$DB" && mkdir -p "$DBS" && cp -R "$SNAPSHOT" "$DB" && chmod -R u+w "$DB"
  (
    export GIT_AUTHOR_DATE="${day}T00:00:00Z" GIT_COMMITTER_DATE="${day}T00:00:00Z"
    g() { git -C "$DB" -c init.defaultBranch=main -c user.name=ci -c user.email=ci@localhost -c commit.gpgsign=false "$@"; }
    g init -q && g add -A && g commit -qm "RustSec advisory-db snapshot of $day"
  )
  touch -d "$day" "$DB/.git/HEAD" # cargo-deny takes the newer of the commit's and HEAD's times
  echo "advisories: RustSec advisory-db snapshot of $day (offline copy from $SNAPSHOT)"
  checks=(advisories "${checks[@]}")
else
  echo "NOTICE: $SNAPSHOT not found: skipping the advisories check only"
fi

# The graph covers every platform, so crates no local build downloads are needed too
# (crates.io is reachable; the advisory database is not).
cargo fetch --locked >/dev/null
time "$DENY" --offline --locked check "${checks[@]}"
