#!/usr/bin/env bash
# The partition tests (bridge/tests/partition.rs, testkit/tests/netns.rs): `ip` (iproute2) to
# create network namespaces and veth links, and `nft` (nftables) for the cuts inside the lab's
# router namespace. They need root; without it they fail saying so.
set -euo pipefail
. "$(dirname "$0")/../apt.sh"
need=()
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
apt_install "${need[@]}"
