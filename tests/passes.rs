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
