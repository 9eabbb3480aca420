//! Configuration, in layers: built-in defaults, then the `--config` TOML file,
//! then environment variables, then command-line flags (the last one set wins).
//! Flags and env vars are the ones API.md lists; the TOML file additionally holds
//! the whole business policy (`[policy]`), engine tuning (`[engine]`) and server
//! limits (`[server]`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use okpay_engine::cluster::{ClusterConfig, NodeId};
use okpay_engine::codec::events::EventsFormat;
use okpay_engine::codec::Compression;
use okpay_engine::domain::Locale;
use okpay_engine::policy::Policy;
use okpay_engine::RuntimeConfig;
use serde::Deserialize;

/// The `okpay` command line. Every flag also reads an env var.
#[derive(Parser, Debug, Clone, Default)]
#[command(name = "okpay", version, about = "The OKPay e-wallet server")]
pub struct Cli {
    /// Address to bind (default 127.0.0.1:8080).
    #[arg(long, env = "OKPAY_LISTEN")]
    pub listen: Option<String>,
    /// Use Redis (journal + snapshots) instead of the embedded store.
    #[arg(long = "redis", env = "OKPAY_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Embedded store location (default ./data).
    #[arg(long, env = "OKPAY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Bearer token for /v1/admin/*; without it admin routes answer 401.
    #[arg(long, env = "OKPAY_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Dev mode: notifier writes to the admin-readable outbox; payouts settle after
    /// --payout-delay-ms.
    #[arg(long, env = "OKPAY_DEV", value_parser = clap::builder::BoolishValueParser::new(), default_missing_value = "true", num_args = 0..=1)]
    pub dev: Option<bool>,
    /// TOML file overriding policy defaults (limits, fees, fraud thresholds, lockout,
    /// currencies) and server settings.
    #[arg(long, env = "OKPAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// How long the dev payout processor takes to settle a withdrawal (default 1000).
    #[arg(long, env = "OKPAY_PAYOUT_DELAY_MS")]
    pub payout_delay_ms: Option<u64>,
    /// Refuse to start on a Redis that is not configured for durability
    /// (appendonly yes, appendfsync always, maxmemory-policy noeviction).
    #[arg(long, env = "OKPAY_STRICT_DURABILITY", value_parser = clap::builder::BoolishValueParser::new(), default_missing_value = "true", num_args = 0..=1)]
    pub strict_durability: Option<bool>,
    /// The 32-byte AES-256 key for personal data at rest (KYC data, TOTP secrets),
    /// as 64 hex digits or base64. Unset: dev mode uses a fixed dev key; otherwise
    /// a random key is created once in `<data-dir>/pii.key` (with a warning).
    #[arg(long, env = "OKPAY_KYC_KEY", hide_env_values = true)]
    pub kyc_key: Option<String>,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `okpay=debug`.
    #[arg(long, env = "OKPAY_LOG")]
    pub log: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "OKPAY_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new(), default_missing_value = "true", num_args = 0..=1)]
    pub log_json: Option<bool>,
    /// Proxies whose `X-Forwarded-For` is believed, as `CIDR[,CIDR…]` (e.g.
    /// `10.0.0.0/8,127.0.0.1/32`). The client is the right-most address not in
    /// these ranges. Unset: the TCP peer is the client, headers are ignored.
    #[arg(long, env = "OKPAY_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Password hashes (argon2id, 19 MiB each) computed at once; requests beyond
    /// wait briefly, then get 503 OVERLOADED (default: 2 × cores).
    #[arg(long, env = "OKPAY_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<usize>,
    /// KYC uploads (bodies up to 14 MiB) read at once; beyond, 503 OVERLOADED at
    /// once (default 4).
    #[arg(long, env = "OKPAY_KYC_UPLOADS")]
    pub kyc_uploads: Option<usize>,
    /// After each shard-log append, wait until this many replicas of the Redis
    /// master acknowledged it (`WAIT`), so the acknowledgement survives a
    /// failover to one of them (default 0: no wait).
    #[arg(long, env = "OKPAY_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,
    /// How long that wait may take before the append fails as unavailable
    /// (default 500, at most 1500).
    #[arg(long, env = "OKPAY_REDIS_WAIT_TIMEOUT_MS")]
    pub redis_wait_timeout_ms: Option<u64>,
    /// Join the nodes sharing this Redis under this name (1-64 of `A-Za-z0-9._-`):
    /// the node then hosts only the shards it holds a lease for. Unset: a single
    /// node hosting every shard.
    #[arg(long, env = "OKPAY_NODE_ID")]
    pub node_id: Option<String>,
    /// Without a command, `okpay` serves.
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

/// What `okpay` can do besides serving.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum CliCommand {
    /// Named operators of the console and the admin API.
    #[command(subcommand)]
    Operator(OperatorCommand),
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum OperatorCommand {
    /// Creates an operator and prints its token once (only its hash is stored).
    /// With the embedded store, run it while the server is stopped.
    Add {
        /// 1-64 letters, digits, dots, dashes or underscores.
        name: String,
        #[arg(long, value_parser = ["viewer", "reviewer", "risk", "admin"])]
        role: String,
    },
    /// Lists the named operators.
    List,
}

/// `[server]` in the TOML file: the same settings as the flags, plus limits.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ServerFile {
    pub listen: Option<String>,
    pub redis_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_token: Option<String>,
    pub dev: Option<bool>,
    pub payout_delay_ms: Option<u64>,
    pub strict_durability: Option<bool>,
    pub max_json_body_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub listen_backlog: Option<u32>,
    pub session_ttl_s: Option<u64>,
    pub ws_queue: Option<usize>,
    pub ws_max_connections: Option<usize>,
    pub ws_max_per_ip: Option<usize>,
    pub ws_heartbeat_s: Option<u64>,
    pub workers: Option<usize>,
    pub kyc_key: Option<String>,
    pub login_failures_per_ip: Option<u32>,
    pub login_failures_per_login: Option<u32>,
    pub login_failure_window_s: Option<u64>,
    pub trusted_proxies: Option<String>,
    pub hash_concurrency: Option<usize>,
    pub kyc_uploads: Option<usize>,
    pub node_id: Option<String>,
    pub alerts_kept: Option<usize>,
    pub redis_wait_replicas: Option<u32>,
    pub redis_wait_timeout_ms: Option<u64>,
}

