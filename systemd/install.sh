#!/usr/bin/env bash
# Install storeedge on a store box: a venv under /opt/storeedge, the service user, the units,
# the udev rules and a default config. Idempotent: run it again to upgrade; an edited
# /etc/storeedge/agent.toml is never overwritten.
#
#   sudo systemd/install.sh              # the store agent
#   sudo systemd/install.sh --cloud      # also the cloud service unit (head-office hosts)
#   DESTDIR=/tmp/stage systemd/install.sh  # stage the tree only: no users on the host,
#                                          # no systemctl/udevadm (tests, image builds)
# Environment: PYTHON (default python3), STOREEDGE_PACKAGE (a wheel or source dir, default
# this checkout), STOREEDGE_PIP_ARGS (e.g. "--no-index --find-links /media/wheels").
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR:-}
ROOT=${ROOT%/}
PREFIX=/opt/storeedge
PYTHON=${PYTHON:-python3}
PACKAGE=${STOREEDGE_PACKAGE:-$SRC}
# shellcheck disable=SC2206  # word splitting of the pip options is intended
PIP_ARGS=(${STOREEDGE_PIP_ARGS:-})
WITH_CLOUD=0

for arg in "$@"; do
    case "$arg" in
        --cloud) WITH_CLOUD=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

say() { echo "storeedge-install: $*" >&2; }

# Copy only when the content differs, so a second run changes nothing and says so.
put() {
    local mode=$1 from=$2 to=$ROOT$3
    if [ -f "$to" ] && cmp -s "$from" "$to"; then
        chmod "$mode" "$to"
        return 0
    fi
    install -D -m "$mode" "$from" "$to"
    say "installed $3"
}

# 1. The venv and the package (upgraded in place on a re-run).
if [ ! -x "$ROOT$PREFIX/venv/bin/python" ]; then
    say "creating $PREFIX/venv"
    "$PYTHON" -m venv "$ROOT$PREFIX/venv"
fi
"$ROOT$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --upgrade "${PIP_ARGS[@]}" "$PACKAGE"
for doc in INSTALL.md FIELD-GUIDE.md RUNBOOK.md CONFIG.md DEVICES.md; do
    if [ -f "$SRC/docs/$doc" ]; then put 0644 "$SRC/docs/$doc" "$PREFIX/docs/$doc"; fi
done

# 2. Units, accounts, udev rules.
put 0644 "$SRC/systemd/storeedge-agent.service" /etc/systemd/system/storeedge-agent.service
if [ "$WITH_CLOUD" = 1 ]; then
    put 0644 "$SRC/systemd/storeedge-cloud.service" /etc/systemd/system/storeedge-cloud.service
fi
put 0644 "$SRC/systemd/storeedge.sysusers" /usr/lib/sysusers.d/storeedge.conf
put 0644 "$SRC/hardware/udev/99-storeedge.rules" /etc/udev/rules.d/99-storeedge.rules

if command -v systemd-sysusers >/dev/null; then
    if [ -n "$ROOT" ]; then
        mkdir -p "$ROOT/etc"
        systemd-sysusers --root="$ROOT"  # reads $ROOT/usr/lib/sysusers.d
    else
        systemd-sysusers /usr/lib/sysusers.d/storeedge.conf
    fi
elif [ -z "$ROOT" ]; then  # no systemd-sysusers: the same accounts by hand
    getent group dialout >/dev/null || groupadd --system dialout
    getent group input >/dev/null || groupadd --system input
    id storeedge >/dev/null 2>&1 || useradd --system --home-dir /var/lib/storeedge \
        --shell /usr/sbin/nologin --user-group storeedge
    usermod -aG dialout,input storeedge
    if [ "$WITH_CLOUD" = 1 ]; then
        id storeedge-cloud >/dev/null 2>&1 || useradd --system --user-group \
            --home-dir /var/lib/storeedge-cloud --shell /usr/sbin/nologin storeedge-cloud
    fi
fi

# 3. The default config, only if there is none: the field engineer's edits are kept.
if [ ! -e "$ROOT/etc/storeedge/agent.toml" ]; then
    install -D -m 0640 "$SRC/systemd/agent.example.toml" "$ROOT/etc/storeedge/agent.toml"
    say "installed /etc/storeedge/agent.toml (edit it: storeedge agent discover helps)"
fi
if [ -z "$ROOT" ]; then
    chgrp storeedge /etc/storeedge /etc/storeedge/agent.toml
    chmod 0750 /etc/storeedge
    # StateDirectory= makes it at first start; enrollment comes before that.
    install -d -m 0700 -o storeedge -g storeedge /var/lib/storeedge
fi
mkdir -p "$ROOT/usr/local/bin"
ln -sfn "$PREFIX/venv/bin/storeedge" "$ROOT/usr/local/bin/storeedge"

# 4. Tell the running system, unless only staging.
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    udevadm control --reload && udevadm trigger --subsystem-match=tty --subsystem-match=input
    systemctl enable storeedge-agent.service
    if [ "$WITH_CLOUD" = 1 ]; then systemctl enable storeedge-cloud.service; fi
    say "enabled storeedge-agent; next: storeedge agent enroll --cloud URL --code CODE,"
    say "then systemctl start storeedge-agent && storeedge agent doctor"
fi
say "done"
