#!/bin/sh
# Prepare a board (Jetson, Raspberry Pi, any Debian/Ubuntu box) for edgeprune. Idempotent: every
# step checks first and says "ok" when there is nothing to do, so a second run changes nothing.
#
#   1. user     a dedicated login user (default: edgeprune; in group video where it exists)
#   2. key      your public key in that user's authorized_keys (--key FILE)
#   3. venv     PREFIX/venv with ONNX Runtime and NumPy for the agent (skipped when they import)
#   4. clocks   a systemd unit that sets stable clocks at boot, started now: the cpufreq governor
#               `performance`, and on a Jetson `nvpmodel -m MODE` + `jetson_clocks`
#   5. sudo     (only with --sudo) passwordless sudo for that user, so benchmark sessions can
#               store, set and restore clocks themselves. The session sets governors through
#               `sh -c`, so this amounts to root for the user: leave it out to rely on step 4.
#
# Usage (as root on the board):
#   sh provision.sh --key id_ed25519.pub [--user edgeprune] [--prefix /opt/edgeprune]
#                   [--packages "onnxruntime numpy"] [--ort-wheel URL] [--power-mode 0]
#                   [--python /usr/bin/python3] [--no-user] [--no-clocks] [--sudo]
# Then on the host: the `edgeprune devices add ...` line this script prints last.
# SYSTEMD_DIR and SUDOERS_DIR (default /etc/systemd/system, /etc/sudoers.d) and NO_SYSTEMCTL=1
# exist so the script can be tested without touching a real system's configuration.
set -eu

USER_NAME=edgeprune
PREFIX=/opt/edgeprune
PACKAGES="onnxruntime numpy"
ORT_WHEEL=""
POWER_MODE=0
PYTHON=/usr/bin/python3
KEY_FILE=""
DO_USER=1
DO_CLOCKS=1
DO_SUDO=0
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
SUDOERS_DIR=${SUDOERS_DIR:-/etc/sudoers.d}
NO_SYSTEMCTL=${NO_SYSTEMCTL:-0}

die() {
    echo "provision: $*" >&2
    exit 2
}

say() {
    printf '%-8s %s\n' "$1" "$2"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --user) USER_NAME=${2:?--user needs a name}; shift 2 ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --packages) PACKAGES=${2:?--packages needs a list}; shift 2 ;;
        --ort-wheel) ORT_WHEEL=${2:?--ort-wheel needs a URL or file}; shift 2 ;;
        --power-mode) POWER_MODE=${2:?--power-mode needs a number}; shift 2 ;;
        --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
        --key) KEY_FILE=${2:?--key needs a file}; shift 2 ;;
        --no-user) DO_USER=0; shift ;;
        --no-clocks) DO_CLOCKS=0; shift ;;
        --sudo) DO_SUDO=1; shift ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

case "$USER_NAME" in
    *[!A-Za-z0-9_.-]* | "" | -*) die "invalid user name '$USER_NAME'" ;;
esac
case "$POWER_MODE" in
    *[!0-9]* | "") die "--power-mode must be a number, got '$POWER_MODE'" ;;
esac
[ -x "$PYTHON" ] || die "$PYTHON not found: install python3 (and python3-venv) first"
[ -z "$KEY_FILE" ] || [ -r "$KEY_FILE" ] || die "cannot read the key file $KEY_FILE"
if [ "$DO_USER" = 1 ] || [ "$DO_CLOCKS" = 1 ] || [ "$DO_SUDO" = 1 ]; then
    [ "$(id -u)" = 0 ] || die "run as root (the user, clock and sudo steps need it), or pass --no-user --no-clocks"
fi

# 1. user ---------------------------------------------------------------------------------------
if [ "$DO_USER" = 1 ]; then
    if getent passwd "$USER_NAME" >/dev/null; then
        say user "ok: $USER_NAME exists"
    else
        useradd --create-home --shell /bin/bash "$USER_NAME"
        say user "created $USER_NAME"
    fi
    if getent group video >/dev/null && ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx video; then
        usermod -a -G video "$USER_NAME"
        say user "added $USER_NAME to group video (GPU device nodes)"
    fi
fi

# 2. key ----------------------------------------------------------------------------------------
if [ -n "$KEY_FILE" ]; then
    home=$(getent passwd "$USER_NAME" | cut -d: -f6)
    [ -n "$home" ] || die "user $USER_NAME does not exist (drop --no-user)"
    keys="$home/.ssh/authorized_keys"
    mkdir -p "$home/.ssh"
    touch "$keys"
    key=$(head -n 1 "$KEY_FILE")
    case "$key" in
        ssh-* | ecdsa-*) ;;
        *) die "$KEY_FILE does not look like a public key (give the .pub file)" ;;
    esac
    if grep -qxF "$key" "$keys"; then
        say key "ok: already authorized"
    else
        printf '%s\n' "$key" >>"$keys"
        say key "added to $keys"
    fi
    chmod 700 "$home/.ssh"
    chmod 600 "$keys"
    if [ "$DO_USER" = 1 ]; then
        chown -R "$USER_NAME:" "$home/.ssh"
    fi
