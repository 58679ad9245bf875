//! Fabric, domain, event queue and completion queue handles.
//!
//! Ownership: each handle keeps an `Arc` to the one it was opened from (CQ -> domain -> fabric,
//! EQ -> fabric), so libfabric objects are always closed child-first, whatever order the caller
//! drops them in. All waits go through `wait_cq` / `wait_eq`: spin briefly, then block in slices,
//! and always give up at the caller's deadline.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfabric_sys as sys;

use crate::error::{check, check_int, strerror, Error, Result};
use crate::info::{Info, MR_MODE_SUPPORTED};

/// Longest single blocking wait; between slices the caller's other conditions are re-checked.
const WAIT_SLICE: Duration = Duration::from_millis(50);

pub(crate) struct FabricInner {
    pub(crate) fid: *mut sys::fid_fabric,
    // Kept alive until after the fabric is closed (see Info::dup).
    _info: Info,
}

// SAFETY: libfabric fabric objects are thread-safe (we request FI_THREAD_SAFE); the pointer is
// only closed in Drop, when no other reference exists.
unsafe impl Send for FabricInner {}
// SAFETY: see Send.
unsafe impl Sync for FabricInner {}

impl Drop for FabricInner {
    fn drop(&mut self) {
        close_fid(self.fid.cast());
    }
}

/// Closes any libfabric object. Errors at close are not actionable and are ignored.
pub(crate) fn close_fid(fid: *mut sys::fid) {
    if !fid.is_null() {
        // SAFETY: fid is a live libfabric object owned by the caller, closed exactly once here.
        let _ = unsafe { sys::fi_close(fid) };
    }
}

/// An open fabric (`fi_fabric`).
#[derive(Clone)]
pub struct Fabric {
    pub(crate) inner: Arc<FabricInner>,
}

impl Fabric {
    /// Opens the fabric described by `info`.
    pub fn open(info: &Info) -> Result<Fabric> {
        let info = info.dup()?;
        let mut fid = ptr::null_mut();
        // SAFETY: info is a valid fi_info from libfabric; fid is an out-pointer.
        let rc = unsafe { sys::fi_fabric((*info.as_ptr()).fabric_attr, &mut fid, ptr::null_mut()) };
        check_int("fi_fabric", rc)?;
        Ok(Fabric {
            inner: Arc::new(FabricInner { fid, _info: info }),
        })
    }
}

pub(crate) struct DomainInner {
    pub(crate) fid: *mut sys::fid_domain,
    pub(crate) mr_mode: u32,
    pub(crate) next_key: AtomicU64,
    pub(crate) provider: String,
    pub(crate) fabric: Arc<FabricInner>,
    // Kept alive until after the domain is closed (see Info::dup).
    _info: Info,
}

// SAFETY: the domain is opened with FI_THREAD_SAFE; the pointer is closed only in Drop.
unsafe impl Send for DomainInner {}
// SAFETY: see Send.
unsafe impl Sync for DomainInner {}

impl Drop for DomainInner {
    fn drop(&mut self) {
        close_fid(self.fid.cast());
    }
}

/// An open domain (`fi_domain`): owns memory registrations, completion queues and endpoints.
#[derive(Clone)]
pub struct Domain {
    pub(crate) inner: Arc<DomainInner>,
}

impl Domain {
    /// Opens the domain described by `info` on `fabric`.
    pub fn open(fabric: &Fabric, info: &Info) -> Result<Domain> {
        let mr_mode = info.mr_mode();
        let unsupported = mr_mode & !MR_MODE_SUPPORTED;
        if unsupported != 0 {
            return Err(Error::InvalidArgument {
                op: "fi_domain",
                what: format!(
                    "provider {} requires memory-registration modes {unsupported:#x} this wrapper does not implement",
                    info.provider_name()
                ),
            });
        }
        let info = info.dup()?;
        let mut fid = ptr::null_mut();
        // SAFETY: fabric is open, info valid, fid an out-pointer.
        let rc =
            unsafe { sys::fi_domain(fabric.inner.fid, info.as_ptr(), &mut fid, ptr::null_mut()) };
        check_int("fi_domain", rc)?;
        Ok(Domain {
            inner: Arc::new(DomainInner {
                fid,
                mr_mode,
                next_key: AtomicU64::new(1),
                provider: info.provider_name(),
                fabric: fabric.inner.clone(),
                _info: info,
            }),
        })
    }

