//! Password hashing with argon2id (m = 19 MiB, t = 2, p = 1, OWASP's minimum),
//! always on the blocking thread pool so a hash never stalls a worker or an actor.
//!
//! One bound covers every hash and verification (registration, login, reset
//! confirm, re-authentication): at most `--hash-concurrency` (default 2 × cores)
//! run at once, so memory stays near `bound × 19 MiB` however many requests
//! arrive. A request waits at most [`PERMIT_WAIT`] for a slot, then gets 503
//! `OVERLOADED` with `Retry-After`; waiting requests hold no argon2 memory.
//! Unknown logins are verified against a dummy hash, so a wrong login and a wrong
//! password take the same time.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// How long a request waits for a hashing slot before 503.
pub const PERMIT_WAIT: Duration = Duration::from_secs(10);

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// Slots for concurrent hashes (a tokio semaphore: waiting is async and
    /// cancellable, and a permit moves into the blocking task it guards).
    slots: Arc<Semaphore>,
    /// A hash of a random password, verified when the login is unknown.
    dummy: String,
}

impl PasswordHasher {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::with_concurrency(2 * cores)
    }

    /// A hasher running at most `concurrency` hashes at once.
    pub fn with_concurrency(concurrency: usize) -> Self {
        // unwrap: these are valid constant parameters.
        let params = Params::new(19 * 1024, 2, 1, None).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let salt = SaltString::generate(&mut OsRng);
        let random: [u8; 16] = rand::random();
        // unwrap: hashing with valid parameters and salt cannot fail.
        let dummy = argon.hash_password(&random, &salt).unwrap().to_string();
        PasswordHasher {
            params,
            dummy,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A hashing slot, or 503 `OVERLOADED` after [`PERMIT_WAIT`].
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(PERMIT_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("okpay_password_hash_overloaded_total").increment(1);
                Err(ApiError::overloaded()
                    .with_hint("Too many logins and registrations at once; retry in a moment."))
            }
        }
    }

    /// Hashes `password` into a PHC string, off the async threads.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let argon = self.argon();
        let permit = self.slot().await?;
        actix_web::web::block(move || {
            let _permit = permit;
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
        let permit = self.slot().await?;
        let ok = actix_web::web::block(move || {
            let _permit = permit;
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