/// `[engine]` in the TOML file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EngineFile {
    /// Executor threads (the old actor runtime called them arbiters).
    #[serde(alias = "arbiters")]
    pub executors: Option<usize>,
    /// Shards of a new deployment; an existing one keeps its stored number.
    pub shards: Option<u16>,
    pub mailbox_capacity: Option<usize>,
    #[serde(alias = "journal_queue")]
    pub inbox_capacity: Option<usize>,
    pub max_batch: Option<usize>,
    pub idle_after_s: Option<u64>,
    #[serde(alias = "snapshot_every")]
    pub checkpoint_every: Option<u64>,
    /// Threads per executor for blocking store work (the embedded store's I/O).
    pub blocking_threads: Option<usize>,
    /// The events format written into log records: 2 (the default) or 1, the
    /// format of builds before it, for a rolling upgrade: pin 1 until every
    /// node runs a build that reads 2, then lift the pin. Every build reads both.
    pub events_format: Option<u8>,
    /// How log frames and checkpointed states are compressed when written:
    /// `"zstd"` (the default) or `"lz4"`, what builds before it wrote, for a
    /// rolling upgrade: pin `"lz4"` until every node runs a build that reads
    /// zstd, then lift the pin. Every build since reads both.
    pub compression: Option<String>,
    /// On Redis, write history rows of one account and 10 s slot as one
    /// group member (the default). Builds before groups can't read them: for
    /// a rolling upgrade from one, `false` until every node reads groups.
    pub history_groups: Option<bool>,
}

