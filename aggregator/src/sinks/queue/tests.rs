//! The queue's order, spill, restart and disk-failure behaviour.

use super::*;
use std::time::Duration;

fn p(i: u32) -> Payload {
    Payload {
        body: Bytes::from(format!("payload-{i:06}-{}", "x".repeat(100))),
        points: i,
    }
}

fn drain(q: &Queue) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        let e = q.peek(3);
        if e.is_empty() {
            return got;
        }
        got.extend(e.iter().map(|e| e.payload.points));
        q.ack(&e);
    }
}

#[test]
fn memory_only_keeps_order_and_drops_oldest_at_cap() {
    let q = Queue::open("t", 1200, None, 0).unwrap();
    for i in 0..20 {
        q.push(p(i));
    }
    let st = q.stats();
    assert!(st.dropped_payloads > 0);
    assert_eq!(st.memory_payloads + st.dropped_payloads, 20);
    let got = drain(&q);
    let first = got[0];
    assert_eq!(got, (first..20).collect::<Vec<_>>());
    assert_eq!(st.dropped_points, (0..first as u64).sum::<u64>());
}

#[test]
fn spills_to_disk_and_delivers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open("t", 500, Some(dir.path()), 1 << 20).unwrap();
    for i in 0..50 {
        q.push(p(i));
    }
    let st = q.stats();
    assert!(st.disk_payloads > 0, "{st:?}");
    assert_eq!(st.memory_payloads + st.disk_payloads, 50);
    // interleave: take some, push more, take all
    let e = q.peek(2);
    q.ack(&e);
    for i in 50..60 {
        q.push(p(i));
    }
    let mut got = vec![0, 1];
    got.extend(drain(&q));
    assert_eq!(got, (0..60).collect::<Vec<_>>());
    assert_eq!(q.stats().disk_bytes, 0);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            n.ends_with(".seg").then_some(n)
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn restart_delivers_spilled_and_memory_payloads_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open("t", 700, Some(dir.path()), 1 << 20).unwrap();
        for i in 0..30 {
            q.push(p(i));
        }
        // deliver some from memory, then some from disk
        let e = q.peek(1);
        q.ack(&e);
        q.spill_memory().unwrap();
    }
    {
        let q = Queue::open("t", 700, Some(dir.path()), 1 << 20).unwrap();
        let e = q.peek(4);
        assert_eq!(
            e.iter().map(|e| e.payload.points).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        q.ack(&e);
        // a new push after restart lands behind the old data
        q.push(p(30));
    }
    let q = Queue::open("t", 700, Some(dir.path()), 1 << 20).unwrap();
    q.push(p(31));
    assert_eq!(drain(&q), (5..32).collect::<Vec<_>>());
}

#[test]
fn disk_cap_drops_oldest_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open("t", 1024, Some(dir.path()), 8192).unwrap();
    for i in 0..200 {
        q.push(p(i));
    }
    let st = q.stats();
    assert!(st.disk_bytes <= 8192, "{st:?}");
    assert!(st.dropped_payloads > 0);
    let got = drain(&q);
    assert_eq!(got.len() as u64 + st.dropped_payloads, 200);
    // what is left is in order, and the newest survived
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*got.last().unwrap(), 199);
}

/// Makes a directory refuse new files: chmod 0555, and `chattr +i` too when running as root
/// (root ignores the mode). Panics when neither bites. Undone on drop.
struct Unwritable(PathBuf);

