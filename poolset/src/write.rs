//! The writer: prints a [`PoolSet`] as poolset(5) text that both this parser and PMDK read.
//!
//! Canonical form: `PMEMPOOLSET`, then one `OPTION` line per option, then the parts of each
//! replica; sizes in the shortest exact power-of-1024 unit; remote replicas in PMDK's two-field
//! form `REPLICA [user@]host[:port] DESCRIPTOR`; no comments, `\n` line ends.
//!
//! The text parses back to an equal set (line numbers aside) when the set satisfies what the
//! parser guarantees (documented on the model types); a hand-built set that breaks those rules
//! (a relative path, a path with a space) prints text the parser rejects rather than misreads.

use std::fmt;

use crate::model::{PoolSet, Replica};
use crate::node::format_node;
use crate::size::format_size;

impl PoolSet {
    /// The set as poolset(5) text.
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for PoolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "PMEMPOOLSET")?;
        if self.options.single_hdr {
            writeln!(f, "OPTION SINGLEHDR")?;
        }
        if self.options.no_hdrs {
            writeln!(f, "OPTION NOHDRS")?;
        }
        for (i, replica) in self.replicas.iter().enumerate() {
            match replica {
                Replica::Local(local) => {
                    if i > 0 {
                        writeln!(f, "REPLICA")?;
                    }
                    for part in &local.parts {
                        let path = part.path.to_string_lossy();
                        let slash = if part.is_directory && !path.ends_with('/') {
                            "/"
                        } else {
                            ""
                        };
                        writeln!(f, "{} {path}{slash}", format_size(part.size))?;
                    }
                }
                Replica::Remote(remote) => {
                    writeln!(
                        f,
                        "REPLICA {} {}",
                        format_node(remote.user.as_deref(), &remote.host, remote.port),
                        remote.descriptor.to_string_lossy()
                    )?;
                }
            }
        }
        Ok(())
    }
}