/// The server's executors by default: half the cores, at least one. The other
/// half serves HTTP (one worker per core) and, on most deployments, shares the
/// machine with Redis. On this 2-core machine one executor against two carried
/// the closed-loop load test at 21,800 and 24,000 transfers/s against 17,700
/// and 18,800 (server 44 and 38 µs of CPU per transfer against 61 and 56):
/// every transfer stays inside one executor, so its credit rides its debit's
/// batch and the executors' appends are one call, one fsync, instead of two
/// (README, "Performance"). The engine library's own default
/// (`RuntimeConfig::default`, one per core) is for an engine with the machine
/// to itself.
pub fn default_executors(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// The whole TOML file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerFile,
    pub engine: EngineFile,
    pub policy: Option<Policy>,
    pub integrations: Integrations,
}

/// `[integrations]`: the real services behind deposits, payouts and messages.
/// A section left out disables its feature outside `--dev` (503 UNAVAILABLE naming
/// the setting); see `crate::integrations`. Secrets and addresses can also come
/// from env vars (`apply_env`), which win over the file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Integrations {
    pub smtp: Option<SmtpSettings>,
    pub sms: Option<SmsSettings>,
    /// The card processor that charges deposits.
    pub processor: Option<ProcessorSettings>,
    /// The payout processor that pays withdrawals out.
    pub payouts: Option<ProcessorSettings>,
    /// Retries and limits of email and SMS delivery.
    pub delivery: DeliverySettings,
    /// The language of accounts registered without one: `zh-CN` (default) or
    /// `en`. Each account's own `locale` chooses its messages' language.
    pub locale: Option<String>,
}

/// `[integrations.delivery]`: how the outbox worker retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Attempts before a message is a dead letter (default 8).
    pub max_attempts: u32,
    /// The wait after the first failure, doubling after each (default 1000 ms,
    /// capped at 10 minutes).
    pub backoff_ms: u64,
    /// Messages one recipient may get per hour (default 10): no SMS pumping.
    pub per_recipient_per_hour: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            max_attempts: 8,
            backoff_ms: 1000,
            per_recipient_per_hour: 10,
        }
    }
}

/// `[integrations.smtp]`: email through an SMTP relay (lettre).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    /// Also `OKPAY_SMTP_PASSWORD`.
    #[serde(default)]
    pub password: Option<Redacted>,
    /// The sender, e.g. `OKPay <no-reply@okpay.example>`.
    #[serde(default = "default_from")]
    pub from: String,
}

fn default_from() -> String {
    "OKPay <no-reply@okpay.localhost>".into()
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: only for a relay on the same host or in tests.
    None,
}

/// `[integrations.sms]`: SMS through an HTTP gateway (a POST per message).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    pub url: String,
    /// `form` (`To`, `From`, `Body` form fields) or `json` (`{"to","from","body"}`).
    #[serde(default)]
    pub encoding: SmsEncoding,
    /// With a username, HTTP basic auth (username, token); without, a bearer token.
    #[serde(default)]
    pub username: Option<String>,
    /// Also `OKPAY_SMS_TOKEN`.
    #[serde(default)]
    pub token: Option<Redacted>,
    /// The sender id or number.
    #[serde(default)]
    pub from: Option<String>,
}

/// How an SMS request body is encoded.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmsEncoding {
    #[default]
    Form,
    Json,
}

/// `[integrations.processor]` / `[integrations.payouts]`: a payment processor's
/// HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorSettings {
    /// The API base URL.
    pub url: String,
    /// Sent as a bearer token. Also `OKPAY_PROCESSOR_API_KEY` / `OKPAY_PAYOUTS_API_KEY`.
    #[serde(default)]
    pub api_key: Option<Redacted>,
    /// The HMAC-SHA256 key of the processor's signed callbacks. Also
    /// `OKPAY_PROCESSOR_CALLBACK_SECRET` / `OKPAY_PAYOUTS_CALLBACK_SECRET`.
    #[serde(default)]
    pub callback_secret: Option<Redacted>,
    /// Per-request timeout (default 10 s).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Card processor: business days a bank-card deposit takes to arrive
    /// (`expected_at`; default 1). Credit cards settle at once.
    #[serde(default)]
    pub bank_card_days: Option<u32>,
}

impl ProcessorSettings {
    fn at(url: String) -> Self {
        ProcessorSettings {
            url,
            api_key: None,
            callback_secret: None,
            timeout_ms: None,
            bank_card_days: None,
        }
    }
}

