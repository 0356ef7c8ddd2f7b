//! Who may talk to a vigil listener: authentication (static tokens, TokenReview, client and front-proxy certificates) and authorization (token access, SubjectAccessReview), as one axum layer.
//!
//! Off by default (`vigil up` on loopback). Turned on by any of `--token-auth-file`,
//! `--authentication-kubeconfig`, `--client-ca-file`, `--requestheader-client-ca-file`; then every
//! request but `--authorization-always-allow-paths` needs credentials:
//! - no or unknown credentials: 401 with `WWW-Authenticate: Bearer` and a body saying why;
//! - authenticated but not allowed: 403 with `Forbidden (user=…, verb=…, path=…)`;
//! - the API server unreachable: 401 when a token cannot be reviewed, 500 when a request cannot
//!   be authorized (kube-rbac-proxy's answers); the listener keeps serving.
//!
//! Over TLS, the serving code builds its rustls config with [`Auth::client_cert_verifier`] and
//! puts the connection's [`PeerCertificates`] into every request's extensions.

pub mod attributes;
mod cache;
pub mod delegated;
pub mod token_file;
pub mod x509;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{header, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use serde::Deserialize;

pub use attributes::Attributes;
use delegated::{AccessReviewer, TokenReviewer};
use token_file::{Access, TokenFile};
use x509::{ClientCa, FrontProxy, FrontProxyResult, RequestHeaderNames};

/// Errors setting up authentication; each names the flag.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    TokenFile(#[from] token_file::Error),
    #[error(transparent)]
    Ca(#[from] x509::Error),
    #[error(transparent)]
    Delegated(#[from] delegated::Error),
    #[error(
        "--authentication-kubeconfig: {0}; let vigil's service account read it (the \
         extension-apiserver-authentication-reader RoleBinding in deploy/auth.yaml) or pass \
         --authentication-skip-lookup"
    )]
    Lookup(delegated::Error),
    #[error("--{flag}: {message}")]
    Invalid { flag: &'static str, message: String },
    #[error(
        "{flag} {addr} is not a loopback address and {routes} accept writes: turn on authentication \
         with --token-auth-file, --authentication-kubeconfig or --client-ca-file, or listen on 127.0.0.1"
    )]
    WritesNeedAuth {
        flag: String,
        addr: SocketAddr,
        routes: String,
    },
}

/// Authentication and authorization options, the same for every listener (flags, or the
/// `auth:` section of a config file with the same snake_case names).
#[derive(clap::Args, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[group(id = "auth")]
#[command(next_help_heading = "Authentication and authorization")]
pub struct Args {
    /// YAML file of static bearer tokens (`tokens: [{token, user, groups, access: read|write}]`),
    /// for use outside a cluster.
    #[arg(long)]
    #[serde(default)]
    pub token_auth_file: Option<PathBuf>,
    /// Check bearer tokens with the API server's TokenReview: `in-cluster` (the pod's service
    /// account) or a kubeconfig path.
    #[arg(long)]
    #[serde(default)]
    pub authentication_kubeconfig: Option<String>,
    /// Authorize requests with the API server's SubjectAccessReview: `in-cluster` or a
    /// kubeconfig path [default: --authentication-kubeconfig].
    #[arg(long)]
    #[serde(default)]
    pub authorization_kubeconfig: Option<String>,
    /// PEM CA bundle: a TLS client certificate it signed authenticates as its CN (user) and O
    /// entries (groups).
    #[arg(long)]
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// PEM CA bundle of the kube-apiserver's front-proxy client certificate (the
    /// extension-apiserver-authentication ConfigMap's requestheader-client-ca-file).
    #[arg(long)]
    #[serde(default)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed for the front-proxy certificate, comma-separated [default: any].
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub requestheader_allowed_names: Vec<String>,
    /// Headers holding the user name [default: X-Remote-User].
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub requestheader_username_headers: Vec<String>,
    /// Headers holding the groups [default: X-Remote-Group].
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub requestheader_group_headers: Vec<String>,
    /// Header prefixes of extra user attributes [default: X-Remote-Extra-].
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub requestheader_extra_headers_prefix: Vec<String>,
    /// Do not read the client and front-proxy CAs the kube-apiserver publishes in
    /// kube-system/extension-apiserver-authentication (read by default with
    /// --authentication-kubeconfig, as metrics-server does).
    #[arg(long)]
    #[serde(default)]
    pub authentication_skip_lookup: bool,
    /// How long a TokenReview answer is kept [default: 10s, metrics-server's].
    #[arg(long)]
    #[serde(default)]
    pub authentication_token_webhook_cache_ttl: Option<vigil_common::Duration>,
    /// How long an allowing SubjectAccessReview answer is kept [default: 10s].
    #[arg(long)]
    #[serde(default)]
    pub authorization_webhook_cache_authorized_ttl: Option<vigil_common::Duration>,
    /// How long a denying SubjectAccessReview answer is kept [default: 10s].
    #[arg(long)]
    #[serde(default)]
    pub authorization_webhook_cache_unauthorized_ttl: Option<vigil_common::Duration>,
    /// Paths served without credentials, comma-separated [default: /healthz,/readyz,/livez].
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub authorization_always_allow_paths: Vec<String>,
}

