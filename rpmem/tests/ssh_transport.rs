//! The built-in SSH control channel against a real sshd on 127.0.0.1 (testkit), with `cat`
//! standing in for rpmemd: bytes go through, host keys are really checked, the user's ssh
//! configuration is honoured, and failures say what to check.

use std::io::{Read, Write};
use std::time::Duration;

use rpmem::{ControlChannel, SshOptions, Target, Transport, TransportError};
use testkit::Sshd;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn options(sshd: &Sshd, remote_program: &str) -> SshOptions {
    SshOptions {
        config_file: Some("/dev/null".into()),
        known_hosts: Some(sshd.known_hosts().to_path_buf()),
        accept_unknown_host: false,
        identity_files: vec![sshd.user_key().to_path_buf()],
        use_agent: false,
        remote_program: remote_program.into(),
        connect_timeout: Duration::from_secs(10),
    }
}

fn target(sshd: &Sshd) -> Target {
    format!("{}@127.0.0.1:{}", sshd.user(), sshd.port())
        .parse()
        .unwrap()
}

fn open(options: SshOptions, target: &Target) -> Result<ControlChannel, TransportError> {
    ControlChannel::open(&Transport::Ssh(options), target, &[], IO_TIMEOUT)
}

#[test]
fn bytes_round_trip_through_the_remote_program() {
    let sshd = Sshd::start().unwrap();
    let mut channel = open(options(&sshd, "cat"), &target(&sshd)).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let writer_payload = payload.clone();
    // cat echoes as it reads, so write and read interleaved in chunks to avoid filling windows.
    let mut echoed = vec![0u8; payload.len()];
    for (chunk_in, chunk_out) in writer_payload.chunks(8192).zip(echoed.chunks_mut(8192)) {
        channel.write_all(chunk_in).unwrap();
        channel.flush().unwrap();
        channel.read_exact(chunk_out).unwrap();
    }
    assert_eq!(echoed, payload);
    assert_eq!(
        channel.peer_ip().map(|ip| ip.to_string()).as_deref(),
        Some("127.0.0.1")
    );
    let exit = channel.finish().unwrap();
    assert_eq!(exit.code, Some(0), "stderr: {}", exit.stderr);
}

#[test]
fn unknown_host_key_is_refused_unless_accepted_explicitly() {
    let sshd = Sshd::start().unwrap();
    let empty = sshd.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut opts = options(&sshd, "cat");
    opts.known_hosts = Some(empty.clone());
    let err = open(opts.clone(), &target(&sshd)).err().unwrap();
    assert!(
        matches!(err, TransportError::UnknownHostKey { port, .. } if port == sshd.port()),
        "{err}"
    );
    assert!(err.to_string().contains("ssh-keyscan"), "{err}");

    opts.accept_unknown_host = true;
    let channel = open(opts, &target(&sshd)).unwrap();
    assert_eq!(channel.finish().unwrap().code, Some(0));
}

#[test]
fn a_different_host_key_is_a_mismatch() {
    let sshd = Sshd::start().unwrap();
    let other = Sshd::start().unwrap();
    // known_hosts that names this server's address and port with the other server's keys.
    let text = std::fs::read_to_string(other.known_hosts())
        .unwrap()
        .replace(
            &format!("[127.0.0.1]:{}", other.port()),
            &format!("[127.0.0.1]:{}", sshd.port()),
        );
    let forged = sshd.dir().join("forged_known_hosts");
    std::fs::write(&forged, text).unwrap();
    let mut opts = options(&sshd, "cat");
    opts.known_hosts = Some(forged);
    opts.accept_unknown_host = true; // must not help against a mismatch
    let err = open(opts, &target(&sshd)).err().unwrap();
    assert!(
        matches!(err, TransportError::HostKeyMismatch { .. }),
        "{err}"
    );
}

#[test]
fn wrong_key_fails_authentication_naming_what_was_tried() {
    let sshd = Sshd::start().unwrap();
    let other = Sshd::start().unwrap();
    let mut opts = options(&sshd, "cat");
    opts.identity_files = vec![other.user_key().to_path_buf()];
    let err = open(opts, &target(&sshd)).err().unwrap();
    match &err {
        TransportError::Auth { tried, .. } => {
            assert!(
                tried.contains(&other.user_key().display().to_string()),
                "{err}"
            )
        }
        _ => panic!("expected an authentication error, got {err}"),
    }
}

#[test]
fn ssh_config_alias_supplies_host_port_user_and_key() {
    let sshd = Sshd::start().unwrap();
    let config = sshd.write_ssh_config("replica-host").unwrap();
    let opts = SshOptions {
        config_file: Some(config),
        known_hosts: None,
        identity_files: Vec::new(),
        use_agent: false,
        remote_program: "cat".into(),
        ..SshOptions::default()
    };
    let target: Target = "replica-host".parse().unwrap();
    let mut channel = open(opts, &target).unwrap();
    channel.write_all(b"via-config").unwrap();
    let mut buf = [0u8; 10];
    channel.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"via-config");
}

#[test]
fn missing_rpmemd_on_the_target_is_explained() {
    let sshd = Sshd::start().unwrap();
    let mut channel = open(options(&sshd, "rpmemd-that-does-not-exist"), &target(&sshd)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(channel.read(&mut buf).unwrap(), 0, "expected EOF");
    let exit = channel.finish().unwrap();
    assert_eq!(exit.code, Some(127), "stderr: {}", exit.stderr);
    assert!(
        exit.explain().contains("not installed"),
        "{}",
        exit.explain()
    );
}

#[test]
fn nothing_listening_says_to_check_sshd() {
    let port = testkit::free_port().unwrap();
    let target: Target = format!("root@127.0.0.1:{port}").parse().unwrap();
    let err = open(SshOptions::default(), &target).err().unwrap();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("is sshd running"), "{err}");
}

#[test]
fn external_ssh_command_transport() {
    let sshd = Sshd::start().unwrap();
    let argv: Vec<String> = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        &sshd.user_key().display().to_string(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        &format!("UserKnownHostsFile={}", sshd.known_hosts().display()),
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let args = vec!["cat".to_string()];
    let mut channel = ControlChannel::open(
        &Transport::External { argv },
        &target(&sshd),
        &args,
        IO_TIMEOUT,
    )
    .unwrap();
    channel.write_all(b"external").unwrap();
    let mut buf = [0u8; 8];
    channel.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"external");
    assert_eq!(channel.finish().unwrap().code, Some(0));
}

#[test]
fn host_names_are_compared_in_lower_case_as_openssh_writes_them() {
    let sshd = Sshd::start().unwrap();
    // testkit's known_hosts names [localhost]:PORT; the user types it in capitals.
    let target: Target = format!("{}@LOCALHOST:{}", sshd.user(), sshd.port())
        .parse()
        .unwrap();
    let channel = open(options(&sshd, "cat"), &target).unwrap();
    assert_eq!(channel.finish().unwrap().code, Some(0));
}

#[test]
fn a_revoked_host_key_is_refused_even_when_also_listed_as_known() {
    let sshd = Sshd::start().unwrap();
    let known = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let revoked: String = known
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("@revoked {l}\n"))
        .collect();
    let file = sshd.dir().join("revoked_known_hosts");
    std::fs::write(&file, format!("{known}{revoked}")).unwrap();
    let mut opts = options(&sshd, "cat");
    opts.known_hosts = Some(file);
    opts.accept_unknown_host = true;
    let err = open(opts, &target(&sshd)).err().unwrap();
    assert!(
        matches!(err, TransportError::HostKeyMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("@revoked"), "{err}");
}
