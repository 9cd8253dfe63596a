//! `ferrostack`: the one binary. The only place that picks concrete
//! implementations (database URL, drivers) from configuration.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferro_config::Config;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "ferrostack", version, about = "OpenStack IaaS in one binary")]
struct Cli {
    /// TOML configuration file (every key can also be set with FERROSTACK__SECTION__KEY).
    #[arg(long, global = true, env = "FERROSTACK_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, keys, clouds.yaml, openrc).
    #[arg(long, global = true, env = "FERROSTACK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH, postgres://... or mysql://...
    #[arg(long, global = true, env = "FERROSTACK_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process (all-in-one).
    Serve {
        /// Listen address, e.g. 127.0.0.1:8000.
        #[arg(long)]
        listen: Option<String>,
        /// Admin password for bootstrap (else generated once and stored).
        #[arg(long, env = "FERROSTACK_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// Roles of this process: `controller` (APIs, database, conductor,
        /// scheduler), `compute` (this host's guests), `network` (this host's
        /// bridges, DHCP, metadata and security groups), `volume` (this
        /// host's volume backend), comma-separated; default all.
        /// Separate processes need a shared bus (`[bus] url`).
        #[arg(long, default_value = "all")]
        roles: String,
    },
    /// Database schema management.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Create or repair the default domain, roles, admin, region and catalog (idempotent).
    Bootstrap {
        #[arg(long, env = "FERROSTACK_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
    },
    /// Fernet key repository management.
    Fernet {
        #[command(subcommand)]
        command: FernetCommand,
    },
    /// Diagnostics.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply all pending migrations.
    Upgrade,
}

#[derive(Subcommand)]
enum FernetCommand {
    /// Create the key repository if it holds no keys.
    Setup,
    /// Promote the staged key to primary and add a new staged key.
    Rotate,
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Time bcrypt at the configured cost (the password-auth bound).
    BcryptBench {
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg =
        Config::load(cli.config.as_deref(), std::env::vars()).context("loading configuration")?;
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = Some(d.clone());
    }
    if let Some(u) = &cli.database_url {
        cfg.database.url = Some(u.clone());
    }
    Ok(cfg)
}

/// Logs go to stderr through a background writer thread, so a request never
/// waits on the log's I/O (lines are not dropped: the writer applies
/// back-pressure if it falls far behind).
fn init_logging(cfg: &Config) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let base = filter.to_string();
    // The filter can be swapped while running (Block Storage `set-log`).
    macro_rules! install {
        ($b:expr) => {{
            let b = $b.with_filter_reloading();
            let handle = b.reload_handle();
            b.init();
            ferro_common::logctl::install(base, move |d| {
                let f = EnvFilter::try_new(d).map_err(|e| e.to_string())?;
                handle.reload(f).map_err(|e| e.to_string())
            });
        }};
    }
    if cfg.log.format == "json" {
        install!(
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_writer(writer)
        );
    } else {
        install!(
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(writer)
        );
    }
    guard
}