impl Args {
    /// Flags win over the config file's `auth:` section, option by option.
    pub fn or(self, file: Args) -> Args {
        fn v(a: Vec<String>, b: Vec<String>) -> Vec<String> {
            if a.is_empty() {
                b
            } else {
                a
            }
        }
        Args {
            token_auth_file: self.token_auth_file.or(file.token_auth_file),
            authentication_kubeconfig: self
                .authentication_kubeconfig
                .or(file.authentication_kubeconfig),
            authorization_kubeconfig: self
                .authorization_kubeconfig
                .or(file.authorization_kubeconfig),
            authentication_skip_lookup: self.authentication_skip_lookup
                || file.authentication_skip_lookup,
            client_ca_file: self.client_ca_file.or(file.client_ca_file),
            requestheader_client_ca_file: self
                .requestheader_client_ca_file
                .or(file.requestheader_client_ca_file),
            requestheader_allowed_names: v(
                self.requestheader_allowed_names,
                file.requestheader_allowed_names,
            ),
            requestheader_username_headers: v(
                self.requestheader_username_headers,
                file.requestheader_username_headers,
            ),
            requestheader_group_headers: v(
                self.requestheader_group_headers,
                file.requestheader_group_headers,
            ),
            requestheader_extra_headers_prefix: v(
                self.requestheader_extra_headers_prefix,
                file.requestheader_extra_headers_prefix,
            ),
            authentication_token_webhook_cache_ttl: self
                .authentication_token_webhook_cache_ttl
                .or(file.authentication_token_webhook_cache_ttl),
            authorization_webhook_cache_authorized_ttl: self
                .authorization_webhook_cache_authorized_ttl
                .or(file.authorization_webhook_cache_authorized_ttl),
            authorization_webhook_cache_unauthorized_ttl: self
                .authorization_webhook_cache_unauthorized_ttl
                .or(file.authorization_webhook_cache_unauthorized_ttl),
            authorization_always_allow_paths: v(
                self.authorization_always_allow_paths,
                file.authorization_always_allow_paths,
            ),
        }
    }
}

/// An authenticated identity, put into the request's extensions for the handlers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The TLS client's certificate chain (leaf first), inserted by the TLS server into every
/// request of the connection.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// How an identity was established: it decides how the request is authorized.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    StaticToken(Access),
    Delegated,
}

/// Everything the layer needs; built once at start-up.
pub struct Auth {
    tokens: Option<TokenFile>,
    token_review: Option<TokenReviewer>,
    access_review: Option<AccessReviewer>,
    client_ca: Option<ClientCa>,
    front_proxy: Option<FrontProxy>,
    /// Roots of both CA files, for the TLS handshake.
    client_roots: Option<rustls::RootCertStore>,
    always_allow: Vec<String>,
}

/// A cache TTL option's value, or the 10 s default (metrics-server's).
fn ttl(value: Option<vigil_common::Duration>) -> Duration {
    value.map_or(Duration::from_secs(10), vigil_common::Duration::get)
}

