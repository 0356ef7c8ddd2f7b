//! Config-file loading: read with a size cap, parse YAML within a depth/size budget, name the file and key in errors.

use serde::de::DeserializeOwned;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest config or rule file read (a real one is a few KiB; a rule file of thousands of
/// rules stays well below): `--config /dev/zero` fails at once instead of filling memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Deepest nesting of YAML sequences and mappings accepted (serde-saphyr's default). An
/// Alertmanager route tree or a rule file nests a few tens of levels at most; deserialising
/// recurses once per level, and 64 levels fit a 2 MiB thread stack (a tokio worker's, a test's)
/// in a debug build, where 120 did not.
pub const MAX_DEPTH: usize = 64;

/// Most YAML nodes (scalars, sequences, mappings) in one file.
pub const MAX_NODES: usize = 1_000_000;

/// Why a config file could not be loaded; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is larger than the limit of {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("config file {path} is not UTF-8 text")]
    NotUtf8 { path: PathBuf },
    #[error("config file {path}: {}{message}", key_prefix(key))]
    Parse {
        path: PathBuf,
        /// The key path (`sinks.influxdb[0].url`), empty when the error is not inside a key.
        key: String,
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}

/// Reads a whole file of at most [`MAX_FILE_BYTES`] as UTF-8 text, without reading further
/// (a device such as `/dev/zero` or an endless pipe is cut at the cap).
pub fn read_capped(path: &Path) -> Result<String, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Parses YAML text into `T` within the depth and node budget (linear time: the parser stops
/// at the first breach). An empty document (blank or only comments) is read as `{}`.
/// `path` names the file in errors.
pub fn from_yaml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, LoadError> {
    let text = if is_blank(text) { "{}" } else { text };
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    result.map_err(|e| LoadError::Parse {
        path: path.to_path_buf(),
        key: track.path().to_string(),
        message: e.to_string(),
    })
}

/// Checks that YAML text stays within the depth and node budget without building anything
/// (linear time), for a caller that still parses with a parser of its own.
pub fn check_yaml(text: &str, path: &Path) -> Result<(), LoadError> {
    let text = if is_blank(text) { "{}" } else { text };
    serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(text, options())
        .map(|_| ())
        .map_err(|e| LoadError::Parse {
            path: path.to_path_buf(),
            key: String::new(),
            message: e.to_string(),
        })
}

/// [`read_capped`] then [`from_yaml`].
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    from_yaml(&read_capped(path)?, path)
}

/// Parses JSON text into `T` (JSON is YAML: the same budget and errors apply).
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    load_yaml(path)
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    })
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    budget.max_events = 4 * MAX_NODES;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    // YAML 1.2 booleans (true/false only), as serde_yaml and Prometheus's Go parser read them.
    o.strict_booleans = true;
    o.with_snippet = false;
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::time::Instant;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[serde(default)]
        name: String,
        #[serde(default)]
        interval: Option<crate::Duration>,
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        on: bool,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        url: String,
    }

    fn p(s: &str) -> Result<Conf, LoadError> {
        from_yaml(s, Path::new("c.yaml"))
    }

    #[test]
    fn parses_and_names_the_key_on_error() {
        let c = p("name: a\ninterval: 1m30s\nitems:\n  - url: x\non: true\n").unwrap();
        assert_eq!(c.interval, Some(crate::Duration::from_secs(90)));
        assert_eq!(c.items[0].url, "x");
        let e = p("items:\n  - url: x\n  - urk: y\n").unwrap_err().to_string();
        assert!(e.starts_with("config file c.yaml: key `items[1]"), "{e}");
        assert!(e.contains("urk"), "{e}");
        let e = p("interval: 99999999999999999999999s\n").unwrap_err().to_string();
        assert!(e.contains("key `interval`") && e.contains("out of range"), "{e}");
        let e = p("on: yes\n").unwrap_err().to_string();
        assert!(e.contains("key `on`"), "{e}");
    }

    #[test]
    fn blank_documents_are_empty_maps() {
        assert_eq!(p("").unwrap(), p("{}").unwrap());
        assert_eq!(p("# only a comment\n\n").unwrap().name, "");
    }

    #[test]
    fn dev_zero_is_cut_at_the_cap() {
        let t = Instant::now();
        let e = read_capped(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(e, LoadError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("/dev/zero"), "{e}");
        assert!(t.elapsed().as_secs() < 5);
    }

    #[test]
    fn missing_and_non_utf8_files_name_the_file() {
        let e = read_capped(Path::new("/nonexistent/c.yaml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/c.yaml"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bin.yaml");
        std::fs::write(&f, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(read_capped(&f), Err(LoadError::NotUtf8 { .. })));
    }

    #[test]
    fn deep_nesting_fails_fast() {
        for doc in [
            "[".repeat(100_000) + &"]".repeat(100_000),
            "- ".repeat(100_000) + "x\n",
            "a:\n".to_string() + &(1..200).map(|i| format!("{}b:\n", " ".repeat(i))).collect::<String>(),
        ] {
            let t = Instant::now();
            let e = from_yaml::<serde_json::Value>(&doc, Path::new("deep.yaml")).unwrap_err();
            assert!(e.to_string().contains("deep.yaml"), "{e}");
            // Generous for a loaded 2-core machine; the unbounded parser took 44 s here.
            assert!(t.elapsed().as_secs() < 2, "{:?}", t.elapsed());
        }
        // Nesting up to the limit still loads, on a 2 MiB stack.
        let ok = "- ".repeat(MAX_DEPTH - 1) + "x\n";
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || from_yaml::<serde_json::Value>(&ok, Path::new("ok.yaml")).unwrap())
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn check_yaml_bounds_depth_only() {
        check_yaml("groups:\n  - name: a\n    rules: []\n", Path::new("r.yaml")).unwrap();
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let e = check_yaml(&deep, Path::new("r.yaml")).unwrap_err().to_string();
        assert!(e.contains("r.yaml") && e.contains("limit"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_is_a_value_or_an_error(s in "[-\\[\\]{}:,'\"#&*!|> \\na-z0-9]{0,200}") {
            let _ = from_yaml::<serde_json::Value>(&s, Path::new("p.yaml"));
            if let Err(e) = p(&s) {
                prop_assert!(e.to_string().starts_with("config file c.yaml: "), "{}", e);
            }
        }

        #[test]
        fn generated_configs_round_trip(name in "[a-z]{1,12}", secs in 0u64..100_000, urls in proptest::collection::vec("[a-z]{1,8}", 0..5)) {
            let items: String = urls.iter().map(|u| format!("  - url: {u}\n")).collect();
            let text = format!("name: {name}\ninterval: {secs}s\nitems:\n{items}");
            let text = if urls.is_empty() { text.replace("items:\n", "") } else { text };
            let c = p(&text).unwrap();
            prop_assert_eq!(c.name, name);
            prop_assert_eq!(c.interval, Some(crate::Duration::from_secs(secs)));
            prop_assert_eq!(c.items.into_iter().map(|i| i.url).collect::<Vec<_>>(), urls);
        }
    }
}
