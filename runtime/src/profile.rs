//! Profiles: where the time of a run goes, kernel by kernel ([`crate::Context::profile`],
//! `tfjsc bench --profile`).
//!
//! The model runs through its step function, one kernel call at a time, each timed with a
//! monotonic clock; with the op and FLOP count the description lists for every step, that gives
//! each kernel's share of the time and its GFLOP/s without the graph or a sampling profiler.
//! This module times and adds up; it must never change what a run computes (the steps are the
//! calls `run` makes, with the same pointers, in the same order).

use std::ffi::c_void;
use std::time::{Duration, Instant};

use crate::description::Description;
use crate::error::Error;
use crate::pool::Pool;
use crate::step::{walk_steps, StepFn};

/// The time each step of a model took over some runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Runs measured; times are sums over all of them.
    pub runs: usize,
    /// One entry per step, in the order `run` calls them (the description's `steps`).
    pub steps: Vec<StepProfile>,
}

/// One step (kernel call) of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct StepProfile {
    /// The node the kernel computes.
    pub node: String,
    /// The kernel's op (`conv2d.depthwise`, `unary.relu`, ...), or empty when the description
    /// does not say (libraries compiled before it listed `step_info`).
    pub op: String,
    /// Floating-point operations of one call; 0 for data movement or when not described.
    pub flops: u64,
    /// Time spent in the kernel, summed over the runs.
    pub time: Duration,
}

/// The steps of one op, added up.
#[derive(Debug, Clone, PartialEq)]
pub struct OpProfile {
    /// The op, as in [`StepProfile::op`].
    pub op: String,
    /// How many steps run it.
    pub steps: usize,
    /// Floating-point operations of one run of all of them.
    pub flops: u64,
    /// Time spent in them, summed over the runs.
    pub time: Duration,
}

/// What a step or an op costs per run, as reports show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Mean milliseconds per run.
    pub milliseconds: f64,
    /// Percent of the time of all steps.
    pub share: f64,
    /// Billions of floating-point operations per second; `None` without operations or time.
    pub gflops: Option<f64>,
}

impl Profile {
    /// The time of all steps, summed over the runs.
    pub fn total(&self) -> Duration {
        self.steps.iter().map(|step| step.time).sum()
    }

    /// Per-run figures of something that took `time` over all runs and does `flops` per run.
    pub fn figures(&self, time: Duration, flops: u64) -> Figures {
        let runs = self.runs.max(1) as f64;
        let total = self.total().as_secs_f64();
        let seconds = time.as_secs_f64();
        Figures {
            milliseconds: seconds * 1e3 / runs,
            share: if total > 0.0 {
                seconds / total * 100.0
            } else {
                0.0
            },
            gflops: (flops > 0 && seconds > 0.0).then(|| flops as f64 * runs / seconds / 1e9),
        }
    }

    /// The steps grouped by op, most time first (ties by op name).
    pub fn by_op(&self) -> Vec<OpProfile> {
        let mut ops: Vec<OpProfile> = Vec::new();
        for step in &self.steps {
            match ops.iter_mut().find(|op| op.op == step.op) {
                Some(op) => {
                    op.steps += 1;
                    op.flops = op.flops.saturating_add(step.flops);
                    op.time += step.time;
                }
                None => ops.push(OpProfile {
                    op: step.op.clone(),
                    steps: 1,
                    flops: step.flops,
                    time: step.time,
                }),
            }
        }
        ops.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.op.cmp(&b.op)));
        ops
    }
}

