//! Writes a generated cgroup v2 tree: `gen_tree <root> <containers>` (for RSS and scrape measurements).

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: gen_tree <root> <containers>");
        std::process::exit(2);
    };
    let n: usize = n.parse().unwrap_or_else(|_| {
        eprintln!("containers must be a number, got {n:?}");
        std::process::exit(2);
    });
    if let Err(e) = vigil_collector::fixture::generate_v2_tree(std::path::Path::new(&root), n) {
        eprintln!("cannot write {root}: {e}");
        std::process::exit(1);
    }
}
