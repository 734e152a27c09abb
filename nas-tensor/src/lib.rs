//! nas-tensor (work in progress).
