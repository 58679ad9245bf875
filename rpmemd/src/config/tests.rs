//! Configuration tests: precedence of defaults, files and command line; file syntax errors
//! naming file:line; `$HOME` substitution; the `--remove` family.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// A fake environment: a system file path and a home directory, both in a temporary directory.
struct Env {
    tmp: tempfile::TempDir,
    env: Environment,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        fs::create_dir(&home).unwrap();
        let env = Environment {
            system_file: tmp.path().join("etc-rpmemd.conf"),
            home: Some(home),
        };
        Env { tmp, env }
    }
    fn home(&self) -> PathBuf {
        self.env.home.clone().unwrap()
    }
    fn write_system(&self, text: &str) {
        fs::write(&self.env.system_file, text).unwrap();
    }
    fn write_user(&self, text: &str) -> PathBuf {
        let p = self.home().join(USER_CONFIG_FILE_NAME);
        fs::write(&p, text).unwrap();
        p
    }
    fn write(&self, name: &str, text: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::write(&p, text).unwrap();
        p
    }
    fn run(&self, args: &[&str]) -> Result<Config, ConfigError> {
        let argv = std::iter::once("rpmemd").chain(args.iter().copied());
        Config::from_args_with(argv, &self.env)
    }
}

#[test]
fn defaults_without_files() {
    let e = Env::new();
    let c = e.run(&[]).unwrap();
    assert_eq!(
        c,
        Config {
            poolset_dir: e.home(),
            persist_apm: false,
            persist_general: true,
            use_syslog: true,
            log_file: PathBuf::from("/var/log/rpmemd.log"),
            log_level: LogLevel::Err,
            remove: None,
            files_read: vec![],
        }
    );
}

#[test]
fn user_file_overrides_system_file() {
    let e = Env::new();
    e.write_system("poolset-dir = /srv/sys\nlog-level = info\npersist-apm = yes\n");
    let user = e.write_user("poolset-dir = /srv/user\n");
    let c = e.run(&[]).unwrap();
    assert_eq!(c.poolset_dir, Path::new("/srv/user"));
    assert_eq!(c.log_level, LogLevel::Info);
    assert!(c.persist_apm);
    assert_eq!(c.files_read, vec![e.env.system_file.clone(), user]);
}

#[test]
fn explicit_file_replaces_both_defaults() {
    let e = Env::new();
    e.write_system("log-level = debug\n");
    e.write_user("persist-general = no\n");
    let custom = e.write("custom.conf", b"log-level = warn\n");
    let c = e.run(&["-c", custom.to_str().unwrap()]).unwrap();
    assert_eq!(c.log_level, LogLevel::Warn);
    assert!(
        c.persist_general,
        "user file must be skipped when -c is given"
    );
    assert_eq!(c.files_read, vec![custom]);
}

#[test]
fn explicit_file_must_exist() {
    let e = Env::new();
    let missing = e.tmp.path().join("missing.conf");
    let err = e.run(&["--config", missing.to_str().unwrap()]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Read { path, .. } if *path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("missing.conf"));
}

#[test]
fn command_line_overrides_files() {
    let e = Env::new();
    e.write_system(
        "poolset-dir = /srv/sys\npersist-apm = no\nuse-syslog = no\nlog-file = /tmp/a.log\nlog-level = err\n",
    );
    let c = e
        .run(&[
            "--poolset-dir",
            "/srv/cli",
            "--persist-apm",
            "--use-syslog",
            "--log-file",
            "/tmp/b.log",
            "--log-level",
            "debug",
        ])
        .unwrap();
    assert_eq!(c.poolset_dir, Path::new("/srv/cli"));
    assert!(c.persist_apm && c.use_syslog);
    assert_eq!(c.log_file, Path::new("/tmp/b.log"));
    assert_eq!(c.log_level, LogLevel::Debug);
    // Absent presence flags do not turn a file's `yes` off.
    e.write_user("persist-apm = yes\n");
    assert!(e.run(&[]).unwrap().persist_apm);
}