/// Runs the model `runs` times through `step`, timing every call: on this thread alone, or with
/// `pool` on all its threads, each step timed until every thread finished it (the barrier `run`
/// also meets after every kernel), so a kernel that does not split its work shows it.
///
/// # Safety
/// `step` must implement ABI v1's step function for `description`, and the pointers must be what
/// its `run` may be given: one valid weight, input and output pointer per description entry, the
/// outputs writable and disjoint, and an arena of `arena.size` bytes exclusively ours.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn time_steps(
    description: &Description,
    step: StepFn,
    weights: *const *const c_void,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    arena: *mut c_void,
    runs: usize,
    pool: Option<&Pool>,
) -> Result<Profile, Error> {
    let mut times = vec![Duration::ZERO; description.steps.len()];
    let single = crate::ThreadSync::single();
    let count = description.steps.len() as u32;
    for _ in 0..runs {
        // Times one step run by `call` (`walk_steps` passes indices up to one past the last
        // step, which the step function refuses doing nothing).
        let mut timed = |call: &mut dyn FnMut(u32) -> i32| {
            walk_steps(
                &description.steps,
                |index| {
                    let started = Instant::now();
                    let status = call(index);
                    if let Some(time) = times.get_mut(index as usize) {
                        *time += started.elapsed();
                    }
                    status
                },
                |_, _| Ok(()),
            )
        };
        match pool {
            // SAFETY: this function's contract.
            Some(pool) => unsafe {
                pool.run_steps(step, count, weights, inputs, outputs, arena, timed)
            },
            // SAFETY: this function's contract.
            None => {
                timed(&mut |index| unsafe { step(index, weights, inputs, outputs, arena, &single) })
            }
        }?;
    }
    let steps = description
        .steps
        .iter()
        .zip(times)
        .enumerate()
        .map(|(index, (node, time))| {
            let info = description.info_of_step(index);
            StepProfile {
                node: node.clone(),
                op: info.map_or_else(String::new, |info| info.op.clone()),
                flops: info.map_or(0, |info| info.flops),
                time,
            }
        })
        .collect();
    Ok(Profile { runs, steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(node: &str, op: &str, flops: u64, milliseconds: u64) -> StepProfile {
        StepProfile {
            node: node.to_string(),
            op: op.to_string(),
            flops,
            time: Duration::from_millis(milliseconds),
        }
    }

    fn profile() -> Profile {
        Profile {
            runs: 2,
            steps: vec![
                step("a", "conv2d", 4_000_000, 2),
                step("b", "unary.relu", 0, 1),
                step("c", "conv2d", 2_000_000, 5),
            ],
        }
    }

    #[test]
    fn figures_are_per_run_with_shares_of_the_total() {
        let profile = profile();
        assert_eq!(profile.total(), Duration::from_millis(8));
        let a = profile.figures(profile.steps[0].time, profile.steps[0].flops);
        assert!((a.milliseconds - 1.0).abs() < 1e-9, "{a:?}");
        assert!((a.share - 25.0).abs() < 1e-9, "{a:?}");
        // 4 MFLOP per run in 1 ms per run.
        assert!((a.gflops.unwrap() - 4.0).abs() < 1e-9, "{a:?}");
        assert_eq!(profile.figures(profile.steps[1].time, 0).gflops, None);
        let shares: f64 = profile
            .steps
            .iter()
            .map(|step| profile.figures(step.time, step.flops).share)
            .sum();
        assert!((shares - 100.0).abs() < 1e-9);
    }

    #[test]
    fn ops_add_up_their_steps_most_time_first() {
        let ops = profile().by_op();
        let summary: Vec<(&str, usize, u64, Duration)> = ops
            .iter()
            .map(|op| (op.op.as_str(), op.steps, op.flops, op.time))
            .collect();
        assert_eq!(
            summary,
            [
                ("conv2d", 2, 6_000_000, Duration::from_millis(7)),
                ("unary.relu", 1, 0, Duration::from_millis(1)),
            ]
        );
    }

    #[test]
    fn an_empty_profile_has_no_shares_and_no_rates() {
        let profile = Profile {
            runs: 0,
            steps: vec![step("a", "conv2d", 10, 0)],
        };
        let figures = profile.figures(Duration::ZERO, 10);
        assert_eq!(
            figures,
            Figures {
                milliseconds: 0.0,
                share: 0.0,
                gflops: None
            }
        );
    }
}
