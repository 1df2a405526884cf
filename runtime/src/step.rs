//! The step function, `PREFIX_step`: one kernel call of `PREFIX_run` at a time (docs/abi.md,
//! "The step function"). Checked runs verify red zones between steps; profiles time each one.
//!
//! This module exists so that both walk the steps by the same rules: every status is read as
//! `run`'s would be (a failure names the node), and the index one past the last step must be
//! refused, so code with more or fewer kernels than its description lists is an error rather
//! than a silent mismatch. It never calls the step function itself: its callers hold the pointers
//! and the argument that they are valid.

use std::ffi::c_void;

use crate::error::Error;

/// `int32_t PREFIX_step(uint32_t index, const void *const *weights, const void *const *inputs,
/// void *const *outputs, void *arena, const struct tfjsc_threads *threads)`: runs the `index`-th
/// kernel of `PREFIX_run` only, with the arguments `run` would pass it (one thread: the runtime
/// passes [`crate::ThreadSync::single`]); returns 0, the kernel's failure code (1..255), or -1 (doing
/// nothing) when `index` is not below the number of steps.
pub type StepFn = unsafe extern "C" fn(
    index: u32,
    weights: *const *const c_void,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    arena: *mut c_void,
    threads: *const crate::ThreadSync,
) -> i32;

/// Calls steps `0..steps.len()` in order through `call`, stopping at the first failure (named by
/// its node), and runs `after_each(index, node)` after every step that succeeded. Then `call`
/// must refuse the index one past the last with -1: a step function with more kernels than
/// `steps` would otherwise leave some unrun (and unchecked). The caller's pointers are valid for
/// every step, so even a wrong step function does no harm with that index.
pub(crate) fn walk_steps(
    steps: &[String],
    mut call: impl FnMut(u32) -> i32,
    mut after_each: impl FnMut(usize, &str) -> Result<(), Error>,
) -> Result<(), Error> {
    let count = steps.len();
    for (index, node) in steps.iter().enumerate() {
        // The description was validated to have at most `u32::MAX` steps.
        match call(index as u32) {
            0 => {}
            -1 => {
                return Err(Error::InvalidDescription(format!(
                    "the step function has {index} steps, the description lists {count}"
                )))
            }
            code => return Err(Error::kernel_failed(index, node, code)),
        }
        after_each(index, node)?;
    }
    let status = call(count as u32);
    if status != -1 {
        return Err(Error::InvalidDescription(format!(
            "step {count} returned {status}, but the description lists only {count} steps"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    /// A step function with `kernels` kernels whose kernel `failing` returns 2.
    fn code(kernels: u32, failing: Option<u32>) -> impl FnMut(u32) -> i32 {
        move |index| match index {
            index if Some(index) == failing => 2,
            index if index < kernels => 0,
            _ => -1,
        }
    }

    #[test]
    fn every_step_runs_in_order_then_the_end_is_checked() {
        let mut called = Vec::new();
        let mut seen = Vec::new();
        let mut kernels = code(2, None);
        walk_steps(
            &names(&["a", "b"]),
            |index| {
                called.push(index);
                kernels(index)
            },
            |index, node| {
                seen.push((index, node.to_string()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(called, [0, 1, 2]);
        assert_eq!(seen, [(0, "a".to_string()), (1, "b".to_string())]);
    }

    #[test]
    fn a_failure_names_its_node_and_mismatched_counts_are_errors() {
        let steps = names(&["a", "b"]);
        let error = walk_steps(&steps, code(2, Some(1)), |_, _| Ok(())).unwrap_err();
        assert!(
            matches!(&error, Error::KernelFailed { step: 1, node, .. } if node == "b"),
            "{error}"
        );
        for kernels in [1, 3] {
            let error = walk_steps(&steps, code(kernels, None), |_, _| Ok(())).unwrap_err();
            assert!(matches!(error, Error::InvalidDescription(_)), "{error}");
        }
    }
}