    /// The provider's memory-registration mode bits (`FI_MR_*`).
    pub fn mr_mode(&self) -> u32 {
        self.inner.mr_mode
    }

    /// Name of the provider this domain belongs to.
    pub fn provider_name(&self) -> &str {
        &self.inner.provider
    }

    pub(crate) fn fabric(&self) -> Fabric {
        Fabric {
            inner: self.inner.fabric.clone(),
        }
    }

    pub(crate) fn next_requested_key(&self) -> u64 {
        self.inner.next_key.fetch_add(1, Ordering::Relaxed)
    }
}

/// An event queue (`fi_eq_open`) with a wait object, for connection-management events.
pub struct EventQueue {
    pub(crate) fid: *mut sys::fid_eq,
    _fabric: Arc<FabricInner>,
}

// SAFETY: EQs are thread-safe under FI_THREAD_SAFE; the pointer is closed only in Drop.
unsafe impl Send for EventQueue {}

impl Drop for EventQueue {
    fn drop(&mut self) {
        close_fid(self.fid.cast());
    }
}

/// One connection-management event.
pub(crate) struct CmEvent {
    pub(crate) event: u32,
    pub(crate) info: *mut sys::fi_info,
    pub(crate) data: Vec<u8>,
}

/// Room for an `fi_eq_cm_entry` plus connection data; libfabric never delivers more than this.
const EQ_BUF_BYTES: usize = 1024;

impl EventQueue {
    /// Opens an event queue on `fabric`.
    pub fn open(fabric: &Fabric) -> Result<EventQueue> {
        let mut attr = sys::fi_eq_attr {
            size: 16,
            wait_obj: sys::fi_wait_obj_FI_WAIT_UNSPEC,
            ..Default::default()
        };
        let mut fid = ptr::null_mut();
        // SAFETY: fabric open, attr valid for the call, fid an out-pointer.
        let rc = unsafe { sys::fi_eq_open(fabric.inner.fid, &mut attr, &mut fid, ptr::null_mut()) };
        check_int("fi_eq_open", rc)?;
        Ok(EventQueue {
            fid,
            _fabric: fabric.inner.clone(),
        })
    }

    /// Reads one event, blocking for at most `timeout` (zero = poll). `Ok(None)` = nothing yet.
    pub(crate) fn read(&self, op: &'static str, timeout: Duration) -> Result<Option<CmEvent>> {
        let mut buf = [0u64; EQ_BUF_BYTES / 8];
        let mut event: u32 = 0;
        let rc = if timeout.is_zero() {
            // SAFETY: eq open; buf is EQ_BUF_BYTES writable bytes, aligned for fi_eq_cm_entry.
            unsafe {
                sys::fi_eq_read(
                    self.fid,
                    &mut event,
                    buf.as_mut_ptr().cast(),
                    EQ_BUF_BYTES,
                    0,
                )
            }
        } else {
            // SAFETY: as above; timeout in milliseconds, at least 1.
            unsafe {
                sys::fi_eq_sread(
                    self.fid,
                    &mut event,
                    buf.as_mut_ptr().cast(),
                    EQ_BUF_BYTES,
                    millis(timeout),
                    0,
                )
            }
        };
        if rc == -(sys::FI_EAGAIN as isize) || rc == -(sys::FI_ETIMEDOUT as isize) {
            return Ok(None);
        }
        if rc == -(sys::FI_EAVAIL as isize) {
            return Err(self.read_error(op));
        }
        let n = check(op, rc)? as usize;
        let head = std::mem::size_of::<sys::fi_eq_cm_entry>();
        let (info, data) = if n >= head {
            // SAFETY: the provider wrote n >= head bytes; buf is 8-aligned like fi_eq_cm_entry.
            let entry = unsafe { &*(buf.as_ptr() as *const sys::fi_eq_cm_entry) };
            // SAFETY: bytes head..n of buf were written by the provider (the CM private data).
            let bytes = unsafe {
                std::slice::from_raw_parts((buf.as_ptr() as *const u8).add(head), n - head)
            };
            (entry.info, bytes.to_vec())
        } else {
            (ptr::null_mut(), Vec::new())
        };
        Ok(Some(CmEvent { event, info, data }))
    }

