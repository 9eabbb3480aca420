//! `okpay`: the OKPay server. Flags and env vars are those of API.md; see
//! `okpay --help`.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    okpay_gateway::allocator::keep_freed_memory();
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
