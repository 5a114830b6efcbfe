# Sourced by .ci/setup.d/*.sh: `apt_install PKG...` installs what a setup step found missing.
#
# With TAPGATE_SETUP_CHECK=1 nothing is installed: each package is printed as
# `missing: PKG` and the setup step ends there (so steps that need the packages, such as
# adding a rustup target, run only when installing). Not root: `sudo -n`, which never prompts.
# Always non-interactive, so it works without a terminal and from a background shell.
apt_install() {
  if [ "${TAPGATE_SETUP_CHECK:-0}" = 1 ]; then
    [ $# -eq 0 ] || printf 'missing: %s\n' "$@"
    exit 0
  fi
  [ $# -gt 0 ] || return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq </dev/null
  "${sudo[@]}" apt-get install -y -qq "$@" </dev/null
}
