//! The small helpers: free ports, bounded waits, commands with a deadline.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{free_port, output_with_timeout, wait_for, Error};

#[test]
fn free_port_can_be_bound() {
    let port = free_port().expect("free port");
    assert_ne!(port, 0);
    TcpListener::bind(("127.0.0.1", port)).expect("bind the port just reported free");
}

#[test]
fn wait_for_returns_true_once_the_condition_holds() {
    let mut calls = 0;
    assert!(wait_for(Duration::from_secs(5), || {
        calls += 1;
        calls >= 3
    }));
    assert_eq!(calls, 3);
}

#[test]
fn wait_for_gives_up_at_the_deadline() {
    let start = Instant::now();
    assert!(!wait_for(Duration::from_millis(200), || false));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn output_with_timeout_kills_a_hung_command() {
    let start = Instant::now();
    let err = output_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(300))
        .expect_err("sleep 30 must time out");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn output_with_timeout_captures_output() {
    let out = output_with_timeout(
        Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        Duration::from_secs(10),
    )
    .expect("sh runs");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
}

#[test]
fn netns_host_without_root_is_a_skip_not_a_failure() {
    if testkit::is_root() {
        // The root path is covered by tests/netns.rs; this test checks the non-root path.
        return;
    }
    let err = testkit::NetnsHost::create().expect_err("creating a namespace needs root");
    assert!(err.skip_reason().is_some(), "{err}");
}
