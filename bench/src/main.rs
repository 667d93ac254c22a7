//! The `sluice-bench` command line.

fn main() {
    eprintln!("sluice-bench: the load engine is not built yet");
    std::process::exit(2);
}