impl Integrations {
    /// The locale new accounts get when registration names none (`locale`).
    pub fn default_locale(&self) -> anyhow::Result<Locale> {
        match self.locale.as_deref() {
            None => Ok(Locale::default()),
            Some(tag) => Locale::parse(tag).ok_or_else(|| {
                anyhow::anyhow!("integrations.locale: {tag:?} is not a locale; use zh-CN or en")
            }),
        }
    }

    /// Layers env vars (looked up with `var`) over the file: addresses create a
    /// section, secrets fill one in. Empty addresses disable a section.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(host) = var("OKPAY_SMTP_HOST") {
            match &mut self.smtp {
                Some(s) => s.host = host,
                None => {
                    self.smtp = Some(SmtpSettings {
                        host,
                        port: None,
                        security: SmtpSecurity::default(),
                        username: None,
                        password: None,
                        from: default_from(),
                    })
                }
            }
        }
        if let Some(s) = &mut self.smtp {
            if let Some(v) = var("OKPAY_SMTP_PORT").and_then(|p| p.parse().ok()) {
                s.port = Some(v);
            }
            if let Some(v) = var("OKPAY_SMTP_USERNAME") {
                s.username = Some(v);
            }
            if let Some(v) = var("OKPAY_SMTP_PASSWORD") {
                s.password = Some(Redacted(v));
            }
            if let Some(v) = var("OKPAY_SMTP_FROM") {
                s.from = v;
            }
        }
        if let Some(url) = var("OKPAY_SMS_URL") {
            match &mut self.sms {
                Some(s) => s.url = url,
                None => {
                    self.sms = Some(SmsSettings {
                        url,
                        encoding: SmsEncoding::default(),
                        username: None,
                        token: None,
                        from: None,
                    })
                }
            }
        }
        if let Some(s) = &mut self.sms {
            if let Some(v) = var("OKPAY_SMS_USERNAME") {
                s.username = Some(v);
            }
            if let Some(v) = var("OKPAY_SMS_TOKEN") {
                s.token = Some(Redacted(v));
            }
        }
        for (slot, prefix) in [
            (&mut self.processor, "OKPAY_PROCESSOR"),
            (&mut self.payouts, "OKPAY_PAYOUTS"),
        ] {
            if let Some(url) = var(&format!("{prefix}_URL")) {
                match slot {
                    Some(p) => p.url = url,
                    None => *slot = Some(ProcessorSettings::at(url)),
                }
            }
            if let Some(p) = slot {
                if let Some(v) = var(&format!("{prefix}_API_KEY")) {
                    p.api_key = Some(Redacted(v));
                }
                if let Some(v) = var(&format!("{prefix}_CALLBACK_SECRET")) {
                    p.callback_secret = Some(Redacted(v));
                }
            }
        }
        // A section with an empty address is no section.
        self.smtp = self.smtp.take().filter(|s| !s.host.trim().is_empty());
        self.sms = self.sms.take().filter(|s| !s.url.trim().is_empty());
        self.processor = self.processor.take().filter(|p| !p.url.trim().is_empty());
        self.payouts = self.payouts.take().filter(|p| !p.url.trim().is_empty());
    }
}

