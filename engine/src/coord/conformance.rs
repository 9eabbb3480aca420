//! The [`Coord`] contract as executable checks, run against the in-process and
//! the Redis implementations (standalone and Cluster), like the store's
//! conformance suite. Every check uses fresh random names, so checks can share
//! one Redis.

use std::time::Duration;

use super::{BusEvent, Coord, Window};

/// The result of one check: `Err` says what was wrong.
pub type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn fresh(what: &str) -> String {
    format!("{what}-{:016x}", rand::random::<u64>())
}

fn err(e: crate::store::StoreError) -> String {
    e.to_string()
}

/// Runs every single-node check against `coord`; panics listing the failures.
pub async fn run_all(coord: &dyn Coord) {
    let checks: Vec<(&str, Check)> = vec![
        (
            "windows_block_at_the_limit",
            windows_block_at_the_limit(coord).await,
        ),
        ("windows_slide", windows_slide(coord).await),
        (
            "locks_exclude_and_expire",
            locks_exclude_and_expire(coord).await,
        ),
        ("values_are_shared", values_are_shared(coord).await),
        ("feeds_keep_the_newest", feeds_keep_the_newest(coord).await),
    ];
    let failed: Vec<String> = checks
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "coordination conformance failed:\n{}",
        failed.join("\n")
    );
}

pub async fn windows_block_at_the_limit(coord: &dyn Coord) -> Check {
    let scope = fresh("scope");
    let limit = Window {
        max: 3,
        window: Duration::from_secs(60),
    };
    ensure!(
        coord
            .window_blocked(&scope, "k", limit)
            .await
            .map_err(err)?
            .is_none(),
        "a key never hit is blocked"
    );
    for i in 1..3 {
        let after = coord.window_hit(&scope, "k", limit).await.map_err(err)?;
        ensure!(after.is_none(), "blocked after {i} of 3 hits");
    }
    let after = coord.window_hit(&scope, "k", limit).await.map_err(err)?;
    let wait = after.ok_or("not blocked after the 3rd hit")?;
    ensure!(
        wait <= limit.window && wait > Duration::from_secs(50),
        "the wait {wait:?} is not about the window"
    );
    ensure!(
        coord
            .window_blocked(&scope, "k", limit)
            .await
            .map_err(err)?
            .is_some(),
        "window_blocked disagrees with window_hit"
    );
    ensure!(
        coord
            .window_blocked(&scope, "other", limit)
            .await
            .map_err(err)?
            .is_none(),
        "another key is blocked too"
    );
    ensure!(
        coord
            .window_blocked(&fresh("scope"), "k", limit)
            .await
            .map_err(err)?
            .is_none(),
        "the same key in another scope is blocked too"
    );
    Ok(())
}

pub async fn windows_slide(coord: &dyn Coord) -> Check {
    let scope = fresh("scope");
    let limit = Window {
        max: 2,
        window: Duration::from_millis(400),
    };
    coord.window_hit(&scope, "k", limit).await.map_err(err)?;
    coord.window_hit(&scope, "k", limit).await.map_err(err)?;
    ensure!(
        coord
            .window_blocked(&scope, "k", limit)
            .await
            .map_err(err)?
            .is_some(),
        "not blocked at the limit"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        coord
            .window_blocked(&scope, "k", limit)
            .await
            .map_err(err)?
            .is_none(),
        "still blocked once the window passed"
    );
    Ok(())
}

