//! The listener options a node component shares (HTTPS certificate and who may call it), declared once for its flags and its config file.

use std::path::PathBuf;

use serde::Deserialize;

use crate::tls::TlsOptions;

/// `--tls-cert-file`, `--tls-private-key-file` and the authentication flags of a component
/// that serves one listener (the collector, the log shipper): flattened into its clap `Args`
/// and, with serde, into its config file's top level (`tls_cert_file`, `tls_private_key_file`,
/// `auth:`).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ListenerArgs {
    /// PEM certificate (chain): the listener serves HTTPS only (with --tls-private-key-file)
    /// [default: plain HTTP] (config tls_cert_file).
    #[arg(long)]
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file (config tls_private_key_file).
    #[arg(long)]
    #[serde(default)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Who may call the endpoints: tokens, client certificates (with --tls-cert-file),
    /// TokenReview/SubjectAccessReview [default: anyone] (config `auth:`).
    #[command(flatten)]
    #[serde(default)]
    pub auth: crate::auth::Args,
}

impl ListenerArgs {
    /// Flags (`self`) win over the config file's settings, option by option.
    pub fn or(self, file: ListenerArgs) -> ListenerArgs {
        ListenerArgs {
            tls_cert_file: self.tls_cert_file.or(file.tls_cert_file),
            tls_private_key_file: self.tls_private_key_file.or(file.tls_private_key_file),
            auth: self.auth.or(file.auth),
        }
    }

    /// Checks what can be checked without I/O: the certificate and its key go together, and a
    /// client certificate CA needs HTTPS (none can reach a plain HTTP listener). The error
    /// names the flags; `component` names who serves.
    pub fn validate(&self, component: &str) -> Result<(), String> {
        if self.tls_cert_file.is_some() != self.tls_private_key_file.is_some() {
            let missing = if self.tls_cert_file.is_some() {
                "tls_private_key_file"
            } else {
                "tls_cert_file"
            };
            return Err(format!(
                "--tls-cert-file and --tls-private-key-file go together: {missing} is missing"
            ));
        }
        if self.tls().is_none()
            && (self.auth.client_ca_file.is_some()
                || self.auth.requestheader_client_ca_file.is_some())
        {
            return Err(format!(
                "--client-ca-file, --requestheader-client-ca-file: the {component} serves plain \
                 HTTP without --tls-cert-file/--tls-private-key-file, no client certificate can \
                 reach it; serve HTTPS with those, or authenticate with bearer tokens \
                 (--token-auth-file, --authentication-kubeconfig)"
            ));
        }
        Ok(())
    }

    /// The listener's certificate files when it serves HTTPS, else `None` (plain HTTP).
    pub fn tls(&self) -> Option<TlsOptions> {
        (self.tls_cert_file.is_some() || self.tls_private_key_file.is_some()).then(|| TlsOptions {
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_private_key_file.clone(),
            cert_dir: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        listener: ListenerArgs,
    }

    /// A component's config file: its own keys beside the flattened listener keys.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        listen: String,
        #[serde(flatten)]
        listener: ListenerArgs,
    }

    fn file(text: &str) -> Result<File, String> {
        vigil_common::config::from_yaml(text, Path::new("c.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn flags_and_file_keys_merge_with_flags_winning() {
        let flags = Cli::try_parse_from([
            "x",
            "--tls-cert-file",
            "/f/tls.crt",
            "--token-auth-file",
            "/f/t.yaml",
        ])
        .unwrap()
        .listener;
        let f = file("listen: a\ntls_cert_file: /c/tls.crt\ntls_private_key_file: /c/tls.key\nauth: {client_ca_file: /c/ca.pem}\n")
            .unwrap();
        assert_eq!(f.listen, "a");
        let l = flags.or(f.listener);
        assert_eq!(l.tls_cert_file.as_deref(), Some(Path::new("/f/tls.crt")));
        assert_eq!(
            l.tls_private_key_file.as_deref(),
            Some(Path::new("/c/tls.key"))
        );
        assert_eq!(
            l.auth.token_auth_file.as_deref(),
            Some(Path::new("/f/t.yaml"))
        );
        assert_eq!(
            l.auth.client_ca_file.as_deref(),
            Some(Path::new("/c/ca.pem"))
        );
        l.validate("collector").unwrap();
        assert_eq!(
            l.tls().unwrap().key_file.as_deref(),
            Some(Path::new("/c/tls.key"))
        );
    }

    #[test]
    fn unknown_keys_are_still_errors_beside_the_flattened_ones() {
        let e = file("listen: a\ntls_cert_fil: x\n").unwrap_err();
        assert!(e.contains("tls_cert_fil"), "{e}");
        let e = file("auth: {token_file: x}\n").unwrap_err();
        assert!(e.contains("token_file"), "{e}");
    }

    #[test]
    fn half_a_certificate_or_client_cas_without_https_are_errors() {
        let l = file("tls_private_key_file: /k\n").unwrap().listener;
        let e = l.validate("log shipper").unwrap_err();
        assert!(e.contains("go together: tls_cert_file is missing"), "{e}");
        let l = file("auth: {client_ca_file: /ca.pem}\n").unwrap().listener;
        let e = l.validate("log shipper").unwrap_err();
        assert!(e.contains("the log shipper serves plain HTTP"), "{e}");
        assert!(ListenerArgs::default().tls().is_none());
        ListenerArgs::default().validate("collector").unwrap();
    }
}
