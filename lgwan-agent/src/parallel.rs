//! An ordered parallel map for the import's passes: one thread reads the inputs in
//! order, worker threads do the expensive part (parse, minimize, seal), and the
//! results are handed on in input order, so the output is the same whatever the
//! number of workers. Inputs travel in small batches, and at most about `window` of
//! them (rounded up to whole batches) are between the reader and the consumer at any
//! time, so memory stays bounded whatever the input size.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, PoisonError};
use std::thread;

/// Worker threads for the import: one per core, at most 8.
pub(crate) fn workers() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Inputs handed to a worker at a time: one channel hand-off (and, when the worker
/// sleeps, one wake-up) per batch rather than per input.
const BATCH: usize = 8;

/// Calls `produce` (on this thread) with a sink for the inputs, runs `work` on each
/// input on `workers` threads, and calls `consume` (on this thread) with the results
/// in the order the inputs came. At most about `window` inputs are in flight. A panic
/// in `work` is resumed on this thread.
pub(crate) fn ordered_map<I, O>(
    workers: usize,
    window: usize,
    produce: impl FnOnce(&mut dyn FnMut(I)),
    work: impl Fn(I) -> O + Sync,
    consume: &mut dyn FnMut(O),
) where
    I: Send,
    O: Send,
{
    let workers = workers.max(1);
    let (job_tx, job_rx) = channel::<(u64, Vec<I>)>();
    let (out_tx, out_rx) = channel::<(u64, thread::Result<Vec<O>>)>();
    let job_rx = Mutex::new(job_rx);
    thread::scope(|scope| {
        for _ in 0..workers {
            let (job_rx, out_tx, work) = (&job_rx, out_tx.clone(), &work);
            scope.spawn(move || {
                loop {
                    // The guard is dropped at the end of this statement.
                    let next = job_rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((seq, inputs)) = next else { break };
                    let out =
                        catch_unwind(AssertUnwindSafe(|| inputs.into_iter().map(work).collect()));
                    if out_tx.send((seq, out)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(out_tx);
        let mut order = Reorder {
            out_rx,
            pending: BTreeMap::new(),
            sent: 0,
            next: 0,
            window: window.div_ceil(BATCH).max(workers) as u64,
        };
        let mut job_tx: Option<Sender<(u64, Vec<I>)>> = Some(job_tx);
        let mut send = |order: &mut Reorder<O>, batch: Vec<I>, consume: &mut dyn FnMut(O)| {
            order.wait_for_room(consume);
            let Some(tx) = job_tx.as_ref() else { return };
            if tx.send((order.sent, batch)).is_ok() {
                order.sent += 1;
            } else {
                job_tx = None;
            }
            order.drain_ready(consume);
        };
        let mut batch = Vec::with_capacity(BATCH);
        produce(&mut |input| {
            batch.push(input);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                send(&mut order, full, consume);
            }
        });
        if !batch.is_empty() {
            send(&mut order, batch, consume);
        }
        order.finish(consume);
    });
}

/// Batches of results that came back out of order, waiting for their turn.
struct Reorder<O> {
    out_rx: Receiver<(u64, thread::Result<Vec<O>>)>,
    pending: BTreeMap<u64, thread::Result<Vec<O>>>,
    /// Batches handed to the workers.
    sent: u64,
    /// The next batch to consume.
    next: u64,
    window: u64,
}

impl<O> Reorder<O> {
    /// Consumes every result whose turn has come.
    fn emit(&mut self, consume: &mut dyn FnMut(O)) {
        while let Some(out) = self.pending.remove(&self.next) {
            self.next += 1;
            match out {
                Ok(outs) => outs.into_iter().for_each(&mut *consume),
                Err(panic) => resume_unwind(panic),
            }
        }
    }

    /// Takes the results already there without waiting.
    fn drain_ready(&mut self, consume: &mut dyn FnMut(O)) {
        while let Ok((seq, out)) = self.out_rx.try_recv() {
            self.pending.insert(seq, out);
        }
        self.emit(consume);
    }

    /// Waits until fewer than `window` batches are in flight.
    fn wait_for_room(&mut self, consume: &mut dyn FnMut(O)) {
        while self.sent - self.next >= self.window {
            let Ok((seq, out)) = self.out_rx.recv() else {
                return;
            };
            self.pending.insert(seq, out);
            self.emit(consume);
        }
    }

    /// Waits for every result still in flight.
    fn finish(&mut self, consume: &mut dyn FnMut(O)) {
        while self.next < self.sent {
            let Ok((seq, out)) = self.out_rx.recv() else {
                return;
            };
            self.pending.insert(seq, out);
            self.emit(consume);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_input_order_whatever_the_workers() {
        for workers in [1, 2, 5] {
            let mut got = Vec::new();
            ordered_map(
                workers,
                3,
                |sink| (0..203u64).for_each(sink),
                |i| {
                    // Uneven work so that results come back out of order.
                    let spin = if i % 7 == 0 { 200_000 } else { 10 };
                    std::hint::black_box((0..spin).fold(0u64, |a, b| a ^ b));
                    i * 2
                },
                &mut |o| got.push(o),
            );
            assert_eq!(got, (0..203u64).map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            ordered_map(
                2,
                4,
                |sink| (0..10u32).for_each(sink),
                |i| {
                    assert_ne!(i, 6, "worker failure");
                    i
                },
                &mut |_| {},
            );
        });
        assert!(caught.is_err());
    }
}