/// A secret setting: `Debug` never prints it, so logging the settings is safe.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub redis_url: Option<String>,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub dev: bool,
    pub payout_delay: Duration,
    pub strict_durability: bool,
    pub policy: Policy,
    pub runtime: RuntimeConfig,
    /// Largest JSON body accepted (413 beyond).
    pub max_json_body_bytes: usize,
    /// Concurrent HTTP connections per worker before new ones wait.
    pub max_connections: usize,
    /// Connections the kernel queues for `accept` (the listen backlog). Beyond
    /// it a client's connection attempt is dropped and retried a second later, so
    /// a burst of new connections (a load balancer's pool warming up, every
    /// phone reconnecting after a deploy) waits a whole second; the default of
    /// 2,048 is actix's own (`std`'s `bind` leaves 128).
    pub listen_backlog: u32,
    pub session_ttl: Duration,
    /// Frames that may wait for one websocket client before it is disconnected.
    pub ws_queue: usize,
    /// Open websocket connections before new ones get 503.
    pub ws_max_connections: usize,
    /// Open user websocket streams from one client address before more get 429
    /// (default [`crate::stream::MAX_PER_IP`]; the load test raises it, since all
    /// its subscribers come from 127.0.0.1).
    pub ws_max_per_ip: usize,
    pub ws_heartbeat: Duration,
    /// HTTP worker threads (default: one per core).
    pub workers: usize,
    pub log: String,
    pub log_json: bool,
    /// The key for personal data at rest, as configured (hex or base64); see
    /// [`crate::crypto`] and `resolve_pii_key` in `lib.rs` for what happens when unset.
    pub kyc_key: Option<Redacted>,
    /// Failed logins from one client IP within `login_failure_window` before
    /// further attempts get 429 (successful logins never count).
    pub login_failures_per_ip: u32,
    /// Failed logins for one login name within the window before 429.
    pub login_failures_per_login: u32,
    pub login_failure_window: Duration,
    /// The real services (see `crate::integrations`).
    pub integrations: Integrations,
    /// Peers whose `X-Forwarded-For` is honoured (`client_ip.rs`).
    pub trusted_proxies: Vec<crate::client_ip::Cidr>,
    /// Password hashes computed at once (`passwords.rs`).
    pub hash_concurrency: usize,
    /// KYC uploads read at once (`routes/kyc.rs`).
    pub kyc_uploads: usize,
    /// This node's name among the nodes sharing one Redis (`--node-id`); also
    /// in `runtime.cluster`, which puts the engine in cluster mode.
    pub node_id: Option<NodeId>,
    /// Alerts kept in the operators' store index (`alert_log.rs`); older ones are
    /// trimmed (each account keeps its own recent alerts regardless).
    pub alerts_kept: usize,
    /// The engine's clock, which is the gateway's too (`clock.rs`); tests inject one.
    pub clock: crate::clock::ClockSetting,
    /// `WAIT` after shard-log appends on Redis (`None`: off).
    pub redis_wait: Option<okpay_engine::store::redis_config::ReplicaWait>,
    /// On Redis, history rows as group members (`[engine] history_groups`).
    pub history_groups: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::resolve(Cli::default(), FileConfig::default())
    }
}

impl Settings {
    /// Parses the command line (and env), reads the TOML file if one is named,
    /// and layers everything.
    pub fn load() -> anyhow::Result<Settings> {
        Settings::load_with(Cli::parse())
    }