impl Auth {
    /// Off: every request passes (the default, loopback listeners).
    pub fn disabled() -> Self {
        Auth {
            tokens: None,
            token_review: None,
            access_review: None,
            client_ca: None,
            front_proxy: None,
            client_roots: None,
            always_allow: Vec::new(),
        }
    }

    /// Reads the files and connects the API server clients the options name.
    pub async fn new(args: &Args) -> Result<Self, Error> {
        let authn_ttl = ttl(args.authentication_token_webhook_cache_ttl);
        let allow_ttl = ttl(args.authorization_webhook_cache_authorized_ttl);
        let deny_ttl = ttl(args.authorization_webhook_cache_unauthorized_ttl);
        let tokens = args
            .token_auth_file
            .as_deref()
            .map(TokenFile::load)
            .transpose()?;
        let authn_client = match &args.authentication_kubeconfig {
            Some(src) => Some(delegated::client("--authentication-kubeconfig", src).await?),
            None => None,
        };
        let published = match &authn_client {
            Some(c) if !args.authentication_skip_lookup => {
                delegated::published(c).await.map_err(Error::Lookup)?
            }
            _ => delegated::Published::default(),
        };
        let configmap = Path::new("configmap kube-system/extension-apiserver-authentication");
        let token_review = authn_client.map(|c| TokenReviewer::new(c, authn_ttl));
        let access_review = match args
            .authorization_kubeconfig
            .as_ref()
            .or(args.authentication_kubeconfig.as_ref())
        {
            Some(src) => Some(AccessReviewer::new(
                delegated::client("--authorization-kubeconfig", src).await?,
                allow_ttl,
                deny_ttl,
            )),
            None => None,
        };
        let mut client_roots = rustls::RootCertStore::empty();
        let client_ca_roots = match (&args.client_ca_file, &published.client_ca) {
            (Some(p), _) => Some(x509::load_roots("--client-ca-file", p)?),
            (None, Some(pem)) => Some(x509::parse_roots(
                "--client-ca-file",
                configmap,
                pem.as_bytes(),
            )?),
            (None, None) => None,
        };
        let client_ca = client_ca_roots.map(|roots| {
            client_roots.roots.extend(roots.roots.iter().cloned());
            ClientCa::new(roots)
        });
        // A flag wins, then the published value, then metrics-server's default.
        let pick = |flag: &Vec<String>, published: &Vec<String>, d: &str| {
            if !flag.is_empty() {
                flag.clone()
            } else if !published.is_empty() {
                published.clone()
            } else if d.is_empty() {
                Vec::new()
            } else {
                vec![d.to_string()]
            }
        };
        let front_proxy_roots = match (
            &args.requestheader_client_ca_file,
            &published.requestheader_ca,
        ) {
            (Some(p), _) => Some(x509::load_roots("--requestheader-client-ca-file", p)?),
            (None, Some(pem)) => Some(x509::parse_roots(
                "--requestheader-client-ca-file",
                configmap,
                pem.as_bytes(),
            )?),
            (None, None) => None,
        };
        let front_proxy = match front_proxy_roots {
            Some(roots) => {
                client_roots.roots.extend(roots.roots.iter().cloned());
                Some(FrontProxy::new(
                    roots,
                    pick(
                        &args.requestheader_allowed_names,
                        &published.allowed_names,
                        "",
                    ),
                    RequestHeaderNames {
                        username: pick(
                            &args.requestheader_username_headers,
                            &published.username_headers,
                            "X-Remote-User",
                        ),
                        group: pick(
                            &args.requestheader_group_headers,
                            &published.group_headers,
                            "X-Remote-Group",
                        ),
                        extra_prefix: pick(
                            &args.requestheader_extra_headers_prefix,
                            &published.extra_prefixes,
                            "X-Remote-Extra-",
                        ),
                    },
                ))
            }
            None => {
                for (flag, set) in [
                    (
                        "requestheader-allowed-names",
                        &args.requestheader_allowed_names,
                    ),
                    (
                        "requestheader-username-headers",
                        &args.requestheader_username_headers,
                    ),
                    (
                        "requestheader-group-headers",
                        &args.requestheader_group_headers,
                    ),
                    (
                        "requestheader-extra-headers-prefix",
                        &args.requestheader_extra_headers_prefix,
                    ),
                ] {
                    if !set.is_empty() {
                        return Err(Error::Invalid {
                            flag,
                            message: "has no effect without --requestheader-client-ca-file".into(),
                        });
                    }
                }
                None
            }
        };
        let always_allow = if args.authorization_always_allow_paths.is_empty() {
            ["/healthz", "/readyz", "/livez"].map(String::from).to_vec()
        } else {
            args.authorization_always_allow_paths.clone()
        };
        for p in &always_allow {
            if !p.starts_with('/') {
                return Err(Error::Invalid {
                    flag: "authorization-always-allow-paths",
                    message: format!("{p:?} is not a path (it must start with /)"),
                });
            }
        }
        Ok(Auth {
            tokens,
            token_review,
            access_review,
            client_ca,
            front_proxy,
            client_roots: (!client_roots.is_empty()).then_some(client_roots),
            always_allow,
        })
    }

