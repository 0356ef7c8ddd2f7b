//! Data shared by the log-shipper benches: container log lines in the CRI format, 100–200 bytes each.

/// CRI lines (`<RFC3339Nano> stdout F <prefix><message>`) of 100–200 bytes until `target_bytes`; returns the text
/// and the number of lines.
pub fn cri_lines(target_bytes: usize, prefix: &str) -> (String, usize) {
    let mut s = String::with_capacity(target_bytes + 256);
    let mut n = 0usize;
    while s.len() < target_bytes {
        let len = 40 + (n * 37) % 100;
        let msg: String = "abcdefghijklmnopqrstuvwxyz0123456789 "
            .chars()
            .cycle()
            .skip(n % 37)
            .take(len)
            .collect();
        s.push_str(&format!(
            "2026-11-22T10:{:02}:{:02}.{:09}Z stdout F {prefix}{msg}\n",
            (n / 60_000) % 60,
            (n / 1000) % 60,
            n
        ));
        n += 1;
    }
    (s, n)
}
