//! The loopback sshd fixture: logins work with the generated key, and the host-key check and
//! the key authentication are real (an unknown host and an unauthorized key are refused).

use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::{output_with_timeout, Sshd};

const SSH_TIMEOUT: Duration = Duration::from_secs(30);

fn run(cmd: &mut Command, sshd: &Sshd) -> Output {
    match output_with_timeout(cmd, SSH_TIMEOUT) {
        Ok(output) => output,
        Err(err) => panic!("{err}\nsshd log:\n{}", sshd.log()),
    }
}

fn describe(output: &Output, sshd: &Sshd) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}\nsshd log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        sshd.log()
    )
}

#[test]
fn command_runs_over_ssh() {
    let sshd = Sshd::start().expect("start sshd");
    let output = run(sshd.ssh_command().arg("echo hello-over-ssh"), &sshd);
    assert!(output.status.success(), "{}", describe(&output, &sshd));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "hello-over-ssh"
    );
}

#[test]
fn unknown_host_key_is_refused() {
    let sshd = Sshd::start().expect("start sshd");
    let empty = sshd.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write empty known_hosts");
    let output = run(
        sshd.ssh_command_with_known_hosts(&empty)
            .arg("echo should-not-run"),
        &sshd,
    );
    assert!(!output.status.success(), "{}", describe(&output, &sshd));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Host key verification failed"),
        "{}",
        describe(&output, &sshd)
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("should-not-run"));
}

#[test]
fn unauthorized_key_is_refused() {
    let sshd = Sshd::start().expect("start sshd");
    // The host key is a valid private key that is not in authorized_keys.
    let mut cmd = sshd.ssh_command();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let key_index = args.iter().position(|a| a == "-i").expect("-i in ssh args") + 1;
    let mut other = Command::new(cmd.get_program());
    for (i, arg) in args.iter().enumerate() {
        if i == key_index {
            other.arg(sshd.host_key());
        } else {
            other.arg(arg);
        }
    }
    cmd = other;
    let output = run(cmd.arg("echo should-not-run"), &sshd);
    assert!(!output.status.success(), "{}", describe(&output, &sshd));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Permission denied"),
        "{}",
        describe(&output, &sshd)
    );
}

#[test]
fn ssh_config_alias_reaches_the_server() {
    let sshd = Sshd::start().expect("start sshd");
    let config = sshd
        .write_ssh_config("testkit-alias")
        .expect("write ssh_config");
    let text = std::fs::read_to_string(&config).expect("read ssh_config back");
    assert!(text.contains(&format!("Port {}", sshd.port())), "{text}");
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg(&config)
        .arg("-o")
        .arg("ConnectTimeout=10")
        .arg("testkit-alias")
        .arg("echo via-config; id -un");
    let output = run(&mut cmd, &sshd);
    assert!(output.status.success(), "{}", describe(&output, &sshd));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("via-config"));
    assert_eq!(lines.next(), Some(sshd.user()));
}

#[test]
fn known_hosts_names_loopback_and_localhost() {
    let sshd = Sshd::start().expect("start sshd");
    let text = std::fs::read_to_string(sshd.known_hosts()).expect("read known_hosts");
    assert!(
        text.contains(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port())),
        "{text}"
    );
    assert!(
        text.contains(&format!("[localhost]:{} ecdsa-sha2-nistp256 ", sshd.port())),
        "{text}"
    );
}

#[test]
fn drop_stops_sshd_and_removes_its_files() {
    let sshd = Sshd::start().expect("start sshd");
    let dir = sshd.dir().to_path_buf();
    let addr = sshd.addr();
    let pid = sshd.pid();
    assert!(dir.join("sshd_config").is_file());
    drop(sshd);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "sshd {pid} still running (or not reaped)"
    );
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "{addr} still accepts connections"
    );
}

#[test]
fn parallel_servers_get_distinct_ports() {
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| Sshd::start().expect("start sshd")))
        .collect();
    let servers: Vec<Sshd> = handles
        .into_iter()
        .map(|h| h.join().expect("starter thread"))
        .collect();
    let mut ports: Vec<u16> = servers.iter().map(Sshd::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
}
