#!/usr/bin/env bash
# Provision a private glibc/libstdc++ runtime when the host's is too old for the TFX stack.
#
# ml-metadata and tensorflow-data-validation 1.21 ship only manylinux_2_39 wheels whose
# extensions need GLIBC_2.38 and CXXABI_1.3.15. Debian 12 has neither. Instead of touching
# the system, we unpack Debian 13's libc6, libstdc++6 and libgcc-s1 into a private folder
# and run the venv's interpreter through that folder's dynamic loader (see
# scripts/bootstrap.sh). The mirror is taken from the host's own apt configuration, so no
# host name is hard-coded here.
#
# Usage: provision_runtime.sh DEST     (prints nothing to stdout unless provisioning)
# Exit 0 and writes DEST/.ready when the runtime is in place (or not needed: DEST/.not-needed).
set -euo pipefail

dest=${1:?usage: provision_runtime.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

host_glibc_ok() {
  local v
  v=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
  # sort -V puts the smaller first: ok when 2.38 <= v
  [ "$(printf '%s\n2.38\n' "$v" | sort -V | head -n1)" = "2.38" ]
}

host_libstdcxx_ok() {
  local lib
  lib=$(ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
  [ -n "$lib" ] && grep -aq 'CXXABI_1\.3\.15' "$lib"
}

if [ -f "$dest/.ready" ] || [ -f "$dest/.not-needed" ]; then
  exit 0
fi

if host_glibc_ok && host_libstdcxx_ok; then
  touch "$dest/.not-needed"
  exit 0
fi

echo "==> host glibc/libstdc++ too old for the TFX stack; provisioning a private runtime in $dest" >&2

# The host's Debian mirror, read from its deb822 sources (first URIs line of the main archive).
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  echo "error: no Debian mirror found in /etc/apt; cannot provision the private runtime" >&2
  exit 1
fi

work="$dest/.apt"
rm -rf "$work" "$dest/root"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$dest/root"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$work/sources.list"

apt_opts=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download libc6 libstdc++6 libgcc-s1 >&2)
for deb in "$work/debs"/*.deb; do
  dpkg -x "$deb" "$dest/root"
done

loader=$(find "$dest/root" -name 'ld-linux-x86-64.so.2' -type f -o -name 'ld-linux-x86-64.so.2' -type l | head -n1)
libdir="$dest/root/usr/lib/x86_64-linux-gnu"
[ -d "$libdir" ] || libdir="$dest/root/lib/x86_64-linux-gnu"
if [ -z "$loader" ] || [ ! -e "$libdir/libc.so.6" ]; then
  echo "error: unpacked runtime is incomplete (loader or libc.so.6 missing under $dest/root)" >&2
  exit 1
fi
printf 'LOADER=%s\nLIBDIR=%s\n' "$loader" "$libdir" >"$dest/runtime.env"
rm -rf "$work"
touch "$dest/.ready"
echo "==> private runtime ready: $(grep -c . "$dest/runtime.env") paths in $dest/runtime.env" >&2