    /// True when any authentication method is configured.
    pub fn enabled(&self) -> bool {
        self.tokens.is_some()
            || self.token_review.is_some()
            || self.client_ca.is_some()
            || self.front_proxy.is_some()
    }

    /// Refuses a listener that is not on loopback, serves `write_routes` and has no authentication.
    /// `flag` names the listen option (e.g. `--listen`).
    pub fn check_listener(
        &self,
        flag: &str,
        addr: SocketAddr,
        write_routes: &[&str],
    ) -> Result<(), Error> {
        if addr.ip().is_loopback() || write_routes.is_empty() || self.enabled() {
            return Ok(());
        }
        Err(Error::WritesNeedAuth {
            flag: flag.to_string(),
            addr,
            routes: write_routes.join(", "),
        })
    }

    /// For the TLS server config: asks for a client certificate (optional) signed by
    /// `--client-ca-file` or `--requestheader-client-ca-file`; `None` when neither is set.
    pub fn client_cert_verifier(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.client_roots.clone().map(x509::verifier)
    }

    /// Wraps `router` (every route and the fallback) in the check.
    pub fn layer<S: Clone + Send + Sync + 'static>(
        self: &Arc<Self>,
        router: Router<S>,
    ) -> Router<S> {
        if !self.enabled() {
            return router;
        }
        router.layer(axum::middleware::from_fn_with_state(self.clone(), check))
    }

    /// Who sent `req`: `Ok(None)` when it carries no usable credentials.
    async fn authenticate(
        &self,
        certs: Option<PeerCertificates>,
        headers: &http::HeaderMap,
    ) -> Result<Option<(User, Method)>, Rejection> {
        if let Some(certs) = certs {
            if let Some(fp) = &self.front_proxy {
                match fp.authenticate(&certs.0, headers) {
                    FrontProxyResult::User(u) => return Ok(Some((u, Method::Delegated))),
                    FrontProxyResult::NameNotAllowed(cn) => {
                        return Err(Rejection::unauthorized(format!(
                            "front-proxy client certificate CN {cn:?} is not in --requestheader-allowed-names"
                        )))
                    }
                    FrontProxyResult::NotApplicable => {}
                }
            }
            if let Some(u) = self
                .client_ca
                .as_ref()
                .and_then(|ca| ca.authenticate(&certs.0))
            {
                return Ok(Some((u, Method::Delegated)));
            }
        }
        let Some(auth) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Rejection::unauthorized("the Authorization header is not `Bearer <token>`".into())
            })?;
        if let Some((u, access)) = self.tokens.as_ref().and_then(|t| t.lookup(token)) {
            return Ok(Some((u.clone(), Method::StaticToken(*access))));
        }
        if let Some(tr) = &self.token_review {
            return match tr.review(token).await {
                Ok(Some(u)) => Ok(Some((u, Method::Delegated))),
                Ok(None) => Err(Rejection::unauthorized(
                    "the API server did not authenticate the token".into(),
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check a bearer token");
                    Err(Rejection::unauthorized(format!(
                        "the token could not be checked: {e}"
                    )))
                }
            };
        }
        Err(Rejection::unauthorized("unknown bearer token".into()))
    }

    /// Whether `user` may do `attrs`.
    async fn authorize(
        &self,
        user: &User,
        method: Method,
        attrs: &Attributes,
    ) -> Result<(), Rejection> {
        let forbidden = |reason: &str| {
            let mut m = format!("Forbidden (user={}, {})", user.name, attrs.describe());
            if !reason.is_empty() {
                m.push_str(": ");
                m.push_str(reason);
            }
            Rejection {
                status: StatusCode::FORBIDDEN,
                message: m,
            }
        };
        match method {
            Method::StaticToken(Access::Write) => Ok(()),
            Method::StaticToken(Access::Read) if !attrs.write => Ok(()),
            Method::StaticToken(Access::Read) => Err(forbidden("the token's access is read")),
            Method::Delegated => match &self.access_review {
                // Without SubjectAccessReview, a certificate from the configured CA is trusted.
                None => Ok(()),
                Some(ar) => match ar.review(user, attrs).await {
                    Ok(d) if d.allowed => Ok(()),
                    Ok(d) => Err(forbidden(&d.reason)),
                    Err(e) => {
                        tracing::warn!(error = %e, user = %user.name, "cannot authorize a request");
                        Err(Rejection {
                            status: StatusCode::INTERNAL_SERVER_ERROR,
                            message: format!(
                                "Authorization error (user={}, {}): {e}",
                                user.name,
                                attrs.describe()
                            ),
                        })
                    }
                },
            },
        }
    }
}

