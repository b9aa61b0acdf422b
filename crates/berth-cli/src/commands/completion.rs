//! `berth completion bash|zsh|fish`: a completion script generated from the same clap
//! definitions that parse the command line, so it never falls behind the commands.
//!
//! The `berth` binary passes its own top-level command (with `server`); the client crate
//! on its own passes [`CliArgs`](crate::CliArgs).

use std::{io::Write, process::ExitCode};

/// Arguments of `berth completion`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

/// Writes the completion script of `command` for the asked shell.
pub fn run(
    args: &CompletionArgs,
    mut command: clap::Command,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    out.write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::CommandFactory;

    use super::*;
    use crate::CliArgs;

    #[test]
    fn scripts_name_the_commands_and_their_flags() {
        for (shell, marker) in [
            (clap_complete::Shell::Bash, "complete -F"),
            (clap_complete::Shell::Zsh, "#compdef berth"),
            (clap_complete::Shell::Fish, "complete -c berth"),
        ] {
            let mut out = Vec::new();
            run(&CompletionArgs { shell }, CliArgs::command(), &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            assert!(script.contains(marker), "{shell}: no {marker:?}");
            for word in [
                "instances",
                "restart",
                "logs",
                "previous",
                "watch",
                "interval",
                "completion",
            ] {
                assert!(script.contains(word), "{shell} script lacks {word}");
            }
        }
    }
}
