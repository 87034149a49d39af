//! Decoder rules.
