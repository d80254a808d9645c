#!/usr/bin/env bash
# Make sure the real services the tests use are there and running. Idempotent; prints what it does.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {
  if pg_up; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "test-services: installing PostgreSQL (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
    # Tests connect as postgres over loopback without a password, as on the CI machines.
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  echo "test-services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  for _ in $(seq 1 30); do pg_up && return; sleep 1; done
  echo "test-services: PostgreSQL did not come up on 127.0.0.1:5432" >&2
  exit 1
}

# Dovecot: the IMAP tests start their own private instance (tests/imap_server.py) on a free loopback
# port; here we only install the binary and the unprivileged user its mail processes run as. The
# system service stays stopped (policy-rc.d on these machines; we never start it).
ensure_dovecot() {
  if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
    echo "test-services: installing Dovecot IMAP (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
  fi
  if ! id vmail >/dev/null 2>&1; then
    echo "test-services: creating the vmail user for the test Dovecot"
    useradd -r -M -s /usr/sbin/nologin vmail
  fi
}

# Chromium: the browser tests (tests/e2e) drive Debian's Chromium through Playwright; Playwright's own
# browser download is never used (`playwright install` is not run).
ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then return; fi
  echo "test-services: installing Chromium (Debian package) for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
}

ensure_postgres
ensure_dovecot
ensure_chromium
