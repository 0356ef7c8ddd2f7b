//! The binary restarts itself once with its allocator settings in the environment (mimalloc reads
//! them before `main`), per subcommand, and leaves settings the user gave alone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `vigil <args>` and returns its environment once the restart has happened.
fn environ_of(args: &[&str], extra_env: &[(&str, &str)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .env_remove("MIMALLOC_PURGE_DELAY")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let env = loop {
        let env = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap_or_default();
        let env = String::from_utf8_lossy(&env).replace('\0', "\n");
        if env.contains("MIMALLOC_PURGE_DELAY=") && env.contains("MIMALLOC_ARENA_EAGER_COMMIT=") {
            break env;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("vigil {args:?} exited ({status}) before its environment was read");
        }
        assert!(
            Instant::now() < deadline,
            "vigil {args:?} did not restart with its allocator settings"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    env
}

fn port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

#[test]
fn allocator_settings_per_subcommand_and_user_settings_kept() {
    // The host's real cgroups: on an empty --cgroup-root the collector exits at once ("no cgroup
    // hierarchy"), racing the read of its environment.
    let collector = environ_of(
        &[
            "--log-format",
            "json",
            "collector",
            "--listen",
            &port(),
        ],
        &[],
    );
    assert!(
        collector.contains("MIMALLOC_ARENA_EAGER_COMMIT=0\n")
            && collector.contains("MIMALLOC_PURGE_DELAY=0\n"),
        "{collector}"
    );
    let aggregator = environ_of(
        &["aggregator", "--listen", &port(), "--nodes", "127.0.0.1:9"],
        &[],
    );
    assert!(
        aggregator.contains("MIMALLOC_PURGE_DELAY=1000\n"),
        "{aggregator}"
    );
    let mine = environ_of(
        &["aggregator", "--listen", &port(), "--nodes", "127.0.0.1:9"],
        &[("MIMALLOC_PURGE_DELAY", "250")],
    );
    assert!(
        mine.contains("MIMALLOC_PURGE_DELAY=250\n")
            && mine.contains("MIMALLOC_ARENA_EAGER_COMMIT=0\n"),
        "{mine}"
    );
}
