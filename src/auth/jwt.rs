//! HS256 JSON Web Tokens: `base64url(header).base64url(claims).base64url(sig)`,
//! signed with HMAC-SHA256 over the first two parts. Only HS256 is accepted
//! (never `none`, never a key-confusion algorithm). The MAC comes from the
//! RustCrypto `hmac`/`sha2` crates and is compared in constant time.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Tokens longer than this are refused unread: real ones are a few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 8192;

/// The claims halley reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub sub: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: Option<u64>,
    /// Channel patterns the bearer may subscribe to.
    pub channels: Vec<String>,
    /// Channel patterns the bearer may publish to from the public side.
    pub publish: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Malformed(&'static str),
    Algorithm,
    Signature,
    Expired,
    NotYetValid,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed(why) => write!(f, "malformed token: {why}"),
            JwtError::Algorithm => write!(f, "token must be signed with HS256"),
            JwtError::Signature => write!(f, "token signature does not verify"),
            JwtError::Expired => write!(f, "token has expired"),
            JwtError::NotYetValid => write!(f, "token is not valid yet"),
        }
    }
}

/// Checks a token's form, algorithm, signature and time claims.
pub fn verify(token: &str, secret: &[u8], now_secs: u64) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("longer than 8 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    };
    let header = json_part(header, "header")?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let signature =
        URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| JwtError::Signature)?;
    let signed_len = token.len() - signature_len(token);
    mac.update(token.as_bytes().get(..signed_len).unwrap_or_default());
    mac.verify_slice(&signature).map_err(|_| JwtError::Signature)?;
    let claims = json_part(payload, "claims")?;
    let time = |name: &'static str| -> Result<Option<u64>, JwtError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                v.as_f64().filter(|t| *t >= 0.0).map(|t| Some(t as u64)).ok_or(JwtError::Malformed(name))
            }
        }
    };
    let exp = time("exp")?;
    if exp.is_some_and(|exp| now_secs >= exp) {
        return Err(JwtError::Expired);
    }
    if time("nbf")?.is_some_and(|nbf| now_secs < nbf) {
        return Err(JwtError::NotYetValid);
    }
    Ok(Claims {
        sub: claims.get("sub").and_then(Value::as_str).map(String::from),
        exp,
        channels: patterns(&claims, "channels")?,
        publish: patterns(&claims, "publish")?,
    })
}

/// Length of the signature part plus its dot.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |i| token.len() - i)
}

fn json_part(part: &str, what: &'static str) -> Result<serde_json::Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed(what)),
    }
}

/// A claim that is a pattern or a list of patterns.
fn patterns(claims: &serde_json::Map<String, Value>, name: &'static str) -> Result<Vec<String>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.len() <= 256 => {
            items.iter().map(|v| v.as_str().map(String::from).ok_or(JwtError::Malformed(name))).collect()
        }
        Some(_) => Err(JwtError::Malformed(name)),
    }
}

/// Signs `claims` (a JSON object) with HS256: for tests, tools and docs.
pub fn sign(claims: &Value, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signed.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verifies_and_refuses() {
        let secret = b"s3cret";
        let good = sign(&json!({"sub":"u1","exp":2000,"channels":["news/*"],"publish":"chat/**"}), secret);
        let claims = verify(&good, secret, 1000).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("u1"));
        assert_eq!(claims.channels, vec!["news/*"]);
        assert_eq!(claims.publish, vec!["chat/**"]);
        assert_eq!(verify(&good, secret, 2000), Err(JwtError::Expired));
        assert_eq!(verify(&good, b"other", 1000), Err(JwtError::Signature));
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#)
        );
        assert_eq!(verify(&none_alg, secret, 0), Err(JwtError::Algorithm));
        let mut tampered = good.clone();
        tampered.insert(good.find('.').unwrap() + 2, 'A');
        assert!(verify(&tampered, secret, 1000).is_err());
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(matches!(verify(bad, secret, 0), Err(JwtError::Malformed(_))), "{bad:?}");
        }
        let nbf = sign(&json!({"nbf": 500}), secret);
        assert_eq!(verify(&nbf, secret, 100), Err(JwtError::NotYetValid));
        let wrong_type = sign(&json!({"channels": 5}), secret);
        assert_eq!(verify(&wrong_type, secret, 0), Err(JwtError::Malformed("channels")));
    }
}
