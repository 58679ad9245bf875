//! pingpong: a short latency check on 127.0.0.1 — `persist`-shaped round trips: an unsignaled
//! RMA write of N bytes, a small send, and the peer's small reply. Prints median and p99.
//!
//! Usage: `cargo run --release -p fabric --example pingpong -- [tcp|sockets|raw] [bytes] [iterations]`
//! `raw` is the baseline: plain std TCP (TCP_NODELAY on), N+8 bytes out, 2 bytes back.

use std::thread;
use std::time::{Duration, Instant};

use fabric::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("raw") {
        let bytes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
        let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
        raw_tcp(bytes, iters);
        return Ok(());
    }
    let provider = args
        .get(1)
        .map(|s| Provider::from_name(s).unwrap_or_else(|| panic!("unknown provider {s}")))
        .unwrap_or(Provider::Tcp);
    let bytes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let dl = || Instant::now() + Duration::from_secs(5);

    let info = Info::get(&Hints::listen(provider, "127.0.0.1", "0"))?;
    let fabric = Fabric::open(&info)?;
    let domain = Domain::open(&fabric, &info)?;
    let pep = PassiveEndpoint::listen(&fabric, &info)?;
    let port = pep.local_addr().port().to_string();
    let server = thread::spawn(move || -> Result<()> {
        let req = pep.get_request(dl())?;
        let mut ep = req.accept(&domain, &EndpointConfig::default(), &[], dl())?;
        let pool = OwnedRegion::new(&domain, 1 << 20, Access::LOCAL | Access::REMOTE_WRITE)?;
        ep.send(&pool.mr().remote_key().to_le_bytes(), dl())?;
        loop {
            let m = ep.recv(dl())?;
            if m == b"bye" {
                return Ok(());
            }
            ep.send(b"ok", dl())?;
        }
    });

    let cinfo = Info::get(&Hints::connect(provider, "127.0.0.1", &port))?;
    let cfab = Fabric::open(&cinfo)?;
    let cdom = Domain::open(&cfab, &cinfo)?;
    let mut ep = Endpoint::connect(&cdom, &cinfo, &EndpointConfig::default(), b"x", dl())?;
    let key = ep.recv(dl())?;
    let key = RemoteKey::from_le_bytes(key.as_slice().try_into().expect("24-byte key"));
    let local = OwnedRegion::new(&cdom, bytes.max(1), Access::LOCAL)?;
    let mut lat = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        let t = Instant::now();
        ep.write(local.mr(), 0, bytes, &key, 0, Signal::None, dl())?;
        ep.send(b"persist", dl())?;
        let r = ep.recv(dl())?;
        assert_eq!(r, b"ok");
        if i >= iters / 10 {
            lat.push(t.elapsed());
        }
    }
    ep.send(b"bye", dl())?;
    server.join().expect("server thread")?;
    report(&format!("{provider}: {bytes} B write + send/recv"), lat);
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

fn raw_tcp(bytes: usize, iters: usize) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("local addr");
    let server = thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; bytes + 8];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(b"ok").is_err() {
                break;
            }
        }
    });
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let out = vec![7u8; bytes + 8];
    let mut back = [0u8; 2];
    let mut lat = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        let t = Instant::now();
        c.write_all(&out).expect("write");
        c.read_exact(&mut back).expect("read");
        if i >= iters / 10 {
            lat.push(t.elapsed());
        }
    }
    drop(c);
    server.join().expect("server");
    report(&format!("raw TCP: {bytes} B + 8 B out, 2 B back"), lat);
}
