//! How a connection's thread waits for a queue-depth-1 client's next request.
//!
//! A client at queue depth 1 sends its next request a few µs after our
//! reply reaches it. If the connection's thread sleeps in `read()` meanwhile,
//! its CPU may go idle, and on a virtual machine an idle vCPU halts: waking
//! it for the request costs tens of µs (this 2-vCPU VM: 4 KiB QD1 writes at
//! 13 µs a round trip with server and client on one CPU, 60-90 µs on two).
//! So after a request that came alone (`connection.rs`), the thread
//! polls the socket without blocking for up to `--poll-us`, yielding the
//! CPU between tries, before it sleeps. It polls only while it pays: a wait
//! that outlasted the budget disarms polling until a request comes within
//! it again. At most one connection per spare CPU polls at once. Every
//! try yields, and a yield that let another thread run ends that poll: the
//! CPU has other work, and a polling thread would keep it from it.
//! It is off by default (`--poll-us 0`): under pgbench, with PostgreSQL,
//! FUSE and the clients on the same two vCPUs, it still cost 10-12% of the
//! TPS, because a polling vCPU never looks idle to the scheduler.

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::net::RecvFlags;

/// A yield that kept us off the CPU this long ran someone else: stop.
const BUSY_YIELD: Duration = Duration::from_micros(5);

/// Connections polling right now, across the server.
static POLLING: AtomicUsize = AtomicUsize::new(0);

/// One connection's reads of its socket.
pub(crate) struct Waiter {
    budget: Duration,
    /// Connections polling now (`POLLING`; a test's own counter in tests).
    polling: &'static AtomicUsize,
    /// Connections that may poll at once (one per CPU beyond the first).
    max_polling: usize,
    /// A yield this long ran another thread (`BUSY_YIELD`).
    busy_yield: Duration,
    /// The last batch was one request with nothing behind it.
    lone: bool,
    /// The last wait for a lone request's successor ended within the budget.
    armed: bool,
}

impl Waiter {
    /// `budget` zero never polls; `cpus` is the machine's (the connection
    /// knows it already).
    pub(crate) fn new(budget: Duration, cpus: usize) -> Waiter {
        Waiter {
            budget,
            polling: &POLLING,
            max_polling: cpus.saturating_sub(1).max(1),
            busy_yield: BUSY_YIELD,
            lone: false,
            armed: true,
        }
    }

    /// Tells what the reader just dispatched: `lone` for a batch of one
    /// request with nothing behind it in the buffer (a client at queue
    /// depth 1).
    pub(crate) fn answered(&mut self, lone: bool) {
        self.lone = lone;
    }

    /// Reads what the socket has into `buf`, waiting as the module says;
    /// `Ok(0)` at EOF.
    pub(crate) fn read(
        &mut self,
        socket: &mut TcpStream,
        buf: &mut [u8],
    ) -> std::io::Result<usize> {
        if !self.lone || self.budget.is_zero() {
            return socket.read(buf);
        }
        let start = Instant::now();
        if self.armed
            && let Some(_slot) = PollSlot::take(self.polling, self.max_polling)
        {
            loop {
                match rustix::net::recv(&*socket, &mut *buf, RecvFlags::DONTWAIT) {
                    Ok((_, n)) => return Ok(n),
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
                if start.elapsed() >= self.budget {
                    break;
                }
                let before = Instant::now();
                std::thread::yield_now();
                if before.elapsed() >= self.busy_yield {
                    // another thread had this CPU meanwhile: the machine has
                    // work for it, and polling would take the CPU from it
                    break;
                }
            }
        }
        let n = socket.read(buf)?;
        self.armed = start.elapsed() < self.budget;
        Ok(n)
    }
}

/// A place among the connections polling at once, given back on drop.
struct PollSlot<'a>(&'a AtomicUsize);

impl PollSlot<'_> {
    fn take(count: &AtomicUsize, max: usize) -> Option<PollSlot<'_>> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| PollSlot(count))
    }
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    /// Sends `bytes` from another thread after `after`, then closes.
    fn send_later(mut client: TcpStream, after: Duration, bytes: &'static [u8]) {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            client.write_all(bytes).unwrap();
        });
    }

    #[test]
    fn a_lone_request_polls_for_the_next_and_stays_armed() {
        let (mut server, client) = pair();
        let mut w = Waiter::new(Duration::from_secs(5), 2);
        w.answered(true);
        send_later(client, Duration::from_millis(5), b"next");
        let mut buf = [0u8; 16];
        let n = w.read(&mut server, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"next");
        assert!(w.armed, "the next request came within the budget");
        // the client is gone: EOF, whether polling or sleeping
        let n = w.read(&mut server, &mut buf).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_wait_past_the_budget_disarms_polling_and_a_quick_one_rearms_it() {
        let (mut server, mut client) = pair();
        let mut w = Waiter::new(Duration::from_millis(2), 2);
        w.answered(true);
        let mut buf = [0u8; 16];
        let writer = client.try_clone().unwrap();
        send_later(writer, Duration::from_millis(50), b"slow");
        assert_eq!(w.read(&mut server, &mut buf).unwrap(), 4);
        assert!(!w.armed, "a client slower than the budget is not polled for");
        client.write_all(b"quick").unwrap();
        assert_eq!(w.read(&mut server, &mut buf).unwrap(), 5);
        assert!(w.armed, "a request within the budget arms polling again");
    }

    #[test]
    fn a_batch_or_a_zero_budget_leaves_polling_as_it_was() {
        let (mut server, mut client) = pair();
        for (budget, lone) in [(Duration::from_secs(5), false), (Duration::ZERO, true)] {
            let mut w = Waiter::new(budget, 2);
            w.answered(lone);
            client.write_all(b"x").unwrap();
            let mut buf = [0u8; 4];
            assert_eq!(w.read(&mut server, &mut buf).unwrap(), 1);
            assert!(w.armed, "armed is only changed by a lone wait");
        }
    }

    #[test]
    fn the_next_request_is_read_by_polling_not_by_sleeping() {
        // a read that sleeps gives up after 1 ms; the request comes after 30
        static OWN: AtomicUsize = AtomicUsize::new(0);
        let (mut server, client) = pair();
        server.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut w = Waiter::new(Duration::from_secs(5), 2);
        // neither other tests' polls nor a busy machine may end this one
        w.polling = &OWN;
        w.busy_yield = Duration::MAX;
        w.answered(true);
        let _open = client.try_clone().unwrap(); // no EOF after the send
        send_later(client, Duration::from_millis(30), b"polled");
        let mut buf = [0u8; 16];
        let n = w.read(&mut server, &mut buf).expect("polling waits past the read timeout");
        assert_eq!(&buf[..n], b"polled");
        assert_eq!(OWN.load(Ordering::Acquire), 0, "the poll slot is given back");
        // not lone: a plain read, which times out
        w.answered(false);
        let err = w.read(&mut server, &mut buf).unwrap_err();
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
    }

    #[test]
    fn no_more_connections_poll_at_once_than_allowed() {
        let count = AtomicUsize::new(0);
        let a = PollSlot::take(&count, 2).unwrap();
        let b = PollSlot::take(&count, 2).unwrap();
        assert!(PollSlot::take(&count, 2).is_none());
        drop(a);
        let c = PollSlot::take(&count, 2).unwrap();
        assert_eq!(count.load(Ordering::Acquire), 2);
        drop((b, c));
        assert_eq!(count.load(Ordering::Acquire), 0);
    }
}
