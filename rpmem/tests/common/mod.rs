//! Shared set-up of the end-to-end tests: a real rpmemd binary, a throw-away poolset-dir with an
//! rpmemd configuration file, poolsets, and options for the local transport.
//!
//! The rpmemd binary and the `PATH` an sshd needs to find it come from [`testkit::rpmemd`].

#![allow(dead_code)]
use std::path::PathBuf;
use std::time::Duration;

use rpmem::{Options, Transport};

/// A poolset-dir with a configuration file, and a parts directory.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sets")).unwrap();
        std::fs::create_dir(dir.path().join("parts")).unwrap();
        std::fs::write(
            dir.path().join("rpmemd.conf"),
            format!(
                "poolset-dir = {}\nuse-syslog = no\nlog-file = -\nlog-level = info\n",
                dir.path().join("sets").display()
            ),
        )
        .unwrap();
        Site { dir }
    }

    pub fn poolset_dir(&self) -> PathBuf {
        self.dir.path().join("sets")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("rpmemd.conf")
    }

    /// Writes `sets/<name>` describing parts of the given sizes (MiB) in `parts/`.
    pub fn poolset(&self, name: &str, parts_mib: &[u64]) -> Vec<PathBuf> {
        let mut text = String::from("PMEMPOOLSET\n");
        let mut paths = Vec::new();
        for (i, mib) in parts_mib.iter().enumerate() {
            let p = self
                .dir
                .path()
                .join("parts")
                .join(format!("{name}.part{i}"));
            text.push_str(&format!("{mib}M {}\n", p.display()));
            paths.push(p);
        }
        std::fs::write(self.poolset_dir().join(name), text).unwrap();
        paths
    }

    pub fn rpmemd_args(&self) -> Vec<String> {
        vec!["-c".into(), self.config().display().to_string()]
    }

    /// Options for the local transport.
    pub fn local(&self) -> Options {
        Options {
            transport: Some(Transport::Local {
                program: testkit::rpmemd::binary(),
            }),
            rpmemd_args: self.rpmemd_args(),
            control_deadline: Duration::from_secs(10),
            persist_deadline: Duration::from_secs(5),
            ..Options::default()
        }
    }
}

/// xorshift64*: a seeded pattern, so a failure can be replayed from the printed seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn seed() -> u64 {
    let s = std::env::var("RPMEM_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("pattern seed {s} (replay with RPMEM_TEST_SEED={s})");
    s
}

/// Offset of remote pool offset 0 in the first part file: the pool crate's header region
/// (4096) plus rpmemd's attribute area (4096); see docs/PROTOCOL.md "Target side".
pub const PART0_DATA_OFFSET: u64 = 8192;

pub fn attr(tag: u8) -> rpmem::PoolAttr {
    rpmem::PoolAttr {
        signature: *b"RPMEMTST",
        major: 1,
        compat_features: 2,
        incompat_features: 3,
        ro_compat_features: 4,
        poolset_uuid: [tag; 16],
        uuid: [tag.wrapping_add(1); 16],
        next_uuid: [tag.wrapping_add(2); 16],
        prev_uuid: [tag.wrapping_add(3); 16],
        user_flags: [tag.wrapping_add(4); 16],
    }
}

/// Children of this process named rpmemd (found through /proc; tests signal only their own
/// children).
pub fn our_rpmemd_children() -> Vec<i32> {
    let mut out = Vec::new();
    let me = std::process::id();
    for task in std::fs::read_dir(format!("/proc/{me}/task"))
        .unwrap()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "rpmemd" {
                out.push(pid);
            }
        }
    }
    out
}

/// The rpmemd child serving `site` (its command line names the site's configuration file).
pub fn rpmemd_child_of(site: &Site) -> i32 {
    let conf = site.config().display().to_string();
    our_rpmemd_children()
        .into_iter()
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&conf))
                .unwrap_or(false)
        })
        .expect("our rpmemd child")
}

/// Options for the built-in SSH client against a testkit sshd (its known_hosts and user key,
/// no agent, no user configuration).
pub fn ssh_options(sshd: &testkit::Sshd, site: &Site, remote_program: &str) -> Options {
    Options {
        transport: Some(Transport::Ssh(rpmem::SshOptions {
            config_file: Some("/dev/null".into()),
            known_hosts: Some(sshd.known_hosts().to_path_buf()),
            accept_unknown_host: false,
            identity_files: vec![sshd.user_key().to_path_buf()],
            use_agent: false,
            remote_program: remote_program.into(),
            connect_timeout: Duration::from_secs(10),
        })),
        rpmemd_args: site.rpmemd_args(),
        ..Options::default()
    }
}

/// The first `len` bytes of the remote pool `desc` on this host, read back through a new
/// rpmemd session (RMA read), which is then closed.
pub fn remote_bytes(desc: &str, len: usize, opts: &Options) -> Vec<u8> {
    let mut nlanes = 1;
    let (remote, _) = rpmem::RpmemPool::open(
        "localhost",
        desc,
        rpmem::PoolMemory::new(len).unwrap(),
        &mut nlanes,
        opts,
    )
    .unwrap();
    let mut back = vec![0u8; len];
    remote.read(&mut back, 0, 0).unwrap();
    remote.close(false).unwrap();
    back
}
