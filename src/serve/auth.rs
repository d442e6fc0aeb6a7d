//! The bearer token of `--token-file`: every request must carry `Authorization: Bearer
//! <token>`; the comparison takes the same time wherever the first difference is, so response
//! times do not reveal a prefix of the token.

use super::error::{Result, ServeError};
use std::path::Path;

/// A token read from a file (surrounding whitespace trimmed).
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the token; an empty file is refused (it would let every request in).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::Gatekit(crate::error::Error::io(path, e)))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ServeError::Gatekit(crate::error::Error::Data {
                path: path.into(),
                message: "holds no token (the file is empty); write a random token into it, e.g. `openssl rand -hex 32 > FILE`".into(),
            }));
        }
        Ok(Token(token.as_bytes().to_vec()))
    }

    /// A token from its text (tests).
    pub fn new(text: &str) -> Self {
        Token(text.as_bytes().to_vec())
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<()> {
        let header = header.ok_or_else(|| {
            ServeError::Unauthorized(
                "missing Authorization header; expected `Authorization: Bearer <token>`".into(),
            )
        })?;
        let given = header.strip_prefix(b"Bearer ").ok_or_else(|| {
            ServeError::Unauthorized("the Authorization header is not `Bearer <token>`".into())
        })?;
        if constant_time_eq(given, &self.0) {
            Ok(())
        } else {
            Err(ServeError::Unauthorized("wrong bearer token".into()))
        }
    }
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= (x ^ y) as u64;
    }
    // Keep the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_is_checked() {
        let t = Token::new("s3cret");
        assert!(t.check(Some(b"Bearer s3cret")).is_ok());
        for bad in [
            &b"Bearer s3cres"[..],
            b"Bearer s3cret2",
            b"Bearer ",
            b"s3cret",
            b"Basic s3cret",
        ] {
            assert_eq!(t.check(Some(bad)).unwrap_err().status(), 401);
        }
        assert!(t.check(None).unwrap_err().to_string().contains("missing"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }
}
