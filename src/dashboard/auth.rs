//! Bearer-token authentication for the dashboard, compared in constant time.

use std::path::Path;

use subtle::ConstantTimeEq;

/// The dashboard's bearer token. Its value never appears in debug output or logs.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
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

    /// Whether an `Authorization` header value carries this token.
    pub fn matches_header(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        bool::from(presented.trim().as_bytes().ct_eq(&self.0))
    }
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

    #[test]
    fn short_tokens_are_refused() {
        assert!(Token::new("short").is_none());
    }
}
