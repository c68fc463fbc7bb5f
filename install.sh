#!/bin/sh
# Installer for dso, the Docker Secret Operator.
#
# Usage:
#   curl -fsSL https://github.com/dso-project/dso/releases/latest/download/install.sh | sh
#   curl -fsSL .../install.sh | DSO_VERSION=v0.1.0 sh
#   sh install.sh --uninstall          (or: curl ... | sh -s -- --uninstall)
#
# It downloads dso-<os>-<arch>[-musl] and SHA256SUMS from one release, verifies the
# binary's SHA-256 against SHA256SUMS, and installs it as <install dir>/dso. It never
# installs a binary whose checksum it could not verify, and does nothing when the
# installed dso already matches the release. It also links <cli plugin dir>/docker-dso
# to it, so `docker dso status` works like `dso status`. Needs only a POSIX sh, curl or
# wget, and sha256sum, shasum or openssl.
#
# --uninstall removes what an install put there: <install dir>/dso and the docker-dso link
# (only when it points at that dso). It leaves /etc/dso (your config and secrets) alone.
#
# Environment variables:
#   - DSO_VERSION
#     Release tag to install, e.g. "v0.1.0". Default: the latest release.
#   - DSO_DOWNLOAD_URL
#     Base URL that holds the release files (the binaries and SHA256SUMS). Overrides
#     DSO_VERSION. Default: https://github.com/dso-project/dso/releases/latest/download,
#     or https://github.com/dso-project/dso/releases/download/$DSO_VERSION when
#     DSO_VERSION is set.
#   - DSO_INSTALL_DIR
#     Directory to install dso into (created if missing). Default: /usr/local/bin when
#     writable by the current user, else $HOME/.local/bin.
#   - DSO_CLI_PLUGIN_DIR
#     Docker CLI plugins directory for the docker-dso link, or "none" for no link.
#     Default: /usr/local/lib/docker/cli-plugins when the install dir is /usr/local/bin,
#     else $HOME/.docker/cli-plugins.
#   - DSO_OS, DSO_ARCH
#     Override the detected OS (uname -s) and architecture (uname -m). Mainly for tests.
#   - DSO_LIBC
#     "glibc" or "musl": override the C library detection.
#   - TMPDIR
#     Where the temporary download directory is created. Default: /tmp. It is removed
#     on exit, whatever the outcome.

set -eu

GITHUB_RELEASES=https://github.com/dso-project/dso/releases

info() { echo "[dso-install] $*"; }
fatal() {
    echo "[dso-install] ERROR: $*" >&2
    exit 1
}

# --- cleanup: the temp dir and any half-copied binary go away on every exit path ---
TMP_DIR=
PARTIAL=
cleanup() {
    [ -n "$TMP_DIR" ] && rm -rf "$TMP_DIR"
    [ -n "$PARTIAL" ] && rm -f "$PARTIAL"
    return 0
}
trap cleanup EXIT
# An exit inside these handlers runs the EXIT trap, so interrupted runs clean up too.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- platform ---
detect_os() {
    os=$(echo "${DSO_OS:-$(uname -s)}" | tr '[:upper:]' '[:lower:]')
    case "$os" in
        linux) OS=linux ;;
        *) fatal "unsupported operating system '$os': dso runs on Linux only" ;;
    esac
}

detect_arch() {
    arch=${DSO_ARCH:-$(uname -m)}
    case "$arch" in
        x86_64 | amd64 | x64) ARCH=x64 ;;
        aarch64 | arm64) ARCH=arm64 ;;
        *) fatal "unsupported architecture '$arch': dso is built for x86_64 (amd64) and aarch64 (arm64)" ;;
    esac
}

# musl (Alpine and friends) needs the -musl build. ldd says which libc it belongs to; a
# musl loader alone is not proof, since glibc distros can install musl alongside.
detect_libc() {
    case "${DSO_LIBC:-}" in
        glibc | musl) LIBC=$DSO_LIBC; return ;;
        '') ;;
        *) fatal "DSO_LIBC must be 'glibc' or 'musl', not '$DSO_LIBC'" ;;
    esac
    ldd_out=$(ldd --version 2>&1 || true)
    case "$ldd_out" in
        *musl*) LIBC=musl; return ;;
        *GLIBC* | *"GNU libc"* | *"GNU C Library"*) LIBC=glibc; return ;;
    esac
    for loader in /lib/ld-musl-*; do
        [ -e "$loader" ] && { LIBC=musl; return; }
    done
    LIBC=glibc
}

