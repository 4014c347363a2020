//! A fixed pool of OS threads that runs batches of NBD requests: store
//! calls block (page cache misses, fsync), so they never run on the tokio
//! workers.
//!
//! The queue is a mutex and a condvar on purpose: crossbeam's channel spins
//! and yields before it parks, and on a 2-vCPU machine that spinning showed
//! up as 8% of the profile under load, taken from the threads doing real work.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Queue {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
}

/// Fixed threads running jobs; dropping the pool finishes queued jobs and
/// joins the threads.
pub(crate) struct IoPool {
    queue: Arc<Queue>,
    threads: Vec<JoinHandle<()>>,
}

impl IoPool {
    /// Starts `threads` workers.
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let queue =
            Arc::new(Queue { jobs: Mutex::new((VecDeque::new(), false)), ready: Condvar::new() });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let q = queue.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("clonebd-io-{i}"))
                    .spawn(move || worker(&q))?,
            );
        }
        Ok(Self { queue, threads: handles })
    }

    /// Queues `job`; one idle thread wakes for it.
    pub(crate) fn execute(&self, job: impl FnOnce() + Send + 'static) {
        let mut guard = lock(&self.queue.jobs);
        guard.0.push_back(Box::new(job));
        drop(guard);
        self.queue.ready.notify_one();
    }

    /// Number of threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A job that panicked poisons nothing we rely on: the queue stays valid.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn worker(q: &Queue) {
    loop {
        let job = {
            let mut guard = lock(&q.jobs);
            loop {
                if let Some(job) = guard.0.pop_front() {
                    break job;
                }
                if guard.1 {
                    return;
                }
                guard = q.ready.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        job();
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        lock(&self.queue.jobs).1 = true;
        self.queue.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn runs_every_job_before_it_stops() {
        let sum = Arc::new(AtomicU64::new(0));
        {
            let pool = IoPool::new(3).unwrap();
            for i in 0..1000u64 {
                let sum = sum.clone();
                pool.execute(move || {
                    sum.fetch_add(i, Ordering::Relaxed);
                });
            }
        }
        assert_eq!(sum.load(Ordering::Relaxed), 999 * 1000 / 2);
    }
}
