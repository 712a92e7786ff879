//! Benchmarks for the cross-shard hop: the round trip of a closure job through
//! `Shard::submit_to` (the path every produce or fetch for a partition owned by another core
//! takes), between two real `Shard`s on two glommio executors joined by the channel mesh, each
//! pinned to its own CPU when the machine has two, as the broker runs them.
//!
//! Cases: one job at a time to the other shard (latency of a hop and back, including waking
//! a parked executor), 64 jobs in flight (pipelined throughput), and a job to the shard itself
//! (the local path, for comparison). The one-at-a-time case runs again with both executors
//! spinning 100 µs before they park (`spin_before_park`), which the broker does not do today:
//! the difference is the cost of waking a sleeping core.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use weir::config::BrokerConfig;
use weir::shard::{Job, Shard};

/// Mesh capacity, as in the broker.
const MESH_CAPACITY: usize = 1024;
/// Jobs kept in flight by the pipelined case.
const IN_FLIGHT: u64 = 64;
/// Spin before parking in the comparison case.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(100);

fn placement(cpu: usize) -> Placement {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cpus >= 2 {
        Placement::Fixed(cpu)
    } else {
        Placement::Unbound
    }
}

/// Joins the mesh as one shard and runs its message pump, as `broker::shard_main` does.
async fn join_shard(mesh: MeshBuilder<Job, Full>) -> Rc<Shard> {
    let (senders, mut receivers) = mesh.join().await.expect("joining the mesh");
    let id = senders.peer_id();
    let shard = Shard::new(id, 2, Arc::new(BrokerConfig::default()), senders, true);
    for (_, receiver) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(job) = receiver.recv().await {
                job(shard.clone());
            }
        })
        .detach();
    }
    shard
}

/// Shard 0 on the bench thread, shard 1 on its own thread until asked to exit; both spin for
/// `spin` before parking.
fn start_shards(spin: Duration) -> (LocalExecutor, Rc<Shard>, std::thread::JoinHandle<()>) {
    let mesh: MeshBuilder<Job, Full> = MeshBuilder::full(2, MESH_CAPACITY);
    let remote_mesh = mesh.clone();
    let remote = std::thread::spawn(move || {
        LocalExecutorBuilder::new(placement(1))
            .spin_before_park(spin)
            .make()
            .expect("shard 1 executor")
            .run(async move {
                let shard = join_shard(remote_mesh).await;
                shard.wait_for_exit().await;
            });
    });
    let executor = LocalExecutorBuilder::new(placement(0))
        .spin_before_park(spin)
        .make()
        .expect("shard 0 executor");
    let shard = executor.run(join_shard(mesh));
    (executor, shard, remote)
}

fn sequential(
    executor: &LocalExecutor,
    shard: &Rc<Shard>,
    target: usize,
    iterations: u64,
) -> Duration {
    executor.run(async {
        let started = Instant::now();
        for index in 0..iterations {
            let echoed = shard
                .submit_to(target, move |_| async move { index })
                .await
                .expect("shard reachable");
            assert_eq!(echoed, index);
        }
        started.elapsed()
    })
}

fn pipelined(executor: &LocalExecutor, shard: &Rc<Shard>, iterations: u64) -> Duration {
    executor.run(async {
        let started = Instant::now();
        let mut pending = std::collections::VecDeque::new();
        for index in 0..iterations {
            if pending.len() as u64 >= IN_FLIGHT {
                let receiver: futures::channel::oneshot::Receiver<u64> =
                    pending.pop_front().expect("non-empty");
                receiver.await.expect("shard reachable");
            }
            pending.push_back(shard.dispatch(1, move |_| async move { index }).await);
        }
        for receiver in pending {
            receiver.await.expect("shard reachable");
        }
        started.elapsed()
    })
}

fn stop_shards(executor: LocalExecutor, shard: Rc<Shard>, remote: std::thread::JoinHandle<()>) {
    executor.run(async {
        let _ = shard
            .submit_to(1, |remote_shard| async move { remote_shard.request_exit() })
            .await;
    });
    // Join with a bound: the second executor pair (spin_before_park) has been seen, rarely, to
    // stay parked after its exit was requested (a wake-up lost by glommio while spinning, not yet
    // root-caused). The measurements are complete by now; a stuck thread ends with the process.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !remote.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if remote.is_finished() {
        remote.join().expect("shard 1 thread");
    } else {
        eprintln!("shard 1 did not exit within 10 s of being asked; leaving its thread behind");
    }
}

fn cross_shard(criterion: &mut Criterion) {
    let (executor, shard, remote) = start_shards(Duration::ZERO);
    let mut group = criterion.benchmark_group("cross_shard");
    group.throughput(Throughput::Elements(1));
    group.bench_function("round_trip_one_at_a_time", |b| {
        b.iter_custom(|iterations| sequential(&executor, &shard, 1, iterations))
    });
    group.bench_function("round_trip_64_in_flight", |b| {
        b.iter_custom(|iterations| pipelined(&executor, &shard, iterations))
    });
    group.bench_function("local_dispatch", |b| {
        b.iter_custom(|iterations| sequential(&executor, &shard, 0, iterations))
    });
    stop_shards(executor, shard, remote);
    let (executor, shard, remote) = start_shards(SPIN_BEFORE_PARK);
    group.bench_function("round_trip_one_at_a_time_spin_100us", |b| {
        b.iter_custom(|iterations| sequential(&executor, &shard, 1, iterations))
    });
    group.finish();
    stop_shards(executor, shard, remote);
}

criterion_group!(benches, cross_shard);
criterion_main!(benches);
