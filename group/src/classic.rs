//! The classic group protocol state machine.
