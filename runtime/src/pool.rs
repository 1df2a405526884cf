//! The execution context's thread pool: `threads - 1` workers that run `PREFIX_run` beside the
//! calling thread, every thread with its own [`ThreadSync`] (docs/abi.md, "Threads").
//!
//! The compiled code splits each kernel's work statically by thread index and meets at
//! [`ThreadSync::barrier`] after every kernel, so there is no per-op dispatch: one wake-up per
//! run, one barrier per kernel. Waiting spins briefly, then yields, then parks, so an idle pool
//! costs nothing and a busy one reacts in well under a microsecond.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::model::RunFn;

/// What each thread's `PREFIX_run` receives as its last argument (`struct tfjsc_threads` in
/// docs/abi.md). The layout is ABI.
#[repr(C)]
pub struct ThreadSync {
    /// This thread's index, `0..threads`.
    pub thread: i64,
    /// Threads in the run.
    pub threads: i64,
    /// All threads of the run meet here; returns non-zero when the run was abandoned (another
    /// thread failed), and the caller then returns at once.
    pub barrier: unsafe extern "C" fn(*const ThreadSync) -> i32,
    /// The pool's shared state (null for one thread).
    pub shared: *const c_void,
}

// SAFETY: `shared` points at a `Shared` that outlives every run using it and is only accessed
// through atomics.
unsafe impl Send for ThreadSync {}

impl ThreadSync {
    /// The single-thread form: index 0 of 1, and a barrier that returns at once.
    pub fn single() -> ThreadSync {
        ThreadSync {
            thread: 0,
            threads: 1,
            barrier: no_barrier,
            shared: std::ptr::null(),
        }
    }
}

unsafe extern "C" fn no_barrier(_: *const ThreadSync) -> i32 {
    0
}

/// Spins before yielding, and yields before parking, while waiting.
const SPINS: u32 = 2_000;
const YIELDS: u32 = 200;

/// Waits until `ready()` holds: spins, then yields; with `park`, after the yields it parks
/// until unparked (an idle worker between runs), checking again on every wake-up. Barriers do
/// not park: they are short.
fn wait_until(mut ready: impl FnMut() -> bool, park: bool) {
    let mut tries = 0u32;
    while !ready() {
        if tries < SPINS {
            std::hint::spin_loop();
        } else if !park || tries < SPINS + YIELDS {
            thread::yield_now();
        } else {
            thread::park();
        }
        tries = tries.saturating_add(1);
    }
}

/// The arguments of one run, as the workers read them.
#[derive(Clone, Copy)]
struct Job {
    run: RunFn,
    weights: *const *const c_void,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    arena: *mut c_void,
}

struct Shared {
    threads: usize,
    /// Bumped by the caller to start a run (the job is written first, under the mutex).
    epoch: AtomicU64,
    job: Mutex<Option<Job>>,
    /// Workers that finished the current run.
    finished: AtomicUsize,
    quit: AtomicBool,
    /// The kernel barrier: arrivals in this generation, and the generation.
    arrived: AtomicUsize,
    generation: AtomicU64,
    /// Set when a thread's run failed: waiting threads leave the barrier and return.
    abandoned: AtomicBool,
}

unsafe extern "C" fn pool_barrier(sync: *const ThreadSync) -> i32 {
    // SAFETY: the code passes back the pointer it was given; `shared` is the pool's `Shared`,
    // alive for the whole run.
    let shared = unsafe { &*((*sync).shared as *const Shared) };
    let generation = shared.generation.load(Ordering::Acquire);
    if shared.arrived.fetch_add(1, Ordering::AcqRel) + 1 == shared.threads {
        shared.arrived.store(0, Ordering::Relaxed);
        shared.generation.fetch_add(1, Ordering::AcqRel);
        return 0;
    }
    let mut abandoned = false;
    wait_until(
        || {
            abandoned = shared.abandoned.load(Ordering::Acquire);
            abandoned || shared.generation.load(Ordering::Acquire) != generation
        },
        false,
    );
    i32::from(abandoned && shared.generation.load(Ordering::Acquire) == generation)
}

/// The workers of one execution context.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool for runs on `threads` threads (the caller's included): spawns `threads - 1`.
    pub(crate) fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            threads,
            epoch: AtomicU64::new(0),
            job: Mutex::new(None),
            finished: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            arrived: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            abandoned: AtomicBool::new(false),
        });
        let mut pool = Pool {
            shared: Arc::clone(&shared),
            workers: Vec::new(),
        };
        for index in 1..threads {
            let shared = Arc::clone(&shared);
            let worker = thread::Builder::new()
                .name(format!("tfjsc-worker-{index}"))
                .spawn(move || work(&shared, index))?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Threads per run.
    pub(crate) fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs `run` on every thread of the pool and returns the calling thread's status (thread
    /// 0: the only one that runs kernels which can fail).
    ///
    /// # Safety
    /// As for calling `run` directly: the pointers must stay valid until this returns, which it
    /// does only after every worker finished.
    pub(crate) unsafe fn run(
        &self,
        run: RunFn,
        weights: *const *const c_void,
        inputs: *const *const c_void,
        outputs: *const *mut c_void,
        arena: *mut c_void,
    ) -> i32 {
        let shared = &*self.shared;
        shared.abandoned.store(false, Ordering::Relaxed);
        shared.finished.store(0, Ordering::Relaxed);
        if let Ok(mut job) = shared.job.lock() {
            *job = Some(Job {
                run,
                weights,
                inputs,
                outputs,
                arena,
            });
        }
        shared.epoch.fetch_add(1, Ordering::AcqRel);
        for worker in &self.workers {
            worker.thread().unpark();
        }
        let sync = ThreadSync {
            thread: 0,
            threads: shared.threads as i64,
            barrier: pool_barrier,
            shared: Arc::as_ptr(&self.shared).cast(),
        };
        // SAFETY: the caller's contract; `sync` outlives the call.
        let status = unsafe { run(weights, inputs, outputs, arena, &sync) };
        if status != 0 {
            // Workers waiting at a barrier for this thread leave and return.
            shared.abandoned.store(true, Ordering::Release);
        }
        let workers = self.workers.len();
        wait_until(|| shared.finished.load(Ordering::Acquire) == workers, false);
        status
    }
}

fn work(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        // Woken by `unpark` at the next run (or at drop).
        wait_until(
            || shared.epoch.load(Ordering::Acquire) != seen || shared.quit.load(Ordering::Acquire),
            true,
        );
        let epoch = shared.epoch.load(Ordering::Acquire);
        if shared.quit.load(Ordering::Acquire) {
            return;
        }
        seen = epoch;
        let job = shared.job.lock().ok().and_then(|job| *job);
        if let Some(job) = job {
            let sync = ThreadSync {
                thread: index as i64,
                threads: shared.threads as i64,
                barrier: pool_barrier,
                shared: (shared as *const Shared).cast(),
            };
            // SAFETY: the caller of `Pool::run` keeps every pointer valid until all workers
            // report finished, which happens after this call returns.
            unsafe { (job.run)(job.weights, job.inputs, job.outputs, job.arena, &sync) };
        }
        shared.finished.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        for worker in &self.workers {
            worker.thread().unpark();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

// SAFETY: the job's raw pointers are only dereferenced by the compiled code during a run, which
// `Pool::run` brackets; the rest is atomics and a mutex.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}
