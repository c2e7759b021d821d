#!/bin/sh
# Install, on Debian or Ubuntu, the system packages samdesk's window needs:
# python3-venv, and every library Qt's X11 platform plugin (PySide6's
# Qt/plugins/platforms/libqxcb.so) links that a minimal image lacks, plus a font.
# Packages named as arguments are installed too (CI adds: xvfb xauth).
# Runs apt-get as root directly, else through sudo; does nothing when every
# package is already installed, and nothing where there is no apt-get.
# The same library -> package table is in samdesk/views/platform_check.py.
set -eu

PACKAGES="python3-venv
libegl1 libgl1 libglx0 libglvnd0 libopengl0
libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-glx0 libxcb-icccm4 libxcb-image0
libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0
libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xkb1
libxkbcommon0 libxkbcommon-x11-0 xkb-data
libdbus-1-3 libfontconfig1 libfreetype6 libglib2.0-0 zlib1g libzstd1 fonts-dejavu-core"

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-debian-deps: no apt-get (not Debian/Ubuntu), nothing installed;" \
        "Qt's X11 plugin needs xcb-cursor, xcb-icccm, xcb-keysyms, xkbcommon-x11 and EGL" \
        "from your system's packages" >&2
    exit 0
fi

installed() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=""
for package in $PACKAGES "$@"; do
    # Ubuntu 24.04 renamed some libraries (libglib2.0-0t64); apt maps the old name
    if ! installed "$package" && ! installed "${package}t64"; then
        missing="$missing $package"
    fi
done
if [ -z "$missing" ]; then
    echo "install-debian-deps: every system package is installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "install-debian-deps: needs root or sudo to install:$missing" >&2
    exit 1
fi

echo "install-debian-deps: installing$missing"
# shellcheck disable=SC2086 # word splitting of the package list is wanted
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
