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

impl LoadError {
    /// The message without the file name, for a caller that names the file itself (a rule
    /// file's errors are `<file>: <detail>`, as promtool prints them).
    pub fn detail(&self) -> String {
        match self {
            LoadError::Parse { key, message, .. } => format!("{}{message}", key_prefix(key)),
            other => other.to_string(),
        }
    }
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
/// (linear time), so that a loader reports a YAML bomb as one even where its typed parse would
/// stop earlier at a type mismatch.
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

/// A key that was an integer count of milliseconds and is now a [`Duration`](crate::Duration)
/// (`rescan_interval_ms: 500` is now `rescan_interval: 500ms`).
#[derive(Debug, Clone, Copy)]
pub struct RenamedKey {
    /// Where both keys live: map keys joined by `.`, `[]` for every element of a list
    /// (`parse.multiline[]`); empty at the top level.
    pub parent: &'static str,
    /// The old key, counted in milliseconds.
    pub old: &'static str,
    /// The new key, a duration.
    pub new: &'static str,
}

/// [`from_yaml`] for a file that may still use old keys (`renamed`): each old key found is
/// read as its new key (the milliseconds written as a duration) and named in one deprecation
/// warning, returned for the caller to log; an old key set beside its new key is an error
/// naming both. A file without old keys is read exactly as [`from_yaml`] reads it; one with old
/// keys is rewritten as JSON first (an unquoted `007` then reads as `7`).
pub fn from_yaml_renamed<T: DeserializeOwned>(
    text: &str,
    path: &Path,
    renamed: &[RenamedKey],
) -> Result<(T, Vec<String>), LoadError> {
    let direct = match from_yaml(text, path) {
        Ok(v) => return Ok((v, Vec::new())),
        Err(e) => e,
    };
    // Only an unknown-key error can come from an old key.
    let Ok(mut value) = from_yaml::<serde_json::Value>(text, path) else {
        return Err(direct);
    };
    let mut warnings = Vec::new();
    for r in renamed {
        let parent: Vec<&str> = r.parent.split('.').filter(|p| !p.is_empty()).collect();
        rename_in(&mut value, &parent, String::new(), r, &mut warnings).map_err(
            |(key, message)| LoadError::Parse {
                path: path.to_path_buf(),
                key,
                message,
            },
        )?;
    }
    if warnings.is_empty() {
        return Err(direct);
    }
    // Back to text (JSON is YAML) for the one typed parser: a scalar reads into a string field
    // as in the file (`password: 123456`), and errors keep their key.
    let text = serde_json::to_string(&value).expect("a JSON value serializes");
    let v = from_yaml(&text, path)?;
    let file = path.display();
    Ok((
        v,
        warnings
            .into_iter()
            .map(|w| format!("config file {file}: {w}"))
            .collect(),
    ))
}

/// Renames `r.old` to `r.new` under `parent` of `v` (`at` is the path walked so far).
fn rename_in(
    v: &mut serde_json::Value,
    parent: &[&str],
    at: String,
    r: &RenamedKey,
    warnings: &mut Vec<String>,
) -> Result<(), (String, String)> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match parent.split_first() {
        Some((step, rest)) => {
            let (name, each) = match step.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (*step, false),
            };
            let Some(child) = v.get_mut(name) else {
                return Ok(());
            };
            if !each {
                return rename_in(child, rest, join(name), r, warnings);
            }
            if let Some(items) = child.as_array_mut() {
                for (i, item) in items.iter_mut().enumerate() {
                    rename_in(item, rest, format!("{}[{i}]", join(name)), r, warnings)?;
                }
            }
            Ok(())
        }
        None => {
            let Some(map) = v.as_object_mut() else {
                return Ok(());
            };
            let Some(old) = map.remove(r.old) else {
                return Ok(());
            };
            let (old_key, new_key) = (join(r.old), join(r.new));
            if map.contains_key(r.new) {
                return Err((
                    old_key,
                    format!(
                        "`{}` is the deprecated spelling of `{}` and both are set: keep only `{}`",
                        r.old, r.new, r.new
                    ),
                ));
            }
            let ms = old.as_u64().ok_or_else(|| {
                (
                    old_key.clone(),
                    format!("expected a whole number of milliseconds, got {old}; better, write `{}` as a duration such as 500ms", r.new),
                )
            })?;
            let d = crate::Duration::try_from(std::time::Duration::from_millis(ms))
                .map_err(|e| (old_key.clone(), e.to_string()))?;
            warnings.push(format!(
                "key `{old_key}` is deprecated and will be removed: write `{new_key}: {d}`"
            ));
            map.insert(r.new.to_string(), serde_json::Value::String(d.to_string()));
            Ok(())
        }
    }
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
        let e = p("items:\n  - url: x\n  - urk: y\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config file c.yaml: key `items[1]"), "{e}");
        assert!(e.contains("urk"), "{e}");
        let e = p("interval: 99999999999999999999999s\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `interval`") && e.contains("out of range"),
            "{e}"
        );
        let e = p("on: yes\n").unwrap_err();
        assert!(e.to_string().contains("key `on`"), "{e}");
        assert!(e.detail().starts_with("key `on`: "), "{}", e.detail());
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
            "a:\n".to_string()
                + &(1..200)
                    .map(|i| format!("{}b:\n", " ".repeat(i)))
                    .collect::<String>(),
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
        let e = check_yaml(&deep, Path::new("r.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.yaml") && e.contains("limit"), "{e}");
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Renamed {
        #[serde(default)]
        poll: Option<crate::Duration>,
        #[serde(default)]
        rules: Vec<RenamedItem>,
        #[serde(default)]
        name: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct RenamedItem {
        flush: crate::Duration,
    }
    const RENAMED: &[RenamedKey] = &[
        RenamedKey {
            parent: "",
            old: "poll_ms",
            new: "poll",
        },
        RenamedKey {
            parent: "rules[]",
            old: "flush_ms",
            new: "flush",
        },
    ];

    fn renamed(s: &str) -> Result<(Renamed, Vec<String>), LoadError> {
        from_yaml_renamed(s, Path::new("r.yaml"), RENAMED)
    }

    #[test]
    fn old_millisecond_keys_are_read_with_one_warning_each() {
        let (c, w) =
            renamed("poll_ms: 250\nrules: [{flush_ms: 1500}, {flush: 2s}]\nname: '007'\n").unwrap();
        assert_eq!(c.poll, Some(crate::Duration::from_millis(250)));
        assert_eq!(c.rules[0].flush, crate::Duration::from_millis(1500));
        assert_eq!(c.rules[1].flush, crate::Duration::from_secs(2));
        assert_eq!(c.name, "007");
        assert_eq!(
            w,
            [
                "config file r.yaml: key `poll_ms` is deprecated and will be removed: write `poll: 250ms`",
                "config file r.yaml: key `rules[0].flush_ms` is deprecated and will be removed: write `rules[0].flush: 1s500ms`",
            ]
        );
        // New keys only: the direct path, no warning.
        let (c, _) = renamed("poll_ms: 5\nname: 123456\n").unwrap();
        assert_eq!(
            c.name, "123456",
            "a number reads into a string field on both paths"
        );
        let (c, w) = renamed("poll: 1s\nname: 7\n").unwrap();
        assert_eq!(
            (c.poll, c.name.as_str(), w.len()),
            (Some(crate::Duration::from_secs(1)), "7", 0)
        );
    }

    #[test]
    fn old_and_new_key_together_or_a_bad_old_value_are_errors_naming_the_key() {
        let e = renamed("poll_ms: 250\npoll: 1s\n").unwrap_err().to_string();
        assert!(
            e.contains("key `poll_ms`") && e.contains("keep only `poll`"),
            "{e}"
        );
        let e = renamed("rules: [{flush: 1s}, {flush_ms: 5, flush: 2s}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `rules[1].flush_ms`"), "{e}");
        let e = renamed("poll_ms: soon\n").unwrap_err().to_string();
        assert!(
            e.contains("key `poll_ms`") && e.contains("whole number of milliseconds"),
            "{e}"
        );
        let e = renamed("poll_ms: -5\n").unwrap_err().to_string();
        assert!(e.contains("key `poll_ms`"), "{e}");
        // A bare number under the new key is not milliseconds: it is refused, naming the key.
        let e = renamed("poll: 10\n").unwrap_err().to_string();
        assert!(e.contains("key `poll`") && e.contains("has no unit"), "{e}");
        // Other errors keep their key, with or without old keys beside them.
        let e = renamed("poll_ms: 5\nrules: [{flush: x}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `rules[0].flush`"), "{e}");
        let e = renamed("pol: 5\n").unwrap_err().to_string();
        assert!(e.contains("pol"), "{e}");
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
