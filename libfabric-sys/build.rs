//! Build script: generates the bindings with bindgen (libclang is needed at build time), compiles
//! the C shims bindgen emits for libfabric's `static inline` functions, and links libfabric.
//!
//! Linking: by default the static archive `libfabric.a` plus `csrc/provider_stubs.c`, which keeps
//! the PSM providers (and, without the `verbs` feature, the verbs provider) out of the process. See
//! the crate-level docs in `src/lib.rs` for why. With the `dynamic` feature, plain `-lfabric`.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-changed=csrc/provider_stubs.c");
    println!("cargo:rerun-if-changed=build.rs");

    let lib = pkg_config::Config::new()
        .atleast_version("1.17")
        .cargo_metadata(false)
        .probe("libfabric")
        .unwrap_or_else(|e| {
            panic!("libfabric >= 1.17 not found by pkg-config (install libfabric-dev): {e}")
        });

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let shims = out.join("static_fns.c");

    let mut builder = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .allowlist_function("fi_.*")
        .allowlist_type("fi_.*|fid.*")
        .allowlist_var("FI_.*")
        .wrap_static_fns(true)
        .wrap_static_fns_path(out.join("static_fns"))
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for path in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on csrc/wrapper.h (is libclang installed?)");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs into OUT_DIR");

    // The generated shim file includes "csrc/wrapper.h" relative to the crate root.
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut cc = cc::Build::new();
    cc.file(&shims)
        .include(&manifest)
        .includes(&lib.include_paths)
        .flag_if_supported("-Wno-unused-parameter")
        // fi_rx_size_left/fi_tx_size_left are deprecated upstream but still wrapped.
        .flag_if_supported("-Wno-deprecated-declarations");
    let dynamic = env::var_os("CARGO_FEATURE_DYNAMIC").is_some();
    if !dynamic {
        cc.file("csrc/provider_stubs.c");
        if env::var_os("CARGO_FEATURE_VERBS").is_some() {
            cc.define("LIBFABRIC_SYS_KEEP_VERBS", None);
        }
    }
    cc.compile("fabric_shims");

    if dynamic {
        for path in &lib.link_paths {
            println!("cargo:rustc-link-search=native={}", path.display());
        }
        println!("cargo:rustc-link-lib=dylib=fabric");
    } else {
        let libdir = pkg_config::get_variable("libfabric", "libdir")
            .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu".to_string());
        println!("cargo:rustc-link-search=native={libdir}");
        println!("cargo:rustc-link-lib=static:-bundle=fabric");
        // libfabric.a's remaining providers need these; Debian ships only the versioned .so files
        // (the -dev symlinks are not installed), hence the verbatim names.
        for so in [
            "librdmacm.so.1",
            "libibverbs.so.1",
            "libefa.so.1",
            "libatomic.so.1",
        ] {
            println!("cargo:rustc-link-lib=dylib:+verbatim={so}");
        }
        println!("cargo:rustc-link-lib=dylib=dl");
        println!("cargo:rustc-link-lib=dylib=pthread");
    }
}
