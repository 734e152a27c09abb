//! [`Checked`]: a parameter description whose shapes and parameters were validated once, in
//! the op layer, so that backends compute from it without checking again.
//!
//! The [`Backend`](crate::Backend) methods of convolution, pooling and batch norm take a
//! `&Checked<..Params>`; the only way to get one is the parameter struct's `check()`
//! (`Conv2dParams::check`, `Pool2dParams::check`, `BatchNormParams::check`), which runs its
//! `validate()`. The tensor crate checks each op's parameters once, when it builds them from
//! tensor shapes, and hands the checked description to the backend; a backend (CPU, CUDA)
//! then only debug-asserts. Buffer lengths are checked once too, by the provided methods of
//! [`Backend`](crate::Backend) before they call a backend's `*_unchecked` kernel.

use std::ops::Deref;

/// A validated `P` (see the [module docs](self)). Dereferences to `P`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked<P>(P);

impl<P> Checked<P> {
    /// Wraps a `P` whose `validate()` passed (crate-internal: the params' `check()`).
    pub(crate) fn after_validation(p: P) -> Checked<P> {
        Checked(p)
    }

    /// The description itself.
    pub fn into_inner(self) -> P {
        self.0
    }
}

impl<P> Deref for Checked<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.0
    }
}
