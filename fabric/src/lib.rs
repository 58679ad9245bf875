//! fabric: safe wrapper over libfabric-sys.
