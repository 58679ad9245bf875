# Shared by scripts/demo and scripts/test: install what the stack needs, once, idempotently.
# Sourced, not run.

# System packages the stack builds against or its tests start for real.
STACK_PACKAGES=(
    libfabric-dev pkg-config clang libclang-dev   # libfabric-sys (bindgen) and the data plane
    openssh-server openssh-client                  # rpmemd over SSH; test sshd on 127.0.0.1
    nftables iproute2 iputils-ping                 # second host in a network namespace; link faults
    libssh2-1-dev libssl-dev                       # ssh2 crate
    libpmem-dev libpmemobj-dev                     # the real peer in benchmarks
    bsdextrautils                                  # hexdump, for the demo
)

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else log "need root to run: $* (install sudo or run as root)"; return 1
    fi
}

ensure_packages() {
    local missing=() pkg
    for pkg in "${STACK_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing missing packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
}

ensure_rust() {
    command -v cargo >/dev/null 2>&1 && return 0
    # shellcheck disable=SC1091
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    command -v cargo >/dev/null 2>&1 || { log "cargo not found: install a Rust toolchain (rustup)"; return 1; }
}