#[test]
fn comments_blank_lines_and_home() {
    let e = Env::new();
    let f = e.write(
        "c.conf",
        b"# This is an example of configuration file\n\
          \n\
          log-file = $HOME/.logs/rpmemd.log\r\n\
          poolset-dir = $HOME/poolsets/\n\
          persist-apm = yes\n\
          \t persist-general=no   \n\
          use-syslog = no # Use log file instead of syslog\n\
          log-level = info\n",
    );
    let c = e.run(&["-c", f.to_str().unwrap()]).unwrap();
    assert_eq!(c.poolset_dir, e.home().join("poolsets/"));
    assert_eq!(c.log_file, e.home().join(".logs/rpmemd.log"));
    assert!(c.persist_apm && !c.persist_general && !c.use_syslog);
    assert_eq!(c.log_level, LogLevel::Info);
}

/// Each bad file gives a syntax error at the given line, whose text contains `why`.
fn check_syntax(text: &[u8], line: usize, why: &str) {
    let e = Env::new();
    let f = e.write("bad.conf", text);
    let err = e.run(&["-c", f.to_str().unwrap()]).unwrap_err();
    match &err {
        ConfigError::Syntax {
            path,
            line: l,
            why: w,
        } => {
            assert_eq!((path, *l), (&f, line), "{err}");
            assert!(w.contains(why), "{w:?} should mention {why:?}");
        }
        other => panic!("expected a syntax error, got {other}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("{}:{line}: ", f.display())),
        "{err}"
    );
}

#[test]
fn syntax_errors_name_file_and_line() {
    check_syntax(
        b"log-level = info\nlog-levle = info\n",
        2,
        "unknown key `log-levle`",
    );
    check_syntax(b"# c\n\npoolset-dir /srv\n", 3, "expected `key = value`");
    check_syntax(
        b"persist-apm = true\n",
        1,
        "must be `yes` or `no`, not `true`",
    );
    check_syntax(
        b"log-level = verbose\n",
        1,
        "not one of err, warn, notice, info, debug",
    );
    check_syntax(b"a\n", 1, "expected `key = value`");
    check_syntax(b"log-file =   # nothing\n", 1, "`log-file` has no value");
    check_syntax(
        b"poolset-dir = /srv\nlog-file = /x\xff\n",
        2,
        "not valid UTF-8",
    );
}

#[test]
fn system_file_errors_are_reported_too() {
    let e = Env::new();
    e.write_system("use-syslog = maybe\n");
    let err = e.run(&[]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Syntax { path, line: 1, .. } if *path == e.env.system_file),
        "{err}"
    );
}

#[test]
fn relative_poolset_dir_is_refused_with_its_origin() {
    let e = Env::new();
    let f = e.write("c.conf", b"\npoolset-dir = poolsets\n");
    let err = e.run(&["-c", f.to_str().unwrap()]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            key: "poolset-dir",
            ..
        }
    ));
    assert!(
        err.to_string().contains(&format!("{}:2", f.display())),
        "{err}"
    );
    let err = e.run(&["--poolset-dir", "rel"]).unwrap_err();
    assert!(err.to_string().contains("command line"), "{err}");
}

#[test]
fn default_poolset_dir_needs_home() {
    let mut e = Env::new();
    e.env.home = None;
    let err = e.run(&[]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::NoHome {
            key: "poolset-dir",
            origin: Origin::Default
        }
    ));
    // Setting poolset-dir explicitly needs no HOME.
    assert_eq!(
        e.run(&["--poolset-dir", "/srv"]).unwrap().poolset_dir,
        Path::new("/srv")
    );
}

#[test]
fn remove_options() {
    let e = Env::new();
    let c = e
        .run(&["--remove", "pool.set", "--force", "--pool-set"])
        .unwrap();
    assert_eq!(
        c.remove,
        Some(RemoveRequest {
            poolset: "pool.set".into(),
            force: true,
            pool_set: true
        })
    );
    let c = e.run(&["-r", "a/b.set"]).unwrap();
    assert_eq!(
        c.remove,
        Some(RemoveRequest {
            poolset: "a/b.set".into(),
            force: false,
            pool_set: false
        })
    );
    // --force and --pool-set only make sense with --remove.
    for lone in ["--force", "--pool-set"] {
        let err = e.run(&[lone]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Cli(c) if c.kind() == clap::error::ErrorKind::MissingRequiredArgument),
            "{err}"
        );
    }
}

