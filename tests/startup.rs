//! Brokers started side by side on a loaded machine all come up. A glommio executor setting (a
//! 1 ms preempt timer) once made about one start in five hang with both executors parked in
//! io_uring; eight concurrent starts on two cores almost always caught it.

mod common;

use common::Broker;

#[test]
fn eight_brokers_started_at_once_all_become_ready() {
    let starts: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(|| Broker::start(&[])))
        .collect();
    let brokers: Vec<Broker> = starts
        .into_iter()
        .map(|start| start.join().expect("a broker became ready within 60 s"))
        .collect();
    for mut broker in brokers {
        assert!(broker.is_running());
        broker.stop();
    }
}
