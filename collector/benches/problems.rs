//! Cost of matching node-problem-detector's shipped kernel rules on lines that match nothing
//! (the common case), against a floor that only splits the same input into lines, and against
//! node-problem-detector's own algorithm (join the buffer, match `pattern\z`) run in Rust.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_collector::problems::config::{parse_str, MonitorConfig};
use vigil_collector::problems::matcher::{LogLine, Matcher};
use vigil_collector::problems::watch::filelog::Translator;

use vigil_collector::problems::KERNEL_MONITOR;

/// Realistic kernel messages that none of the shipped rules match.
fn input(lines: usize) -> String {
    let templates = [
        "IPv6: ADDRCONF(NETDEV_CHANGE): veth{n}: link becomes ready",
        "cni0: port {n}(veth{n}a1b2c3) entered forwarding state",
        "[UFW BLOCK] IN=eth0 OUT= MAC=42:01:0a:80:00:01 SRC=10.128.0.{n} DST=10.128.0.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID={n} DF PROTO=TCP SPT=44{n} DPT=10250 WINDOW=29200 RES=0x00 SYN URGP=0",
        "EXT4-fs (sda1): mounted filesystem with ordered data mode. Opts: (null)",
        "device veth{n} entered promiscuous mode",
        "aufs au_opts_verify:1570:docker[{n}]: dirperm1 breaks the protection by the permission bits on the lower branch",
        "nf_conntrack: default automatic helper assignment has been turned off for security reasons",
        "audit: type=1400 audit({n}.123:45): apparmor=\"STATUS\" operation=\"profile_load\" name=\"docker-default\" pid={n}",
        "Memory cgroup stats for /kubepods/burstable/pod{n}: cache:0KB rss:1024KB",
        "task_numa_fault: pid {n} migrated 12 pages",
    ];
    let mut s = String::new();
    for i in 0..lines {
        s.push_str(&templates[i % templates.len()].replace("{n}", &(i % 997).to_string()));
        s.push('\n');
    }
    s
}

fn bench(c: &mut Criterion) {
    let MonitorConfig::SystemLog(cfg) =
        parse_str(std::path::Path::new("kernel-monitor.json"), KERNEL_MONITOR).unwrap()
    else {
        panic!("kernel-monitor.json is a system log monitor")
    };
    let patterns: Vec<&str> = cfg.rules.iter().map(|r| r.pattern.as_str()).collect();
    let n = 100_000;
    let text = input(n);
    let ts = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();

    let mut g = c.benchmark_group("problems/kernel-rules-no-match");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(3));

    g.bench_function("floor: split into lines", |b| {
        b.iter(|| {
            for l in text.lines() {
                black_box(l);
            }
        })
    });
    g.bench_function("floor: split into owned LogLines", |b| {
        b.iter(|| {
            for l in text.lines() {
                black_box(LogLine {
                    timestamp: ts,
                    message: l.to_string(),
                });
            }
        })
    });
    g.bench_function("vigil matcher (fast path)", |b| {
        let mut m = Matcher::new(&patterns, cfg.buffer_lines()).unwrap();
        b.iter(|| {
            let mut hits = 0;
            for l in text.lines() {
                hits += m
                    .push(LogLine {
                        timestamp: ts,
                        message: l.to_string(),
                    })
                    .len();
            }
            assert_eq!(hits, 0);
        })
    });
    g.bench_function("npd algorithm (joined buffer, pattern\\z)", |b| {
        let mut m = Matcher::new(&patterns, cfg.buffer_lines()).unwrap();
        b.iter(|| {
            let mut hits = 0;
            for l in text.lines() {
                hits += m
                    .push_exact(LogLine {
                        timestamp: ts,
                        message: l.to_string(),
                    })
                    .len();
            }
            assert_eq!(hits, 0);
        })
    });
    g.finish();

    // The filelog path: kern.log lines through the shipped filelog pluginConfig (timestamp regex,
    // message regex, Go layout) and then the rules, against splitting the same file into lines.
    let kern: String = text
        .lines()
        .map(|l| format!("Nov 22 03:04:05 vigil-node kernel: [ 4242.000001] {l}\n"))
        .collect();
    let tr = Translator::new(r"^.{15}", r"kernel: \[.*\] (.*)", "Jan _2 15:04:05").unwrap();
    let mut g = c.benchmark_group("problems/filelog-kern-log-no-match");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(3));
    g.bench_function("floor: split into lines", |b| {
        b.iter(|| {
            for l in kern.lines() {
                black_box(l);
            }
        })
    });
    g.bench_function("vigil: translate + match", |b| {
        let mut m = Matcher::new(&patterns, cfg.buffer_lines()).unwrap();
        b.iter(|| {
            let mut hits = 0;
            for l in kern.lines() {
                hits += m.push(tr.translate(l).unwrap()).len();
            }
            assert_eq!(hits, 0);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