    /// Waits for one event until `deadline`.
    pub(crate) fn wait(&self, op: &'static str, deadline: Instant) -> Result<CmEvent> {
        let start = Instant::now();
        loop {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            let slice = left.min(WAIT_SLICE);
            if let Some(ev) = self.read(op, slice)? {
                return Ok(ev);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    op,
                    waited: start.elapsed(),
                });
            }
        }
    }

    fn read_error(&self, op: &'static str) -> Error {
        let mut e = sys::fi_eq_err_entry::default();
        // SAFETY: eq open, e a valid out struct with err_data NULL (provider-owned data).
        let rc = unsafe { sys::fi_eq_readerr(self.fid, &mut e, 0) };
        if rc < 0 {
            return check(op, rc).err().unwrap_or(Error::Fabric {
                op,
                code: 0,
                text: "fi_eq_readerr failed".into(),
            });
        }
        let mut text = [0 as c_char; 256];
        // SAFETY: eq open; text is a writable buffer of the given length; err_data is the
        // provider's and still valid until the next read on this EQ.
        let p = unsafe {
            sys::fi_eq_strerror(
                self.fid,
                e.prov_errno,
                e.err_data,
                text.as_mut_ptr(),
                text.len(),
            )
        };
        let prov = cstr_or_empty(p);
        let text = if prov.is_empty() {
            strerror(e.err)
        } else {
            format!("{} ({prov})", strerror(e.err))
        };
        if e.err == sys::FI_ECONNREFUSED as i32 {
            return Error::Rejected { op };
        }
        Error::Fabric {
            op,
            code: e.err,
            text,
        }
    }
}

/// A completion queue (`fi_cq_open`, `FI_CQ_FORMAT_DATA`) with a wait object.
pub struct CompletionQueue {
    pub(crate) fid: *mut sys::fid_cq,
    _domain: Arc<DomainInner>,
}

// SAFETY: CQs are thread-safe under FI_THREAD_SAFE; the pointer is closed only in Drop.
unsafe impl Send for CompletionQueue {}

impl Drop for CompletionQueue {
    fn drop(&mut self) {
        close_fid(self.fid.cast());
    }
}

/// One successful completion.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// The token the operation was posted with.
    pub token: u64,
    /// `FI_*` flags of the completion (FI_SEND, FI_RECV, FI_RMA, ...).
    pub flags: u64,
    /// Bytes received (receives only).
    pub len: usize,
    /// Remote CQ data (with `FI_REMOTE_CQ_DATA` in `flags`), else 0.
    pub data: u64,
}

impl CompletionQueue {
    /// Opens a completion queue of `size` entries on `domain`.
    pub fn open(domain: &Domain, size: usize) -> Result<CompletionQueue> {
        let mut attr = sys::fi_cq_attr {
            size,
            format: sys::fi_cq_format_FI_CQ_FORMAT_DATA,
            wait_obj: sys::fi_wait_obj_FI_WAIT_UNSPEC,
            ..Default::default()
        };
        let mut fid = ptr::null_mut();
        // SAFETY: domain open, attr valid for the call, fid an out-pointer.
        let rc = unsafe { sys::fi_cq_open(domain.inner.fid, &mut attr, &mut fid, ptr::null_mut()) };
        check_int("fi_cq_open", rc)?;
        Ok(CompletionQueue {
            fid,
            _domain: domain.inner.clone(),
        })
    }

    /// Polls once. `Ok(None)` = nothing completed; a failed operation is an `Err`.
    pub fn poll(&self, op: &'static str) -> Result<Option<Completion>> {
        let mut e = empty_entry();
        // SAFETY: cq open; e has room for one FI_CQ_FORMAT_DATA entry.
        let rc =
            unsafe { sys::fi_cq_read(self.fid, (&mut e as *mut sys::fi_cq_data_entry).cast(), 1) };
        self.finish(op, rc, &e)
    }

