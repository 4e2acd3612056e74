//! What the compiler says when a value of the wrong type stands where a classifier, a fallback or
//! a fallback's error predicate is expected: a sentence naming what is expected
//! (`#[diagnostic::on_unimplemented]` on `Classify`, `Fallback` and `ErrorPredicate`), not only a
//! trait bound. Each case in `tests/ui` must fail to compile with the `.stderr` beside it.
//!
//! A closure with the wrong signature gets rustc's own "type mismatch in closure arguments",
//! which shows the signature expected; the cases here are the other values.
//!
//! The text is rustc's, so the `.stderr` files follow the toolchain: after a compiler update,
//! `TRYBUILD=overwrite cargo test -p tower-circuit-breaker --test diagnostics` rewrites them and
//! the diff shows what changed.

#[test]
fn wrong_types_get_a_sentence() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
