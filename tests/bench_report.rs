//! bench/report.py's charts: run on the committed results in bench/results/
//! (into a temporary directory, so the repository is left as it is), every
//! figure is a well-formed SVG document that names each server; and a report
//! written from a state directory (as compare.sh does) embeds its figures.
//! Needs python3 with matplotlib, which tests/run installs; a missing
//! matplotlib fails the test, it never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("halley-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn require_matplotlib() {
    let out = Command::new("python3").args(["-c", "import matplotlib"]).output().expect("python3");
    assert!(
        out.status.success(),
        "python3 with matplotlib is required: run `python3 -m pip install matplotlib` (tests/run installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn report_py(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(repo().join("bench/report.py"))
        .args(args)
        .output()
        .expect("run bench/report.py");
    assert!(
        out.status.success(),
        "report.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The committed reports: stems with at least one server's JSON.
fn committed_stems() -> Vec<String> {
    let results = repo().join("bench/results");
    let mut stems: Vec<String> = std::fs::read_dir(&results)
        .expect("bench/results")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".md").map(String::from))
        .collect();
    stems.sort();
    stems.into_iter().map(|s| results.join(s).to_string_lossy().into_owned()).collect()
}

/// Parses an SVG file as XML and returns its text content.
fn check_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // matplotlib writes the SVG 1.1 DOCTYPE; parse with DTDs allowed.
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&text, options)
        .unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{}: root element", path.display());
    assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2000/svg"), "{}", path.display());
    assert!(
        root.descendants().filter(|n| n.tag_name().name() == "path").count() > 5,
        "{}: a figure draws paths",
        path.display()
    );
    root.descendants().filter_map(|n| n.text()).collect::<Vec<_>>().join(" ")
}

#[test]
fn charts_of_the_committed_results_are_valid_svg() {
    require_matplotlib();
    let out = scratch("committed");
    let stems = committed_stems();
    assert!(stems.len() >= 5, "committed reports: {stems:?}");
    let mut args = vec!["--charts-from"];
    args.extend(stems.iter().map(String::as_str));
    let out_dir = out.to_string_lossy().into_owned();
    args.extend(["--charts-out", &out_dir]);
    let printed = report_py(&args);
    let files: Vec<&str> = printed.lines().collect();
    for stem in &stems {
        let base = Path::new(stem).file_name().unwrap().to_string_lossy().into_owned();
        let figures: Vec<&&str> = files.iter().filter(|f| f.contains(&format!("/{base}."))).collect();
        if base.contains("publish-rate") {
            // A table of rates per measurement: nothing stepped or connected to draw.
            assert!(figures.is_empty(), "{base}: publish-rate reports draw no charts: {figures:?}");
            continue;
        }
        let want: &[&str] = if base.contains("idle") {
            &["rss", "all-connected", "connect"]
        } else if base.contains("connect-storm") {
            &["all-connected", "connect"]
        } else {
            &["deliveries", "latency", "lost"]
        };
        for name in want {
            assert!(
                figures.iter().any(|f| f.ends_with(&format!("{base}.{name}.svg"))),
                "{base}: no {name} figure in {figures:?}"
            );
        }
        for figure in figures {
            let text = check_svg(Path::new(figure));
            // One line (or bar) per server, named in the legend or the axis.
            for server in ["halley", "nchan"] {
                if Path::new(&format!("{stem}.{server}.json")).exists() {
                    assert!(text.contains(server), "{figure} does not name {server}: {text}");
                }
            }
        }
    }
    // The repository's own reports were not touched by a --charts-out run.
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_report_embeds_its_charts() {
    require_matplotlib();
    // A state directory as compare.sh leaves it, from the committed broadcast run.
    let state = scratch("state");
    let results = repo().join("bench/results");
    for server in ["halley", "nchan", "pushpin"] {
        let from = results.join(format!("2026-11-21-broadcast.{server}.json"));
        std::fs::copy(&from, state.join(format!("broadcast.{server}.json"))).expect("copy results");
        std::fs::write(state.join(format!("broadcast.{server}.rc")), "0").unwrap();
    }
    std::fs::write(
        state.join("params.env"),
        "QUICK=0 DATE=2026-11-21 BC_N=10000 BC_STEPS=2,5,10 STEP_SECS=10 SETTLE=3 P99_LIMIT_MS=100",
    )
    .unwrap();
    let out = state.join("out").join("report");
    report_py(&[
        "--state",
        &state.to_string_lossy(),
        "--scenario",
        "broadcast",
        "--out",
        &out.to_string_lossy(),
    ]);
    let md = std::fs::read_to_string(out.with_extension("md")).expect("report written");
    for name in ["deliveries", "latency", "lost"] {
        let file = format!("report.{name}.svg");
        assert!(md.contains(&format!("]({file})")), "the report embeds {file}:\n{md}");
        check_svg(&state.join("out").join(&file));
    }
    let _ = std::fs::remove_dir_all(&state);
}
