//! Decoding of the `struct sockaddr` blobs libfabric hands back (fi_getname, fi_info addresses).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Parses an AF_INET / AF_INET6 sockaddr of `len` bytes; anything else is `None`.
///
/// # Safety
/// `p` must be NULL or point to at least `len` readable bytes.
pub(crate) unsafe fn parse(p: *const u8, len: usize) -> Option<SocketAddr> {
    if p.is_null() || len < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: caller guarantees len readable bytes at p.
    let bytes = unsafe { std::slice::from_raw_parts(p, len) };
    let family = libc::sa_family_t::from_ne_bytes([bytes[0], bytes[1]]);
    match i32::from(family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // sockaddr_in: family(2) port(2, big-endian) addr(4)
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // sockaddr_in6: family(2) port(2, BE) flowinfo(4) addr(16) scope_id(4)
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[8..24]);
            let scope = u32::from_ne_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                port,
                0,
                scope,
            )))
        }
        _ => None,
    }
}
