//! rpmemd: the target daemon of remote replication.
//!
//! Not implemented yet (issue 4). It will serve pools described by poolsets inside its
//! `poolset-dir`, speaking the protocol of docs/PROTOCOL.md, on top of `rpmemd::config` and
//! `rpmemd::paths`. Until then it refuses to run rather than pretend to serve anything.

fn main() {
    eprintln!("rpmemd: not implemented yet (see issue 4); refusing to start");
    std::process::exit(2);
}