    fn finish(
        &self,
        op: &'static str,
        rc: isize,
        e: &sys::fi_cq_data_entry,
    ) -> Result<Option<Completion>> {
        if rc == 1 {
            return Ok(Some(Completion {
                token: e.op_context as u64,
                flags: e.flags,
                len: e.len,
                data: e.data,
            }));
        }
        if rc == 0 || rc == -(sys::FI_EAGAIN as isize) || rc == -(sys::FI_ETIMEDOUT as isize) {
            return Ok(None);
        }
        if rc == -(sys::FI_EAVAIL as isize) {
            return Err(self.read_error(op));
        }
        check(op, rc)?;
        Ok(None)
    }

    /// Blocks for at most `timeout` for one completion.
    fn sread(&self, op: &'static str, timeout: Duration) -> Result<Option<Completion>> {
        let mut e = empty_entry();
        // SAFETY: cq open with a wait object; e has room for one entry; cond NULL.
        let rc = unsafe {
            sys::fi_cq_sread(
                self.fid,
                (&mut e as *mut sys::fi_cq_data_entry).cast(),
                1,
                ptr::null(),
                millis(timeout),
            )
        };
        self.finish(op, rc, &e)
    }

    /// Waits for one completion: spins for `spin`, then blocks in slices until `deadline`.
    /// Between slices `interrupt` is called; an `Err` from it ends the wait (used to notice a
    /// peer's shutdown on the endpoint's event queue).
    pub(crate) fn wait(
        &self,
        op: &'static str,
        spin: Duration,
        deadline: Instant,
        mut interrupt: impl FnMut() -> Result<()>,
    ) -> Result<Completion> {
        let start = Instant::now();
        let spin_until = start + spin;
        loop {
            if let Some(c) = self.poll(op)? {
                return Ok(c);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    op,
                    waited: start.elapsed(),
                });
            }
            if now < spin_until {
                // Yield rather than busy-wait: on a machine with fewer free cores than spinning
                // threads, the peer this wait depends on may need this core (pure spinning made
                // every wait run out its spin and block, ~8x slower under load).
                std::thread::yield_now();
                continue;
            }
            interrupt()?;
            let slice = deadline.saturating_duration_since(now).min(WAIT_SLICE);
            if let Some(c) = self.sread(op, slice)? {
                return Ok(c);
            }
        }
    }

    fn read_error(&self, op: &'static str) -> Error {
        let mut e = sys::fi_cq_err_entry {
            op_context: ptr::null_mut(),
            flags: 0,
            len: 0,
            buf: ptr::null_mut(),
            data: 0,
            tag: 0,
            olen: 0,
            err: 0,
            prov_errno: 0,
            err_data: ptr::null_mut(),
            err_data_size: 0,
        };
        // SAFETY: cq open, e a valid out struct; err_data_size 0 = provider-owned err_data.
        let rc = unsafe { sys::fi_cq_readerr(self.fid, &mut e, 0) };
        if rc < 0 {
            return check(op, rc).err().unwrap_or(Error::Fabric {
                op,
                code: 0,
                text: "fi_cq_readerr failed".into(),
            });
        }
        let mut text = [0 as c_char; 256];
        // SAFETY: cq open; text writable; err_data valid until the next read on this CQ.
        let p = unsafe {
            sys::fi_cq_strerror(
                self.fid,
                e.prov_errno,
                e.err_data as *const c_void,
                text.as_mut_ptr(),
                text.len(),
            )
        };
        let prov = cstr_or_empty(p);
        let text = if prov.is_empty() {
            strerror(e.err)
        } else {
            format!("{} ({prov})", strerror(e.err))
        };
        Error::Completion {
            op,
            code: e.err,
            prov_errno: e.prov_errno,
            text,
        }
    }
}

fn empty_entry() -> sys::fi_cq_data_entry {
    sys::fi_cq_data_entry {
        op_context: ptr::null_mut(),
        flags: 0,
        len: 0,
        buf: ptr::null_mut(),
        data: 0,
    }
}

fn cstr_or_empty(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libfabric returns NUL-terminated strings from its strerror functions.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A timeout in whole milliseconds for libfabric's `int timeout` (at least 1, rounded up).
fn millis(d: Duration) -> c_int {
    let ms = d.as_micros().div_ceil(1000).max(1);
    c_int::try_from(ms).unwrap_or(c_int::MAX)
}