pub async fn locks_exclude_and_expire(coord: &dyn Coord) -> Check {
    let name = fresh("lock");
    let long = Duration::from_secs(30);
    ensure!(
        coord.try_lock(&name, 1, long).await.map_err(err)?,
        "a free lock was not taken"
    );
    ensure!(
        !coord.try_lock(&name, 2, long).await.map_err(err)?,
        "a held lock was taken again"
    );
    coord.unlock(&name, 2).await.map_err(err)?;
    ensure!(
        !coord.try_lock(&name, 3, long).await.map_err(err)?,
        "another token's unlock freed the lock"
    );
    coord.unlock(&name, 1).await.map_err(err)?;
    ensure!(
        coord.try_lock(&name, 4, long).await.map_err(err)?,
        "the holder's unlock did not free it"
    );
    let short = fresh("lock");
    ensure!(
        coord
            .try_lock(&short, 5, Duration::from_millis(200))
            .await
            .map_err(err)?,
        "a free lock was not taken"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    ensure!(
        coord.try_lock(&short, 6, long).await.map_err(err)?,
        "an expired lock was not freed"
    );
    Ok(())
}

pub async fn values_are_shared(coord: &dyn Coord) -> Check {
    let name = fresh("value");
    ensure!(
        coord.get(&name).await.map_err(err)?.is_none(),
        "a new value exists"
    );
    coord.put(&name, "one").await.map_err(err)?;
    coord.put(&name, "two").await.map_err(err)?;
    ensure!(
        coord.get(&name).await.map_err(err)?.as_deref() == Some("two"),
        "the last put is not what get reads"
    );
    Ok(())
}

pub async fn feeds_keep_the_newest(coord: &dyn Coord) -> Check {
    let name = fresh("feed");
    ensure!(
        coord.feed_newest(&name, 10).await.map_err(err)?.is_empty(),
        "a new feed has entries"
    );
    for i in 0..5u8 {
        coord.feed_push(&name, vec![i], 3).await.map_err(err)?;
    }
    let newest = coord.feed_newest(&name, 10).await.map_err(err)?;
    ensure!(
        newest == vec![vec![4], vec![3], vec![2]],
        "kept {newest:?}, want 4, 3, 2"
    );
    let two = coord.feed_newest(&name, 2).await.map_err(err)?;
    ensure!(
        two == vec![vec![4], vec![3]],
        "limited to {two:?}, want 4, 3"
    );
    Ok(())
}

/// Two handles on one shared state (two nodes): what one does, the other sees,
/// and what one publishes, the other receives (and the publisher does not).
pub async fn shared_between(a: &dyn Coord, b: &dyn Coord) -> Check {
    let scope = fresh("scope");
    let limit = Window {
        max: 2,
        window: Duration::from_secs(60),
    };
    a.window_hit(&scope, "k", limit).await.map_err(err)?;
    b.window_hit(&scope, "k", limit).await.map_err(err)?;
    ensure!(
        a.window_blocked(&scope, "k", limit)
            .await
            .map_err(err)?
            .is_some(),
        "hits through two nodes are not counted together"
    );
    let lock = fresh("lock");
    ensure!(
        a.try_lock(&lock, 1, Duration::from_secs(30))
            .await
            .map_err(err)?,
        "lock not taken"
    );
    ensure!(
        !b.try_lock(&lock, 2, Duration::from_secs(30))
            .await
            .map_err(err)?,
        "the other node took a held lock"
    );
    let value = fresh("value");
    a.put(&value, "on").await.map_err(err)?;
    ensure!(
        b.get(&value).await.map_err(err)?.as_deref() == Some("on"),
        "value not shared"
    );
    let feed = fresh("feed");
    a.feed_push(&feed, b"x".to_vec(), 10).await.map_err(err)?;
    ensure!(
        b.feed_newest(&feed, 10).await.map_err(err)? == vec![b"x".to_vec()],
        "feed not shared"
    );

    let mut at_a = a.subscribe();
    let mut at_b = b.subscribe();
    let topic = fresh("topic");
    // The subscription may still be being made: publish until it arrives.
    let mut got = None;
    for _ in 0..50 {
        a.publish(&topic, b"hello".to_vec()).await.map_err(err)?;
        match tokio::time::timeout(Duration::from_millis(100), next_message(&mut at_b, &topic))
            .await
        {
            Ok(Some(payload)) => {
                got = Some(payload);
                break;
            }
            Ok(None) => return Err("the bus closed".into()),
            Err(_) => continue,
        }
    }
    ensure!(
        got.as_deref() == Some(&b"hello"[..]),
        "the other node never received the message"
    );
    let own =
        tokio::time::timeout(Duration::from_millis(200), next_message(&mut at_a, &topic)).await;
    ensure!(own.is_err(), "the publisher received its own message");
    Ok(())
}

/// The next message on `topic` (resets and other topics skipped); `None` once
/// the bus closed.
async fn next_message(
    rx: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    topic: &str,
) -> Option<Vec<u8>> {
    loop {
        match rx.recv().await {
            Ok(BusEvent::Message { topic: t, payload }) if t == topic => {
                return Some(payload.to_vec())
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        }
    }
}