# --- download ---
download() { # url dest
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$2" "$1" || fatal "download failed: $1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1" || fatal "download failed: $1"
    else
        fatal "need curl or wget to download dso"
    fi
}

release_url() {
    if [ -n "${DSO_DOWNLOAD_URL:-}" ]; then
        echo "${DSO_DOWNLOAD_URL%/}"
        return
    fi
    case "${DSO_VERSION:-latest}" in
        latest) echo "$GITHUB_RELEASES/latest/download" ;;
        *[!A-Za-z0-9._+-]*) fatal "DSO_VERSION '$DSO_VERSION' is not a release tag" ;;
        *) echo "$GITHUB_RELEASES/download/$DSO_VERSION" ;;
    esac
}

# --- checksums ---
sha256_of() { # file
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{print $1}'
    elif command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha256 <"$1" | awk '{print $NF}'
    else
        fatal "need sha256sum, shasum or openssl to verify the download"
    fi
}

# Prints the hash SHA256SUMS lists for $2 ("<hex>  <name>", or "<hex> *<name>" in binary mode).
expected_sha256() { # sums-file name
    awk -v name="$2" '$2 == name || $2 == "*" name { print tolower($1); exit }' "$1"
}

# --- install dir ---
choose_install_dir() {
    if [ -n "${DSO_INSTALL_DIR:-}" ]; then
        INSTALL_DIR=$DSO_INSTALL_DIR
    elif [ -d /usr/local/bin ] && [ -w /usr/local/bin ]; then
        INSTALL_DIR=/usr/local/bin
    else
        [ -n "${HOME:-}" ] || fatal "/usr/local/bin is not writable and HOME is not set: set DSO_INSTALL_DIR"
        INSTALL_DIR=$HOME/.local/bin
    fi
    mkdir -p "$INSTALL_DIR" || fatal "cannot create $INSTALL_DIR"
    # Absolute, so the docker-dso link works from anywhere.
    INSTALL_DIR=$(cd "$INSTALL_DIR" && pwd) || fatal "cannot enter $INSTALL_DIR"
    [ -w "$INSTALL_DIR" ] || fatal "$INSTALL_DIR is not writable: run as a user who can write it, or set DSO_INSTALL_DIR"
}

# --- docker CLI plugin link ---
choose_cli_plugin_dir() {
    if [ -n "${DSO_CLI_PLUGIN_DIR:-}" ]; then
        CLI_PLUGIN_DIR=$DSO_CLI_PLUGIN_DIR
    elif [ "$INSTALL_DIR" = /usr/local/bin ]; then
        CLI_PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
    elif [ -n "${HOME:-}" ]; then
        CLI_PLUGIN_DIR=$HOME/.docker/cli-plugins
    else
        CLI_PLUGIN_DIR=none
    fi
}

link_cli_plugin() {
    [ "$CLI_PLUGIN_DIR" = none ] && return 0
    if mkdir -p "$CLI_PLUGIN_DIR" 2>/dev/null && ln -sf "$TARGET" "$CLI_PLUGIN_DIR/docker-dso" 2>/dev/null; then
        info "linked $CLI_PLUGIN_DIR/docker-dso -> $TARGET (docker dso ...)"
    else
        info "note: could not link $CLI_PLUGIN_DIR/docker-dso; 'docker dso' will not work (dso itself does)"
    fi
}