/// A refused request: its status and the body saying why.
struct Rejection {
    status: StatusCode,
    message: String,
}

impl Rejection {
    fn unauthorized(message: String) -> Self {
        Rejection {
            status: StatusCode::UNAUTHORIZED,
            message,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = format!("{}\n", self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            return (
                self.status,
                [
                    (header::WWW_AUTHENTICATE, r#"Bearer realm="vigil""#),
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                ],
                format!("Unauthorized: {body}"),
            )
                .into_response();
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// The middleware: authenticate, authorize, then hand the request (with its [`User`]) on.
async fn check(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if auth.always_allow.iter().any(|p| p == path) {
        return next.run(req).await;
    }
    let attrs = Attributes::of(req.method(), path);
    let certs = req.extensions().get::<PeerCertificates>().cloned();
    let (user, method) = match auth.authenticate(certs, req.headers()).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Rejection::unauthorized(
                "no credentials: send `Authorization: Bearer <token>` or a client certificate"
                    .into(),
            )
            .into_response()
        }
        Err(r) => return r.into_response(),
    };
    if let Err(r) = auth.authorize(&user, method, &attrs).await {
        return r.into_response();
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod flag_tests {
    use clap::{CommandFactory, Parser};

    /// A component's flags with the auth flags flattened in, as the binaries do.
    #[derive(clap::Parser, Debug)]
    struct Args {
        #[arg(long)]
        listen: Option<String>,
        #[command(flatten)]
        auth: super::Args,
    }

    #[test]
    fn flags_flatten_into_a_component_named_args() {
        Args::command().debug_assert();
        let a = Args::try_parse_from([
            "x",
            "--token-auth-file",
            "t.yaml",
            "--requestheader-allowed-names",
            "a,b",
            "--authentication-skip-lookup",
        ])
        .unwrap();
        assert_eq!(
            a.auth.token_auth_file.as_deref(),
            Some(std::path::Path::new("t.yaml"))
        );
        assert_eq!(a.auth.requestheader_allowed_names, ["a", "b"]);
        assert!(a.auth.authentication_skip_lookup);
        let file: super::Args =
            vigil_common::config::from_yaml("client_ca_file: ca.pem\ntoken_auth_file: f.yaml\n", std::path::Path::new("c.yaml")).unwrap();
        let merged = a.auth.or(file);
        assert_eq!(
            merged.token_auth_file.as_deref(),
            Some(std::path::Path::new("t.yaml"))
        );
        assert_eq!(
            merged.client_ca_file.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert!(vigil_common::config::from_yaml::<super::Args>("token_file: x\n", std::path::Path::new("c.yaml")).is_err());
    }
}
