//! Metering into hour and day rows on a real SQLite store: what a flush writes, the peak
//! of open connections, and the pruning of old hours. (The API suite covers PostgreSQL.)

use super::*;
use crate::store::Location;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(
        &Location::SqliteDir(dir.path().to_path_buf()),
        4,
        crate::store::SqliteTuning::default(),
    )
    .await
    .expect("open store");
    (dir, store)
}

#[tokio::test]
async fn a_flush_adds_to_the_hour_and_the_day() {
    let (_dir, store) = store().await;
    let usage = Usage::new(store.clone());
    usage.request(7, 200);
    usage.request(7, 404);
    usage.request(7, 503);
    usage.request(8, 200);
    usage.realtime_opened(7, 2);
    usage.realtime_opened(7, 1);
    usage.invocation(7, Duration::from_millis(3));

    let hours = usage.report(7, Span::Hours(2)).await.expect("report");
    assert_eq!(hours.granularity, Granularity::Hour);
    assert!(hours.days.is_none());
    let listed = hours.hours.expect("hours");
    assert_eq!(listed.len(), 1, "one hour with use");
    assert_eq!(listed[0].hour, hour_label(current_hour()));
    assert!(listed[0].hour.ends_with(":00:00Z"), "{}", listed[0].hour);
    let want = UsageCounts {
        requests: 3,
        errors: 2,
        doc_writes: 0,
        invocations: 1,
        cpu_us: 3000,
        realtime_connections: 2,
        realtime_peak: 2,
    };
    assert_eq!(listed[0].counts, want);
    assert_eq!(hours.total, want);

    let days = usage.report(7, Span::Days(1)).await.expect("report");
    assert_eq!(days.granularity, Granularity::Day);
    let listed = days.days.expect("days");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].counts, want, "the day has what the hour has");
    assert_eq!(
        usage
            .report(8, Span::Hours(1))
            .await
            .expect("report")
            .total
            .requests,
        1,
        "tenants apart"
    );
}

#[tokio::test]
async fn the_peak_is_the_largest_seen_and_open_sockets_are_sampled() {
    let (_dir, store) = store().await;
    let usage = Usage::new(store.clone());
    usage.realtime_opened(3, 5);
    usage.flush().await.expect("flush");
    // A later, smaller peak does not lower the stored one; flushes add the counts.
    usage.realtime_opened(3, 1);
    usage.flush().await.expect("flush");
    let r = usage.report(3, Span::Hours(1)).await.expect("report");
    assert_eq!(r.total.realtime_connections, 2);
    assert_eq!(r.total.realtime_peak, 5);

    // Connections already open when the hour starts are sampled by its first flush,
    // though none opened in it; not by the next ones (opens record a growing peak).
    let sockets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(9));
    let usage = Usage::new(store.clone());
    usage.watch_open_sockets({
        let sockets = sockets.clone();
        move || vec![(4, sockets.load(Ordering::Relaxed))]
    });
    let r = usage.report(4, Span::Hours(1)).await.expect("report");
    assert_eq!(r.total.realtime_peak, 9);
    assert_eq!(r.total.realtime_connections, 0);
    assert_eq!(r.total.requests, 0);
    sockets.store(20, Ordering::Relaxed);
    let r = usage.report(4, Span::Hours(1)).await.expect("report");
    assert_eq!(r.total.realtime_peak, 9, "sampled once an hour");
}

#[tokio::test]
async fn hours_older_than_the_retention_are_pruned_and_days_kept() {
    let (_dir, store) = store().await;
    let now = current_hour();
    let old = now - i64::from(HOUR_RETENTION);
    let kept = now - i64::from(HOUR_RETENTION) + 1;
    let one = UsageCounts {
        requests: 1,
        ..UsageCounts::default()
    };
    for h in [old - 100, old, kept] {
        store
            .add_usage(1, &day_label(h), &hour_label(h), &one)
            .await
            .expect("add");
    }
    let usage = Usage::new(store.clone());
    usage.flush().await.expect("flush");
    let hours = store
        .list_usage_hours(1, &hour_label(old - 1000))
        .await
        .expect("list");
    let labels: Vec<_> = hours.iter().map(|(h, _)| h.clone()).collect();
    assert_eq!(labels, [hour_label(kept)]);
    // A report of the longest span sees every hour kept.
    let r = usage
        .report(1, Span::Hours(HOUR_RETENTION))
        .await
        .expect("report");
    assert_eq!(r.total.requests, 1);
    let days = store
        .list_usage_days(1, &day_label(old - 1000))
        .await
        .expect("list");
    assert_eq!(
        days.iter().map(|(_, c)| c.requests).sum::<i64>(),
        3,
        "days are not pruned"
    );
}
