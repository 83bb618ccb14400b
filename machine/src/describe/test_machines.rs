//! The machines the firmware agreement tests build, from command lines
//! in the command line's words (same options, same model).

pub use crate::test_utils::CONFIGURATIONS;
use crate::Machine;

/// The x86_64 machine of `args`, through the same function `run` uses.
pub fn machine(args: &[&str]) -> Machine {
    crate::test_utils::machine_for(crate::Arch::X86_64, args)
}