#[test]
fn bad_command_lines() {
    let e = Env::new();
    let err = e.run(&["--log-level", "loud"]).unwrap_err();
    assert!(err.to_string().contains("loud"), "{err}");
    assert!(matches!(e.run(&["--bogus"]), Err(ConfigError::Cli(_))));
    // A presence flag takes no value.
    assert!(matches!(
        e.run(&["--persist-apm=yes"]),
        Err(ConfigError::Cli(_))
    ));
    let help = e.run(&["--help"]).unwrap_err();
    assert!(
        matches!(&help, ConfigError::Cli(c) if c.kind() == clap::error::ErrorKind::DisplayHelp)
    );
}

#[test]
fn no_persist_method_is_refused_at_start_up() {
    let e = Env::new();
    let f = e.write("c.conf", b"persist-apm = no\npersist-general = no\n");
    let err = e.run(&["-c", f.to_str().unwrap()]).unwrap_err();
    assert!(matches!(err, ConfigError::NoPersistMethod { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("persist-general"), "{text}");
    assert!(text.contains(&format!("{}:2", f.display())), "{text}");
    // Either method alone is fine, and the command line can turn one back on.
    assert!(e
        .run(&["-c", f.to_str().unwrap(), "--persist-general"])
        .is_ok());
    let g = e.write("g.conf", b"persist-apm = yes\npersist-general = no\n");
    assert!(e.run(&["-c", g.to_str().unwrap()]).is_ok());
}

#[test]
fn root_as_poolset_dir_is_refused() {
    // Confinement to poolset-dir means nothing when it is `/`: every file would be a descriptor.
    let mut e = Env::new();
    for dir in ["/", "//", "/.", "/tmp/.."] {
        let err = e.run(&["--poolset-dir", dir]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "poolset-dir",
                    ..
                }
            ),
            "{dir}: {err}"
        );
        assert!(err.to_string().contains("root directory"), "{err}");
    }
    // A symbolic link to `/` is the same thing.
    let link = e.tmp.path().join("root-link");
    std::os::unix::fs::symlink("/", &link).unwrap();
    assert!(e.run(&["--poolset-dir", link.to_str().unwrap()]).is_err());
    // HOME=/ with the default poolset-dir = $HOME.
    e.env.home = Some(PathBuf::from("/"));
    let err = e.run(&[]).unwrap_err();
    assert!(err.to_string().contains("built-in default"), "{err}");
}

#[test]
fn home_substitution_follows_pmdk() {
    // PMDK's str_replace_home: the first `$HOME` anywhere in the value, once, unless a letter or
    // digit follows it (`$HOMEDIR` is not `$HOME`).
    let e = Env::new();
    let h = e.home().to_str().unwrap().to_owned();
    for (value, want) in [
        ("$HOME", h.clone()),
        ("/srv/$HOME/p", format!("/srv/{h}/p")),
        ("$HOME/a/$HOME", format!("{h}/a/$HOME")),
        ("/srv/$HOME_x", format!("/srv/{h}_x")),
        ("/srv/$HOMEDIR", "/srv/$HOMEDIR".to_owned()),
    ] {
        let c = e.run(&["--poolset-dir", value]).unwrap();
        assert_eq!(c.poolset_dir, PathBuf::from(&want), "{value}");
        let c = e.run(&["--log-file", value]).unwrap();
        assert_eq!(c.log_file, PathBuf::from(&want), "{value}");
    }
    // `$HOMEDIR/x` is left as written, so it is a relative path, not a missing HOME.
    let mut e = e;
    e.env.home = None;
    let err = e.run(&["--poolset-dir", "$HOMEDIR/x"]).unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
}
