//! Provider choice and `fi_getinfo`: what we ask libfabric for (MSG endpoints with MSG + RMA, the
//! memory-registration modes this wrapper can honour, thread-safe domains, in-order delivery) and
//! the `Info` it answers with, owned and freed on drop.

use std::ffi::{CStr, CString};
use std::fmt;
use std::net::SocketAddr;
use std::ptr;

use libfabric_sys as sys;

use crate::error::{strerror, Error, Result};
use crate::sockaddr;

/// The libfabric providers this crate knows how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// `tcp`: the default. MSG endpoints and RMA over kernel TCP sockets (TCP_NODELAY on).
    Tcp,
    /// `sockets`: the older socket provider, ~100x slower here; PMDK's RPMEM_ENABLE_SOCKETS.
    Sockets,
    /// `verbs`: RDMA hardware; needs the `verbs` feature (the default build leaves it out).
    Verbs,
}

impl Provider {
    /// libfabric's name for the provider.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Tcp => "tcp",
            Provider::Sockets => "sockets",
            Provider::Verbs => "verbs",
        }
    }

    /// Parses a provider name as libfabric spells it.
    pub fn from_name(name: &str) -> Option<Provider> {
        match name {
            "tcp" => Some(Provider::Tcp),
            "sockets" => Some(Provider::Sockets),
            "verbs" => Some(Provider::Verbs),
            _ => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to ask `fi_getinfo` for.
#[derive(Debug, Clone)]
pub struct Hints<'a> {
    /// Which provider.
    pub provider: Provider,
    /// Address (or host name) to connect to, or, with `source`, to bind to.
    pub node: Option<&'a str>,
    /// Port (decimal string). `"0"` with `source` binds an ephemeral port.
    pub service: Option<&'a str>,
    /// True for the listening side (`FI_SOURCE`: node/service are the local address).
    pub source: bool,
}

impl<'a> Hints<'a> {
    /// Hints for a listener bound to `addr` (port 0 picks a free port).
    pub fn listen(provider: Provider, addr: &'a str, port: &'a str) -> Self {
        Hints {
            provider,
            node: Some(addr),
            service: Some(port),
            source: true,
        }
    }

    /// Hints for connecting to `addr:port`.
    pub fn connect(provider: Provider, addr: &'a str, port: &'a str) -> Self {
        Hints {
            provider,
            node: Some(addr),
            service: Some(port),
            source: false,
        }
    }
}

/// Memory-registration mode bits this wrapper honours when a provider asks for them.
/// (`FI_MR_ENDPOINT`, `FI_MR_RAW`, `FI_MR_MMU_NOTIFY`, HMEM are not supported.)
pub(crate) const MR_MODE_SUPPORTED: u32 =
    sys::FI_MR_LOCAL | sys::FI_MR_VIRT_ADDR | sys::FI_MR_PROV_KEY | sys::FI_MR_ALLOCATED;

/// An owned `fi_info` list; the entry used is the first one.
pub struct Info {
    head: *mut sys::fi_info,
}

// SAFETY: an fi_info list is plain heap memory owned exclusively by this value; libfabric keeps no
// reference to it and it may be freed from any thread.
unsafe impl Send for Info {}

impl Info {
    /// Runs `fi_getinfo` for a MSG endpoint with MSG and RMA capabilities.
    pub fn get(hints: &Hints<'_>) -> Result<Info> {
        let node_text = hints.node.unwrap_or("(any)").to_string();
        let node = opt_cstring("fi_getinfo", hints.node)?;
        let service = opt_cstring("fi_getinfo", hints.service)?;
        // SAFETY: fi_allocinfo returns a zeroed fi_info with all sub-attributes allocated, or NULL.
        let h = unsafe { sys::fi_allocinfo() };
        if h.is_null() {
            return Err(Error::Fabric {
                op: "fi_allocinfo",
                code: sys::FI_ENOMEM as i32,
                text: strerror(sys::FI_ENOMEM as i32),
            });
        }
        let prov = CString::new(hints.provider.name()).expect("provider names have no NUL");
        // SAFETY: h and its attribute structs were allocated by fi_allocinfo; prov_name must be
        // malloc'd because fi_freeinfo frees it, hence strdup.
        unsafe {
            (*h).caps = u64::from(sys::FI_MSG | sys::FI_RMA);
            (*h).mode = 0; // we satisfy no mode bits: op contexts are plain tokens, not fi_context
            (*h).addr_format = sys::FI_FORMAT_UNSPEC;
            (*(*h).ep_attr).type_ = sys::fi_ep_type_FI_EP_MSG;
            (*(*h).domain_attr).mr_mode = MR_MODE_SUPPORTED as i32;
            (*(*h).domain_attr).threading = sys::fi_threading_FI_THREAD_SAFE;
            (*(*h).tx_attr).msg_order = u64::from(sys::FI_ORDER_SAS | sys::FI_ORDER_SAW);
            (*(*h).fabric_attr).prov_name = libc::strdup(prov.as_ptr());
        }
        let flags = if hints.source { sys::FI_SOURCE } else { 0 };
        let mut out: *mut sys::fi_info = ptr::null_mut();
        // SAFETY: node/service are NULL or valid C strings that outlive the call, h is a valid
        // hints struct, out is a valid out-pointer.
        let rc = unsafe {
            sys::fi_getinfo(
                sys::FI_API_VERSION,
                node.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                service.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                flags,
                h,
                &mut out,
            )
        };
        // SAFETY: h came from fi_allocinfo and is freed exactly once.
        unsafe { sys::fi_freeinfo(h) };
        if rc != 0 || out.is_null() {
            let code = rc.unsigned_abs() as i32;
            let mut text = strerror(code);
            if hints.provider == Provider::Verbs && !cfg!(feature = "verbs") {
                text.push_str(
                    " (this build leaves the verbs provider out: enable the `verbs` feature)",
                );
            } else if code == sys::FI_ENODATA as i32 {
                text.push_str(
                    " (no provider of that name supports MSG endpoints with RMA at that address)",
                );
            }
            return Err(Error::ProviderUnavailable {
                provider: hints.provider.name().to_string(),
                node: node_text,
                text,
            });
        }
        Ok(Info { head: out })
    }

    /// Takes ownership of an fi_info list handed over by libfabric (connection requests).
    ///
    /// # Safety
    /// `p` must be a non-null fi_info list the caller owns and that nothing else frees.
    pub(crate) unsafe fn from_raw(p: *mut sys::fi_info) -> Info {
        Info { head: p }
    }

    /// A deep copy of the first entry (`fi_dupinfo`). Objects opened from an info keep such a
    /// copy alive for their whole life: some providers (sockets) keep pointers into the info
    /// they were opened with.
    pub fn dup(&self) -> Result<Info> {
        // SAFETY: head is a valid fi_info; fi_dupinfo returns a new owned copy or NULL.
        let p = unsafe { sys::fi_dupinfo(self.head) };
        if p.is_null() {
            return Err(Error::Fabric {
                op: "fi_dupinfo",
                code: sys::FI_ENOMEM as i32,
                text: strerror(sys::FI_ENOMEM as i32),
            });
        }
        Ok(Info { head: p })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::fi_info {
        self.head
    }

    fn entry(&self) -> &sys::fi_info {
        // SAFETY: head is non-null (checked at construction) and owned by self.
        unsafe { &*self.head }
    }

    /// Name of the provider that answered (`tcp`, `sockets`, ...).
    pub fn provider_name(&self) -> String {
        // SAFETY: fabric_attr is always allocated in an fi_info returned by libfabric.
        let attr = unsafe { &*self.entry().fabric_attr };
        if attr.prov_name.is_null() {
            return String::new();
        }
        // SAFETY: prov_name is a NUL-terminated string owned by the info.
        unsafe { CStr::from_ptr(attr.prov_name) }
            .to_string_lossy()
            .into_owned()
    }

    /// The memory-registration mode bits the provider requires (`FI_MR_*`).
    pub fn mr_mode(&self) -> u32 {
        // SAFETY: domain_attr is always allocated in an fi_info returned by libfabric.
        let mode = unsafe { (*self.entry().domain_attr).mr_mode } as u32;
        // Old-style FI_MR_BASIC means "virtual addresses, allocated memory, provider keys".
        if mode == sys::fi_mr_mode_FI_MR_BASIC {
            sys::FI_MR_VIRT_ADDR | sys::FI_MR_ALLOCATED | sys::FI_MR_PROV_KEY
        } else {
            mode
        }
    }

    /// Ordering guarantees of the transmit side (`FI_ORDER_*`).
    pub fn msg_order(&self) -> u64 {
        // SAFETY: tx_attr is always allocated in an fi_info returned by libfabric.
        unsafe { (*self.entry().tx_attr).msg_order }
    }

    /// Largest message the provider copies at post time (`FI_INJECT`: no completion needed).
    pub fn inject_size(&self) -> usize {
        // SAFETY: tx_attr is always allocated in an fi_info returned by libfabric.
        unsafe { (*self.entry().tx_attr).inject_size }
    }

    /// Bytes of remote CQ data an operation can carry to the peer's completion (0 = none).
    pub fn cq_data_size(&self) -> usize {
        // SAFETY: domain_attr is always allocated in an fi_info returned by libfabric.
        unsafe { (*self.entry().domain_attr).cq_data_size }
    }

    /// Largest message or RMA transfer the endpoint supports.
    pub fn max_msg_size(&self) -> usize {
        // SAFETY: ep_attr is always allocated in an fi_info returned by libfabric.
        unsafe { (*self.entry().ep_attr).max_msg_size }
    }

    /// The source address, when it is an IP socket address.
    pub fn src_addr(&self) -> Option<SocketAddr> {
        let e = self.entry();
        // SAFETY: src_addr points to src_addrlen bytes owned by the info (or is NULL).
        unsafe { sockaddr::parse(e.src_addr as *const u8, e.src_addrlen) }
    }

    /// The destination address, when it is an IP socket address.
    pub fn dest_addr(&self) -> Option<SocketAddr> {
        let e = self.entry();
        // SAFETY: dest_addr points to dest_addrlen bytes owned by the info (or is NULL).
        unsafe { sockaddr::parse(e.dest_addr as *const u8, e.dest_addrlen) }
    }
}

impl fmt::Debug for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Info")
            .field("provider", &self.provider_name())
            .field("mr_mode", &format_args!("{:#x}", self.mr_mode()))
            .field("msg_order", &format_args!("{:#x}", self.msg_order()))
            .field("src", &self.src_addr())
            .field("dest", &self.dest_addr())
            .finish()
    }
}

impl Drop for Info {
    fn drop(&mut self) {
        // SAFETY: head is an owned list from fi_getinfo or a CM event, freed exactly once.
        unsafe { sys::fi_freeinfo(self.head) };
    }
}

fn opt_cstring(op: &'static str, s: Option<&str>) -> Result<Option<CString>> {
    s.map(|s| {
        CString::new(s).map_err(|_| Error::InvalidArgument {
            op,
            what: format!("{s:?} contains a NUL byte"),
        })
    })
    .transpose()
}

/// True if `fi_getinfo` finds `provider` for a MSG/RMA endpoint on 127.0.0.1.
pub fn provider_available(provider: Provider) -> bool {
    Info::get(&Hints::listen(provider, "127.0.0.1", "0")).is_ok()
}
