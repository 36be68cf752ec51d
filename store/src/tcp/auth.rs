//! The job token: where it comes from and how it is compared.

use super::protocol::MAX_TOKEN_LEN;
use crate::JOB_TOKEN_ENV;
use crate::{Result, StoreError};

/// The token to use: the one given, else `TUTTI_JOB_TOKEN`, else empty.
pub(crate) fn resolve_token(given: Option<&str>) -> Result<Vec<u8>> {
    let token = match given {
        Some(t) => t.to_string(),
        None => std::env::var(JOB_TOKEN_ENV).unwrap_or_default(),
    };
    if token.len() > MAX_TOKEN_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "store job token of {} bytes exceeds the limit of {MAX_TOKEN_LEN} bytes",
            token.len()
        )));
    }
    if token.is_empty() {
        tracing::debug!(
            "store: no job token given and {JOB_TOKEN_ENV} is unset; using the empty token"
        );
    }
    Ok(token.into_bytes())
}

/// Compares two tokens in time that depends only on their lengths.
pub(crate) fn tokens_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens() {
        assert!(tokens_equal(b"abc", b"abc"));
        assert!(!tokens_equal(b"abc", b"abd"));
        assert!(!tokens_equal(b"abc", b"abcd"));
        assert!(tokens_equal(b"", b""));
    }

    #[test]
    fn rejects_oversized_tokens() {
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        assert!(resolve_token(Some(&long)).is_err());
        assert_eq!(resolve_token(Some("t")).unwrap(), b"t");
    }
}
