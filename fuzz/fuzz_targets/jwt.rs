//! `halley::auth::jwt::verify` on arbitrary tokens, and sign → verify round
//! trips of claims derived from the input.
//!
//! Checks, besides "no panic":
//! - an arbitrary token is accepted only if it really is a valid HS256
//!   token for the secret, as checked here independently (RustCrypto HMAC
//!   over the first two parts, the header's `alg` is `HS256`, not expired,
//!   not before `nbf`), and the returned claims are the payload's;
//! - round trip: claims built from the input, signed with `jwt::sign` under
//!   a secret taken from the input, verify to exactly those claims (or to
//!   `Expired`/`NotYetValid` when the times say so, or `Malformed` naming a
//!   `channels`/`publish` claim of the wrong type);
//! - the same token with any one character changed, or under another
//!   secret, is refused.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use halley::auth::jwt::{sign, verify, Claims, JwtError};
use halley_fuzz::Rng;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// The secret the seed tokens in corpus/jwt are signed with.
const SECRET: &[u8] = b"fuzz-secret";
const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        check_arbitrary(token);
    }
    round_trip(data);
});

fn check_arbitrary(token: &str) {
    let Ok(claims) = verify(token, SECRET, NOW) else {
        return;
    };
    // Accepted: it must be a genuine token.
    let (signed, signature) = token.rsplit_once('.').expect("accepted a token without dots");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted {token:?}");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("accepted a signature that is not base64url");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(signed.as_bytes());
    assert_eq!(
        mac.finalize().into_bytes().as_slice(),
        signature.as_slice(),
        "accepted a bad signature: {token:?}"
    );
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header.get("alg").and_then(Value::as_str), Some("HS256"), "accepted alg in {header}");
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let payload = payload.as_object().expect("accepted a payload that is not an object");
    if let Some(exp) = claims.exp {
        assert!(NOW < exp, "accepted an expired token");
    }
    if let Some(nbf) = payload.get("nbf").and_then(Value::as_f64) {
        assert!(nbf < 0.0 || (NOW as f64) >= nbf.trunc(), "accepted a token before its nbf {nbf}");
    }
    assert_eq!(claims.sub.as_deref(), payload.get("sub").and_then(Value::as_str));
}

fn text(rng: &mut Rng, data: &[u8]) -> String {
    let start = rng.below(data.len() + 1);
    let len = rng.below(data.len() - start + 1).min(24);
    String::from_utf8_lossy(&data[start..start + len]).into_owned()
}

/// A `channels`/`publish` claim and the patterns it grants; `None` for a
/// claim of the wrong type (a number, an object, a list with a non-string).
fn patterns(rng: &mut Rng, data: &[u8]) -> (Value, Option<Vec<String>>) {
    match rng.below(6) {
        0 => (Value::Null, Some(Vec::new())),
        1 => {
            let one = text(rng, data);
            (Value::from(one.clone()), Some(vec![one]))
        }
        2 => (json!(rng.next_u64() % 1000), None),
        3 => (json!({ "p": text(rng, data) }), None),
        4 => (json!([text(rng, data), 7]), None),
        _ => {
            let list: Vec<String> = (0..rng.below(4)).map(|_| text(rng, data)).collect();
            (json!(list), Some(list))
        }
    }
}

fn round_trip(data: &[u8]) {
    let mut rng = Rng::new(data);
    let secret = &data[..rng.below(data.len().min(80) + 1)];
    let mut claims = Map::new();
    let mut want = Claims::default();
    if rng.below(2) == 0 {
        let sub = text(&mut rng, data);
        claims.insert("sub".into(), Value::from(sub.clone()));
        want.sub = Some(sub);
    }
    // Times around NOW: past, now, future, far future.
    let time = |rng: &mut Rng| match rng.below(4) {
        0 => NOW - 1 - rng.below(1000) as u64,
        1 => NOW,
        2 => NOW + 1 + rng.below(1000) as u64,
        _ => u64::from(u32::MAX) + rng.next_u64() % (1 << 40),
    };
    let exp = (rng.below(3) > 0).then(|| time(&mut rng));
    let nbf = (rng.below(3) == 0).then(|| time(&mut rng));
    if let Some(exp) = exp {
        claims.insert("exp".into(), Value::from(exp));
        want.exp = Some(exp);
    }
    if let Some(nbf) = nbf {
        claims.insert("nbf".into(), Value::from(nbf));
    }
    let (value, channels) = patterns(&mut rng, data);
    if !value.is_null() || rng.below(2) == 0 {
        claims.insert("channels".into(), value);
    }
    let (value, publish) = patterns(&mut rng, data);
    if !value.is_null() || rng.below(2) == 0 {
        claims.insert("publish".into(), value);
    }

    let token = sign(&Value::Object(claims), secret);
    let expected = if exp.is_some_and(|exp| NOW >= exp) {
        Err(JwtError::Expired)
    } else if nbf.is_some_and(|nbf| NOW < nbf) {
        Err(JwtError::NotYetValid)
    } else if let (Some(channels), Some(publish)) = (&channels, &publish) {
        want.channels = channels.clone();
        want.publish = publish.clone();
        Ok(want)
    } else {
        Err(JwtError::Malformed(if channels.is_none() { "channels" } else { "publish" }))
    };
    let got = verify(&token, secret, NOW);
    if let Err(err) = &got {
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(got, expected, "round trip of {token}");

    // Any one character changed: refused.
    let at = rng.below(token.len());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    let old = token.as_bytes()[at];
    let new = alphabet[rng.below(alphabet.len())];
    if new != old {
        let mut tampered = token.clone().into_bytes();
        tampered[at] = new;
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(verify(&tampered, secret, NOW).is_err(), "accepted {tampered} (changed from {token})");
    }
    // Another secret: refused. (Not one with a zero byte appended: HMAC pads
    // short keys with zeros, so "k" and "k\0" are the same key.)
    let mut other = secret.to_vec();
    other.push(rng.next_u64() as u8 | 1);
    assert!(verify(&token, &other, NOW).is_err(), "accepted under another secret");
}
