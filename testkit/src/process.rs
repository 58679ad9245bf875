//! Running helper programs with a deadline.
//!
//! Nothing in a test may hang, so every external program the harness runs (ssh-keygen, ip, nft,
//! ssh in tests) goes through [`output_with_timeout`]: the child is killed when the deadline
//! passes, and the pipes are drained by threads whose results are awaited with a bound too (a
//! grandchild that inherited a pipe cannot block us).

use std::ffi::OsStr;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a helper such as `ip` or `ssh-keygen` may take before we call it hung.
pub(crate) const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

/// Renders a command line for error messages (`program arg arg …`).
pub fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to completion and returns its output, killing it if it runs longer than `timeout`.
///
/// stdin is /dev/null (the child cannot wait for input); stdout and stderr are captured.
/// A timeout is an [`Error::Timeout`] naming the command line; a non-zero exit is *not* an error
/// here: check `output.status`.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let line = command_line(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting `{line}`"), e))?;
    let stdout = spawn_reader(child.stdout.take());
    let stderr = spawn_reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // Best effort: the child may have exited between try_wait and kill.
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("`{line}` to finish"),
                    after: timeout,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(Error::io(format!("waiting for `{line}`"), e)),
        }
    };
    // The pipes reach EOF when the child exits, unless a grandchild kept them open; bound that.
    let grace = Duration::from_secs(2);
    let stdout = stdout.recv_timeout(grace).unwrap_or_default();
    let stderr = stderr.recv_timeout(grace).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`output_with_timeout`] with the helper timeout, but a non-zero exit status is an
/// [`Error::CommandFailed`] carrying the command's stderr.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output> {
    let output = output_with_timeout(cmd, HELPER_TIMEOUT)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::CommandFailed {
            command: command_line(cmd),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn spawn_reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error just ends the capture; what we have so far is still useful.
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// Finds `program` on PATH (or returns it as is when it contains a slash and exists).
pub fn which(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    let program = program.as_ref();
    let as_path = PathBuf::from(program);
    if as_path.components().count() > 1 {
        return as_path.is_file().then_some(as_path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    // sbin directories are not always on a normal user's PATH, but ip, nft and sshd live there.
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Finds `program` or returns [`Error::ToolMissing`] naming the Debian `package` to install.
pub(crate) fn require_tool(program: &str, package: &str) -> Result<PathBuf> {
    which(program).ok_or_else(|| Error::ToolMissing {
        program: program.to_owned(),
        package: package.to_owned(),
    })
}
