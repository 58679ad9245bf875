//! libfabric-sys: raw FFI bindings to libfabric.
