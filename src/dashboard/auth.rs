//! Who may use the dashboard: its bearer token (compared in constant time), optionally
//! Kubernetes identities vouched for by the API server (see `access`), and the two axum extractors
//! that carry out the checks: a handler that takes a [`Reader`] only runs for a caller who may
//! read, and a request for a change can only be made with a [`Writer`] (see
//! `Dashboard::request`), which checks per cluster what the caller may change.

use std::path::{Path, PathBuf};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq;

use super::access::{AccessTarget, ReviewedUser};
use super::error::ApiError;
use super::{ClusterEntry, Dashboard};

/// The dashboard's bearer token. Its value never appears in debug output or logs.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where the dashboard's token comes from: a value given at start, or a file read at each check,
/// so that a Secret created or rotated after the start takes effect without a restart (kubelet
/// updates a mounted Secret in place).
#[derive(Clone, Debug)]
pub enum TokenSource {
    Value(Token),
    File(PathBuf),
}

impl From<Token> for TokenSource {
    fn from(token: Token) -> TokenSource {
        TokenSource::Value(token)
    }
}

impl TokenSource {
    /// The token now (`None`: a token file that does not exist).
    pub fn current(&self) -> Result<Option<Token>, TokenError> {
        match self {
            TokenSource::Value(token) => Ok(Some(token.clone())),
            TokenSource::File(path) => Token::from_optional_file(path),
        }
    }
}

/// Reading the token file failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading the dashboard token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the dashboard token file {path} is empty or shorter than 16 characters")]
    TooShort { path: String },
}

impl Token {
    /// At least 16 characters, surrounding white space trimmed.
    pub fn new(value: &str) -> Option<Token> {
        let value = value.trim();
        (value.len() >= 16).then(|| Token(value.as_bytes().to_vec()))
    }

    /// Reads the token from a file (e.g. a mounted Secret).
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: shown.clone(),
            source,
        })?;
        Token::new(&text).ok_or(TokenError::TooShort { path: shown })
    }

    /// The token of a file that may not exist yet (an optional Secret volume): `None` when it
    /// does not exist, an error when it cannot be read or is too short.
    pub fn from_optional_file(path: &Path) -> Result<Option<Token>, TokenError> {
        match Token::from_file(path) {
            Err(TokenError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn matches_header(&self, header: Option<&str>) -> bool {
        bearer(header).is_some_and(|presented| bool::from(presented.as_bytes().ct_eq(&self.0)))
    }
}

/// A caller who may read: anyone, unless the dashboard runs with `auth_reads`; then the token or
/// a Kubernetes identity allowed to `list` ipfsclusters. Only the checks here make one.
#[derive(Debug)]
pub struct Reader(());

/// A caller who proved who they are and so may ask for changes; [`Writer::permit`] says which
/// clusters they may change.
#[derive(Debug)]
pub struct Writer {
    caller: Caller,
}

/// Who made a request that needs authentication.
#[derive(Debug)]
enum Caller {
    /// Presented the dashboard's own token.
    Token,
    /// A Kubernetes identity the API server vouched for (TokenReview).
    Kube(ReviewedUser),
}

impl FromRequestParts<Dashboard> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, d: &Dashboard) -> Result<Reader, ApiError> {
        Reader::check(d, &parts.headers).await
    }
}

impl FromRequestParts<Dashboard> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, d: &Dashboard) -> Result<Writer, ApiError> {
        Writer::check(d, &parts.headers).await
    }
}

impl Reader {
    /// The check of the extractor, for handlers whose body decides whether they read or write.
    pub async fn check(d: &Dashboard, headers: &HeaderMap) -> Result<Reader, ApiError> {
        if !d.auth_reads {
            return Ok(Reader(()));
        }
        let writer = Writer::check(d, headers).await?;
        writer.allowed(d, "list", None).await?;
        Ok(Reader(()))
    }
}

