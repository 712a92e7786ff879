//! Partition-level properties that need the flusher in the loop.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::flusher::Flusher;
use super::Partition;
use crate::config::TopicConfig;
use crate::records::builder::BatchBuilder;
use crate::records::compression::Compression;
use crate::storage::log::LogOptions;
use crate::testing::{data_dir, run_local};

fn batch(tag: u8) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None, 0, 1_000);
    builder.append(1_000, None, Some(&vec![tag; 20 << 10]), &[]);
    builder.build().unwrap()
}

/// Appends land in the order they reached the shard (pipelined Produce requests of one
/// connection are dispatched in order and must be stored in that order), also when a new one
/// arrives between a queued append being woken and it running.
///
/// The schedule is forced: B holds the lock waiting for flusher space, C waits for the lock. The
/// test task wakes on the flusher's "space" event with B, lets B append and release (which wakes
/// C), then spawns D, which glommio polls before the woken C. A lock that goes to whoever polls
/// first (glommio's Semaphore, which Weir used before) stores "ABDC".
#[test]
fn an_append_arriving_while_a_queued_one_is_being_woken_waits_its_turn() {
    let dir = data_dir();
    run_local(async move {
        let (partition, _) = Partition::open(
            dir.path(),
            "ordered".into(),
            0,
            crate::protocol::Uuid::default(),
            0,
            TopicConfig::default(),
            LogOptions::default(),
            true,
        )
        .await
        .unwrap();
        // A limit below one batch: after A, every append waits for a flush.
        let flusher = Flusher::new(16 << 10);
        let stored = Rc::new(RefCell::new(Vec::new()));
        let append = |tag: u8| {
            let (partition, flusher, stored) = (partition.clone(), flusher.clone(), stored.clone());
            glommio::spawn_local(async move {
                let outcome = partition.append(Some(batch(tag)), &flusher).await.unwrap();
                stored.borrow_mut().push((outcome.base_offset, tag));
            })
        };
        append(b'A').await;
        let mut space = Box::pin(flusher.space_event().listen());
        assert!(futures::poll!(&mut space).is_pending());
        let b = append(b'B');
        let c = append(b'C');
        glommio::timer::sleep(Duration::from_millis(5)).await;
        assert_eq!(stored.borrow().len(), 1, "B and C wait for the flusher");
        glommio::spawn_local(flusher.clone().run()).detach();
        space.await;
        yield_once().await;
        assert_eq!(stored.borrow().len(), 2, "B appended and released the lock");
        let d = append(b'D');
        futures::join!(b, c, d);
        flusher.stop();
        let mut stored = stored.borrow().clone();
        stored.sort();
        let order: Vec<u8> = stored.iter().map(|&(_, tag)| tag).collect();
        assert_eq!(String::from_utf8(order).unwrap(), "ABCD");
        partition.close().await.unwrap();
    });
}

/// Lets every task already woken run before this one continues.
async fn yield_once() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
