//! Password hashing with argon2id (m = 19 MiB, t = 2, p = 1, OWASP's minimum),
//! always on the blocking thread pool so a hash never stalls a worker or an actor.
//! Unknown logins are verified against a dummy hash, so a wrong login and a wrong
//! password take the same time.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::ApiError;

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// A hash of a random password, verified when the login is unknown.
    dummy: String,
}

impl PasswordHasher {
    pub fn new() -> Self {
        // unwrap: these are valid constant parameters.
        let params = Params::new(19 * 1024, 2, 1, None).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let salt = SaltString::generate(&mut OsRng);
        let random: [u8; 16] = rand::random();
        // unwrap: hashing with valid parameters and salt cannot fail.
        let dummy = argon.hash_password(&random, &salt).unwrap().to_string();
        PasswordHasher { params, dummy }
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes `password` into a PHC string, off the async threads.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let argon = self.argon();
        actix_web::web::block(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await
        .map_err(|_| ApiError::overloaded())?
        .map_err(|_| ApiError::validation("The password cannot be hashed."))
    }

    /// Verifies `password` against `hash` (or against the dummy when `hash` is
    /// `None`, taking the same time, and answering false).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let argon = self.argon();
        let known = hash.is_some();
        let phc = hash.unwrap_or_else(|| self.dummy.clone());
        let ok = actix_web::web::block(move || {
            PasswordHash::new(&phc)
                .map(|parsed| argon.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|_| ApiError::overloaded())?;
        Ok(known && ok)
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}
