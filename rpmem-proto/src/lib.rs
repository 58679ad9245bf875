//! rpmem-proto: the wire codec shared by rpmem and rpmemd.
