//! # Tandem client (being written)
