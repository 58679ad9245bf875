//! The network-namespace "second host" (root only; skipped loudly otherwise): addresses and
//! reachability, an sshd inside it, link cuts with nftables and ip link, and complete cleanup.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use testkit::{fixture_or_skip, output_with_timeout, skip_unless_root, which, NetnsHost};

const CMD_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn run_ok(cmd: &mut Command) -> Output {
    let line = testkit::command_line(cmd);
    let output = output_with_timeout(cmd, CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "`{line}` failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn netns_list() -> String {
    String::from_utf8_lossy(&run_ok(Command::new("ip").args(["netns", "list"])).stdout).into_owned()
}

/// Connects to `addr` and checks a byte round trip with an echo server on `listener`.
fn round_trip(listener: &TcpListener, addr: SocketAddr) -> std::io::Result<()> {
    let mut client = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    client.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    let (mut server, _) = listener.accept()?;
    client.write_all(b"ping")?;
    let mut buf = [0_u8; 4];
    server.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    server.read_exact(&mut buf)?;
    server.write_all(&buf)?;
    client.read_exact(&mut buf)?;
    assert_eq!(&buf, b"ping");
    Ok(())
}

#[test]
fn second_host_is_reachable_runs_sshd_and_is_removed_on_drop() {
    skip_unless_root!();
    let host = fixture_or_skip!(NetnsHost::create());
    let name = host.name().to_owned();
    let host_veth = host.host_veth().to_owned();
    let peer = host.peer_addr().to_string();

    // Inside the namespace the peer address is configured (and only there).
    let out = run_ok(host.command("ip").args(["-brief", "addr"]));
    let inside = String::from_utf8_lossy(&out.stdout);
    assert!(inside.contains(&format!("{peer}/30")), "{inside}");
    assert!(
        !inside.contains("eth0"),
        "namespace sees the root's links: {inside}"
    );
    assert!(netns_list().contains(&name));

    // Reachable from the root namespace: ping when installed, always a TCP round trip.
    if which("ping").is_some() {
        run_ok(Command::new("ping").args(["-c1", "-W2", &peer]));
    } else {
        eprintln!("note: ping not installed; checking reachability with TCP only");
    }
    let listener = host.tcp_listener(0).expect("listener inside the namespace");
    let addr = listener.local_addr().expect("listener address");
    assert_eq!(addr.ip(), IpAddr::V4(host.peer_addr()));
    round_trip(&listener, addr).expect("TCP round trip into the namespace");

    // An sshd inside the namespace; the session runs there too (it sees the peer address).
    let sshd = host.start_sshd().expect("sshd inside the namespace");
    assert_eq!(sshd.ip(), IpAddr::V4(host.peer_addr()));
    let known_hosts = std::fs::read_to_string(sshd.known_hosts()).expect("read known_hosts");
    assert!(
        known_hosts.contains(&format!("[{peer}]:{}", sshd.port())),
        "{known_hosts}"
    );
    let out = output_with_timeout(
        sshd.ssh_command()
            .arg("echo hello-from-netns; ip -brief addr"),
        CMD_TIMEOUT,
    )
    .expect("ssh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssh failed: {}\n{}\nsshd log:\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert!(stdout.starts_with("hello-from-netns\n"), "{stdout}");
    assert!(stdout.contains(&format!("{peer}/30")), "{stdout}");

    // Dropping the host (with sshd still running inside) removes namespace and veth.
    drop(host);
    assert!(
        !netns_list().contains(&name),
        "namespace {name} still listed"
    );
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&host_veth)
            .exists(),
        "veth {host_veth} still exists"
    );
    drop(sshd);
}

#[test]
fn cut_link_stalls_connections_and_restore_link_heals() {
    skip_unless_root!();
    let host = fixture_or_skip!(NetnsHost::create());
    let listener = host.tcp_listener(0).expect("listener inside the namespace");
    let addr = listener.local_addr().expect("listener address");
    round_trip(&listener, addr).expect("works before the cut");

    // An established connection, to see that the cut also stalls it.
    let mut established = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).expect("connect");
    let (mut server_side, _) = listener.accept().expect("accept");

    host.cut_link().expect("cut the link");
    assert!(host.is_cut());
    host.cut_link().expect("cutting twice is harmless");
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .expect_err("connect must fail while the link is cut");
    // Dropped packets: the connect times out rather than being refused.
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    established.write_all(b"lost?").expect("write is buffered");
    server_side
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let mut buf = [0_u8; 5];
    assert!(
        server_side.read(&mut buf).is_err(),
        "data crossed a cut link"
    );

    host.restore_link().expect("restore the link");
    assert!(!host.is_cut());
    round_trip(&listener, addr).expect("works again after restore");
    // TCP retransmits the bytes written during the cut once the link is back.
    server_side
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    server_side
        .read_exact(&mut buf)
        .expect("retransmitted data arrives");
    assert_eq!(&buf, b"lost?");
}

#[test]
fn link_down_makes_the_peer_unreachable_until_up() {
    skip_unless_root!();
    let host = fixture_or_skip!(NetnsHost::create());
    let listener = host.tcp_listener(0).expect("listener inside the namespace");
    let addr = listener.local_addr().expect("listener address");
    host.set_link_down().expect("link down");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    host.set_link_up().expect("link up");
    round_trip(&listener, addr).expect("works again after link up");
}

#[test]
fn parallel_hosts_get_distinct_names_and_subnets() {
    skip_unless_root!();
    let handles: Vec<_> = (0..3).map(|_| thread::spawn(NetnsHost::create)).collect();
    let hosts: Vec<NetnsHost> = handles
        .into_iter()
        .map(|h| h.join().expect("creator thread").expect("create host"))
        .collect();
    for (i, a) in hosts.iter().enumerate() {
        for b in &hosts[i + 1..] {
            assert_ne!(a.name(), b.name());
            assert_ne!(a.peer_addr(), b.peer_addr());
            assert_ne!(a.host_veth(), b.host_veth());
        }
    }
    // Each peer is reachable through its own link.
    for host in &hosts {
        let listener = host.tcp_listener(0).expect("listener");
        let addr = listener.local_addr().expect("addr");
        round_trip(&listener, addr).expect("round trip");
    }
}