/// A start-up failure says what is wrong, not the API's generic 500 text.
fn startup_error(e: ferro_common::Error) -> anyhow::Error {
    match e {
        ferro_common::Error::Internal { internal }
        | ferro_common::Error::Unavailable { internal } => {
            anyhow::anyhow!("{internal}")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut cfg = load_config(&cli)?;
    let _log_guard = init_logging(&cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let exit_code = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let exit = exit_code.clone();
    let r = rt.block_on(async move {
        match cli.command {
            Command::Serve {
                listen,
                admin_password,
                roles,
            } => {
                let roles = ferro_api_server::Roles::parse(&roles).map_err(anyhow::Error::msg)?;
                ferro_privsep::bind_to_helper().map_err(anyhow::Error::msg)?;
                if let Some(l) = listen {
                    cfg.api.listen = l;
                }
                if admin_password.is_some() {
                    cfg.identity.admin_password = admin_password;
                }
                if ferro_privsep::separates(&cfg) {
                    // Root stays here, in the helper; the service runs as
                    // its own user and ends this process with its status.
                    let code = ferro_privsep::supervise(&cfg)
                        .await
                        .map_err(anyhow::Error::msg)?;
                    exit_code.store(code, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                if !roles.controller {
                    return serve_agents(cfg, roles).await;
                }
                serve(cfg, roles).await
            }
            Command::Db {
                command: DbCommand::Upgrade,
            } => {
                std::fs::create_dir_all(cfg.data_dir())?;
                let db = ferro_db::Db::connect(&cfg.database_url(), 1).await?;
                db.upgrade().await?;
                for m in db.applied_migrations().await? {
                    println!("applied: {m}");
                }
                Ok(())
            }
            Command::Bootstrap { admin_password } => {
                if admin_password.is_some() {
                    cfg.identity.admin_password = admin_password;
                }
                let app = ferro_api_server::App::start(cfg)
                    .await
                    .map_err(startup_error)?;
                println!("bootstrap complete");
                print_report(&app);
                Ok(())
            }
            Command::Fernet { command } => {
                let repo = cfg.key_repository();
                match command {
                    FernetCommand::Setup => ferro_auth::fernet_keys::setup(&repo)?,
                    FernetCommand::Rotate => {
                        ferro_auth::fernet_keys::setup(&repo)?;
                        ferro_auth::fernet_keys::rotate(&repo, cfg.fernet_tokens.max_active_keys)?;
                    }
                }
                let keys = ferro_auth::fernet_keys::load(&repo)?;
                println!("{}: {} keys", repo.display(), keys.len());
                Ok(())
            }
            Command::Debug {
                command: DebugCommand::BcryptBench { rounds },
            } => {
                let cost = cfg.identity.password_hash_rounds;
                let hash = bcrypt::hash("warmup", cost)?;
                let t = std::time::Instant::now();
                for _ in 0..rounds {
                    let _ = bcrypt::verify("warmup", &hash)?;
                }
                let per = t.elapsed().as_secs_f64() / f64::from(rounds.max(1));
                println!("bcrypt cost {cost}: {:.1} ms per verify", per * 1000.0);
                Ok(())
            }
        }
    });
    let code = exit.load(std::sync::atomic::Ordering::Relaxed);
    if r.is_ok() && code != 0 {
        drop(rt);
        drop(_log_guard);
        std::process::exit(code);
    }
    r
}

fn print_report(app: &ferro_api_server::App) {
    println!("data directory: {}", app.cfg.data_dir().display());
    println!(
        "clouds.yaml:    {} (cloud: ferrostack)",
        app.report.clouds_yaml.display()
    );
    println!("openrc:         {}", app.report.openrc.display());
    if let Some(u) = &app.report.user_clouds_yaml {
        println!(
            "also written:   {} (so OS_CLOUD=ferrostack works from anywhere)",
            u.display()
        );
    }
    println!(
        "admin password: {}",
        app.report.admin_password_file.display()
    );
}

/// `serve --roles compute,network,volume` (any of them): this host's
/// agents only, on the shared bus.
async fn serve_agents(cfg: Config, roles: ferro_api_server::Roles) -> anyhow::Result<()> {
    if cfg.bus.url.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!(
            "--roles compute, network or volume without a controller in this process needs a shared bus: set [bus] url (FERROSTACK__BUS__URL)"
        );
    }
    let bus = ferro_api_server::wiring::bus(&cfg)
        .await
        .map_err(startup_error)?;
    if roles.network {
        match ferro_api_server::wiring::start_network_agent(&cfg, bus.clone())
            .await
            .map_err(startup_error)?
        {
            Some(agent) => {
                // Metadata answers come from the controllers over the bus.
                ferro_api_server::wiring::metadata_over_bus(&agent, bus.clone());
                println!(
                    "network agent: {} (driver {})",
                    agent.host,
                    agent.driver.name()
                );
            }
            None => println!(
                "network agent: none (network.host_net_driver = {}: no data plane on this host)",
                cfg.host_net_driver()
            ),
        }
    }
    if roles.volume {
        let agent = ferro_api_server::wiring::start_volume_agent(&cfg, bus.clone())
            .await
            .map_err(startup_error)?;
        println!(
            "volume agent: {} (driver {})",
            agent.host,
            agent.driver.name()
        );
    }
    if roles.compute {
        let agents = ferro_api_server::wiring::start_agents(&cfg, bus)
            .await
            .map_err(startup_error)?;
        for a in &agents {
            println!("compute agent: {} (driver {})", a.host, a.driver.name());
        }
        tracing::info!(hosts = agents.len(), "ferrostack compute agents running");
    }
    ferro_api_server::shutdown_signal().await;
    Ok(())
}

async fn serve(cfg: Config, roles: ferro_api_server::Roles) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&cfg.api.listen)
        .await
        .with_context(|| format!("binding {}", cfg.api.listen))?;
    let app = ferro_api_server::App::start_roles(cfg, roles)
        .await
        .map_err(startup_error)?;
    print_report(&app);
    println!("identity:       {}/v3", app.identity.base_url);
    println!(
        "try:            OS_CLIENT_CONFIG_FILE={} OS_CLOUD=ferrostack openstack token issue",
        app.report.clouds_yaml.display()
    );
    tracing::info!(listen = %app.cfg.api.listen, "ferrostack serving");
    let router = app.router();
    ferro_api_server::serve(listener, router, ferro_api_server::shutdown_signal()).await?;
    Ok(())
}
