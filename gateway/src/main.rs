//! `okpay`: the OKPay server. Flags and env vars are those of API.md; see
//! `okpay --help`.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    keep_freed_memory();
    use clap::Parser as _;
    let cli = okpay_gateway::config::Cli::parse();
    let command = cli.command.clone();
    let settings = okpay_gateway::config::Settings::load_with(cli)?;
    if let Some(command) = command {
        return okpay_gateway::operators::run_command(command, &settings).await;
    }
    okpay_gateway::telemetry::init_logs(&settings.log, settings.log_json);
    let listener = std::net::TcpListener::bind(&settings.listen)?;
    okpay_gateway::run(listener, settings, std::future::pending()).await
}

/// Tells mimalloc to keep the memory it frees instead of handing it back to the
/// OS after 10 ms (its `purge_delay`): with transparent huge pages every purged
/// page comes back as a freshly zeroed 2 MiB page, a sixth of the engine's CPU
/// under load (`perf`: `clear_page_erms` under `mi_page_fresh_alloc`).
#[allow(unsafe_code)] // one FFI call with two integers
fn keep_freed_memory() {
    // An operator's `MIMALLOC_PURGE_DELAY` (mimalloc reads it itself) wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // 15 is `mi_option_purge_delay` in mimalloc 2 and 3 (the sys crate names no
    // constant for it); -1 means never purge.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) }
}
