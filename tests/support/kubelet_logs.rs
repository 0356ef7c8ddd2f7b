//! What the kubelet does to a container's log files: one rotation as its container log manager
//! does it (`rotateLog`). The log shipper's torture test and its end-to-end bench
//! (`log-shipper/benches/e2e.rs`, through `#[path]`) use this one copy.

use std::io::Write;
use std::path::Path;

/// Files a rotation removed and compressed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rotated {
    pub deleted: u64,
    pub compressed: u64,
}

/// One rotation of `<dir>/0.log`: remove `.tmp` leftovers and originals that have a `.gz`, delete
/// the oldest rotated files so that `keep` remain, gzip the uncompressed ones (`<f>.tmp`, renamed
/// to `<f>.gz`, original removed), then rename `0.log` to `0.log.<stamp>`. The kubelet keeps
/// `containerLogMaxFiles - 2` rotated files before this rename.
pub fn kubelet_rotate(dir: &Path, stamp: &str, keep: usize) -> Rotated {
    let mut done = Rotated::default();
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("0.log."))
        .collect();
    logs.sort();
    let all = logs.clone();
    logs.retain(|l| {
        let unused = l.ends_with(".tmp") || all.contains(&format!("{l}.gz"));
        if unused {
            std::fs::remove_file(dir.join(l)).unwrap();
        }
        !unused
    });
    while logs.len() > keep {
        std::fs::remove_file(dir.join(logs.remove(0))).unwrap();
        done.deleted += 1;
    }
    for l in logs.iter().filter(|l| !l.ends_with(".gz")) {
        let src = dir.join(l);
        let tmp = dir.join(format!("{l}.tmp"));
        let data = std::fs::read(&src).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tmp).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(&data).unwrap();
        gz.finish().unwrap();
        std::fs::rename(&tmp, dir.join(format!("{l}.gz"))).unwrap();
        std::fs::remove_file(&src).unwrap();
        done.compressed += 1;
    }
    std::fs::rename(dir.join("0.log"), dir.join(format!("0.log.{stamp}"))).unwrap();
    done
}
