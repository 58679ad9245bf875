//! A missing sshd is a typed error that says what to install. (Own test binary: it sets
//! TESTKIT_SSHD, which would disturb other tests running in parallel in the same process.)

use testkit::{Error, Sshd};

#[test]
fn missing_sshd_says_to_install_openssh_server() {
    std::env::set_var("TESTKIT_SSHD", "/nonexistent/testkit/sshd");
    let err = Sshd::start().expect_err("sshd path does not exist");
    assert!(matches!(err, Error::SshdMissing { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("apt-get install openssh-server"),
        "{message}"
    );
    assert!(message.contains("/nonexistent/testkit/sshd"), "{message}");
}
