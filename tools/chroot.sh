#!/usr/bin/env bash
# Build (or reuse) a Debian chroot for one test platform and run a command in it.
#
# Usage: tools/chroot.sh PROFILE [--rebuild] [-- COMMAND [ARG...]]
#
#   PROFILE     qgis340   Debian 13 "trixie": QGIS 3.40 LTR, GDAL 3.10
#               qgis344   Debian sid: QGIS 3.44, GDAL 3.13
#               fresh12   a fresh Debian 12 "bookworm" minbase system (git, make and
#                         ca-certificates only), as a newcomer's machine: every run gets a
#                         new copy of the cached base, this checkout is cloned to
#                         /root/streaming_mosaic and COMMAND runs there as root
#   --rebuild   delete the cached chroot and build it again from scratch
#   COMMAND     run in the chroot; the script exits with its status. For qgis340 and
#               qgis344 the checkout is bind-mounted at /src/streaming_mosaic and COMMAND
#               runs there. Without a command the chroot is only built.
#
# Environment:
#   SM_CHROOT_DIR   where chroots are cached (default /var/cache/streaming-mosaic)
#   SM_MIRROR       Debian mirror (default: the host's apt mirror, else deb.debian.org)
#   SM_*, BENCH_*   passed through to COMMAND (qgis340 and qgis344)
#
# Must run as root. All mounts are made in a private mount namespace (when
# unshare(1) works) and are also unmounted explicitly on exit, so nothing is
# left mounted under the chroot, even after a failure or Ctrl-C.

# shellcheck disable=SC2317  # functions below are called from traps
set -Eeuo pipefail

readonly DEFAULT_MIRROR=http://deb.debian.org/debian
readonly SRC_IN_CHROOT=/src/streaming_mosaic
readonly QGIS_PACKAGES=(
    qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-pytest
    python3-rasterio python3-matplotlib python3-venv python3-setuptools make git xvfb xauth
    zip time procps
)
readonly CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly MARKER_NAME=.streaming-mosaic-ready  # written last: install finished
readonly STAMP_NAME=.streaming-mosaic-chroot  # written first: dir is ours to delete

log() { printf 'chroot %s: %s\n' "${PROFILE:-}" "$*" >&2; }
die() { printf 'chroot %s: error: %s\n' "${PROFILE:-}" "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

# ---------------------------------------------------------------- arguments
ORIG_ARGS=("$@")
PROFILE=${1:-}
case $PROFILE in
    qgis340) SUITE=trixie; PACKAGES=("${QGIS_PACKAGES[@]}"); LABEL="QGIS 3.40 (Debian 13)" ;;
    qgis344) SUITE=sid; PACKAGES=("${QGIS_PACKAGES[@]}"); LABEL="QGIS 3.44 (Debian sid)" ;;
    fresh12) SUITE=bookworm; PACKAGES=(git make ca-certificates); LABEL="fresh Debian 12" ;;
    -h|--help) usage; exit 0 ;;
    *) PROFILE=; die "usage: tools/chroot.sh qgis340|qgis344|fresh12 [--rebuild] [-- COMMAND...]" ;;
esac
shift
REBUILD=0
CMD=()
while (($#)); do
    case $1 in
        --rebuild) REBUILD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; CMD=("$@"); break ;;
        *) die "unexpected argument '$1' (the command goes after --)" ;;
    esac
done
# Bump when the build recipe changes: a chroot built by another recipe is rebuilt.
readonly RECIPE="v2 ${SUITE} minbase ${PACKAGES[*]}"

if [[ $(id -u) -ne 0 ]]; then
    die "root is needed (to build the chroot and mount into it); run as root, e.g. via sudo"
fi

SCRIPT=$(readlink -f -- "${BASH_SOURCE[0]}")
REPO_ROOT=$(cd -- "$(dirname -- "$SCRIPT")/.." && pwd -P)

