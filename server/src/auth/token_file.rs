//! The static bearer-token file for use outside a cluster: each token names a user, groups and read or write access.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::User;

/// A token file larger than this is refused (it holds a few lines per user).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Errors reading the token file; each names the file and, where it applies, the entry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--token-auth-file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--token-auth-file {path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("--token-auth-file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("--token-auth-file {path}: entry {index} (user {user:?}): {message}")]
    Entry {
        path: PathBuf,
        index: usize,
        user: String,
        message: String,
    },
}

/// What a static token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Every request that does not change state (GET, HEAD, the query POSTs).
    Read,
    /// Reads and writes (`/-/reload`, silences).
    Write,
}

/// One entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The bearer token (at least 16 characters).
    token: String,
    /// The user name the token authenticates as.
    user: String,
    /// Optional groups, for logs and the request's identity.
    #[serde(default)]
    groups: Vec<String>,
    /// `read` or `write`.
    access: Access,
}

/// The file's shape: `tokens:` then a list of entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

/// Tokens by value.
#[derive(Debug, Default)]
pub struct TokenFile {
    tokens: HashMap<String, (User, Access)>,
}

impl TokenFile {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let read = |source| Error::Read {
            path: path.into(),
            source,
        };
        let f = std::fs::File::open(path).map_err(read)?;
        let mut text = String::new();
        f.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(Error::TooLarge { path: path.into() });
        }
        Self::parse(path, &text)
    }

    /// Parses the YAML text of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let file: File = vigil_common::config::from_yaml(text, path).map_err(|e| Error::Parse {
            path: path.into(),
            message: e.detail(),
        })?;
        let mut tokens = HashMap::new();
        for (index, e) in file.tokens.into_iter().enumerate() {
            let bad = |message: &str| Error::Entry {
                path: path.into(),
                index,
                user: e.user.clone(),
                message: message.into(),
            };
            if e.user.is_empty() {
                return Err(bad("user is empty"));
            }
            if e.token.chars().count() < 16 {
                return Err(bad("token is shorter than 16 characters"));
            }
            if e.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad("token contains whitespace or control characters"));
            }
            let user = User {
                name: e.user.clone(),
                uid: String::new(),
                groups: e.groups.clone(),
                extra: Default::default(),
            };
            if tokens.insert(e.token.clone(), (user, e.access)).is_some() {
                return Err(bad("the same token appears twice"));
            }
        }
        Ok(TokenFile { tokens })
    }

    /// The user and access of `token`, if it is in the file.
    pub fn lookup(&self, token: &str) -> Option<&(User, Access)> {
        self.tokens.get(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TokenFile, Error> {
        TokenFile::parse(Path::new("tokens.yaml"), text)
    }

    #[test]
    fn entries_give_user_groups_and_access() {
        let f = parse(
            "tokens:\n- {token: 0123456789abcdefR, user: grafana, access: read}\n- {token: 0123456789abcdefW, user: ops, groups: [admins], access: write}\n",
        )
        .unwrap();
        let (u, a) = f.lookup("0123456789abcdefW").unwrap();
        assert_eq!(
            (u.name.as_str(), u.groups.clone(), *a),
            ("ops", vec!["admins".to_string()], Access::Write)
        );
        assert_eq!(f.lookup("0123456789abcdefR").unwrap().1, Access::Read);
        assert!(f.lookup("nope").is_none());
    }

    #[test]
    fn bad_entries_are_errors_naming_file_and_entry() {
        let e = parse("tokens:\n- {token: short, user: a, access: read}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokens.yaml") && e.contains("entry 0") && e.contains("shorter"),
            "{e}"
        );
        let e = parse("tokens:\n- {token: 0123456789abcdef, user: a, access: admin}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokens.yaml") && e.contains("admin"), "{e}");
        let e = parse("tokens:\n- {token: 0123456789abcdef, user: a, access: read, role: x}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("role"), "{e}");
        let e = parse("tokens:\n- {token: 0123456789abcdef, user: a, access: read}\n- {token: 0123456789abcdef, user: b, access: write}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 1") && e.contains("twice"), "{e}");
        let e = parse("tokens:\n- {token: 0123456789abcdef, user: '', access: read}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("user is empty"), "{e}");
        assert!(parse("[1, 2").is_err());
    }

    #[test]
    fn an_oversized_or_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.yaml");
        std::fs::write(&p, vec![b'#'; (MAX_FILE_BYTES + 10) as usize]).unwrap();
        assert!(matches!(TokenFile::load(&p), Err(Error::TooLarge { .. })));
        assert!(matches!(
            TokenFile::load(&dir.path().join("none")),
            Err(Error::Read { .. })
        ));
    }
}