    /// As [`Settings::load`], from an already parsed command line.
    pub fn load_with(cli: Cli) -> anyhow::Result<Settings> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        if let Some(list) = cli
            .trusted_proxies
            .as_ref()
            .or(file.server.trusted_proxies.as_ref())
        {
            crate::client_ip::Cidr::try_parse_list(list)
                .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
        }
        if let Some(id) = cli.node_id.as_ref().or(file.server.node_id.as_ref()) {
            NodeId::parse(id).map_err(|e| anyhow::anyhow!("--node-id {id:?}: {e}"))?;
            // Nodes share shards through Redis; an embedded store is one process's.
            if cli.redis_url.is_none() && file.server.redis_url.is_none() {
                anyhow::bail!("--node-id needs --redis: nodes share their shards through Redis");
            }
        }
        if let Some(n) = file.engine.events_format {
            if EventsFormat::from_number(n).is_none() {
                anyhow::bail!("[engine] events_format = {n}: this build writes format 1 or 2");
            }
        }
        if let Some(name) = file.engine.compression.as_deref() {
            if Compression::from_name(name).is_none() {
                anyhow::bail!(
                    "[engine] compression = {name:?}: this build writes \"zstd\" or \"lz4\""
                );
            }
        }
        let mut settings = Settings::resolve(cli, file);
        settings
            .integrations
            .apply_env(|name| std::env::var(name).ok());
        settings
            .policy
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid policy: {e}"))?;
        Ok(settings)
    }

    /// Layers flags/env (`cli`) over the file over the defaults.
    pub fn resolve(cli: Cli, file: FileConfig) -> Settings {
        let s = file.server;
        let e = file.engine;
        let history_groups = e.history_groups;
        let dev = cli.dev.or(s.dev).unwrap_or(false);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut runtime = RuntimeConfig {
            executors: default_executors(cores),
            ..RuntimeConfig::default()
        };
        if let Some(v) = e.executors {
            runtime.executors = v.max(1);
        }
        if let Some(v) = e.shards {
            runtime.shards = v.max(1);
        }
        if let Some(v) = e.mailbox_capacity {
            runtime.mailbox_capacity = v.max(1);
        }
        if let Some(v) = e.inbox_capacity {
            runtime.inbox_capacity = v.max(1);
        }
        if let Some(v) = e.max_batch {
            runtime.max_batch = v.max(1);
        }
        if let Some(v) = e.idle_after_s {
            runtime.idle_after = Duration::from_secs(v);
        }
        if let Some(v) = e.checkpoint_every {
            runtime.checkpoint_every = v.max(1);
        }
        if let Some(v) = e.blocking_threads {
            runtime.blocking_threads = v.max(1);
        }
        // Checked by `load_with`.
        if let Some(f) = e.events_format.and_then(EventsFormat::from_number) {
            runtime.events_format = f;
        }
        if let Some(c) = e.compression.as_deref().and_then(Compression::from_name) {
            runtime.compression = c;
        }
        // Checked by `load_with`; here a bad id (only from tests) means no cluster.
        let node_id = cli
            .node_id
            .or(s.node_id.clone())
            .and_then(|id| NodeId::parse(&id).ok());
        runtime.cluster = node_id.clone().map(ClusterConfig::new);
        Settings {
            listen: cli
                .listen
                .or(s.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            redis_url: cli.redis_url.or(s.redis_url),
            data_dir: cli
                .data_dir
                .or(s.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            admin_token: cli.admin_token.or(s.admin_token).filter(|t| !t.is_empty()),
            dev,
            payout_delay: Duration::from_millis(
                cli.payout_delay_ms.or(s.payout_delay_ms).unwrap_or(1000),
            ),
            strict_durability: cli
                .strict_durability
                .or(s.strict_durability)
                .unwrap_or(false),
            policy: file.policy.unwrap_or_default(),
            runtime,
            max_json_body_bytes: s.max_json_body_bytes.unwrap_or(64 * 1024),
            max_connections: s.max_connections.unwrap_or(25_000),
            listen_backlog: s.listen_backlog.unwrap_or(2048).clamp(1, 65_535),
            session_ttl: Duration::from_secs(s.session_ttl_s.unwrap_or(30 * 86_400)),
            alerts_kept: s.alerts_kept.unwrap_or(10_000).max(1),
            ws_queue: s.ws_queue.unwrap_or(256),
            ws_max_connections: s.ws_max_connections.unwrap_or(10_000),
            ws_max_per_ip: s.ws_max_per_ip.unwrap_or(crate::stream::MAX_PER_IP).max(1),
            ws_heartbeat: Duration::from_secs(s.ws_heartbeat_s.unwrap_or(15)),
            workers: s.workers.unwrap_or(cores).max(1),
            log: cli.log.unwrap_or_else(|| "info".into()),
            log_json: cli.log_json.unwrap_or(false),
            kyc_key: cli
                .kyc_key
                .or(s.kyc_key)
                .filter(|k| !k.trim().is_empty())
                .map(Redacted),
            login_failures_per_ip: s.login_failures_per_ip.unwrap_or(20).max(1),
            login_failures_per_login: s.login_failures_per_login.unwrap_or(10).max(1),
            login_failure_window: Duration::from_secs(s.login_failure_window_s.unwrap_or(300)),
            integrations: {
                let mut i = file.integrations;
                // Normalises empty addresses away; env vars are layered in `load`.
                i.apply_env(|_| None);
                i
            },
            trusted_proxies: cli
                .trusted_proxies
                .or(s.trusted_proxies)
                .map(|list| crate::client_ip::Cidr::parse_list(&list))
                .unwrap_or_default(),
            hash_concurrency: cli
                .hash_concurrency
                .or(s.hash_concurrency)
                .unwrap_or(2 * cores)
                .max(1),
            kyc_uploads: cli.kyc_uploads.or(s.kyc_uploads).unwrap_or(4).max(1),
            node_id,
            clock: crate::clock::ClockSetting::default(),
            redis_wait: cli
                .redis_wait_replicas
                .or(s.redis_wait_replicas)
                .filter(|&n| n > 0)
                .map(|replicas| okpay_engine::store::redis_config::ReplicaWait {
                    replicas,
                    // Below the store's 2 s response timeout, which bounds the
                    // round trip the WAIT rides on.
                    timeout: Duration::from_millis(
                        cli.redis_wait_timeout_ms
                            .or(s.redis_wait_timeout_ms)
                            .unwrap_or(500)
                            .clamp(1, 1500),
                    ),
                }),
            history_groups: history_groups.unwrap_or(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_takes_half_the_cores_for_executors_unless_told() {
        assert_eq!(default_executors(1), 1);
        assert_eq!(default_executors(2), 1);
        assert_eq!(default_executors(3), 1);
        assert_eq!(default_executors(8), 4);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let s = Settings::resolve(Cli::default(), FileConfig::default());
        assert_eq!(s.runtime.executors, default_executors(cores));
        let file: FileConfig = toml::from_str("[engine]\nexecutors = 3\n").unwrap();
        assert_eq!(Settings::resolve(Cli::default(), file).runtime.executors, 3);
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            data_dir = "/tmp/from-file"
            payout_delay_ms = 5

            [policy.tier0]
            single_max = "100"
            daily_out_max = "200"
            withdrawals = false
            "#,
        )
        .unwrap();
        let cli = Cli {
            listen: Some("127.0.0.1:9001".into()),
            ..Cli::default()
        };
        let s = Settings::resolve(cli, file);
        assert_eq!(s.listen, "127.0.0.1:9001");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(s.payout_delay, Duration::from_millis(5));
        assert_eq!(s.policy.tier0.single_max, rust_decimal::Decimal::from(100));
        // Untouched sections keep the contract's defaults.
        assert_eq!(s.policy.tier1, Policy::default().tier1);
    }

    #[test]
    fn a_node_id_puts_the_engine_in_cluster_mode_and_is_checked() {
        assert!(Settings::default().node_id.is_none());
        assert!(Settings::default().runtime.cluster.is_none());
        let cli = |id: &str, redis: bool| Cli {
            node_id: Some(id.into()),
            redis_url: redis.then(|| "redis://127.0.0.1:1/".into()),
            ..Cli::default()
        };
        let s = Settings::load_with(cli("okpay-2", true)).unwrap();
        assert_eq!(s.node_id.as_ref().map(NodeId::as_str), Some("okpay-2"));
        assert_eq!(
            s.runtime.cluster.map(|c| c.node),
            NodeId::parse("okpay-2").ok()
        );
        assert!(Settings::load_with(cli("two words", true)).is_err());
        assert!(Settings::load_with(cli("okpay-2", false)).is_err());
    }

    #[test]
    fn the_engine_section_sets_the_runtime() {
        let file: FileConfig = toml::from_str(
            "[engine]\ncheckpoint_every = 100\nblocking_threads = 3\nmax_batch = 0\n",
        )
        .unwrap();
        let s = Settings::resolve(Cli::default(), file);
        assert_eq!(s.runtime.checkpoint_every, 100);
        assert_eq!(s.runtime.blocking_threads, 3);
        assert_eq!(
            s.runtime.max_batch, 1,
            "a zero is raised to the least that works"
        );
        let s = Settings::resolve(Cli::default(), FileConfig::default());
        assert_eq!(s.runtime.blocking_threads, 2, "the documented default");
        assert_eq!(s.runtime.events_format, EventsFormat::V2, "the default");
        assert_eq!(s.runtime.compression, Compression::Zstd, "the default");
    }

    #[test]
    fn the_events_format_can_be_pinned_for_a_rolling_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = dir.path().join("okpay.toml");
            std::fs::write(&path, text).unwrap();
            Settings::load_with(Cli {
                config: Some(path),
                ..Cli::default()
            })
        };
        for (line, format, compression) in [
            ("events_format = 1", EventsFormat::V1, Compression::Zstd),
            ("events_format = 2", EventsFormat::V2, Compression::Zstd),
            ("compression = \"lz4\"", EventsFormat::V2, Compression::Lz4),
            (
                "compression = \"zstd\"",
                EventsFormat::V2,
                Compression::Zstd,
            ),
        ] {
            let s = load(&format!("[engine]\n{line}\n")).unwrap();
            assert_eq!(s.runtime.events_format, format, "{line}");
            assert_eq!(s.runtime.compression, compression, "{line}");
        }
        for line in ["events_format = 3", "compression = \"gzip\""] {
            let err = load(&format!("[engine]\n{line}\n")).unwrap_err();
            assert!(err.to_string().contains(line), "{err}");
        }
        assert!(load("").unwrap().history_groups, "groups by default");
        assert!(
            !load("[engine]\nhistory_groups = false\n")
                .unwrap()
                .history_groups
        );
    }

    /// The README's configuration examples are what `--config` accepts: every
    /// ```toml block of it parses with this type (unknown keys are refused).
    #[test]
    fn the_readmes_config_examples_parse() {
        let readme = include_str!("../../README.md");
        let blocks: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap_or_default())
            .collect();
        assert!(blocks.len() >= 2, "the README's examples are found");
        for block in blocks {
            if let Err(e) = toml::from_str::<FileConfig>(block) {
                panic!("a README example does not parse: {e}\n{block}");
            }
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        assert!(toml::from_str::<FileConfig>("[server]\nlisten_on = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[policy]\nvelocity = 3").is_err());
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::default();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(!s.dev);
        assert_eq!(s.payout_delay, Duration::from_millis(1000));
        assert!(s.admin_token.is_none());
        assert_eq!(s.login_failures_per_ip, 20);
        assert_eq!(s.login_failures_per_login, 10);
        assert_eq!(s.login_failure_window, Duration::from_secs(300));
    }

    #[test]
    fn integrations_come_from_the_file_and_env_vars_with_secrets_redacted() {
        let file: FileConfig = toml::from_str(
            r#"
            [integrations.smtp]
            host = "smtp.example.com"
            username = "okpay"
            password = "file-secret"

            [integrations.processor]
            url = "https://processor.example.com"

            [integrations.payouts]
            url = ""
            "#,
        )
        .unwrap();
        let mut s = Settings::resolve(Cli::default(), file);
        assert!(
            s.integrations.payouts.is_none(),
            "an empty url is no section"
        );
        assert!(s.integrations.sms.is_none());
        s.integrations.apply_env(|name| match name {
            "OKPAY_SMTP_PASSWORD" => Some("env-secret".into()),
            "OKPAY_SMS_URL" => Some("http://127.0.0.1:9/sms".into()),
            "OKPAY_SMS_TOKEN" => Some("sms-token".into()),
            "OKPAY_PROCESSOR_CALLBACK_SECRET" => Some("whsec".into()),
            _ => None,
        });
        let smtp = s.integrations.smtp.as_ref().unwrap();
        assert_eq!(smtp.password, Some(Redacted("env-secret".into())));
        assert_eq!(smtp.security, SmtpSecurity::Starttls);
        let sms = s.integrations.sms.as_ref().unwrap();
        assert_eq!(sms.url, "http://127.0.0.1:9/sms");
        let p = s.integrations.processor.as_ref().unwrap();
        assert_eq!(p.callback_secret, Some(Redacted("whsec".into())));
        let debug = format!("{s:?}");
        for secret in ["env-secret", "file-secret", "sms-token", "whsec"] {
            assert!(!debug.contains(secret), "{secret} shows in {debug}");
        }
        assert!(
            toml::from_str::<FileConfig>("[integrations.smtp]\nhost = \"h\"\nhots = 1").is_err()
        );
    }

    #[test]
    fn the_pii_key_never_shows_in_debug_output() {
        let cli = Cli {
            kyc_key: Some("00".repeat(32)),
            ..Cli::default()
        };
        let s = Settings::resolve(cli, FileConfig::default());
        assert_eq!(s.kyc_key, Some(Redacted("00".repeat(32))));
        assert!(!format!("{s:?}").contains(&"00".repeat(32)));
    }
}
