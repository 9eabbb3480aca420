//! Named operators with roles, instead of one shared admin token.
//!
//! An operator is created by `okpay operator add NAME --role ROLE` (or by an
//! admin operator through `POST /v1/admin/operators`), which prints a token once:
//! `okop_` + base64url(32 random bytes). Only the token's SHA-256 is stored, in
//! the store index `operator` (hash hex → the operator as JSON); the index
//! `operator_name` (name → hash hex) keeps names unique. The `--admin-token`
//! stays as a bootstrap operator named `admin` with the `admin` role, so a fresh
//! installation can create the named ones.
//!
//! Roles are sets of duties, not a ladder: a `reviewer` decides KYC but cannot
//! freeze, a `risk` operator freezes but cannot decide KYC; both can read.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use okpay_engine::store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The store index from token hashes to operators.
pub const OPERATOR_INDEX: &str = "operator";
/// The store index from operator names to token hashes.
pub const OPERATOR_NAME_INDEX: &str = "operator_name";
/// Operator tokens start with this (session tokens with `okp_`).
pub const TOKEN_PREFIX: &str = "okop_";
/// The name the bootstrap `--admin-token` acts under in the audit trail.
pub const BOOTSTRAP_NAME: &str = "admin";
/// The most operators listed.
pub const LIST_MAX: usize = 1_000;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads accounts, queues, alerts, the ledger and the audit trail.
    Viewer,
    /// A viewer who also decides KYC submissions and sees their images.
    Reviewer,
    /// A viewer who also takes status actions and handles alerts.
    Risk,
    /// Everything, including operators, maintenance and the dev outbox.
    Admin,
}

/// A kind of operator action, checked against the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    Read,
    ReviewKyc,
    RiskAction,
    Administer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "reviewer" => Some(Role::Reviewer),
            "risk" => Some(Role::Risk),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Reviewer => "reviewer",
            Role::Risk => "risk",
            Role::Admin => "admin",
        }
    }

    pub fn may(self, duty: Duty) -> bool {
        match (self, duty) {
            (_, Duty::Read) => true,
            (Role::Admin, _) => true,
            (Role::Reviewer, Duty::ReviewKyc) => true,
            (Role::Risk, Duty::RiskAction) => true,
            (Role::Viewer, _) | (Role::Reviewer, _) | (Role::Risk, _) => false,
        }
    }
}

/// An operator as stored (never the token).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperatorRecord {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Who created it (`cli` for the command line).
    pub created_by: String,
}

/// Why an operator could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("the name must have 1 to 64 letters, digits, dots, dashes or underscores")]
    BadName,
    #[error("an operator with this name exists")]
    Taken,
    #[error("the store is unavailable: {0}")]
    Store(String),
}

/// Hex SHA-256 of a whole operator token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Creates an operator; returns the record and the token (shown once).
pub async fn add(
    store: &Arc<dyn Store>,
    name: &str,
    role: Role,
    created_by: &str,
    created_at: DateTime<Utc>,
) -> Result<(OperatorRecord, String), AddError> {
    if !valid_name(name) || name == BOOTSTRAP_NAME {
        return Err(if name == BOOTSTRAP_NAME {
            AddError::Taken
        } else {
            AddError::BadName
        });
    }
    let secret: [u8; 32] = rand::random();
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = token_hash(&token);
    let record = OperatorRecord {
        name: name.to_owned(),
        role,
        created_at,
        created_by: created_by.to_owned(),
    };
    // unwrap: a struct of strings and a date always serializes.
    let value = serde_json::to_string(&record).unwrap();
    let err = |e: okpay_engine::store::StoreError| AddError::Store(e.to_string());
    if !store
        .claim_index(OPERATOR_NAME_INDEX, name, &hash)
        .await
        .map_err(err)?
    {
        return Err(AddError::Taken);
    }
    // The name is claimed; a 256-bit random token hash cannot collide in practice,
    // so a `false` here is treated as the store failing.
    match store.claim_index(OPERATOR_INDEX, &hash, &value).await {
        Ok(true) => Ok((record, token)),
        Ok(false) => Err(AddError::Store("token hash collision".into())),
        Err(e) => {
            let _ = store.delete_index(OPERATOR_NAME_INDEX, name).await;
            Err(err(e))
        }
    }
}

/// The operator holding `token`, if any (`Err` when the store is unavailable).
pub async fn lookup(
    store: &Arc<dyn Store>,
    token: &str,
) -> Result<Option<OperatorRecord>, okpay_engine::store::StoreError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Ok(None);
    }
    let found = store.get_index(OPERATOR_INDEX, &token_hash(token)).await?;
    Ok(found.and_then(|v| serde_json::from_str(&v).ok()))
}

/// Every named operator, by name.
pub async fn list(
    store: &Arc<dyn Store>,
) -> Result<Vec<OperatorRecord>, okpay_engine::store::StoreError> {
    let names = store
        .scan_index(OPERATOR_NAME_INDEX, None, LIST_MAX)
        .await?;
    let mut out = Vec::with_capacity(names.len());
    for (_, hash) in names {
        if let Some(v) = store.get_index(OPERATOR_INDEX, &hash).await? {
            if let Ok(r) = serde_json::from_str(&v) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Now, for an offline command: the configured clock (the wall clock outside
/// tests), read through the same conversion the server uses.
fn cli_now(settings: &crate::config::Settings) -> DateTime<Utc> {
    crate::clock::to_chrono(settings.clock.0.now())
}

/// Runs an `okpay operator ...` command against the configured store.
pub async fn run_command(
    command: crate::config::CliCommand,
    settings: &crate::config::Settings,
) -> anyhow::Result<()> {
    use crate::config::{CliCommand, OperatorCommand};
    let CliCommand::Operator(command) = command;
    let store = crate::open_store(settings).await?;
    match command {
        OperatorCommand::Add { name, role } => {
            // clap only lets the four role names through.
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role {role}"))?;
            let (record, token) = add(&store, &name, role, "cli", cli_now(settings))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "operator {} ({}) created; its token is shown once:",
                record.name,
                record.role.name()
            );
            println!("{token}");
        }
        OperatorCommand::List => {
            for r in list(&store).await.map_err(|e| anyhow::anyhow!("{e}"))? {
                println!(
                    "{}\t{}\t{}",
                    r.name,
                    r.role.name(),
                    r.created_at.to_rfc3339()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_sets_of_duties() {
        assert!(Role::Viewer.may(Duty::Read));
        assert!(!Role::Viewer.may(Duty::ReviewKyc));
        assert!(Role::Reviewer.may(Duty::ReviewKyc));
        assert!(!Role::Reviewer.may(Duty::RiskAction));
        assert!(Role::Risk.may(Duty::RiskAction));
        assert!(!Role::Risk.may(Duty::ReviewKyc));
        assert!(!Role::Risk.may(Duty::Administer));
        assert!(Role::Admin.may(Duty::Administer));
        for r in ["viewer", "reviewer", "risk", "admin"] {
            assert_eq!(Role::parse(r).unwrap().name(), r);
        }
        assert!(Role::parse("root").is_none());
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("ana.lee-2"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
