//! pingpong: a short latency check on 127.0.0.1 — `persist`-shaped round trips: an unsignaled
//! RMA write of N bytes, a small send, and the peer's small reply. Prints median and p99.
//!
//! Usage: `cargo run --release -p fabric --example pingpong -- [tcp|sockets|raw|rawspin] [bytes] [iterations] [send|writedata]`
//! `writedata` replaces the write + send pair by one `write_with_data` (remote CQ data).
//! `raw` is the baseline: plain std TCP (TCP_NODELAY on), N+8 bytes out, 2 bytes back, blocking
//! reads; `rawspin` is the same with non-blocking sockets whose readers spin on `WouldBlock`
//! (the fair limit for `fabric`, whose waits spin too).

use std::thread;
use std::time::{Duration, Instant};

use fabric::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str);
    if mode == Some("raw") || mode == Some("rawspin") {
        let bytes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
        let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
        raw_tcp(bytes, iters, mode == Some("rawspin"));
        return Ok(());
    }
    let provider = args
        .get(1)
        .map(|s| Provider::from_name(s).unwrap_or_else(|| panic!("unknown provider {s}")))
        .unwrap_or(Provider::Tcp);
    let bytes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let writedata = match args.get(4).map(String::as_str) {
        None | Some("send") => false,
        Some("writedata") => true,
        Some(other) => panic!("unknown mode {other}: send or writedata"),
    };
    let dl = || Instant::now() + Duration::from_secs(5);
    let mut cfg = EndpointConfig::default();
    if let Some(us) = std::env::var("PINGPONG_SPIN_US")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        cfg.spin = Duration::from_micros(us);
    }
    let scfg = cfg.clone();

    let info = Info::get(&Hints::listen(provider, "127.0.0.1", "0"))?;
    let fabric = Fabric::open(&info)?;
    let domain = Domain::open(&fabric, &info)?;
    let pep = PassiveEndpoint::listen(&fabric, &info)?;
    let port = pep.local_addr().port().to_string();
    let server = thread::spawn(move || -> Result<()> {
        let req = pep.get_request(dl())?;
        let mut ep = req.accept(&domain, &scfg, &[], dl())?;
        let pool = OwnedRegion::new(&domain, 1 << 20, Access::LOCAL | Access::REMOTE_WRITE)?;
        ep.send(&pool.mr().remote_key().to_le_bytes(), dl())?;
        let mut m = [0u8; 64];
        loop {
            match ep.recv_any_into(&mut m, dl())? {
                Incoming::Message(n) if &m[..n] == b"bye" => return Ok(()),
                Incoming::Message(_) | Incoming::WriteData(_) => ep.send(b"ok", dl())?,
            }
        }
    });

    let cinfo = Info::get(&Hints::connect(provider, "127.0.0.1", &port))?;
    let cfab = Fabric::open(&cinfo)?;
    let cdom = Domain::open(&cfab, &cinfo)?;
    let mut ep = Endpoint::connect(&cdom, &cinfo, &cfg, b"x", dl())?;
    let key = ep.recv(dl())?;
    let key = RemoteKey::from_le_bytes(key.as_slice().try_into().expect("24-byte key"));
    let local = OwnedRegion::new(&cdom, bytes.max(1), Access::LOCAL)?;
    let mut lat = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        let t = Instant::now();
        if writedata {
            ep.write_with_data(local.mr(), 0, bytes, &key, 0, i as u64, dl())?;
        } else {
            ep.write(local.mr(), 0, bytes, &key, 0, Signal::None, dl())?;
            ep.send(b"persist", dl())?;
        }
        let r = ep.recv(dl())?;
        assert_eq!(r, b"ok");
        if i >= iters / 10 {
            lat.push(t.elapsed());
        }
    }
    ep.send(b"bye", dl())?;
    server.join().expect("server thread")?;
    let how = if writedata {
        "writedata"
    } else {
        "write + send"
    };
    report(&format!("{provider}: {bytes} B {how}, recv"), lat);
    Ok(())
}

fn report(what: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{what} round trip, {} iterations: median {:.1} us, p99 {:.1} us",
        lat.len(),
        us(lat[lat.len() / 2]),
        us(lat[lat.len() * 99 / 100])
    );
}

/// Reads exactly `buf.len()` bytes; on a non-blocking socket, spins on `WouldBlock`.
fn read_full(s: &mut std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::{ErrorKind, Read};
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf`; on a non-blocking socket, spins on `WouldBlock`.
fn write_full(s: &mut std::net::TcpStream, buf: &[u8]) -> std::io::Result<()> {
    use std::io::{ErrorKind, Write};
    let mut put = 0;
    while put < buf.len() {
        match s.write(&buf[put..]) {
            Ok(n) => put += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn raw_tcp(bytes: usize, iters: usize, spin: bool) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("local addr");
    let server = thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        s.set_nonblocking(spin).expect("nonblocking");
        let mut buf = vec![0u8; bytes + 8];
        while read_full(&mut s, &mut buf).is_ok() {
            if write_full(&mut s, b"ok").is_err() {
                break;
            }
        }
    });
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    c.set_nonblocking(spin).expect("nonblocking");
    let out = vec![7u8; bytes + 8];
    let mut back = [0u8; 2];
    let mut lat = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        let t = Instant::now();
        write_full(&mut c, &out).expect("write");
        read_full(&mut c, &mut back).expect("read");
        if i >= iters / 10 {
            lat.push(t.elapsed());
        }
    }
    drop(c);
    server.join().expect("server");
    let how = if spin { "spinning" } else { "blocking" };
    report(
        &format!("raw TCP ({how} reads): {bytes} B + 8 B out, 2 B back"),
        lat,
    );
}
