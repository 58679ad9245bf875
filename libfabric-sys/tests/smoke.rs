//! Smoke test: the bindings link, `fi_version` reports 1.x >= 1.17, and `fi_getinfo` finds the tcp
//! provider for a MSG endpoint with RMA on 127.0.0.1. Also checks that the default (static) link
//! kept the PSM libraries out of the process.

use libfabric_sys::*;
use std::ffi::{CStr, CString};

#[test]
fn version_is_at_least_1_17() {
    // SAFETY: fi_version takes no arguments and only returns a constant.
    let v = unsafe { fi_version() };
    assert_eq!(fi_major(v), 1, "unexpected libfabric major version {v:#x}");
    assert!(fi_minor(v) >= 17, "libfabric {v:#x} older than 1.17");
}

#[test]
fn getinfo_finds_tcp_msg_rma() {
    // SAFETY: fi_allocinfo returns a zeroed fi_info with allocated sub-attributes, or NULL.
    let hints = unsafe { fi_allocinfo() };
    assert!(!hints.is_null());
    let prov = CString::new("tcp").unwrap();
    let node = CString::new("127.0.0.1").unwrap();
    // SAFETY: hints and its attribute pointers were allocated by fi_allocinfo. prov_name must be
    // heap memory libfabric may free, hence strdup.
    unsafe {
        (*hints).caps = (FI_MSG | FI_RMA) as u64;
        (*(*hints).ep_attr).type_ = fi_ep_type_FI_EP_MSG;
        (*(*hints).fabric_attr).prov_name = strdup(prov.as_ptr());
    }
    let mut info: *mut fi_info = std::ptr::null_mut();
    // SAFETY: node is a valid C string, service NULL, hints valid, info an out pointer.
    let rc = unsafe {
        fi_getinfo(
            FI_API_VERSION,
            node.as_ptr(),
            std::ptr::null(),
            0,
            hints,
            &mut info,
        )
    };
    assert_eq!(rc, 0, "fi_getinfo: {}", unsafe {
        // SAFETY: fi_strerror returns a static string for any code.
        CStr::from_ptr(fi_strerror(-rc)).to_string_lossy()
    });
    assert!(!info.is_null());
    // SAFETY: info is a valid list returned by fi_getinfo.
    let name = unsafe { CStr::from_ptr((*(*info).fabric_attr).prov_name) };
    assert_eq!(name.to_str().unwrap(), "tcp");
    // SAFETY: both lists came from libfabric and are freed once.
    unsafe {
        fi_freeinfo(info);
        fi_freeinfo(hints);
    }
}

extern "C" {
    fn strdup(s: *const std::os::raw::c_char) -> *mut std::os::raw::c_char;
}

#[cfg(not(feature = "dynamic"))]
#[test]
fn psm_libraries_are_not_loaded() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for lib in ["libinfinipath", "libpsm2", "libpsm_infinipath"] {
        assert!(
            !maps.contains(lib),
            "{lib} is mapped: the static link with provider stubs did not take effect"
        );
    }
}
