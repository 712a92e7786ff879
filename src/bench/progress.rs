//! The live progress bar of a bench phase (indicatif, on stderr; hidden when stderr is not a
//! terminal): elapsed time or records against the goal, and the MB/s of the last second next
//! to the average so far, read from the phase's atomic counters by a small ticker thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::units::BYTES_PER_MB;

const TICK: Duration = Duration::from_millis(250);
/// Window of the "now" rate.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// What the bar counts towards.
#[derive(Debug, Clone, Copy)]
pub enum ProgressGoal {
    Records(u64),
    Duration(Duration),
}

pub struct Progress {
    bar: ProgressBar,
    done: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar labelled `label`; `counts` returns (records, bytes) so far.
    pub fn start(
        label: &str,
        goal: ProgressGoal,
        counts: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Progress {
        let (length, template) = match goal {
            ProgressGoal::Records(n) => (
                n,
                "{prefix:>22} [{elapsed_precise}] {bar:30} {pos}/{len} records {msg}",
            ),
            ProgressGoal::Duration(d) => (
                d.as_millis() as u64,
                "{prefix:>22} [{elapsed_precise}] {bar:30} {msg}",
            ),
        };
        let bar = ProgressBar::new(length.max(1));
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(label.to_string());
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (bar, done) = (bar.clone(), done.clone());
            std::thread::Builder::new()
                .name("bench-progress".into())
                .spawn(move || tick(bar, done, goal, counts))
                .ok()
        };
        Progress { bar, done, ticker }
    }

    /// Removes the bar.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tick(
    bar: ProgressBar,
    done: Arc<AtomicBool>,
    goal: ProgressGoal,
    counts: impl Fn() -> (u64, u64),
) {
    let started = Instant::now();
    let mut history: std::collections::VecDeque<(Instant, u64)> = Default::default();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let (records, total) = counts();
        history.push_back((now, total));
        while history
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            history.pop_front();
        }
        let recent = match history.front() {
            Some(&(t, b)) if now > t => {
                (total - b) as f64 / BYTES_PER_MB / now.duration_since(t).as_secs_f64()
            }
            _ => 0.0,
        };
        let average = total as f64 / BYTES_PER_MB / started.elapsed().as_secs_f64();
        match goal {
            ProgressGoal::Records(_) => bar.set_position(records),
            ProgressGoal::Duration(_) => bar.set_position(started.elapsed().as_millis() as u64),
        }
        bar.set_message(format!("{recent:>8.1} MB/s now, {average:>8.1} MB/s avg"));
    }
}