uninstall() {
    removed=0
    link=$CLI_PLUGIN_DIR/docker-dso
    if [ "$CLI_PLUGIN_DIR" != none ] && [ -L "$link" ] && [ "$(readlink "$link")" = "$TARGET" ]; then
        rm -f "$link" || fatal "cannot remove $link"
        info "removed $link"
        removed=1
        # The install may have created the directory: leave no empty one behind (rmdir keeps a non-empty one).
        if rmdir "$CLI_PLUGIN_DIR" 2>/dev/null; then info "removed empty $CLI_PLUGIN_DIR"; fi
    fi
    if [ -f "$TARGET" ]; then
        case "$("$TARGET" version 2>/dev/null || true)" in
            "dso "*) ;;
            *) fatal "$TARGET does not look like dso (its 'version' does not say so); not removing it" ;;
        esac
        rm -f "$TARGET" || fatal "cannot remove $TARGET"
        info "removed $TARGET"
        removed=1
    fi
    [ "$removed" -eq 1 ] || info "nothing to remove: no dso at $TARGET"
    info "left in place: /etc/dso (config and secrets), any systemd unit, images and plugins"
}

path_hint() {
    case ":${PATH:-}:" in
        *":$INSTALL_DIR:"*) ;;
        *) info "note: $INSTALL_DIR is not on your PATH; add it, e.g.: export PATH=\"$INSTALL_DIR:\$PATH\"" ;;
    esac
}

# --- main ---
MODE=install
for arg in "$@"; do
    case "$arg" in
        --uninstall) MODE=uninstall ;;
        *) fatal "unknown argument '$arg' (the only one is --uninstall; settings are environment variables)" ;;
    esac
done

if [ "$MODE" = uninstall ]; then
    if [ -n "${DSO_INSTALL_DIR:-}" ]; then INSTALL_DIR=$DSO_INSTALL_DIR
    elif [ -f /usr/local/bin/dso ]; then INSTALL_DIR=/usr/local/bin
    else INSTALL_DIR=${HOME:-/nonexistent}/.local/bin; fi
    TARGET=$INSTALL_DIR/dso
    choose_cli_plugin_dir
    uninstall
    exit 0
fi

detect_os
detect_arch
detect_libc
ASSET=dso-$OS-$ARCH
[ "$LIBC" = musl ] && ASSET=$ASSET-musl
URL=$(release_url)
choose_install_dir
TARGET=$INSTALL_DIR/dso
choose_cli_plugin_dir

TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dso-install.XXXXXX") || fatal "cannot create a temporary directory"

info "downloading SHA256SUMS from $URL"
download "$URL/SHA256SUMS" "$TMP_DIR/SHA256SUMS"
EXPECTED=$(expected_sha256 "$TMP_DIR/SHA256SUMS" "$ASSET")
case "$EXPECTED" in
    '') fatal "SHA256SUMS has no checksum for $ASSET: refusing to install an unverified binary" ;;
    *[!0-9a-f]*) fatal "SHA256SUMS has a malformed checksum for $ASSET: refusing to install" ;;
esac
[ ${#EXPECTED} -eq 64 ] || fatal "SHA256SUMS has a malformed checksum for $ASSET: refusing to install"

if [ -f "$TARGET" ] && [ "$(sha256_of "$TARGET")" = "$EXPECTED" ]; then
    info "dso is up to date at $TARGET"
    "$TARGET" version || true
    link_cli_plugin
    path_hint
    exit 0
fi

info "downloading $ASSET"
download "$URL/$ASSET" "$TMP_DIR/$ASSET"
ACTUAL=$(sha256_of "$TMP_DIR/$ASSET")
[ "$ACTUAL" = "$EXPECTED" ] ||
    fatal "checksum mismatch for $ASSET: expected $EXPECTED, got $ACTUAL; nothing was installed"
info "checksum verified ($EXPECTED)"

# Copy next to the target first so the final mv is an atomic rename on one filesystem,
# and try the new binary there (TMPDIR may be noexec) before it replaces anything.
PARTIAL=$INSTALL_DIR/.dso.install.$$
cp "$TMP_DIR/$ASSET" "$PARTIAL"
chmod 0755 "$PARTIAL"
VERSION_OUT=$("$PARTIAL" version 2>&1) ||
    fatal "the downloaded $ASSET does not run on this host (libc: $LIBC; set DSO_LIBC to override): $VERSION_OUT"
mv -f "$PARTIAL" "$TARGET"
PARTIAL=

info "installed $TARGET"
echo "$VERSION_OUT"
link_cli_plugin
path_hint
