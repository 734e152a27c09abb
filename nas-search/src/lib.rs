//! nas-search (work in progress).
