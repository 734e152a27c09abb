//! One module per subcommand.

pub mod data;
pub mod export;
pub mod space;
