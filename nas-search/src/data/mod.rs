//! Data sets: loaders for the formats users have and the embedded default.
