#!/usr/bin/env bash
# flightd on an emulated Raspberry Pi: a Debian bookworm arm64 root (the base of Raspberry Pi OS) run
# with qemu-user, orbitd's board install in it, a broker on this host. Not part of CI (it needs root,
# binfmt_misc, and minutes). See docs/boards.md, "The emulated Raspberry Pi".
#
#   sudo scripts/pi-emulated.sh [--cache DIR] [--rebuild] [--json]
#
# --cache DIR  where the root lives between runs (default $ORBITD_PI_CACHE, else /var/cache/orbitd):
#              DIR/pi-bookworm-arm64; building it takes about 6 minutes, reusing it seconds.
# --rebuild    build the root again from scratch (debootstrap).
# --json       the report as one JSON object (hil/emulated_pi.py).
#
# Needs (Debian): debootstrap qemu-user-static binfmt-support mosquitto; this repository's .venv with
# the test extras (scripts/test.sh) for the broker, the ground client and the reference run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

CACHE=${ORBITD_PI_CACHE:-/var/cache/orbitd}
REBUILD=0
REPORT_ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --cache) CACHE=$2; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        --json) REPORT_ARGS+=(--json); shift ;;
        *) echo "pi-emulated: unknown option $1" >&2; exit 2 ;;
    esac
done
ROOT=$CACHE/pi-bookworm-arm64
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { echo "pi-emulated: $*" >&2; }

[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, mount, chroot)"; exit 2; }
for tool in debootstrap chroot mount; do
    command -v $tool >/dev/null || { say "$tool missing: apt-get install -y debootstrap qemu-user-static binfmt-support"; exit 2; }
done
[ -x .venv/bin/python ] || { say "no .venv: run scripts/test.sh first (it installs the test extras)"; exit 2; }

# --- arm64 binaries through qemu-user (binfmt_misc) -------------------------------------------------
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64
fi

# --- the root file system (cached) ------------------------------------------------------------------
if [ "$REBUILD" = 1 ] || [ ! -x "$ROOT/usr/bin/python3" ]; then
    say "building $ROOT with debootstrap (bookworm arm64 minbase; about 6 minutes)"
    mkdir -p "$CACHE"
    rm -rf "$ROOT.partial"
    t0=$(date +%s)
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$ROOT.partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { say "debootstrap failed: see $CACHE/debootstrap.log"; exit 1; }
    rm -rf "$ROOT"
    mv "$ROOT.partial" "$ROOT"
    say "root built in $(( $(date +%s) - t0 )) s"
else
    say "reusing $ROOT"
fi
# pip inside the root reaches the index through this host's proxy CA; name resolution as here
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca.crt"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# An ARM /proc/cpuinfo (a Pi 4's: Cortex-A72, CPU part 0xd08): ONNX Runtime's cpuinfo library reads this
# file and crashes (NULL dereference) on the host's x86 one. Bound over the root's /proc/cpuinfo below.
FAKE=$CACHE/fake
mkdir -p "$FAKE"
{
    for n in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$n"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000abcdef01\n'
    printf 'Model\t\t: Raspberry Pi 4 Model B Rev 1.4 (emulated)\n'
} >"$FAKE/cpuinfo"

# --- mounts, undone on exit -------------------------------------------------------------------------
MOUNTED=()
cleanup() {
    local i
    for (( i=${#MOUNTED[@]}-1; i>=0; i-- )); do
        umount -R "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
bind() {  # bind(source, target, kind): proc | rbind | file
    if mountpoint -q "$2" && [ "$3" != file ]; then umount -R "$2"; fi
    case $3 in
        proc) mount -t proc proc "$2" ;;
        rbind) mount --rbind "$1" "$2"; mount --make-rslave "$2" ;;
        file) mount --bind "$1" "$2" ;;
    esac
    MOUNTED+=("$2")
}
bind proc "$ROOT/proc" proc
bind "$FAKE/cpuinfo" "$ROOT/proc/cpuinfo" file
bind /sys "$ROOT/sys" rbind
bind /dev "$ROOT/dev" rbind

# --- orbitd's board install in the root -------------------------------------------------------------
# The wheel is built here; its dependencies come from the package index as aarch64 wheels for the root's
# Python 3.11, downloaded by this host's pip (fast, and through its configuration), then installed in the
# root with pip --no-index: the same files `pip install orbitd` fetches on a Raspberry Pi.
WHEELS=$ROOT/opt/orbitd/wheels
rm -rf "$WHEELS"
mkdir -p "$WHEELS" "$ROOT/opt/orbitd/models" "$ROOT/var/lib/orbitd"
.venv/bin/pip wheel -q --no-deps -w "$WHEELS" "$REPO" >/dev/null 2>&1
WHEEL=$(basename "$(ls "$WHEELS"/orbitd-*.whl)")
say "downloading the aarch64 dependencies of $WHEEL"
.venv/bin/pip download -q --dest "$WHEELS" --only-binary=:all: --platform manylinux2014_aarch64 \
    --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp "$WHEELS/$WHEEL" \
    >"$CACHE/pip-download.log" 2>&1 || { say "pip download failed: see $CACHE/pip-download.log"; exit 1; }
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root \
    PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"; }
t0=$(date +%s)
[ -x "$ROOT/opt/orbitd/venv/bin/python" ] || in_root /usr/bin/python3 -m venv /opt/orbitd/venv
in_root /opt/orbitd/venv/bin/pip install -q --no-index --find-links /opt/orbitd/wheels "/opt/orbitd/wheels/$WHEEL"
in_root /opt/orbitd/venv/bin/pip install -q --no-index --no-deps --force-reinstall "/opt/orbitd/wheels/$WHEEL"
say "board install in the root: $(( $(date +%s) - t0 )) s; $(in_root /opt/orbitd/venv/bin/pip list 2>/dev/null | tail -n +3 | wc -l) distributions"
for absent in scipy matplotlib sgp4 onnx; do
    if in_root /opt/orbitd/venv/bin/python -c "import $absent" 2>/dev/null; then
        say "the board install holds $absent: it must not"; exit 1
    fi
done
rm -rf "$ROOT/opt/orbitd/models" && mkdir -p "$ROOT/opt/orbitd/models"
cp -r models/tile-int8 "$ROOT/opt/orbitd/models/"
rm -rf "$ROOT/var/lib/orbitd/flightd"

# --- the run ----------------------------------------------------------------------------------------
say "starting flightd in the root (qemu-user: expect tens of seconds to ready)"
.venv/bin/python -m hil.emulated_pi --root "$ROOT" "${REPORT_ARGS[@]}"
