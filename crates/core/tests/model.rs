//! Model-based property tests of the MessageBox state machine: random command sequences
//! are applied to `MessageBox::apply` on `MemoryTables` and to a small, independent
//! reference model (`model/reference.rs`), and the two are compared after every step.

#[path = "model/generate.rs"]
mod generate;
#[path = "model/harness.rs"]
mod harness;
#[path = "model/reference.rs"]
mod reference;

use proptest::prelude::*;
use tandem_core::command::Command;
use tandem_core::{MemoryTables, MessageBox};

use generate::{Step, advance, resolve};
use harness::{Harness, setup_commands};
use reference::{Model, Setup};

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Outcomes, instances, depths, counters and dedupe agree with the model after every
    /// step, and at the end everything can be worked off: nothing is lost or stuck.
    #[test]
    fn machine_agrees_with_the_reference_model(
        setup in generate::setup(),
        steps in generate::steps(60),
    ) {
        let mut harness = Harness::new(setup);
        for step in &steps {
            harness.step(step);
        }
        harness.drain();
    }

    /// The same commands with the same stamps give the same outcomes and the same tables.
    #[test]
    fn apply_is_deterministic(setup in generate::setup(), steps in generate::steps(60)) {
        let commands = concrete_commands(&setup, &steps);
        let first = run(&commands);
        let second = run(&commands);
        prop_assert_eq!(&first.0, &second.0, "outcomes differ");
        prop_assert_eq!(&first.1, &second.1, "tables differ");
        prop_assert_eq!(&first.2, &second.2, "machines differ");
    }
}

/// The setup plus the steps resolved against the model, with their stamps.
fn concrete_commands(setup: &Setup, steps: &[Step]) -> Vec<(Command, i64)> {
    let mut commands: Vec<(Command, i64)> = setup_commands(setup)
        .into_iter()
        .map(|command| (command, 0))
        .collect();
    let mut model = Model::new(setup.clone());
    let mut clock_ms = 0;
    for step in steps {
        let stamp = advance(step.clock, &mut clock_ms, &model);
        if let Some(command) = resolve(&model, &step.op) {
            model.apply(&command, stamp);
            commands.push((command, stamp));
        }
    }
    commands
}

/// Outcomes and the Debug text of the tables and of the machine after every command.
fn run(commands: &[(Command, i64)]) -> (String, String, String) {
    let mut machine = MessageBox::new();
    let mut tables = MemoryTables::default();
    let mut outcomes = Vec::new();
    for (command, stamp) in commands {
        outcomes.push(machine.apply(&mut tables, command.clone(), *stamp));
        machine.flush(&mut tables);
    }
    (
        format!("{outcomes:?}"),
        format!("{tables:?}"),
        format!("{machine:?}"),
    )
}
