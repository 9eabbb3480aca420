//! `loadtest`: the command line around `okpay_loadtest::run`. Parses the flags,
//! runs, prints the summary, writes `--report`/`--plot`, and exits non-zero when
//! an end check failed (2) or the run could not be set up (1).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mimalloc::MiMalloc;
use okpay_loadtest::schedule::parse_duration;
use okpay_loadtest::setup::KycMode;
use okpay_loadtest::{money, plot, Config, Rate};

/// The server's allocator for the harness too: it shares the cores with the
/// server it measures, and glibc's malloc/free were ~7% of its CPU under load.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Baseline {
    /// One Lua script per transfer on Redis (needs --redis).
    RedisLua,
}

/// Load-tests an OKPay server on this machine: transfers between funded users,
/// open-loop (--rate N) or closed-loop (--rate max), with websocket delivery
/// latency and end-of-run money checks.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
struct Cli {
    /// The server's base URL; loopback addresses only.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's --admin-token (KYC approval and the ledger check).
    #[arg(long, env = "OKPAY_ADMIN_TOKEN", default_value = "")]
    admin_token: String,
    /// Users to create and fund.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Length of the load phase: 30s, 2m, 1m30s...
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Transfers per second (open loop, latency corrected for coordinated
    /// omission), or `max` (closed loop over --connections workers).
    #[arg(long, default_value = "max")]
    rate: Rate,
    /// Closed loop: workers; open loop: the cap on outstanding requests.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Accounts that keep a /v1/stream websocket open (delivery latency).
    #[arg(long, default_value_t = 200)]
    ws_subscribers: usize,
    /// Zipf exponent of the recipients (0 = uniform; 1 = a few hot accounts).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Seed of the traffic (who sends what to whom); random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Deposit per account, e.g. 1000.00 (default: enough for the run).
    #[arg(long)]
    fund: Option<String>,
    /// Raise the accounts to tier 1 with the admin KYC route.
    #[arg(long, value_enum, default_value = "auto")]
    kyc: KycMode,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// How long in-flight requests may finish after --duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain: Duration,
    /// The start of the load left out of the steady-state latency line ("after
    /// warm-up"); every other figure counts the whole load.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Acknowledged transfers checked in both parties' histories, at most.
    #[arg(long, default_value_t = 200)]
    check_sample: usize,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write a latency-over-time SVG here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run the same workload against a baseline instead of the API.
    #[arg(long, value_enum, requires = "redis")]
    baseline: Option<Baseline>,
    /// The baseline's Redis (loopback only), e.g. redis://127.0.0.1:6379/.
    #[arg(long)]
    redis: Option<String>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// The server's process id (on this machine): report its CPU per transfer.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Another process (another node, redis-server): report its CPU per
    /// transfer during the load. Repeatable.
    #[arg(long)]
    node_pid: Vec<u32>,
    /// The servers' Redis (loopback): report its commands, network and AOF
    /// bytes per transfer during the load.
    #[arg(long)]
    redis_info: Option<String>,
    /// A node's /metrics URL: report its okpay_remote_* counters (cross-node
    /// hops) per transfer, summed over the nodes. Repeatable.
    #[arg(long)]
    metrics_url: Vec<String>,
    /// Threads of the harness's runtime. 1 (a single-threaded runtime) costs
    /// the least CPU per transfer; more only helps when the harness itself
    /// saturates a core (see `cpu µs/transfer harness`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

fn config(cli: &Cli) -> anyhow::Result<Config> {
    let mut c = Config::new(cli.url.clone(), cli.admin_token.clone());
    c.accounts = cli.accounts;
    c.duration = cli.duration;
    c.rate = cli.rate;
    c.connections = cli.connections;
    c.ws_subscribers = cli.ws_subscribers;
    c.zipf = cli.zipf;
    c.seed = cli.seed.unwrap_or_else(rand::random);
    c.fund_per_account_minor = cli.fund.as_deref().map(money::parse_minor).transpose()?;
    c.kyc = cli.kyc;
    c.request_timeout = cli.request_timeout;
    c.drain = cli.drain;
    c.warmup = cli.warmup;
    c.check_sample = cli.check_sample;
    c.progress = !cli.quiet;
    c.server_pid = cli.server_pid;
    c.probes = okpay_loadtest::probes::Probes {
        pids: cli.node_pid.clone(),
        redis: cli.redis_info.clone(),
        metrics: cli.metrics_url.clone(),
    };
    c.redis_baseline = match cli.baseline {
        Some(Baseline::RedisLua) => cli.redis.clone(),
        None => None,
    };
    Ok(c)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    eprintln!("seed {}", config.seed);
    // One thread by default: the harness needs a few microseconds per transfer,
    // a fraction of one core at the rates this machine reaches, and a
    // multi-threaded runtime on the cores the server needs spends more waking
    // and parking its workers than it gains (README, "The harness's own CPU").
    let mut builder = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(usize::from(cli.threads));
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match runtime.block_on(okpay_loadtest::run(config)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    println!("{}", report.table());
    if let Some(path) = &cli.report {
        if let Err(e) = report.write_json(path) {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    }
    if let Some(path) = &cli.plot {
        let title = format!(
            "{} transfer latency (rate {}, {} connections)",
            report.params.target, report.params.rate, report.params.connections
        );
        if let Err(e) = plot::latency_svg(path, &title, &report.series) {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        eprintln!("end checks FAILED");
        ExitCode::from(2)
    }
}
