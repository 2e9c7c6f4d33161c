//! rskafka against a Kafka-compatible broker: `fastlog-rskafka-check --bootstrap HOST:PORT
//! [--check-timeout-secs N]`. Runs every check in `checks` under a timeout, prints one JSON
//! line per check and exits 1 if any failed (2 on bad arguments).

mod checks;
mod records;
mod report;

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rskafka::client::partition::Compression;
use rskafka::client::ClientBuilder;
use rskafka::BackoffConfig;

use checks::Context;
use report::{print_line, CheckResult};

/// The rskafka release this binary is built with (kept in step with Cargo.toml).
const RSKAFKA_VERSION: &str = "0.6.0";
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long rskafka keeps retrying a request before it reports the error.
const RETRY_DEADLINE: Duration = Duration::from_secs(10);

struct Args {
    bootstrap: String,
    check_timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut bootstrap = None;
    let mut check_timeout = DEFAULT_CHECK_TIMEOUT;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => bootstrap = Some(value()?),
            "--check-timeout-secs" => {
                let seconds = value()?
                    .parse::<u64>()
                    .map_err(|e| format!("--check-timeout-secs: {e}"))?;
                check_timeout = Duration::from_secs(seconds);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let bootstrap = bootstrap.ok_or("--bootstrap HOST:PORT is required")?;
    Ok(Args {
        bootstrap,
        check_timeout,
    })
}

/// Runs one check under the timeout and prints its line; returns false when it failed.
async fn run_check(name: &str, limit: Duration, check: impl Future<Output = CheckResult>) -> bool {
    let started = Instant::now();
    let result = match tokio::time::timeout(limit, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}s", limit.as_secs())),
    };
    print_line(name, &result, started.elapsed().as_millis())
}

async fn connect(bootstrap: &str) -> Result<Context, String> {
    let client = build_client(bootstrap).await?;
    let other_client = build_client(bootstrap).await?;
    let run_id = format!("{}-{}", std::process::id(), records::now_ms() % 1_000_000);
    Ok(Context {
        client,
        other_client,
        run_id,
    })
}

async fn build_client(bootstrap: &str) -> Result<rskafka::client::Client, String> {
    let backoff = BackoffConfig {
        deadline: Some(RETRY_DEADLINE),
        ..BackoffConfig::default()
    };
    ClientBuilder::new(vec![bootstrap.to_string()])
        .client_id(format!("rskafka-{RSKAFKA_VERSION}-check"))
        .backoff_config(backoff)
        .build()
        .await
        .map_err(|e| format!("connecting to {bootstrap}: {e}"))
}

const CODECS: [(Compression, &str); 5] = [
    (Compression::NoCompression, "none"),
    (Compression::Gzip, "gzip"),
    (Compression::Lz4, "lz4"),
    (Compression::Snappy, "snappy"),
    (Compression::Zstd, "zstd"),
];

/// Every check, in order; returns how many failed.
async fn run_all(ctx: &Context, limit: Duration) -> usize {
    let mut passed = vec![
        run_check("list_topics", limit, checks::list_topics(ctx)).await,
        run_check("auto_create_topic", limit, checks::auto_create_topic(ctx)).await,
        run_check("multi_partition", limit, checks::multi_partition(ctx)).await,
    ];
    for (codec, codec_name) in CODECS {
        let name = format!("produce_consume_{codec_name}");
        passed.push(
            run_check(
                &name,
                limit,
                checks::produce_consume(ctx, codec, codec_name),
            )
            .await,
        );
    }
    passed.extend([
        run_check(
            "batch_producer_stream_consumer",
            limit,
            checks::batch_producer_stream_consumer(ctx),
        )
        .await,
        run_check("fetch_limits", limit, checks::fetch_limits(ctx)).await,
        run_check("produce_too_large", limit, checks::produce_too_large(ctx)).await,
        run_check("consumer_group", limit, checks::consumer_group(ctx)).await,
        run_check("offsets_by_time", limit, checks::offsets_by_time(ctx)).await,
        run_check(
            "admin_create_delete_topic",
            limit,
            checks::admin_create_delete_topic(ctx),
        )
        .await,
        run_check(
            "admin_create_topic_errors",
            limit,
            checks::admin_create_topic_errors(ctx),
        )
        .await,
        run_check(
            "admin_delete_records",
            limit,
            checks::admin_delete_records(ctx),
        )
        .await,
        run_check("admin_configs", limit, checks::admin_configs(ctx)).await,
    ]);
    passed.iter().filter(|ok| !**ok).count()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("fastlog-rskafka-check: {message}");
            return ExitCode::from(2);
        }
    };
    let connected = tokio::time::timeout(args.check_timeout, connect(&args.bootstrap)).await;
    let ctx = match connected {
        Ok(Ok(ctx)) => ctx,
        Ok(Err(message)) => return fail_to_connect(message),
        Err(_) => {
            return fail_to_connect(format!(
                "no connection within {}s",
                args.check_timeout.as_secs()
            ))
        }
    };
    let failed = run_all(&ctx, args.check_timeout).await;
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn fail_to_connect(message: String) -> ExitCode {
    print_line("connect", &Err(message), 0);
    ExitCode::from(1)
}