CACHE=${SM_CHROOT_DIR:-/var/cache/streaming-mosaic}
[[ $CACHE == /* ]] || die "SM_CHROOT_DIR must be an absolute path (got '$CACHE')"
CACHE=$(realpath -m -- "$CACHE")
CHROOT=$CACHE/$SUITE-$PROFILE
case $CHROOT in
    /|/bin|/boot|/dev|/etc|/home|/lib*|/media|/mnt|/opt|/proc|/root|/run|/sbin|/srv|/sys|/tmp|/usr|/usr/*|/var|/var/cache|/work|"$REPO_ROOT"|"$REPO_ROOT"/*)
        die "refusing to use '$CHROOT' as the chroot directory" ;;
esac
MARKER=$CHROOT/$MARKER_NAME
STAMP=$CHROOT/$STAMP_NAME

# ---------------------------------------------------- private mount namespace
# Re-exec inside a private mount namespace: every mount made below then lives
# only there and vanishes with this process, whatever happens to it.
if [[ -z ${_SM_CHROOT_IN_NS:-} ]]; then
    if unshare --mount --propagation private true 2>/dev/null; then
        export _SM_CHROOT_IN_NS=1
        exec unshare --mount --propagation private -- bash "$SCRIPT" "${ORIG_ARGS[@]}"
    fi
    log "warning: unshare(1) unavailable; mounting in the host namespace (cleaned up by trap)"
    _SM_CHROOT_IN_NS=0
fi
# make sure nothing we mount propagates back (no-op if already private)
if [[ $_SM_CHROOT_IN_NS == 1 ]]; then
    mount --make-rprivate / 2>/dev/null || true
fi

# ------------------------------------------------------------------ helpers
# Mount points strictly below (or at, with "self") $1, deepest first.
mounts_under() {
    local dir=$1 self=${2:-} t
    findmnt -rn -o TARGET | while IFS= read -r t; do
        t=$(printf '%b' "$t")  # findmnt -r escapes blanks etc. as \xNN
        if [[ $t == "$dir"/* || ( -n $self && $t == "$dir" ) ]]; then
            printf '%s\n' "$t"
        fi
    done | sort -r -u
}

unmount_all_under() {
    local dir=$1 t left
    for _ in 1 2 3; do
        left=$(mounts_under "$dir")
        [[ -z $left ]] && return 0
        while IFS= read -r t; do
            umount -- "$t" 2>/dev/null || umount -l -- "$t" 2>/dev/null || true
        done <<<"$left"
    done
    left=$(mounts_under "$dir")
    if [[ -n $left ]]; then
        log "warning: still mounted under $dir:"$'\n'"$left"
        return 1
    fi
}

# Kill processes left running inside the chroot (e.g. a stray Xvfb), but only
# ones in our own mount namespace.
kill_chroot_processes() {
    local sig pid root myns pids
    myns=$(readlink /proc/$$/ns/mnt 2>/dev/null || true)
    for sig in TERM KILL; do
        pids=()
        for pid in /proc/[0-9]*; do
            pid=${pid#/proc/}
            [[ $pid == "$$" ]] && continue
            root=$(readlink "/proc/$pid/root" 2>/dev/null) || continue
            [[ $root == "$CHROOT" || $root == "$CHROOT"/* ]] || continue
            [[ $(readlink "/proc/$pid/ns/mnt" 2>/dev/null) == "$myns" ]] || continue
            pids+=("$pid")
        done
        ((${#pids[@]})) || return 0
        log "stopping ${#pids[@]} leftover process(es) in the chroot (SIG$sig)"
        kill -s "$sig" "${pids[@]}" 2>/dev/null || true
        sleep 2
    done
}

XDG_DIR_HOST=
RUN_COPY=      # fresh12: this run's copy of the cached base, deleted on exit
OWN_CHROOT=0   # set once we hold the lock: only then may cleanup touch mounts
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if ((OWN_CHROOT)) && [[ -d $CHROOT ]]; then
        kill_chroot_processes
        if ! unmount_all_under "$CHROOT"; then
            ((rc != 0)) || rc=1
        fi
    fi
    [[ -n $XDG_DIR_HOST && -d $XDG_DIR_HOST ]] && rm -rf --one-file-system -- "$XDG_DIR_HOST"
    if [[ -n $RUN_COPY && -d $RUN_COPY && -z $(mounts_under "$RUN_COPY") ]]; then
        rm -rf --one-file-system -- "$RUN_COPY"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM
trap 'exit 129' HUP

# Mount what a chroot needs. Non-recursive binds only, so unmounting is simple.
mount_chroot_fs() {
    mkdir -p "$CHROOT"/{proc,sys,dev,tmp}
    mount -t proc -o nosuid,nodev,noexec proc "$CHROOT/proc"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$CHROOT/sys" 2>/dev/null \
        || mount --bind /sys "$CHROOT/sys" 2>/dev/null \
        || log "warning: could not mount /sys in the chroot"
    mount --bind /dev "$CHROOT/dev"
    mkdir -p "$CHROOT/dev/pts" "$CHROOT/dev/shm" 2>/dev/null || true
    if [[ -d /dev/pts ]]; then
        mount --bind /dev/pts "$CHROOT/dev/pts" 2>/dev/null \
            || log "warning: could not mount /dev/pts in the chroot"
    fi
    # a private, writable /dev/shm (Python multiprocessing needs one)
    mount -t tmpfs -o nosuid,nodev,mode=1777,size=50% shm "$CHROOT/dev/shm" 2>/dev/null \
        || mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$CHROOT/dev/shm"
    chmod 1777 "$CHROOT/tmp"
    # DNS for apt: a copy of the host's resolver config
    rm -f "$CHROOT/etc/resolv.conf"
    if [[ -e /etc/resolv.conf ]]; then
        cp -L /etc/resolv.conf "$CHROOT/etc/resolv.conf"
    else
        : >"$CHROOT/etc/resolv.conf"
    fi
    # HTTPS (pip) trusts what the host trusts: a network that reaches PyPI through a
    # proxy with its own certificate authority works in the chroot as on the host.
    if [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
        mkdir -p "$CHROOT/etc/ssl/certs"
        cp -L /etc/ssl/certs/ca-certificates.crt "$CHROOT/etc/ssl/certs/ca-certificates.crt"
    fi
}

# Run a command in the chroot with a clean environment (build steps).
in_chroot() {
    env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        chroot "$CHROOT" "$@"
}

host_mirror() {
    local m=
    if [[ -n ${SM_MIRROR:-} ]]; then
        printf '%s\n' "$SM_MIRROR"; return
    fi
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        m=$(awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }' \
            /etc/apt/sources.list.d/debian.sources | grep -E '^https?://' | grep -v -- '-security' | head -n1 || true)
    fi
    if [[ -z $m && -r /etc/apt/sources.list ]]; then
        m=$(sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?:\/\/[^[:space:]]+).*/\2/p' \
            /etc/apt/sources.list | grep -v -- '-security' | head -n1 || true)
    fi
    printf '%s\n' "${m:-$DEFAULT_MIRROR}"
}

# Delete the chroot directory, refusing if anything is still mounted below it
# or if it does not look like one of ours.
remove_chroot() {
    [[ -e $CHROOT ]] || return 0
    unmount_all_under "$CHROOT" || die "cannot unmount everything under $CHROOT; not deleting it"
    local left
    left=$(mounts_under "$CHROOT")
    [[ -z $left ]] || die "still mounted under $CHROOT, not deleting it:"$'\n'"$left"
    if [[ -n $(mounts_under "$CHROOT" self) ]]; then
        die "$CHROOT is itself a mount point; not deleting it (remove it by hand)"
    fi
    if [[ ! -e $STAMP && ! -e $MARKER && -n $(ls -A -- "$CHROOT" 2>/dev/null) ]]; then
        die "$CHROOT exists but was not made by this script; not deleting it (remove it by hand)"
    fi
    log "removing old chroot $CHROOT"
    rm -rf --one-file-system -- "$CHROOT"
    [[ ! -e $CHROOT ]] || die "could not remove $CHROOT completely"
}

build_chroot() {
    local t0 mirror
    t0=$(date +%s)
    remove_chroot

    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap on the host"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            debootstrap >&2
    fi
    mirror=$(host_mirror)

    mkdir -p "$CHROOT"
    printf 'streaming_mosaic %s chroot, made by tools/chroot.sh\n' "$LABEL" >"$STAMP"
    log "debootstrap --variant=minbase $SUITE $CHROOT $mirror (a few minutes)"
    debootstrap --variant=minbase "$SUITE" "$CHROOT" "$mirror" >&2 \
        || die "debootstrap failed (see $CHROOT/debootstrap/debootstrap.log if present)"
    # debootstrap may leave its own /proc or /sys mounts behind on failure
    unmount_all_under "$CHROOT" || true

    # no daemons started by package scripts; lean installs
    printf '#!/bin/sh\nexit 101\n' >"$CHROOT/usr/sbin/policy-rc.d"
    chmod 755 "$CHROOT/usr/sbin/policy-rc.d"
    cat >"$CHROOT/etc/apt/apt.conf.d/90streaming-mosaic" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "5";
Acquire::Check-Valid-Until "false";
Dpkg::Options { "--force-confdef"; "--force-confold"; };
EOF
    cat >"$CHROOT/etc/dpkg/dpkg.cfg.d/90streaming-mosaic-nodoc" <<'EOF'
path-exclude=/usr/share/man/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/info/*
EOF

    mount_chroot_fs
    log "apt-get update in the chroot"
    in_chroot apt-get update -q >&2
    log "installing ${PACKAGES[*]} in the chroot (${#PACKAGES[@]} packages + dependencies; several minutes)"
    in_chroot apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2
    in_chroot apt-get clean
    rm -rf "$CHROOT"/var/lib/apt/lists/*

    if [[ $PROFILE != fresh12 ]]; then
        log "checking the installation"
        in_chroot /usr/bin/env QT_QPA_PLATFORM=offscreen /usr/bin/python3 -c \
            'import qgis.core, osgeo.gdal; print("built QGIS", qgis.core.Qgis.QGIS_VERSION, "GDAL", osgeo.gdal.__version__)' >&2 \
            || die "QGIS python bindings do not import in the new chroot"
    fi
    unmount_all_under "$CHROOT" || die "could not unmount the build mounts"

    {
        printf 'recipe=%s\n' "$RECIPE"
        printf 'built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf 'mirror=%s\n' "$mirror"
    } >"$MARKER.tmp"
    mv -f "$MARKER.tmp" "$MARKER"
    log "chroot ready in $(( $(date +%s) - t0 ))s: $CHROOT ($(du -sh --one-file-system "$CHROOT" 2>/dev/null | cut -f1))"
}

chroot_is_ready() {
    [[ -f $MARKER ]] && grep -qxF "recipe=$RECIPE" "$MARKER" \
        && [[ -x $CHROOT/usr/bin/python3 ]]
}

# ---------------------------------------------------------------- locking
# Runs share the chroot (shared lock); building or deleting it needs the
# exclusive lock. In a private mount namespace other runs cannot disturb our
# mounts; without one, runs must not overlap (they would unmount each other's
# mounts), so they take the exclusive lock too.
if [[ $_SM_CHROOT_IN_NS == 1 ]]; then RUN_LOCK=-s; else RUN_LOCK=-x; fi
lock() {  # lock -s|-x
    if ! flock -n "$1" 9; then
        log "waiting for another tools/chroot.sh using $CHROOT"
        flock "$1" 9
    fi
}
mkdir -p "$(dirname -- "$CHROOT")"
exec 9>"$CHROOT.lock"
lock "$RUN_LOCK"
OWN_CHROOT=1

# ----------------------------------------------------------------- build
if ((REBUILD)) || ! chroot_is_ready; then
    lock -x   # not atomic: check again once we hold it
    if ((REBUILD)); then
        log "--rebuild: building $CHROOT from scratch"
        build_chroot
    elif chroot_is_ready; then
        log "reusing $CHROOT (built meanwhile by another run)"
    else
        if [[ -e $CHROOT ]]; then
            log "$CHROOT is incomplete or from an older recipe: rebuilding from scratch"
        else
            log "no chroot at $CHROOT yet: building it (about 2-20 minutes)"
        fi
        build_chroot
    fi
    lock "$RUN_LOCK"
else
    log "reusing $CHROOT"
fi

((${#CMD[@]})) || exit 0

# ------------------------------------------------------------------- run
ENV_VARS=(PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1)
[[ -n ${TERM:-} ]] && ENV_VARS+=(TERM="$TERM")

if [[ $PROFILE == fresh12 ]]; then
    # A newcomer's machine: a new copy of the base, the repository cloned under /root, no
    # variables of ours. Downloaded .debs are kept in a host folder to make reruns quick.
    RUN_COPY=$(mktemp -d "$CACHE/fresh12-run.XXXXXX")
    log "copying the cached base system to $RUN_COPY"
    cp -a "$CHROOT/." "$RUN_COPY/"
    rm -f "$RUN_COPY/$MARKER_NAME" "$RUN_COPY/$STAMP_NAME"
    CHROOT=$RUN_COPY
    mount_chroot_fs
    mkdir -p "$CACHE/apt-archives-$SUITE/partial" "$CHROOT/var/cache/apt/archives"
    mount --bind "$CACHE/apt-archives-$SUITE" "$CHROOT/var/cache/apt/archives"
    git clone -q "$REPO_ROOT" "$CHROOT/root/streaming_mosaic"
    WORKDIR=/root/streaming_mosaic
else
    mount_chroot_fs
    mkdir -p "$CHROOT$SRC_IN_CHROOT"
    mount --bind "$REPO_ROOT" "$CHROOT$SRC_IN_CHROOT"
    XDG_DIR_HOST=$(mktemp -d "$CHROOT/tmp/sm-xdg.XXXXXX")
    chmod 0700 "$XDG_DIR_HOST"
    ENV_VARS+=(QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR="${XDG_DIR_HOST#"$CHROOT"}")
    while IFS= read -r name; do
        ENV_VARS+=("$name=${!name}")
    done < <(compgen -e | grep -E '^(SM_|BENCH_)' || true)
    WORKDIR=$SRC_IN_CHROOT
fi

log "running in chroot ($LABEL), in $WORKDIR: ${CMD[*]}"
set +e
# shellcheck disable=SC2016  # $1/$@ are expanded by the chroot's sh
env -i "${ENV_VARS[@]}" "$(command -v chroot)" "$CHROOT" /bin/sh -c \
    'cd "$1" || exit 125; shift; exec "$@"' chroot-run "$WORKDIR" "${CMD[@]}"
rc=$?
set -e
((rc == 0)) || log "command exited with status $rc"
exit "$rc"
