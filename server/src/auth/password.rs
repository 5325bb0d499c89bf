//! Stored passwords of `[paths]` sections: plain, `sha256:<hex>` or an
//! argon2 PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).

use sha2::{Digest, Sha256};

/// A configured password.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in clear in the file (compared through SHA-256; kept in
    /// clear as well because an RTSP Digest answer can only be checked
    /// with it).
    Plain(String, [u8; 32]),
    /// `sha256:<64 hex digits>`: the SHA-256 of the password.
    Sha256([u8; 32]),
    /// An argon2 PHC string (RFC 9106; checked off the session path).
    Argon2(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(..) => "Plain(<redacted>)",
            Secret::Sha256(_) => "Sha256(<redacted>)",
            Secret::Argon2(_) => "Argon2(<redacted>)",
        })
    }
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Secret {
    /// Parses a configured password.
    pub fn parse(s: &str) -> Result<Secret, String> {
        if let Some(h) = s.strip_prefix("sha256:") {
            let h = h.trim();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("`sha256:` must be followed by 64 hex digits (the SHA-256 of the password, e.g. `printf %s PASS | sha256sum`)".into());
            }
            let mut out = [0u8; 32];
            for (i, o) in out.iter_mut().enumerate() {
                let pair = h.get(2 * i..2 * i + 2).unwrap_or("00");
                *o = u8::from_str_radix(pair, 16).map_err(|e| e.to_string())?;
            }
            return Ok(Secret::Sha256(out));
        }
        if s.starts_with("$argon2") {
            let h = argon2::PasswordHash::new(s)
                .map_err(|e| format!("not a valid argon2 PHC string: {e}"))?;
            if h.hash.is_none() || h.salt.is_none() {
                return Err("not a valid argon2 PHC string: no salt or hash".into());
            }
            return Ok(Secret::Argon2(s.to_owned()));
        }
        if s.is_empty() {
            return Err("an empty password".into());
        }
        Ok(Secret::Plain(s.to_owned(), sha256(s)))
    }

    /// Whether checking takes long (argon2): done off the session path.
    pub fn is_slow(&self) -> bool {
        matches!(self, Secret::Argon2(_))
    }

    /// Whether `given` is the password (argon2: slow, call off the
    /// session path).
    pub fn verify(&self, given: &str) -> bool {
        match self {
            Secret::Plain(_, h) | Secret::Sha256(h) => {
                // Equal-time comparison of digests.
                let g = sha256(given);
                h.iter()
                    .zip(g.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
            Secret::Argon2(phc) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(phc).is_ok_and(|hash| {
                    argon2::Argon2::default()
                        .verify_password(given.as_bytes(), &hash)
                        .is_ok()
                })
            }
        }
    }

    /// Whether an RTSP Digest answer (RFC 2617 §3.2.2) proves knowledge
    /// of the password: only a password written in clear can check one.
    pub fn verify_digest(&self, d: &arcly::admission::DigestCredentials) -> Option<bool> {
        match self {
            Secret::Plain(p, _) => Some(d.verify(p)),
            Secret::Sha256(_) | Secret::Argon2(_) => None,
        }
    }

    /// How `--print-config` shows it: never in clear.
    pub fn shown(&self) -> String {
        match self {
            Secret::Plain(_, h) | Secret::Sha256(h) => format!("sha256:{}", hex(h)),
            Secret::Argon2(s) => s.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_sha256_and_argon2() {
        let p = Secret::parse("hunter2").unwrap();
        assert!(p.verify("hunter2") && !p.verify("hunter3"));
        let h = Secret::parse(&p.shown()).unwrap();
        assert!(h.verify("hunter2") && !h.verify(""));
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(Secret::parse("sha256:abc").is_err());
        assert!(Secret::parse("").is_err());
        assert!(Secret::parse("$argon2id$nonsense").is_err());
        // argon2id, m=19456,t=2,p=1 of "pw" (generated with the argon2 crate).
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
        let a = Secret::parse(&phc).unwrap();
        assert!(a.is_slow());
        assert!(a.verify("pw") && !a.verify("px"));
    }
}
