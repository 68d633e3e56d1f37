#!/bin/sh
# Device-agent containers: an sshd that edgeprune's SSH layer logs into as user `edgeprune`.
# The client key comes from $AUTHORIZED_KEYS or a file mounted at $KEYS. Host keys are made on the
# first start; keep /etc/ssh in a volume so the pinned key (`edgeprune devices trust`) stays valid.
set -eu

KEYS=/home/edgeprune/.ssh/authorized_keys
if [ -n "${AUTHORIZED_KEYS:-}" ]; then
    mkdir -p "$(dirname "$KEYS")"
    printf '%s\n' "$AUTHORIZED_KEYS" > "$KEYS"
    chown -R edgeprune:edgeprune "$(dirname "$KEYS")"
    chmod 700 "$(dirname "$KEYS")"
    chmod 600 "$KEYS"
fi
if [ ! -s "$KEYS" ]; then
    echo "no client key: set AUTHORIZED_KEYS or mount a file at $KEYS" >&2
    exit 2
fi
ssh-keygen -A
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e -p "${SSH_PORT:-2222}"
