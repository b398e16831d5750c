#!/usr/bin/env bash
# Installs what the test suite needs, then runs it. The suite starts its own PostgreSQL, clamd and
# SeaweedFS (S3) on free loopback ports and stops them afterwards: no service needs to be running.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_debs=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_debs+=(postgresql)
command -v clamd >/dev/null 2>&1 || [ -x /usr/sbin/clamd ] || need_debs+=(clamav-daemon)
command -v npm >/dev/null 2>&1 || need_debs+=(nodejs npm)  # the openid-client interoperability test, axe-core
# The browser tests (tests/browser) drive Debian's chromium with Playwright; Playwright never downloads a browser.
command -v chromium >/dev/null 2>&1 || need_debs+=(chromium)
# The mod_auth_openidc interoperability test runs a private Apache (apache2 -X) with Debian's module.
[ -x /usr/sbin/apache2 ] || need_debs+=(apache2)
[ -e /usr/lib/apache2/modules/mod_auth_openidc.so ] || need_debs+=(libapache2-mod-auth-openidc)
# tests/test_deploy.py checks deploy/haproxy.cfg with `haproxy -c`.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_debs+=(haproxy)
# The activation letter's PDF embeds DejaVu Sans (a Unicode TrueType font).
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_debs+=(fonts-dejavu-core)
if [ ${#need_debs[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_debs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The packages' own services are not used (the tests start private instances): don't start them.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_debs[@]}" >/dev/null
  [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[test]"  # the versions last tested

# Node's openid-client for the interoperability test (tests/interop), pinned by its package-lock.json.
if [ -f tests/interop/package-lock.json ]; then
  (cd tests/interop && npm ci --no-audit --no-fund --silent)
fi
# The FranceConnect stand-in (oidc-provider configured like FranceConnect) for tests/federation.
if [ -f tests/federation/package-lock.json ]; then
  (cd tests/federation && npm ci --no-audit --no-fund --silent)
fi
# axe-core, injected into the pages by the browser tests, pinned by its package-lock.json.
if [ -f tests/browser/package-lock.json ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

# Lint and types first: a finding fails the build before the suite runs (rules: pyproject.toml).
echo "ruff: lint" >&2
"$VENV/bin/ruff" check .
echo "mypy: types of vault/" >&2
"$VENV/bin/mypy"

exec "$VENV/bin/python" -m pytest "$@"
