#!/bin/sh
# Prepare this machine for the integration tier (tests/integration, ESS_INTEGRATION=1).
# Run as root (CI is root): installs OpenSSH server and client, iproute2 and rsync (the local
# backend's nodes are tested with scp, sftp -b and rsync -e ssh); sshd is NOT started here,
# the tests start their own sshd processes with their own config under a temp dir.
set -eu
if ! [ -x /usr/sbin/sshd ] || ! command -v ip >/dev/null 2>&1 || ! command -v rsync >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server \
        openssh-client iproute2 rsync
fi
# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd
chmod 0755 /run/sshd
/usr/sbin/sshd -V 2>&1 | head -1 || true
ip -V
