// jemalloc replaces malloc process-wide (unprefixed), so QuickJS and SQLite use it too.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read before `main` (`MALLOC_CONF` in the environment still wins).
/// Without background threads, jemalloc gives freed pages back to the system only while
/// the process allocates: an idle server kept the memory of every tenant it had served
/// (closed files, their caches), about 0.5 MiB per tenant (BENCHMARKS.md, "Growth curves").
/// The threads (one per core at most) purge freed pages after `dirty_decay_ms` whether or
/// not anything else runs.
#[cfg(all(unix, not(target_env = "musl")))]
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
#[used]
static malloc_conf: &[u8; 23] = b"background_thread:true\0";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = plinth::cli::Cli::parse_args();
    match plinth::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
