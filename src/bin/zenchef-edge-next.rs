//! The test build of "the next release" (feature `test-next`, used by
//! tests/rollback.rs only): the command line of `src/main.rs`, built with
//! one more migration, one more configuration key and a failing health
//! check. Never packaged.

#[path = "../main.rs"]
mod agent_main;

fn main() -> std::process::ExitCode {
    agent_main::main()
}
