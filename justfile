# Care Record developer entry points. `just --list` shows them.
# The README's two commands do not need `just`; these are shortcuts.

default:
    @just --list

# Format, lint and test: what CI runs.
check:
    bash .ci/run

# The test command of the README.
test:
    cargo test --workspace

# Lints as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# All criterion benches (figures go in docs/BENCHMARKS.md with their command).
bench:
    cargo bench -p care-access-audit --bench chain
    cargo bench -p care-policy --bench decision

# Show the access policy as loaded from the shipped files.
policy:
    cargo run -p carerecord -- policy

# Before a commit: format, lint, test, and what the change wrote twice.
precommit:
    cargo fmt --all
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --workspace
    duplicates --change
