//! Where a pod finds the API server and its service account: the one reader of the in-cluster values (kube's `Config::incluster()` reads the same) for the clients that do not go through kube.

use std::path::{Path, PathBuf};

/// The service account's mount: `token` (rotated by the kubelet: re-read it), `ca.crt`.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The service account's token file.
pub fn token_file() -> PathBuf {
    Path::new(SERVICE_ACCOUNT_DIR).join("token")
}

/// The service account's CA bundle (signs the API server's certificate).
pub fn ca_file() -> PathBuf {
    Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt")
}

/// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` read through `env` (an IPv6
/// host in brackets), or the name of the variable that is missing or empty.
pub fn api_server_url(env: impl Fn(&str) -> Option<String>) -> Result<String, &'static str> {
    let var = |name: &'static str| env(name).filter(|v| !v.is_empty()).ok_or(name);
    let host = var("KUBERNETES_SERVICE_HOST")?;
    let port = var("KUBERNETES_SERVICE_PORT")?;
    Ok(if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    })
}

/// [`api_server_url`] from the process environment.
pub fn api_server_url_from_env() -> Result<String, &'static str> {
    api_server_url(|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_server_address_comes_from_the_service_variables() {
        let env = |host: &'static str, port: &'static str| {
            move |k: &str| match k {
                "KUBERNETES_SERVICE_HOST" => Some(host.to_string()),
                "KUBERNETES_SERVICE_PORT" => Some(port.to_string()),
                _ => None,
            }
        };
        assert_eq!(
            api_server_url(env("10.96.0.1", "443")),
            Ok("https://10.96.0.1:443".into())
        );
        assert_eq!(
            api_server_url(env("fd00::1", "6443")),
            Ok("https://[fd00::1]:6443".into())
        );
        assert_eq!(
            api_server_url(env("", "443")),
            Err("KUBERNETES_SERVICE_HOST")
        );
        assert_eq!(
            api_server_url(env("10.96.0.1", "")),
            Err("KUBERNETES_SERVICE_PORT")
        );
        assert_eq!(api_server_url(|_| None), Err("KUBERNETES_SERVICE_HOST"));
        assert!(token_file().ends_with("serviceaccount/token"));
        assert!(ca_file().ends_with("serviceaccount/ca.crt"));
    }
}
