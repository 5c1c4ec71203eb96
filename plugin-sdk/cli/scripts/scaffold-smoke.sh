#!/usr/bin/env bash
# The slow, real check of `aiplat-plugin create`: a new plugin outside this repository, installed
# with a REAL `npm install`, then its own test, type check, build, pack and verify.
#
#   plugin-sdk/cli/scripts/scaffold-smoke.sh --registry <url>
#       `create --registry <url>`: the scaffold's .npmrc takes the @aiplat packages from
#       <url>/npm/ (the registry's npm endpoint); everything else comes from npm's configured
#       registry. This is the check of a published SDK, test kit, core and CLI.
#   plugin-sdk/cli/scripts/scaffold-smoke.sh --local
#       The @aiplat packages are this checkout's workspaces, packed with `npm pack` and installed
#       from those files (package.json dependencies and overrides point at them); everything else
#       from npm's configured registry. Needs no aiplat registry.
#
# KEEP=1 keeps the scratch folder. Exit status: 0 when every step passed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CLI="$REPO/plugin-sdk/cli/bin/aiplat-plugin.mjs"
MODE="${1:-}"
REGISTRY="${2:-}"
case "$MODE" in
  --registry) [ -n "$REGISTRY" ] || { echo "usage: $0 --registry <url> | --local" >&2; exit 2; } ;;
  --local) ;;
  *) echo "usage: $0 --registry <url> | --local" >&2; exit 2 ;;
esac

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aiplat-scaffold-smoke-XXXXXX")"
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

# The child processes must not think they run under a test runner.
unset VITEST VITEST_MODE VITEST_POOL_ID VITEST_WORKER_ID NODE_ENV || true

if [ "$MODE" = --registry ]; then
  step "create smoke --registry $REGISTRY"
  node "$CLI" create smoke --dir "$WORK/smoke" --registry "$REGISTRY"
  cd "$WORK/smoke"
  cat .npmrc
else
  step "npm pack of the @aiplat workspaces"
  mkdir -p "$WORK/tarballs"
  (cd "$REPO" && npm pack --silent -w plugin-sdk -w plugin-sdk/testing -w plugin-sdk/cli -w core --pack-destination "$WORK/tarballs")
  ls -la "$WORK/tarballs"
  step "create smoke"
  node "$CLI" create smoke --dir "$WORK/smoke"
  cd "$WORK/smoke"
  # Every @aiplat package, direct or not (testing → core, cli → core and plugin-sdk), from the files.
  node - "$WORK/tarballs" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const dir = process.argv[2];
const file = (prefix) => {
  const name = fs.readdirSync(dir).find((f) => f.startsWith(prefix) && /^\d/.test(f.slice(prefix.length)));
  if (!name) throw new Error(`no ${prefix}* in ${dir}`);
  return `file:${path.join(dir, name)}`;
};
const tarballs = { '@aiplat/plugin-sdk': file('aiplat-plugin-sdk-'), '@aiplat/testing': file('aiplat-testing-'), '@aiplat/cli': file('aiplat-cli-'), '@aiplat/core': file('aiplat-core-') };
const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8'));
for (const section of ['dependencies', 'devDependencies']) for (const name of Object.keys(pkg[section])) if (tarballs[name]) pkg[section][name] = tarballs[name];
pkg.overrides = tarballs;
fs.writeFileSync('package.json', `${JSON.stringify(pkg, null, 2)}\n`);
EOF
fi

step "npm install (real)"
npm install --no-audit --no-fund
step "npm test"
npm test
step "npm run typecheck"
npm run typecheck
step "npm run build"
npm run build
step "npm run pack"
npm run pack -- --no-build
step "aiplat-plugin verify"
npx aiplat-plugin verify smoke-0.1.0.tgz --allow-unsigned
step "aiplat-plugin dev (until the core answers /api/v1/health)"
node_modules/.bin/aiplat-plugin dev --port 0 > dev.log 2>&1 &
DEV=$!
url=""
for _ in $(seq 1 240); do
  url="$(grep -o 'is running in a core at http://[^ ]*' dev.log | head -1 | sed 's/.* //')" || true
  [ -n "$url" ] && break
  kill -0 "$DEV" 2>/dev/null || break
  sleep 0.5
done
health=""
[ -n "$url" ] && health="$(curl -sf "$url/api/v1/health" || true)"
kill "$DEV" 2>/dev/null || true
wait "$DEV" 2>/dev/null || true
[ -n "$health" ] || { cat dev.log; echo "the dev core did not start or did not answer" >&2; exit 1; }
echo "$url/api/v1/health: $health"
step "passed"
