//! Options of a session: how rpmemd is started, which fabric provider and persist method, and
//! the deadlines. `Options::from_env` applies PMDK-style environment variables.

use std::path::PathBuf;
use std::time::Duration;

use rpmem_proto::{PersistMethod, Provider};

use crate::transport::{SshOptions, Transport};

#[derive(Clone, Debug)]
pub struct Options {
    /// How to start rpmemd; `None` means the built-in SSH client with default settings.
    pub transport: Option<Transport>,
    /// Command that runs rpmemd on the target for the SSH transports (PMDK's RPMEM_CMD).
    pub remote_program: String,
    /// Extra arguments for rpmemd (e.g. `--poolset-dir DIR`, `-c FILE`).
    pub rpmemd_args: Vec<String>,
    /// Fabric provider of the data lanes.
    pub provider: Provider,
    /// Persist method asked for; rpmemd may grant General instead of Appliance.
    pub persist_method: PersistMethod,
    /// Deadline of every control-channel reply.
    pub control_deadline: Duration,
    /// Deadline for all lanes to connect.
    pub lane_connect_deadline: Duration,
    /// Deadline of each step of a persist (and read).
    pub persist_deadline: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transport: None,
            remote_program: "rpmemd".into(),
            rpmemd_args: Vec::new(),
            provider: Provider::Tcp,
            persist_method: PersistMethod::General,
            control_deadline: rpmem_proto::DEFAULT_CONTROL_DEADLINE,
            lane_connect_deadline: rpmem_proto::DEFAULT_LANE_CONNECT_DEADLINE,
            persist_deadline: rpmem_proto::DEFAULT_PERSIST_DEADLINE,
        }
    }
}

impl Options {
    /// Defaults, then the environment:
    /// - `RPMEM_ENABLE_SOCKETS=1`: the `sockets` provider instead of `tcp`;
    /// - `RPMEM_TRANSPORT=local|ssh|external`: how rpmemd is started (default `ssh`, built in);
    /// - `RPMEMD_PATH`: the program the local transport runs (default `rpmemd` on PATH);
    /// - `RPMEM_SSH`: the external ssh command, split on spaces (default `ssh -T`);
    /// - `RPMEM_CMD`: the command that runs rpmemd on the target (default `rpmemd`).
    pub fn from_env() -> Options {
        Options::from_lookup(&|k| std::env::var(k).ok())
    }

    /// As [`from_env`](Self::from_env) with an explicit variable lookup (tests).
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Options {
        let mut o = Options::default();
        if var("RPMEM_ENABLE_SOCKETS").is_some_and(|v| v == "1") {
            o.provider = Provider::Sockets;
        }
        if let Some(cmd) = var("RPMEM_CMD").filter(|c| !c.is_empty()) {
            o.remote_program = cmd;
        }
        o.transport = match var("RPMEM_TRANSPORT").as_deref() {
            Some("local") => Some(Transport::Local {
                program: PathBuf::from(var("RPMEMD_PATH").unwrap_or_else(|| "rpmemd".into())),
            }),
            Some("external") => Some(Transport::External {
                argv: var("RPMEM_SSH")
                    .unwrap_or_else(|| "ssh -T".into())
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
            }),
            _ => None,
        };
        o
    }

    /// The transport to use and the argument list to give it.
    pub(crate) fn resolve(&self) -> (Transport, Vec<String>) {
        let transport = self.transport.clone().unwrap_or_else(|| {
            Transport::Ssh(SshOptions {
                remote_program: self.remote_program.clone(),
                ..SshOptions::default()
            })
        });
        let args = match &transport {
            // The external command runs a shell command line: program first.
            Transport::External { .. } => std::iter::once(self.remote_program.clone())
                .chain(self.rpmemd_args.iter().cloned())
                .collect(),
            _ => self.rpmemd_args.clone(),
        };
        (transport, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_selects_provider_and_transport() {
        let o = Options::from_lookup(&|k| match k {
            "RPMEM_ENABLE_SOCKETS" => Some("1".into()),
            "RPMEM_TRANSPORT" => Some("local".into()),
            "RPMEMD_PATH" => Some("/opt/rpmemd".into()),
            _ => None,
        });
        assert_eq!(o.provider, Provider::Sockets);
        assert!(
            matches!(&o.transport, Some(Transport::Local { program }) if program.to_str() == Some("/opt/rpmemd"))
        );
        let o = Options::from_lookup(&|k| match k {
            "RPMEM_TRANSPORT" => Some("external".into()),
            "RPMEM_CMD" => Some("/usr/local/bin/rpmemd".into()),
            _ => None,
        });
        let (t, args) = o.resolve();
        assert!(matches!(t, Transport::External { argv } if argv == ["ssh", "-T"]));
        assert_eq!(args, ["/usr/local/bin/rpmemd"]);
        let (t, args) = Options::from_lookup(&|_| None).resolve();
        assert!(matches!(t, Transport::Ssh(s) if s.remote_program == "rpmemd"));
        assert!(args.is_empty());
    }
}
