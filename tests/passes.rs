//! Pass golden tests: each `tests/passes/NAME.ir` is run through the whole pipeline, with the
//! verifier after every pass, and the printed result must equal `tests/passes/NAME.expected`.
//! Refresh the expected files after an intended change with
//! `TFJSC_UPDATE_GOLDEN=1 cargo test -p tfjsc --test passes`, and review the diff.

use std::path::Path;

use tfjsc::ir::text;
use tfjsc::passes::run_pipeline;

fn golden_directory() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/passes")
}

#[test]
fn pipeline_matches_golden_files() {
    let update = std::env::var_os("TFJSC_UPDATE_GOLDEN").is_some();
    let mut entries: Vec<_> = std::fs::read_dir(golden_directory())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 4);
    let mut failures = Vec::new();
    for path in entries {
        let source = std::fs::read_to_string(&path).unwrap();
        let mut graph = text::parse(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run_pipeline(&mut graph, true, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let printed = text::print(&graph);
        // The printed form parses back to the same text.
        let reparsed = text::parse(&printed)
            .unwrap_or_else(|e| panic!("{}: reparsing: {e}\n{printed}", path.display()));
        assert_eq!(
            text::print(&reparsed),
            printed,
            "{}: print/parse round trip",
            path.display()
        );
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &printed).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != printed {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{printed}",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (TFJSC_UPDATE_GOLDEN=1 to refresh):\n{}",
        failures.join("\n")
    );
}

/// A graph of `n` nested transpose pairs: `n` times a transpose by `[1, 2, 0]` and a relu, then
/// `n` times the transpose undoing it (`[2, 0, 1]`) and an abs. Innermost first, each pair
/// cancels once the pairs inside it have.
fn nested_transposes(n: usize) -> String {
    let mut text = String::from(
        "graph {\n  input %0 \"x\" : f32[2,3,4]\n  const %1 [1, 2, 0] : i32[3]\n  const %2 [2, 0, 1] : i32[3]\n",
    );
    let mut last = 0;
    let mut next = 3;
    for (perm, kind) in [(1, "relu"), (2, "abs")] {
        for level in 0..n {
            text += &format!("  %{next} = transpose(%{last}, %{perm}) : ? @\"t{perm}_{level}\"\n");
            text += &format!(
                "  %{} = unary(%{next}) {{kind=\"{kind}\"}} : ? @\"{kind}{level}\"\n",
                next + 1
            );
            last = next + 1;
            next += 2;
        }
    }
    text + &format!("  output \"y\" %{last}\n}}\n")
}

/// Thousands of nested pairs all cancel, in one reduction of their chain: one pair per round,
/// each outer transpose passing every op inside it step by step, would take minutes.
#[test]
fn deeply_nested_transposes_cancel() {
    let levels = 8000;
    let mut graph = text::parse(&nested_transposes(levels)).unwrap();
    run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
    let ops: Vec<&str> = graph.nodes().map(|(_, node)| node.op.name()).collect();
    assert_eq!(ops, vec!["unary"; 2 * levels]);
}