impl Unwritable {
    fn new(dir: &Path) -> Unwritable {
        use std::os::unix::fs::PermissionsExt;
        let guard = Unwritable(dir.to_path_buf());
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = dir.join("probe");
        if File::create(&probe).is_ok() {
            let _ = std::fs::remove_file(&probe);
            let st = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .expect("running chattr (e2fsprogs) to make the spill dir unwritable as root");
            assert!(st.success(), "chattr +i {} failed", dir.display());
            assert!(
                File::create(&probe).is_err(),
                "cannot make {} unwritable",
                dir.display()
            );
        }
        guard
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

/// Pushes from `next` until a payload lands in overflow (memory grows while segments wait),
/// then `extra` more; returns the next number to push.
fn push_into_overflow(q: &Queue, mut next: u32, extra: u32) -> u32 {
    let mem = q.stats().memory_payloads;
    while q.stats().memory_payloads == mem {
        assert!(next < 10_000, "the disk never refused a payload");
        q.push(p(next));
        next += 1;
    }
    for _ in 0..extra {
        q.push(p(next));
        next += 1;
    }
    next
}

#[test]
fn disk_failing_while_segments_wait_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    // ~17 payloads fit in memory; segments roll over every 4096 bytes (~32 payloads).
    let q = Queue::open("t", 2000, Some(&spill), 32768).unwrap();
    for i in 0..60 {
        q.push(p(i));
    }
    assert!(q.stats().disk_payloads > 0);
    let lock = Unwritable::new(&spill);
    let mut next = push_into_overflow(&q, 60, 3);
    let st = q.stats();
    assert_eq!(st.dropped_payloads, 0, "{st:?}");
    assert_eq!(st.memory_payloads + st.disk_payloads, next as u64, "{st:?}");
    // Deliver part while the disk still refuses, then let it heal and push more.
    let mut got = Vec::new();
    for _ in 0..8 {
        let e = q.peek(3);
        got.extend(e.iter().map(|e| e.payload.points));
        q.ack(&e);
    }
    drop(lock);
    for _ in 0..5 {
        q.push(p(next));
        next += 1;
    }
    got.extend(drain(&q));
    assert_eq!(got, (0..next).collect::<Vec<_>>());
    assert_eq!(q.stats().dropped_payloads, 0);
    // With nothing left waiting, new payloads take the normal path again.
    q.push(p(next));
    assert_eq!(drain(&q), vec![next]);
}

#[test]
fn restart_after_disk_failure_delivers_everything_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    let next;
    {
        let q = Queue::open("t", 2000, Some(&spill), 32768).unwrap();
        for i in 0..60 {
            q.push(p(i));
        }
        // Deliver memory and part of the head segment (its cursor must survive).
        let mut acked = 0;
        while acked < 21 {
            let e = q.peek(1);
            acked += e.len();
            q.ack(&e);
        }
        let lock = Unwritable::new(&spill);
        next = push_into_overflow(&q, 60, 3);
        drop(lock);
        q.spill_memory().unwrap();
        assert_eq!(q.stats().dropped_payloads, 0);
    }
    let q = Queue::open("t", 2000, Some(&spill), 32768).unwrap();
    q.push(p(next));
    assert_eq!(drain(&q), (21..=next).collect::<Vec<_>>());
}

#[test]
fn cursor_of_a_partly_delivered_segment_survives_a_segment_put_in_front() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open("t", 2000, Some(dir.path()), 32768).unwrap();
        for i in 0..40 {
            q.push(p(i));
        }
        let mut acked = 0;
        while acked < 20 {
            let e = q.peek(1);
            acked += e.len();
            q.ack(&e);
        }
        // A payload in memory in front of a partly delivered segment (as after a disk failure).
        let mut g = q.inner.lock().unwrap();
        g.mem.push_back(Entry {
            seq: 0,
            payload: p(1000),
            pos: Pos::Memory,
        });
        g.mem_bytes += p(1000).body.len() as u64;
        drop(g);
        q.spill_memory().unwrap();
    }
    let q = Queue::open("t", 2000, Some(dir.path()), 32768).unwrap();
    let mut want = vec![1000];
    want.extend(20..40);
    assert_eq!(drain(&q), want);
}

#[test]
fn push_does_not_wait_for_a_peek_reading_the_disk() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open("t", 10, Some(dir.path()), 32768).unwrap());
    for i in 0..40 {
        q.push(p(i));
    }
    let head = q.inner.lock().unwrap().disk.as_ref().unwrap().segments[0]
        .path
        .clone();
    let head_records = q.inner.lock().unwrap().disk.as_ref().unwrap().segments[0].records;
    assert!(head_records < 40, "the payloads must span two segments");
    // The head segment becomes a FIFO: opening it blocks until a writer appears.
    std::fs::remove_file(&head).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(&head)
        .status()
        .unwrap();
    assert!(st.success());
    let reader = {
        let q = q.clone();
        std::thread::spawn(move || q.peek(3))
    };
    std::thread::sleep(Duration::from_millis(100));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let q = q.clone();
        std::thread::spawn(move || {
            q.push(p(40));
            tx.send(q.stats()).unwrap();
        });
    }
    let st = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("push waited for a peek blocked on disk");
    assert_eq!(st.disk_payloads, 41, "{st:?}");
    assert!(
        !reader.is_finished(),
        "peek was expected to be blocked on the FIFO"
    );
    // Unblock it: the head cannot be read (a pipe cannot seek), so it is dropped and counted.
    drop(OpenOptions::new().write(true).open(&head).unwrap());
    let _ = reader.join().unwrap();
    let _ = std::fs::remove_file(&head);
    let got = drain(&q);
    assert_eq!(got, (head_records as u32..41).collect::<Vec<_>>());
    assert_eq!(q.stats().dropped_payloads, head_records);
}

#[test]
fn torn_segment_tail_is_cut_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open("t", 10, Some(dir.path()), 1 << 20).unwrap();
        for i in 0..5 {
            q.push(p(i));
        }
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let q = Queue::open("t", 10, Some(dir.path()), 1 << 20).unwrap();
    assert_eq!(drain(&q), vec![0, 1, 2, 3]);
}
