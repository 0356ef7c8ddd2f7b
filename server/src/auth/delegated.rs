//! Delegation to the Kubernetes API server: bearer tokens checked with TokenReview, requests authorized with SubjectAccessReview, both cached.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::attributes::{Attributes, Target};
use super::cache::TtlCache;
use super::User;

/// How long one review may take before the request is answered as the API server being down.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors connecting to or asking the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{flag} {source_name}: {message}")]
    Config {
        flag: &'static str,
        source_name: String,
        message: String,
    },
    #[error("{review} failed: {message}")]
    Review {
        review: &'static str,
        message: String,
    },
}

/// Where a client for the API server comes from: `in-cluster` (the pod's service account) or a kubeconfig path.
pub async fn client(flag: &'static str, source: &str) -> Result<kube::Client, Error> {
    use vigil_common::kubernetes::{Access, Source};
    let from = if source == "in-cluster" {
        Source::InCluster
    } else {
        Source::Kubeconfig(source.into())
    };
    let mut access = Access::new(from).with_timeout(REVIEW_TIMEOUT);
    // A review has no schedule of its own to retry on: kube's retry of 429/503/504 stays.
    access.retry = true;
    access
        .client()
        .await
        .map_err(|e| Error::Config {
            flag,
            source_name: source.to_string(),
            message: e.to_string(),
        })
}

/// Where the kube-apiserver publishes its client and front-proxy CAs for extension API servers.
pub const AUTH_CONFIGMAP: (&str, &str) = ("kube-system", "extension-apiserver-authentication");

/// What that ConfigMap holds (keys named as the kube-apiserver's flags).
#[derive(Debug, Default, PartialEq)]
pub struct Published {
    pub client_ca: Option<String>,
    pub requestheader_ca: Option<String>,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

/// Reads `kube-system/extension-apiserver-authentication`, as metrics-server does at start.
pub async fn published(client: &kube::Client) -> Result<Published, Error> {
    let (ns, name) = AUTH_CONFIGMAP;
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
    let bad = |message: String| Error::Review {
        review: "reading ConfigMap kube-system/extension-apiserver-authentication",
        message,
    };
    let cm = tokio::time::timeout(REVIEW_TIMEOUT, api.get(name))
        .await
        .map_err(|_| bad("timed out".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let data = cm.data.unwrap_or_default();
    let list = |key: &str| -> Result<Vec<String>, Error> {
        match data.get(key) {
            None => Ok(Vec::new()),
            Some(v) => serde_json::from_str(v)
                .map_err(|e| bad(format!("{key}: not a JSON list of strings: {e}"))),
        }
    };
    Ok(Published {
        client_ca: data.get("client-ca-file").cloned(),
        requestheader_ca: data.get("requestheader-client-ca-file").cloned(),
        allowed_names: list("requestheader-allowed-names")?,
        username_headers: list("requestheader-username-headers")?,
        group_headers: list("requestheader-group-headers")?,
        extra_prefixes: list("requestheader-extra-headers-prefix")?,
    })
}

/// A decision and the API server's reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// TokenReview with its cache (metrics-server's `--authentication-token-webhook-cache-ttl`, 10s).
pub struct TokenReviewer {
    client: kube::Client,
    ttl: Duration,
    cache: TtlCache<String, Option<User>>,
}

impl TokenReviewer {
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        TokenReviewer {
            client,
            ttl,
            cache: TtlCache::new(),
        }
    }

    /// The user `token` belongs to, `None` when the API server says it is not authenticated.
    /// Both answers are cached; errors are not.
    pub async fn review(&self, token: &str) -> Result<Option<User>, Error> {
        if let Some(hit) = self.cache.get(&token.to_string()) {
            return Ok(hit);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| review_error("TokenReview", "timed out".into()))?
                .map_err(|e| review_error("TokenReview", e.to_string()))?;
        let status = answer.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(u)) if u.username.as_deref().is_some_and(|n| !n.is_empty()) => {
                Some(User {
                    name: u.username.unwrap_or_default(),
                    uid: u.uid.unwrap_or_default(),
                    groups: u.groups.unwrap_or_default(),
                    extra: u.extra.unwrap_or_default(),
                })
            }
            _ => {
                if let Some(e) = status.error.filter(|e| !e.is_empty()) {
                    tracing::debug!(error = %e, "TokenReview: token not authenticated");
                }
                None
            }
        };
        self.cache.put(token.to_string(), user.clone(), self.ttl);
        Ok(user)
    }
}

/// SubjectAccessReview with its cache (metrics-server's authorized and unauthorized TTLs, 10s each).
pub struct AccessReviewer {
    client: kube::Client,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    cache: TtlCache<String, Decision>,
}

impl AccessReviewer {
    pub fn new(client: kube::Client, allowed_ttl: Duration, denied_ttl: Duration) -> Self {
        AccessReviewer {
            client,
            allowed_ttl,
            denied_ttl,
            cache: TtlCache::new(),
        }
    }

    /// Asks whether `user` may do `attrs`.
    pub async fn review(&self, user: &User, attrs: &Attributes) -> Result<Decision, Error> {
        let spec = spec(user, attrs);
        let key = serde_json::to_string(&spec).expect("a review spec serializes");
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let review = SubjectAccessReview {
            spec,
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| review_error("SubjectAccessReview", "timed out".into()))?
                .map_err(|e| review_error("SubjectAccessReview", e.to_string()))?;
        let status = answer.status.unwrap_or_default();
        if let Some(e) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
            if !status.allowed {
                // The API server could not decide: not a denial to remember.
                return Err(review_error("SubjectAccessReview", e.to_string()));
            }
        }
        let decision = Decision {
            allowed: status.allowed && status.denied != Some(true),
            reason: status.reason.unwrap_or_default(),
        };
        let ttl = if decision.allowed {
            self.allowed_ttl
        } else {
            self.denied_ttl
        };
        self.cache.put(key, decision.clone(), ttl);
        Ok(decision)
    }
}

fn review_error(review: &'static str, message: String) -> Error {
    Error::Review { review, message }
}

/// The review's spec: the user, and resource or non-resource attributes.
fn spec(user: &User, attrs: &Attributes) -> SubjectAccessReviewSpec {
    let mut spec = SubjectAccessReviewSpec {
        user: Some(user.name.clone()),
        uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
        groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
        extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
        ..Default::default()
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match &attrs.target {
        Target::NonResource { path } => {
            spec.non_resource_attributes = Some(NonResourceAttributes {
                path: Some(path.clone()),
                verb: Some(attrs.verb.clone()),
            })
        }
        Target::Resource {
            group,
            version,
            resource,
            namespace,
            name,
        } => {
            spec.resource_attributes = Some(ResourceAttributes {
                group: Some(group.clone()),
                version: Some(version.clone()),
                resource: Some(resource.clone()),
                namespace: some(namespace),
                name: some(name),
                verb: Some(attrs.verb.clone()),
                ..Default::default()
            })
        }
    }
    spec
}