impl Writer {
    /// The check of the extractor: the dashboard's token, or (with access review) a Kubernetes
    /// token. 403 when no way to authenticate is configured, 401 when the credentials fail, 503
    /// when the API server cannot review them.
    pub async fn check(d: &Dashboard, headers: &HeaderMap) -> Result<Writer, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = match d.token.as_ref().map(TokenSource::current).transpose() {
            Ok(token) => token.flatten(),
            Err(e) => {
                tracing::warn!(error = %e, "the dashboard token cannot be used; refusing changes");
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "mutations_disabled",
                    format!("this dashboard refuses every change: {e}"),
                ));
            }
        };
        if token.is_none() && d.review.is_none() {
            let message = match &d.token {
                Some(TokenSource::File(path)) => format!(
                    "this dashboard refuses every change: its token file {} does not exist \
                     (create the Secret mounted there; it is read again at each request)",
                    path.display()
                ),
                _ => "this dashboard has no token configured, so it refuses every change; start \
                      it with --token-file"
                    .to_owned(),
            };
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "mutations_disabled",
                message,
            ));
        }
        if token.as_ref().is_some_and(|t| t.matches_header(presented)) {
            return Ok(Writer {
                caller: Caller::Token,
            });
        }
        let (Some(review), Some(token)) = (&d.review, bearer(presented)) else {
            return Err(unauthorized());
        };
        match review.authenticate(token.to_string()).await {
            Ok(Some(user)) => Ok(Writer {
                caller: Caller::Kube(user),
            }),
            Ok(None) => Err(unauthorized()),
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "review_failed",
                format!("could not review the token with the Kubernetes API: {e}"),
            )),
        }
    }

    /// Whether this caller may change `cluster`: the dashboard's token may change everything; a
    /// Kubernetes identity what RBAC allows (`patch` on the IpfsCluster).
    pub async fn permit(&self, d: &Dashboard, cluster: &ClusterEntry) -> Result<(), ApiError> {
        self.allowed(d, "patch", Some(cluster)).await
    }

    /// Whether this caller may do `verb` on `cluster` (every cluster when `None`).
    async fn allowed(
        &self,
        d: &Dashboard,
        verb: &str,
        cluster: Option<&ClusterEntry>,
    ) -> Result<(), ApiError> {
        let (Caller::Kube(user), Some(review)) = (&self.caller, &d.review) else {
            return Ok(());
        };
        let target = AccessTarget {
            verb: verb.to_string(),
            namespace: cluster.and_then(|c| c.namespace.clone()),
            name: cluster.map(|c| c.name.clone()),
        };
        match review.permits(user.clone(), target).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} may not {verb} ipfsclusters{}: {reason}",
                    user.username,
                    cluster.map(|c| format!(" {}", c.key())).unwrap_or_default()
                ),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "review_failed",
                format!("could not review access with the Kubernetes API: {e}"),
            )),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, trimmed; `None` for another scheme or
/// an empty token. The scheme is case-insensitive (RFC 9110 section 11.1).
fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, credentials) = header?.split_once(' ')?;
    let token = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send Authorization: Bearer <token>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let token = Token::new("0123456789abcdef-secret").expect("long enough");
        assert!(token.matches_header(Some("Bearer 0123456789abcdef-secret")));
        assert!(!token.matches_header(Some("Bearer 0123456789abcdef-secreT")));
        assert!(!token.matches_header(Some("Bearer 0123456789abcdef")));
        assert!(!token.matches_header(Some("Basic 0123456789abcdef-secret")));
        assert!(!token.matches_header(None));
        assert!(!format!("{token:?}").contains("secret"));
    }

    /// The authentication scheme is case-insensitive (RFC 9110 section 11.1): clients that send
    /// `bearer` or `BEARER` present the token as much as those that send `Bearer`.
    #[test]
    fn the_bearer_scheme_matches_in_any_case() {
        let token = Token::new("0123456789abcdef-secret").expect("long enough");
        for header in [
            "bearer 0123456789abcdef-secret",
            "BEARER 0123456789abcdef-secret",
            "Bearer  0123456789abcdef-secret ",
        ] {
            assert!(token.matches_header(Some(header)), "{header}");
        }
        assert_eq!(bearer(Some("bEaReR kube-token")), Some("kube-token"));
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(Some("Basic kube-token")), None);
        assert_eq!(bearer(Some("Bearerkube-token")), None);
    }

    fn bearer_headers(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {token}").parse().expect("header value");
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    /// `kubectl apply -k deploy/` starts the dashboard before anyone created its token Secret:
    /// it refuses changes (naming the file) until the file appears, then takes the token, and a
    /// rotated token replaces the old one without a restart.
    #[tokio::test]
    async fn a_token_file_that_appears_or_changes_later_takes_effect() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        let (dashboard, _publisher, _requests) = Dashboard::new(None, false);
        let d = dashboard.with_token_file(&path);
        let first = "first-token-0123456789";
        let Err(refused) = Writer::check(&d, &bearer_headers(first)).await else {
            panic!("accepted without the file");
        };
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(
            refused.message.contains(&path.display().to_string()),
            "{}",
            refused.message
        );
        std::fs::write(&path, format!("{first}\n")).expect("write token");
        assert!(Writer::check(&d, &bearer_headers(first)).await.is_ok());
        std::fs::write(&path, "second-token-0123456789").expect("rotate token");
        let old = Writer::check(&d, &bearer_headers(first)).await.err();
        assert_eq!(old.map(|e| e.status), Some(StatusCode::UNAUTHORIZED));
        assert!(
            Writer::check(&d, &bearer_headers("second-token-0123456789"))
                .await
                .is_ok()
        );
        std::fs::write(&path, "short").expect("short token");
        let short = Writer::check(&d, &bearer_headers("short")).await.err();
        assert_eq!(short.map(|e| e.status), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(Token::new("short").is_none());
    }
}
