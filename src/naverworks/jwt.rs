//! The service-account JWT assertion (NAVERWORKS.md §1.1): RS256, header
//! `{"alg":"RS256","typ":"JWT"}`, claims iss = Client ID, sub = Service
//! Account, iat, exp = iat + 3600 (the documented maximum).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::RsaPrivateKey;
use serde_json::json;
use sha2::Sha256;

/// The longest assertion lifetime NAVER WORKS accepts.
pub const MAX_LIFETIME_SECS: i64 = 3600;

/// Signs an assertion issued at `iat` (Unix seconds), valid for `lifetime`
/// seconds (at most an hour).
pub fn sign_assertion(
    key: &RsaPrivateKey,
    client_id: &str,
    service_account: &str,
    iat: i64,
    lifetime: i64,
) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let claims = json!({
        "iss": client_id,
        "sub": service_account,
        "iat": iat,
        "exp": iat + lifetime.min(MAX_LIFETIME_SECS),
    });
    sign_claims(key, &header, &claims)
}

/// Signs arbitrary header and claims with RS256 (tests use it for bad claims).
pub fn sign_claims(
    key: &RsaPrivateKey,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}
