//! One module per subcommand.

pub mod bench;
pub mod data;
pub mod device;
pub mod export;
pub mod search;
pub mod space;
pub mod train;
