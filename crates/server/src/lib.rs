//! # Tandem server (being written)
