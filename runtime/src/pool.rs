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
use crate::step::StepFn;

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

/// What the workers run: the whole code, or (profiles) every step in order, meeting at the
/// barrier after each as `run` does.
#[derive(Clone, Copy)]
enum Work {
    Run(RunFn),
    Steps { step: StepFn, count: u32 },
}

/// The arguments of one run, as the workers read them.
#[derive(Clone, Copy)]
struct Job {
    work: Work,
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
        let job = Job {
            work: Work::Run(run),
            weights,
            inputs,
            outputs,
            arena,
        };
        // SAFETY: the caller's contract; `sync` outlives the call.
        self.with_workers(job, |sync| unsafe {
            run(weights, inputs, outputs, arena, sync)
        })
    }

    /// Runs steps `0..count` on every thread, all meeting at the barrier after each step as
    /// `run`'s threads do; the calling thread (0) runs them through `walk`, which is handed a
    /// function that runs one step there and waits for the others (and for an index from
    /// `count` on, only calls `step`, which must refuse it). Profiles time each step so.
    ///
    /// # Safety
    /// As [`Pool::run`], with `step` the step function of the same code.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn run_steps<T: WorkStatus>(
        &self,
        step: StepFn,
        count: u32,
        weights: *const *const c_void,
        inputs: *const *const c_void,
        outputs: *const *mut c_void,
        arena: *mut c_void,
        walk: impl FnOnce(&mut dyn FnMut(u32) -> i32) -> T,
    ) -> T {
        let job = Job {
            work: Work::Steps { step, count },
            weights,
            inputs,
            outputs,
            arena,
        };
        self.with_workers(job, |sync| {
            let mut call = |index: u32| {
                // SAFETY: the caller's contract; `sync` outlives the call.
                let status = unsafe { step(index, weights, inputs, outputs, arena, sync) };
                // After a failure `walk` returns at once with an error, and `with_workers`
                // releases the workers waiting at this step's barrier.
                if index < count && status == 0 {
                    // SAFETY: `sync` is this pool's, for this run.
                    unsafe { pool_barrier(sync) };
                }
                status
            };
            walk(&mut call)
        })
    }

    /// Starts `job` on the workers, runs `caller` as thread 0, marks the run abandoned if it
    /// returned a failure, and waits until every worker finished.
    fn with_workers<T: WorkStatus>(&self, job: Job, caller: impl FnOnce(&ThreadSync) -> T) -> T {
        let shared = &*self.shared;
        shared.abandoned.store(false, Ordering::Relaxed);
        shared.finished.store(0, Ordering::Relaxed);
        if let Ok(mut slot) = shared.job.lock() {
            *slot = Some(job);
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
        let result = caller(&sync);
        if result.failed() {
            // Workers waiting at a barrier for this thread leave and return.
            shared.abandoned.store(true, Ordering::Release);
        }
        let workers = self.workers.len();
        wait_until(|| shared.finished.load(Ordering::Acquire) == workers, false);
        result
    }
}

/// Whether what thread 0 returned means the run failed (the workers must then be released).
pub(crate) trait WorkStatus {
    fn failed(&self) -> bool;
}

impl WorkStatus for i32 {
    fn failed(&self) -> bool {
        *self != 0
    }
}

impl<T, E> WorkStatus for Result<T, E> {
    fn failed(&self) -> bool {
        self.is_err()
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
            let (weights, inputs, outputs, arena) =
                (job.weights, job.inputs, job.outputs, job.arena);
            // SAFETY: the caller of `Pool::run` (or `run_steps`) keeps every pointer valid until
            // all workers report finished, which happens after this returns.
            match job.work {
                Work::Run(run) => unsafe {
                    run(weights, inputs, outputs, arena, &sync);
                },
                Work::Steps { step, count } => {
                    for index in 0..count {
                        unsafe { step(index, weights, inputs, outputs, arena, &sync) };
                        // SAFETY: `sync` is this pool's, for this run.
                        if unsafe { pool_barrier(&sync) } != 0 {
                            break;
                        }
                    }
                }
            }
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
