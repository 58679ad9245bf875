//! Debian's libpmemobj through FFI, for the benchmarks that run it side by side with ours
//! (`palloc-bench`, `tx-bench`; feature `pmemobj`, which links `libpmemobj`). Only what they
//! call: pools, atomic alloc/free, transactions.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

/// `PMEMoid`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PmemOid {
    pub pool_uuid_lo: u64,
    pub off: u64,
}

impl PmemOid {
    /// `OID_NULL`.
    pub const NULL: PmemOid = PmemOid {
        pool_uuid_lo: 0,
        off: 0,
    };
}

#[link(name = "pmemobj")]
extern "C" {
    pub fn pmemobj_create(
        path: *const c_char,
        layout: *const c_char,
        size: usize,
        mode: u32,
    ) -> *mut c_void;
    pub fn pmemobj_open(path: *const c_char, layout: *const c_char) -> *mut c_void;
    pub fn pmemobj_close(pop: *mut c_void);
    pub fn pmemobj_alloc(
        pop: *mut c_void,
        oid: *mut PmemOid,
        size: usize,
        type_num: u64,
        constr: *const c_void,
        arg: *mut c_void,
    ) -> c_int;
    pub fn pmemobj_free(oid: *mut PmemOid);
    pub fn pmemobj_direct(oid: PmemOid) -> *mut c_void;
    pub fn pmemobj_errormsg() -> *const c_char;
    pub fn pmemobj_tx_begin(pop: *mut c_void, env: *mut c_void, ...) -> c_int;
    pub fn pmemobj_tx_alloc(size: usize, type_num: u64) -> PmemOid;
    pub fn pmemobj_tx_add_range(oid: PmemOid, off: u64, size: usize) -> c_int;
    pub fn pmemobj_tx_commit();
    pub fn pmemobj_tx_end() -> c_int;
}

/// `TX_PARAM_NONE` from libpmemobj/tx_base.h (the end of the variadic parameter list).
pub const TX_PARAM_NONE: c_int = 0;

/// A pool handle, shared by threads.
#[derive(Clone, Copy)]
pub struct Pop(pub *mut c_void);
// SAFETY: PMEMobjpool handles may be used from any thread; libpmemobj locks internally and
// transactions are per thread.
unsafe impl Send for Pop {}
// SAFETY: as above.
unsafe impl Sync for Pop {}

/// `path` as a C string (benchmark temp paths are UTF-8 without NUL).
pub fn c_path(path: &Path) -> CString {
    CString::new(path.to_str().expect("UTF-8 temp path")).expect("no NUL in temp path")
}

/// `what` followed by libpmemobj's message for the calling thread's last error.
pub fn error(what: &str) -> String {
    // SAFETY: pmemobj_errormsg returns a thread-local NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(pmemobj_errormsg()) };
    format!("{what}: {}", msg.to_string_lossy())
}

/// Creates a pool of `size` bytes at `path` (which must not exist) with layout `bench`.
pub fn create(path: &Path, size: u64) -> Result<Pop, String> {
    let layout = CString::new("bench").expect("literal");
    // SAFETY: valid NUL-terminated strings; the file does not exist yet.
    let pop =
        unsafe { pmemobj_create(c_path(path).as_ptr(), layout.as_ptr(), size as usize, 0o600) };
    if pop.is_null() {
        return Err(error("pmemobj_create"));
    }
    Ok(Pop(pop))
}

/// One transaction around `body`; panics with libpmemobj's message on failure.
pub fn tx(pop: Pop, body: impl FnOnce()) {
    // SAFETY: valid pool; no jmp_buf (NULL): errors abort the transaction and are reported
    // by pmemobj_tx_end's return value.
    unsafe {
        assert_eq!(
            pmemobj_tx_begin(pop.0, std::ptr::null_mut(), TX_PARAM_NONE),
            0,
            "{}",
            error("pmemobj_tx_begin")
        );
        body();
        pmemobj_tx_commit();
        assert_eq!(pmemobj_tx_end(), 0, "{}", error("pmemobj_tx_end"));
    }
}
