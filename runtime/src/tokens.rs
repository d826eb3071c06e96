//! Host and player tokens: HMAC-signed JWTs bound to one quiz and one role. Nothing about a
//! token is stored; the signature is the proof. The command API issues them; both APIs verify
//! them with the same secret.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("missing, malformed, forged or expired token")]
    InvalidToken,
    #[error("the token is not this quiz's host token")]
    NotHost,
    #[error("the token is not a player token of this quiz")]
    NotThisPlayer,
    #[error("signing a token: {0}")]
    Signing(String),
    #[error(
        "PODIUM_TOKEN_SECRET must be at least 32 bytes; it has {0} (try `openssl rand -hex 32`)"
    )]
    WeakSecret(usize),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tokens outlive any quiz by far, but not forever.
const LIFETIME_SECONDS: u64 = 7 * 24 * 3600;

/// The shortest secret accepted: HS256 wants at least 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// The token secret, flattened into both APIs' configurations: the command API signs with it,
/// both verify with it.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenSecretArgs {
    /// Secret that signs host and player tokens (HMAC-SHA256), at least 32 bytes. Every
    /// instance of both APIs shares it; changing it invalidates every token.
    // Checked in `tokens()`, not by clap: clap's error for a refused value prints the value.
    #[arg(
        long,
        env = "PODIUM_TOKEN_SECRET",
        value_parser = crate::transport::secret,
        hide_env_values = true
    )]
    pub token_secret: secrecy::SecretString,
}

impl TokenSecretArgs {
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            token_secret: secrecy::SecretString::from(secret.into()),
        }
    }

    /// The signer and verifier, or why the secret is refused (without printing it).
    pub fn tokens(&self) -> Result<Tokens> {
        use secrecy::ExposeSecret;
        let secret = self.token_secret.expose_secret();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::WeakSecret(secret.len()));
        }
        Ok(Tokens::new(secret.as_bytes()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Host,
    Player,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The quiz the token is bound to.
    pub quiz: String,
    pub role: Role,
    /// The player id for players; the quiz id for the host.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(&self, quiz: &str, role: Role, sub: &str) -> Result<String> {
        let iat = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            quiz: quiz.to_owned(),
            role,
            sub: sub.to_owned(),
            iat,
            exp: iat + LIFETIME_SECONDS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Signing(e.to_string()))
    }

    pub fn verify(&self, token: &str) -> Result<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| Error::InvalidToken)
    }

    /// The host of `quiz`, or why not.
    pub fn host_of(&self, token: Option<&str>, quiz: &str) -> Result<Claims> {
        let claims = self.verify(token.ok_or(Error::InvalidToken)?)?;
        if claims.role == Role::Host && claims.quiz == quiz {
            Ok(claims)
        } else {
            Err(Error::NotHost)
        }
    }

    /// A player of `quiz`, or why not.
    pub fn player_of(&self, token: Option<&str>, quiz: &str) -> Result<Claims> {
        let claims = self.verify(token.ok_or(Error::InvalidToken)?)?;
        if claims.role == Role::Player && claims.quiz == quiz {
            Ok(claims)
        } else {
            Err(Error::NotThisPlayer)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        secret: TokenSecretArgs,
    }

    #[test]
    fn a_secret_shorter_than_32_bytes_is_refused_without_printing_it() -> Result<()> {
        use clap::Parser;
        let short =
            Flags::try_parse_from(["api", "--token-secret", "0123456789abcdef0123456789abcde"])
                .map_err(|e| Error::Signing(e.to_string()))?;
        let message = match short.secret.tokens() {
            Ok(_) => "a 31-byte secret was accepted".to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            message.contains("at least 32 bytes; it has 31"),
            "{message}"
        );
        assert!(
            !message.contains("0123456789"),
            "the error printed the secret: {message}"
        );
        let long =
            Flags::try_parse_from(["api", "--token-secret", "0123456789abcdef0123456789abcdef"])
                .map_err(|e| Error::Signing(e.to_string()))?;
        assert!(long.secret.tokens().is_ok());
        Ok(())
    }

    #[test]
    fn a_token_is_bound_to_its_quiz_and_role() -> Result<()> {
        let tokens = Tokens::new(SECRET);
        let host = tokens.issue("q1", Role::Host, "q1")?;
        let player = tokens.issue("q1", Role::Player, "p1")?;
        assert_eq!(tokens.host_of(Some(&host), "q1")?.role, Role::Host);
        assert!(matches!(
            tokens.host_of(Some(&player), "q1"),
            Err(Error::NotHost)
        ));
        assert!(matches!(
            tokens.host_of(Some(&host), "q2"),
            Err(Error::NotHost)
        ));
        assert_eq!(tokens.player_of(Some(&player), "q1")?.sub, "p1");
        assert!(matches!(
            tokens.player_of(Some(&host), "q1"),
            Err(Error::NotThisPlayer)
        ));
        Ok(())
    }

    #[test]
    fn a_forged_or_missing_token_is_invalid() -> Result<()> {
        let host =
            Tokens::new(b"another secret of thirty-two bytes!!").issue("q1", Role::Host, "q1")?;
        let tokens = Tokens::new(SECRET);
        assert!(matches!(
            tokens.host_of(Some(&host), "q1"),
            Err(Error::InvalidToken)
        ));
        assert!(matches!(
            tokens.host_of(None, "q1"),
            Err(Error::InvalidToken)
        ));
        assert!(matches!(
            tokens.verify("not.a.jwt"),
            Err(Error::InvalidToken)
        ));
        Ok(())
    }
}
