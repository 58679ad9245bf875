//! libfabric-sys: raw FFI bindings to the system libfabric (Debian 12's 1.17).
//!
//! # How the bindings are made
//! Generated at build time by `build.rs` with bindgen over `csrc/wrapper.h` (`rdma/fabric.h`,
//! `fi_domain.h`, `fi_endpoint.h`, `fi_cm.h`, `fi_rma.h`, `fi_eq.h`, `fi_errno.h`), so libclang must
//! be installed where the crate is built (`libclang-dev`). Nothing generated is committed: the
//! headers on the build host are the source of truth. libfabric's API is mostly `static inline`
//! functions that jump through ops tables (`fi_domain`, `fi_endpoint`, `fi_write`, `fi_cq_read`,
//! `fi_connect`, `fi_close`, ...); bindgen's `wrap_static_fns` emits a C shim for each, compiled by
//! the `cc` crate and linked here. The shims are callable under their own names (bindgen links the
//! Rust declaration to the `__extern` symbol).
//!
//! # Linking, and the ~200 ms start-up tax
//! Debian's `libfabric.so` has the psm and psm2 providers built in, so it pulls in
//! `libinfinipath.so.4` and `libpsm2.so.2`, whose ELF constructors each pin the thread to CPU 0 and
//! calibrate the TSC for ~100 ms: every process linked with it waits ~200 ms before `main`, and no
//! environment variable (`FI_PROVIDER`, `IPATH_*`, `HFI_*`) avoids it, because it happens at load.
//! This crate therefore links the static `libfabric.a` by default, with `csrc/provider_stubs.c`
//! defining `fi_psm_ini`/`fi_psm2_ini` (and `fi_verbs_ini` unless the `verbs` feature is on) to
//! return NULL: the providers' archive members are never linked and the PSM libraries never
//! loaded. tcp, sockets, udp, shm, rxm, rxd and efa remain. The verbs provider is left out by
//! default because its init scans `/proc/kallsyms` twice (~70 ms at the first `fi_getinfo`);
//! enable the `verbs` feature on RDMA hosts. The `dynamic` feature links `libfabric.so` instead.
//!
//! Measured here (2-core VM, `fabric`'s `startup` example: process start + first `fi_getinfo` for
//! tcp, mean of 20 runs; `/bin/true` takes 0.8 ms): `dynamic` 282 ms (~200 ms of it before `main`
//! in ~830 `nanosleep`s, ~80 ms in `fi_getinfo`), static with `verbs` 81 ms, static default 3 ms.
//! Setting `FI_PROVIDER=tcp` or `FI_PROVIDER=^psm,psm2,verbs` changes nothing with `dynamic`
//! (the constructors run at load; the verbs scan runs in provider init, before the filter).
//!
//! # What is missing from bindgen's output
//! Function-like macros (`FI_VERSION`) and a few cast-expression constants (`FI_ADDR_UNSPEC`) are
//! written out by hand below.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(clippy::all)]
#![allow(rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// `FI_VERSION(major, minor)` from `rdma/fabric.h`.
pub const fn fi_version_of(major: u32, minor: u32) -> u32 {
    (major << 16) | minor
}

/// `FI_MAJOR(version)`.
pub const fn fi_major(version: u32) -> u32 {
    version >> 16
}

/// `FI_MINOR(version)`.
pub const fn fi_minor(version: u32) -> u32 {
    version & 0xffff
}

/// The API version these bindings were written against (libfabric 1.17).
pub const FI_API_VERSION: u32 = fi_version_of(1, 17);

/// `FI_ADDR_UNSPEC`: `((uint64_t) -1)`.
pub const FI_ADDR_UNSPEC_: u64 = u64::MAX;