fi

# 3. venv ---------------------------------------------------------------------------------------
VENV="$PREFIX/venv"
VPY="$VENV/bin/python"
modules=""
for p in $PACKAGES; do
    modules="$modules $(printf '%s' "$p" | sed 's/[=<>!~;[].*//; s/-/_/g')"
done
imports_ok() {
    # shellcheck disable=SC2086  # one argument per module name
    [ -x "$VPY" ] && "$VPY" -c 'import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]' $modules 2>/dev/null
}
if [ -x "$VPY" ]; then
    say venv "ok: $VENV exists"
else
    mkdir -p "$PREFIX"
    "$PYTHON" -m venv "$VENV" || die "creating $VENV failed: on Debian/Ubuntu install python3-venv"
    say venv "created $VENV"
fi
if imports_ok; then
    say packages "ok:$modules import"
else
    wanted=$PACKAGES
    if [ -n "$ORT_WHEEL" ]; then # the board's own ONNX Runtime wheel replaces the registry's
        wanted="$ORT_WHEEL"
        for p in $PACKAGES; do
            case "$p" in onnxruntime*) ;; *) wanted="$wanted $p" ;; esac
        done
    fi
    # shellcheck disable=SC2086  # the package list is split on purpose
    "$VPY" -m pip install --disable-pip-version-check --no-input $wanted
    imports_ok || die "$modules still do not import in $VPY (wheels for this board: --ort-wheel)"
    say packages "installed $PACKAGES"
fi
if [ "$DO_USER" = 1 ]; then
    chown -R "$USER_NAME:" "$PREFIX"
fi

# 4. clocks -------------------------------------------------------------------------------------
write_if_changed() { # FILE MODE: content on stdin; prints "written" or "unchanged"
    tmp="$1.tmp.$$"
    cat >"$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        echo unchanged
    else
        chmod "$2" "$tmp"
        mv "$tmp" "$1"
        echo written
    fi
}
if [ "$DO_CLOCKS" = 1 ]; then
    unit="$SYSTEMD_DIR/edgeprune-clocks.service"
    mkdir -p "$SYSTEMD_DIR"
    jetson=0
    [ -e /etc/nv_tegra_release ] && [ -x /usr/sbin/nvpmodel ] && jetson=1
    state=$(
        {
            echo "[Unit]"
            echo "Description=edgeprune: stable clocks for benchmarks"
            echo "After=multi-user.target"
            echo ""
            echo "[Service]"
            echo "Type=oneshot"
            echo "RemainAfterExit=yes"
            echo "ExecStart=/bin/sh -c 'for g in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do [ -f \"\$g\" ] && echo performance > \"\$g\"; done; true'"
            if [ "$jetson" = 1 ]; then
                echo "ExecStart=/usr/sbin/nvpmodel -m $POWER_MODE"
                echo "ExecStart=/usr/bin/jetson_clocks"
            fi
            echo ""
            echo "[Install]"
            echo "WantedBy=multi-user.target"
        } | write_if_changed "$unit" 644
    )
    if [ "$state" = written ]; then say clocks "wrote $unit"; else say clocks "ok: $unit unchanged"; fi
    if [ "$NO_SYSTEMCTL" != 1 ] && command -v systemctl >/dev/null; then
        systemctl daemon-reload
        systemctl enable --now edgeprune-clocks.service >/dev/null
        say clocks "enabled and started edgeprune-clocks.service"
    fi
fi

# 5. sudo ---------------------------------------------------------------------------------------
if [ "$DO_SUDO" = 1 ]; then
    mkdir -p "$SUDOERS_DIR"
    rule="$SUDOERS_DIR/edgeprune"
    state=$(printf '%s ALL=(root) NOPASSWD: ALL\n' "$USER_NAME" | write_if_changed "$rule" 440)
    if command -v visudo >/dev/null && ! visudo -cf "$rule" >/dev/null; then
        rm -f "$rule"
        die "the sudoers rule did not validate; nothing was kept"
    fi
    if [ "$state" = written ]; then say sudo "wrote $rule"; else say sudo "ok: $rule unchanged"; fi
fi

echo "on the host: edgeprune devices add NAME --host $(hostname) --user $USER_NAME --key PRIVATE_KEY --profile PROFILE --python $VPY"
