//! pingpong: a short latency check on 127.0.0.1 — `persist`-shaped round trips: an unsignaled
//! RMA write of N bytes, a small send, and the peer's small reply. Prints median and p99.
//!
//! Usage: `cargo run --release -p fabric --example pingpong -- [tcp|sockets] [bytes] [iterations]`

use std::thread;
use std::time::{Duration, Instant};

use fabric::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
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
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{provider}: {bytes} B write + send/recv round trip, {iters} iterations: median {:.1} us, p99 {:.1} us",
        us(lat[lat.len() / 2]),
        us(lat[lat.len() * 99 / 100])
    );
    Ok(())
}
