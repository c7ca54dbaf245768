//! Placeholder until the load generator issue: prints what it will do.
fn main() {
    eprintln!("loadgen: not implemented yet (see the load generator issue)");
    std::process::exit(2);
}
