#!/bin/sh
# Install what a make target needs and is missing (Debian 12 / Ubuntu, apt).
# Usage: tools/ensure-deps.sh run|test|bench|screenshots
# Runs apt-get as root (or through sudo); prints what to install otherwise.
set -eu

PY=/usr/bin/python3
need=""
optional=""  # installed where the system's archive has them (else their tests skip, saying why)
want_moto=""
# moto's S3 server for the object-storage tests (Debian has no python3-moto).
MOTO_VENV=${MOTO_VENV:-/var/cache/streaming-mosaic/venv-moto}

want_pkg() { need="$need $1"; }
want_optional() { optional="$optional $1"; }
has_module() { [ -x "$PY" ] && "$PY" -c "import $1" >/dev/null 2>&1; }
has_cmd() { command -v "$1" >/dev/null 2>&1; }

# Everything needs QGIS, GDAL and numpy.
has_module qgis.core || want_pkg "qgis python3-qgis qgis-providers"
has_module osgeo.gdal || want_pkg python3-gdal
has_module numpy || want_pkg python3-numpy
has_cmd qgis_process.bin || want_pkg "qgis qgis-providers"
has_cmd gdalbuildvrt || want_pkg gdal-bin
has_cmd git || want_pkg git

for target in "$@"; do
    case $target in
        run)
            [ -x /usr/bin/time ] || want_pkg time ;;
        test)
            has_module pytest || want_pkg python3-pytest
            has_module rasterio || want_pkg python3-rasterio
            has_module ensurepip || want_pkg python3-venv
            has_module setuptools || want_pkg python3-setuptools
            has_module wheel || want_pkg python3-wheel
            has_cmd nginx || [ -x /usr/sbin/nginx ] || want_pkg nginx-light
            [ -x /usr/bin/time ] || want_pkg time
            has_module distributed || want_pkg python3-distributed
            has_module scipy || want_pkg python3-scipy
            has_cmd otbcli_Mosaic || want_optional otb-bin
            want_moto=1 ;;
        bench)
            has_module rasterio || want_pkg python3-rasterio
            has_cmd nginx || [ -x /usr/sbin/nginx ] || want_pkg nginx-light  # the remote case
            has_module matplotlib || want_pkg python3-matplotlib
            [ -x /usr/bin/time ] || want_pkg time ;;
        screenshots)
            has_module matplotlib || want_pkg python3-matplotlib
            has_cmd xvfb-run || want_pkg "xvfb xauth" ;;
        *) echo "ensure-deps: unknown target $target" >&2; exit 2 ;;
    esac
done

install_moto() {
    [ -n "$want_moto" ] || return 0
    [ -x "$MOTO_VENV/bin/moto_server" ] && return 0
    echo "ensure-deps: pip install moto[server] into $MOTO_VENV" >&2
    mkdir -p "$(dirname "$MOTO_VENV")"
    "$PY" -m venv --system-site-packages "$MOTO_VENV"
    "$MOTO_VENV/bin/pip" install -q "moto[server]" >/dev/null
}

[ -z "$need$optional" ] && { install_moto; exit 0; }
echo "ensure-deps: installing:$need$optional" >&2
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif has_cmd sudo; then
    SUDO="sudo"
else
    echo "ensure-deps: run as root, or install:$need" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$SUDO apt-get update -q >/dev/null
if [ -n "$need" ]; then
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $need >/dev/null
fi
for pkg in $optional; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then
        $SUDO apt-get install -y -q --no-install-recommends "$pkg" >/dev/null
    else
        echo "ensure-deps: $pkg is not in this system's archive; the tests that need it skip" >&2
    fi
done
install_moto
